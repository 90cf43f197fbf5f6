//! The store conformance suite, which every [`Store`] backend must pass, run on sled on disk
//! and in a temporary directory; then what only sled shows: group commit, reopening, corrupt
//! records, and acknowledged writes surviving a SIGKILL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use paych_core::store::sled::SledStore;
use paych_core::store::{
    ChannelId, ChannelRecord, Direction, InvoiceSecretRecord, Leg, Lifecycle, MessagePurpose,
    MessageRecord, MessageState, PeerRecord, ReconcileRecord, RouteRecord, RouteRole, RouteState,
    SecretRecord, Store, StoreError, VoucherOrigin, VoucherRecord, WatchCheckpointRecord, Write,
};
use paych_core::types::{Address, Message, Signature, SignedMessage, SignedVoucher, TokenAmount};
use tempfile::TempDir;
use tokio::task::JoinSet;

// ---------------------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------------------

fn key_address(seed: u8) -> Address {
    Address::new_secp256k1(&[seed; 65]).unwrap()
}

fn robust_address(id: ChannelId) -> Address {
    Address::new_actor(&id.to_be_bytes())
}

fn id_address(id: ChannelId) -> Address {
    Address::new_id(id.wrapping_add(1000))
}

/// A channel whose create message has not landed: no address yet.
fn creating(id: ChannelId) -> ChannelRecord {
    let (from, to) = (key_address(1), key_address(2));
    ChannelRecord {
        pending: TokenAmount::from_atto(1_000_000),
        ..ChannelRecord::new(id, Direction::Outbound, from, to, Lifecycle::Creating)
    }
}

/// The same channel once its create message has landed.
fn open(id: ChannelId) -> ChannelRecord {
    ChannelRecord {
        channel: Some(robust_address(id)),
        id_address: Some(id_address(id)),
        lifecycle: Lifecycle::Open,
        confirmed: TokenAmount::from_atto(1_000_000),
        pending: TokenAmount::from_atto(0),
        next_lane: 3,
        free_lanes: vec![1],
        closed_lanes: vec![2],
        ..creating(id)
    }
}

/// The voucher on (`lane`, `nonce`) of `channel`; its amount says where it belongs.
fn voucher(channel: ChannelId, lane: u64, nonce: u64) -> VoucherRecord {
    VoucherRecord {
        channel,
        voucher: SignedVoucher {
            signature: Some(Signature::new_secp256k1(vec![7; 65])),
            ..SignedVoucher::new(
                robust_address(channel),
                lane,
                nonce,
                TokenAmount::from_atto(
                    u128::from(channel) * 1_000_000 + u128::from(lane) * 1_000 + u128::from(nonce),
                ),
            )
        },
        origin: VoucherOrigin::Created,
        submitted: false,
        superseded: false,
    }
}

fn message(nonce: u64, purpose: MessagePurpose) -> MessageRecord {
    let signed = SignedMessage {
        message: Message::new(
            key_address(1),
            robust_address(9),
            nonce,
            TokenAmount::from_atto(5),
            2,
            vec![0x80],
        ),
        signature: Signature::new_secp256k1(vec![9; 65]),
    };
    MessageRecord { cid: signed.cid().unwrap(), signed, purpose, state: MessageState::Recorded }
}

fn ids(records: &[VoucherRecord]) -> Vec<(ChannelId, u64, u64)> {
    records.iter().map(|r| (r.channel, r.voucher.lane, r.voucher.nonce)).collect()
}

fn apply_one(store: &dyn Store, write: Write) {
    store.apply(vec![write]).unwrap();
}

// ---------------------------------------------------------------------------------------
// The conformance suite
// ---------------------------------------------------------------------------------------

/// A fresh, empty store of one backend, and whatever must outlive it.
struct Fresh {
    store: Arc<dyn Store>,
    _dir: Option<TempDir>,
}

/// Every scenario a backend must pass, each on a fresh store from `fresh`.
async fn conformance(fresh: fn() -> Fresh) {
    let on_a_fresh_store: [fn(&dyn Store); 16] = [
        channel_round_trips,
        channel_is_found_by_both_addresses_once_open,
        changed_address_leaves_no_stale_index_entry,
        address_of_another_channel_is_refused,
        channels_are_listed_in_id_order,
        voucher_round_trips,
        vouchers_are_listed_by_lane_then_nonce,
        vouchers_never_leak_between_channels,
        lane_queries_agree_with_the_channel_listing,
        voucher_for_unknown_channel_is_refused,
        message_records_follow_their_states,
        message_under_wrong_cid_is_refused,
        reconcile_and_peer_records_round_trip,
        invoice_secret_is_kept_under_its_hash_and_never_replaced,
        learned_secrets_and_routes_are_kept_under_their_hash,
        watch_checkpoint_is_one_record_replaced_by_each_write,
    ];
    for scenario in on_a_fresh_store {
        scenario(&*fresh().store);
    }
    channel_ids_never_repeat(fresh().store);
    failed_batch_writes_nothing(&*fresh().store);
    channel_reads_follow_every_write(&*fresh().store);
    channel_readers_never_go_back(fresh().store);
    secrets_asked_for_before_they_are_written_are_found_after(&*fresh().store);
    secret_readers_see_every_secret_once_written(fresh().store);
    a_batch_is_seen_whole_across_point_reads(fresh().store);
    readers_never_see_half_a_batch(fresh().store);
    durable_with_nothing_written_returns(&*fresh().store).await;
    concurrent_writers_all_become_durable(fresh().store).await;
}

fn channel_round_trips(store: &dyn Store) {
    assert_eq!(store.channel(1).unwrap(), None);
    let mut record = open(1);
    record.settling_at = 4321;
    record.create_error = Some("out of gas".into());
    record.pending_message = Some(message(0, MessagePurpose::Settle { channel: 1 }).cid);
    apply_one(store, Write::Channel(record.clone()));
    assert_eq!(store.channel(1).unwrap(), Some(record.clone()));

    record.lifecycle = Lifecycle::Settling;
    record.reserved = TokenAmount::from_atto(77);
    apply_one(store, Write::Channel(record.clone()));
    assert_eq!(store.channel(1).unwrap(), Some(record));
    assert_eq!(store.channels().unwrap().len(), 1);
}

fn channel_is_found_by_both_addresses_once_open(store: &dyn Store) {
    apply_one(store, Write::Channel(creating(5)));
    assert_eq!(store.channel_by_address(&robust_address(5)).unwrap(), None);
    assert_eq!(store.channel_by_address(&id_address(5)).unwrap(), None);

    apply_one(store, Write::Channel(open(5)));
    assert_eq!(store.channel_by_address(&robust_address(5)).unwrap(), Some(open(5)));
    assert_eq!(store.channel_by_address(&id_address(5)).unwrap(), Some(open(5)));
    assert_eq!(store.channel_by_address(&robust_address(6)).unwrap(), None);
    assert_eq!(store.channel_by_address(&key_address(1)).unwrap(), None, "from is no index");
}

