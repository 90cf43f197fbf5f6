//! The messages of the paych protocols and their tuple DAG-CBOR encoding.
//!
//! This module owns the bytes of `/paych/voucher/1.0.0` and `/paych/reconcile/2.0.0`, and of
//! the signed peer record that binds a Filecoin key address to a libp2p peer. Every message
//! is a CBOR array whose items are the struct's fields in declaration order; the actor's
//! own types ([`SignedVoucher`], addresses, amounts, signatures) keep exactly the encoding
//! the chain gives them and are decoded through `paych_core`'s typed decoder.
//!
//! Decoding never panics: the bytes are parsed into a DAG-CBOR tree (which rejects malformed
//! CBOR, trailing bytes and excessive nesting), then checked field by field — arity exactly,
//! kinds, integer ranges, and every size and count bound ([`RuleViolation`]). The same
//! bounds are checked when encoding, so this code never sends what a peer would refuse.
//! Byte layouts and status codes are written down in `docs/protocol.md`.
//!
//! This module never validates business rules (signatures of vouchers, balances, nonces):
//! that is the manager's job, which answers with a status code.

use std::convert::Infallible;

use fvm_ipld_encoding::tuple::*;
use ipld_core::ipld::Ipld;
use libp2p::{Multiaddr, PeerId};
use paych_core::combine::{ReconcileStatus, Refusal};
use paych_core::crypto::{self, CryptoError, SecretKey};
use paych_core::types::decode::{self as core_decode, FromIpld, MAX_BIGINT_BYTES};
use paych_core::types::{Address, Signature, SignedVoucher, TokenAmount};
use serde::Serializer;

pub use paych_core::combine::MAX_RECONCILE_VOUCHERS;

/// The longest opaque flow reference a voucher request may carry.
pub const MAX_FLOW_BYTES: usize = 64;
/// The longest human-readable message (UTF-8 bytes) a response may carry.
pub const MAX_STATUS_MESSAGE_BYTES: usize = 1024;
/// The most multiaddrs a peer record may list.
pub const MAX_PEER_RECORD_MULTIADDRS: usize = 16;
/// The longest binary multiaddr a peer record may list.
pub const MAX_MULTIADDR_BYTES: usize = 256;
/// The longest binary PeerId a peer record may carry (real ones are at most 42 bytes).
pub const MAX_PEER_ID_BYTES: usize = 64;
/// The prefix of the bytes a peer record's key signs: `PEER_RECORD_DOMAIN ‖ CBOR(record)`.
/// It keeps a peer-record signature from ever being valid as any other Filecoin signature.
pub const PEER_RECORD_DOMAIN: &[u8] = b"paych-peer-record:";

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// A rule of the wire format that a message breaks. Checked both when encoding and when
/// decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleViolation {
    /// The flow reference is longer than [`MAX_FLOW_BYTES`].
    #[error("flow reference of {0} bytes exceeds the {MAX_FLOW_BYTES}-byte limit")]
    FlowTooLong(usize),
    /// A response's message is longer than [`MAX_STATUS_MESSAGE_BYTES`].
    #[error("status message of {0} bytes exceeds the {MAX_STATUS_MESSAGE_BYTES}-byte limit")]
    MessageTooLong(usize),
    /// A reconcile request carries more than [`MAX_RECONCILE_VOUCHERS`] vouchers.
    #[error("{0} vouchers exceed the limit of {MAX_RECONCILE_VOUCHERS}")]
    TooManyVouchers(usize),
    /// A peer record lists more than [`MAX_PEER_RECORD_MULTIADDRS`] multiaddrs.
    #[error("{0} multiaddrs exceed the limit of {MAX_PEER_RECORD_MULTIADDRS}")]
    TooManyMultiaddrs(usize),
    /// A multiaddr is longer than [`MAX_MULTIADDR_BYTES`].
    #[error("multiaddr of {0} bytes exceeds the {MAX_MULTIADDR_BYTES}-byte limit")]
    MultiaddrTooLong(usize),
    /// A PeerId is longer than [`MAX_PEER_ID_BYTES`].
    #[error("peer id of {0} bytes exceeds the {MAX_PEER_ID_BYTES}-byte limit")]
    PeerIdTooLong(usize),
    /// A protocol amount (`delta`, `lane_amount`, `req_val`) is negative.
    #[error("{0} is negative")]
    NegativeAmount(&'static str),
    /// An amount's encoding is longer than Filecoin allows.
    #[error("{what}: amount of {len} bytes exceeds the {MAX_BIGINT_BYTES}-byte limit")]
    AmountTooLarge {
        /// The field.
        what: &'static str,
        /// Encoded length, sign byte included.
        len: usize,
    },
    /// A voucher response credits a non-zero delta without accepting the voucher.
    #[error("voucher response with status {0} credits a non-zero delta")]
    DeltaWithoutAcceptance(u8),
    /// A reconcile response carries a combined voucher without status 0, or status 0
    /// without a combined voucher.
    #[error("reconcile response with status {status} {}", if *.combined { "carries a combined voucher" } else { "lacks the combined voucher" })]
    CombinedMismatch {
        /// The status code.
        status: u8,
        /// Whether a combined voucher was present.
        combined: bool,
    },
    /// A `/paych/retrieval/2.0.0` message breaks a rule of its own.
    #[error(transparent)]
    Retrieval(crate::retrieval::rules::RetrievalViolation),
    /// A `/paych/route/1.0.0` message breaks a rule of its own.
    #[error(transparent)]
    Route(crate::route::rules::RouteViolation),
}

