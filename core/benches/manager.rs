//! The manager's durable voucher paths, each measured beside the bare secp256k1 operation
//! it is built on, so that their cost reads as a ratio.
//!
//! - `manager_create`: `voucher_create` (sign, store, fsync before returning) by 1 caller and
//!   by 64 concurrent callers, each on its own channel or all on one shared channel (own
//!   lanes), beside a bare secp256k1 sign and the store's bare durable write (a sled insert
//!   and flush), which together bound what a lone caller can reach;
//! - `manager_add`: `voucher_add` (validate with the actor rules, store, fsync before
//!   acknowledging) the same three ways, on a durable store and on a store whose `durable()`
//!   returns at once, beside a bare secp256k1 recover.
//!
//! The concurrent cases time a batch of 64 concurrent operations and report it as 64
//! elements. Setup runs on a devnet that mines on demand; the stores are sled on temporary
//! directories, flushed for real.
//!
//! Run: `cargo bench -p paych-core --bench manager`. After criterion's report a table prints
//! each operation's per-voucher throughput as a fraction of the bare limit measured in the
//! same run, and durable adds as a fraction of non-durable ones (group commit at work).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod estimates;

use std::collections::HashMap;
use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use estimates::{criterion_dir, mean_ns, verdict};
use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::crypto::{self, SecretKey};
use paych_core::manager::{AddOutcome, ManagerConfig, PaymentChannelManager};
use paych_core::store::sled::SledStore;
use paych_core::store::{Store, StoreError};
use paych_core::types::{Address, Network, SignedVoucher, TokenAmount};
use paych_core::wallet::{KeyStore, Wallet};
use paych_testkit::devnet::{fund, runtime};
use paych_testkit::store::{Durability, SledWith};
use secp256k1::{Message as Digest, SECP256K1};
use tokio::runtime::Runtime;

/// Concurrent callers in the batched cases.
const CALLERS: usize = 64;

/// The raw durable write: a sled insert of a voucher-sized record and a flush.
const DURABLE_WRITE: &str = "sled insert 256 B + flush";

/// A flush that returns at once: a [`SledStore`] with it is the store without the flush,
/// to measure what durability costs.
struct NoFlush;

#[async_trait::async_trait]
impl Durability for NoFlush {
    async fn durable(&self, _: &SledStore) -> Result<(), StoreError> {
        Ok(())
    }
}

/// A payer with one shared channel and [`CALLERS`] channels of its own to a payee, and two
/// payee managers: one on a durable store, one on a store without flushes
/// ([`NoFlush`]).
struct Setup {
    rt: Runtime,
    payer: PaymentChannelManager,
    payer_key: SecretKey,
    durable_payee: PaymentChannelManager,
    fast_payee: PaymentChannelManager,
    shared: Address,
    own: Vec<Address>,
    /// The next (nonce, amount) of each (channel, lane) a payee is sent vouchers on; the
    /// two payees use separate lanes.
    lanes: HashMap<(Address, u64), u64>,
    _dirs: Vec<tempfile::TempDir>,
}

fn manager(devnet: &Devnet, wallet: Arc<KeyStore>, store: Arc<dyn Store>) -> PaymentChannelManager {
    let config =
        ManagerConfig { settler_interval: Duration::from_secs(3600), ..ManagerConfig::default() };
    PaymentChannelManager::new(Arc::new(devnet.clone()), wallet, store, config)
}

