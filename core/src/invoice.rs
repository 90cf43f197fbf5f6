//! Invoices: what a payee hands a payer so that the payer can pay it through a hub.
//!
//! An [`Invoice`] names an amount, the payment hash `h = blake2b-256(s)` of a secret `s` only
//! the payee knows, the payee's address, the hubs it can be reached through, an expiry and
//! the payee's margin `D_R` (docs/hub.md, the design's routed payments). The payee signs it
//! with the key of its (f1) address, as a payer signs a voucher. It travels as tuple
//! DAG-CBOR inside the route protocol, and as text (`paychinv1` followed by the CBOR in
//! lowercase unpadded base32) between people. Every size is bounded; decoding and
//! verification never panic and name what was wrong.
//!
//! This module owns the invoice's layout, text form and checks, and [`issue`]: the payee's
//! step that draws the secret, signs the invoice and keeps the secret in its store under the
//! payment hash (durable before the invoice is handed out). It never touches the network.

use fvm_ipld_encoding::strict_bytes;
use fvm_ipld_encoding::tuple::*;
use fvm_shared::address::Address;
use fvm_shared::clock::ChainEpoch;
use fvm_shared::crypto::signature::Signature;
use fvm_shared::econ::TokenAmount;
use serde::Serialize;

use crate::crypto::{self, CryptoError, SecretKey};
use crate::store::{InvoiceSecretRecord, Store, StoreError, Write};
use crate::types::decode::{self, tuple_from_ipld, DecodeError};
use crate::types::EncodeError;
use crate::wallet::{Wallet, WalletError};

/// The prefix of an invoice's text form; the `1` is the layout's version.
pub const TEXT_PREFIX: &str = "paychinv1";
/// Bytes of an invoice's id.
pub const ID_LEN: usize = 16;
/// Bytes of a payment secret and of its hash.
pub const SECRET_LEN: usize = 32;
/// The most hubs an invoice names.
pub const MAX_HUBS: usize = 4;
/// The longest multiaddr text of a hub, in bytes.
pub const MAX_MULTIADDR_LEN: usize = 256;
/// The longest encoded invoice, in bytes (four hubs with the longest multiaddrs fit).
pub const MAX_INVOICE_BYTES: usize = 2048;
/// The longest text form, in characters: the prefix and the base32 of the largest invoice.
pub const MAX_TEXT_LEN: usize = TEXT_PREFIX.len() + MAX_INVOICE_BYTES.div_ceil(5) * 8;
/// The largest payee margin an invoice may state: one settle window (1440 epochs), since
/// the whole route must fit one.
pub const MAX_PAYEE_MARGIN: ChainEpoch = 1440;

/// The longest an issued invoice stays payable: 30 days, in seconds.
pub const MAX_EXPIRY_SECS: u64 = 30 * 24 * 3600;
/// `G_R`: the epochs of downtime a payee tolerates by default (one hour of 30-second epochs).
pub const PAYEE_DOWNTIME_EPOCHS: ChainEpoch = 120;
/// `S`: the epochs a message may wait for inclusion under congestion, by default.
pub const INCLUSION_DELAY_EPOCHS: ChainEpoch = 20;

/// The payee's margin `D_R = conf + G_R + S` for a network whose confidence (the depth at
/// which a message is final) is `confidence` epochs.
pub fn payee_margin(confidence: u64) -> ChainEpoch {
    ChainEpoch::try_from(confidence)
        .unwrap_or(MAX_PAYEE_MARGIN)
        .saturating_add(PAYEE_DOWNTIME_EPOCHS + INCLUSION_DELAY_EPOCHS)
        .min(MAX_PAYEE_MARGIN)
}

/// A hub the payee can be reached through: its Filecoin address (the payee's channel from
/// it) and where to dial it.
///
/// CBOR: `[address, multiaddr]`, the multiaddr as text ending in `/p2p/<peer id>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize_tuple)]
pub struct Hub {
    /// The hub's key address.
    pub address: Address,
    /// The hub's multiaddr, `/p2p/<peer id>` included; at most [`MAX_MULTIADDR_LEN`] bytes.
    pub multiaddr: String,
}

