//! The bounds of `/paych/route/1.0.0` messages and the rules they break.
//!
//! A leaf: it uses nothing else in the crate, so the wire format's shared
//! [`RuleViolation`](crate::messages::RuleViolation) can name these rules while the route
//! messages use the shared wire layer.

/// The longest invoice an offer may carry: the invoice's own bound.
pub const MAX_INVOICE_BYTES: usize = paych_core::invoice::MAX_INVOICE_BYTES;
/// The length of a payment hash (blake2b-256).
pub const PAYMENT_HASH_BYTES: usize = paych_core::invoice::SECRET_LEN;
/// The longest secret an answer may carry. A real secret is 32 bytes; longer ones decode so
/// that the routing rules, not the decoder, refuse them (with `BadSecret`).
pub const MAX_SECRET_BYTES: usize = 1024;
/// The longest signed hub policy an answer may carry.
pub const MAX_POLICY_BYTES: usize = 1024;
/// The longest explanation (UTF-8 bytes) an answer may carry.
pub const MAX_ROUTE_MESSAGE_BYTES: usize = 256;
/// The most replacements one request of several may carry (32 plain vouchers and their
/// hashes take about 5 KiB, within [`ROUTE_REQUEST_MAX_BYTES`]).
pub const MAX_REPLACEMENTS_PER_REQUEST: usize = 32;
/// The most bytes a route request may take on the wire: the largest invoice and a voucher,
/// or [`MAX_REPLACEMENTS_PER_REQUEST`] plain vouchers and their hashes.
pub const ROUTE_REQUEST_MAX_BYTES: usize = 8 * 1024;
/// The most bytes a route response may take on the wire: the largest secret, policy and
/// explanation, with room for the envelope.
pub const ROUTE_RESPONSE_MAX_BYTES: usize = 4 * 1024;
/// The most CBOR data items a route request may hold (a voucher is 12 to 16; the rest is
/// room for merges, which the routing rules refuse anyway).
pub const ROUTE_REQUEST_MAX_ITEMS: usize = 1024;
/// The most CBOR data items a route response may hold (it has 5).
pub const ROUTE_RESPONSE_MAX_ITEMS: usize = 16;

/// A rule of `/paych/route/1.0.0` that a message breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteViolation {
    /// The request's kind (its first item) is not one this version knows.
    #[error("unknown route request kind {0}")]
    UnknownKind(u8),
    /// The response's status code is not one this version knows.
    #[error("unknown route status {0}")]
    UnknownStatus(u8),
    /// The offer's invoice is longer than [`MAX_INVOICE_BYTES`].
    #[error("invoice of {0} bytes exceeds the {MAX_INVOICE_BYTES}-byte limit")]
    InvoiceTooLong(usize),
    /// A request of several replacements carries none, or more than
    /// [`MAX_REPLACEMENTS_PER_REQUEST`].
    #[error("{0} replacements in one request; 1 to {MAX_REPLACEMENTS_PER_REQUEST} are taken")]
    ReplacementCount(usize),
    /// The replacement's payment hash is not [`PAYMENT_HASH_BYTES`] long.
    #[error("payment hash of {0} bytes; a blake2b-256 hash is {PAYMENT_HASH_BYTES}")]
    PaymentHashLength(usize),
    /// A request of several replacements names one payment hash twice (its items are taken
    /// as if each were sent alone, and a route is replaced once).
    #[error("payment hash {0} appears twice among the replacements")]
    DuplicatePaymentHash(String),
    /// The answer's secret is longer than [`MAX_SECRET_BYTES`].
    #[error("secret of {0} bytes exceeds the {MAX_SECRET_BYTES}-byte limit")]
    SecretTooLong(usize),
    /// The answer's policy is longer than [`MAX_POLICY_BYTES`].
    #[error("hub policy of {0} bytes exceeds the {MAX_POLICY_BYTES}-byte limit")]
    PolicyTooLong(usize),
    /// The answer's explanation is longer than [`MAX_ROUTE_MESSAGE_BYTES`].
    #[error("route message of {0} bytes exceeds the {MAX_ROUTE_MESSAGE_BYTES}-byte limit")]
    MessageTooLong(usize),
    /// The answer's body does not match its status: a refusal carries neither a secret nor
    /// a policy, and an accepted answer at most one of them.
    #[error("route response with status {0} carries the wrong body")]
    BodyMismatch(u8),
}
