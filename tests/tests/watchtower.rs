//! The watchtower on a real chain: a payee redeems a conditional voucher on chain with its
//! secret, and the watchtower finds the secret in the tipset's messages — on the in-process
//! devnet, and through the Lotus client over the devnet's JSON-RPC (`ChainGetTipSetByHeight`
//! and `ChainGetBlockMessages`). Its checkpoint survives a restart; messages to other channels,
//! wrong secrets and hostile parameters are skipped; passes are bounded and rescan the last
//! `conf` epochs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paych_core::crypto::blake2b_256;
use paych_core::store::sled::SledStore;
use paych_core::store::Store;
use paych_core::types::{paych_method, Address, ChainEpoch, SignedVoucher, TokenAmount};
use paych_core::watch::{FoundSecret, WatchConfig, WatchError, WatchSet, Watcher, Watchtower};
use paych_testkit::amounts::fil;
use paych_testkit::keys::signed_by;
use paych_testkit::onchain::{OnChain, Party};

/// A hub's view for the watchtower: its channels, the payment hashes it waits on, and the
/// secrets handed to it (refused while `refusing`).
#[derive(Default)]
struct Hub {
    channels: WatchSet,
    pending: Mutex<HashSet<Vec<u8>>>,
    found: Mutex<Vec<FoundSecret>>,
    refusing: AtomicBool,
}

impl Hub {
    fn watching(channel: (Address, Address), hashes: &[&[u8]]) -> Self {
        let mut channels = WatchSet::new();
        channels.watch(channel.0, Some(channel.1));
        let pending = hashes.iter().map(|h| h.to_vec()).collect();
        Hub { channels, pending: Mutex::new(pending), ..Hub::default() }
    }

    fn secrets(&self) -> Vec<Vec<u8>> {
        self.found.lock().unwrap().iter().map(|f| f.secret.clone()).collect()
    }
}

#[async_trait::async_trait]
impl Watcher for Hub {
    fn watched(&self) -> WatchSet {
        self.channels.clone()
    }

    fn wants(&self, payment_hash: &[u8]) -> bool {
        self.pending.lock().unwrap().contains(payment_hash)
    }

    async fn found(&self, secret: FoundSecret) -> Result<(), String> {
        if self.refusing.load(Ordering::SeqCst) {
            return Err("store unavailable".to_owned());
        }
        self.found.lock().unwrap().push(secret);
        Ok(())
    }
}

fn hash(secret: &[u8]) -> Vec<u8> {
    blake2b_256(secret).to_vec()
}

/// `payer`'s conditional voucher on `channel`: `amount` FIL on `lane` at nonce 1, redeemable
/// with the pre-image of `payment_hash` until `lock`.
fn conditional(
    payer: &Party,
    channel: Address,
    lane: u64,
    amount: u64,
    payment_hash: &[u8],
    lock: ChainEpoch,
) -> SignedVoucher {
    let mut voucher = SignedVoucher::new(channel, lane, 1, fil(amount));
    voucher.secret_hash = payment_hash.to_vec();
    voucher.time_lock_max = lock;
    signed_by(voucher, &payer.key)
}

fn tower(on: &OnChain, store: Arc<dyn Store>, conf: u64, per_pass: u64) -> Watchtower {
    let config = WatchConfig {
        epochs_per_pass: per_pass,
        start: Some(0),
        ..WatchConfig::new(conf, Duration::from_millis(10))
    };
    Watchtower::new(on.chain.clone(), store, config).unwrap()
}

/// Passes until one reaches the head; answers the secrets found on the way.
async fn catch_up(tower: &Watchtower, hub: &Hub) -> usize {
    let mut found = 0;
    loop {
        let pass = tower.pass(hub).await.unwrap();
        found += pass.found;
        if pass.caught_up {
            return found;
        }
    }
}

