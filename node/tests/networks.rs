//! `paych daemon` on each network preset, as a process against a chain that answers a
//! network's name to `StateNetworkName` (an in-process devnet served over JSON-RPC, named
//! as mainnet's or calibnet's chain is): which network it runs, the addresses its log and
//! its error texts carry, and the chains it refuses.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::network::FilNetwork;
use paych_core::types::{format_address, parse_address, Address, Network, SignedVoucher};
use paych_node::rpc::client::{ApiClient, ClientError};
use paych_node::rpc::devnet::{serve, RpcServer};
use paych_node::rpc::methods::*;
use paych_node::rpc::params::Bytes;
use paych_testkit::amounts::atto;
use paych_testkit::daemon::{daemon_command, wait_for, Running};
use paych_testkit::devnet::Net;

const PAYCH: &str = env!("CARGO_BIN_EXE_paych");

/// A devnet answering `chain_name` to `StateNetworkName`, mining every few milliseconds and
/// served on loopback; with the server, for its API info.
async fn chain_named(chain_name: &str) -> (Net, RpcServer) {
    let devnet = Devnet::new(DevnetConfig {
        block_time: Some(Duration::from_millis(20)),
        network_name: chain_name.to_owned(),
        ..DevnetConfig::default()
    })
    .unwrap();
    devnet.start_mining();
    let server = serve(devnet.clone(), "127.0.0.1:0".parse().unwrap()).await.unwrap();
    (Net { devnet, manual: false }, server)
}

/// `paych daemon` on `repo` against `server`'s chain, with `args` (say `--network mainnet`),
/// logging to `repo/../daemon.log`.
fn daemon(repo: &Path, server: &RpcServer, args: &[&str]) -> Running {
    let log = fs::File::create(log_path(repo)).unwrap();
    let mut command = daemon_command(PAYCH, repo);
    command
        .args(args)
        .env("FULLNODE_API_INFO", server.api_info())
        .env("RUST_LOG", "info")
        .stderr(Stdio::from(log));
    Running(command.spawn().unwrap())
}

fn log_path(repo: &Path) -> std::path::PathBuf {
    repo.with_extension("log")
}

/// The daemon's log so far.
fn log_of(repo: &Path) -> String {
    fs::read_to_string(log_path(repo)).unwrap()
}

/// Waits until the daemon on `repo` serves its API; a client of it writing addresses for
/// `network`.
fn api_when_ready(repo: &Path, network: Network) -> ApiClient {
    wait_for(&repo.join("api"));
    wait_for(&repo.join("token"));
    ApiClient::from_repo(repo).unwrap().with_network(network)
}

/// The text of `error` when it is the API's refusal.
fn refusal(error: ClientError) -> String {
    match error {
        ClientError::Rpc { message, .. } => message,
        other => panic!("not a refusal: {other:?}"),
    }
}

/// Runs a daemon with `--network network` on a chain of that network's name and checks
/// that its log, and error texts made both by the manager and by the actor rules, write
/// addresses with `prefix` (and never with the other one).
async fn a_daemon_writes_its_networks_prefix(network: FilNetwork, prefix: char) {
    let preset = network.preset();
    let other = if prefix == 'f' { 't' } else { 'f' };
    let (net, server) = chain_named(preset.chain_name).await;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut running = daemon(&repo, &server, &["--network", preset.name]);
    let api = api_when_ready(&repo, preset.address_network);

    let default = api.call::<WalletDefaultAddress>(()).await.unwrap().unwrap();
    assert!(default.starts_with(&format!("{prefix}1")), "{default}");
    let log = log_of(&repo);
    assert!(log.contains(&format!("running on {network}")), "{log}");
    assert!(log.contains(&format!("default_address={default}")), "{log}");

    // An error of the manager: a channel it does not know.
    let nowhere = Address::new_actor(b"no channel here");
    let unknown = refusal(api.call::<PaychStatus>((nowhere,)).await.unwrap_err());
    let nowhere_text = format_address(&nowhere, preset.address_network);
    assert!(unknown.contains(&nowhere_text), "{unknown}");

    // An error of the actor's rules: a voucher on a real channel to the daemon that names a
    // channel address resolving to nothing.
    let payer = net.node(10).await;
    let (payee, _) = parse_address(&default).unwrap();
    let channel = payer.open_channel(payee, atto(1_000)).await;
    let voucher = payer.sign(SignedVoucher::new(nowhere, 0, 1, atto(10)));
    let refused = api
        .call::<PaychVoucherAdd>((channel, voucher, Bytes::default(), atto(0)))
        .await
        .unwrap_err();
    let refused = refusal(refused);
    assert!(refused.contains(&nowhere_text), "{refused}");
    let nowhere_body = &nowhere_text[1..];
    assert!(!refused.contains(&format!("{other}{nowhere_body}")), "{refused}");

    running.signal("-TERM");
    assert_eq!(running.wait_exit().code(), Some(0));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calibnet_daemon_writes_t_addresses_in_its_log_and_its_error_texts() {
    a_daemon_writes_its_networks_prefix(FilNetwork::Calibnet, 't').await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mainnet_daemon_writes_f_addresses_in_its_log_and_its_error_texts() {
    a_daemon_writes_its_networks_prefix(FilNetwork::Mainnet, 'f').await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_with_no_network_configured_takes_the_chains_and_says_so() {
    let (_net, server) = chain_named("calibrationnet").await;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut running = daemon(&repo, &server, &[]);
    let api = api_when_ready(&repo, Network::Testnet);
    let default = api.call::<WalletDefaultAddress>(()).await.unwrap().unwrap();
    assert!(default.starts_with("t1"), "{default}");
    let log = log_of(&repo);
    assert!(log.contains("chose calibnet from the chain's name"), "{log}");
    assert!(log.contains("running on calibnet"), "{log}");
    running.signal("-TERM");
    assert_eq!(running.wait_exit().code(), Some(0));
}

/// Runs a daemon with `args` on a chain named `chain_name`, which must refuse it; answers
/// what it logged.
async fn refused_log(chain_name: &str, args: &[&str]) -> String {
    let (_net, server) = chain_named(chain_name).await;
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let mut running = daemon(&repo, &server, args);
    assert_eq!(running.wait_exit().code(), Some(1));
    assert!(!repo.join("api").exists(), "a refused daemon serves nothing");
    log_of(&repo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_refuses_a_chain_of_another_network_naming_both() {
    let log = refused_log("calibrationnet", &["--network", "mainnet"]).await;
    assert!(log.contains("the chain is \"calibrationnet\" (calibnet)"), "{log}");
    assert!(log.contains("configured for mainnet (whose chain is \"mainnet\")"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_with_no_network_configured_refuses_a_chain_it_has_no_preset_for() {
    let log = refused_log("localnet-7", &[]).await;
    assert!(
        log.contains("the chain is \"localnet-7\", a network paych has no preset for"),
        "{log}"
    );
}