fn changed_address_leaves_no_stale_index_entry(store: &dyn Store) {
    apply_one(store, Write::Channel(open(5)));
    let mut moved = open(5);
    moved.id_address = Some(Address::new_id(99_999));
    apply_one(store, Write::Channel(moved.clone()));
    assert_eq!(store.channel_by_address(&id_address(5)).unwrap(), None);
    assert_eq!(store.channel_by_address(&Address::new_id(99_999)).unwrap(), Some(moved));

    // The freed address can go to another channel.
    let mut other = open(6);
    other.id_address = Some(id_address(5));
    apply_one(store, Write::Channel(other.clone()));
    assert_eq!(store.channel_by_address(&id_address(5)).unwrap(), Some(other));

    // Back to Creating: no address, no index entry.
    apply_one(store, Write::Channel(creating(6)));
    assert_eq!(store.channel_by_address(&robust_address(6)).unwrap(), None);
    assert_eq!(store.channel_by_address(&id_address(5)).unwrap(), None);
}

fn address_of_another_channel_is_refused(store: &dyn Store) {
    apply_one(store, Write::Channel(open(5)));
    let mut thief = open(6);
    thief.channel = Some(robust_address(5));
    let err = store.apply(vec![Write::Channel(thief)]).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(store.channel(6).unwrap(), None);
    assert_eq!(store.channel_by_address(&robust_address(5)).unwrap(), Some(open(5)));
}

fn channels_are_listed_in_id_order(store: &dyn Store) {
    let order = [65_536, 2, 1 << 40, 256, 1, 255, u64::MAX];
    for id in order {
        apply_one(store, Write::Channel(creating(id)));
    }
    let listed: Vec<ChannelId> = store.channels().unwrap().iter().map(|c| c.id).collect();
    assert_eq!(listed, vec![1, 2, 255, 256, 65_536, 1 << 40, u64::MAX]);
}

fn voucher_round_trips(store: &dyn Store) {
    apply_one(store, Write::Channel(open(1)));
    let mut record = voucher(1, 4, 9);
    record.voucher.secret_hash = vec![0xab; 32];
    record.voucher.merges = vec![paych_core::types::Merge { lane: 2, nonce: 3 }];
    record.origin = VoucherOrigin::Combined;
    apply_one(store, Write::Voucher(record.clone()));
    assert_eq!(store.voucher(1, 4, 9).unwrap(), Some(record.clone()));
    assert_eq!(store.voucher(1, 4, 8).unwrap(), None);
    assert_eq!(store.voucher(2, 4, 9).unwrap(), None);

    record.submitted = true;
    record.superseded = true;
    apply_one(store, Write::Voucher(record.clone()));
    assert_eq!(store.voucher(1, 4, 9).unwrap(), Some(record.clone()));
    assert_eq!(store.vouchers(1).unwrap(), vec![record]);
}

fn vouchers_are_listed_by_lane_then_nonce(store: &dyn Store) {
    apply_one(store, Write::Channel(open(1)));
    // Inserted out of order, with numbers whose little-endian or decimal order differs.
    let keys = [(256, 1), (1, 256), (1, 2), (0, 1 << 33), (2, 0), (1, 255), (0, 7)];
    store
        .apply(keys.iter().map(|&(lane, nonce)| Write::Voucher(voucher(1, lane, nonce))).collect())
        .unwrap();
    let listed = ids(&store.vouchers(1).unwrap());
    assert_eq!(
        listed,
        vec![
            (1, 0, 7),
            (1, 0, 1 << 33),
            (1, 1, 2),
            (1, 1, 255),
            (1, 1, 256),
            (1, 2, 0),
            (1, 256, 1)
        ]
    );
}

fn vouchers_never_leak_between_channels(store: &dyn Store) {
    // 1 and 256 differ in one byte; 0x0100 would be a prefix match if IDs were not fixed width.
    let channels = [1, 256, 257, 65_536, 1 << 56];
    for id in channels {
        apply_one(store, Write::Channel(creating(id)));
        store
            .apply(vec![Write::Voucher(voucher(id, 0, 1)), Write::Voucher(voucher(id, 1, 1))])
            .unwrap();
    }
    for id in channels {
        assert_eq!(ids(&store.vouchers(id).unwrap()), vec![(id, 0, 1), (id, 1, 1)]);
    }
    assert!(store.vouchers(2).unwrap().is_empty());
}

/// `lane_vouchers` and `lane_tops` answer exactly what filtering the channel's whole listing
/// answers: lanes at the ends of the range (0 and `u64::MAX`), nonces whose byte order
/// differs from their little-endian one, neighbouring channels (the last channel ID too),
/// and a `keep` that skips a lane's top.
fn lane_queries_agree_with_the_channel_listing(store: &dyn Store) {
    let channels = [1, 2, ChannelId::MAX];
    let lanes = [0, 1, 255, 256, u64::MAX - 1, u64::MAX];
    let nonces = [0, 1, 255, 256, 1 << 33, u64::MAX];
    for id in channels {
        apply_one(store, Write::Channel(creating(id)));
        let mut writes = Vec::new();
        for (i, lane) in lanes.iter().enumerate() {
            // Lane i holds nonces[..=i]: a lane of one voucher, and longer ones.
            for (j, nonce) in nonces.iter().take(i + 1).enumerate() {
                let mut record = voucher(id, *lane, *nonce);
                record.submitted = (i + j) % 3 == 0;
                writes.push(Write::Voucher(record));
            }
        }
        store.apply(writes).unwrap();
    }
    let keeps: [&(dyn Fn(&VoucherRecord) -> bool + Sync); 3] =
        [&|_| true, &|r| !r.submitted, &|r| r.voucher.nonce < 256];
    for id in channels {
        let all = store.vouchers(id).unwrap();
        for lane in lanes {
            for from in [0, 1, 256, u64::MAX] {
                let expected: Vec<VoucherRecord> = all
                    .iter()
                    .filter(|r| r.voucher.lane == lane && r.voucher.nonce >= from)
                    .cloned()
                    .collect();
                assert_eq!(store.lane_vouchers(id, lane, from).unwrap(), expected);
            }
        }
        for keep in keeps {
            let mut expected: Vec<VoucherRecord> = Vec::new();
            for r in all.iter().filter(|r| keep(r)) {
                match expected.last_mut() {
                    Some(last) if last.voucher.lane == r.voucher.lane => *last = r.clone(),
                    _ => expected.push(r.clone()),
                }
            }
            assert_eq!(store.lane_tops(id, keep).unwrap(), expected);
        }
    }
    assert!(store.lane_vouchers(3, 0, 0).unwrap().is_empty());
    assert!(store.lane_tops(3, &|_| true).unwrap().is_empty());
}

