//! kill -9 in the middle of voucher creation and in the middle of voucher adds, then reopen.
//!
//! Each test re-executes this test binary as a child (`--exact <test> --nocapture`, with
//! [`ROLE`] naming the child's part and [`DIR`] its directory). The child runs a devnet
//! persisted in sled, a `SledStore` and a keystore in that directory, and prints one line per
//! voucher the manager has answered for; the parent kills it (SIGKILL) after a number of lines,
//! reopens the same devnet, store and keystore in-process, and checks that everything the child
//! printed survived: a voucher returned by `voucher_create` or acknowledged by `voucher_add`
//! is durable, and no (lane, nonce) is ever issued twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Instant;

use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::manager::{AddOutcome, ManagerConfig, PaymentChannelManager};
use paych_core::store::sled::SledStore;
use paych_core::store::{ChannelRecord, Store};
use paych_core::types::{Address, Network, SignedVoucher, TokenAmount};
use paych_core::wallet::{KeyStore, Wallet};
use paych_testkit::amounts::atto;
use paych_testkit::deadline::DEADLINE;
use paych_testkit::devnet::{fund, runtime};
use paych_testkit::keys::stranger_address;

/// Names the child's part: unset in the parent.
const ROLE: &str = "PAYCH_CRASH_ROLE";
/// The child's directory.
const DIR: &str = "PAYCH_CRASH_DIR";
/// Lanes the vouchers spread over.
const LANES: u64 = 4;
/// Lines the parent reads before it kills the child.
const LINES_BEFORE_KILL: usize = 60;
/// Vouchers the parent prepares for the adding child (more than it lets it add).
const VOUCHERS_TO_ADD: u64 = 400;

/// The directory the parent named, when this process is the parent's child in `role`.
fn child_dir(role: &str) -> Option<PathBuf> {
    let as_child = std::env::var(ROLE).as_deref() == Ok(role);
    as_child.then(|| PathBuf::from(std::env::var(DIR).unwrap()))
}

/// What one node keeps in `dir`: the chain (devnet repo), the store and the keystore.
struct Parts {
    devnet: Devnet,
    wallet: Arc<KeyStore>,
    store: Arc<SledStore>,
}

impl Parts {
    /// The one channel the store holds; there must be exactly one.
    fn only_channel(&self) -> ChannelRecord {
        let mut channels = self.store.channels().unwrap();
        assert_eq!(channels.len(), 1);
        channels.remove(0)
    }

    fn open(dir: &Path) -> Self {
        let config = DevnetConfig { repo: Some(dir.join("chain")), ..DevnetConfig::default() };
        Parts {
            devnet: Devnet::new(config).unwrap(),
            wallet: Arc::new(KeyStore::open(dir.join("keystore"), Network::Testnet).unwrap()),
            store: Arc::new(SledStore::open(dir.join("datastore")).unwrap()),
        }
    }

    async fn manager(&self) -> PaymentChannelManager {
        let manager = PaymentChannelManager::new(
            Arc::new(self.devnet.clone()),
            self.wallet.clone(),
            self.store.clone(),
            ManagerConfig::default(),
        );
        manager.start().await.unwrap();
        manager
    }
}

/// Starts this test binary as the child playing `role` in `dir`, its stdout piped.
fn spawn_child(test: &str, role: &str, dir: &Path) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(ROLE, role)
        .env(DIR, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Reads the child's lines that start with `tag` until `n` have come, then kills it with
/// SIGKILL. Answers the lines' payloads.
fn read_then_kill(mut child: Child, tag: &str, n: usize) -> Vec<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + DEADLINE;
    let mut payloads = Vec::new();
    while payloads.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(payload) = line.strip_prefix(tag) {
                    payloads.push(payload.to_owned());
                }
            }
            Err(_) => {
                // Ended early or stuck: kill it and report what it said.
                child.kill().ok();
                let status = child.wait().unwrap();
                panic!("the child stopped after {} lines ({status})", payloads.len());
            }
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // Lines that were already on their way belong to vouchers answered before the kill.
    while let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(0)) {
        if let Some(payload) = line.strip_prefix(tag) {
            payloads.push(payload.to_owned());
        }
    }
    payloads
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

