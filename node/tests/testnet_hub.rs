//! `paych testnet --hub` end to end: a devnet, provider, client and hub daemons as real
//! processes, every chunk paid through the hub with the provider's invoice, then settlement
//! and collection; the report's invariants must hold — the hub's balance changes by its fees
//! less its gas, every provider is paid what its payers' receipts say, nobody loses money —
//! also when the hub or a provider is killed with SIGKILL while routes are in flight, and
//! when every link between daemons crosses a latency relay (`--wan`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

use serde_json::Value;

const CLIENTS: u64 = 3;
const PROVIDERS: u64 = 2;
const RETRIEVALS: u64 = 8;
const CHUNKS: u64 = 2;

fn hub_testnet(extra: &[&str]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_paych"))
        .args(["testnet", "--hub", "--json", "--block-time", "200ms", "--chunk-size", "1024"])
        .args(["--clients", &CLIENTS.to_string(), "--providers", &PROVIDERS.to_string()])
        .args(["--retrievals", &RETRIEVALS.to_string(), "--chunks", &CHUNKS.to_string()])
        .arg("--keep")
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
    let names: Vec<&str> = report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    for expected in [
        "the hub's balance changed by its fees less its gas",
        "provider-0 was paid exactly what its payers' receipts say",
        "nobody lost money: every payment a client made paid its provider and the hub its fee",
        "every channel was settled and collected",
    ] {
        assert!(names.contains(&expected), "{expected} not checked: {names:?}");
    }
}

#[test]
fn a_hub_testnet_routes_every_chunk_through_c_plus_p_channels_and_keeps_its_invariants() {
    let report = hub_testnet(&[]);
    assert_invariants(&report);
    let hub = &report["hub"];
    assert_eq!(report["nodes"], CLIENTS + PROVIDERS + 1);
    assert_eq!(hub["channels_opened"], CLIENTS + PROVIDERS, "{report:#}");
    assert_eq!(hub["channels_direct"], CLIENTS * PROVIDERS, "{report:#}");
    assert_eq!(hub["routed_payments"], RETRIEVALS * CHUNKS, "{report:#}");
    assert_eq!(hub["failed_attempts"], 0, "{report:#}");
    assert_eq!(report["retrievals"], RETRIEVALS);
    let fees: u128 = hub["fees_atto"].as_str().unwrap().parse().unwrap();
    assert!(fees > 0, "{report:#}");
    for field in ["routed_payments_per_sec", "routed_latency_p50_us", "routed_latency_p99_us"] {
        assert!(hub[field].as_f64().unwrap() > 0.0, "{field}: {report:#}");
    }
}

#[test]
fn a_hub_killed_mid_route_comes_back_and_nobody_loses_money() {
    let report = hub_testnet(&["--crash", "hub"]);
    assert_invariants(&report);
    assert!(report["crash"].as_str().unwrap().contains("hub killed with SIGKILL"), "{report:#}");
    assert_eq!(report["hub"]["routed_payments"], RETRIEVALS * CHUNKS, "{report:#}");
}

#[test]
fn a_payee_killed_mid_route_comes_back_and_nobody_loses_money() {
    let report = hub_testnet(&["--crash", "provider-0"]);
    assert_invariants(&report);
    assert!(report["crash"].as_str().unwrap().contains("provider-0 killed"), "{report:#}");
    assert_eq!(report["hub"]["routed_payments"], RETRIEVALS * CHUNKS, "{report:#}");
}

#[test]
fn a_wan_hub_testnet_routes_every_chunk_across_relays_and_keeps_its_invariants() {
    let report = hub_testnet(&["--wan", "20ms"]);
    assert_invariants(&report);
    let names: Vec<&str> = report["invariants"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect();
    assert!(names.contains(&"every connection between daemons crossed a relay"), "{names:?}");
    assert_eq!(report["wan"]["delay_ms"], 20.0, "{report:#}");
    assert_eq!(report["hub"]["routed_payments"], RETRIEVALS * CHUNKS, "{report:#}");
}

#[test]
fn the_hub_can_be_crashed_only_in_a_hub_testnet() {
    let output = Command::new(env!("CARGO_BIN_EXE_paych"))
        .args(["testnet", "--crash", "hub", "--retrievals", "2"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no such node"));
}