fn voucher_for_unknown_channel_is_refused(store: &dyn Store) {
    let err = store.apply(vec![Write::Voucher(voucher(3, 0, 1))]).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(store.voucher(3, 0, 1).unwrap(), None);

    // Written together with its channel, it is fine, in either order.
    store.apply(vec![Write::Voucher(voucher(3, 0, 1)), Write::Channel(creating(3))]).unwrap();
    assert_eq!(store.voucher(3, 0, 1).unwrap(), Some(voucher(3, 0, 1)));
}

fn message_records_follow_their_states(store: &dyn Store) {
    apply_one(store, Write::Channel(creating(1)));
    let create = message(
        0,
        MessagePurpose::Create {
            channel: 1,
            amount: TokenAmount::from_atto(9),
            reserve: TokenAmount::from_atto(4),
        },
    );
    let submit =
        message(1, MessagePurpose::Submit { channel: 1, lane: 2, nonce: 3, marked: vec![1, 3] });
    let mut channel = creating(1);
    channel.pending_message = Some(create.cid);
    store
        .apply(vec![
            Write::Channel(channel),
            Write::Message(create.clone()),
            Write::Message(submit.clone()),
        ])
        .unwrap();
    assert_eq!(store.message(&create.cid).unwrap(), Some(create.clone()));

    let states = [
        MessageState::Pushed,
        MessageState::Landed { exit_code: 0, epoch: 812, return_data: vec![0x82, 0x01, 0x02] },
    ];
    let mut landed = create.clone();
    for state in states {
        landed.state = state;
        apply_one(store, Write::Message(landed.clone()));
        assert_eq!(store.message(&create.cid).unwrap(), Some(landed.clone()));
    }
    let mut refused = submit.clone();
    refused.state = MessageState::Refused { reason: "nonce too low".into() };
    apply_one(store, Write::Message(refused.clone()));

    let all: HashSet<_> = store.messages().unwrap().into_iter().map(|m| m.cid).collect();
    assert_eq!(all, HashSet::from([create.cid, submit.cid]));
    assert_eq!(store.message(&submit.cid).unwrap(), Some(refused));
    assert_eq!(
        store.message(&message(2, MessagePurpose::Settle { channel: 1 }).cid).unwrap(),
        None
    );

    let orphan = message(3, MessagePurpose::Collect { channel: 42 });
    let err = store.apply(vec![Write::Message(orphan.clone())]).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(store.message(&orphan.cid).unwrap(), None);
}

fn message_under_wrong_cid_is_refused(store: &dyn Store) {
    apply_one(store, Write::Channel(creating(1)));
    let mut record = message(0, MessagePurpose::Settle { channel: 1 });
    let elsewhere = message(1, MessagePurpose::Settle { channel: 1 }).cid;
    record.cid = elsewhere;
    let err = store.apply(vec![Write::Message(record)]).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(store.message(&elsewhere).unwrap(), None);
}

fn reconcile_and_peer_records_round_trip(store: &dyn Store) {
    apply_one(store, Write::Channel(open(1)));
    let answer = ReconcileRecord { request_hash: vec![0x11; 32], channel: 1, response: vec![1, 2] };
    let peer = PeerRecord { address: key_address(2), sequence: 1, envelope: vec![0xee; 40] };
    store.apply(vec![Write::Reconcile(answer.clone()), Write::Peer(peer.clone())]).unwrap();
    assert_eq!(store.reconcile(&[0x11; 32]).unwrap(), Some(answer));
    assert_eq!(store.reconcile(&[0x12; 32]).unwrap(), None);
    assert_eq!(store.reconcile(&[]).unwrap(), None);
    assert_eq!(store.peer(&key_address(2)).unwrap(), Some(peer));
    assert_eq!(store.peer(&key_address(3)).unwrap(), None);

    let newer = PeerRecord { address: key_address(2), sequence: 2, envelope: vec![0xdd; 41] };
    apply_one(store, Write::Peer(newer.clone()));
    assert_eq!(store.peer(&key_address(2)).unwrap(), Some(newer));

    let orphan = ReconcileRecord { request_hash: vec![0x13; 32], channel: 2, response: vec![] };
    let err = store.apply(vec![Write::Reconcile(orphan)]).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(store.reconcile(&[0x13; 32]).unwrap(), None);
}

fn invoice_secret_is_kept_under_its_hash_and_never_replaced(store: &dyn Store) {
    let record = InvoiceSecretRecord {
        payment_hash: vec![0x21; 32],
        secret: vec![0x22; 32],
        invoice: vec![0x83, 1, 2, 3],
    };
    apply_one(store, Write::InvoiceSecret(record.clone()));
    assert_eq!(store.invoice_secret(&[0x21; 32]).unwrap(), Some(record.clone()));
    assert_eq!(store.invoice_secret(&[0x23; 32]).unwrap(), None);
    assert_eq!(store.invoice_secret(&[]).unwrap(), None);

    // Writing the same record again changes nothing; another secret under the hash is refused.
    apply_one(store, Write::InvoiceSecret(record.clone()));
    let other = InvoiceSecretRecord { secret: vec![0x24; 32], ..record.clone() };
    let err = store.apply(vec![Write::InvoiceSecret(other.clone())]).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    let twice = vec![
        Write::InvoiceSecret(InvoiceSecretRecord {
            payment_hash: vec![0x25; 32],
            ..other.clone()
        });
        2
    ];
    let err = store.apply(twice).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(store.invoice_secret(&[0x21; 32]).unwrap(), Some(record));
    assert_eq!(store.invoice_secret(&[0x25; 32]).unwrap(), None);
}

fn route(hash: u8, state: RouteState) -> RouteRecord {
    RouteRecord {
        payment_hash: vec![hash; 32],
        role: RouteRole::Hub,
        state,
        invoice: vec![0x88, 1],
        inbound: Some(Leg {
            channel: key_address(7),
            lane: 3,
            nonce: 9,
            amount: TokenAmount::from_atto(1_100u64),
            lock: 140,
            peer: Some("12D3KooW".into()),
        }),
        outbound: None,
        fee: TokenAmount::from_atto(100u64),
        secret: None,
        hub_deadline: Some(140),
        created: 100,
    }
}

fn learned_secrets_and_routes_are_kept_under_their_hash(store: &dyn Store) {
    let secret = SecretRecord { payment_hash: vec![0x31; 32], secret: vec![0x32; 32] };
    assert_eq!(store.secret(&[0x31; 32]).unwrap(), None);
    apply_one(store, Write::Secret(secret.clone()));
    assert_eq!(store.secret(&[0x31; 32]).unwrap(), Some(secret));
    // An invoice secret and a learned one live apart.
    assert_eq!(store.invoice_secret(&[0x31; 32]).unwrap(), None);

    assert_eq!(store.routes().unwrap(), vec![]);
    let mut first = route(0x42, RouteState::Offered);
    let second = route(0x41, RouteState::Forwarded);
    store.apply(vec![Write::Route(first.clone()), Write::Route(second.clone())]).unwrap();
    assert_eq!(store.route(&[0x42; 32]).unwrap(), Some(first.clone()));
    first.state = RouteState::Fulfilled;
    first.secret = Some(vec![0x43; 32]);
    first.outbound = first.inbound.clone();
    apply_one(store, Write::Route(first.clone()));
    assert_eq!(store.routes().unwrap(), vec![second, first]);
    assert_eq!(store.route(&[0x44; 32]).unwrap(), None);
}

