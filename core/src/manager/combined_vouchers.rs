//! Reconciliation through the manager: the payer answers a request — only from the
//! channel's payee, proved by the caller — with a combined voucher it has durably recorded
//! (closing the lanes it touches), and every answer, first or repeated, leaves only once
//! durable; the payee prepares a request and accepts the answer only when it is exactly its
//! plan, superseding what it folds only once the combined voucher is durable. The decisions
//! themselves are [`crate::combine`]'s pure functions.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    conditional, ChannelCache, CombineError, LaneTip, PartiesError, PaymentChannelManager,
};
use crate::combine::{
    check_combined, check_requester, choose_vouchers, plan_combined, price_request, PayerView,
    ReconcilePolicy, ReconcileStatus, Refusal,
};
use crate::store::{
    ChannelRecord, Direction, Lifecycle, PeerRecord, ReconcileRecord, StoreError, VoucherOrigin,
    VoucherRecord, Write,
};
use crate::types::{Address, Protocol, SignedVoucher, TokenAmount};

/// A request the payee is ready to send: its best voucher per lane worth folding, the
/// price it asks, and the payer to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileDraft {
    /// The vouchers to fold, by lane.
    pub vouchers: Vec<SignedVoucher>,
    /// The amount the combined voucher should carry.
    pub req_val: TokenAmount,
    /// The channel's payer (its key address), whose peer record says where to ask.
    pub payer: Address,
    /// The channel's payee (this node's key address), which signs the peer record that
    /// proves to the payer who asks.
    pub payee: Address,
}

/// The longest refusal message the payer builds from an internal error.
const MAX_INTERNAL_MESSAGE: usize = 512;