async fn finds_the_secret_of_a_conditional_voucher_redeemed_on_chain(on: OnChain) {
    let (payer, payee) = (on.party(1, 100).await, on.party(2, 10).await);
    let watched = on.create_channel(&payer, &payee, 20).await;
    let other = on.create_channel(&payer, &on.party(3, 10).await, 20).await;
    let (secret, other_secret) = ([0x5a; 32], [0x6b; 32]);
    let lock = on.chain.head().await.unwrap() + 100;
    let hub = Hub::watching(watched, &[&hash(&secret), &hash(&other_secret)]);

    // A wrong pre-image fails on chain (16) and reveals nothing wanted.
    let voucher = conditional(&payer, watched.0, 0, 3, &hash(&secret), lock);
    assert_eq!(
        on.redeem(&payee, watched.0, &voucher, &[0x11; 32]).await.receipt.exit_code.value(),
        16
    );
    // Hostile parameters to the watched channel, by its ID address: included, refused (21).
    let garbage = vec![0x82, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    let method = paych_method::UPDATE_CHANNEL_STATE;
    let hostile = on.send(&payee, watched.1, TokenAmount::default(), method, garbage).await;
    assert!(!hostile.receipt.is_ok());
    // A secret revealed on a channel the hub does not watch.
    let elsewhere = conditional(&payer, other.0, 0, 1, &hash(&other_secret), lock);
    let third = on.party(3, 0).await;
    assert!(on.redeem(&third, other.0, &elsewhere, &other_secret).await.receipt.is_ok());
    // The payee redeems its conditional voucher with the secret: the actor checks it.
    let redeemed = on.redeem(&payee, watched.0, &voucher, &secret).await;
    assert!(redeemed.receipt.is_ok(), "{redeemed:?}");
    assert_eq!(on.chain.channel(&watched.0).await.unwrap().state.to_send, fil(3));

    let store: Arc<dyn Store> = Arc::new(SledStore::temporary().unwrap());
    let tower = tower(&on, store, 2, 1000);
    assert_eq!(catch_up(&tower, &hub).await, 1);
    let found = hub.found.lock().unwrap().clone();
    let [found] = found.as_slice() else { panic!("one secret expected: {found:?}") };
    assert_eq!((found.channel, found.lane, found.nonce), (watched.0, 0, 1));
    assert_eq!((&found.secret, &found.payment_hash), (&secret.to_vec(), &hash(&secret)));
    assert_eq!((found.message, found.epoch), (redeemed.message, redeemed.epoch));
}

#[tokio::test]
async fn on_the_devnet_the_watchtower_finds_a_secret_a_payee_reveals_on_chain() {
    finds_the_secret_of_a_conditional_voucher_redeemed_on_chain(OnChain::in_process()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_lotus_json_rpc_the_watchtower_finds_a_secret_a_payee_reveals_on_chain() {
    let on = OnChain::over_json_rpc().await;
    assert!(on.is_remote());
    finds_the_secret_of_a_conditional_voucher_redeemed_on_chain(on).await;
}

async fn resumes_from_its_checkpoint_after_a_restart(on: OnChain) {
    let (payer, payee) = (on.party(1, 100).await, on.party(2, 10).await);
    let channel = on.create_channel(&payer, &payee, 20).await;
    let (first, second) = ([0x01; 32], [0x02; 32]);
    let hub = Hub::watching(channel, &[&hash(&first), &hash(&second)]);
    let lock = on.chain.head().await.unwrap() + 100;
    let dir = tempfile::tempdir().unwrap();
    let conf = 3;

    on.redeem(
        &payee,
        channel.0,
        &conditional(&payer, channel.0, 0, 1, &hash(&first), lock),
        &first,
    )
    .await;
    on.devnet.mine(conf + 2);
    {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let tower = tower(&on, store, conf, 1000);
        assert_eq!(catch_up(&tower, &hub).await, 1);
        let checkpoint = tower.checkpoint().unwrap().unwrap();
        let head = on.chain.head().await.unwrap();
        assert_eq!(checkpoint.scanned_through, head);
        assert_eq!(checkpoint.final_through, head - 3);
    }

    // Down: the payee redeems meanwhile. Back: the scan resumes above the final epoch, finds
    // the new secret, and does not report the one found before the restart again.
    let final_before = head_minus(&on, conf).await;
    let voucher = conditional(&payer, channel.0, 1, 2, &hash(&second), lock);
    let redeemed = on.redeem(&payee, channel.0, &voucher, &second).await;
    let store: Arc<dyn Store> =
        Arc::new(paych_testkit::devnet::open_store_when_free(dir.path()).await);
    let tower = tower(&on, store, conf, 1000);
    let pass = tower.pass(&hub).await.unwrap();
    assert_eq!(pass.scanned.map(|(from, _)| from), Some(final_before + 1));
    assert_eq!(hub.secrets(), vec![first.to_vec(), second.to_vec()]);
    assert_eq!(hub.found.lock().unwrap()[1].epoch, redeemed.epoch);
}

/// The head, less `conf`, before the last epoch mined.
async fn head_minus(on: &OnChain, conf: u64) -> ChainEpoch {
    on.chain.head().await.unwrap() - ChainEpoch::try_from(conf).unwrap()
}

#[tokio::test]
async fn on_the_devnet_a_restarted_watchtower_resumes_from_its_checkpoint() {
    resumes_from_its_checkpoint_after_a_restart(OnChain::in_process()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_lotus_json_rpc_a_restarted_watchtower_resumes_from_its_checkpoint() {
    resumes_from_its_checkpoint_after_a_restart(OnChain::over_json_rpc().await).await;
}

/// Passes scan at most `epochs_per_pass` epochs each; the last `conf` epochs below the head
/// are scanned again on the next pass (a secret there is handed over again), deeper ones
/// never; and a secret the watcher fails to take stops the pass before its epoch is
/// checkpointed, so the next pass finds it.
#[tokio::test]
async fn passes_are_bounded_rescan_the_last_conf_epochs_and_retry_a_refused_secret() {
    let on = OnChain::in_process();
    let (payer, payee) = (on.party(1, 100).await, on.party(2, 10).await);
    let channel = on.create_channel(&payer, &payee, 20).await;
    let secret = [0x33; 32];
    let hub = Hub::watching(channel, &[&hash(&secret)]);
    on.devnet.mine(10);
    let store: Arc<dyn Store> = Arc::new(SledStore::temporary().unwrap());
    let tower = tower(&on, store, 2, 4);

    let head = on.chain.head().await.unwrap();
    let mut next = 0;
    while next <= head {
        let pass = tower.pass(&hub).await.unwrap();
        let (from, through) = pass.scanned.unwrap();
        assert_eq!(from, next.min(head - 1), "resumes above the final epoch");
        assert!(through - from < 4, "at most 4 epochs a pass");
        assert_eq!(pass.caught_up, through == head);
        next = through + 1;
    }

    let lock = head + 100;
    let voucher = conditional(&payer, channel.0, 0, 1, &hash(&secret), lock);
    hub.refusing.store(true, Ordering::SeqCst);
    let redeemed = on.redeem(&payee, channel.0, &voucher, &secret).await;
    let refused = tower.pass(&hub).await.unwrap_err();
    assert!(matches!(&refused, WatchError::Watcher { epoch, .. } if *epoch == redeemed.epoch));
    assert_eq!(tower.checkpoint().unwrap().unwrap().scanned_through, redeemed.epoch - 1);
    hub.refusing.store(false, Ordering::SeqCst);
    assert_eq!(tower.pass(&hub).await.unwrap().found, 1, "found again");
    assert_eq!(tower.pass(&hub).await.unwrap().found, 1, "within conf: rescanned");
    on.devnet.mine(3);
    assert_eq!(catch_up(&tower, &hub).await, 1, "the rescan before the epoch is final");
    assert_eq!(catch_up(&tower, &hub).await, 0, "final: never again");
    assert!(hub.found.lock().unwrap().iter().all(|f| f.message == redeemed.message));
}

/// Run as a task, the watchtower keeps passing while the chain grows: a secret revealed while
/// it runs reaches the hub, and it stops when told to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_watchtower_hands_over_a_secret_revealed_while_it_runs_and_stops_when_told() {
    let on = OnChain::in_process();
    let (payer, payee) = (on.party(1, 100).await, on.party(2, 10).await);
    let channel = on.create_channel(&payer, &payee, 20).await;
    let secret = [0x44; 32];
    let hub = Arc::new(Hub::watching(channel, &[&hash(&secret)]));
    let store: Arc<dyn Store> = Arc::new(SledStore::temporary().unwrap());
    let tower = Arc::new(tower(&on, store, 2, 4));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let running = {
        let (tower, hub) = (tower.clone(), hub.clone());
        tokio::spawn(async move { tower.run(hub.as_ref(), stopped).await })
    };

    let lock = on.chain.head().await.unwrap() + 100;
    let voucher = conditional(&payer, channel.0, 0, 1, &hash(&secret), lock);
    let redeemed = on.redeem(&payee, channel.0, &voucher, &secret).await;
    paych_testkit::deadline::eventually("the secret reaches the hub", || {
        let hub = hub.clone();
        async move { !hub.secrets().is_empty() }
    })
    .await;
    assert_eq!(hub.found.lock().unwrap()[0].message, redeemed.message);
    stop.send_replace(true);
    paych_testkit::deadline::within("the watchtower stops", running).await.unwrap();
}
