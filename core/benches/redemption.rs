//! The redemption model's cost per lane: [`best_plan`] over a channel whose lanes each hold
//! one voucher — plain ones, or conditional ones with their secrets known — or, as a hub's or
//! a payee's inbound channel holds them after many routes, the eight latest vouchers intake
//! keeps per lane (conditional ones and their unconditional replacements in turn), beside
//! one bare `UpdateChannelState` of the actor, the step a plan runs once per lane. For the
//! routed lanes it also measures what intake runs: the plan's state alone, from the vouchers
//! as a payee holds them, by lane (`best_state_by_lane`).
//!
//! Run: `cargo bench -p paych-core --bench redemption`. After criterion's report, a table
//! prints each plan's time per lane as a multiple of the bare actor step (same run).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod estimates;

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use estimates::{criterion_dir, mean_ns};
use paych_core::actor::ChannelState;
use paych_core::crypto::blake2b_256;
use paych_core::redemption::{best_plan, best_state_by_lane, Situation};
use paych_core::types::{Address, SignedVoucher, TokenAmount};

const PAYER: u64 = 100;
const PAYEE: u64 = 101;
const CHANNEL: u64 = 102;
/// Lanes of the channels measured.
const LANES: [u64; 4] = [1, 16, 64, 256];

/// A channel holding plenty, with the secrets of `secrets`.
fn situation(secrets: HashMap<Vec<u8>, Vec<u8>>) -> Situation {
    Situation {
        state: ChannelState::new(Address::new_id(PAYER), Address::new_id(PAYEE)),
        balance: TokenAmount::from_whole(1),
        channel_id: Address::new_id(CHANNEL),
        channel_aliases: Vec::new(),
        first_epoch: 11,
        landing_window: 5,
        conditional_window: 5,
        secrets,
    }
}

/// The top voucher of `lane` (signatures are verified before a plan runs; a placeholder
/// stands in), conditional on `secret` when given.
fn voucher(lane: u64, secret: Option<&[u8]>) -> SignedVoucher {
    let amount = TokenAmount::from_atto(1_000u64 * (lane + 1));
    let mut v = SignedVoucher::new(Address::new_id(CHANNEL), lane, 3, amount);
    if let Some(secret) = secret {
        v.secret_hash = blake2b_256(secret).to_vec();
        v.time_lock_max = 10_000;
    }
    v.signature = Some(fvm_shared::crypto::signature::Signature::new_secp256k1(vec![7; 65]));
    v
}

/// What each lane of a measured channel holds.
#[derive(Clone, Copy)]
enum Lanes {
    /// One plain voucher.
    Plain,
    /// One conditional voucher, its secret known.
    Conditional,
    /// Eight vouchers, nonces 1 to 8: the odd ones conditional (secrets known), each
    /// replaced by the next, unconditional, for the same amount.
    Routed,
}

impl Lanes {
    fn label(self) -> &'static str {
        match self {
            Lanes::Plain => "plain",
            Lanes::Conditional => "conditional",
            Lanes::Routed => "routed",
        }
    }
}

/// A channel with `lanes` lanes holding `kind`.
fn channel(lanes: u64, kind: Lanes) -> (Situation, Vec<SignedVoucher>) {
    let mut secrets = HashMap::new();
    let mut held = Vec::new();
    for lane in 0..lanes {
        let nonces = match kind {
            Lanes::Routed => 1..=8u64,
            Lanes::Plain | Lanes::Conditional => 3..=3,
        };
        for nonce in nonces {
            let conditional = match kind {
                Lanes::Plain => false,
                Lanes::Conditional => true,
                Lanes::Routed => nonce % 2 == 1,
            };
            let secret = blake2b_256(&[lane.to_be_bytes(), nonce.to_be_bytes()].concat()).to_vec();
            let mut v = voucher(lane, conditional.then_some(secret.as_slice()));
            v.nonce = nonce;
            v.amount = TokenAmount::from_atto(1_000 * (lane + 1) + 10 * nonce.div_ceil(2));
            held.push(v);
            if conditional {
                secrets.insert(blake2b_256(&secret).to_vec(), secret);
            }
        }
    }
    (situation(secrets), held)
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("redemption");
    let (one, held) = channel(1, Lanes::Plain);
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("actor", "one UpdateChannelState"), |b| {
        b.iter(|| {
            let mut state = one.state.clone();
            black_box(one.redeem(&mut state, &held[0]).unwrap());
        })
    });
    for kind in [Lanes::Plain, Lanes::Conditional, Lanes::Routed] {
        for lanes in LANES {
            let (situation, held) = channel(lanes, kind);
            let refs: Vec<&SignedVoucher> = held.iter().collect();
            assert_eq!(best_plan(&situation, &refs).steps.len() as u64, lanes);
            group.throughput(Throughput::Elements(lanes));
            let name = format!("best_plan {}", kind.label());
            group.bench_function(BenchmarkId::new(name, lanes), |b| {
                b.iter(|| black_box(best_plan(&situation, black_box(&refs))))
            });
            if let Lanes::Routed = kind {
                // What intake runs: the state alone, from the vouchers held by lane.
                let mut sorted = held.clone();
                sorted.sort_by_key(|v| (v.lane, std::cmp::Reverse(v.nonce)));
                let by_lane: Vec<&[SignedVoucher]> =
                    sorted.chunk_by(|a, b| a.lane == b.lane).collect();
                let state = best_state_by_lane(&situation, &by_lane, None);
                assert_eq!(state, best_plan(&situation, &refs).state);
                group.bench_function(BenchmarkId::new("best_state_by_lane routed", lanes), |b| {
                    b.iter(|| black_box(best_state_by_lane(&situation, black_box(&by_lane), None)))
                });
            }
        }
    }
    group.finish();
}

fn print_ratios() {
    let Some(root) = criterion_dir() else { return };
    let Some(step) = mean_ns(&root, "redemption", "actor", "one UpdateChannelState") else {
        return;
    };
    println!("\nbest_plan per lane against one bare actor step ({step:.0} ns), same run:");
    println!(
        "{:<22} {:>6} {:>12} {:>14} {:>10}",
        "vouchers", "lanes", "plan ns", "ns per lane", "× step"
    );
    for (kind, name) in [
        ("plain", "best_plan plain"),
        ("conditional", "best_plan conditional"),
        ("routed", "best_plan routed"),
        ("routed, state by lane", "best_state_by_lane routed"),
    ] {
        for lanes in LANES {
            let id = lanes.to_string();
            let Some(ns) = mean_ns(&root, "redemption", name, &id) else {
                continue;
            };
            let per_lane = ns / lanes as f64;
            println!("{kind:<22} {lanes:>6} {ns:>12.0} {per_lane:>14.0} {:>10.2}", per_lane / step);
        }
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    print_ratios();
}
