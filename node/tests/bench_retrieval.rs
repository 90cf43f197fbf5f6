//! `paych bench --retrieval` end to end: paid retrievals beside unpaid transfers of the same
//! bytes between a provider and a client in one process, straight over loopback and
//! through the latency relay, printed as JSON with their ratios (measured, never asserted
//! against a target).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

#[test]
fn bench_retrieval_prints_paid_and_unpaid_figures_per_link_and_chunk_size_as_json() {
    let out = Command::new(env!("CARGO_BIN_EXE_paych"))
        .args([
            "bench",
            "--retrieval",
            "--json",
            "--blob-mib",
            "1",
            "--delays",
            "0,5",
            "--chunk-sizes",
            "65536,262144",
            "--retrieval-rounds",
            "1",
            "--retrieval-min-secs",
            "0",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["retrieval"], true);
    assert_eq!(report["blob_bytes"], 1 << 20);
    let rows = report["rows"].as_array().unwrap();
    let combos: Vec<(u64, u64)> = rows
        .iter()
        .map(|r| (r["delay_ms"].as_u64().unwrap(), r["chunk_size"].as_u64().unwrap()))
        .collect();
    assert_eq!(combos, [(0, 65536), (0, 262144), (5, 65536), (5, 262144)]);
    for row in rows {
        for field in [
            "rtt_us",
            "paid_mb_s",
            "unpaid_mb_s",
            "paid_vs_unpaid_throughput",
            "paid_ttfb_us",
            "unpaid_ttfb_us",
        ] {
            let value = row[field].as_f64().unwrap_or_else(|| panic!("{field} missing: {row}"));
            assert!(value > 0.0 && value.is_finite(), "{field} = {value}: {row}");
        }
        assert!(row["vouchers_per_retrieval"].as_u64().unwrap() >= 1, "{row}");
        assert_eq!(row["rounds"], 1, "{row}");
    }
    // Through the relay, a round trip takes at least twice its delay (a lower bound).
    let relayed = &rows[2];
    assert!(relayed["rtt_us"].as_f64().unwrap() >= 10_000.0, "{relayed}");
}

#[test]
fn bench_retrieval_refuses_bad_arguments() {
    for args in [
        &["bench", "--retrieval", "--chunk-sizes", "0"][..],
        &["bench", "--retrieval", "--blob-mib", "0"],
        &["bench", "--retrieval", "--delays", "fast"],
        &["bench", "--retrieval", "--route"],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_paych")).args(args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        assert!(!out.stderr.is_empty(), "{args:?}");
    }
}
