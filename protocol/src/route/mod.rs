//! `/paych/route/1.0.0`: payments routed through a hub with hash-locked vouchers.
//!
//! A payer P pays a payee R it has no channel with through a hub H it has one with (the
//! design's routed payments, `docs/hub.md`). Every leg of the route is one request of this
//! protocol and its answer:
//!
//! - [`RouteRequest::Offer`] — P → H, then H → R: the payee's signed invoice (its CBOR, as
//!   `paych_core::invoice` encodes it) and a conditional voucher whose `secret_hash` is the
//!   invoice's payment hash and whose `time_lock_max` is the sender's deadline for it. The
//!   answer to an accepted offer carries the secret (the payer's receipt); it comes once the
//!   next leg has answered, so an offer's answer waits for the downstream hop.
//! - [`RouteRequest::Replace`] — P → H, then H → R: the unconditional voucher that replaces
//!   the conditional one of the payment hash named, on the same lane.
//! - [`RouteRequest::ReplaceMany`] — the same for several routes at once (1 to
//!   [`MAX_REPLACEMENTS_PER_REQUEST`]), each taken as if sent alone: the answer is
//!   [`RouteStatus::Ok`] only if every one was taken, else the status of one refused, its
//!   message naming which. A replacement is idempotent (one taken before is acknowledged
//!   again), so a sender answered with a refusal sends each alone to learn its own answer.
//! - [`RouteRequest::Policy`] — anyone → H: the hub's signed fee policy.
//!
//! Every answer is a [`RouteResponse`]: a [`RouteStatus`] (one code per refusal the routing
//! rules name), the secret, the policy and a short explanation. A refusal binds nobody:
//! there is no off-chain cancel, and a conditional voucher stays valid until its lock.
//!
//! CBOR layouts (tuple encoding, like the other paych messages):
//!
//! - request: `[0, invoice: bytes, voucher: SignedVoucher]` (offer),
//!   `[1, payment_hash: bytes(32), voucher: SignedVoucher]` (replace), `[2]` (policy),
//!   `[3, [[payment_hash: bytes(32), voucher: SignedVoucher], …]]` (replace many);
//! - response: `[status: uint, secret: bytes, policy: bytes, message: text]`, empty bytes
//!   and empty text meaning none.
//!
//! Every bound ([`MAX_INVOICE_BYTES`], [`PAYMENT_HASH_BYTES`], [`MAX_SECRET_BYTES`],
//! [`MAX_POLICY_BYTES`], [`MAX_ROUTE_MESSAGE_BYTES`], [`MAX_REPLACEMENTS_PER_REQUEST`]) and
//! every consistency rule (a refusal carries neither a secret nor a policy; an accepted
//! answer carries at most one of them; a status code this version knows; a request of several
//! replacements names a payment hash once) is checked when encoding and when decoding.
//!
//! The secret is deliberately **not** checked to be 32 bytes here: a pre-image of any length
//! up to [`MAX_SECRET_BYTES`] decodes, so that a wrong one (a 300-byte pre-image, say)
//! reaches the routing rules and is refused there with [`RouteStatus::BadSecret`]. Nor is the
//! invoice decoded, nor the voucher's shape checked: those are the routing rules' business,
//! each answered with its status. This module only moves bytes.

use fvm_ipld_encoding::tuple::*;
use fvm_ipld_encoding::BytesSer;
use ipld_core::ipld::Ipld;
use paych_core::types::decode::{kind as ipld_kind, DecodeError as LayoutError, FromIpld};
use paych_core::types::SignedVoucher;
use serde::{Serialize, Serializer};

use crate::messages::{field, wire_message, wire_tuple, DecodeError, FromWire, RuleViolation};

pub(crate) mod rules;

pub use rules::{
    RouteViolation, MAX_INVOICE_BYTES, MAX_POLICY_BYTES, MAX_REPLACEMENTS_PER_REQUEST,
    MAX_ROUTE_MESSAGE_BYTES, MAX_SECRET_BYTES, PAYMENT_HASH_BYTES, ROUTE_REQUEST_MAX_BYTES,
    ROUTE_REQUEST_MAX_ITEMS, ROUTE_RESPONSE_MAX_BYTES, ROUTE_RESPONSE_MAX_ITEMS,
};

impl From<RouteViolation> for DecodeError {
    fn from(v: RouteViolation) -> Self {
        DecodeError::Rule(RuleViolation::Route(v))
    }
}