impl Setup {
    fn new() -> Self {
        let rt = runtime();
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let devnet = Devnet::new(DevnetConfig::default()).unwrap();
        let open = |dir: &Path| {
            let wallet = Arc::new(KeyStore::open(dir.join("keystore"), Network::Testnet).unwrap());
            let store = SledStore::open(dir.join("datastore")).unwrap();
            (wallet, store)
        };
        let (payer_wallet, payer_store) = open(dirs[0].path());
        let (payee_wallet, durable_store) = open(dirs[1].path());
        let fast_store = SledStore::open(dirs[2].path().join("datastore")).unwrap();
        let payer_addr = payer_wallet.new_key().unwrap();
        let payee_addr = payee_wallet.new_key().unwrap();
        let payer_key = payer_wallet.export(&payer_addr).unwrap().secret_key().unwrap();

        let payer = manager(&devnet, payer_wallet, Arc::new(payer_store));
        let durable_payee = manager(&devnet, payee_wallet.clone(), Arc::new(durable_store));
        let fast_payee = manager(
            &devnet,
            payee_wallet,
            Arc::new(SledWith { sled: fast_store, durability: NoFlush }),
        );
        let (shared, own) = rt.block_on(async {
            for m in [&payer, &durable_payee, &fast_payee] {
                m.start().await.unwrap();
            }
            fund(&devnet, true, &payer_addr, TokenAmount::from_whole(1000)).await;
            let mut sentinels = Vec::new();
            for _ in 0..=CALLERS {
                let handle = payer
                    .create(
                        payer_addr,
                        payee_addr,
                        TokenAmount::from_whole(1),
                        TokenAmount::default(),
                    )
                    .await
                    .unwrap();
                sentinels.push(handle.wait_sentinel.unwrap());
            }
            devnet.mine(1);
            let mut channels = Vec::new();
            for sentinel in sentinels {
                channels.push(payer.get_wait_ready(&sentinel).await.unwrap());
            }
            (channels[0], channels[1..].to_vec())
        });
        Setup {
            rt,
            payer,
            payer_key,
            durable_payee,
            fast_payee,
            shared,
            own,
            lanes: HashMap::new(),
            _dirs: dirs,
        }
    }

    /// The next voucher on (channel, lane), signed by the payer: nonce and amount one more
    /// than the last.
    fn next_voucher(&mut self, channel: Address, lane: u64) -> SignedVoucher {
        let n = self.lanes.entry((channel, lane)).or_default();
        *n += 1;
        let mut v = SignedVoucher::new(channel, lane, *n, TokenAmount::from_atto(*n));
        v.signature = Some(crypto::sign(&self.payer_key, &v.signing_bytes().unwrap()));
        v
    }

    /// The next cumulative amount the payer creates on (channel, lane).
    fn next_amount(&mut self, channel: Address, lane: u64) -> TokenAmount {
        let n = self.lanes.entry((channel, lane)).or_default();
        *n += 1;
        TokenAmount::from_atto(*n)
    }
}

/// Where a batch of concurrent callers works.
#[derive(Clone, Copy)]
enum Spread {
    /// Each caller on its own channel.
    OwnChannels,
    /// All on one channel, each on its own lane.
    SharedChannel,
}

impl Spread {
    fn label(self) -> String {
        match self {
            Spread::OwnChannels => format!("{CALLERS} callers, own channels"),
            Spread::SharedChannel => format!("{CALLERS} callers, shared channel"),
        }
    }

    /// The (channel, lane) of each caller; `base` keeps cases on separate lanes.
    fn places(self, s: &Setup, base: u64) -> Vec<(Address, u64)> {
        match self {
            Spread::OwnChannels => s.own.iter().map(|c| (*c, base)).collect(),
            Spread::SharedChannel => (0..CALLERS as u64).map(|i| (s.shared, base + i)).collect(),
        }
    }
}

fn configure(group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group.sample_size(20);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
}