fn watch_checkpoint_is_one_record_replaced_by_each_write(store: &dyn Store) {
    assert_eq!(store.watch_checkpoint().unwrap(), None);
    let first = WatchCheckpointRecord { scanned_through: 40, final_through: 37 };
    apply_one(store, Write::WatchCheckpoint(first));
    assert_eq!(store.watch_checkpoint().unwrap(), Some(first));
    let later = WatchCheckpointRecord { scanned_through: 52, final_through: 49 };
    apply_one(store, Write::WatchCheckpoint(later));
    assert_eq!(store.watch_checkpoint().unwrap(), Some(later));
}

fn channel_ids_never_repeat(store: Arc<dyn Store>) {
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                (0..300).map(|_| store.next_channel_id().unwrap()).collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for thread in threads {
        for id in thread.join().unwrap() {
            assert!(seen.insert(id), "channel ID {id} handed out twice");
        }
    }
    assert_eq!(seen.len(), 1200);
}

fn failed_batch_writes_nothing(store: &dyn Store) {
    apply_one(store, Write::Channel(open(1)));
    apply_one(store, Write::Voucher(voucher(1, 0, 1)));
    let before = store.channel(1).unwrap();

    let mut changed = open(1);
    changed.reserved = TokenAmount::from_atto(500);
    changed.id_address = Some(Address::new_id(77));
    let peer = PeerRecord { address: key_address(4), sequence: 1, envelope: vec![1] };
    // Valid writes first; the last one names a channel that does not exist.
    let batch = vec![
        Write::Channel(changed),
        Write::Voucher(voucher(1, 0, 2)),
        Write::Voucher(voucher(1, 5, 1)),
        Write::Peer(peer),
        Write::Channel(creating(2)),
        Write::Voucher(voucher(3, 0, 1)),
    ];
    let err = store.apply(batch).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");

    assert_eq!(store.channel(1).unwrap(), before);
    assert_eq!(store.channel(2).unwrap(), None);
    assert_eq!(ids(&store.vouchers(1).unwrap()), vec![(1, 0, 1)]);
    assert_eq!(store.peer(&key_address(4)).unwrap(), None);
    assert_eq!(store.channel_by_address(&Address::new_id(77)).unwrap(), None);
    assert_eq!(store.channel_by_address(&id_address(1)).unwrap(), before);
}

/// A channel read once (and so possibly cached) is read again as every later write left it:
/// a one-key batch, a batch of several keys, a batch that changes its addresses, and not a
/// batch that failed.
fn channel_reads_follow_every_write(store: &dyn Store) {
    apply_one(store, Write::Channel(creating(1)));
    assert_eq!(store.channel(1).unwrap(), Some(creating(1)));

    let mut record = creating(1);
    record.reserved = TokenAmount::from_atto(7);
    apply_one(store, Write::Channel(record.clone()));
    assert_eq!(store.channel(1).unwrap(), Some(record.clone()));

    record.reserved = TokenAmount::from_atto(8);
    store.apply(vec![Write::Channel(record.clone()), Write::Voucher(voucher(1, 0, 1))]).unwrap();
    assert_eq!(store.channel(1).unwrap(), Some(record.clone()));

    let mut opened = open(1);
    opened.reserved = TokenAmount::from_atto(9);
    apply_one(store, Write::Channel(opened.clone()));
    assert_eq!(store.channel(1).unwrap(), Some(opened.clone()));
    assert_eq!(store.channel_by_address(&robust_address(1)).unwrap(), Some(opened.clone()));
    assert_eq!(store.channel_by_address(&id_address(1)).unwrap(), Some(opened.clone()));

    let mut refused = opened.clone();
    refused.reserved = TokenAmount::from_atto(10);
    let err =
        store.apply(vec![Write::Channel(refused), Write::Voucher(voucher(2, 0, 1))]).unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err}");
    assert_eq!(store.channel(1).unwrap(), Some(opened.clone()));
    assert_eq!(store.channels().unwrap(), vec![opened]);
}

/// Readers racing a writer that raises a channel's reservation, one write at a time: each
/// reader sees the reservation only go up, and once the last write has returned, everyone
/// sees it.
fn channel_readers_never_go_back(store: Arc<dyn Store>) {
    const WRITES: u64 = 400;
    const READERS: usize = 3;
    apply_one(&*store, Write::Channel(open(1)));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (store, done) = (Arc::clone(&store), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut last = TokenAmount::from_atto(0);
                while !done.load(Ordering::SeqCst) {
                    let seen = store.channel(1).unwrap().unwrap().reserved;
                    assert!(seen >= last, "went back from {last:?} to {seen:?}");
                    last = seen;
                }
            })
        })
        .collect();
    for n in 1..=WRITES {
        let mut record = open(1);
        record.reserved = TokenAmount::from_atto(n);
        apply_one(&*store, Write::Channel(record));
    }
    let last = TokenAmount::from_atto(WRITES);
    assert_eq!(store.channel(1).unwrap().unwrap().reserved, last);
    done.store(true, Ordering::SeqCst);
    for reader in readers {
        reader.join().unwrap();
    }
    assert_eq!(store.channel(1).unwrap().unwrap().reserved, last);
    assert_eq!(store.channel_by_address(&id_address(1)).unwrap().unwrap().reserved, last);
}

/// Secrets asked for while absent — far more hashes than any cache of them holds, some asked
/// again and again — are found once written, each under its own hash and kind.
fn secrets_asked_for_before_they_are_written_are_found_after(store: &dyn Store) {
    const HASHES: u32 = 40_000;
    let hash = |n: u32| {
        let mut hash = vec![0x5a; 32];
        hash[..4].copy_from_slice(&n.to_be_bytes());
        hash
    };
    for n in 0..HASHES {
        assert_eq!(store.secret(&hash(n)).unwrap(), None);
        assert_eq!(store.invoice_secret(&hash(n % 64)).unwrap(), None);
    }
    let written = [0, 1, 63, HASHES / 2, HASHES - 1];
    for n in written {
        let learned = SecretRecord { payment_hash: hash(n), secret: vec![0x11; 32] };
        apply_one(store, Write::Secret(learned));
    }
    let issued = InvoiceSecretRecord {
        payment_hash: hash(63),
        secret: vec![0x12; 32],
        invoice: vec![0x13; 8],
    };
    apply_one(store, Write::InvoiceSecret(issued.clone()));
    for n in (0..HASHES).step_by(97).chain(written) {
        let learned = store.secret(&hash(n)).unwrap();
        assert_eq!(learned.is_some(), written.contains(&n), "hash {n}");
        let expected = (n == 63).then(|| issued.clone());
        assert_eq!(store.invoice_secret(&hash(n)).unwrap(), expected, "hash {n}");
    }
}