/// What a route request asks; the first item of its CBOR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RouteKind {
    /// A conditional voucher with the invoice it pays.
    Offer = 0,
    /// The unconditional voucher that replaces a conditional one.
    Replace = 1,
    /// The hub's signed fee policy.
    Policy = 2,
    /// Several unconditional vouchers, each replacing a conditional one.
    ReplaceMany = 3,
}

impl RouteKind {
    /// Every kind, in code order.
    pub const ALL: [RouteKind; 4] =
        [RouteKind::Offer, RouteKind::Replace, RouteKind::Policy, RouteKind::ReplaceMany];

    /// The kind with wire code `code`, if this version knows it.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// The wire code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Its name in lower case, as metrics and logs print it.
    pub fn label(self) -> &'static str {
        match self {
            RouteKind::Offer => "offer",
            RouteKind::Replace => "replace",
            RouteKind::Policy => "policy",
            RouteKind::ReplaceMany => "replace_many",
        }
    }
}

/// What a hub or a payee answers to a route request. Codes are stable; new ones are only
/// ever added. Code 0 is the only acceptance; every other code is a refusal, and a refusal
/// binds nobody (design §9: there is no off-chain cancel).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum RouteStatus {
    /// Accepted: an offer fulfilled (the answer carries the secret), a replacement taken,
    /// or the policy asked for (the answer carries it).
    Ok = 0,
    /// The voucher is not exactly the conditional (or replacing) voucher the route needs:
    /// its hash, lock, amount, lane, or a condition it must not carry.
    BadShape = 1,
    /// The secret is not exactly 32 bytes, or does not hash to the payment hash.
    BadSecret = 2,
    /// The payment hash was offered before.
    HashSeen = 3,
    /// The voucher's lane already holds a pending conditional voucher.
    LanePending = 4,
    /// A channel of the route is settling.
    ChannelSettling = 5,
    /// The channel's balance does not cover every pending conditional voucher on it as if
    /// all their secrets were revealed.
    OverCommitted = 6,
    /// The lock leaves too little time: the next leg's deadline would fall before the
    /// receiver's margin.
    DeadlineTooClose = 7,
    /// The lock lies further ahead than the receiver takes.
    LockTooFar = 8,
    /// The hub's channel to the payee lacks the free capacity the payment needs.
    NoCapacity = 9,
    /// The payment would exceed the receiver's cap on pending value or count for this payer
    /// or payee.
    CapExceeded = 10,
    /// The voucher does not pay the hub's fee.
    FeeTooLow = 11,
    /// The invoice has expired.
    InvoiceExpired = 12,
    /// The invoice does not decode or verify, or names another payee or hub.
    InvoiceInvalid = 13,
    /// No route is known for the payment hash (a replacement of nothing).
    UnknownRoute = 14,
    /// The replacement is not the exact unconditional successor of the pending conditional
    /// voucher (same lane, higher nonce, same amount, no conditions).
    BadReplacement = 15,
    /// The hub knows no channel to the payee, or cannot reach it.
    NoRoute = 16,
    /// The payee refused the offer downstream; this binds nobody.
    Refused = 17,
    /// This node routes no payments.
    NotAHub = 18,
    /// Too many route requests in flight; the sender may retry later.
    Busy = 19,
    /// The receiver failed internally (storage, chain); the sender may retry.
    Internal = 20,
    /// The receiver knows no inbound channel at the voucher's address.
    UnknownChannel = 21,
}

impl RouteStatus {
    /// Every status, in code order.
    pub const ALL: [RouteStatus; 22] = [
        RouteStatus::Ok,
        RouteStatus::BadShape,
        RouteStatus::BadSecret,
        RouteStatus::HashSeen,
        RouteStatus::LanePending,
        RouteStatus::ChannelSettling,
        RouteStatus::OverCommitted,
        RouteStatus::DeadlineTooClose,
        RouteStatus::LockTooFar,
        RouteStatus::NoCapacity,
        RouteStatus::CapExceeded,
        RouteStatus::FeeTooLow,
        RouteStatus::InvoiceExpired,
        RouteStatus::InvoiceInvalid,
        RouteStatus::UnknownRoute,
        RouteStatus::BadReplacement,
        RouteStatus::NoRoute,
        RouteStatus::Refused,
        RouteStatus::NotAHub,
        RouteStatus::Busy,
        RouteStatus::Internal,
        RouteStatus::UnknownChannel,
    ];

