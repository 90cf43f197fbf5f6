//! `paych bench --route` end to end: routed payments between a payer, a hub and a payee in
//! one process, beside direct payments measured in the same run, printed as JSON with the
//! ratios of the two (measured, never asserted against a target).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn bench_route_prints_routed_and_direct_figures_as_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_paych"))
        .args(["bench", "--route", "--json", "--payments", "20", "--in-flight", "4"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for field in [
        "routed_payments_per_sec",
        "routed_p50_us",
        "routed_p99_us",
        "direct_payments_per_sec",
        "direct_p50_us",
        "direct_p99_us",
        "routed_vs_direct_payments_per_sec",
        "routed_vs_direct_p50",
    ] {
        let value = report[field].as_f64().unwrap_or_else(|| panic!("{field} missing: {report}"));
        assert!(value > 0.0 && value.is_finite(), "{field} = {value}: {report}");
    }
    assert_eq!(report["payments"], 20);
    assert_eq!(report["route"], true);
    let fee: u128 = report["fee_atto"].as_str().unwrap().parse().unwrap();
    assert!(fee > 0, "{report}");
}