fn internal(error: impl std::fmt::Display) -> Refusal {
    let mut message = error.to_string();
    if message.len() > MAX_INTERNAL_MESSAGE {
        let mut end = MAX_INTERNAL_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    Refusal { status: ReconcileStatus::Internal, message }
}

impl PaymentChannelManager {
    /// The payer's side of a reconciliation request identified by `request_hash`, from a
    /// peer that proved it holds key `requester` (`None`: it proved no key). Only the
    /// channel's payee is answered ([`ReconcileStatus::NotPayee`] otherwise, checked before
    /// anything else about the channel is looked at). Checks `vouchers` and `req_val`
    /// against this node's records — pricing on the latest voucher issued on each lane —
    /// the chain's lanes and `policy` ([`plan_combined`]), signs the combined voucher and
    /// records the voucher, the lanes it closes and the answer, encoded by `encode`. A
    /// request answered before gets the bytes recorded then. Every answer, first or
    /// repeated, is returned only once durable. Every refusal carries its status; storage,
    /// chain and wallet failures are [`ReconcileStatus::Internal`]; a refusal signs and
    /// stores nothing.
    #[tracing::instrument(name = "paych_reconcile_as_payer", level = "debug", skip_all)]
    pub async fn reconcile_as_payer<E: std::fmt::Display>(
        &self,
        requester: Option<&Address>,
        request_hash: &[u8],
        vouchers: &[SignedVoucher],
        req_val: &TokenAmount,
        policy: &ReconcilePolicy,
        encode: impl FnOnce(&SignedVoucher) -> std::result::Result<Vec<u8>, E>,
    ) -> std::result::Result<Vec<u8>, Refusal> {
        let store = &self.inner.store;
        let record = match vouchers.first() {
            Some(v) => store.channel_by_address(&v.channel_addr).map_err(internal)?,
            None => None,
        };
        let Some(record) = record.filter(|r| r.direction == Direction::Outbound) else {
            // Not a channel this node pays from: the pure checks say which status applies.
            check_requester(&[], None, requester, vouchers, policy)?;
            return Err(Refusal {
                status: ReconcileStatus::NotOurChannel,
                message: "this node pays from no such channel".to_owned(),
            });
        };
        let addresses: Vec<Address> = record.channel.into_iter().chain(record.id_address).collect();
        let payee = self.payee_key(&record).await.map_err(internal)?;
        check_requester(&addresses, Some(&payee), requester, vouchers, policy)?;

        let lock = self.channel_lock(record.id);
        let mut cache = lock.lock().await;
        if let Some(answered) = store.reconcile(request_hash).map_err(internal)? {
            drop(cache);
            // The first request may still be flushing its answer: this one leaves only once
            // that answer is on disk too.
            store.durable().await.map_err(internal)?;
            tracing::debug!(channel = record.id, "repeated reconcile request answered as before");
            return Ok(answered.response);
        }
        // Every voucher issued on the channel must be in the store before the plan reads
        // it: wait for those being signed (no new one starts while the lock is held).
        cache.in_flight.clone().settle().await;
        let mut record = self.record(record.id).map_err(internal)?;
        self.load_cache(record.id, &mut cache).map_err(internal)?;
        let (chain_lanes, chain_settling) = match &record.channel {
            Some(addr) if record.lifecycle != Lifecycle::Collected => {
                let on_chain = self.inner.chain.channel(addr).await.map_err(internal)?;
                (on_chain.state.lanes, on_chain.state.settling_at != 0)
            }
            _ => (BTreeMap::new(), false),
        };
        let issued = issued_for_reconcile(store.vouchers(record.id).map_err(internal)?, &cache);
        let closed: BTreeSet<u64> = record.closed_lanes.iter().copied().collect();
        let view = PayerView {
            addresses: &addresses,
            payee: Some(payee),
            settling: chain_settling
                || record.settling_at != 0
                || !matches!(record.lifecycle, Lifecycle::Open),
            issued: &issued,
            closed: &closed,
            chain_lanes: &chain_lanes,
        };
        let plan = plan_combined(&view, requester, vouchers, req_val, policy)?;
        let mut combined = plan.voucher;
        let signing = combined.signing_bytes().map_err(internal)?;
        combined.signature =
            Some(self.inner.wallet.sign(&record.from, &signing).map_err(internal)?);
        let response = encode(&combined).map_err(internal)?;

        record.closed_lanes.extend(plan.closes.iter().copied());
        record.closed_lanes.sort_unstable();
        record.closed_lanes.dedup();
        record.free_lanes.retain(|lane| !plan.closes.contains(lane));
        let id = record.id;
        self.inner
            .store
            .apply(vec![
                Write::Voucher(VoucherRecord {
                    channel: id,
                    voucher: combined.clone(),
                    origin: VoucherOrigin::Combined,
                    submitted: false,
                    superseded: false,
                }),
                Write::Channel(record),
                Write::Reconcile(ReconcileRecord {
                    request_hash: request_hash.to_vec(),
                    channel: id,
                    response: response.clone(),
                }),
            ])
            .map_err(internal)?;
        fold_into_cache(&mut cache, &combined);
        drop(cache);
        // The answer leaves the process only once the closed lanes are on disk.
        store.durable().await.map_err(internal)?;
        self.notify();
        tracing::info!(
            channel = id,
            lane = combined.lane,
            merged = combined.merges.len(),
            "combined voucher issued"
        );
        Ok(response)
    }

    /// The key address of an outbound channel's payee: its `to`, resolved on chain when it
    /// is not a key address itself.
    async fn payee_key(&self, record: &ChannelRecord) -> Result<Address, CombineError> {
        match record.to.protocol() {
            Protocol::Secp256k1 | Protocol::BLS => Ok(record.to),
            _ => Ok(self.inner.chain.account_key(&record.to).await?),
        }
    }

    /// The payee's side, before asking: the best voucher per lane of inbound `channel` that
    /// is worth folding ([`choose_vouchers`]: lanes on chain, adding to what they redeemed)
    /// and its price ([`price_request`], sharing the fees saved at `fee_per_message` per
    /// message). At least two vouchers are needed: one is simply submitted.
    #[tracing::instrument(name = "paych_reconcile_draft", level = "debug", skip_all)]
    pub async fn reconcile_draft(
        &self,
        channel: &Address,
        fee_per_message: &TokenAmount,
    ) -> Result<ReconcileDraft, CombineError> {
        let record = self.record_by_address(channel)?;
        self.expect_direction(&record, Direction::Inbound)?;
        if record.lifecycle != Lifecycle::Open {
            return Err(CombineError::ChannelNotOpen {
                channel: self.describe(&record),
                lifecycle: record.lifecycle,
            });
        }
        let addr =
            record.channel.ok_or_else(|| CombineError::UnknownChannel(self.describe(&record)))?;
        let held = self.inner.store.vouchers(record.id)?;
        // A voucher folded into a combined voucher held here is not offered again, even if
        // marking it superseded did not reach the disk.
        let folded = folded_nonces(held.iter().map(|r| &r.voucher));
        // What is worth folding is what the redemption model would submit: per lane the
        // voucher that redeems (a top voucher that cannot falls back to a lower one).
        let mut best: BTreeMap<u64, SignedVoucher> = BTreeMap::new();
        for step in self.settlement_plan(&record).await?.steps {
            let v = step.voucher;
            let below_fold = folded.get(&v.lane).is_some_and(|n| v.nonce < *n);
            if v.merges.is_empty() && !below_fold {
                best.insert(v.lane, v);
            }
        }
        let on_chain = self.inner.chain.channel(&addr).await?;
        let mut vouchers = choose_vouchers(&best, &on_chain.state.lanes);
        vouchers.truncate(crate::combine::MAX_RECONCILE_VOUCHERS);
        if vouchers.len() < 2 {
            return Err(CombineError::NothingToReconcile(format!(
                "{} holds {} voucher(s) on lanes redeemed on chain that add to them; \
                 reconciling needs at least two",
                self.fmt(&addr),
                vouchers.len()
            )));
        }
        let req_val = price_request(&vouchers, fee_per_message);
        Ok(ReconcileDraft { vouchers, req_val, payer: record.from, payee: record.to })
    }

    /// The payee's side, after the answer: accepts `combined` only when it is exactly the
    /// plan for the `requested` vouchers and `req_val` ([`check_combined`]: the lowest
    /// requested lane at a nonce above every nonce held here or on chain there, merging
    /// exactly the other requested lanes at nonces above every nonce held or on chain there,
    /// no condition) and the actor would accept it now against the chain's state (signature
    /// by `from`, balance). Then stores it, and only once it is durable marks superseded
    /// every voucher it folds — so that no crash leaves the originals superseded without the
    /// combined voucher on disk. Accepting the same combined voucher again finishes what a
    /// crash may have interrupted. Refused, it changes nothing.
    #[tracing::instrument(name = "paych_reconcile_accept", level = "debug", skip_all)]
    pub async fn reconcile_accept(
        &self,
        channel: &Address,
        requested: &[SignedVoucher],
        req_val: &TokenAmount,
        combined: &SignedVoucher,
    ) -> Result<(), CombineError> {
        let (mut cache, record) = self.locked(channel, Direction::Inbound).await?;
        self.load_cache(record.id, &mut cache)?;
        let held = self.held_nonces(&record, requested, combined).await?;
        check_combined(requested, req_val, &held, combined)
            .map_err(|e| CombineError::CombinedRejected(e.to_string()))?;
        if let Some(stored) = self.inner.store.voucher(record.id, combined.lane, combined.nonce)? {
            if &stored.voucher != combined {
                return Err(CombineError::ConflictingVoucher {
                    lane: combined.lane,
                    nonce: combined.nonce,
                });
            }
            // Held already: make sure it is durable, then finish superseding.
            drop(cache);
            self.inner.store.durable().await?;
            return self.supersede_folded(&record, combined).await;
        }
        // Against the chain alone: what submitting it will do.
        self.validate(&record, combined, &[]).await?;
        self.inner.store.apply(vec![Write::Voucher(VoucherRecord {
            channel: record.id,
            voucher: combined.clone(),
            origin: VoucherOrigin::Combined,
            submitted: false,
            superseded: false,
        })])?;
        fold_into_cache(&mut cache, combined);
        drop(cache);
        self.inner.store.durable().await?;
        self.supersede_folded(&record, combined).await
    }

    /// The highest nonce this node holds (any voucher, superseded or submitted alike, but
    /// `combined` itself) or the chain has, on every lane the request or `combined` names.
    async fn held_nonces(
        &self,
        record: &ChannelRecord,
        requested: &[SignedVoucher],
        combined: &SignedVoucher,
    ) -> Result<BTreeMap<u64, u64>, CombineError> {
        let lanes: BTreeSet<u64> = requested
            .iter()
            .map(|v| v.lane)
            .chain(std::iter::once(combined.lane))
            .chain(combined.merges.iter().map(|m| m.lane))
            .collect();
        let addr =
            record.channel.ok_or_else(|| CombineError::UnknownChannel(self.describe(record)))?;
        let on_chain = self.inner.chain.channel(&addr).await?;
        let mut held: BTreeMap<u64, u64> = lanes
            .iter()
            .map(|lane| (*lane, on_chain.state.lanes.get(lane).map_or(0, |l| l.nonce)))
            .collect();
        for r in self.inner.store.vouchers(record.id)? {
            if &r.voucher == combined {
                continue;
            }
            if let Some(highest) = held.get_mut(&r.voucher.lane) {
                *highest = (*highest).max(r.voucher.nonce);
            }
        }
        Ok(held)
    }

    /// Marks superseded, durably, every stored voucher below the combined voucher on its
    /// lane and below its merge nonce on every merged lane. Called only once the combined
    /// voucher itself is durable.
    async fn supersede_folded(
        &self,
        record: &ChannelRecord,
        combined: &SignedVoucher,
    ) -> Result<(), CombineError> {
        let lock = self.channel_lock(record.id);
        let cache = lock.lock().await;
        let writes = self.superseded_by_combined(record, combined)?;
        if !writes.is_empty() {
            self.inner.store.apply(writes)?;
        }
        drop(cache);
        self.inner.store.durable().await?;
        self.notify();
        Ok(())
    }

    /// The writes marking superseded every stored voucher below the combined voucher on its
    /// lane and below its merge nonce on every merged lane.
    fn superseded_by_combined(
        &self,
        record: &ChannelRecord,
        combined: &SignedVoucher,
    ) -> Result<Vec<Write>, CombineError> {
        Ok(self
            .inner
            .store
            .vouchers(record.id)?
            .into_iter()
            .filter(|r| {
                let v = &r.voucher;
                let below_own = v.lane == combined.lane && v.nonce < combined.nonce;
                let below_merge =
                    combined.merges.iter().any(|m| m.lane == v.lane && v.nonce < m.nonce);
                (below_own || below_merge) && !r.superseded && !r.submitted
            })
            .map(|mut r| {
                r.mark_superseded();
                Write::Voucher(r)
            })
            .collect())
    }

    /// Keeps a peer record for its address when its sequence number is above the one held;
    /// answers whether it was stored. The record must have been verified by the caller.
    #[tracing::instrument(name = "paych_record_peer", level = "debug", skip_all)]
    pub async fn record_peer(&self, peer: PeerRecord) -> Result<bool, StoreError> {
        let _turn = self.inner.learning.lock().await;
        if let Some(held) = self.inner.store.peer(&peer.address)? {
            if held.sequence >= peer.sequence {
                return Ok(false);
            }
        }
        self.commit(vec![Write::Peer(peer)]).await?;
        Ok(true)
    }

    /// The peer record held for a key address.
    pub fn peer_record(&self, address: &Address) -> Result<Option<PeerRecord>, StoreError> {
        self.inner.store.peer(address)
    }

    /// The key addresses of a channel's payer and payee (`from`, `to`): from the store when
    /// the channel is known, else from the chain.
    #[tracing::instrument(name = "paych_channel_parties", level = "debug", skip_all)]
    pub async fn channel_parties(
        &self,
        channel: &Address,
    ) -> Result<(Address, Address), PartiesError> {
        if let Some(record) = self.inner.store.channel_by_address(channel)? {
            return Ok((record.from, record.to));
        }
        let on_chain = match self.inner.chain.channel(channel).await {
            Ok(c) => c,
            Err(crate::chain::ChainError::NotFound(_)) => {
                return Err(PartiesError::UnknownChannel(self.fmt(channel)))
            }
            Err(e) => return Err(e.into()),
        };
        let from = self.inner.chain.account_key(&on_chain.state.from).await?;
        let to = self.inner.chain.account_key(&on_chain.state.to).await?;
        Ok((from, to))
    }
}

/// A combined voucher in a channel's cache: its lane carries `req_val`, and every merged
/// lane carries nothing more of its own (what it paid is folded into the combined amount).
pub(super) fn fold_into_cache(cache: &mut ChannelCache, combined: &SignedVoucher) {
    cache.held.insert(combined.clone());
    cache
        .lanes
        .insert(combined.lane, LaneTip { nonce: combined.nonce, amount: combined.amount.clone() });
    for merge in &combined.merges {
        let tip = cache.lanes.entry(merge.lane).or_default();
        if merge.nonce > tip.nonce {
            *tip = LaneTip { nonce: merge.nonce, amount: TokenAmount::default() };
        }
    }
}

/// Every voucher issued on a channel by (lane, nonce), as reconciliation prices and numbers
/// them. A conditional voucher that expired unredeemed pays nothing: it stands as an
/// unconditional voucher at the lane's amount without it (what the chain and the known
/// secrets imply), so that the lane can be folded, and keeps its nonce, so that the combined
/// voucher goes above it. Such a stand-in is never shown by a payee (it was never signed):
/// a request naming that nonce is refused as not issued.
fn issued_for_reconcile(
    records: Vec<VoucherRecord>,
    cache: &ChannelCache,
) -> BTreeMap<(u64, u64), SignedVoucher> {
    records
        .into_iter()
        .map(|r| {
            let mut v = r.voucher.clone();
            if conditional::expired_unredeemed(&r) {
                let amount = cache.lanes.get(&v.lane).map(|t| t.amount.clone()).unwrap_or_default();
                v = SignedVoucher::new(v.channel_addr, v.lane, v.nonce, amount);
            }
            ((v.lane, v.nonce), v)
        })
        .collect()
}

/// The nonce below which each lane's vouchers are folded into a combined voucher among
/// `vouchers`: its own lane below its nonce, each merged lane below the merge's nonce.
fn folded_nonces<'a>(vouchers: impl Iterator<Item = &'a SignedVoucher>) -> BTreeMap<u64, u64> {
    let mut folded: BTreeMap<u64, u64> = BTreeMap::new();
    let mut raise = |lane: u64, nonce: u64| {
        let entry = folded.entry(lane).or_default();
        *entry = (*entry).max(nonce);
    };
    for v in vouchers.filter(|v| !v.merges.is_empty()) {
        raise(v.lane, v.nonce);
        for merge in &v.merges {
            raise(merge.lane, merge.nonce);
        }
    }
    folded
}