/// A payee's signed request to be paid `amount` against the payment hash.
///
/// CBOR: an array of exactly 8 items — `[id, amount, payment_hash, payee, hubs, expiry,
/// payee_margin, signature]`; the payee signs the same array with the signature set to null.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Invoice {
    /// Random bytes that tell invoices apart.
    pub id: [u8; ID_LEN],
    /// What the payee asks to receive.
    pub amount: TokenAmount,
    /// blake2b-256 of the payee's secret.
    pub payment_hash: [u8; SECRET_LEN],
    /// The payee's f1 address, whose key signs the invoice.
    pub payee: Address,
    /// The hubs the payee can be reached through, at most [`MAX_HUBS`].
    pub hubs: Vec<Hub>,
    /// The last moment the invoice may be paid, in unix seconds.
    pub expiry: u64,
    /// `D_R`: the epochs the payee needs between receiving a conditional voucher and its
    /// lock, at most [`MAX_PAYEE_MARGIN`].
    pub payee_margin: ChainEpoch,
    /// The payee's signature over [`Invoice::signing_bytes`].
    pub signature: Option<Signature>,
}

/// The invoice's tuple layout, borrowed: the one place the field order is written down.
#[derive(Serialize_tuple)]
struct InvoiceLayout<'a> {
    #[serde(with = "strict_bytes")]
    id: &'a [u8],
    amount: &'a TokenAmount,
    #[serde(with = "strict_bytes")]
    payment_hash: &'a [u8],
    payee: &'a Address,
    hubs: &'a [Hub],
    expiry: u64,
    payee_margin: ChainEpoch,
    signature: Option<&'a Signature>,
}

/// Why an invoice was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvoiceError {
    /// The text does not start with [`TEXT_PREFIX`].
    #[error("not an invoice: the text must start with {TEXT_PREFIX}")]
    MissingPrefix,
    /// The text is longer than [`MAX_TEXT_LEN`].
    #[error("invoice text of {0} characters exceeds the {MAX_TEXT_LEN}-character limit")]
    TextTooLong(usize),
    /// The text after the prefix is not lowercase unpadded base32.
    #[error("invoice text is not lowercase unpadded base32: {0}")]
    Base32(String),
    /// The bytes are not an invoice's layout.
    #[error("invoice: {0}")]
    Decode(#[from] DecodeError),
    /// The invoice could not be encoded.
    #[error("invoice: {0}")]
    Encode(String),
    /// More hubs than [`MAX_HUBS`].
    #[error("invoice names {0} hubs, more than {MAX_HUBS}")]
    TooManyHubs(usize),
    /// A hub's multiaddr is empty or longer than [`MAX_MULTIADDR_LEN`].
    #[error("hub multiaddr of {0} bytes: it must be 1 to {MAX_MULTIADDR_LEN} bytes")]
    BadMultiaddr(usize),
    /// The amount is not positive.
    #[error("invoice amount must be positive")]
    NonPositiveAmount,
    /// The payee margin is negative or beyond one settle window.
    #[error("payee margin {0} epochs: it must be 0 to {MAX_PAYEE_MARGIN}")]
    BadPayeeMargin(ChainEpoch),
    /// The invoice carries no signature.
    #[error("invoice is not signed")]
    Unsigned,
    /// The signature is not the payee's over the invoice.
    #[error("invoice signature: {0}")]
    BadSignature(CryptoError),
    /// The invoice's expiry has passed.
    #[error("invoice expired at {expiry} (unix seconds); it is now {now}")]
    Expired {
        /// The invoice's expiry.
        expiry: u64,
        /// The time it was checked at.
        now: u64,
    },
}

impl From<EncodeError> for InvoiceError {
    fn from(e: EncodeError) -> Self {
        InvoiceError::Encode(e.to_string())
    }
}

impl Invoice {
    fn layout<'a>(&'a self, signature: Option<&'a Signature>) -> InvoiceLayout<'a> {
        InvoiceLayout {
            id: &self.id,
            amount: &self.amount,
            payment_hash: &self.payment_hash,
            payee: &self.payee,
            hubs: &self.hubs,
            expiry: self.expiry,
            payee_margin: self.payee_margin,
            signature,
        }
    }

