//! `paych devnet --gateway` as a process, answering as a Lotus gateway, and a `paych daemon`
//! reaching it over TLS with the CA file `PAYCH_LOTUS_CA_FILE` names.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use paych_core::chain::lotus::LotusChain;
use paych_core::chain::{ActorKind, Chain, ChainError};
use paych_testkit::daemon::{daemon_command, start_devnet_with, Running};
use paych_testkit::deadline::eventually;
use paych_testkit::tls::TlsProxy;

const BIN: &str = env!("CARGO_BIN_EXE_paych");

/// The devnet's listen address from its `FULLNODE_API_INFO` (`:/ip4/127.0.0.1/tcp/PORT/http`).
fn listen_addr(info: &str) -> std::net::SocketAddr {
    let port = info
        .strip_prefix(":/ip4/127.0.0.1/tcp/")
        .and_then(|rest| rest.strip_suffix("/http"))
        .unwrap_or_else(|| panic!("{info:?}"));
    format!("127.0.0.1:{port}").parse().unwrap()
}

#[tokio::test]
async fn paych_devnet_gateway_answers_method_not_found_for_what_a_gateway_lacks() {
    let (_devnet, info) = start_devnet_with(BIN, &["--gateway"]);
    let chain = LotusChain::from_api_info(&info).unwrap();
    // go-jsonrpc's -32601, in its words.
    let missing = chain.actor_code_cids(25).await;
    assert!(
        matches!(&missing, Err(ChainError::Unsupported(m)) if m == "method 'Filecoin.StateActorCodeCIDs' not found"),
        "{missing:?}"
    );
    chain.head().await.unwrap();
    // The client finds the payment-channel code without the method, and stays a gateway client.
    let code = chain.actor_code(ActorKind::PaymentChannel).await.unwrap();
    assert_eq!(code, paych_core::chain::devnet::state::code_cid("paymentchannel"));
    assert!(chain.is_gateway());
}

/// Starts `paych daemon` against `info` with `env` set, without waiting for it.
fn spawn_daemon(repo: &std::path::Path, info: &str, env: &[(&str, &std::path::Path)]) -> Running {
    let mut command = daemon_command(BIN, repo);
    command.env("FULLNODE_API_INFO", info).env_remove("PAYCH_LOTUS_CA_FILE");
    for (key, value) in env {
        command.env(key, value);
    }
    Running(command.spawn().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_trusts_the_ca_file_paych_lotus_ca_file_names() {
    let (_devnet, info) = start_devnet_with(BIN, &["--gateway"]);
    let proxy = TlsProxy::start(listen_addr(&info)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_file = proxy.ca().write_ca_file(dir.path());

    // Without the CA file, the daemon's first request fails the handshake.
    let repo = tempfile::tempdir().unwrap();
    let untrusting = spawn_daemon(repo.path(), &proxy.api_info(), &[]);
    eventually("the daemon without a CA file dials the node", || async {
        proxy.failed_handshakes() > 0
    })
    .await;
    drop(untrusting);

    // With it, the daemon's requests get through.
    assert_eq!(proxy.handshakes(), 0);
    let repo = tempfile::tempdir().unwrap();
    let _trusting =
        spawn_daemon(repo.path(), &proxy.api_info(), &[("PAYCH_LOTUS_CA_FILE", &ca_file)]);
    eventually("the daemon with the CA file completes a handshake", || async {
        proxy.handshakes() > 0
    })
    .await;
}
