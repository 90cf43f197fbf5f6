//! The watchtower: finds the payment secrets that payees reveal on chain.
//!
//! A payee holding a conditional voucher (design §9) may redeem it on chain instead of
//! revealing its secret off chain: the secret is then in the parameters of its
//! `UpdateChannelState` message, for anyone to read. A hub that forwarded the payment must
//! learn it there in time to redeem the payer's conditional voucher with it.
//!
//! - [`secrets_in`] is pure: from one tipset's messages, the secrets sent in
//!   `UpdateChannelState` messages to the channels of a [`WatchSet`] (by ID or robust
//!   address) whose blake2b-256 hash is wanted. Parameters are decoded with the bounded
//!   decoder; anything that does not decode is skipped, and nothing in a message can make it
//!   panic. A message counts whether or not it executed: its parameters are public either way.
//! - [`Watchtower`] scans the chain through [`Chain::tipset_messages`] from a durable
//!   checkpoint (the store's [`WatchCheckpointRecord`]) up to the head, at most
//!   [`WatchConfig::epochs_per_pass`] epochs per pass, and hands each secret found to its
//!   [`Watcher`] before the checkpoint moves past the epoch it was found in. Epochs fewer than
//!   `conf` below the head they were scanned at are scanned again on the next pass, so a
//!   reorganisation shorter than `conf` that brings in a new message is still seen. After a
//!   restart, scanning resumes above the last epoch that was final when scanned.
//!
//! This module never signs, redeems or stores secrets: the watcher does (the node learns the
//! secret durably and redeems the inbound conditional voucher with it). It sees only messages
//! sent to a channel directly: a payee that redeems through another actor (a multisig's
//! proposal, a contract) calls the channel from inside a message to that actor, which this
//! scan does not read — a hub must forward conditional vouchers only to payees that are
//! account actors.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use cid::Cid;

use crate::chain::{Chain, ChainError, ChainMessage};
use crate::crypto::blake2b_256;
use crate::store::{Store, StoreError, WatchCheckpointRecord, Write};
use crate::types::{
    decode, paych_method, Address, ChainEpoch, UpdateChannelStateParams, MAX_SECRET_SIZE,
};

/// The largest message parameters decoded (Lotus's `MaxMessageSize`, 64 KiB, bounds a whole
/// message; its parameters are smaller still).
pub const MAX_PARAMS_BYTES: usize = 64 << 10;
/// The most epochs [`WatchConfig::epochs_per_pass`] may be.
pub const MAX_EPOCHS_PER_PASS: u64 = 2880;
/// The default of [`WatchConfig::epochs_per_pass`].
pub const DEFAULT_EPOCHS_PER_PASS: u64 = 120;

/// The channels a watchtower watches, each known by its robust address and its ID address:
/// a message may name the channel by either.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchSet {
    /// Every address watched, to the address the channel is reported by.
    by_address: HashMap<Address, Address>,
}

impl WatchSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Watches `channel` (reported by that address), and its `id_address` when known.
    pub fn watch(&mut self, channel: Address, id_address: Option<Address>) {
        self.by_address.insert(channel, channel);
        if let Some(id) = id_address {
            self.by_address.insert(id, channel);
        }
    }

    /// The channel a message sent to `to` reaches, if it is watched.
    pub fn channel(&self, to: &Address) -> Option<Address> {
        self.by_address.get(to).copied()
    }

    /// Whether nothing is watched.
    pub fn is_empty(&self) -> bool {
        self.by_address.is_empty()
    }
}

/// A secret found on chain, with where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundSecret {
    /// The watched channel the message was sent to (as the [`WatchSet`] reports it).
    pub channel: Address,
    /// The lane of the voucher the message redeems.
    pub lane: u64,
    /// That voucher's nonce.
    pub nonce: u64,
    /// blake2b-256 of the secret.
    pub payment_hash: Vec<u8>,
    /// The secret, as the message carries it.
    pub secret: Vec<u8>,
    /// The message's CID.
    pub message: Cid,
    /// The epoch of the tipset that included the message.
    pub epoch: ChainEpoch,
}