/// Why bytes could not be decoded as a paych message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not the message's tuple DAG-CBOR layout (malformed CBOR, trailing
    /// bytes, wrong arity, wrong kind, integer out of range, bad address, amount or
    /// signature).
    #[error(transparent)]
    Layout(#[from] core_decode::DecodeError),
    /// The layout is right but a bound or a consistency rule is broken.
    #[error(transparent)]
    Rule(#[from] RuleViolation),
}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The message breaks a bound or a consistency rule; it would be refused by the peer.
    #[error(transparent)]
    Rule(#[from] RuleViolation),
    /// The CBOR encoder failed.
    #[error(transparent)]
    Cbor(#[from] paych_core::types::EncodeError),
}

/// Why a peer record could not be made or did not verify.
#[derive(Debug, thiserror::Error)]
pub enum PeerRecordError {
    /// The signature is not by the key of the record's address (or the address is not f1,
    /// or the signature is malformed).
    #[error("peer record signature: {0}")]
    Signature(#[from] CryptoError),
    /// The record's PeerId bytes are not a valid PeerId.
    #[error("peer record: invalid peer id: {0}")]
    PeerId(String),
    /// One of the record's multiaddrs is not a valid binary multiaddr.
    #[error("peer record: invalid multiaddr #{index}: {reason}")]
    Multiaddr {
        /// Its position in the record.
        index: usize,
        /// Why it is invalid.
        reason: String,
    },
    /// The record breaks a bound, or could not be encoded for signing.
    #[error("peer record: {0}")]
    Encode(#[from] EncodeError),
    /// The signer given to [`SignedPeerRecord::sign_with`] failed.
    #[error("peer record: signer failed: {0}")]
    Signer(Box<dyn std::error::Error + Send + Sync>),
}

impl From<RuleViolation> for PeerRecordError {
    fn from(v: RuleViolation) -> Self {
        PeerRecordError::Encode(EncodeError::Rule(v))
    }
}

// ---------------------------------------------------------------------------------------
// Voucher protocol
// ---------------------------------------------------------------------------------------

/// What a payee answered to a voucher. Codes below 16 mean the payee holds the voucher's
/// value; codes from 16 are rejections. Codes are stable; new ones are only ever added.
/// A receiver treats a code it does not know as a rejection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum VoucherStatus {
    /// The voucher is stored durably; `delta` is what it added to the lane.
    Accepted = 0,
    /// An older voucher: the lane's accepted amount already includes it (`delta` is 0).
    Covered = 1,
    /// The payee already holds this very voucher: a re-sent voucher adds nothing (`delta`
    /// is 0), whoever sends it.
    AlreadyHeld = 2,
    /// The payee knows no inbound channel at the voucher's address.
    UnknownChannel = 16,
    /// The voucher's signature is missing or not by the channel's `from`.
    InvalidSignature = 17,
    /// The lane already holds a voucher with this nonce or a higher one, and that voucher
    /// does not cover this one.
    StaleNonce = 18,
    /// The channel's balance does not cover the lanes' total.
    InsufficientFunds = 19,
    /// The voucher's time locks (or `min_settle_height`) make it unredeemable now.
    TimeLock = 20,
    /// The channel is settling or settled; the payee takes no new vouchers on it.
    Settling = 21,
    /// The voucher adds less than the payee's minimum delta.
    BelowMinimum = 22,
    /// The voucher breaks an actor rule (merges, secret, extra, negative amount, lane).
    Malformed = 23,
    /// The payee failed internally (storage, chain); the payer may retry.
    Internal = 24,
    /// The payer sends too fast; it may retry later.
    RateLimited = 25,
    /// The voucher is hash locked (a secret hash); the payee takes none on this path.
    HashLocked = 26,
    /// The voucher makes an `extra` call, whose outcome when the channel makes it the payee
    /// cannot know; refused.
    MessageLocked = 27,
    /// The voucher merges lanes; combined vouchers come only from a reconciliation.
    Merges = 28,
    /// The voucher's `min_settle_height` lies further ahead than the payee takes.
    SettleHeight = 29,
}

impl VoucherStatus {
    const ALL: [VoucherStatus; 17] = [
        VoucherStatus::Accepted,
        VoucherStatus::Covered,
        VoucherStatus::AlreadyHeld,
        VoucherStatus::UnknownChannel,
        VoucherStatus::InvalidSignature,
        VoucherStatus::StaleNonce,
        VoucherStatus::InsufficientFunds,
        VoucherStatus::TimeLock,
        VoucherStatus::Settling,
        VoucherStatus::BelowMinimum,
        VoucherStatus::Malformed,
        VoucherStatus::Internal,
        VoucherStatus::RateLimited,
        VoucherStatus::HashLocked,
        VoucherStatus::MessageLocked,
        VoucherStatus::Merges,
        VoucherStatus::SettleHeight,
    ];

    /// The status for a wire code, if it is one this version knows.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The wire code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Whether the payee holds the voucher's value (accepted or covered).
    pub fn is_held(self) -> bool {
        self.code() < 16
    }
}

/// Announces the payer to the payee with its first voucher on a channel: which channel, its
/// two parties, and a signed peer record binding `from` to the payer's libp2p peer.
///
/// CBOR: `[channel, from, to, peer_record]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize_tuple)]
pub struct Announce {
    /// The channel's address (robust or ID).
    pub channel: Address,
    /// The payer.
    pub from: Address,
    /// The payee.
    pub to: Address,
    /// The payer's signed peer record.
    pub peer_record: SignedPeerRecord,
}

/// A payer's voucher, sent to the payee on `/paych/voucher/1.0.0`.
///
/// CBOR: `[voucher, flow, announce]`; `flow` and `announce` may be null.
#[derive(Debug, Clone, PartialEq, Eq, Serialize_tuple)]
pub struct VoucherRequest {
    /// The signed voucher.
    pub voucher: SignedVoucher,
    /// An opaque reference to the payment flow (a retrieval, a deal) the voucher pays for,
    /// at most [`MAX_FLOW_BYTES`].
    #[serde(with = "opt_bytes")]
    pub flow: Option<Vec<u8>>,
    /// Present when the payer introduces itself and the channel (boxed: it is rare and
    /// larger than the rest of the request).
    pub announce: Option<Box<Announce>>,
}

/// The payee's answer to a [`VoucherRequest`].
///
/// CBOR: `[status, delta, lane_amount, message]`; `message` may be null.
#[derive(Debug, Clone, PartialEq, Eq, Serialize_tuple)]
pub struct VoucherResponse {
    /// A [`VoucherStatus`] code.
    pub status: u8,
    /// What the voucher added to the lane's accepted amount; zero unless status is 0.
    pub delta: TokenAmount,
    /// The lane's accepted cumulative amount after this voucher (the amount held before it
    /// when the voucher is not accepted; zero when the lane is unknown).
    pub lane_amount: TokenAmount,
    /// A human-readable explanation, at most [`MAX_STATUS_MESSAGE_BYTES`].
    pub message: Option<String>,
}

impl VoucherResponse {
    /// A response with the given status.
    pub fn new(
        status: VoucherStatus,
        delta: TokenAmount,
        lane_amount: TokenAmount,
        message: Option<String>,
    ) -> Self {
        VoucherResponse {
            status: status.code(),
            delta,
            lane_amount,
            message: message.map(truncate_message),
        }
    }

    /// The voucher is stored and added `delta` to the lane, which now totals `lane_amount`.
    pub fn accepted(delta: TokenAmount, lane_amount: TokenAmount) -> Self {
        Self::new(VoucherStatus::Accepted, delta, lane_amount, None)
    }

    /// The voucher is older than one already accepted; the lane totals `lane_amount`.
    pub fn covered(lane_amount: TokenAmount) -> Self {
        Self::new(VoucherStatus::Covered, TokenAmount::default(), lane_amount, None)
    }

    /// The payee already holds this voucher; the lane totals `lane_amount`.
    pub fn already_held(lane_amount: TokenAmount) -> Self {
        Self::new(VoucherStatus::AlreadyHeld, TokenAmount::default(), lane_amount, None)
    }

    /// A rejection with an explanation, truncated (at a character boundary) to
    /// [`MAX_STATUS_MESSAGE_BYTES`].
    pub fn rejected(
        status: VoucherStatus,
        lane_amount: TokenAmount,
        message: impl Into<String>,
    ) -> Self {
        Self::new(status, TokenAmount::default(), lane_amount, Some(message.into()))
    }

    /// The status, if its code is one this version knows.
    pub fn status(&self) -> Option<VoucherStatus> {
        VoucherStatus::from_code(self.status)
    }

    /// Whether the payee holds the voucher's value. Unknown codes count as rejections.
    pub fn is_held(&self) -> bool {
        self.status().is_some_and(VoucherStatus::is_held)
    }

    fn check(&self) -> Result<(), RuleViolation> {
        check_amount(&self.delta, "voucher_response.delta")?;
        check_amount(&self.lane_amount, "voucher_response.lane_amount")?;
        check_message(&self.message)?;
        if self.status != VoucherStatus::Accepted.code() && !self.delta.is_zero() {
            return Err(RuleViolation::DeltaWithoutAcceptance(self.status));
        }
        Ok(())
    }
}

impl VoucherRequest {
    /// A request carrying just the voucher.
    pub fn new(voucher: SignedVoucher) -> Self {
        VoucherRequest { voucher, flow: None, announce: None }
    }

    fn check(&self) -> Result<(), RuleViolation> {
        if let Some(flow) = &self.flow {
            if flow.len() > MAX_FLOW_BYTES {
                return Err(RuleViolation::FlowTooLong(flow.len()));
            }
        }
        if let Some(announce) = &self.announce {
            announce.peer_record.record.check()?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Reconcile protocol
// ---------------------------------------------------------------------------------------

/// A payee's request that the payer fold its vouchers into one combined voucher worth
/// `req_val`, sent on `/paych/reconcile/2.0.0`.
///
/// CBOR: `[vouchers, req_val, payee_record]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize_tuple)]
pub struct ReconcileRequest {
    /// The payee's best voucher per lane, at most [`MAX_RECONCILE_VOUCHERS`].
    pub vouchers: Vec<SignedVoucher>,
    /// The amount the combined voucher should carry.
    pub req_val: TokenAmount,
    /// The payee's signed peer record: the channel's `to` key binding the PeerId the
    /// request comes from. The payer answers only when it verifies, names the requesting
    /// peer and is signed by the channel's payee.
    pub payee_record: SignedPeerRecord,
}

impl ReconcileRequest {
    /// The canonical hash of what the request asks: blake2b-256 of the CBOR
    /// `[vouchers, req_val]`, re-encoded from the decoded value. A payer keys its answers
    /// by it so that it answers a repeated identical request identically. The payee's
    /// record is not part of it: the same question, asked with a record signed anew (a
    /// higher sequence), is the same request.
    pub fn request_hash(&self) -> Result<[u8; 32], EncodeError> {
        self.check()?;
        let asked = fvm_ipld_encoding::to_vec(&(&self.vouchers, &self.req_val))
            .map_err(|e| EncodeError::Cbor(paych_core::types::EncodeError::from(e)))?;
        Ok(crypto::blake2b_256(&asked))
    }

    fn check(&self) -> Result<(), RuleViolation> {
        if self.vouchers.len() > MAX_RECONCILE_VOUCHERS {
            return Err(RuleViolation::TooManyVouchers(self.vouchers.len()));
        }
        check_amount(&self.req_val, "reconcile_request.req_val")?;
        self.payee_record.check()
    }
}

/// The payer's answer to a [`ReconcileRequest`].
///
/// CBOR: `[combined, status, message]`; `combined` and `message` may be null.
#[derive(Debug, Clone, PartialEq, Eq, Serialize_tuple)]
pub struct ReconcileResponse {
    /// The signed combined voucher: present exactly when `status` is 0.
    pub combined: Option<SignedVoucher>,
    /// A [`ReconcileStatus`] code.
    pub status: u8,
    /// A human-readable explanation, at most [`MAX_STATUS_MESSAGE_BYTES`].
    pub message: Option<String>,
}

impl ReconcileResponse {
    /// Success: the signed combined voucher.
    pub fn success(combined: SignedVoucher) -> Self {
        ReconcileResponse {
            combined: Some(combined),
            status: ReconcileStatus::Success as u8,
            message: None,
        }
    }

    /// A refusal with an explanation, truncated (at a character boundary) to
    /// [`MAX_STATUS_MESSAGE_BYTES`].
    pub fn refused(status: ReconcileStatus, message: impl Into<String>) -> Self {
        ReconcileResponse {
            combined: None,
            status: status as u8,
            message: Some(truncate_message(message.into())),
        }
    }

    /// The status, if its code is one this version knows.
    pub fn status(&self) -> Option<ReconcileStatus> {
        ReconcileStatus::from_code(self.status)
    }

    fn check(&self) -> Result<(), RuleViolation> {
        check_message(&self.message)?;
        let success = self.status == ReconcileStatus::Success as u8;
        if success != self.combined.is_some() {
            return Err(RuleViolation::CombinedMismatch {
                status: self.status,
                combined: self.combined.is_some(),
            });
        }
        Ok(())
    }
}

impl From<Refusal> for ReconcileResponse {
    fn from(refusal: Refusal) -> Self {
        ReconcileResponse::refused(refusal.status, refusal.message)
    }
}

// ---------------------------------------------------------------------------------------
// Signed peer records
// ---------------------------------------------------------------------------------------

/// Binds a Filecoin key address to a libp2p peer and its addresses.
///
/// CBOR: `[address, peer_id, multiaddrs, sequence]`, with `peer_id` and each multiaddr in
/// their binary forms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize_tuple)]
pub struct PeerRecord {
    /// The f1 address whose key signs the record.
    pub address: Address,
    /// The binary PeerId ([`PeerId::to_bytes`]).
    #[serde(with = "fvm_ipld_encoding::strict_bytes")]
    pub peer_id: Vec<u8>,
    /// The peer's binary multiaddrs ([`Multiaddr::to_vec`]), at most
    /// [`MAX_PEER_RECORD_MULTIADDRS`].
    #[serde(with = "bytes_list")]
    pub multiaddrs: Vec<Vec<u8>>,
    /// A higher sequence number replaces a lower one.
    pub sequence: u64,
}

/// What a verified peer record says, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPeer {
    /// The f1 address that signed the record.
    pub address: Address,
    /// The libp2p peer.
    pub peer_id: PeerId,
    /// Where to reach it.
    pub multiaddrs: Vec<Multiaddr>,
    /// The record's sequence number.
    pub sequence: u64,
}

impl PeerRecord {
    /// A record for `address` (an f1 address), `peer_id` and `multiaddrs`.
    pub fn new(
        address: Address,
        peer_id: &PeerId,
        multiaddrs: &[Multiaddr],
        sequence: u64,
    ) -> Result<Self, RuleViolation> {
        let record = PeerRecord {
            address,
            peer_id: peer_id.to_bytes(),
            multiaddrs: multiaddrs.iter().map(Multiaddr::to_vec).collect(),
            sequence,
        };
        record.check()?;
        Ok(record)
    }

    /// The bytes the address's key signs: [`PEER_RECORD_DOMAIN`] followed by the record's
    /// CBOR.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut bytes = PEER_RECORD_DOMAIN.to_vec();
        bytes.extend_from_slice(&self.to_cbor()?);
        Ok(bytes)
    }

    fn check(&self) -> Result<(), RuleViolation> {
        if self.peer_id.len() > MAX_PEER_ID_BYTES {
            return Err(RuleViolation::PeerIdTooLong(self.peer_id.len()));
        }
        if self.multiaddrs.len() > MAX_PEER_RECORD_MULTIADDRS {
            return Err(RuleViolation::TooManyMultiaddrs(self.multiaddrs.len()));
        }
        if let Some(long) = self.multiaddrs.iter().find(|m| m.len() > MAX_MULTIADDR_BYTES) {
            return Err(RuleViolation::MultiaddrTooLong(long.len()));
        }
        Ok(())
    }

    fn parse(&self) -> Result<(PeerId, Vec<Multiaddr>), PeerRecordError> {
        let peer_id = PeerId::from_bytes(&self.peer_id)
            .map_err(|e| PeerRecordError::PeerId(e.to_string()))?;
        let multiaddrs = self
            .multiaddrs
            .iter()
            .enumerate()
            .map(|(index, bytes)| {
                Multiaddr::try_from(bytes.clone())
                    .map_err(|e| PeerRecordError::Multiaddr { index, reason: e.to_string() })
            })
            .collect::<Result<_, _>>()?;
        Ok((peer_id, multiaddrs))
    }
}

/// A [`PeerRecord`] with the signature of its address's key over
/// [`PeerRecord::signing_bytes`].
///
/// CBOR: `[record, signature]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize_tuple)]
pub struct SignedPeerRecord {
    /// The record.
    pub record: PeerRecord,
    /// The secp256k1 signature, in Filecoin's form (type byte 1 ‖ 65 bytes).
    pub signature: Signature,
}

impl SignedPeerRecord {
    /// Signs a record for the f1 address of `secret`.
    pub fn new(
        secret: &SecretKey,
        peer_id: &PeerId,
        multiaddrs: &[Multiaddr],
        sequence: u64,
    ) -> Result<Self, PeerRecordError> {
        let address = crypto::secp_address(&crypto::public_key(secret));
        Self::sign_with(address, peer_id, multiaddrs, sequence, |bytes| {
            Ok::<_, Infallible>(crypto::sign(secret, bytes))
        })
    }

    /// Signs a record for `address` with `sign`, which signs bytes with the key of
    /// `address` (a wallet, say). The signature is verified before the record is returned.
    pub fn sign_with<E>(
        address: Address,
        peer_id: &PeerId,
        multiaddrs: &[Multiaddr],
        sequence: u64,
        sign: impl FnOnce(&[u8]) -> Result<Signature, E>,
    ) -> Result<Self, PeerRecordError>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let record = PeerRecord::new(address, peer_id, multiaddrs, sequence)?;
        let signature =
            sign(&record.signing_bytes()?).map_err(|e| PeerRecordError::Signer(e.into()))?;
        let signed = SignedPeerRecord { record, signature };
        signed.verify()?;
        Ok(signed)
    }

    /// Checks the signature against the record's address, then parses the PeerId and the
    /// multiaddrs.
    pub fn verify(&self) -> Result<VerifiedPeer, PeerRecordError> {
        self.record.check()?;
        crypto::verify(&self.signature, &self.record.address, &self.record.signing_bytes()?)?;
        let (peer_id, multiaddrs) = self.record.parse()?;
        Ok(VerifiedPeer {
            address: self.record.address,
            peer_id,
            multiaddrs,
            sequence: self.record.sequence,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Encoding and decoding
// ---------------------------------------------------------------------------------------

/// Decoding from a DAG-CBOR tree, with this crate's errors.
pub(crate) trait FromWire: Sized {
    fn from_wire(ipld: &Ipld) -> Result<Self, DecodeError>;
}

/// `to_cbor`, `from_cbor` and `serde::Deserialize` (through the typed decoder) for a
/// message with a `check` method and a [`FromWire`] implementation.
macro_rules! wire_message {
    ($t:ty, $what:literal) => {
        impl $t {
            #[doc = concat!("The ", $what, "'s CBOR, after checking its bounds.")]
            pub fn to_cbor(&self) -> Result<Vec<u8>, $crate::messages::EncodeError> {
                self.check()?;
                fvm_ipld_encoding::to_vec(self).map_err(|e| {
                    $crate::messages::EncodeError::Cbor(paych_core::types::EncodeError::from(e))
                })
            }

            #[doc = concat!("Decodes a ", $what, " from exactly its CBOR.")]
            pub fn from_cbor(bytes: &[u8]) -> Result<Self, $crate::messages::DecodeError> {
                <$t as $crate::messages::FromWire>::from_wire(&paych_core::types::decode::parse(
                    bytes,
                )?)
            }
        }

        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let ipld = <ipld_core::ipld::Ipld as serde::Deserialize>::deserialize(d)?;
                <$t as $crate::messages::FromWire>::from_wire(&ipld)
                    .map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use wire_message;

/// Implements [`FromWire`] for a message encoded as the tuple of its fields in declaration
/// order: each field decoded by its function, called with the item and the field's name for
/// errors (`"<what>.<field>"`), then the whole message checked against the wire rules.
macro_rules! wire_tuple {
    ($t:ident as $what:literal { $($field:ident: $decode:expr),+ $(,)? }) => {
        impl $crate::messages::FromWire for $t {
            fn from_wire(
                ipld: &ipld_core::ipld::Ipld,
            ) -> Result<Self, $crate::messages::DecodeError> {
                const ARITY: usize = [$(stringify!($field)),+].len();
                let items = $crate::messages::field::tuple(ipld, $what, ARITY)?;
                let [$($field),+] = items else {
                    return Err(paych_core::types::DecodeError::WrongArity {
                        what: $what,
                        expected: ARITY,
                        found: items.len(),
                    }
                    .into());
                };
                let message =
                    $t { $($field: ($decode)($field, concat!($what, ".", stringify!($field)))?),+ };
                message.check()?;
                Ok(message)
            }
        }
    };
}
pub(crate) use wire_tuple;

wire_message!(VoucherRequest, "voucher request");
wire_message!(VoucherResponse, "voucher response");
wire_message!(ReconcileRequest, "reconcile request");
wire_message!(ReconcileResponse, "reconcile response");
wire_message!(Announce, "announce");
wire_message!(PeerRecord, "peer record");
wire_message!(SignedPeerRecord, "signed peer record");

impl Announce {
    fn check(&self) -> Result<(), RuleViolation> {
        self.peer_record.check()
    }
}

impl SignedPeerRecord {
    fn check(&self) -> Result<(), RuleViolation> {
        self.record.check()
    }
}

wire_tuple!(VoucherRequest as "voucher_request" {
    voucher: |item, _| SignedVoucher::from_ipld(item),
    flow: |item, what| {
        field::optional(item).map(|b| field::bytes(b, what).map(<[u8]>::to_vec)).transpose()
    },
    announce: |item, _| {
        field::optional(item).map(|a| Announce::from_wire(a).map(Box::new)).transpose()
    },
});

wire_tuple!(VoucherResponse as "voucher_response" {
    status: field::u8,
    delta: field::amount,
    lane_amount: field::amount,
    message: field::optional_text,
});

/// A reconcile request's vouchers: at most [`MAX_RECONCILE_VOUCHERS`], counted before any
/// is decoded.
fn reconcile_vouchers(ipld: &Ipld, what: &'static str) -> Result<Vec<SignedVoucher>, DecodeError> {
    let items = field::list(ipld, what)?;
    if items.len() > MAX_RECONCILE_VOUCHERS {
        return Err(RuleViolation::TooManyVouchers(items.len()).into());
    }
    Ok(items.iter().map(SignedVoucher::from_ipld).collect::<Result<_, _>>()?)
}

wire_tuple!(ReconcileRequest as "reconcile_request" {
    vouchers: reconcile_vouchers,
    req_val: field::amount,
    payee_record: |item, _| SignedPeerRecord::from_wire(item),
});

wire_tuple!(ReconcileResponse as "reconcile_response" {
    combined: |item, _| field::optional(item).map(SignedVoucher::from_ipld).transpose(),
    status: field::u8,
    message: field::optional_text,
});

wire_tuple!(Announce as "announce" {
    channel: field::address,
    from: field::address,
    to: field::address,
    peer_record: |item, _| SignedPeerRecord::from_wire(item),
});

impl FromWire for PeerRecord {
    fn from_wire(ipld: &Ipld) -> Result<Self, DecodeError> {
        let f = field::tuple(ipld, "peer_record", 4)?;
        let items = field::list(&f[2], "peer_record.multiaddrs")?;
        if items.len() > MAX_PEER_RECORD_MULTIADDRS {
            return Err(RuleViolation::TooManyMultiaddrs(items.len()).into());
        }
        let record = PeerRecord {
            address: field::address(&f[0], "peer_record.address")?,
            peer_id: field::bytes(&f[1], "peer_record.peer_id")?.to_vec(),
            multiaddrs: items
                .iter()
                .map(|m| field::bytes(m, "peer_record.multiaddr").map(<[u8]>::to_vec))
                .collect::<Result<_, _>>()?,
            sequence: field::u64(&f[3], "peer_record.sequence")?,
        };
        record.check()?;
        Ok(record)
    }
}

wire_tuple!(SignedPeerRecord as "signed_peer_record" {
    record: |item, _| PeerRecord::from_wire(item),
    signature: field::signature,
});

fn check_amount(amount: &TokenAmount, what: &'static str) -> Result<(), RuleViolation> {
    if amount.is_negative() {
        return Err(RuleViolation::NegativeAmount(what));
    }
    // Sign byte plus big-endian magnitude, as fvm encodes it.
    let len = amount.atto().to_bytes_be().1.len() + 1;
    if !amount.is_zero() && len > MAX_BIGINT_BYTES {
        return Err(RuleViolation::AmountTooLarge { what, len });
    }
    Ok(())
}

pub(crate) fn check_message(message: &Option<String>) -> Result<(), RuleViolation> {
    match message {
        Some(m) if m.len() > MAX_STATUS_MESSAGE_BYTES => {
            Err(RuleViolation::MessageTooLong(m.len()))
        }
        _ => Ok(()),
    }
}

/// Cuts `message` to at most [`MAX_STATUS_MESSAGE_BYTES`], at a character boundary.
pub(crate) fn truncate_message(mut message: String) -> String {
    if message.len() > MAX_STATUS_MESSAGE_BYTES {
        let mut end = MAX_STATUS_MESSAGE_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    message
}

/// Field readers over a DAG-CBOR tree, each failing with a typed error naming the field:
/// core's readers, plus the few kinds only these messages use.
pub(crate) mod field {
    use ipld_core::ipld::Ipld;
    use paych_core::types::decode::{self as core, DecodeError};
    use paych_core::types::{Address, Signature, TokenAmount};

    use super::{check_amount, RuleViolation};

    pub(crate) use core::{list, optional, tuple};

    pub(crate) fn u64(ipld: &Ipld, what: &'static str) -> Result<u64, DecodeError> {
        core::u64_field(ipld, what)
    }

    pub(crate) fn u8(ipld: &Ipld, what: &'static str) -> Result<u8, DecodeError> {
        let value = core::u64_field(ipld, what)?;
        u8::try_from(value)
            .map_err(|_| DecodeError::IntegerOutOfRange { what, value: i128::from(value) })
    }

    pub(crate) fn bytes<'a>(ipld: &'a Ipld, what: &'static str) -> Result<&'a [u8], DecodeError> {
        core::bytes_field(ipld, what)
    }

    pub(crate) fn optional_text(
        ipld: &Ipld,
        what: &'static str,
    ) -> Result<Option<String>, super::DecodeError> {
        match ipld {
            Ipld::Null => Ok(None),
            Ipld::String(s) if s.len() > super::MAX_STATUS_MESSAGE_BYTES => {
                Err(RuleViolation::MessageTooLong(s.len()).into())
            }
            Ipld::String(s) => Ok(Some(s.clone())),
            other => Err(DecodeError::WrongKind {
                what,
                expected: "string or null",
                found: core::kind(other),
            }
            .into()),
        }
    }

    pub(crate) fn address(ipld: &Ipld, what: &'static str) -> Result<Address, DecodeError> {
        core::address_field(ipld, what)
    }

    /// A non-negative amount in Filecoin's big-integer form.
    pub(crate) fn amount(
        ipld: &Ipld,
        what: &'static str,
    ) -> Result<TokenAmount, super::DecodeError> {
        let amount = core::amount_field(ipld, what)?;
        check_amount(&amount, what)?;
        Ok(amount)
    }

    pub(crate) fn signature(ipld: &Ipld, _what: &'static str) -> Result<Signature, DecodeError> {
        core::signature_field(ipld)
    }
}

/// Serializes `Option<Vec<u8>>` as CBOR bytes or null.
pub(crate) mod opt_bytes {
    use super::Serializer;

    pub(crate) fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_bytes(bytes),
            None => s.serialize_none(),
        }
    }
}

/// Serializes `Vec<Vec<u8>>` as a CBOR array of byte strings.
mod bytes_list {
    use super::Serializer;

    struct Bytes<'a>(&'a [u8]);

    impl serde::Serialize for Bytes<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    pub(super) fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|b| Bytes(b)))
    }
}