    /// The status with wire code `code`, if this version knows it.
    pub fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// The wire code.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Whether this is the acceptance, [`RouteStatus::Ok`].
    pub fn is_ok(self) -> bool {
        self == RouteStatus::Ok
    }

    /// Its name, as `docs/protocol.md` and the API print it.
    pub fn name(self) -> &'static str {
        match self {
            RouteStatus::Ok => "Ok",
            RouteStatus::BadShape => "BadShape",
            RouteStatus::BadSecret => "BadSecret",
            RouteStatus::HashSeen => "HashSeen",
            RouteStatus::LanePending => "LanePending",
            RouteStatus::ChannelSettling => "ChannelSettling",
            RouteStatus::OverCommitted => "OverCommitted",
            RouteStatus::DeadlineTooClose => "DeadlineTooClose",
            RouteStatus::LockTooFar => "LockTooFar",
            RouteStatus::NoCapacity => "NoCapacity",
            RouteStatus::CapExceeded => "CapExceeded",
            RouteStatus::FeeTooLow => "FeeTooLow",
            RouteStatus::InvoiceExpired => "InvoiceExpired",
            RouteStatus::InvoiceInvalid => "InvoiceInvalid",
            RouteStatus::UnknownRoute => "UnknownRoute",
            RouteStatus::BadReplacement => "BadReplacement",
            RouteStatus::NoRoute => "NoRoute",
            RouteStatus::Refused => "Refused",
            RouteStatus::NotAHub => "NotAHub",
            RouteStatus::Busy => "Busy",
            RouteStatus::Internal => "Internal",
            RouteStatus::UnknownChannel => "UnknownChannel",
        }
    }

    /// Its name in snake case, as metrics label it.
    pub fn label(self) -> &'static str {
        match self {
            RouteStatus::Ok => "ok",
            RouteStatus::BadShape => "bad_shape",
            RouteStatus::BadSecret => "bad_secret",
            RouteStatus::HashSeen => "hash_seen",
            RouteStatus::LanePending => "lane_pending",
            RouteStatus::ChannelSettling => "channel_settling",
            RouteStatus::OverCommitted => "over_committed",
            RouteStatus::DeadlineTooClose => "deadline_too_close",
            RouteStatus::LockTooFar => "lock_too_far",
            RouteStatus::NoCapacity => "no_capacity",
            RouteStatus::CapExceeded => "cap_exceeded",
            RouteStatus::FeeTooLow => "fee_too_low",
            RouteStatus::InvoiceExpired => "invoice_expired",
            RouteStatus::InvoiceInvalid => "invoice_invalid",
            RouteStatus::UnknownRoute => "unknown_route",
            RouteStatus::BadReplacement => "bad_replacement",
            RouteStatus::NoRoute => "no_route",
            RouteStatus::Refused => "refused",
            RouteStatus::NotAHub => "not_a_hub",
            RouteStatus::Busy => "busy",
            RouteStatus::Internal => "internal",
            RouteStatus::UnknownChannel => "unknown_channel",
        }
    }
}

impl std::fmt::Display for RouteStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

impl Serialize for RouteStatus {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

/// One route's replacement in a [`RouteRequest::ReplaceMany`].
///
/// CBOR: `[payment_hash, voucher]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteReplacement {
    /// The payment hash of the route, exactly [`PAYMENT_HASH_BYTES`].
    pub payment_hash: Vec<u8>,
    /// The replacement: same lane, higher nonce, same amount, no conditions.
    pub voucher: SignedVoucher,
}

impl Serialize for RouteReplacement {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (BytesSer(&self.payment_hash), &self.voucher).serialize(s)
    }
}

/// A request of `/paych/route/1.0.0`.
///
/// CBOR: `[kind, …]` — `[0, invoice, voucher]`, `[1, payment_hash, voucher]`, `[2]` or
/// `[3, [[payment_hash, voucher], …]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteRequest {
    /// A conditional voucher paying the invoice (P → H with amount + fee, H → R with the
    /// amount), the answer waiting for the downstream hop.
    Offer {
        /// The payee's signed invoice, its CBOR, at most [`MAX_INVOICE_BYTES`].
        invoice: Vec<u8>,
        /// The conditional voucher: `secret_hash` the invoice's payment hash,
        /// `time_lock_max` the sender's deadline.
        voucher: SignedVoucher,
    },
    /// The unconditional voucher replacing the conditional one of `payment_hash`.
    Replace {
        /// The payment hash of the route, exactly [`PAYMENT_HASH_BYTES`].
        payment_hash: Vec<u8>,
        /// The replacement: same lane, higher nonce, same amount, no conditions.
        voucher: SignedVoucher,
    },
    /// Asks a hub for its signed fee policy.
    Policy,
    /// Several replacements, each as [`RouteRequest::Replace`] would carry it: 1 to
    /// [`MAX_REPLACEMENTS_PER_REQUEST`].
    ReplaceMany {
        /// The replacements, in the order the sender made them.
        replacements: Vec<RouteReplacement>,
    },
}

