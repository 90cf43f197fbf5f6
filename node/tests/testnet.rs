//! `paych testnet` end to end: a devnet, provider and client daemons as real processes,
//! paid retrievals, reconciliation, settlement and collection; the report's invariants
//! must hold, also when a daemon is killed with SIGKILL in the middle and restarted.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

fn testnet(extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_paych"))
        .args([
            "testnet",
            "--json",
            "--clients",
            "2",
            "--providers",
            "2",
            "--retrievals",
            "16",
            "--chunks",
            "4",
            "--chunk-size",
            "4096",
            "--block-time",
            "200ms",
            "--keep",
        ])
        .arg(dir.path())
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}); status {}; stderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(output.status.success(), "{report:#}");
    report
}

fn assert_invariants(report: &Value) {
    assert_eq!(report["invariants_ok"], true, "{report:#}");
    for invariant in report["invariants"].as_array().unwrap() {
        assert_eq!(invariant["ok"], true, "{invariant}");
    }
}

#[test]
fn a_small_testnet_completes_with_its_invariants() {
    let report = testnet(&[]);
    assert_invariants(&report);
    assert_eq!(report["nodes"], 4);
    assert_eq!(report["channels"], 4);
    assert_eq!(report["retrievals"], 16);
    // Every retrieval paid with one voucher or more: a retrieval pays its checked chunks
    // while more arrive, so one voucher may pay for several.
    let payments = report["payments"].as_u64().unwrap();
    assert!((16..=16 * 4).contains(&payments), "{report:#}");
    assert_eq!(report["bytes"], 16 * 4 * 4096);
    // Two retrievals ran together on each channel, so each had two lanes to fold.
    assert!(report["reconciled_channels"].as_u64().unwrap() > 0, "{report:#}");
    for field in ["payments_per_sec", "latency_p50_us", "latency_p99_us", "chain_messages"] {
        assert!(report[field].as_f64().unwrap() > 0.0, "{field}: {report:#}");
    }
    let messages = report["chain_messages"].as_u64().unwrap();
    assert!(messages < report["chain_messages_one_per_payment"].as_u64().unwrap(), "{report:#}");
    assert!(messages <= report["chain_messages_one_per_lane"].as_u64().unwrap(), "{report:#}");
    assert!(report["gas_burnt_atto"].as_str().unwrap().parse::<u128>().unwrap() > 0);
    // The settler channel was redeemed by the provider's settler after the client settled.
    assert!(report["settler_submissions"].as_u64().unwrap() > 0, "{report:#}");
}

#[test]
fn a_provider_killed_mid_run_comes_back_and_the_run_completes() {
    let report = testnet(&["--crash", "provider-0"]);
    assert_invariants(&report);
    let crash = report["crash"].as_str().unwrap();
    assert!(crash.contains("provider-0 killed with SIGKILL"), "{crash}");
    assert_eq!(report["retrievals"], 16);
}

#[test]
fn a_client_killed_mid_run_comes_back_and_the_run_completes() {
    let report = testnet(&["--crash", "client-1"]);
    assert_invariants(&report);
    assert!(report["crash"].as_str().unwrap().contains("client-1"), "{report:#}");
}

#[test]
fn bad_arguments_are_refused() {
    for args in [
        &["testnet", "--clients", "0"][..],
        &["testnet", "--price-per-chunk", "lots"],
        &["testnet", "--block-time", "1 fortnight"],
        &["testnet", "--crash", "nobody", "--retrievals", "2"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_paych")).args(args).output().unwrap();
        assert!(!output.status.success(), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?}");
    }
}