/// The secrets revealed in `messages` (the messages of the tipset at `epoch`): each
/// `UpdateChannelState` to a watched channel whose parameters decode, whose secret is
/// non-empty and at most [`MAX_SECRET_SIZE`] bytes, and whose hash is `wanted`. Everything
/// else is skipped; hostile parameters never make it panic.
pub fn secrets_in(
    epoch: ChainEpoch,
    messages: &[ChainMessage],
    watched: &WatchSet,
    wanted: impl Fn(&[u8]) -> bool,
) -> Vec<FoundSecret> {
    messages.iter().filter_map(|m| secret_in(epoch, m, watched, &wanted)).collect()
}

fn secret_in(
    epoch: ChainEpoch,
    message: &ChainMessage,
    watched: &WatchSet,
    wanted: &impl Fn(&[u8]) -> bool,
) -> Option<FoundSecret> {
    let m = &message.message;
    if m.method != paych_method::UPDATE_CHANNEL_STATE || m.params.len() > MAX_PARAMS_BYTES {
        return None;
    }
    let channel = watched.channel(&m.to)?;
    let params: UpdateChannelStateParams = match decode::decode(&m.params) {
        Ok(params) => params,
        Err(e) => {
            tracing::debug!(cid = %message.cid, error = %e, "skipping undecodable parameters");
            return None;
        }
    };
    if params.secret.is_empty() || params.secret.len() > MAX_SECRET_SIZE {
        return None;
    }
    let payment_hash = blake2b_256(&params.secret).to_vec();
    if !wanted(&payment_hash) {
        return None;
    }
    Some(FoundSecret {
        channel,
        lane: params.sv.lane,
        nonce: params.sv.nonce,
        payment_hash,
        secret: params.secret,
        message: message.cid,
        epoch,
    })
}

/// What a watchtower watches for, and who takes what it finds.
#[async_trait]
pub trait Watcher: Send + Sync {
    /// The channels to watch; read once per pass, after the head.
    fn watched(&self) -> WatchSet;

    /// Whether a secret hashing to `payment_hash` is wanted. Asked as each message is read,
    /// so it should answer from the live set of pending payment hashes.
    fn wants(&self, payment_hash: &[u8]) -> bool;

    /// Takes a secret found (the same secret may come again: a rescan finds it anew, so
    /// taking it must be idempotent). An error stops the pass before its epoch is
    /// checkpointed: the next pass finds the secret again.
    async fn found(&self, secret: FoundSecret) -> Result<(), String>;
}

/// How a [`Watchtower`] scans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchConfig {
    /// The confirmation depth: epochs fewer than this below the head are scanned again on the
    /// next pass.
    pub conf: u64,
    /// The most epochs scanned in one pass, 1 to [`MAX_EPOCHS_PER_PASS`].
    pub epochs_per_pass: u64,
    /// Where the first scan starts when the store has no checkpoint; `None`: `conf` epochs
    /// below the head.
    pub start: Option<ChainEpoch>,
    /// The wait between passes once caught up with the head ([`Watchtower::run`]).
    pub interval: Duration,
}

impl WatchConfig {
    /// Scans with confirmation depth `conf`, [`DEFAULT_EPOCHS_PER_PASS`] epochs per pass,
    /// starting `conf` epochs below the head, a pass every `interval` once caught up.
    pub fn new(conf: u64, interval: Duration) -> Self {
        WatchConfig { conf, epochs_per_pass: DEFAULT_EPOCHS_PER_PASS, start: None, interval }
    }
}

/// Why a watchtower pass failed. The checkpoint keeps every epoch scanned before the failure.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    /// The configuration is not usable.
    #[error("watchtower configuration: {0}")]
    Config(String),
    /// The chain's head could not be read.
    #[error("reading the head: {0}")]
    Head(ChainError),
    /// A tipset's messages could not be read (above the head after a reorganisation, or no
    /// longer kept by the node).
    #[error("reading the messages of epoch {epoch}: {source}")]
    Messages {
        /// The epoch.
        epoch: ChainEpoch,
        /// What the chain said.
        source: ChainError,
    },
    /// The watcher refused a secret found.
    #[error("the watcher did not take the secret of message {message} (epoch {epoch}): {reason}")]
    Watcher {
        /// The epoch it was found in.
        epoch: ChainEpoch,
        /// The message it was found in.
        message: Cid,
        /// What the watcher said.
        reason: String,
    },
    /// The checkpoint could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What one pass scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    /// The head when the pass started.
    pub head: ChainEpoch,
    /// The epochs scanned, first and last; `None` when there was nothing to scan.
    pub scanned: Option<(ChainEpoch, ChainEpoch)>,
    /// Secrets handed to the watcher.
    pub found: usize,
    /// Whether the pass reached the head.
    pub caught_up: bool,
}