fn bench_create(c: &mut Criterion, s: &mut Setup) {
    let key = s.payer_key;
    let digest = Digest::from_digest(crypto::blake2b_256(b"a voucher's signing bytes"));
    let mut group = c.benchmark_group("manager_create");
    configure(&mut group);

    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("raw", "secp256k1 sign"), |b| {
        b.iter(|| SECP256K1.sign_ecdsa_recoverable(black_box(&digest), &key))
    });
    // The store's durable write on its own: what a lone caller waits for after signing.
    let probe_dir = tempfile::tempdir().unwrap();
    let probe = sled::open(probe_dir.path()).unwrap();
    let mut key = 0u64;
    group.bench_function(BenchmarkId::new("raw", DURABLE_WRITE), |b| {
        b.iter(|| {
            key += 1;
            probe.insert(key.to_be_bytes(), &[7u8; 256][..]).unwrap();
            probe.flush().unwrap()
        })
    });
    group.bench_function(BenchmarkId::new("durable", "1 caller"), |b| {
        b.iter_custom(|iters| {
            let amounts: Vec<_> = (0..iters).map(|_| s.next_amount(s.shared, 1000)).collect();
            let (m, ch) = (s.payer.clone(), s.shared);
            s.rt.block_on(async move {
                let start = Instant::now();
                for amount in amounts {
                    m.voucher_create(&ch, amount, 1000).await.unwrap().voucher.unwrap();
                }
                start.elapsed()
            })
        })
    });

    group.throughput(Throughput::Elements(CALLERS as u64));
    for spread in [Spread::OwnChannels, Spread::SharedChannel] {
        group.bench_function(BenchmarkId::new("durable", spread.label()), |b| {
            b.iter_custom(|iters| {
                let places = spread.places(s, 0);
                let batches: Vec<Vec<_>> = (0..iters)
                    .map(|_| {
                        places
                            .iter()
                            .map(|&(ch, lane)| (ch, lane, s.next_amount(ch, lane)))
                            .collect()
                    })
                    .collect();
                let m = s.payer.clone();
                s.rt.block_on(async move {
                    let start = Instant::now();
                    for batch in batches {
                        let tasks: Vec<_> = batch
                            .into_iter()
                            .map(|(ch, lane, amount)| {
                                let m = m.clone();
                                tokio::spawn(
                                    async move { m.voucher_create(&ch, amount, lane).await },
                                )
                            })
                            .collect();
                        for task in tasks {
                            task.await.unwrap().unwrap().voucher.unwrap();
                        }
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

/// Adds `batches` (each a set of concurrent adds) and answers the time they took.
async fn add_batches(m: PaymentChannelManager, batches: Vec<Vec<SignedVoucher>>) -> Duration {
    let start = Instant::now();
    for batch in batches {
        let tasks: Vec<_> = batch
            .into_iter()
            .map(|v| {
                let m = m.clone();
                tokio::spawn(async move {
                    m.voucher_add(&v.channel_addr, &v, TokenAmount::default()).await
                })
            })
            .collect();
        for task in tasks {
            let outcome = task.await.unwrap().unwrap();
            assert!(matches!(outcome, AddOutcome::Accepted { .. }));
        }
    }
    start.elapsed()
}

fn bench_add(c: &mut Criterion, s: &mut Setup) {
    let key = s.payer_key;
    let digest = Digest::from_digest(crypto::blake2b_256(b"a voucher's signing bytes"));
    let signature = SECP256K1.sign_ecdsa_recoverable(&digest, &key);
    let mut group = c.benchmark_group("manager_add");
    configure(&mut group);

    group.throughput(Throughput::Elements(1));
    group.bench_function(BenchmarkId::new("raw", "secp256k1 recover"), |b| {
        b.iter(|| SECP256K1.recover_ecdsa(black_box(&digest), &signature).unwrap())
    });
    // The two payees get vouchers on separate lanes (durable from 2000, non-durable from
    // 4000), so each sees only its own.
    for (label, durable, base) in [("durable", true, 2000u64), ("non-durable", false, 4000)] {
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new(label, "1 caller"), |b| {
            b.iter_custom(|iters| {
                let batches =
                    (0..iters).map(|_| vec![s.next_voucher(s.shared, base + 1000)]).collect();
                let m = if durable { s.durable_payee.clone() } else { s.fast_payee.clone() };
                s.rt.block_on(add_batches(m, batches))
            })
        });
        group.throughput(Throughput::Elements(CALLERS as u64));
        for spread in [Spread::OwnChannels, Spread::SharedChannel] {
            group.bench_function(BenchmarkId::new(label, spread.label()), |b| {
                b.iter_custom(|iters| {
                    let places = spread.places(s, base);
                    let batches = (0..iters)
                        .map(|_| {
                            places.iter().map(|&(ch, lane)| s.next_voucher(ch, lane)).collect()
                        })
                        .collect();
                    let m = if durable { s.durable_payee.clone() } else { s.fast_payee.clone() };
                    s.rt.block_on(add_batches(m, batches))
                })
            });
        }
    }
    group.finish();
}

// ----- the ratio table -------------------------------------------------------------------

/// A benchmark of this run and the operations one of its iterations performs.
#[derive(Clone, Copy)]
struct Measured<'a> {
    group: &'a str,
    function: &'a str,
    parameter: &'a str,
    per_iteration: f64,
}

impl Measured<'_> {
    fn ns_per_op(&self, root: &Path) -> Option<f64> {
        mean_ns(root, self.group, self.function, self.parameter).map(|ns| ns / self.per_iteration)
    }
}

fn print_ratios() {
    let Some(root) = criterion_dir() else { return };
    let own = &Spread::OwnChannels.label();
    let shared = &Spread::SharedChannel.label();
    let batch = CALLERS as f64;
    let m = |group, function, parameter, per_iteration| Measured {
        group,
        function,
        parameter,
        per_iteration,
    };
    let sign = m("manager_create", "raw", "secp256k1 sign", 1.0);
    let recover = m("manager_add", "raw", "secp256k1 recover", 1.0);
    // (label, reference, measured, target): ratio = reference ns / measured ns per voucher.
    let rows = [
        (
            "create durable, 1 caller",
            sign,
            m("manager_create", "durable", "1 caller", 1.0),
            Some(0.8),
        ),
        (
            "create durable, own channels",
            sign,
            m("manager_create", "durable", own, batch),
            Some(0.8),
        ),
        (
            "create durable, shared channel",
            sign,
            m("manager_create", "durable", shared, batch),
            Some(0.8),
        ),
        ("add durable, 1 caller", recover, m("manager_add", "durable", "1 caller", 1.0), None),
        ("add durable, own channels", recover, m("manager_add", "durable", own, batch), None),
        ("add durable, shared channel", recover, m("manager_add", "durable", shared, batch), None),
        (
            "add non-durable, 1 caller",
            recover,
            m("manager_add", "non-durable", "1 caller", 1.0),
            None,
        ),
        (
            "add non-durable, own channels",
            recover,
            m("manager_add", "non-durable", own, batch),
            None,
        ),
        (
            "add non-durable, shared channel",
            recover,
            m("manager_add", "non-durable", shared, batch),
            None,
        ),
        (
            "add durable / non-durable, 1 caller",
            m("manager_add", "non-durable", "1 caller", 1.0),
            m("manager_add", "durable", "1 caller", 1.0),
            None,
        ),
        (
            "add durable / non-durable, own channels",
            m("manager_add", "non-durable", own, batch),
            m("manager_add", "durable", own, batch),
            Some(0.5),
        ),
        (
            "add durable / non-durable, shared channel",
            m("manager_add", "non-durable", shared, batch),
            m("manager_add", "durable", shared, batch),
            Some(0.5),
        ),
    ];
    println!("\nmanager voucher paths per voucher, as a fraction of a reference measured in the same run:");
    println!(
        "{:<42} {:>16} {:>12} {:>12} {:>9} {:>12}",
        "operation", "reference", "ref ns", "ours ns", "ratio", "target"
    );
    for (label, reference, ours, target) in rows {
        let (Some(r), Some(o)) = (reference.ns_per_op(&root), ours.ns_per_op(&root)) else {
            println!("{label:<42} (no estimates under {})", root.display());
            continue;
        };
        let verdict = verdict(r / o, target);
        let name = format!("{} {}", reference.function, reference.parameter);
        println!("{label:<42} {name:>16.16} {r:>12.0} {o:>12.0} {:>9.3} {verdict:>12}", r / o);
    }
    print_lone_caller_bound(
        &root,
        sign,
        m("manager_create", "raw", DURABLE_WRITE, 1.0),
        m("manager_create", "durable", "1 caller", 1.0),
    );
}

/// A lone caller waits, for each voucher, for its signature and then for one durable write:
/// prints how close to a bare sign that lets it come, against what it reached.
fn print_lone_caller_bound(
    root: &Path,
    sign: Measured<'_>,
    write: Measured<'_>,
    create: Measured<'_>,
) {
    let (Some(s), Some(w), Some(c)) =
        (sign.ns_per_op(root), write.ns_per_op(root), create.ns_per_op(root))
    else {
        return;
    };
    println!("\nlone caller: one signature, then one durable write, per voucher");
    println!("  durable write ({DURABLE_WRITE}): {w:.0} ns; bare sign {s:.0} ns");
    println!(
        "  best ratio to a bare sign, sign then write: sign / (sign + write) = {:.3}",
        s / (s + w)
    );
    println!(
        "  best ratio even with the write overlapping the signature: sign / max(sign, write) = {:.3}",
        s / s.max(w)
    );
    println!("  create durable, 1 caller / (sign + write) = {:.3}", (s + w) / c);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut setup = Setup::new();
    bench_create(&mut c, &mut setup);
    bench_add(&mut c, &mut setup);
    // Stop the managers' background work before the runtime goes.
    setup.rt.block_on(async {
        for m in [&setup.payer, &setup.durable_payee, &setup.fast_payee] {
            m.shutdown().await.unwrap();
        }
    });
    c.final_summary();
    print_ratios();
}
