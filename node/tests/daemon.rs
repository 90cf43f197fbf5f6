//! `paych daemon` as a process: repo files, the API's permissions, the repo lock and a
//! clean shutdown on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use paych_core::lotus_json::{self as json, SignedVoucherJson};
use paych_core::types::{parse_address, Address, SignedVoucher};
use paych_node::rpc::client::{ApiClient, ClientError};
use paych_node::rpc::methods::*;
use paych_node::rpc::params::{AddrInfo, Bytes, KeyType};
use paych_testkit::amounts::atto;
use paych_testkit::daemon::{
    daemon_command, rpc_url, start_daemon, start_devnet, wait_for, Running,
};
use paych_testkit::deadline::DEADLINE;
use serde_json::{json, Value};

const PAYCH: &str = env!("CARGO_BIN_EXE_paych");

/// How often a wait asks the daemon again.
const POLL: Duration = Duration::from_millis(50);

fn daemon(repo: &Path) -> Command {
    daemon_command(PAYCH, repo)
}

/// A client of the API in `repo` with the repo's admin token.
fn admin(repo: &Path) -> ApiClient {
    ApiClient::from_repo(repo).unwrap()
}

/// A client of the API at `url` without a token: it may read only.
fn reader(url: &str) -> ApiClient {
    ApiClient::new(url.to_owned(), None)
}

/// Whether `error` is the API's refusal for lack of permission.
fn is_missing_permission(error: &ClientError) -> bool {
    matches!(error, ClientError::Rpc { message, .. } if message.contains("missing permission"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemon_serves_guards_locks_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let repo: PathBuf = dir.path().join("repo");
    let mut first = Running(daemon(&repo).stderr(Stdio::inherit()).spawn().unwrap());

    let api = wait_for(&repo.join("api"));
    let token = wait_for(&repo.join("token"));
    let url = rpc_url(&api);

    // Files and their modes.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&repo.join("token")), 0o600);
        assert_eq!(mode(&repo.join("libp2p-key")), 0o600);
        // base32("auth-jwt-private"), as Lotus names it.
        let secret = repo.join("keystore").join("MF2XI2BNNJ3XILLQOJUXMYLUMU");
        assert_eq!(mode(&secret), 0o600);
        let info: Value = serde_json::from_slice(&std::fs::read(&secret).unwrap()).unwrap();
        assert_eq!(info["Type"], "jwt-hmac-secret");
    }
    assert!(repo.join("config.toml").is_file());
    assert!(repo.join("datastore").is_dir());

    // Reading needs no token; writing does.
    let (client, anyone) =
        (ApiClient::new(url.clone(), Some(token.trim().to_owned())), reader(&url));
    assert_eq!(anyone.call::<PaychList>(()).await.unwrap(), Vec::<String>::new());
    let refused = anyone.call::<WalletNew>((KeyType::Secp256k1,)).await.unwrap_err();
    assert!(is_missing_permission(&refused), "{refused}");
    let created = client.call::<WalletNew>((KeyType::Secp256k1,)).await.unwrap();
    assert!(created.starts_with("t1"), "{created}");
    // The daemon created a default key at start; the new one makes two.
    assert_eq!(client.call::<WalletList>(()).await.unwrap().len(), 2);

    // A second daemon on the same repo fails with a clear error.
    let second = daemon(&repo).stderr(Stdio::piped()).output().unwrap();
    assert!(!second.status.success());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("in use by another paych daemon"), "{stderr}");
    // ... and leaves the first one's files alone.
    assert_eq!(std::fs::read_to_string(repo.join("api")).unwrap(), api);

    // A daemon on another repo: the first connects to it through the API.
    let other_repo = dir.path().join("other");
    let _other = Running(daemon(&other_repo).stderr(Stdio::inherit()).spawn().unwrap());
    let other_url = rpc_url(&wait_for(&other_repo.join("api")));
    let other_info = reader(&other_url).call::<NetAddrsListen>(()).await.unwrap();
    assert!(other_info.id.starts_with("12D3KooW"), "{other_info:?}");
    assert_eq!(other_info.addrs.len(), 1, "{other_info:?}");
    let other = AddrInfo {
        id: other_info.id.parse().unwrap(),
        addrs: vec![other_info.addrs[0].parse().unwrap()],
    };
    let refused = anyone.call::<NetConnect>((other.clone(),)).await.unwrap_err();
    assert!(is_missing_permission(&refused), "{refused}");
    client.call::<NetConnect>((other,)).await.unwrap();
    let peers = anyone.call::<NetPeers>(()).await.unwrap();
    let ids: Vec<&String> = peers.iter().map(|p| &p.id).collect();
    assert_eq!(ids, [&other_info.id], "{peers:?}");

    // SIGTERM stops it cleanly.
    first.signal("-TERM");
    let status = first.wait_exit();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(!repo.join("api").exists(), "the api file is removed on shutdown");

    // It starts again on the same repo, with the same token secret and keys.
    let mut again = Running(daemon(&repo).stderr(Stdio::inherit()).spawn().unwrap());
    let url = rpc_url(&wait_for(&repo.join("api")));
    let api = ApiClient::new(url, Some(token.trim().to_owned()));
    assert_eq!(api.call::<WalletList>(()).await.unwrap().len(), 2);
    again.signal("-INT");
    assert_eq!(again.wait_exit().code(), Some(0));
}