/// Scans the chain for secrets from a durable checkpoint (see the module's documentation).
pub struct Watchtower {
    chain: Arc<dyn Chain>,
    store: Arc<dyn Store>,
    config: WatchConfig,
}

impl std::fmt::Debug for Watchtower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchtower").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Watchtower {
    /// A watchtower reading `chain` and keeping its checkpoint in `store`.
    pub fn new(
        chain: Arc<dyn Chain>,
        store: Arc<dyn Store>,
        config: WatchConfig,
    ) -> Result<Self, WatchError> {
        if !(1..=MAX_EPOCHS_PER_PASS).contains(&config.epochs_per_pass) {
            return Err(WatchError::Config(format!(
                "epochs per pass must be 1 to {MAX_EPOCHS_PER_PASS}, not {}",
                config.epochs_per_pass
            )));
        }
        if ChainEpoch::try_from(config.conf).is_err() {
            return Err(WatchError::Config(format!(
                "confirmation depth {} too large",
                config.conf
            )));
        }
        Ok(Watchtower { chain, store, config })
    }

    /// The checkpoint as the store holds it.
    pub fn checkpoint(&self) -> Result<Option<WatchCheckpointRecord>, WatchError> {
        Ok(self.store.watch_checkpoint()?)
    }

    /// One pass: reads the head, then the watcher's channels, then scans from above the
    /// checkpoint's final epoch (or [`WatchConfig::start`]) to the head, at most
    /// [`WatchConfig::epochs_per_pass`] epochs, handing each secret to the watcher; then
    /// makes the new checkpoint durable. On a failure, the epochs scanned before it are
    /// checkpointed and the failure answered.
    #[tracing::instrument(name = "paych_watch_pass", level = "debug", skip_all)]
    pub async fn pass(&self, watcher: &dyn Watcher) -> Result<Pass, WatchError> {
        let head = self.chain.head().await.map_err(WatchError::Head)?;
        let stored = self.store.watch_checkpoint()?;
        let conf = ChainEpoch::try_from(self.config.conf).unwrap_or(ChainEpoch::MAX);
        let from = match stored {
            Some(checkpoint) => checkpoint.final_through.saturating_add(1),
            None => self.config.start.unwrap_or(head.saturating_sub(conf)),
        }
        .max(0);
        let per_pass = ChainEpoch::try_from(self.config.epochs_per_pass).unwrap_or(1);
        let through = head.min(from.saturating_add(per_pass - 1));
        let watched = watcher.watched();
        let (mut found, mut last, mut failure) = (0, None, None);
        for epoch in from..=through {
            match self.scan_epoch(epoch, &watched, watcher).await {
                Ok(n) => {
                    found += n;
                    last = Some(epoch);
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        if let Some(last) = last {
            let already_final = stored.map_or(from - 1, |c| c.final_through);
            let final_through = already_final.max(last.min(head.saturating_sub(conf)));
            let record = WatchCheckpointRecord { scanned_through: last, final_through };
            self.store.apply(vec![Write::WatchCheckpoint(record)])?;
            self.store.durable().await?;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        tracing::debug!(from, through, head, found, "watchtower pass");
        let scanned = last.map(|last| (from, last));
        Ok(Pass { head, scanned, found, caught_up: through >= head })
    }

    async fn scan_epoch(
        &self,
        epoch: ChainEpoch,
        watched: &WatchSet,
        watcher: &dyn Watcher,
    ) -> Result<usize, WatchError> {
        let messages = self
            .chain
            .tipset_messages(epoch)
            .await
            .map_err(|source| WatchError::Messages { epoch, source })?;
        let secrets = secrets_in(epoch, &messages, watched, |hash| watcher.wants(hash));
        let count = secrets.len();
        for secret in secrets {
            let message = secret.message;
            tracing::info!(%message, epoch, channel = %secret.channel, "secret found on chain");
            watcher.found(secret).await.map_err(|reason| WatchError::Watcher {
                epoch,
                message,
                reason,
            })?;
        }
        Ok(count)
    }

    /// Runs passes until `shutdown` turns true (or its sender is dropped): the next pass at
    /// once while behind the head, else after [`WatchConfig::interval`]. A failed pass is
    /// logged and tried again after the interval.
    pub async fn run(
        &self,
        watcher: &dyn Watcher,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let wait = match self.pass(watcher).await {
                Ok(pass) if !pass.caught_up => Duration::ZERO,
                Ok(_) => self.config.interval,
                Err(e) => {
                    tracing::warn!(error = %e, "watchtower pass failed");
                    self.config.interval
                }
            };
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                changed = shutdown.changed() => if changed.is_err() { return },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::types::{Message, SignedVoucher, TokenAmount};

    const SECRET: [u8; 32] = [7; 32];

    fn channel() -> Address {
        Address::new_actor(b"watched channel")
    }

    fn watched() -> WatchSet {
        let mut set = WatchSet::new();
        set.watch(channel(), Some(Address::new_id(1500)));
        set
    }

    fn hash(secret: &[u8]) -> Vec<u8> {
        blake2b_256(secret).to_vec()
    }

    fn redemption_params(secret: &[u8]) -> Vec<u8> {
        let mut sv = SignedVoucher::new(channel(), 3, 9, TokenAmount::from_atto(10));
        sv.secret_hash = hash(&SECRET);
        fvm_ipld_encoding::to_vec(&UpdateChannelStateParams { sv, secret: secret.to_vec() })
            .unwrap()
    }

    fn message(to: Address, method: u64, params: Vec<u8>) -> ChainMessage {
        let m = Message::new(Address::new_id(1600), to, 0, TokenAmount::default(), method, params);
        ChainMessage { cid: m.cid().unwrap(), message: m }
    }

    fn wanted(h: &[u8]) -> bool {
        h == hash(&SECRET).as_slice()
    }

    #[test]
    fn a_secret_sent_to_a_watched_channel_by_either_address_is_found() {
        let params = redemption_params(&SECRET);
        let by_robust = message(channel(), paych_method::UPDATE_CHANNEL_STATE, params.clone());
        let by_id = message(Address::new_id(1500), paych_method::UPDATE_CHANNEL_STATE, params);
        let found = secrets_in(12, &[by_robust.clone(), by_id.clone()], &watched(), wanted);
        assert_eq!(found.len(), 2);
        for (f, m) in found.iter().zip([&by_robust, &by_id]) {
            assert_eq!((f.channel, f.lane, f.nonce, f.epoch), (channel(), 3, 9, 12));
            assert_eq!(
                (&f.payment_hash, &f.secret, f.message),
                (&hash(&SECRET), &SECRET.to_vec(), m.cid)
            );
        }
    }

    #[test]
    fn other_channels_methods_and_unwanted_or_missing_secrets_are_skipped() {
        let params = redemption_params(&SECRET);
        let method = paych_method::UPDATE_CHANNEL_STATE;
        let skipped = [
            message(Address::new_actor(b"another channel"), method, params.clone()),
            message(Address::new_id(1501), method, params.clone()),
            message(channel(), paych_method::SETTLE, params.clone()),
            message(channel(), 0, params),
            message(channel(), method, redemption_params(&[8; 32])),
            message(channel(), method, redemption_params(&[])),
        ];
        assert!(secrets_in(1, &skipped, &watched(), wanted).is_empty());
        assert!(secrets_in(1, &skipped, &watched(), |_| true)
            .iter()
            .all(|f| f.secret == vec![8; 32]));
    }

    #[test]
    fn hostile_parameters_are_skipped_without_panicking() {
        let good = redemption_params(&SECRET);
        let mut hostile: Vec<Vec<u8>> = vec![
            vec![],
            vec![0xff; 100],
            vec![0x82, 0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            vec![0x9f; 10_000],
            vec![0x82; MAX_PARAMS_BYTES + 1],
            redemption_params(&[1; MAX_SECRET_SIZE + 1]),
        ];
        hostile.extend((0..good.len()).map(|n| good[..n].to_vec()));
        for i in 0..good.len() {
            for bit in 0..8 {
                let mut flipped = good.clone();
                flipped[i] ^= 1 << bit;
                hostile.push(flipped);
            }
        }
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for len in 0..512 {
            let bytes = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state.to_le_bytes()[0]
                })
                .collect();
            hostile.push(bytes);
        }
        let messages: Vec<_> = hostile
            .into_iter()
            .map(|p| message(channel(), paych_method::UPDATE_CHANNEL_STATE, p))
            .collect();
        for found in secrets_in(1, &messages, &watched(), wanted) {
            assert_eq!(found.secret, SECRET.to_vec(), "only a real pre-image of a wanted hash");
        }
    }
}