    /// The bytes the payee signs: the invoice's CBOR with the signature item set to null.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, InvoiceError> {
        Ok(fvm_ipld_encoding::to_vec(&self.layout(None)).map_err(EncodeError::from)?)
    }

    /// The invoice's CBOR, signature included.
    pub fn to_cbor(&self) -> Result<Vec<u8>, InvoiceError> {
        Ok(fvm_ipld_encoding::to_vec(self).map_err(EncodeError::from)?)
    }

    /// Decodes an invoice from its CBOR, at most [`MAX_INVOICE_BYTES`]; the bounds and the
    /// fields' shapes are checked, the signature and the expiry are not (see
    /// [`Invoice::verify`]).
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, InvoiceError> {
        if bytes.len() > MAX_INVOICE_BYTES {
            return Err(DecodeError::TooLong {
                what: "invoice",
                max: MAX_INVOICE_BYTES,
                found: bytes.len(),
            }
            .into());
        }
        Ok(decode::decode(bytes)?)
    }

    /// The invoice's text form: [`TEXT_PREFIX`] then its CBOR in lowercase unpadded base32.
    pub fn to_text(&self) -> Result<String, InvoiceError> {
        let base32 = data_encoding::BASE32_NOPAD.encode(&self.to_cbor()?).to_ascii_lowercase();
        Ok(format!("{TEXT_PREFIX}{base32}"))
    }

    /// Decodes an invoice from its text form (surrounding whitespace ignored). Only the
    /// canonical form is accepted: lowercase, no padding, no stray bits.
    pub fn from_text(text: &str) -> Result<Self, InvoiceError> {
        let text = text.trim();
        if text.len() > MAX_TEXT_LEN {
            return Err(InvoiceError::TextTooLong(text.len()));
        }
        let body = text.strip_prefix(TEXT_PREFIX).ok_or(InvoiceError::MissingPrefix)?;
        if body.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(InvoiceError::Base32("uppercase letters".to_owned()));
        }
        let bytes = data_encoding::BASE32_NOPAD
            .decode(body.to_ascii_uppercase().as_bytes())
            .map_err(|e| InvoiceError::Base32(e.to_string()))?;
        Self::from_cbor(&bytes)
    }

    /// Signs the invoice with the payee's key (whose f1 address must be `payee`).
    pub fn sign(&mut self, key: &SecretKey) -> Result<(), InvoiceError> {
        self.signature = Some(crypto::sign(key, &self.signing_bytes()?));
        Ok(())
    }

    /// Checks everything a payer checks before paying, at `now` (unix seconds): the bounds,
    /// a positive amount, a margin within one settle window, the payee's signature, and
    /// that the invoice has not expired.
    pub fn verify(&self, now: u64) -> Result<(), InvoiceError> {
        self.verify_signature()?;
        self.check_expiry(now)
    }

    /// Whether the invoice is still payable at `now` (unix seconds): `Expired` after its
    /// expiry. [`Invoice::verify`] checks it with the signature.
    pub fn check_expiry(&self, now: u64) -> Result<(), InvoiceError> {
        if now > self.expiry {
            return Err(InvoiceError::Expired { expiry: self.expiry, now });
        }
        Ok(())
    }

    /// Everything [`Invoice::verify`] checks but the expiry.
    pub fn verify_signature(&self) -> Result<(), InvoiceError> {
        self.check_bounds()?;
        let signature = self.signature.as_ref().ok_or(InvoiceError::Unsigned)?;
        crypto::verify(signature, &self.payee, &self.signing_bytes()?)
            .map_err(InvoiceError::BadSignature)
    }

    /// The bounds an invoice keeps whoever built it.
    fn check_bounds(&self) -> Result<(), InvoiceError> {
        if self.hubs.len() > MAX_HUBS {
            return Err(InvoiceError::TooManyHubs(self.hubs.len()));
        }
        if let Some(hub) = self
            .hubs
            .iter()
            .find(|hub| hub.multiaddr.is_empty() || hub.multiaddr.len() > MAX_MULTIADDR_LEN)
        {
            return Err(InvoiceError::BadMultiaddr(hub.multiaddr.len()));
        }
        if !self.amount.is_positive() {
            return Err(InvoiceError::NonPositiveAmount);
        }
        if !(0..=MAX_PAYEE_MARGIN).contains(&self.payee_margin) {
            return Err(InvoiceError::BadPayeeMargin(self.payee_margin));
        }
        Ok(())
    }
}