/// Readers ask for hashes over and over while a writer writes their secrets one by one: once a
/// write returns, every later read finds it, whatever the readers asked before.
fn secret_readers_see_every_secret_once_written(store: Arc<dyn Store>) {
    const SECRETS: u8 = 200;
    const READERS: usize = 3;
    let hash = |n: u8| vec![n; 32];
    let written = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (store, written, done) =
                (Arc::clone(&store), Arc::clone(&written), Arc::clone(&done));
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    let before = written.load(Ordering::SeqCst);
                    for n in 0..SECRETS {
                        let found = store.secret(&hash(n)).unwrap().is_some();
                        assert!(found || u64::from(n) >= before, "secret {n} lost after its write");
                    }
                }
            })
        })
        .collect();
    for n in 0..SECRETS {
        let learned = SecretRecord { payment_hash: hash(n), secret: vec![n ^ 0xff; 32] };
        apply_one(&*store, Write::Secret(learned));
        written.store(u64::from(n) + 1, Ordering::SeqCst);
    }
    done.store(true, Ordering::SeqCst);
    for reader in readers {
        reader.join().unwrap();
    }
    for n in 0..SECRETS {
        assert_eq!(store.secret(&hash(n)).unwrap().map(|r| r.secret), Some(vec![n ^ 0xff; 32]));
    }
}

/// A writer applies batches of a channel record and a reconciliation record carrying the same
/// counter; a reader that reads the reconciliation record and then the channel never finds
/// the channel older than the reconciliation record it has just seen.
fn a_batch_is_seen_whole_across_point_reads(store: Arc<dyn Store>) {
    const BATCHES: u64 = 2000;
    let hash = vec![0x33; 32];
    let batch = |n: u64| {
        let mut record = open(1);
        record.reserved = TokenAmount::from_atto(n);
        let answer = ReconcileRecord {
            request_hash: vec![0x33; 32],
            channel: 1,
            response: n.to_be_bytes().to_vec(),
        };
        vec![Write::Channel(record), Write::Reconcile(answer)]
    };
    store.apply(batch(0)).unwrap();
    let read = move |store: &dyn Store| {
        let answer = store.reconcile(&hash).unwrap().unwrap();
        let seen = u64::from_be_bytes(answer.response.as_slice().try_into().unwrap());
        let channel = store.channel(1).unwrap().unwrap();
        assert!(
            channel.reserved >= TokenAmount::from_atto(seen),
            "batch {seen} seen without its channel record ({:?})",
            channel.reserved
        );
    };
    read_while_writing(&store, read, || {
        for n in 1..=BATCHES {
            store.apply(batch(n)).unwrap();
        }
    });
}

/// Runs `read` over and over on another thread while `write` runs, and checks that it ran at
/// least once.
fn read_while_writing(
    store: &Arc<dyn Store>,
    read: impl Fn(&dyn Store) + Send + 'static,
    write: impl FnOnce(),
) {
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (store, done) = (Arc::clone(store), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(Ordering::SeqCst) {
                read(&*store);
                reads += 1;
            }
            reads
        })
    };
    write();
    done.store(true, Ordering::SeqCst);
    assert!(reader.join().unwrap() > 0);
}

fn readers_never_see_half_a_batch(store: Arc<dyn Store>) {
    const LANES: u64 = 8;
    const BATCHES: u64 = 300;
    apply_one(&*store, Write::Channel(open(1)));
    let read = |store: &dyn Store| {
        let seen = store.vouchers(1).unwrap();
        assert_eq!(seen.len() as u64 % LANES, 0, "saw part of a batch");
        let nonces: BTreeSet<u64> = seen.iter().map(|v| v.voucher.nonce).collect();
        assert_eq!(nonces.len() as u64 * LANES, seen.len() as u64, "saw part of a batch");
    };
    read_while_writing(&store, read, || {
        for nonce in 1..=BATCHES {
            let batch = (0..LANES).map(|lane| Write::Voucher(voucher(1, lane, nonce))).collect();
            store.apply(batch).unwrap();
        }
    });
    assert_eq!(store.vouchers(1).unwrap().len() as u64, LANES * BATCHES);
}

async fn durable_with_nothing_written_returns(store: &dyn Store) {
    // A generous bound, only there so that a hang fails instead of stalling the suite.
    let limit = Duration::from_secs(30);
    tokio::time::timeout(limit, store.durable()).await.unwrap().unwrap();
    apply_one(store, Write::Channel(creating(1)));
    tokio::time::timeout(limit, store.durable()).await.unwrap().unwrap();
    tokio::time::timeout(limit, store.durable()).await.unwrap().unwrap();
}

/// 64 tasks, each applying its own voucher and then, once all 64 are in flight, waiting
/// until it is durable.
async fn concurrent_writers_all_become_durable(store: Arc<dyn Store>) {
    const WRITERS: u64 = 64;
    apply_one(&*store, Write::Channel(open(1)));
    store.durable().await.unwrap();
    let in_flight = Arc::new(tokio::sync::Barrier::new(WRITERS as usize));
    let mut writers = JoinSet::new();
    for lane in 0..WRITERS {
        let (store, in_flight) = (Arc::clone(&store), Arc::clone(&in_flight));
        writers.spawn(async move {
            store.apply(vec![Write::Voucher(voucher(1, lane, 1))])?;
            in_flight.wait().await;
            store.durable().await
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap().unwrap();
    }
    assert_eq!(store.vouchers(1).unwrap().len() as u64, WRITERS);
}

fn sled_on_disk() -> Fresh {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path().join("store")).unwrap();
    Fresh { store: Arc::new(store), _dir: Some(dir) }
}

fn sled_temporary() -> Fresh {
    Fresh { store: Arc::new(SledStore::temporary().unwrap()), _dir: None }
}

#[tokio::test]
async fn sled_on_disk_passes_the_conformance_suite() {
    conformance(sled_on_disk).await;
}

#[tokio::test]
async fn sled_temporary_passes_the_conformance_suite() {
    conformance(sled_temporary).await;
}

// ---------------------------------------------------------------------------------------
// sled only
// ---------------------------------------------------------------------------------------

/// Runs the 64 writers on a fresh on-disk store and returns the flushes they cost.
async fn flushes_for_64_writers() -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path().join("store")).unwrap());
    concurrent_writers_all_become_durable(Arc::clone(&store) as Arc<dyn Store>).await;
    // Less the flush of the channel record the scenario writes (and waits for) first.
    let flushes = store.flush_count() - 1;
    println!("64 concurrent writers: {flushes} flushes");
    flushes
}

// Every write is applied before anyone asks for durability, so the first flush covers all
// 64, and the requests queued behind it find nothing left to flush: exactly one, whatever
// the scheduling.

