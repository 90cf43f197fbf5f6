//! `paych testnet` end to end: a devnet, provider and client daemons as real processes,
//! paid retrievals, reconciliation, settlement and collection; the report's invariants
//! must hold, also when a daemon is killed with SIGKILL in the middle and restarted, and
//! when every link between daemons crosses a relay with a wide-area delay (`--wan`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

fn testnet(extra: &[&str]) -> Value {
    testnet_of(&["--clients", "2", "--providers", "2", "--retrievals", "16"], extra)
}

/// A testnet of `size` (clients, providers, retrievals) with `extra` arguments: its report.
fn testnet_of(size: &[&str], extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_paych"))
        .args(["testnet", "--json"])
        .args(size)
        .args(["--chunks", "4", "--chunk-size", "4096", "--block-time", "200ms", "--keep"])
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
    for field in [
        "payments_per_sec",
        "latency_p50_us",
        "latency_p99_us",
        "chain_messages",
        "retrieval_mb_per_sec_p50",
        "retrieval_mb_per_sec_min",
        "first_byte_p50_us",
        "first_byte_p99_us",
    ] {
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
fn a_wan_testnet_crosses_a_relay_on_every_link_and_waits_a_round_trip_for_the_first_byte() {
    let delay_ms = 20;
    let report = testnet_of(
        &["--clients", "2", "--providers", "1", "--retrievals", "8"],
        &["--wan", &format!("{delay_ms}ms")],
    );
    // Among them: every connection between daemons ended at a relay or came in from a
    // daemon's own 127.0.0.N.
    assert_invariants(&report);
    let crossed = report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .any(|i| i["name"].as_str().unwrap().contains("crossed a relay"));
    assert!(crossed, "{report:#}");
    assert_eq!(report["wan"]["delay_ms"], delay_ms as f64, "{report:#}");
    assert_eq!(report["retrievals"], 8);
    // A reconciliation (the payee dialling its payer back) crossed the relays too.
    assert!(report["reconciled_channels"].as_u64().unwrap() > 0, "{report:#}");
    // The first checked chunk needs at least the request and its answer: one round trip.
    let first_byte = report["first_byte_p50_us"].as_u64().unwrap();
    assert!(first_byte >= 2 * delay_ms * 1000, "first byte after {first_byte} µs: {report:#}");
    assert!(report["retrieval_mb_per_sec_min"].as_f64().unwrap() > 0.0, "{report:#}");
}

#[test]
fn bad_arguments_are_refused() {
    for args in [
        &["testnet", "--clients", "0"][..],
        &["testnet", "--price-per-chunk", "lots"],
        &["testnet", "--block-time", "1 fortnight"],
        &["testnet", "--crash", "nobody", "--retrievals", "2"],
        &["testnet", "--wan", "20"],
        &["testnet", "--wan", "20ms,1ms,0"],
        &["testnet", "--wan", "20ms", "--clients", "300"],
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_paych")).args(args).output().unwrap();
        assert!(!output.status.success(), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?}");
    }
}