/// Gives `addr` money from the devnet's faucet at `devnet_url` and waits until `api` sees it.
async fn faucet(devnet_url: &str, api: &ApiClient, addr: &Address) {
    let funded = reqwest::Client::new()
        .post(devnet_url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "Devnet.Faucet",
            "params": [json::to_value(addr, paych_core::types::Network::Testnet).unwrap(),
                "10000000000000000000"]}))
        .send()
        .await
        .unwrap();
    assert!(funded.status().is_success());
    let start = Instant::now();
    while api.call::<WalletBalance>((*addr,)).await.unwrap() == "0" {
        assert!(start.elapsed() < DEADLINE, "the faucet's money never arrived");
        tokio::time::sleep(POLL).await;
    }
}

/// A voucher from the API's shape.
fn voucher(shape: &SignedVoucherJson) -> SignedVoucher {
    <SignedVoucher as json::LotusJson>::from_shape(shape.clone()).unwrap()
}

/// Waits until the payee's status of `channel` shows each of `lanes` redeemed on chain for
/// its amount.
async fn wait_redeemed(api: &ApiClient, channel: Address, lanes: &[(u64, &str)]) {
    let start = Instant::now();
    loop {
        let status = api.call::<PaychStatus>((channel,)).await.unwrap();
        let redeemed = |lane: u64| {
            status.lanes.iter().find(|l| l.lane == lane).map(|l| l.redeemed_on_chain.clone())
        };
        if lanes.iter().all(|(lane, amount)| redeemed(*lane).as_deref() == Some(*amount)) {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "the lanes were never redeemed: {status:?}");
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_devnet_pay_over_libp2p() {
    let dir = tempfile::tempdir().unwrap();
    let (_devnet, info) = start_devnet(PAYCH);
    let devnet_url = rpc_url(info.trim_start_matches(':'));

    // The payee first, to learn its address and peer.
    let payee_repo = dir.path().join("payee");
    let _payee = start_daemon(PAYCH, &payee_repo, &info, &[]);
    let payee_api = admin(&payee_repo);
    let payee_addr = payee_api.call::<WalletDefaultAddress>(()).await.unwrap().unwrap();
    let listen = payee_api.call::<NetAddrsListen>(()).await.unwrap();
    let peer = format!("{}={}/p2p/{}", payee_addr, listen.addrs[0], listen.id);
    let payee_addr = parse_address(&payee_addr).unwrap().0;

    let payer_repo = dir.path().join("payer");
    let _payer = start_daemon(PAYCH, &payer_repo, &info, &[peer]);
    let payer_api = admin(&payer_repo);
    let payer_addr = payer_api.call::<WalletDefaultAddress>(()).await.unwrap().unwrap();
    let payer_addr = parse_address(&payer_addr).unwrap().0;

    // Fund the payer from the devnet's faucet and wait for the money.
    faucet(&devnet_url, &payer_api, &payer_addr).await;

    let got = payer_api.call::<PaychGet>((payer_addr, payee_addr, atto(1000), None)).await;
    let sentinel = got.unwrap().wait_sentinel.unwrap().parse("WaitSentinel").unwrap();
    let channel = payer_api.call::<PaychGetWaitReady>((sentinel,)).await.unwrap();
    let channel = parse_address(&channel).unwrap().0;
    let pay = |amount: u64, flow: &str| {
        payer_api.call::<PaychPay>((channel, atto(amount), Some(flow.to_owned())))
    };

    let paid = pay(10, "flow-1").await.unwrap();
    assert_eq!(paid.status, "Accepted", "{paid:?}");
    assert_eq!((paid.delta.as_str(), paid.lane_amount.as_str()), ("10", "10"), "{paid:?}");
    let again = pay(5, "flow-1").await.unwrap();
    assert_eq!((again.delta.as_str(), again.lane_amount.as_str()), ("5", "15"), "{again:?}");
    assert_eq!(again.lane, paid.lane);

    // The payee holds the voucher.
    let vouchers = payee_api.call::<PaychVoucherList>((channel,)).await.unwrap();
    assert_eq!(vouchers.len(), 2, "{vouchers:?}");
    let channel_text =
        paych_core::types::format_address(&channel, paych_core::types::Network::Testnet);
    assert_eq!(payee_api.call::<PaychList>(()).await.unwrap(), [channel_text]);

    // Reconciliation over the API: a second flow, both lanes redeemed by the payee, more
    // paid on each, then one combined voucher from the payer — found through the peer
    // record it announced with its first payment.
    let other = pay(7, "flow-2").await.unwrap();
    assert_ne!(other.lane, paid.lane);
    faucet(&devnet_url, &payee_api, &payee_addr).await;
    let best = payee_api.call::<PaychVoucherBestSpendable>((channel,)).await.unwrap();
    for v in &best {
        let params = (channel, voucher(v), Bytes::default(), Bytes::default());
        payee_api.call::<PaychVoucherSubmit>(params).await.unwrap();
    }
    wait_redeemed(&payee_api, channel, &[(paid.lane, "15"), (other.lane, "7")]).await;
    for flow in ["flow-1", "flow-2"] {
        let more = pay(5, flow).await.unwrap();
        assert_eq!(more.status, "Accepted", "{more:?}");
    }
    // Read permission is not enough.
    let payee_url = rpc_url(&wait_for(&payee_repo.join("api")));
    let refused = reader(&payee_url).call::<PaychReconcile>((channel,)).await.unwrap_err();
    assert!(refused.to_string().contains("need 'write'"), "{refused}");
    let reconciled = payee_api.call::<PaychReconcile>((channel,)).await.unwrap();
    assert_eq!(reconciled.status, "Success", "{reconciled:?}");
    assert_eq!(reconciled.req_val, "32", "{reconciled:?}");
    assert_eq!(reconciled.vouchers, 2, "{reconciled:?}");
    let combined = reconciled.combined.as_ref().unwrap();
    assert_eq!(combined.amount, "32", "{reconciled:?}");
    assert_eq!(combined.merges.as_ref().map(Vec::len), Some(1));
    assert!(reconciled.combined_text.as_ref().unwrap().starts_with('i'), "{reconciled:?}");
    let params = (channel, voucher(combined), Bytes::default(), Bytes::default());
    payee_api.call::<PaychVoucherSubmit>(params).await.unwrap();
    wait_redeemed(&payee_api, channel, &[(combined.lane, "32")]).await;
    // The payer closed both lanes.
    let status = payer_api.call::<PaychStatus>((channel,)).await.unwrap();
    for lane in [paid.lane, other.lane] {
        assert!(status.lanes.iter().any(|l| l.lane == lane && l.closed), "{status:?}");
    }
}

/// A SIGTERM that arrives while the daemon starts — once it holds its repo's lock, before
/// its API is up — is not lost and does not kill the process: the daemon finishes starting,
/// then shuts down cleanly and removes its `api` file.
#[test]
fn a_daemon_told_to_stop_while_it_starts_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let repo: PathBuf = dir.path().join("repo");
    let mut starting = Running(daemon(&repo).stderr(Stdio::inherit()).spawn().unwrap());

    // The lock is taken early in the daemon's start, after its signal handlers are in place.
    let lock = repo.join("repo.lock");
    let deadline = Instant::now() + DEADLINE;
    while !lock.exists() {
        assert!(starting.0.try_wait().unwrap().is_none(), "the daemon exited while starting");
        assert!(Instant::now() < deadline, "{} never appeared", lock.display());
        std::thread::yield_now();
    }
    starting.signal("-TERM");

    let status = starting.wait_exit();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(!repo.join("api").exists(), "the api file is removed on shutdown");
}