// ----- creating vouchers ---------------------------------------------------------------

const PAYER_TEST: &str =
    "payer_killed_while_creating_vouchers_keeps_each_returned_voucher_and_never_reuses_a_nonce";

/// The child: opens a channel and creates vouchers round-robin over the lanes, each lane's
/// amount one more than its last, printing each as soon as `voucher_create` returns it.
async fn payer_child(dir: &Path) {
    let parts = Parts::open(dir);
    let payer = parts.wallet.new_key().unwrap();
    fund(&parts.devnet, true, &payer, TokenAmount::from_whole(10)).await;
    let m = parts.manager().await;
    let handle =
        m.create(payer, stranger_address(), TokenAmount::from_whole(1), atto(0)).await.unwrap();
    parts.devnet.mine(1);
    let ch = m.get_wait_ready(&handle.wait_sentinel.unwrap()).await.unwrap();
    for i in 0.. {
        let (lane, amount) = (i % LANES, i / LANES + 1);
        let v = m.voucher_create(&ch, atto(amount), lane).await.unwrap().voucher.unwrap();
        say(&format!("VOUCHER {}", v.to_base64url().unwrap()));
    }
}

#[test]
fn payer_killed_while_creating_vouchers_keeps_each_returned_voucher_and_never_reuses_a_nonce() {
    if let Some(dir) = child_dir("payer") {
        return runtime().block_on(payer_child(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let printed: Vec<SignedVoucher> =
        read_then_kill(spawn_child(PAYER_TEST, "payer", dir.path()), "VOUCHER ", LINES_BEFORE_KILL)
            .iter()
            .map(|text| SignedVoucher::from_base64url(text).unwrap())
            .collect();

    runtime().block_on(async {
        let parts = Parts::open(dir.path());
        let m = parts.manager().await;
        let channel = parts.only_channel();
        let (id, ch) = (channel.id, channel.channel.unwrap());

        // Every voucher the child printed is stored, unchanged.
        for v in &printed {
            let stored = parts.store.voucher(id, v.lane, v.nonce).unwrap();
            assert_eq!(
                stored.map(|r| r.voucher).as_ref(),
                Some(v),
                "lost ({}, {})",
                v.lane,
                v.nonce
            );
        }
        // The next voucher on each lane goes above every nonce printed or stored.
        let mut highest: BTreeMap<u64, u64> = BTreeMap::new();
        for v in &printed {
            let top = highest.entry(v.lane).or_default();
            *top = (*top).max(v.nonce);
        }
        assert_eq!(highest.len() as u64, LANES);
        let status = m.status(&ch).await.unwrap();
        for lane in status.lanes {
            let next =
                m.voucher_create(&ch, lane.amount.clone() + atto(1), lane.lane).await.unwrap();
            let next = next.voucher.unwrap();
            let stored_max = parts
                .store
                .vouchers(id)
                .unwrap()
                .iter()
                .filter(|r| r.voucher.lane == lane.lane && r.voucher != next)
                .map(|r| r.voucher.nonce)
                .max()
                .unwrap();
            assert!(
                next.nonce > highest[&lane.lane],
                "lane {}: nonce {} reused",
                lane.lane,
                next.nonce
            );
            assert!(next.nonce > stored_max, "lane {}: nonce {} reused", lane.lane, next.nonce);
        }
        m.shutdown().await.unwrap();
    });
}

// ----- adding vouchers -----------------------------------------------------------------

const PAYEE_TEST: &str = "payee_killed_while_adding_vouchers_keeps_each_acknowledged_voucher";

/// The parent's setup: a devnet in `dir/chain`, the payee's key in `dir/keystore`, and a
/// channel to it from a payer kept elsewhere, with [`VOUCHERS_TO_ADD`] vouchers written to
/// `dir/vouchers` (one per line, base64url). Everything is closed when it returns.
fn prepare_vouchers(dir: &Path) -> Vec<SignedVoucher> {
    runtime().block_on(async {
        let devnet =
            Devnet::new(DevnetConfig { repo: Some(dir.join("chain")), ..DevnetConfig::default() })
                .unwrap();
        let payee =
            KeyStore::open(dir.join("keystore"), Network::Testnet).unwrap().new_key().unwrap();
        let payer_dir = tempfile::tempdir().unwrap();
        let wallet =
            Arc::new(KeyStore::open(payer_dir.path().join("keystore"), Network::Testnet).unwrap());
        let payer = wallet.new_key().unwrap();
        fund(&devnet, true, &payer, TokenAmount::from_whole(10)).await;
        let store = Arc::new(SledStore::open(payer_dir.path().join("datastore")).unwrap());
        let m = PaymentChannelManager::new(
            Arc::new(devnet.clone()),
            wallet,
            store,
            ManagerConfig::default(),
        );
        m.start().await.unwrap();
        let handle = m.create(payer, payee, TokenAmount::from_whole(1), atto(0)).await.unwrap();
        devnet.mine(1);
        let ch: Address = m.get_wait_ready(&handle.wait_sentinel.unwrap()).await.unwrap();
        let mut vouchers = Vec::new();
        for i in 0..VOUCHERS_TO_ADD {
            let (lane, amount) = (i % LANES, i / LANES + 1);
            vouchers
                .push(m.voucher_create(&ch, atto(amount), lane).await.unwrap().voucher.unwrap());
        }
        let lines: Vec<String> = vouchers.iter().map(|v| v.to_base64url().unwrap()).collect();
        std::fs::write(dir.join("vouchers"), lines.join("\n")).unwrap();
        m.shutdown().await.unwrap();
        vouchers
    })
}

fn read_vouchers(dir: &Path) -> Vec<SignedVoucher> {
    let text = std::fs::read_to_string(dir.join("vouchers")).unwrap();
    text.lines().map(|line| SignedVoucher::from_base64url(line).unwrap()).collect()
}

/// The child: adds the prepared vouchers in order, printing each acknowledged one.
async fn payee_child(dir: &Path) {
    let parts = Parts::open(dir);
    let m = parts.manager().await;
    for v in read_vouchers(dir) {
        match m.voucher_add(&v.channel_addr, &v, atto(1)).await.unwrap() {
            AddOutcome::Accepted { .. } | AddOutcome::AlreadyHeld => {
                say(&format!("ACK {} {}", v.lane, v.nonce))
            }
            AddOutcome::Covered { .. } => panic!("vouchers come in order; none is covered"),
        }
    }
}

#[test]
fn payee_killed_while_adding_vouchers_keeps_each_acknowledged_voucher() {
    if let Some(dir) = child_dir("payee") {
        return runtime().block_on(payee_child(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let vouchers = prepare_vouchers(dir.path());
    let acknowledged: Vec<(u64, u64)> =
        read_then_kill(spawn_child(PAYEE_TEST, "payee", dir.path()), "ACK ", LINES_BEFORE_KILL)
            .iter()
            .map(|text| {
                let (lane, nonce) = text.split_once(' ').unwrap();
                (lane.parse().unwrap(), nonce.parse().unwrap())
            })
            .collect();

    runtime().block_on(async {
        let parts = Parts::open(dir.path());
        let m = parts.manager().await;
        let id = parts.only_channel().id;
        let by_key: BTreeMap<(u64, u64), &SignedVoucher> =
            vouchers.iter().map(|v| ((v.lane, v.nonce), v)).collect();

        // Every acknowledged voucher is stored, unchanged.
        for (lane, nonce) in &acknowledged {
            let stored = parts.store.voucher(id, *lane, *nonce).unwrap();
            assert_eq!(
                stored.map(|r| r.voucher).as_ref(),
                Some(by_key[&(*lane, *nonce)]),
                "lost ({lane}, {nonce})"
            );
        }
        // Adding everything again after the crash: no error, each lane ends at its last voucher.
        for v in &vouchers {
            m.voucher_add(&v.channel_addr, v, atto(0)).await.unwrap();
        }
        let status = m.status(&vouchers[0].channel_addr).await.unwrap();
        let expected = VOUCHERS_TO_ADD / LANES;
        assert!(
            status.lanes.iter().all(|l| l.nonce == expected && l.amount == atto(expected)),
            "{status:?}"
        );
        m.shutdown().await.unwrap();
    });
}