#[tokio::test(flavor = "current_thread")]
async fn concurrent_writers_share_one_flush_on_a_current_thread_runtime() {
    let flushes = flushes_for_64_writers().await;
    assert!(flushes < 64);
    assert_eq!(flushes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_one_flush_on_a_multi_thread_runtime() {
    let flushes = flushes_for_64_writers().await;
    assert!(flushes < 64);
    assert_eq!(flushes, 1);
}

/// Writers that each apply and wait in a loop: those arriving while a flush runs share the
/// next one. How many share depends on the scheduling; that some do does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_arriving_during_a_flush_share_the_next() {
    const WRITERS: u64 = 16;
    const ROUNDS: u64 = 32;
    let store = Arc::new(SledStore::temporary().unwrap());
    apply_one(&*store, Write::Channel(open(1)));
    let mut writers = JoinSet::new();
    for lane in 0..WRITERS {
        let store = Arc::clone(&store);
        writers.spawn(async move {
            for nonce in 1..=ROUNDS {
                store.apply(vec![Write::Voucher(voucher(1, lane, nonce))]).unwrap();
                store.durable().await.unwrap();
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let flushes = store.flush_count();
    println!("{WRITERS} writers x {ROUNDS} rounds: {flushes} flushes");
    assert!(flushes < WRITERS * ROUNDS);
}

#[tokio::test]
async fn durable_with_nothing_written_does_not_flush() {
    let store = SledStore::temporary().unwrap();
    store.durable().await.unwrap();
    assert_eq!(store.flush_count(), 0);
    apply_one(&store, Write::Channel(creating(1)));
    store.durable().await.unwrap();
    store.durable().await.unwrap();
    assert_eq!(store.flush_count(), 1);
}

#[tokio::test]
async fn durable_writes_are_all_there_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let create = message(
        0,
        MessagePurpose::Create {
            channel: 1,
            amount: TokenAmount::from_atto(1),
            reserve: TokenAmount::from_atto(0),
        },
    );
    let answer = ReconcileRecord { request_hash: vec![0x22; 32], channel: 1, response: vec![9] };
    let peer = PeerRecord { address: key_address(2), sequence: 3, envelope: vec![0xcc; 8] };
    let store = SledStore::open(&path).unwrap();
    store
        .apply(vec![
            Write::Channel(open(1)),
            Write::Channel(creating(2)),
            Write::Message(create.clone()),
            Write::Reconcile(answer.clone()),
            Write::Peer(peer.clone()),
        ])
        .unwrap();
    store.apply((0..5).map(|n| Write::Voucher(voucher(1, n % 2, n))).collect()).unwrap();
    store.durable().await.unwrap();

    drop(store);
    let store = SledStore::open(&path).unwrap();
    assert_eq!(store.channels().unwrap(), vec![open(1), creating(2)]);
    assert_eq!(store.channel_by_address(&id_address(1)).unwrap(), Some(open(1)));
    assert_eq!(
        ids(&store.vouchers(1).unwrap()),
        vec![(1, 0, 0), (1, 0, 2), (1, 0, 4), (1, 1, 1), (1, 1, 3)]
    );
    assert_eq!(store.voucher(1, 1, 3).unwrap(), Some(voucher(1, 1, 3)));
    assert_eq!(store.messages().unwrap(), vec![create]);
    assert_eq!(store.reconcile(&[0x22; 32]).unwrap(), Some(answer));
    assert_eq!(store.peer(&key_address(2)).unwrap(), Some(peer));
}

/// A batch of one key is written as a single sled insert, a batch of several key by key
/// behind the store's journal: both kinds, made durable, are there after reopening, as a reopened store reads
/// them (nothing cached).
#[tokio::test]
async fn one_key_and_many_key_batches_are_there_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let store = SledStore::open(&path).unwrap();
    apply_one(&store, Write::Channel(creating(1)));
    apply_one(&store, Write::Channel(open(1)));
    apply_one(&store, Write::Voucher(voucher(1, 0, 1)));
    let mut record = open(1);
    record.next_lane = 4;
    store.apply(vec![Write::Voucher(voucher(1, 2, 1)), Write::Channel(record.clone())]).unwrap();
    apply_one(&store, Write::Voucher(voucher(1, 0, 2)));
    store.durable().await.unwrap();
    drop(store);

    let store = SledStore::open(&path).unwrap();
    assert_eq!(store.channel(1).unwrap(), Some(record.clone()));
    assert_eq!(store.channel_by_address(&robust_address(1)).unwrap(), Some(record));
    assert_eq!(ids(&store.vouchers(1).unwrap()), vec![(1, 0, 1), (1, 0, 2), (1, 2, 1)]);
}

/// The caller that leads a flush runs it where it is: on a multi-threaded runtime, that
/// includes `block_on` outside the workers and a blocking task, and the followers of each
/// round are released by it.
#[test]
fn durable_is_led_from_anywhere_on_a_multi_thread_runtime() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let store = Arc::new(SledStore::temporary().unwrap());
    apply_one(&*store, Write::Channel(open(1)));
    rt.block_on(store.durable()).unwrap();
    assert_eq!(store.flush_count(), 1);

    apply_one(&*store, Write::Voucher(voucher(1, 0, 1)));
    let blocking = {
        let store = Arc::clone(&store);
        rt.spawn_blocking(move || {
            tokio::runtime::Handle::current().block_on(store.durable()).unwrap()
        })
    };
    rt.block_on(blocking).unwrap();
    assert_eq!(store.flush_count(), 2);

    let rounds: Vec<_> = (0..8u64)
        .map(|lane| {
            let store = Arc::clone(&store);
            rt.spawn(async move {
                for nonce in 1..=16 {
                    store.apply(vec![Write::Voucher(voucher(1, lane + 1, nonce))]).unwrap();
                    store.durable().await.unwrap();
                }
            })
        })
        .collect();
    rt.block_on(async {
        for round in rounds {
            round.await.unwrap();
        }
    });
    assert_eq!(store.vouchers(1).unwrap().len(), 1 + 8 * 16);
    assert!(store.flush_count() <= 2 + 8 * 16);
}

#[tokio::test]
async fn learned_secrets_and_routes_are_there_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let secret = SecretRecord { payment_hash: vec![0x51; 32], secret: vec![0x52; 32] };
    let record = route(0x53, RouteState::Replaced);
    {
        let store = SledStore::open(&path).unwrap();
        store.apply(vec![Write::Secret(secret.clone()), Write::Route(record.clone())]).unwrap();
        store.durable().await.unwrap();
    }
    let store = SledStore::open(&path).unwrap();
    assert_eq!(store.secret(&[0x51; 32]).unwrap(), Some(secret));
    assert_eq!(store.routes().unwrap(), vec![record]);
}

#[test]
fn channel_ids_never_repeat_across_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let mut seen = Vec::new();
    for _ in 0..3 {
        let store = SledStore::open(&path).unwrap();
        for _ in 0..300 {
            seen.push(store.next_channel_id().unwrap());
        }
    }
    // Handed out in order, and a clean close gives back the unused reservation.
    let expected: Vec<ChannelId> = (1..=900).collect();
    assert_eq!(seen, expected);
}

