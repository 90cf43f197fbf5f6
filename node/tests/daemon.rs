//! `paych daemon` as a process: repo files, the API's permissions, the repo lock and a
//! clean shutdown on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use paych_testkit::daemon::{
    api_of, daemon_command, rpc_url, start_daemon, start_devnet, wait_for, Running,
};
use paych_testkit::deadline::DEADLINE;
use serde_json::{json, Value};

const PAYCH: &str = env!("CARGO_BIN_EXE_paych");

/// How often a wait asks the daemon again.
const POLL: Duration = Duration::from_millis(50);

fn daemon(repo: &Path) -> Command {
    daemon_command(PAYCH, repo)
}

async fn call(url: &str, token: Option<&str>, method: &str, params: Value) -> Value {
    let mut request = reqwest::Client::new()
        .post(url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert!(response.status().is_success(), "{method}: HTTP {}", response.status());
    response.json().await.unwrap()
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
    let list = call(&url, None, "Filecoin.PaychList", json!([])).await;
    assert_eq!(list["result"], json!([]), "{list}");
    let refused = call(&url, None, "Filecoin.WalletNew", json!(["secp256k1"])).await;
    assert!(refused.get("result").is_none(), "{refused}");
    let message = refused["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("missing permission"), "{refused}");
    let created = call(&url, Some(token.trim()), "Filecoin.WalletNew", json!(["secp256k1"])).await;
    let addr = created["result"].as_str().unwrap_or_default();
    assert!(addr.starts_with("t1"), "{created}");
    // The daemon created a default key at start; the new one makes two.
    let keys = call(&url, Some(token.trim()), "Filecoin.WalletList", json!([])).await;
    assert_eq!(keys["result"].as_array().map(Vec::len), Some(2), "{keys}");

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
    let other_info = call(&other_url, None, "Filecoin.NetAddrsListen", json!([])).await;
    let other_info = other_info["result"].clone();
    assert!(other_info["ID"].as_str().unwrap_or_default().starts_with("12D3KooW"), "{other_info}");
    assert_eq!(other_info["Addrs"].as_array().map(Vec::len), Some(1), "{other_info}");
    let refused = call(&url, None, "Filecoin.NetConnect", json!([other_info])).await;
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .contains("missing permission"));
    let connected =
        call(&url, Some(token.trim()), "Filecoin.NetConnect", json!([other_info])).await;
    assert_eq!(connected["result"], Value::Null, "{connected}");
    let peers = call(&url, None, "Filecoin.NetPeers", json!([])).await;
    let ids: Vec<&Value> = peers["result"].as_array().unwrap().iter().map(|p| &p["ID"]).collect();
    assert_eq!(ids, [&other_info["ID"]], "{peers}");

    // SIGTERM stops it cleanly.
    first.signal("-TERM");
    let status = first.wait_exit();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(!repo.join("api").exists(), "the api file is removed on shutdown");

    // It starts again on the same repo, with the same token secret and keys.
    let mut again = Running(daemon(&repo).stderr(Stdio::inherit()).spawn().unwrap());
    let url = rpc_url(&wait_for(&repo.join("api")));
    let keys = call(&url, Some(token.trim()), "Filecoin.WalletList", json!([])).await;
    assert_eq!(keys["result"].as_array().map(Vec::len), Some(2), "{keys}");
    again.signal("-INT");
    assert_eq!(again.wait_exit().code(), Some(0));
}

async fn ok(url: &str, token: &str, method: &str, params: Value) -> Value {
    let answer = call(url, Some(token), method, params).await;
    assert!(answer.get("error").is_none(), "{method}: {answer}");
    answer["result"].clone()
}

/// Sends 10 FIL from the devnet's faucet to `addr` and waits until its daemon sees them.
async fn faucet(devnet_url: &str, url: &str, token: &str, addr: &Value) {
    let funded = reqwest::Client::new()
        .post(devnet_url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "Devnet.Faucet",
            "params": [addr, "10000000000000000000"]}))
        .send()
        .await
        .unwrap();
    assert!(funded.status().is_success());
    let start = Instant::now();
    while ok(url, token, "Filecoin.WalletBalance", json!([addr])).await == json!("0") {
        assert!(start.elapsed() < DEADLINE, "the faucet's money never arrived");
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until the channel's `Filecoin.PaychStatus` satisfies `done`.
async fn until_status(
    url: &str,
    token: &str,
    channel: &Value,
    what: &str,
    done: impl Fn(&Value) -> bool,
) {
    let start = Instant::now();
    loop {
        let status = ok(url, token, "Filecoin.PaychStatus", json!([channel])).await;
        if done(&status) {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "{what}: {status}");
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
    let (payee_url, payee_token) = api_of(&payee_repo);
    let payee_addr = ok(&payee_url, &payee_token, "Filecoin.WalletDefaultAddress", json!([])).await;
    let payee_addr = payee_addr.as_str().unwrap().to_owned();
    let listen = ok(&payee_url, &payee_token, "Filecoin.NetAddrsListen", json!([])).await;
    let peer = format!(
        "{}={}/p2p/{}",
        payee_addr,
        listen["Addrs"][0].as_str().unwrap(),
        listen["ID"].as_str().unwrap()
    );

    let payer_repo = dir.path().join("payer");
    let _payer = start_daemon(PAYCH, &payer_repo, &info, &[peer]);
    let (payer_url, payer_token) = api_of(&payer_repo);
    let payer_addr = ok(&payer_url, &payer_token, "Filecoin.WalletDefaultAddress", json!([])).await;

    // Fund the payer from the devnet's faucet and wait for the money.
    faucet(&devnet_url, &payer_url, &payer_token, &payer_addr).await;

    let got =
        ok(&payer_url, &payer_token, "Filecoin.PaychGet", json!([payer_addr, payee_addr, "1000"]))
            .await;
    let channel =
        ok(&payer_url, &payer_token, "Filecoin.PaychGetWaitReady", json!([got["WaitSentinel"]]))
            .await;

    let paid =
        ok(&payer_url, &payer_token, "Filecoin.PaychPay", json!([channel, "10", "flow-1"])).await;
    assert_eq!(paid["Status"], "Accepted", "{paid}");
    assert_eq!((&paid["Delta"], &paid["LaneAmount"]), (&json!("10"), &json!("10")), "{paid}");
    let again =
        ok(&payer_url, &payer_token, "Filecoin.PaychPay", json!([channel, "5", "flow-1"])).await;
    assert_eq!((&again["Delta"], &again["LaneAmount"]), (&json!("5"), &json!("15")), "{again}");
    assert_eq!(again["Lane"], paid["Lane"]);

    // The payee holds the voucher.
    let vouchers =
        ok(&payee_url, &payee_token, "Filecoin.PaychVoucherList", json!([channel])).await;
    assert_eq!(vouchers.as_array().map(Vec::len), Some(2), "{vouchers}");
    assert_eq!(
        ok(&payee_url, &payee_token, "Filecoin.PaychList", json!([])).await,
        json!([channel])
    );

    // Reconciliation over the API: a second flow, both lanes redeemed by the payee, more
    // paid on each, then one combined voucher from the payer — found through the peer
    // record it announced with its first payment.
    let other =
        ok(&payer_url, &payer_token, "Filecoin.PaychPay", json!([channel, "7", "flow-2"])).await;
    assert_ne!(other["Lane"], paid["Lane"]);
    faucet(&devnet_url, &payee_url, &payee_token, &json!(payee_addr)).await;
    let best =
        ok(&payee_url, &payee_token, "Filecoin.PaychVoucherBestSpendable", json!([channel])).await;
    for voucher in best.as_array().unwrap() {
        ok(
            &payee_url,
            &payee_token,
            "Filecoin.PaychVoucherSubmit",
            json!([channel, voucher, null, null]),
        )
        .await;
    }
    let redeemed = |status: &Value, lane: &Value| {
        status["Lanes"]
            .as_array()
            .and_then(|lanes| lanes.iter().find(|l| &l["Lane"] == lane))
            .map(|l| l["RedeemedOnChain"].clone())
    };
    until_status(&payee_url, &payee_token, &channel, "the lanes were never redeemed", |status| {
        redeemed(status, &paid["Lane"]) == Some(json!("15"))
            && redeemed(status, &other["Lane"]) == Some(json!("7"))
    })
    .await;
    for flow in ["flow-1", "flow-2"] {
        let more =
            ok(&payer_url, &payer_token, "Filecoin.PaychPay", json!([channel, "5", flow])).await;
        assert_eq!(more["Status"], "Accepted", "{more}");
    }
    // Read permission is not enough.
    let refused = call(&payee_url, None, "Filecoin.PaychReconcile", json!([channel])).await;
    assert!(refused["error"]["message"].as_str().unwrap().contains("need 'write'"), "{refused}");
    let reconciled =
        ok(&payee_url, &payee_token, "Filecoin.PaychReconcile", json!([channel])).await;
    assert_eq!(reconciled["Status"], "Success", "{reconciled}");
    assert_eq!(reconciled["ReqVal"], "32", "{reconciled}");
    assert_eq!(reconciled["Vouchers"], 2, "{reconciled}");
    assert_eq!(reconciled["Combined"]["Amount"], "32", "{reconciled}");
    assert_eq!(reconciled["Combined"]["Merges"].as_array().map(Vec::len), Some(1));
    assert!(reconciled["CombinedText"].as_str().unwrap().starts_with('i'), "{reconciled}");
    let lane = reconciled["Combined"]["Lane"].clone();
    ok(
        &payee_url,
        &payee_token,
        "Filecoin.PaychVoucherSubmit",
        json!([channel, reconciled["Combined"], null, null]),
    )
    .await;
    until_status(
        &payee_url,
        &payee_token,
        &channel,
        "the combined voucher never landed",
        |status| redeemed(status, &lane) == Some(json!("32")),
    )
    .await;
    // The payer closed both lanes.
    let status = ok(&payer_url, &payer_token, "Filecoin.PaychStatus", json!([channel])).await;
    for lane in [&paid["Lane"], &other["Lane"]] {
        let closed = status["Lanes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| &l["Lane"] == lane && l["Closed"] == json!(true));
        assert!(closed, "{status}");
    }
}