impl RouteRequest {
    /// What the request asks.
    pub fn kind(&self) -> RouteKind {
        match self {
            RouteRequest::Offer { .. } => RouteKind::Offer,
            RouteRequest::Replace { .. } => RouteKind::Replace,
            RouteRequest::Policy => RouteKind::Policy,
            RouteRequest::ReplaceMany { .. } => RouteKind::ReplaceMany,
        }
    }

    /// The voucher the request carries, if it carries one (several replacements carry
    /// several: the first).
    pub fn voucher(&self) -> Option<&SignedVoucher> {
        match self {
            RouteRequest::Offer { voucher, .. } | RouteRequest::Replace { voucher, .. } => {
                Some(voucher)
            }
            RouteRequest::ReplaceMany { replacements } => replacements.first().map(|r| &r.voucher),
            RouteRequest::Policy => None,
        }
    }

    fn check(&self) -> Result<(), RuleViolation> {
        match self {
            RouteRequest::Offer { invoice, .. } if invoice.len() > MAX_INVOICE_BYTES => {
                Err(RuleViolation::Route(RouteViolation::InvoiceTooLong(invoice.len())))
            }
            RouteRequest::Replace { payment_hash, .. }
                if payment_hash.len() != PAYMENT_HASH_BYTES =>
            {
                Err(RuleViolation::Route(RouteViolation::PaymentHashLength(payment_hash.len())))
            }
            RouteRequest::ReplaceMany { replacements } => {
                let count = replacements.len();
                if count == 0 || count > MAX_REPLACEMENTS_PER_REQUEST {
                    return Err(RuleViolation::Route(RouteViolation::ReplacementCount(count)));
                }
                if let Some(r) =
                    replacements.iter().find(|r| r.payment_hash.len() != PAYMENT_HASH_BYTES)
                {
                    let length = r.payment_hash.len();
                    return Err(RuleViolation::Route(RouteViolation::PaymentHashLength(length)));
                }
                let mut seen = std::collections::HashSet::with_capacity(count);
                match replacements.iter().find(|r| !seen.insert(r.payment_hash.as_slice())) {
                    Some(r) => Err(RuleViolation::Route(RouteViolation::DuplicatePaymentHash(
                        hex::encode(&r.payment_hash),
                    ))),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

impl Serialize for RouteRequest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let kind = self.kind().code();
        match self {
            RouteRequest::Offer { invoice, voucher } => {
                (kind, BytesSer(invoice), voucher).serialize(s)
            }
            RouteRequest::Replace { payment_hash, voucher } => {
                (kind, BytesSer(payment_hash), voucher).serialize(s)
            }
            RouteRequest::Policy => (kind,).serialize(s),
            RouteRequest::ReplaceMany { replacements } => (kind, replacements).serialize(s),
        }
    }
}

/// The answer to a [`RouteRequest`].
///
/// CBOR: `[status, secret, policy, message]`; empty bytes and empty text mean none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize_tuple)]
pub struct RouteResponse {
    /// What the receiver decided.
    pub status: RouteStatus,
    /// The secret, with an accepted offer (the payer's receipt); else empty. At most
    /// [`MAX_SECRET_BYTES`]; its length is the routing rules' to check.
    #[serde(with = "fvm_ipld_encoding::strict_bytes")]
    pub secret: Vec<u8>,
    /// The hub's signed policy, when asked for; else empty. At most [`MAX_POLICY_BYTES`].
    #[serde(with = "fvm_ipld_encoding::strict_bytes")]
    pub policy: Vec<u8>,
    /// A human-readable explanation, at most [`MAX_ROUTE_MESSAGE_BYTES`]; may be empty.
    pub message: String,
}

impl RouteResponse {
    /// An acceptance with nothing to carry (a replacement taken).
    pub fn ok() -> Self {
        RouteResponse {
            status: RouteStatus::Ok,
            secret: Vec::new(),
            policy: Vec::new(),
            message: String::new(),
        }
    }

    /// An offer fulfilled: the secret, the payer's receipt.
    pub fn fulfilled(secret: Vec<u8>) -> Self {
        RouteResponse { secret, ..RouteResponse::ok() }
    }

    /// The hub's signed policy (its CBOR).
    pub fn policy(policy: Vec<u8>) -> Self {
        RouteResponse { policy, ..RouteResponse::ok() }
    }

    /// A refusal with an explanation, cut to [`MAX_ROUTE_MESSAGE_BYTES`] at a character
    /// boundary. `status` should not be [`RouteStatus::Ok`]; with it, this is a bare
    /// acceptance carrying the explanation.
    pub fn refused(status: RouteStatus, message: impl Into<String>) -> Self {
        RouteResponse {
            status,
            secret: Vec::new(),
            policy: Vec::new(),
            message: truncate(message.into()),
        }
    }

    fn check(&self) -> Result<(), RuleViolation> {
        let violation = if self.secret.len() > MAX_SECRET_BYTES {
            RouteViolation::SecretTooLong(self.secret.len())
        } else if self.policy.len() > MAX_POLICY_BYTES {
            RouteViolation::PolicyTooLong(self.policy.len())
        } else if self.message.len() > MAX_ROUTE_MESSAGE_BYTES {
            RouteViolation::MessageTooLong(self.message.len())
        } else if !self.body_matches_status() {
            RouteViolation::BodyMismatch(self.status.code())
        } else {
            return Ok(());
        };
        Err(RuleViolation::Route(violation))
    }

    fn body_matches_status(&self) -> bool {
        let bodies = usize::from(!self.secret.is_empty()) + usize::from(!self.policy.is_empty());
        if self.status.is_ok() {
            bodies <= 1
        } else {
            bodies == 0
        }
    }
}

/// Cuts `message` to at most [`MAX_ROUTE_MESSAGE_BYTES`], at a character boundary.
fn truncate(mut message: String) -> String {
    if message.len() > MAX_ROUTE_MESSAGE_BYTES {
        let mut end = MAX_ROUTE_MESSAGE_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    message
}

wire_message!(RouteRequest, "route request");
wire_message!(RouteResponse, "route response");

impl FromWire for RouteRequest {
    fn from_wire(ipld: &Ipld) -> Result<Self, DecodeError> {
        const WHAT: &str = "route_request";
        let items = field::list(ipld, WHAT)?;
        let Some((kind, rest)) = items.split_first() else {
            return Err(LayoutError::WrongArity { what: WHAT, expected: 1, found: 0 }.into());
        };
        let code = field::u8(kind, "route_request.kind")?;
        let kind = RouteKind::from_code(code).ok_or(RouteViolation::UnknownKind(code))?;
        let request = match (kind, rest) {
            (RouteKind::Offer, [invoice, voucher]) => {
                let invoice = field::bytes(invoice, "route_request.invoice")?;
                if invoice.len() > MAX_INVOICE_BYTES {
                    return Err(RouteViolation::InvoiceTooLong(invoice.len()).into());
                }
                RouteRequest::Offer {
                    invoice: invoice.to_vec(),
                    voucher: SignedVoucher::from_ipld(voucher)?,
                }
            }
            (RouteKind::Replace, [payment_hash, voucher]) => RouteRequest::Replace {
                payment_hash: field::bytes(payment_hash, "route_request.payment_hash")?.to_vec(),
                voucher: SignedVoucher::from_ipld(voucher)?,
            },
            (RouteKind::Policy, []) => RouteRequest::Policy,
            (RouteKind::ReplaceMany, [list]) => {
                RouteRequest::ReplaceMany { replacements: replacements_field(list)? }
            }
            (kind, _) => {
                let expected = match kind {
                    RouteKind::Policy => 1,
                    RouteKind::ReplaceMany => 2,
                    RouteKind::Offer | RouteKind::Replace => 3,
                };
                let what = match kind {
                    RouteKind::Offer => "route_request.offer",
                    RouteKind::Replace => "route_request.replace",
                    RouteKind::Policy => "route_request.policy",
                    RouteKind::ReplaceMany => "route_request.replace_many",
                };
                return Err(LayoutError::WrongArity { what, expected, found: items.len() }.into());
            }
        };
        request.check()?;
        Ok(request)
    }
}

/// The replacements of a [`RouteRequest::ReplaceMany`], each `[payment_hash, voucher]`; their
/// count is refused before any is decoded.
fn replacements_field(ipld: &Ipld) -> Result<Vec<RouteReplacement>, DecodeError> {
    const WHAT: &str = "route_request.replacements";
    let items = field::list(ipld, WHAT)?;
    if items.is_empty() || items.len() > MAX_REPLACEMENTS_PER_REQUEST {
        return Err(RouteViolation::ReplacementCount(items.len()).into());
    }
    items
        .iter()
        .map(|item| match field::list(item, "route_request.replacement")? {
            [payment_hash, voucher] => Ok(RouteReplacement {
                payment_hash: field::bytes(payment_hash, "route_request.payment_hash")?.to_vec(),
                voucher: SignedVoucher::from_ipld(voucher)?,
            }),
            other => Err(LayoutError::WrongArity {
                what: "route_request.replacement",
                expected: 2,
                found: other.len(),
            }
            .into()),
        })
        .collect()
}

/// A status code this version knows.
fn status_field(ipld: &Ipld, what: &'static str) -> Result<RouteStatus, DecodeError> {
    let code = field::u8(ipld, what)?;
    Ok(RouteStatus::from_code(code).ok_or(RouteViolation::UnknownStatus(code))?)
}

/// A byte string of at most `max` bytes, refused with `too_long` beyond.
fn bounded_bytes(
    ipld: &Ipld,
    what: &'static str,
    max: usize,
    too_long: fn(usize) -> RouteViolation,
) -> Result<Vec<u8>, DecodeError> {
    let bytes = field::bytes(ipld, what)?;
    if bytes.len() > max {
        return Err(too_long(bytes.len()).into());
    }
    Ok(bytes.to_vec())
}

/// The explanation: text of at most [`MAX_ROUTE_MESSAGE_BYTES`].
fn message_field(ipld: &Ipld, what: &'static str) -> Result<String, DecodeError> {
    match ipld {
        Ipld::String(s) if s.len() > MAX_ROUTE_MESSAGE_BYTES => {
            Err(RouteViolation::MessageTooLong(s.len()).into())
        }
        Ipld::String(s) => Ok(s.clone()),
        other => {
            Err(LayoutError::WrongKind { what, expected: "string", found: ipld_kind(other) }.into())
        }
    }
}

wire_tuple!(RouteResponse as "route_response" {
    status: status_field,
    secret: |item, what| bounded_bytes(item, what, MAX_SECRET_BYTES, RouteViolation::SecretTooLong),
    policy: |item, what| bounded_bytes(item, what, MAX_POLICY_BYTES, RouteViolation::PolicyTooLong),
    message: message_field,
});

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use paych_core::types::{Address, TokenAmount};

    fn voucher() -> SignedVoucher {
        let mut voucher =
            SignedVoucher::new(Address::new_id(1001), 3, 2, TokenAmount::from_atto(7));
        voucher.secret_hash = vec![5; 32];
        voucher.time_lock_max = 900;
        voucher
    }

    #[test]
    fn every_kind_round_trips_and_starts_with_its_code() {
        let requests = [
            RouteRequest::Offer { invoice: vec![1, 2, 3], voucher: voucher() },
            RouteRequest::Replace { payment_hash: vec![5; 32], voucher: voucher() },
            RouteRequest::Policy,
        ];
        for request in requests {
            let bytes = request.to_cbor().unwrap();
            assert_eq!(bytes[1], request.kind().code(), "{bytes:02x?}");
            assert_eq!(RouteRequest::from_cbor(&bytes).unwrap(), request);
        }
        assert_eq!(RouteRequest::Policy.to_cbor().unwrap(), [0x81, 0x02]);
    }

    #[test]
    fn status_codes_follow_their_declaration_order() {
        for (code, status) in RouteStatus::ALL.iter().enumerate() {
            assert_eq!(usize::from(status.code()), code);
            assert_eq!(RouteStatus::from_code(status.code()), Some(*status));
        }
        assert_eq!(RouteStatus::from_code(22), None);
    }

    #[test]
    fn refusals_are_cut_at_a_character_boundary() {
        let long = "é".repeat(MAX_ROUTE_MESSAGE_BYTES);
        let response = RouteResponse::refused(RouteStatus::Refused, long);
        assert!(response.message.len() <= MAX_ROUTE_MESSAGE_BYTES);
        assert_eq!(RouteResponse::from_cbor(&response.to_cbor().unwrap()).unwrap(), response);
    }
}