/// The store's key of the channel record `id`.
fn channel_key(id: u64) -> Vec<u8> {
    let mut key = vec![0x01];
    key.extend_from_slice(&id.to_be_bytes());
    key
}

/// A new store, closed, with `value` written raw under its key `key`: its directory and
/// path.
fn closed_store_with(key: &[u8], value: &[u8]) -> (TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    drop(SledStore::open(&path).unwrap());
    poke(&path, key, value);
    (dir, path)
}

/// The raw sled database of a closed store.
fn raw_db(path: &std::path::Path) -> sled::Db {
    // sled lets go of a dropped database's lock from a background thread, a moment later.
    let mut attempts = 0;
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(_) if attempts < 200 => {
                attempts += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// Writes raw bytes under the store's key `key`, with the store closed.
fn poke(path: &std::path::Path, key: &[u8], value: &[u8]) {
    let db = raw_db(path);
    db.open_tree("paych-store").unwrap().insert(key, value).unwrap();
    db.flush().unwrap();
}

#[test]
fn corrupt_record_is_a_codec_error_naming_its_key() {
    let (_dir, path) = closed_store_with(&channel_key(7), &[0xff, 0x00]);

    let store = SledStore::open(&path).unwrap();
    match store.channel(7).unwrap_err() {
        StoreError::Codec { key, .. } => assert_eq!(key, "0x010000000000000007"),
        other => panic!("expected a codec error, got {other}"),
    }
    assert!(matches!(store.channels().unwrap_err(), StoreError::Codec { .. }));
}

#[test]
fn record_under_a_foreign_key_is_a_codec_error() {
    let (_dir, path) =
        closed_store_with(&channel_key(8), &fvm_ipld_encoding::to_vec(&open(9)).unwrap());

    let store = SledStore::open(&path).unwrap();
    let err = store.channel(8).unwrap_err();
    assert!(
        matches!(&err, StoreError::Codec { reason, .. } if reason.contains("channel/9")),
        "{err}"
    );
}

#[test]
fn store_of_another_format_is_refused() {
    let (_dir, path) = closed_store_with(b"\x00version", &3u64.to_be_bytes());
    let err = SledStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err}");
}

/// The raw value under `key` of a closed store.
fn peek(path: &std::path::Path, key: &[u8]) -> Option<Vec<u8>> {
    raw_db(path).open_tree("paych-store").unwrap().get(key).unwrap().map(|v| v.to_vec())
}

/// A store of the format before the journal (version 1, which never holds one) is opened,
/// and stamped with the current version, which a build of the old format refuses.
#[test]
fn store_of_the_format_before_the_journal_is_opened_and_stamped() {
    let (_dir, path) = closed_store_with(b"\x00version", &1u64.to_be_bytes());
    let store = SledStore::open(&path).unwrap();
    apply_one(&store, Write::Channel(open(4)));
    drop(store);
    assert_eq!(peek(&path, b"\x00version"), Some(2u64.to_be_bytes().to_vec()));
    assert_eq!(SledStore::open(&path).unwrap().channel(4).unwrap(), Some(open(4)));
}

/// A journal record as docs/storage.md lays it out: a count, then per write the key's length
/// and bytes, and `0x00` (remove) or `0x01` and the value's length and bytes (insert).
fn journal(writes: &[(Vec<u8>, Option<Vec<u8>>)]) -> Vec<u8> {
    let mut out = (writes.len() as u32).to_be_bytes().to_vec();
    for (key, value) in writes {
        out.extend_from_slice(&(key.len() as u32).to_be_bytes());
        out.extend_from_slice(key);
        match value {
            None => out.push(0),
            Some(value) => {
                out.push(1);
                out.extend_from_slice(&(value.len() as u32).to_be_bytes());
                out.extend_from_slice(value);
            }
        }
    }
    out
}

fn voucher_key(channel: u64, lane: u64, nonce: u64) -> Vec<u8> {
    let mut key = vec![0x03];
    for n in [channel, lane, nonce] {
        key.extend_from_slice(&n.to_be_bytes());
    }
    key
}

fn address_key(addr: &Address) -> Vec<u8> {
    let mut key = vec![0x02];
    key.extend_from_slice(&addr.to_bytes());
    key
}

/// A stop in the middle of a batch of several keys leaves its journal and some of its keys
/// (here: the voucher, but neither the channel nor its index entries, and a stale entry not
/// yet removed): the store opens with the whole batch written and the journal gone.
#[test]
fn a_journal_left_by_a_stop_mid_batch_is_replayed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let store = SledStore::open(&path).unwrap();
    apply_one(&store, Write::Channel(open(6)));
    drop(store);
    let stale = Address::new_actor(b"moved away");
    let record = VoucherRecord { channel: 9, ..voucher(9, 1, 1) };
    let batch = vec![
        (voucher_key(9, 1, 1), Some(fvm_ipld_encoding::to_vec(&record).unwrap())),
        (channel_key(9), Some(fvm_ipld_encoding::to_vec(&open(9)).unwrap())),
        (address_key(&robust_address(9)), Some(9u64.to_be_bytes().to_vec())),
        (address_key(&id_address(9)), Some(9u64.to_be_bytes().to_vec())),
        (address_key(&stale), None),
    ];
    poke(&path, &[0x0b], &journal(&batch));
    poke(&path, &address_key(&stale), &9u64.to_be_bytes());
    poke(&path, &batch[0].0, batch[0].1.as_ref().unwrap());

    let store = SledStore::open(&path).unwrap();
    assert_eq!(store.channel(9).unwrap(), Some(open(9)));
    assert_eq!(store.channel_by_address(&id_address(9)).unwrap(), Some(open(9)));
    assert_eq!(store.voucher(9, 1, 1).unwrap(), Some(record));
    assert_eq!(store.channel(6).unwrap(), Some(open(6)));
    drop(store);
    assert_eq!(peek(&path, &[0x0b]), None, "the journal outlived its replay");
    assert_eq!(peek(&path, &address_key(&stale)), None, "the batch's removal was not replayed");
}