impl Serialize for Invoice {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.layout(self.signature.as_ref()).serialize(s)
    }
}

/// What a payee asks for when it issues an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceTerms {
    /// The payee's address: a key of its wallet.
    pub payee: Address,
    /// The amount asked.
    pub amount: TokenAmount,
    /// The invoice's expiry, in unix seconds.
    pub expiry: u64,
    /// The payee's margin `D_R`, in epochs.
    pub payee_margin: ChainEpoch,
    /// The hubs the payee can be reached through.
    pub hubs: Vec<Hub>,
}

/// Why an invoice could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The terms break an invoice's bounds, or signing failed.
    #[error(transparent)]
    Invoice(#[from] InvoiceError),
    /// The wallet has no key for the payee, or could not sign.
    #[error("payee key: {0}")]
    Wallet(#[from] WalletError),
    /// The operating system gave no random bytes.
    #[error("no random bytes for the secret: {0}")]
    Random(getrandom::Error),
    /// The secret could not be kept.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Issues an invoice: draws a fresh secret and id, signs the invoice with the payee's key
/// in `wallet`, and keeps the secret under its payment hash in `store`, durable before this
/// returns. The store refuses a second invoice for a payment hash.
pub async fn issue(
    store: &dyn Store,
    wallet: &dyn Wallet,
    terms: InvoiceTerms,
) -> Result<Invoice, IssueError> {
    let (secret, payment_hash) = new_secret().map_err(IssueError::Random)?;
    let mut invoice = Invoice {
        id: new_id().map_err(IssueError::Random)?,
        amount: terms.amount,
        payment_hash,
        payee: terms.payee,
        hubs: terms.hubs,
        expiry: terms.expiry,
        payee_margin: terms.payee_margin,
        signature: None,
    };
    invoice.check_bounds()?;
    invoice.signature = Some(wallet.sign(&invoice.payee, &invoice.signing_bytes()?)?);
    invoice.verify_signature()?;
    store.apply(vec![Write::InvoiceSecret(InvoiceSecretRecord {
        payment_hash: payment_hash.to_vec(),
        secret: secret.to_vec(),
        invoice: invoice.to_cbor()?,
    })])?;
    store.durable().await?;
    Ok(invoice)
}

/// A fresh payment secret and its hash: 32 random bytes from the operating system, and
/// their blake2b-256.
pub fn new_secret() -> Result<([u8; SECRET_LEN], [u8; SECRET_LEN]), getrandom::Error> {
    let mut secret = [0u8; SECRET_LEN];
    getrandom::getrandom(&mut secret)?;
    Ok((secret, payment_hash(&secret)))
}

/// The time now in unix seconds, as invoices' expiries count it (0 if the clock is before
/// 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh invoice id: 16 random bytes from the operating system.
pub fn new_id() -> Result<[u8; ID_LEN], getrandom::Error> {
    let mut id = [0u8; ID_LEN];
    getrandom::getrandom(&mut id)?;
    Ok(id)
}

/// The payment hash of a secret: its blake2b-256, as the payment-channel actor checks it.
pub fn payment_hash(secret: &[u8]) -> [u8; SECRET_LEN] {
    crypto::hash::blake2b_256(secret)
}

tuple_from_ipld!(Hub as "hub" {
    address: decode::address_field,
    multiaddr: |item, what| decode::string_field(item, what, MAX_MULTIADDR_LEN),
});

tuple_from_ipld!(Invoice as "invoice" {
    id: decode::array_field::<ID_LEN>,
    amount: decode::amount_field,
    payment_hash: decode::array_field::<SECRET_LEN>,
    payee: decode::address_field,
    hubs: |item, what| decode::bounded_list(item, what, MAX_HUBS)?
        .iter()
        .map(Hub::from_ipld)
        .collect::<Result<_, _>>(),
    expiry: decode::u64_field,
    payee_margin: decode::i64_field,
    signature: |item, _| decode::optional(item).map(decode::signature_field).transpose(),
});
