//! Voucher encode, sign and verify, each measured beside the raw secp256k1 operation it
//! is built on, so that the overhead of the Filecoin voucher format reads as a ratio.
//!
//! Run: `cargo bench -p paych-core --bench voucher`. After criterion's own report, a table
//! prints each voucher operation's throughput as a fraction of the raw limit measured in
//! the same run (1.0 = no overhead).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod estimates;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput};
use estimates::{criterion_dir, mean_ns, verdict};
use paych_core::crypto;
use paych_core::types::{Address, Merge, SignedVoucher, TokenAmount};
use paych_testkit::keys::{address, key};
use secp256k1::{Message as Digest, SECP256K1};

fn voucher() -> SignedVoucher {
    let mut v =
        SignedVoucher::new(Address::new_id(1001), 7, 42, TokenAmount::from_atto(123_456_789u64));
    v.merges = vec![Merge { lane: 1, nonce: 5 }];
    v
}

fn bench(c: &mut Criterion) {
    let key = key(0x2a);
    let signer = address(&key);
    let mut signed = voucher();
    signed.signature = Some(crypto::sign(&key, &signed.signing_bytes().unwrap()));
    let cbor = signed.to_cbor().unwrap();
    let digest = Digest::from_digest(crypto::blake2b_256(&signed.signing_bytes().unwrap()));
    let raw_sig = SECP256K1.sign_ecdsa_recoverable(&digest, &key);

    let mut group = c.benchmark_group("voucher_encode");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("raw", "blake2b-256 of signing bytes"), |b| {
        let bytes = signed.signing_bytes().unwrap();
        b.iter(|| crypto::blake2b_256(black_box(&bytes)))
    });
    group.bench_function(BenchmarkId::new("voucher", "to_cbor"), |b| {
        b.iter(|| black_box(&signed).to_cbor().unwrap())
    });
    group.bench_function(BenchmarkId::new("voucher", "from_cbor"), |b| {
        b.iter(|| SignedVoucher::from_cbor(black_box(&cbor)).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("voucher_sign");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("raw", "secp256k1 sign"), |b| {
        b.iter(|| SECP256K1.sign_ecdsa_recoverable(black_box(&digest), &key))
    });
    group.bench_function(BenchmarkId::new("voucher", "sign"), |b| {
        let unsigned = voucher();
        b.iter(|| crypto::sign(&key, &black_box(&unsigned).signing_bytes().unwrap()))
    });
    group.finish();

    let mut group = c.benchmark_group("voucher_verify");
    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("raw", "secp256k1 recover"), |b| {
        b.iter(|| SECP256K1.recover_ecdsa(black_box(&digest), &raw_sig).unwrap())
    });
    group.bench_function(BenchmarkId::new("voucher", "verify"), |b| {
        b.iter(|| {
            let v = black_box(&signed);
            let sig = v.signature.as_ref().unwrap();
            crypto::verify(sig, &signer, &v.signing_bytes().unwrap()).unwrap()
        })
    });
    group.finish();
}

fn print_ratios() {
    let Some(root) = criterion_dir() else { return };
    // (label, raw benchmark, voucher benchmark, target ratio)
    let sign = ("voucher_sign", "raw", "secp256k1 sign");
    let recover = ("voucher_verify", "raw", "secp256k1 recover");
    let rows = [
        ("sign", sign, ("voucher_sign", "voucher", "sign"), Some(0.8)),
        ("verify", recover, ("voucher_verify", "voucher", "verify"), Some(0.8)),
        ("encode", sign, ("voucher_encode", "voucher", "to_cbor"), None),
        ("decode", recover, ("voucher_encode", "voucher", "from_cbor"), None),
    ];
    println!("\nvoucher operations as a fraction of the raw secp256k1 limit (same run):");
    println!(
        "{:<8} {:>20} {:>10} {:>12} {:>9} {:>7}",
        "voucher", "raw limit", "raw ns", "voucher ns", "ratio", "target"
    );
    for (label, raw, ours, target) in rows {
        let (Some(r), Some(o)) =
            (mean_ns(&root, raw.0, raw.1, raw.2), mean_ns(&root, ours.0, ours.1, ours.2))
        else {
            println!("{label:<8} (no estimates under {})", root.display());
            continue;
        };
        let verdict = verdict(r / o, target);
        println!("{label:<8} {:>20} {r:>10.0} {o:>12.0} {:>9.3} {verdict:>7}", raw.2, r / o);
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    print_ratios();
}