/// A journal that is not one (cut short, or with trailing bytes, a count it cannot hold, an
/// unknown tag) refuses the store, naming the journal's key: the batch cannot be finished.
#[test]
fn a_corrupt_journal_refuses_the_store() {
    let whole = journal(&[(channel_key(9), Some(vec![1, 2, 3])), (channel_key(8), None)]);
    let mut unknown_tag = whole.clone();
    let tag_at = 4 + 4 + 9;
    unknown_tag[tag_at] = 7;
    let bad = [
        whole[..whole.len() - 1].to_vec(),
        [whole.clone(), vec![0]].concat(),
        [u32::MAX.to_be_bytes().to_vec(), whole[4..].to_vec()].concat(),
        unknown_tag,
        vec![0, 0],
    ];
    for raw in bad {
        let (_dir, path) = closed_store_with(&[0x0b], &raw);
        match SledStore::open(&path).unwrap_err() {
            StoreError::Codec { key, .. } => assert_eq!(key, "0x0b"),
            other => panic!("expected a codec error for {raw:02x?}, got {other}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Crash durability: a child process writes until it is killed
// ---------------------------------------------------------------------------------------

/// Set in the child's environment: the store directory. Its presence selects child mode.
const CRASH_CHILD_DIR: &str = "PAYCH_STORE_CRASH_CHILD_DIR";
/// The test the child runs.
const CRASH_CHILD_TEST: &str = "crash_child_writes_vouchers_until_killed";
/// The channel the child writes to.
const CRASH_CHANNEL: ChannelId = 7;
/// Concurrent writers in the child.
const CRASH_WRITERS: u64 = 4;
/// Acknowledgements the parent waits for before it kills the child.
const CRASH_ACKS: usize = 200;

/// Child mode only (a no-op otherwise): writers apply vouchers one by one and print
/// `acked <lane> <nonce>` after each [`Store::durable`], until the parent kills the process.
#[test]
fn crash_child_writes_vouchers_until_killed() {
    write_until_killed(|lane, nonce| vec![Write::Voucher(voucher(CRASH_CHANNEL, lane, nonce))]);
}

/// In child mode (a no-op otherwise): on a store with [`CRASH_CHANNEL`], [`CRASH_WRITERS`]
/// writers, one per lane, each apply `batch(lane, nonce)` for nonces 1, 2, … and print
/// `acked <lane> <nonce>` after each [`Store::durable`], until the parent kills the process
/// (or, the parent gone, printing fails and ends it).
fn write_until_killed(batch: fn(u64, u64) -> Vec<Write>) {
    let Some(dir) = std::env::var_os(CRASH_CHILD_DIR) else {
        return;
    };
    let runtime = paych_testkit::devnet::runtime();
    runtime.block_on(async move {
        let store = Arc::new(SledStore::open(dir).unwrap());
        apply_one(&*store, Write::Channel(open(CRASH_CHANNEL)));
        store.durable().await.unwrap();
        let mut writers = JoinSet::new();
        for lane in 0..CRASH_WRITERS {
            let store = Arc::clone(&store);
            writers.spawn(async move {
                for nonce in 1.. {
                    store.apply(batch(lane, nonce)).unwrap();
                    store.durable().await.unwrap();
                    println!("acked {lane} {nonce}");
                }
            });
        }
        while let Some(done) = writers.join_next().await {
            done.unwrap();
        }
    });
}

/// Kills the child however the test ends.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs the child test `test` on a store at `path` until it has acknowledged
/// [`CRASH_ACKS`] writes, SIGKILLs it, and answers every write it acknowledged.
fn acknowledged_until_sigkill(test: &str, path: &std::path::Path) -> Vec<(u64, u64)> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CRASH_CHILD_DIR, path)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut child = Killed(child);

    let (acks, acked) = mpsc::sync_channel::<(u64, u64)>(1024);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(rest) = line.strip_prefix("acked ") {
                let (lane, nonce) = rest.split_once(' ').unwrap();
                acks.send((lane.parse().unwrap(), nonce.parse().unwrap())).unwrap();
            }
        }
    });

    let mut acknowledged = Vec::new();
    while acknowledged.len() < CRASH_ACKS {
        match acked.recv_timeout(Duration::from_secs(120)) {
            Ok(ack) => acknowledged.push(ack),
            Err(e) => panic!("child stopped acknowledging after {}: {e}", acknowledged.len()),
        }
    }
    // SIGKILL: no destructor runs, no last flush.
    child.0.kill().unwrap();
    let status = child.0.wait().unwrap();
    assert!(!status.success(), "the child was to be killed, not to finish");
    // Lines printed before the kill are acknowledgements too.
    acknowledged.extend(acked.iter());
    reader.join().unwrap();
    acknowledged
}

#[test]
fn acknowledged_vouchers_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let acknowledged = acknowledged_until_sigkill(CRASH_CHILD_TEST, &path);

    let store = SledStore::open(&path).unwrap();
    assert_eq!(store.channel(CRASH_CHANNEL).unwrap(), Some(open(CRASH_CHANNEL)));
    for &(lane, nonce) in &acknowledged {
        assert_eq!(
            store.voucher(CRASH_CHANNEL, lane, nonce).unwrap(),
            Some(voucher(CRASH_CHANNEL, lane, nonce)),
            "acknowledged voucher ({lane}, {nonce}) lost"
        );
    }
    let stored = store.vouchers(CRASH_CHANNEL).unwrap().len();
    println!("{} acknowledged, {stored} found after SIGKILL", acknowledged.len());
    assert!(stored >= acknowledged.len());
}

/// The child of [`batches_of_several_keys_survive_sigkill_whole`].
const CRASH_BATCH_CHILD_TEST: &str = "crash_child_writes_batches_until_killed";

/// The reconciliation record a batch on `lane` writes beside its voucher at `nonce`.
fn lane_counter(lane: u64, nonce: u64) -> ReconcileRecord {
    ReconcileRecord {
        request_hash: lane.to_be_bytes().to_vec(),
        channel: CRASH_CHANNEL,
        response: nonce.to_be_bytes().to_vec(),
    }
}

/// Child mode only (a no-op otherwise): writers apply batches of several keys — a voucher on
/// their lane and a record counting the lane's vouchers — until the parent kills the
/// process. Other writers' flushes land in the middle of a batch, so the kill can cut one.
#[test]
fn crash_child_writes_batches_until_killed() {
    write_until_killed(|lane, nonce| {
        vec![
            Write::Voucher(voucher(CRASH_CHANNEL, lane, nonce)),
            Write::Reconcile(lane_counter(lane, nonce)),
        ]
    });
}

/// Batches of several keys (written key by key behind the store's journal) are whole after a
/// SIGKILL: on every lane the last voucher is the one the lane's counter names, and every
/// acknowledged batch is there.
#[test]
fn batches_of_several_keys_survive_sigkill_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let acknowledged = acknowledged_until_sigkill(CRASH_BATCH_CHILD_TEST, &path);

    let store = SledStore::open(&path).unwrap();
    let vouchers = store.vouchers(CRASH_CHANNEL).unwrap();
    for lane in 0..CRASH_WRITERS {
        let last = vouchers.iter().filter(|v| v.voucher.lane == lane).map(|v| v.voucher.nonce);
        let last = last.max().unwrap_or(0);
        let counted = store
            .reconcile(&lane.to_be_bytes())
            .unwrap()
            .map_or(0, |r| u64::from_be_bytes(r.response.as_slice().try_into().unwrap()));
        assert_eq!(last, counted, "lane {lane}: a batch is there in part");
    }
    for &(lane, nonce) in &acknowledged {
        assert!(
            store.voucher(CRASH_CHANNEL, lane, nonce).unwrap().is_some(),
            "acknowledged batch ({lane}, {nonce}) lost"
        );
    }
    println!("{} acknowledged, {} found after SIGKILL", acknowledged.len(), vouchers.len());
}
