//! Reading criterion's estimates of the current run back, so that a bench can print its
//! figures as ratios to the raw limits it measured beside them.
//!
//! Each bench compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Criterion's mean estimate (ns per iteration) of one benchmark of this run.
pub fn mean_ns(root: &Path, group: &str, function: &str, parameter: &str) -> Option<f64> {
    let dir = |s: &str| s.replace('/', "_");
    let path = root.join(group).join(dir(function)).join(dir(parameter)).join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

/// Where criterion writes its estimates.
pub fn criterion_dir() -> Option<PathBuf> {
    if let Ok(home) = std::env::var("CRITERION_HOME") {
        return Some(PathBuf::from(home));
    }
    if let Ok(target) = std::env::var("CARGO_TARGET_DIR") {
        return Some(PathBuf::from(target).join("criterion"));
    }
    // target/<profile>/deps/<bench binary>
    let exe = std::env::current_exe().ok()?;
    Some(exe.parent()?.parent()?.parent()?.join("criterion"))
}

/// How a measured ratio (`reference / ours`) reads against its target, if it has one.
pub fn verdict(ratio: f64, target: Option<f64>) -> String {
    match target {
        Some(t) if ratio >= t => format!("≥{t} ok"),
        Some(t) => format!("≥{t} MISSED"),
        None => "-".to_owned(),
    }
}
