//! The `paych` binary as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const VOUCHER: &str = "i0MA6QcAAED2AAFJAA3gtrOnZAAAAIBYQgE2VQw-i10-Wh8MhWzNgp0p72vHLI787C7Ne7C0uEbvyRvw1FLqSSOyowC3r5hlzQLOQHuvoZosfb7DuKKl_oCFAQ";

fn paych(args: &[&str]) -> std::process::Output {
    Command::new(PAYCH).args(args).output().unwrap()
}

#[test]
fn voucher_decode_prints_the_fields_of_a_lotus_voucher() {
    let out = paych(&["voucher", "decode", VOUCHER]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Channel          t01001\n"), "{text}");
    assert!(text.contains("Lane             0\n"), "{text}");
    assert!(text.contains("Nonce            1\n"), "{text}");
    assert!(text.contains("Amount           1 FIL (1000000000000000000 attoFIL)\n"), "{text}");
    assert!(text.contains("Signature        secp256k1 36550c3e"), "{text}");
}

#[test]
fn voucher_decode_explains_a_bad_voucher_and_fails() {
    let out = paych(&["voucher", "decode", "not-a-voucher"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot decode the voucher"), "{err}");
    assert!(err.contains("CBOR") || err.contains("base64"), "{err}");
}

// ---------------------------------------------------------------------------------------
// The client commands against live daemons: a `paych devnet` shared by a payer daemon and
// a payee daemon, each driven only through `paych … --repo`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use paych_testkit::daemon::{
    http_base, rpc_url, start_daemon, start_devnet_mining, wait_for, Running,
};
use paych_testkit::deadline::wait_until;

const PAYCH: &str = env!("CARGO_BIN_EXE_paych");

/// The output of a `paych` run, its status checked.
struct Ran {
    ok: bool,
    stdout: String,
    stderr: String,
}

/// `paych ARGS --repo REPO`, its standard output and error piped.
fn paych_in(repo: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(PAYCH);
    command
        .args(args)
        .arg("--repo")
        .arg(repo)
        .env_remove("PAYCH_PATH")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn run_in(repo: &Path, args: &[&str], stdin: Option<&str>) -> Ran {
    let mut child = paych_in(repo, args).stdin(Stdio::piped()).spawn().unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        if let Some(text) = stdin {
            input.write_all(text.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    Ran {
        ok: out.status.success(),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

/// Runs `paych ARGS --repo REPO` and returns its standard output; it must succeed.
fn ok_in(repo: &Path, args: &[&str]) -> String {
    let ran = run_in(repo, args, None);
    assert!(ran.ok, "paych {args:?} failed: {}", ran.stderr);
    assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
    ran.stdout
}

/// Runs `paych ARGS --repo REPO`; it must fail with a message containing `expected`.
fn fails_in(repo: &Path, args: &[&str], expected: &str) {
    let ran = run_in(repo, args, None);
    assert!(!ran.ok, "paych {args:?} succeeded: {}", ran.stdout);
    assert!(ran.stderr.contains(expected), "paych {args:?}: {}", ran.stderr);
    assert!(!ran.stderr.contains("panicked"), "{}", ran.stderr);
}

/// A devnet and two daemons: the payer knows where the payee listens, and holds 10 FIL.
struct Pair {
    _dir: tempfile::TempDir,
    payer: PathBuf,
    payee: PathBuf,
    payer_addr: String,
    payee_addr: String,
    /// The devnet's JSON-RPC endpoint.
    devnet_url: String,
    /// The payer's daemon, the payee's and the devnet, in that order.
    daemons: Vec<Running>,
}

/// Calls the devnet's `method` with `params` (a JSON array); answers its result.
fn devnet_call(url: &str, method: &str, params: serde_json::Value) -> serde_json::Value {
    let client = paych_node::rpc::client::ApiClient::new(url.to_owned(), None);
    let params = params.as_array().cloned().unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(client.call_raw(method, params)).unwrap_or_else(|e| panic!("{method}: {e}"))
}

/// A pair on a devnet mining every 100 ms.
fn pair() -> Pair {
    pair_mining("100ms")
}

/// A pair on a devnet mining every `block_time` (`0s`: only when a test mines).
fn pair_mining(block_time: &str) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let (devnet, info) = start_devnet_mining(PAYCH, block_time, &[]);

    let payee = dir.path().join("payee");
    let payee_daemon = start_daemon(PAYCH, &payee, &info, &[]);
    let payee_addr = ok_in(&payee, &["wallet", "list"]);
    let payee_addr = default_address(&payee_addr);
    let listen = ok_in(&payee, &["net", "listen"]);
    let listen = listen.lines().next().unwrap().to_owned();
    assert!(listen.contains("/p2p/12D3KooW"), "{listen}");

    let payer = dir.path().join("payer");
    let payer_daemon = start_daemon(PAYCH, &payer, &info, &[format!("{payee_addr}={listen}")]);
    let payer_addr = default_address(&ok_in(&payer, &["wallet", "list"]));

    // 10 FIL from the devnet's faucet for the payer, 1 FIL (for gas) for the payee, mined
    // in one epoch.
    let devnet_url = rpc_url(&info);
    for (addr, atto) in
        [(&payer_addr, "10000000000000000000"), (&payee_addr, "1000000000000000000")]
    {
        devnet_call(&devnet_url, "Devnet.Faucet", serde_json::json!([addr, atto]));
    }
    devnet_call(&devnet_url, "Devnet.Mine", serde_json::json!([1]));
    wait_until("the faucet's money never arrived", Duration::from_millis(100), || {
        let payer_funded = ok_in(&payer, &["wallet", "balance"]) == "10 FIL\n";
        (payer_funded && ok_in(&payee, &["wallet", "balance"]) == "1 FIL\n").then_some(())
    });
    Pair {
        _dir: dir,
        payer,
        payee,
        payer_addr,
        payee_addr,
        devnet_url,
        daemons: vec![payer_daemon, payee_daemon, devnet],
    }
}

/// `rows` as printed lines, each ended by a newline.
fn lines(rows: &[&str]) -> String {
    rows.iter().map(|row| format!("{row}\n")).collect()
}

/// The address marked default in `paych wallet list`'s output.
fn default_address(list: &str) -> String {
    let mut lines = list.lines();
    assert!(lines.next().unwrap().starts_with("Address"), "{list}");
    let row = lines.find(|l| l.trim_end().ends_with(" X")).unwrap_or_else(|| panic!("{list}"));
    let addr = row.split_whitespace().next().unwrap().to_owned();
    assert!(addr.starts_with("t1"), "{list}");
    addr
}

/// A `/metrics` scrape of the daemon on `repo`.
fn metrics(repo: &Path) -> String {
    let url = format!("{}/metrics", http_base(&wait_for(&repo.join("api"))));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let response = reqwest::get(&url).await.unwrap();
        assert!(response.status().is_success(), "{url}: {}", response.status());
        response.text().await.unwrap()
    })
}

/// The value of the sample `name` (with its labels, as written) in a scrape.
fn sample(scrape: &str, name: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn cli_drives_a_payer_and_a_payee_daemon() {
    let p = pair();
    let (payer, payee) = (p.payer.as_path(), p.payee.as_path());

    // Wallet.
    let created = ok_in(payer, &["wallet", "new"]);
    let created = created.trim().to_owned();
    assert!(created.starts_with("t1"), "{created}");
    let list = ok_in(payer, &["wallet", "list"]);
    assert!(list.contains(&created) && list.contains(&p.payer_addr), "{list}");
    assert!(list.lines().any(|l| l.starts_with(&p.payer_addr) && l.contains("10 FIL")), "{list}");
    assert_eq!(ok_in(payer, &["wallet", "balance", &created]), "0 FIL\n");
    let exported = ok_in(payer, &["wallet", "export", &created]);
    assert!(exported.trim().chars().all(|c| c.is_ascii_hexdigit()), "{exported}");
    let imported = run_in(payee, &["wallet", "import"], Some(&exported));
    assert!(imported.ok, "{}", imported.stderr);
    assert_eq!(imported.stdout, format!("imported key {created} successfully!\n"));
    let key_file = p.payee.join("exported.key");
    std::fs::write(&key_file, &exported).unwrap();
    let again = ok_in(payee, &["wallet", "import", key_file.to_str().unwrap()]);
    assert!(again.contains(&created), "{again}");
    assert!(ok_in(payee, &["wallet", "list"]).contains(&created));

    // Net: the payer connects to the payee.
    let listen = ok_in(payee, &["net", "listen"]);
    let target = listen.lines().next().unwrap();
    let peer_id = target.rsplit('/').next().unwrap();
    assert_eq!(ok_in(payer, &["net", "connect", target]), format!("connect {peer_id}: success\n"));
    let peers = ok_in(payer, &["net", "peers"]);
    assert!(
        peers.lines().any(|l| l.starts_with(&format!("{peer_id}, [/ip4/127.0.0.1/tcp/"))),
        "{peers}"
    );

    // The payer opens a channel with 1 FIL.
    let channel = ok_in(payer, &["add-funds", &p.payer_addr, &p.payee_addr, "1"]);
    let channel = channel.trim().to_owned();
    assert!(channel.starts_with("t2"), "{channel}");
    assert_eq!(ok_in(payer, &["list"]), format!("{channel}\n"));
    // `paych status` and `status-by-from-to` print Lotus's `paychStatus` rows.
    let exists = lines(&[
        "Channel exists",
        &format!("  Channel:               {channel}"),
        &format!("  From:                  {}", p.payer_addr),
        &format!("  To:                    {}", p.payee_addr),
        "  Confirmed Amt:         1 FIL",
        "  Available Amt:         1 FIL",
        "  Voucher Redeemed Amt:  0 FIL",
        "  Pending Amt:           0 FIL",
        "  Pending Available Amt: 1 FIL",
        "  Queued Amt:            0 FIL",
    ]);
    assert_eq!(ok_in(payer, &["status", &channel]), exists);
    assert_eq!(ok_in(payer, &["status-by-from-to", &p.payer_addr, &p.payee_addr]), exists);
    let verbose = ok_in(payer, &["status", &channel, "--verbose"]);
    assert!(verbose.starts_with(&exists), "{verbose}");
    assert!(verbose.contains("\nDetails\n  Direction:    outbound\n"), "{verbose}");

    // Reserve and release.
    assert_eq!(
        ok_in(payer, &["reserve", &channel, "0.25"]),
        format!("Reserved 0.25 FIL on channel {channel}\n")
    );
    let status = ok_in(payer, &["status", &channel]);
    assert!(status.contains("  Available Amt:         0.75 FIL\n"), "{status}");
    let verbose = ok_in(payer, &["status", &channel, "--verbose"]);
    assert!(verbose.contains("  Reserved Amt: 0.25 FIL\n"), "{verbose}");
    assert_eq!(
        ok_in(payer, &["release", &channel, "250 milliFIL"]),
        format!("Released 0.25 FIL on channel {channel}\n")
    );
    assert_eq!(ok_in(payer, &["status", &channel]), exists);

    // A voucher created by hand on lane 7, then two payments over libp2p on a flow.
    let voucher = ok_in(payer, &["voucher", "create", &channel, "0.1", "--lane", "7"]);
    let voucher = voucher.trim().to_owned();
    assert!(voucher.starts_with('i'), "{voucher}");
    let decoded = ok_in(payer, &["voucher", "decode", &voucher]);
    assert!(decoded.contains("Lane             7\n"), "{decoded}");
    let paid = ok_in(payer, &["pay", &channel, "0.2", "--flow", "retrieval-1"]);
    let first_paid = paid.lines().nth(1).unwrap().to_owned();
    let summary = paid.lines().next().unwrap();
    assert!(summary.starts_with("Accepted: paid 0.2 FIL on lane "), "{paid}");
    assert!(summary.ends_with("; the lane now holds 0.2 FIL"), "{paid}");
    let paid_lane: u64 = summary
        .trim_start_matches("Accepted: paid 0.2 FIL on lane ")
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let paid =
        ok_in(payer, &["pay", &channel, "50000000000000000 attoFIL", "--flow", "retrieval-1"]);
    assert!(
        paid.starts_with(&format!(
            "Accepted: paid 0.05 FIL on lane {paid_lane}; the lane now holds 0.25 FIL\n"
        )),
        "{paid}"
    );
    let last_paid = paid.lines().nth(1).unwrap().to_owned();
    let status = ok_in(payer, &["status", &channel, "--verbose"]);
    assert!(status.contains("  Lanes:\n"), "{status}");
    assert!(status.contains(&format!("    Lane {paid_lane}, Nonce 2: 0.25 FIL")), "{status}");
    // Voucher lines print FIL as Lotus's `types.FIL` does.
    let payer_vouchers = ok_in(payer, &["voucher", "list", &channel]);
    assert!(payer_vouchers.contains("Lane 7, Nonce 1: 0.1 FIL\n"), "{payer_vouchers}");

    // The payee: the paid vouchers arrived; it checks and adds the hand-made one.
    assert_eq!(ok_in(payee, &["list"]), format!("{channel}\n"));
    let inbound = ok_in(payee, &["status", &channel, "--verbose"]);
    assert!(inbound.contains("  Direction:    inbound\n"), "{inbound}");
    let held = ok_in(payee, &["voucher", "list", &channel]);
    assert_eq!(
        held,
        format!("Lane {paid_lane}, Nonce 1: 0.2 FIL\nLane {paid_lane}, Nonce 2: 0.25 FIL\n")
    );
    let exported = ok_in(payee, &["voucher", "list", &channel, "--export"]);
    assert_eq!(
        exported,
        format!(
            "Lane {paid_lane}, Nonce 1: 0.2 FIL; {first_paid}\n\
             Lane {paid_lane}, Nonce 2: 0.25 FIL; {last_paid}\n"
        )
    );
    assert_eq!(ok_in(payee, &["voucher", "check", &channel, &voucher]), "voucher is valid\n");
    assert_eq!(
        ok_in(payee, &["voucher", "add", &channel, &voucher]),
        "added voucher for lane 7 nonce 1: delta 0.1 FIL\n"
    );
    // best-spendable prints the vouchers themselves only with `--export`, as Lotus does.
    let (low, high) = if paid_lane < 7 { (paid_lane, 7) } else { (7, paid_lane) };
    let best_lines = |export: bool| {
        let line = |lane: u64| match (lane == 7, export) {
            (true, false) => "Lane 7, Nonce 1: 0.1 FIL\n".to_owned(),
            (true, true) => format!("Lane 7, Nonce 1: 0.1 FIL; {voucher}\n"),
            (false, false) => format!("Lane {lane}, Nonce 2: 0.25 FIL\n"),
            (false, true) => format!("Lane {lane}, Nonce 2: 0.25 FIL; {last_paid}\n"),
        };
        format!("{}{}", line(low), line(high))
    };
    assert_eq!(ok_in(payee, &["voucher", "best-spendable", &channel]), best_lines(false));
    assert_eq!(
        ok_in(payee, &["voucher", "best-spendable", &channel, "--export"]),
        best_lines(true)
    );
    // `voucher submit` waits for its message and prints Lotus's line.
    let submitted = run_in(payee, &["voucher", "submit", &channel, &last_paid], None);
    assert!(submitted.ok, "{}", submitted.stderr);
    assert_eq!(submitted.stdout, "channel updated successfully\n");
    assert!(submitted.stderr.starts_with("waiting for message bafy"), "{}", submitted.stderr);
    // A voucher already submitted is refused, with the daemon's reason.
    fails_in(payee, &["voucher", "submit", &channel, &last_paid], "submitted");

    // Reconciliation needs two lanes on chain; here only one has been redeemed, so the
    // daemon says there is nothing to reconcile, and the command says so.
    let reconciled = run_in(payee, &["reconcile", &channel], None);
    assert!(!reconciled.ok, "{}", reconciled.stdout);
    assert!(reconciled.stderr.starts_with("Error: "), "{}", reconciled.stderr);
    assert!(reconciled.stderr.contains("nothing to reconcile"), "{}", reconciled.stderr);

    // Settle waits for its message, showing the epoch on standard error, and prints
    // Lotus's line.
    let settled = run_in(payer, &["settle", &channel], None);
    assert!(settled.ok, "{}", settled.stderr);
    assert_eq!(settled.stdout, format!("Settled channel {channel}\n"));
    let progress = settled.stderr.lines().next().unwrap_or_default();
    assert!(progress.starts_with("waiting for message bafy"), "{}", settled.stderr);
    assert!(progress.contains(" (epoch "), "{}", settled.stderr);
    // Collecting before the settlement delay has passed: the actor refuses (forbidden, 18)
    // and the command says so with the exit code, as Lotus does.
    fails_in(
        payer,
        &["collect", &channel],
        "Error: collect message execution failed (exit code 18)",
    );
}

#[test]
fn metrics_count_a_payment_on_both_daemons() {
    let p = pair();
    let before_payer = metrics(&p.payer);
    let before_payee = metrics(&p.payee);
    assert!(before_payer.contains("# TYPE paych_api_calls counter"), "{before_payer}");
    let channel = ok_in(&p.payer, &["add-funds", &p.payer_addr, &p.payee_addr, "1"]);
    let channel = channel.trim().to_owned();
    ok_in(&p.payer, &["pay", &channel, "0.5"]);

    let payer = metrics(&p.payer);
    let payee = metrics(&p.payee);
    let sent = r#"paych_vouchers_sent_total{status="accepted"}"#;
    let received = r#"paych_vouchers_received_total{status="accepted"}"#;
    assert_eq!(sample(&payer, sent) - sample(&before_payer, sent), 1.0, "{payer}");
    assert_eq!(sample(&payee, received) - sample(&before_payee, received), 1.0, "{payee}");
    assert!(sample(&payer, "paych_sent_attofil_total") >= 5e17, "{payer}");
    assert!(sample(&payee, "paych_received_attofil_total") >= 5e17, "{payee}");
    let pay_calls = r#"paych_api_calls_total{method="Filecoin.PaychPay"}"#;
    assert_eq!(sample(&payer, pay_calls) - sample(&before_payer, pay_calls), 1.0, "{payer}");
    assert!(sample(&payer, r#"paych_chain_messages_total{purpose="create"}"#) >= 1.0, "{payer}");
    let created = r#"paych_chain_message_outcomes_total{purpose="create",outcome="executed"}"#;
    assert!(sample(&payer, created) >= 1.0, "{payer}");
    assert!(sample(&payer, "paych_libp2p_peers") >= 1.0, "{payer}");
    assert!(sample(&payee, "paych_libp2p_connections") >= 1.0, "{payee}");
}

#[test]
fn bad_input_and_no_daemon_fail_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    fails_in(repo, &["list"], "start one with `paych daemon`");
    fails_in(repo, &["wallet", "list"], "start one with `paych daemon`");
    fails_in(repo, &["reserve", "t01001", "lots"], "1.5 FIL");
    fails_in(repo, &["pay", "t01001", "-1"], "attoFIL");
    fails_in(repo, &["status", "x01001"], "t1…");
    fails_in(repo, &["add-funds", "t1nope", "t01002", "1"], "address");
    fails_in(repo, &["voucher", "check", "t01001", "not-a-voucher"], "paych voucher create");
    fails_in(repo, &["net", "connect", "nonsense"], "start one with `paych daemon`");
    // `--repo` before the command, as `lotus --repo`, names the repo too.
    let before = Command::new(PAYCH)
        .arg("--repo")
        .arg(repo)
        .arg("list")
        .env_remove("PAYCH_PATH")
        .output()
        .unwrap();
    assert!(!before.status.success());
    let stderr = String::from_utf8(before.stderr).unwrap();
    assert!(
        stderr.contains(&format!("no paych daemon is running on the repo {}", repo.display())),
        "{stderr}"
    );
    // A stale api file (the daemon died): the client cannot reach it and says so.
    std::fs::write(repo.join("api"), "/ip4/127.0.0.1/tcp/1/http").unwrap();
    fails_in(repo, &["list"], "start one with `paych daemon`");
    std::fs::write(repo.join("api"), "garbage").unwrap();
    fails_in(repo, &["list"], "expected /ip4/");
}

#[test]
fn bench_prints_its_measures_as_json() {
    let out = paych(&["bench", "--json", "--payments", "20", "--in-flight", "8"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in [
        "pipelined_payments_per_sec",
        "rtt_p50_us",
        "rtt_p99_us",
        "raw_rr_per_sec",
        "raw_rr_rtt_p50_us",
        "raw_sign_per_sec",
        "raw_recover_per_sec",
        "store_p50_us",
        "ceiling_payments_per_sec",
        "rtt_floor_us",
        "pipelined_vs_ceiling",
        "rtt_p50_vs_floor",
        "rtt_floor_two_stores_us",
        "rtt_p50_vs_two_store_floor",
    ] {
        let value = report[field].as_f64().unwrap_or_else(|| panic!("{field} missing: {report}"));
        assert!(value > 0.0 && value.is_finite(), "{field} = {value}: {report}");
    }
    assert_eq!(report["payments"], 20);
}

#[test]
fn bench_refuses_bad_options() {
    let out = paych(&["bench", "--payments", "0"]);
    assert!(!out.status.success());
    let out = paych(&["bench", "--in-flight", "many"]);
    assert!(!out.status.success());
}

#[test]
fn retrieve_needs_a_maximum_price() {
    let dir = tempfile::tempdir().unwrap();
    let root = "ab".repeat(32);
    fails_in(dir.path(), &["retrieve", "t01001", &root], "--max-price-per-chunk");
    fails_in(
        dir.path(),
        &["retrieve", "t01001", &root, "--max-price-per-chunk", "lots"],
        "1.5 FIL",
    );
    fails_in(
        dir.path(),
        &["retrieve", "t01001", &root, "--max-price-per-chunk", "10 attoFIL"],
        "start one with `paych daemon`",
    );
}

/// Opens a channel of `amount` FIL from the pair's payer to its payee; answers its address.
fn open_channel(p: &Pair, amount: &str) -> String {
    let channel = ok_in(&p.payer, &["add-funds", &p.payer_addr, &p.payee_addr, amount]);
    let channel = channel.trim().to_owned();
    assert!(channel.starts_with("t2"), "{channel}");
    channel
}

#[test]
fn voucher_create_beyond_the_channel_names_the_shortfall_in_attofil() {
    let p = pair();
    let channel = open_channel(&p, "1");
    // Lotus's words: `shortfall: N`, N in attoFIL.
    fails_in(
        &p.payer,
        &["voucher", "create", &channel, "1.5"],
        "Error: could not create voucher: insufficient funds in channel, shortfall: \
         500000000000000000",
    );
}

#[test]
fn error_texts_label_fil_amounts_fil() {
    let p = pair();
    let channel = open_channel(&p, "1");
    ok_in(&p.payer, &["reserve", &channel, "0.25"]);
    fails_in(
        &p.payer,
        &["release", &channel, "0.5"],
        "cannot release 0.5 FIL: only 0.25 FIL is reserved",
    );
}

#[test]
fn addresses_print_with_the_prefix_of_the_daemons_network() {
    let p = pair();
    let channel = open_channel(&p, "1");
    let mainnet_form = format!("f{}", &channel[1..]);
    // The daemon runs on a test network: an address typed in mainnet form prints as `t`.
    assert_eq!(
        ok_in(&p.payer, &["reserve", &mainnet_form, "0.1"]),
        format!("Reserved 0.1 FIL on channel {channel}\n")
    );
    // `--network` names the network to print for.
    assert_eq!(
        ok_in(&p.payer, &["--network", "mainnet", "release", &channel, "0.1"]),
        format!("Released 0.1 FIL on channel {mainnet_form}\n")
    );
}

#[test]
fn add_funds_on_a_message_that_never_lands_times_out_naming_the_message() {
    // A devnet that mines only when asked: the create message is pushed and never lands.
    let p = pair_mining("0s");
    let (payer, payee) = (&p.payer_addr, &p.payee_addr);
    assert_eq!(
        ok_in(&p.payer, &["status-by-from-to", payer, payee]),
        lines(&[
            "Channel does not exist",
            &format!("  From: {payer}"),
            &format!("  To:   {payee}")
        ])
    );

    let ran = run_in(&p.payer, &["add-funds", payer, payee, "1", "--timeout", "1s"], None);
    assert!(!ran.ok, "{}", ran.stdout);
    assert_eq!(ran.stdout, "");
    assert!(ran.stderr.starts_with("waiting for confirmation..\n"), "{}", ran.stderr);
    let cid =
        ran.stderr.split("waiting for message ").nth(1).unwrap_or_else(|| panic!("{}", ran.stderr));
    let cid = cid.split_whitespace().next().unwrap().to_owned();
    assert!(cid.starts_with("bafy"), "{}", ran.stderr);
    let expected = format!(
        "Error: timed out after 1s waiting for message {cid} (creating the channel from {payer} \
         to {payee}) to land on chain"
    );
    assert!(ran.stderr.contains(&expected), "{}", ran.stderr);
    assert!(!ran.stderr.contains("cannot reach"), "{}", ran.stderr);

    // The daemon is up, and tracks the channel being created by that message.
    assert_eq!(
        ok_in(&p.payer, &["status-by-from-to", payer, payee]),
        lines(&[
            "Creating channel",
            &format!("  From:          {payer}"),
            &format!("  To:            {payee}"),
            "  Pending Amt:   1 FIL",
            &format!("  Wait Sentinel: {cid}"),
        ])
    );
}

/// Runs `paych ARGS --repo REPO` against the pair's devnet that mines only when asked: once
/// the command says it waits for its message (the message is in the pool), mines `epochs`
/// epochs; answers the command's output.
fn run_mining(p: &Pair, repo: &Path, args: &[&str], epochs: u64) -> Ran {
    use std::io::{BufRead, Read};
    let mut child = paych_in(repo, args).spawn().unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("waiting for message ") {
        if stderr.read_line(&mut seen).unwrap() == 0 {
            break;
        }
    }
    devnet_call(&p.devnet_url, "Devnet.Mine", serde_json::json!([epochs]));
    stderr.read_to_string(&mut seen).unwrap();
    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    Ran { ok: child.wait().unwrap().success(), stdout, stderr: seen }
}

/// The epoch `paych status --verbose` says the channel settles at, once it says so.
fn settling_at(repo: &Path, channel: &str) -> i64 {
    wait_until("the channel never showed as settling", Duration::from_millis(100), || {
        let status = ok_in(repo, &["status", channel, "--verbose"]);
        let row = status.lines().find_map(|line| line.trim().strip_prefix("Settling:"))?;
        row.trim().strip_prefix("yes, at epoch ")?.parse().ok()
    })
}

#[test]
fn waits_name_their_message_and_collect_prints_lotus_line_after_the_delay() {
    // A devnet that mines only when asked, so that the test decides when messages land.
    let mut p = pair_mining("0s");
    let opened = run_mining(&p, &p.payer, &["add-funds", &p.payer_addr, &p.payee_addr, "1"], 6);
    assert!(opened.ok, "{}", opened.stderr);
    let channel = opened.stdout.trim().to_owned();
    assert!(channel.starts_with("t2"), "{}", opened.stdout);
    // A payment makes the channel known to the payee, which redeems it on chain.
    let paid = ok_in(&p.payer, &["pay", &channel, "0.1"]);
    let voucher = paid.lines().nth(1).unwrap();
    let submitted = run_mining(&p, &p.payee, &["voucher", "submit", &channel, voucher], 6);
    assert!(submitted.ok, "{}", submitted.stderr);
    assert_eq!(submitted.stdout, "channel updated successfully\n");

    // Funds added while no epoch is mined: the wait ends naming the message, and the status
    // shows Lotus's rows of a channel being topped up.
    let (payer, payee) = (&p.payer_addr, &p.payee_addr);
    let adding = run_in(&p.payer, &["add-funds", payer, payee, "0.5", "--timeout", "1s"], None);
    assert!(!adding.ok, "{}", adding.stdout);
    let cid = adding.stderr.split("waiting for message ").nth(1).unwrap_or_default();
    let cid = cid.split_whitespace().next().unwrap_or_default();
    let expected = format!("{cid} (adding funds to channel {channel}) to land on chain");
    assert!(adding.stderr.contains(&expected), "{}", adding.stderr);
    assert_eq!(
        ok_in(&p.payer, &["status", &channel]),
        lines(&[
            "Adding Funds to channel",
            &format!("  Channel:                 {channel}"),
            &format!("  From:                    {payer}"),
            &format!("  To:                      {payee}"),
            "  Confirmed Amt:           1 FIL",
            "  Available Amt:           0.9 FIL",
            "  Voucher Redeemed Amt:    0.1 FIL",
            "  Pending Amt:             0.5 FIL",
            "  Pending Available Amt:   1.4 FIL",
            "  Queued Amt:              0 FIL",
            &format!("  Add Funds Wait Sentinel: {cid}"),
        ])
    );

    // The settle message is pushed but no epoch is mined: the wait ends, naming it.
    let settle = run_in(&p.payer, &["settle", &channel, "--timeout", "1s"], None);
    assert!(!settle.ok, "{}", settle.stdout);
    let cid = settle.stderr.split("waiting for message ").nth(1).unwrap_or_default();
    let cid = cid.split_whitespace().next().unwrap_or_default();
    assert!(cid.starts_with("bafy"), "{}", settle.stderr);
    let expected = format!(
        "Error: timed out after 1s waiting for message {cid} (settling channel {channel}) to \
         land on chain"
    );
    assert!(settle.stderr.contains(&expected), "{}", settle.stderr);

    // It lands once mined. The payer's daemon stops, so that it does not collect by itself
    // once the delay has passed; the payee collects before its own settler would.
    devnet_call(&p.devnet_url, "Devnet.Mine", serde_json::json!([6]));
    let at = settling_at(&p.payer, &channel);
    assert_eq!(settling_at(&p.payee, &channel), at);
    drop(p.daemons.remove(0));
    let head = devnet_call(&p.devnet_url, "Devnet.Mine", serde_json::json!([1]));
    let head = head.as_i64().unwrap();
    if at > head {
        devnet_call(&p.devnet_url, "Devnet.Mine", serde_json::json!([at - head]));
    }
    let collected = run_mining(&p, &p.payee, &["collect", &channel], 6);
    assert!(collected.ok, "{}", collected.stderr);
    assert_eq!(collected.stdout, format!("Collected funds for channel {channel}\n"));
}

#[test]
fn invoice_create_prints_a_text_that_decode_reads_back_without_the_daemon() {
    let dir = tempfile::tempdir().unwrap();
    let (devnet, info) = start_devnet_mining(PAYCH, "0s", &[]);
    let repo = dir.path().join("payee");
    let daemon = start_daemon(PAYCH, &repo, &info, &[]);
    let payee = default_address(&ok_in(&repo, &["wallet", "list"]));
    let listen = ok_in(&repo, &["net", "listen"]).lines().next().unwrap().to_owned();
    let hub = format!("t01234={listen}");

    let created = ok_in(&repo, &["invoice", "create", "0.5", "--expiry", "10m", "--hub", &hub]);
    let text = created.lines().next().unwrap().to_owned();
    assert!(text.starts_with("paychinv1"), "{created}");
    assert!(created.contains(&format!("  Payee:        {payee}\n")), "{created}");
    assert!(created.contains("  Amount:       0.5 FIL\n"), "{created}");
    assert!(created.contains(&format!("  Hub:          t01234 {listen}\n")), "{created}");
    drop(daemon);
    drop(devnet);

    // No daemon: decode reads the text alone.
    let out = paych(&["invoice", "decode", &text]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let decoded = String::from_utf8(out.stdout).unwrap();
    assert!(decoded.contains(&format!("  Payee:        {payee}\n")), "{decoded}");
    assert!(decoded.contains("  Signature:    valid\n"), "{decoded}");
    assert!(decoded.contains("  State:        payable\n"), "{decoded}");
    assert!(decoded.contains("  Payee Margin: "), "{decoded}");

    // The same invoice with its amount raised: the payee's signature no longer verifies.
    let mut forged = paych_core::invoice::Invoice::from_text(&text).unwrap();
    forged.amount = paych_core::types::TokenAmount::from_whole(5);
    let out = paych(&["invoice", "decode", &forged.to_text().unwrap()]);
    let decoded = String::from_utf8(out.stdout).unwrap();
    assert!(decoded.contains("  Signature:    invalid: invoice signature: "), "{decoded}");
}

#[test]
fn invoice_commands_explain_bad_input() {
    let out = paych(&["invoice", "decode", "paychinv1NOTBASE32"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot decode the invoice"), "{err}");
    assert!(err.contains("base32"), "{err}");
    let out = paych(&["invoice", "decode", "lnbc1"]);
    assert!(String::from_utf8(out.stderr).unwrap().contains("must start with paychinv1"));
    let dir = tempfile::tempdir().unwrap();
    fails_in(dir.path(), &["invoice", "create", "1", "--hub", "nonsense"], "ADDRESS=MULTIADDR");
    fails_in(
        dir.path(),
        &["invoice", "create", "1", "--hub", "t01234=/ip4/127.0.0.1/tcp/1"],
        "/p2p/",
    );
    fails_in(dir.path(), &["invoice", "create", "1"], "start one with `paych daemon`");
}
