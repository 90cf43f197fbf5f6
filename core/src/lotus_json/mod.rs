//! Lotus JSON: the shapes Lotus's JSON-RPC API reads and writes, as a thin adapter over the
//! wire types.
//!
//! The CBOR wire types in [`crate::types`] stay pure; each value that travels over Lotus
//! JSON-RPC has a *shape* here — a plain serde struct with Lotus's PascalCase field names —
//! and a [`LotusJson`] conversion between the two. Shapes hold text where Lotus writes text
//! (addresses, big integers, bytes, CIDs), so that every bad value is caught by the
//! conversion and reported as a typed [`JsonError`] naming the field, never as a panic.
//!
//! Conventions (those of Lotus):
//!
//! - addresses are strings; either network prefix (`f`, `t`) is accepted, and output uses
//!   the [`Network`] the caller passes (the devnet uses [`Network::Testnet`]);
//! - big integers (amounts, weights) are decimal strings, at most [`MAX_BIGINT_DIGITS`]
//!   digits;
//! - bytes are standard padded base64; empty bytes are written `null`, as Lotus writes a nil
//!   byte slice, and `null` or `""` are both read as empty;
//! - a CID is `{"/":"bafy…"}`;
//! - empty lists that Lotus keeps as nil slices (voucher merges) are written `null`, and
//!   `null` or `[]` are both read as empty;
//! - a signature is `{"Type":1,"Data":"<base64>"}`;
//! - unknown fields are ignored when reading, as Go's decoder ignores them.
//!
//! The JSON-RPC 2.0 envelope the shapes travel in is [`crate::jsonrpc`]'s; the node's own API
//! answers in the shapes of [`api`]. This module does no I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cid::Cid;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::chain::{ChainMessage, MessageLookup, Receipt};
use crate::types::{
    format_address, parse_address, Address, ChainEpoch, ExitCode, Merge, Message, ModVerifyParams,
    Network, PaychState, Signature, SignatureType, SignedMessage, SignedVoucher, TokenAmount,
};
/// The big integer of Lotus JSON's decimal strings (weights, amounts).
pub use fvm_shared::bigint::BigInt;
use fvm_shared::bigint::Sign;

use crate::types::decode::MAX_BIGINT_BYTES;

pub mod api;

/// The most decimal digits a big integer may have: a cheap bound checked before parsing (a
/// Filecoin big integer is at most 128 bytes, sign included: 1016 bits, 306 digits; the
/// exact byte limit is checked after parsing).
pub const MAX_BIGINT_DIGITS: usize = 310;
/// The longest text accepted as a CID.
pub const MAX_CID_TEXT: usize = 256;
/// The longest text accepted as an address.
pub const MAX_ADDRESS_TEXT: usize = 256;
/// The multicodec a method's CBOR parameters and return values are tagged with in
/// execution traces.
const CBOR_CODEC: u64 = 0x51;

/// Why a Lotus JSON value could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The JSON is not the expected shape (missing field, wrong JSON type, not JSON).
    #[error("not the expected Lotus JSON shape: {0}")]
    Shape(String),
    /// An address string does not parse.
    #[error("{field}: invalid address {text:?}: {reason}")]
    InvalidAddress {
        /// The field.
        field: &'static str,
        /// The text found (cut to a bounded length).
        text: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A big integer is not a decimal string.
    #[error("{field}: {text:?} is not a decimal integer")]
    InvalidInteger {
        /// The field.
        field: &'static str,
        /// The text found (cut to a bounded length).
        text: String,
    },
    /// Bytes are not standard padded base64.
    #[error("{field}: not standard base64: {reason}")]
    InvalidBase64 {
        /// The field.
        field: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// A CID string does not parse.
    #[error("{field}: invalid CID {text:?}: {reason}")]
    InvalidCid {
        /// The field.
        field: &'static str,
        /// The text found (cut to a bounded length).
        text: String,
        /// Why it is invalid.
        reason: String,
    },
    /// A signature type other than 1 (secp256k1) or 2 (BLS).
    #[error("{field}: unknown signature type {sig_type} (1 = secp256k1, 2 = BLS)")]
    UnknownSignatureType {
        /// The field.
        field: &'static str,
        /// The type found.
        sig_type: u64,
    },
    /// A value of the right JSON type that Filecoin does not allow.
    #[error("{field}: {reason}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// Why it is not allowed.
        reason: String,
    },
    /// A value could not be encoded (to compute a CID, for instance).
    #[error("cannot encode: {0}")]
    Encode(String),
}

/// A value with a Lotus JSON shape.
pub trait LotusJson: Sized {
    /// The serde shape Lotus reads and writes.
    type Shape: Serialize + DeserializeOwned;

    /// The value's shape, with addresses written for `network`.
    fn to_shape(&self, network: Network) -> Result<Self::Shape, JsonError>;

    /// Checks a shape's values and builds the value.
    fn from_shape(shape: Self::Shape) -> Result<Self, JsonError>;
}

/// A value as a Lotus JSON tree.
pub fn to_value<T: LotusJson>(value: &T, network: Network) -> Result<Value, JsonError> {
    serde_json::to_value(value.to_shape(network)?).map_err(|e| JsonError::Encode(e.to_string()))
}

/// A value as Lotus JSON text.
pub fn to_string<T: LotusJson>(value: &T, network: Network) -> Result<String, JsonError> {
    serde_json::to_string(&value.to_shape(network)?).map_err(|e| JsonError::Encode(e.to_string()))
}

/// Reads a value from a Lotus JSON tree.
pub fn from_value<T: LotusJson>(value: Value) -> Result<T, JsonError> {
    let shape = serde_json::from_value(value).map_err(|e| JsonError::Shape(e.to_string()))?;
    T::from_shape(shape)
}

/// Reads a value from Lotus JSON text.
pub fn from_str<T: LotusJson>(text: &str) -> Result<T, JsonError> {
    let shape = serde_json::from_str(text).map_err(|e| JsonError::Shape(e.to_string()))?;
    T::from_shape(shape)
}

// ---------------------------------------------------------------------------------------
// Scalars: addresses, big integers, bytes, CIDs, signatures.

/// Text cut to a length fit for an error message.
fn excerpt(text: &str) -> String {
    text.chars().take(80).collect()
}

/// Reads an address string of either network.
pub fn parse_address_field(field: &'static str, text: &str) -> Result<Address, JsonError> {
    if text.len() > MAX_ADDRESS_TEXT {
        return Err(JsonError::InvalidAddress {
            field,
            text: excerpt(text),
            reason: format!("longer than {MAX_ADDRESS_TEXT} characters"),
        });
    }
    parse_address(text).map(|(addr, _)| addr).map_err(|e| JsonError::InvalidAddress {
        field,
        text: excerpt(text),
        reason: e.reason,
    })
}

/// Reads a decimal big integer (an optional `-`, then digits) that Filecoin can carry: at
/// most [`MAX_BIGINT_BYTES`] encoded, sign byte included, so that whatever is read can be
/// written again as CBOR.
pub fn parse_bigint_field(field: &'static str, text: &str) -> Result<BigInt, JsonError> {
    let invalid = || JsonError::InvalidInteger { field, text: excerpt(text) };
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty()
        || digits.len() > MAX_BIGINT_DIGITS
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(invalid());
    }
    let value = BigInt::parse_bytes(text.as_bytes(), 10).ok_or_else(invalid)?;
    let encoded = value.to_bytes_be().1.len() + 1;
    if value.sign() != Sign::NoSign && encoded > MAX_BIGINT_BYTES {
        return Err(JsonError::InvalidValue {
            field,
            reason: format!(
                "an integer of {encoded} bytes exceeds Filecoin's {MAX_BIGINT_BYTES}-byte limit"
            ),
        });
    }
    Ok(value)
}

/// Reads a decimal attoFIL amount.
pub fn parse_amount_field(field: &'static str, text: &str) -> Result<TokenAmount, JsonError> {
    parse_bigint_field(field, text).map(TokenAmount::from_atto)
}

/// Writes an amount as a decimal attoFIL string.
pub fn amount_text(amount: &TokenAmount) -> String {
    amount.atto().to_string()
}

/// Writes bytes as standard padded base64, `None` (JSON `null`) when empty.
pub fn bytes_text(bytes: &[u8]) -> Option<String> {
    if bytes.is_empty() {
        None
    } else {
        Some(STANDARD.encode(bytes))
    }
}

/// Reads standard padded base64 bytes; `null` and `""` are empty.
pub fn parse_bytes_field(field: &'static str, text: Option<&str>) -> Result<Vec<u8>, JsonError> {
    match text {
        None => Ok(Vec::new()),
        Some(text) => STANDARD
            .decode(text)
            .map_err(|e| JsonError::InvalidBase64 { field, reason: e.to_string() }),
    }
}

/// A CID in Lotus JSON: `{"/":"bafy…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CidJson {
    /// The CID's text form.
    #[serde(rename = "/")]
    pub cid: String,
}

impl CidJson {
    /// The shape of a CID.
    pub fn new(cid: &Cid) -> Self {
        CidJson { cid: cid.to_string() }
    }

    /// Reads the CID, naming `field` in the error.
    pub fn parse(&self, field: &'static str) -> Result<Cid, JsonError> {
        let invalid =
            |reason: String| JsonError::InvalidCid { field, text: excerpt(&self.cid), reason };
        if self.cid.len() > MAX_CID_TEXT {
            return Err(invalid(format!("longer than {MAX_CID_TEXT} characters")));
        }
        Cid::try_from(self.cid.as_str()).map_err(|e| invalid(e.to_string()))
    }
}

fn parse_cids(field: &'static str, cids: &[CidJson]) -> Result<Vec<Cid>, JsonError> {
    cids.iter().map(|c| c.parse(field)).collect()
}

fn cids_json(cids: &[Cid]) -> Vec<CidJson> {
    cids.iter().map(CidJson::new).collect()
}

impl LotusJson for Cid {
    type Shape = CidJson;

    fn to_shape(&self, _network: Network) -> Result<CidJson, JsonError> {
        Ok(CidJson::new(self))
    }

    fn from_shape(shape: CidJson) -> Result<Self, JsonError> {
        shape.parse("CID")
    }
}

impl LotusJson for Address {
    type Shape = String;

    fn to_shape(&self, network: Network) -> Result<String, JsonError> {
        Ok(format_address(self, network))
    }

    fn from_shape(shape: String) -> Result<Self, JsonError> {
        parse_address_field("address", &shape)
    }
}

impl LotusJson for TokenAmount {
    type Shape = String;

    fn to_shape(&self, _network: Network) -> Result<String, JsonError> {
        Ok(amount_text(self))
    }

    fn from_shape(shape: String) -> Result<Self, JsonError> {
        parse_amount_field("amount", &shape)
    }
}

/// A signature: `{"Type":1,"Data":"<base64>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SignatureJson {
    /// 1 secp256k1, 2 BLS.
    #[serde(rename = "Type")]
    pub sig_type: u64,
    /// The signature bytes, base64.
    #[serde(default)]
    pub data: Option<String>,
}

impl SignatureJson {
    fn parse(self, field: &'static str) -> Result<Signature, JsonError> {
        let sig_type = match self.sig_type {
            1 => SignatureType::Secp256k1,
            2 => SignatureType::BLS,
            other => return Err(JsonError::UnknownSignatureType { field, sig_type: other }),
        };
        Ok(Signature { sig_type, bytes: parse_bytes_field(field, self.data.as_deref())? })
    }

    fn new(signature: &Signature) -> Self {
        let sig_type = match signature.sig_type {
            SignatureType::Secp256k1 => 1,
            SignatureType::BLS => 2,
        };
        SignatureJson { sig_type, data: bytes_text(&signature.bytes) }
    }
}

impl LotusJson for Signature {
    type Shape = SignatureJson;

    fn to_shape(&self, _network: Network) -> Result<SignatureJson, JsonError> {
        Ok(SignatureJson::new(self))
    }

    fn from_shape(shape: SignatureJson) -> Result<Self, JsonError> {
        shape.parse("Signature")
    }
}

// ---------------------------------------------------------------------------------------
// Messages.

/// A message: `{"Version","To","From","Nonce","Value","GasLimit","GasFeeCap","GasPremium",
/// "Method","Params","CID"}`. `CID` is written, as Lotus writes it, and ignored when read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MessageJson {
    /// Always 0.
    pub version: u64,
    /// The recipient.
    pub to: String,
    /// The sender.
    pub from: String,
    /// The sender's nonce.
    pub nonce: u64,
    /// attoFIL transferred.
    pub value: String,
    /// The gas limit.
    pub gas_limit: u64,
    /// attoFIL per gas unit, at most.
    pub gas_fee_cap: String,
    /// attoFIL per gas unit to the block producer.
    pub gas_premium: String,
    /// The method number.
    pub method: u64,
    /// CBOR parameters, base64; `null` when empty.
    #[serde(default)]
    pub params: Option<String>,
    /// The message's CID.
    #[serde(rename = "CID", default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<CidJson>,
}

impl LotusJson for Message {
    type Shape = MessageJson;

    fn to_shape(&self, network: Network) -> Result<MessageJson, JsonError> {
        let cid = self.cid().map_err(|e| JsonError::Encode(e.to_string()))?;
        Ok(MessageJson {
            version: self.version,
            to: format_address(&self.to, network),
            from: format_address(&self.from, network),
            nonce: self.nonce,
            value: amount_text(&self.value),
            gas_limit: self.gas_limit,
            gas_fee_cap: amount_text(&self.gas_fee_cap),
            gas_premium: amount_text(&self.gas_premium),
            method: self.method,
            params: bytes_text(&self.params),
            cid: Some(CidJson::new(&cid)),
        })
    }

    fn from_shape(m: MessageJson) -> Result<Self, JsonError> {
        if m.version != 0 {
            return Err(JsonError::InvalidValue {
                field: "Message.Version",
                reason: format!("unsupported message version {}", m.version),
            });
        }
        Ok(Message {
            version: m.version,
            to: parse_address_field("Message.To", &m.to)?,
            from: parse_address_field("Message.From", &m.from)?,
            nonce: m.nonce,
            value: parse_amount_field("Message.Value", &m.value)?,
            gas_limit: m.gas_limit,
            gas_fee_cap: parse_amount_field("Message.GasFeeCap", &m.gas_fee_cap)?,
            gas_premium: parse_amount_field("Message.GasPremium", &m.gas_premium)?,
            method: m.method,
            params: parse_bytes_field("Message.Params", m.params.as_deref())?,
        })
    }
}

/// A signed message: `{"Message","Signature","CID"}`. `CID` is written and ignored when
/// read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SignedMessageJson {
    /// The message.
    pub message: MessageJson,
    /// The sender's signature.
    pub signature: SignatureJson,
    /// The signed message's CID.
    #[serde(rename = "CID", default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<CidJson>,
}

impl LotusJson for SignedMessage {
    type Shape = SignedMessageJson;

    fn to_shape(&self, network: Network) -> Result<SignedMessageJson, JsonError> {
        let cid = self.cid().map_err(|e| JsonError::Encode(e.to_string()))?;
        Ok(SignedMessageJson {
            message: self.message.to_shape(network)?,
            signature: SignatureJson::new(&self.signature),
            cid: Some(CidJson::new(&cid)),
        })
    }

    fn from_shape(shape: SignedMessageJson) -> Result<Self, JsonError> {
        Ok(SignedMessage {
            message: Message::from_shape(shape.message)?,
            signature: shape.signature.parse("SignedMessage.Signature")?,
        })
    }
}

/// The most messages one block may hold (Lotus `build/buildconstants`,
/// `BlockMessageLimit`); a `ChainGetBlockMessages` answer listing more is refused.
pub const MAX_BLOCK_MESSAGES: usize = 10_000;

/// A signed message in a block, as `ChainGetBlockMessages` lists it:
/// `{"Message","Signature","CID"}`. The signature is carried as raw JSON, not interpreted: a
/// block may hold messages signed in ways paych does not verify (delegated signatures of
/// `f4` senders), and a reader of a block's messages needs what they say, not who signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BlockSignedMessageJson {
    /// The message.
    pub message: MessageJson,
    /// The signature, as the node wrote it.
    #[serde(default)]
    pub signature: Value,
    /// The signed message's CID.
    #[serde(rename = "CID", default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<CidJson>,
}

/// What `ChainGetBlockMessages` answers (Lotus `api/api_full.go`, `BlockMessages`):
/// `{"BlsMessages","SecpkMessages","Cids"}`, where `Cids` lists the CID of every message,
/// the BLS ones first (`BlsMessages[x]` is `Cids[x]`, `SecpkMessages[y]` is
/// `Cids[len(BlsMessages) + y]`). Empty lists are written `[]`, as Lotus writes them, and
/// `null` is read as empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BlockMessagesJson {
    /// Messages signed with BLS (their signatures are aggregated in the block).
    #[serde(default)]
    pub bls_messages: Option<Vec<MessageJson>>,
    /// Messages carrying their own signature (secp256k1, delegated).
    #[serde(default)]
    pub secpk_messages: Option<Vec<BlockSignedMessageJson>>,
    /// The CID of every message, BLS ones first.
    #[serde(default)]
    pub cids: Option<Vec<CidJson>>,
}

impl BlockMessagesJson {
    /// The shape of a block holding `bls` and `signed` messages, with their CIDs.
    pub fn new(
        bls: &[Message],
        signed: &[SignedMessage],
        network: Network,
    ) -> Result<Self, JsonError> {
        let encode = |e: crate::types::EncodeError| JsonError::Encode(e.to_string());
        let mut cids = Vec::with_capacity(bls.len() + signed.len());
        for message in bls {
            cids.push(CidJson::new(&message.cid().map_err(encode)?));
        }
        let mut secpk = Vec::with_capacity(signed.len());
        for message in signed {
            let shape = message.to_shape(network)?;
            cids.push(CidJson::new(&message.cid().map_err(encode)?));
            secpk.push(BlockSignedMessageJson {
                message: shape.message,
                signature: serde_json::to_value(shape.signature)
                    .map_err(|e| JsonError::Encode(e.to_string()))?,
                cid: shape.cid,
            });
        }
        Ok(BlockMessagesJson {
            bls_messages: Some(bls.iter().map(|m| m.to_shape(network)).collect::<Result<_, _>>()?),
            secpk_messages: Some(secpk),
            cids: Some(cids),
        })
    }

    /// The block's messages with their CIDs, BLS ones first: at most [`MAX_BLOCK_MESSAGES`],
    /// exactly one CID each, and a BLS message's CID its own.
    pub fn messages(self) -> Result<Vec<ChainMessage>, JsonError> {
        let bls = self.bls_messages.unwrap_or_default();
        let secpk = self.secpk_messages.unwrap_or_default();
        let cids = self.cids.unwrap_or_default();
        let total = bls.len() + secpk.len();
        if total > MAX_BLOCK_MESSAGES {
            return Err(JsonError::InvalidValue {
                field: "BlockMessages",
                reason: format!("{total} messages, more than a block holds ({MAX_BLOCK_MESSAGES})"),
            });
        }
        if cids.len() != total {
            return Err(JsonError::InvalidValue {
                field: "BlockMessages.Cids",
                reason: format!("{} CIDs for {total} messages", cids.len()),
            });
        }
        let mut out = Vec::with_capacity(total);
        let shapes =
            bls.into_iter().map(|m| (m, true)).chain(secpk.into_iter().map(|s| (s.message, false)));
        for ((shape, is_bls), cid) in shapes.zip(cids) {
            let cid = cid.parse("BlockMessages.Cids")?;
            let message = Message::from_shape(shape)?;
            if is_bls && message.cid().map_err(|e| JsonError::Encode(e.to_string()))? != cid {
                return Err(JsonError::InvalidValue {
                    field: "BlockMessages.Cids",
                    reason: format!("{cid} is not the CID of its BLS message"),
                });
            }
            out.push(ChainMessage { cid, message });
        }
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------
// Vouchers.

/// A voucher's `extra`: `{"Actor","Method","Data"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModVerifyParamsJson {
    /// The actor called.
    pub actor: String,
    /// The method called.
    pub method: u64,
    /// The call's parameters, base64; `null` when empty.
    #[serde(default)]
    pub data: Option<String>,
}

impl LotusJson for ModVerifyParams {
    type Shape = ModVerifyParamsJson;

    fn to_shape(&self, network: Network) -> Result<ModVerifyParamsJson, JsonError> {
        Ok(ModVerifyParamsJson {
            actor: format_address(&self.actor, network),
            method: self.method,
            data: bytes_text(&self.data),
        })
    }

    fn from_shape(shape: ModVerifyParamsJson) -> Result<Self, JsonError> {
        Ok(ModVerifyParams {
            actor: parse_address_field("Extra.Actor", &shape.actor)?,
            method: shape.method,
            data: parse_bytes_field("Extra.Data", shape.data.as_deref())?,
        })
    }
}

/// A merge: `{"Lane","Nonce"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MergeJson {
    /// The lane merged.
    pub lane: u64,
    /// The nonce it is raised to.
    pub nonce: u64,
}

impl LotusJson for Merge {
    type Shape = MergeJson;

    fn to_shape(&self, _network: Network) -> Result<MergeJson, JsonError> {
        Ok(MergeJson { lane: self.lane, nonce: self.nonce })
    }

    fn from_shape(shape: MergeJson) -> Result<Self, JsonError> {
        Ok(Merge { lane: shape.lane, nonce: shape.nonce })
    }
}

/// A signed voucher: `{"ChannelAddr","TimeLockMin","TimeLockMax","SecretHash","Extra",
/// "Lane","Nonce","Amount","MinSettleHeight","Merges","Signature"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SignedVoucherJson {
    /// The channel.
    pub channel_addr: String,
    /// The first epoch the voucher is valid.
    pub time_lock_min: ChainEpoch,
    /// The last epoch the voucher is valid; 0 for none.
    pub time_lock_max: ChainEpoch,
    /// The secret's hash, base64; `null` for none.
    #[serde(default)]
    pub secret_hash: Option<String>,
    /// The call made before redeeming; `null` for none.
    #[serde(default)]
    pub extra: Option<ModVerifyParamsJson>,
    /// The lane.
    pub lane: u64,
    /// The nonce.
    pub nonce: u64,
    /// The cumulative amount, attoFIL.
    pub amount: String,
    /// The earliest settlement epoch; 0 for none.
    pub min_settle_height: ChainEpoch,
    /// Lanes merged; `null` for none.
    #[serde(default)]
    pub merges: Option<Vec<MergeJson>>,
    /// The payer's signature; `null` when unsigned.
    #[serde(default)]
    pub signature: Option<SignatureJson>,
}

impl LotusJson for SignedVoucher {
    type Shape = SignedVoucherJson;

    fn to_shape(&self, network: Network) -> Result<SignedVoucherJson, JsonError> {
        Ok(SignedVoucherJson {
            channel_addr: format_address(&self.channel_addr, network),
            time_lock_min: self.time_lock_min,
            time_lock_max: self.time_lock_max,
            secret_hash: bytes_text(&self.secret_hash),
            extra: self.extra.as_ref().map(|e| e.to_shape(network)).transpose()?,
            lane: self.lane,
            nonce: self.nonce,
            amount: amount_text(&self.amount),
            min_settle_height: self.min_settle_height,
            merges: if self.merges.is_empty() {
                None
            } else {
                Some(
                    self.merges
                        .iter()
                        .map(|m| MergeJson { lane: m.lane, nonce: m.nonce })
                        .collect(),
                )
            },
            signature: self.signature.as_ref().map(SignatureJson::new),
        })
    }

    fn from_shape(v: SignedVoucherJson) -> Result<Self, JsonError> {
        Ok(SignedVoucher {
            channel_addr: parse_address_field("SignedVoucher.ChannelAddr", &v.channel_addr)?,
            time_lock_min: v.time_lock_min,
            time_lock_max: v.time_lock_max,
            secret_hash: parse_bytes_field("SignedVoucher.SecretHash", v.secret_hash.as_deref())?,
            extra: v.extra.map(ModVerifyParams::from_shape).transpose()?,
            lane: v.lane,
            nonce: v.nonce,
            amount: parse_amount_field("SignedVoucher.Amount", &v.amount)?,
            min_settle_height: v.min_settle_height,
            merges: v
                .merges
                .unwrap_or_default()
                .into_iter()
                .map(|m| Merge { lane: m.lane, nonce: m.nonce })
                .collect(),
            signature: v.signature.map(|s| s.parse("SignedVoucher.Signature")).transpose()?,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Payment-channel actor state.

/// A payment channel's state as `StateReadState` shows it: `{"From","To","ToSend",
/// "SettlingAt","MinSettleHeight","LaneStates":{"/":…}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PaychStateJson {
    /// The payer.
    pub from: String,
    /// The payee.
    pub to: String,
    /// attoFIL redeemed so far.
    pub to_send: String,
    /// The settlement epoch; 0 while not settling.
    pub settling_at: ChainEpoch,
    /// The lowest settlement epoch.
    pub min_settle_height: ChainEpoch,
    /// The root of the lane-state AMT.
    pub lane_states: CidJson,
}

impl LotusJson for PaychState {
    type Shape = PaychStateJson;

    fn to_shape(&self, network: Network) -> Result<PaychStateJson, JsonError> {
        Ok(PaychStateJson {
            from: format_address(&self.from, network),
            to: format_address(&self.to, network),
            to_send: amount_text(&self.to_send),
            settling_at: self.settling_at,
            min_settle_height: self.min_settle_height,
            lane_states: CidJson::new(&self.lane_states),
        })
    }

    fn from_shape(s: PaychStateJson) -> Result<Self, JsonError> {
        Ok(PaychState {
            from: parse_address_field("State.From", &s.from)?,
            to: parse_address_field("State.To", &s.to)?,
            to_send: parse_amount_field("State.ToSend", &s.to_send)?,
            settling_at: s.settling_at,
            min_settle_height: s.min_settle_height,
            lane_states: s.lane_states.parse("State.LaneStates")?,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Actors.

/// An actor's entry in the state tree, as `StateGetActor` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The actor's code CID.
    pub code: Cid,
    /// The root of the actor's state.
    pub head: Cid,
    /// The actor's nonce.
    pub nonce: u64,
    /// The actor's balance.
    pub balance: TokenAmount,
}

/// An actor: `{"Code","Head","Nonce","Balance"}` (a `DelegatedAddress` that newer Lotus
/// versions add is read and ignored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ActorJson {
    /// The code CID.
    pub code: CidJson,
    /// The state root.
    pub head: CidJson,
    /// The nonce.
    pub nonce: u64,
    /// The balance, attoFIL.
    pub balance: String,
}

impl LotusJson for Actor {
    type Shape = ActorJson;

    fn to_shape(&self, _network: Network) -> Result<ActorJson, JsonError> {
        Ok(ActorJson {
            code: CidJson::new(&self.code),
            head: CidJson::new(&self.head),
            nonce: self.nonce,
            balance: amount_text(&self.balance),
        })
    }

    fn from_shape(a: ActorJson) -> Result<Self, JsonError> {
        Ok(Actor {
            code: a.code.parse("Actor.Code")?,
            head: a.head.parse("Actor.Head")?,
            nonce: a.nonce,
            balance: parse_amount_field("Actor.Balance", &a.balance)?,
        })
    }
}

/// An actor's state as `StateReadState` returns it. `state` is the actor-specific JSON;
/// read a payment channel's with `from_value::<PaychState>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActorState {
    /// The actor's balance.
    pub balance: TokenAmount,
    /// The actor's code CID.
    pub code: Cid,
    /// The actor's state, in the actor's own JSON.
    pub state: Value,
}

/// `{"Balance","Code","State"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ActorStateJson {
    /// The balance, attoFIL.
    pub balance: String,
    /// The code CID.
    pub code: CidJson,
    /// The actor's state.
    #[serde(default)]
    pub state: Value,
}

impl LotusJson for ActorState {
    type Shape = ActorStateJson;

    fn to_shape(&self, _network: Network) -> Result<ActorStateJson, JsonError> {
        Ok(ActorStateJson {
            balance: amount_text(&self.balance),
            code: CidJson::new(&self.code),
            state: self.state.clone(),
        })
    }

    fn from_shape(s: ActorStateJson) -> Result<Self, JsonError> {
        Ok(ActorState {
            balance: parse_amount_field("ActorState.Balance", &s.balance)?,
            code: s.code.parse("ActorState.Code")?,
            state: s.state,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Tipsets.

/// The parts of a block header paych reads or the devnet fills in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockHeader {
    /// The block producer.
    pub miner: Address,
    /// The parent tipset's block CIDs.
    pub parents: Vec<Cid>,
    /// The parent tipset's weight.
    pub parent_weight: BigInt,
    /// The block's epoch.
    pub height: ChainEpoch,
    /// The state root the block builds on.
    pub parent_state_root: Cid,
    /// The root of the parent tipset's receipts.
    pub parent_message_receipts: Cid,
    /// The root of the block's messages.
    pub messages: Cid,
    /// Unix time, seconds.
    pub timestamp: u64,
    /// The parent tipset's base fee.
    pub parent_base_fee: TokenAmount,
}

/// A block header, with every field Lotus writes. Tickets, proofs, beacon entries and
/// signatures are carried as raw JSON (`null` when the block has none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct BlockHeaderJson {
    /// The block producer.
    pub miner: String,
    /// The election ticket.
    #[serde(default)]
    pub ticket: Value,
    /// The election proof.
    #[serde(default)]
    pub election_proof: Value,
    /// Drand beacon entries.
    #[serde(default)]
    pub beacon_entries: Value,
    /// Winning PoSt proofs.
    #[serde(default)]
    pub win_po_st_proof: Value,
    /// The parent tipset's block CIDs.
    pub parents: Vec<CidJson>,
    /// The parent weight, decimal.
    #[serde(default = "zero_text")]
    pub parent_weight: String,
    /// The epoch.
    pub height: ChainEpoch,
    /// The state root the block builds on.
    pub parent_state_root: CidJson,
    /// The root of the parent tipset's receipts.
    #[serde(default)]
    pub parent_message_receipts: Option<CidJson>,
    /// The root of the block's messages.
    pub messages: CidJson,
    /// The aggregate BLS signature.
    #[serde(rename = "BLSAggregate", default)]
    pub bls_aggregate: Value,
    /// Unix time, seconds.
    pub timestamp: u64,
    /// The producer's signature.
    #[serde(default)]
    pub block_sig: Value,
    /// Fork signalling bits.
    #[serde(default)]
    pub fork_signaling: u64,
    /// The parent tipset's base fee, attoFIL.
    #[serde(default = "zero_text")]
    pub parent_base_fee: String,
}

fn zero_text() -> String {
    "0".to_owned()
}

impl LotusJson for BlockHeader {
    type Shape = BlockHeaderJson;

    fn to_shape(&self, network: Network) -> Result<BlockHeaderJson, JsonError> {
        Ok(BlockHeaderJson {
            miner: format_address(&self.miner, network),
            ticket: Value::Null,
            election_proof: Value::Null,
            beacon_entries: Value::Null,
            win_po_st_proof: Value::Null,
            parents: cids_json(&self.parents),
            parent_weight: self.parent_weight.to_string(),
            height: self.height,
            parent_state_root: CidJson::new(&self.parent_state_root),
            parent_message_receipts: Some(CidJson::new(&self.parent_message_receipts)),
            messages: CidJson::new(&self.messages),
            bls_aggregate: Value::Null,
            timestamp: self.timestamp,
            block_sig: Value::Null,
            fork_signaling: 0,
            parent_base_fee: amount_text(&self.parent_base_fee),
        })
    }

    fn from_shape(b: BlockHeaderJson) -> Result<Self, JsonError> {
        let parent_state_root = b.parent_state_root.parse("Block.ParentStateRoot")?;
        Ok(BlockHeader {
            miner: parse_address_field("Block.Miner", &b.miner)?,
            parents: parse_cids("Block.Parents", &b.parents)?,
            parent_weight: parse_bigint_field("Block.ParentWeight", &b.parent_weight)?,
            height: b.height,
            parent_state_root,
            parent_message_receipts: match b.parent_message_receipts {
                Some(c) => c.parse("Block.ParentMessageReceipts")?,
                None => parent_state_root,
            },
            messages: b.messages.parse("Block.Messages")?,
            timestamp: b.timestamp,
            parent_base_fee: parse_amount_field("Block.ParentBaseFee", &b.parent_base_fee)?,
        })
    }
}

/// A tipset, as `ChainHead` and `ChainGetTipSetByHeight` return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TipSet {
    /// The CIDs of its blocks (its key).
    pub cids: Vec<Cid>,
    /// Its blocks.
    pub blocks: Vec<BlockHeader>,
    /// Its epoch.
    pub height: ChainEpoch,
}

/// `{"Cids","Blocks","Height"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TipSetJson {
    /// The block CIDs.
    pub cids: Vec<CidJson>,
    /// The blocks.
    pub blocks: Vec<BlockHeaderJson>,
    /// The epoch.
    pub height: ChainEpoch,
}

impl LotusJson for TipSet {
    type Shape = TipSetJson;

    fn to_shape(&self, network: Network) -> Result<TipSetJson, JsonError> {
        Ok(TipSetJson {
            cids: cids_json(&self.cids),
            blocks: self.blocks.iter().map(|b| b.to_shape(network)).collect::<Result<_, _>>()?,
            height: self.height,
        })
    }

    fn from_shape(t: TipSetJson) -> Result<Self, JsonError> {
        Ok(TipSet {
            cids: parse_cids("TipSet.Cids", &t.cids)?,
            blocks: t.blocks.into_iter().map(BlockHeader::from_shape).collect::<Result<_, _>>()?,
            height: t.height,
        })
    }
}

/// The most block CIDs a tipset key may name (a tipset holds a handful of blocks; Filecoin
/// expects five per epoch).
pub const MAX_TIPSET_KEY_CIDS: usize = 64;

/// A tipset key: the CIDs of a tipset's blocks, the parameter by which the `State*` and
/// `Chain*` methods name a tipset. Empty names the head.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TipSetKey(pub Vec<Cid>);

impl TipSetKey {
    /// The key that names the head (`[]`).
    pub fn head() -> Self {
        TipSetKey(Vec::new())
    }

    /// Whether the key names the head.
    pub fn is_head(&self) -> bool {
        self.0.is_empty()
    }
}

impl LotusJson for TipSetKey {
    /// `[{"/":…},…]`; `null` is read as the head, as `[]` is.
    type Shape = Option<Vec<CidJson>>;

    fn to_shape(&self, _network: Network) -> Result<Self::Shape, JsonError> {
        Ok(Some(cids_json(&self.0)))
    }

    fn from_shape(shape: Self::Shape) -> Result<Self, JsonError> {
        let cids = shape.unwrap_or_default();
        if cids.len() > MAX_TIPSET_KEY_CIDS {
            return Err(JsonError::InvalidValue {
                field: "TipSetKey",
                reason: format!("more than {MAX_TIPSET_KEY_CIDS} block CIDs"),
            });
        }
        parse_cids("TipSetKey", &cids).map(TipSetKey)
    }
}

// ---------------------------------------------------------------------------------------
// Receipts, message lookups and calls.

/// A receipt: `{"ExitCode","Return","GasUsed","EventsRoot"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ReceiptJson {
    /// The exit code.
    pub exit_code: i64,
    /// The return value, base64; `null` when empty.
    #[serde(rename = "Return", default)]
    pub return_: Option<String>,
    /// Gas used.
    pub gas_used: i64,
    /// The root of the events the message emitted; `null` for none.
    #[serde(default)]
    pub events_root: Option<CidJson>,
}

impl ReceiptJson {
    fn new(receipt: &Receipt) -> Self {
        ReceiptJson {
            exit_code: i64::from(receipt.exit_code.value()),
            return_: bytes_text(&receipt.return_data),
            gas_used: i64::try_from(receipt.gas_used).unwrap_or(i64::MAX),
            events_root: None,
        }
    }

    fn parse(self, field: &'static str) -> Result<Receipt, JsonError> {
        let exit_code = u32::try_from(self.exit_code).map_err(|_| JsonError::InvalidValue {
            field,
            reason: format!("exit code {} out of range", self.exit_code),
        })?;
        let gas_used = u64::try_from(self.gas_used).map_err(|_| JsonError::InvalidValue {
            field,
            reason: format!("negative gas used {}", self.gas_used),
        })?;
        Ok(Receipt {
            exit_code: ExitCode::new(exit_code),
            return_data: parse_bytes_field(field, self.return_.as_deref())?,
            gas_used,
        })
    }
}

impl LotusJson for Receipt {
    type Shape = ReceiptJson;

    fn to_shape(&self, _network: Network) -> Result<ReceiptJson, JsonError> {
        Ok(ReceiptJson::new(self))
    }

    fn from_shape(shape: ReceiptJson) -> Result<Self, JsonError> {
        shape.parse("Receipt")
    }
}

/// An executed message, as `StateWaitMsg` and `StateSearchMsg` return it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MsgLookup {
    /// The message's CID (of the replacing message, when it was replaced).
    pub message: Cid,
    /// Its receipt.
    pub receipt: Receipt,
    /// The key of the tipset whose state includes its execution.
    pub tipset: Vec<Cid>,
    /// That tipset's epoch.
    pub height: ChainEpoch,
}

impl From<MsgLookup> for MessageLookup {
    fn from(l: MsgLookup) -> Self {
        MessageLookup { message: l.message, receipt: l.receipt, epoch: l.height }
    }
}

/// `{"Message","Receipt","ReturnDec","TipSet","Height"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MsgLookupJson {
    /// The message's CID.
    pub message: CidJson,
    /// Its receipt.
    pub receipt: ReceiptJson,
    /// The decoded return value; paych writes `null`.
    #[serde(default)]
    pub return_dec: Value,
    /// The tipset key.
    #[serde(rename = "TipSet", default)]
    pub tipset: Option<Vec<CidJson>>,
    /// The tipset's epoch.
    pub height: ChainEpoch,
}

impl LotusJson for MsgLookup {
    type Shape = MsgLookupJson;

    fn to_shape(&self, _network: Network) -> Result<MsgLookupJson, JsonError> {
        Ok(MsgLookupJson {
            message: CidJson::new(&self.message),
            receipt: ReceiptJson::new(&self.receipt),
            return_dec: Value::Null,
            tipset: Some(cids_json(&self.tipset)),
            height: self.height,
        })
    }

    fn from_shape(l: MsgLookupJson) -> Result<Self, JsonError> {
        Ok(MsgLookup {
            message: l.message.parse("MsgLookup.Message")?,
            receipt: l.receipt.parse("MsgLookup.Receipt")?,
            tipset: parse_cids("MsgLookup.TipSet", &l.tipset.unwrap_or_default())?,
            height: l.height,
        })
    }
}

/// The result of `StateCall`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvocResult {
    /// The message executed.
    pub msg: Option<Message>,
    /// Its receipt; `None` when it could not be executed at all.
    pub receipt: Option<Receipt>,
    /// Why it failed; empty on success.
    pub error: String,
    /// How long execution took.
    pub duration: Duration,
}

/// `{"MsgCid","Msg","MsgRct","GasCost","ExecutionTrace","Error","Duration"}`. `GasCost` and
/// `ExecutionTrace` are written from the message and receipt (no base fee, no subcalls)
/// and not interpreted when read; `Duration` is in nanoseconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InvocResultJson {
    /// The message's CID.
    #[serde(default)]
    pub msg_cid: Option<CidJson>,
    /// The message.
    #[serde(default)]
    pub msg: Option<MessageJson>,
    /// The receipt.
    #[serde(default)]
    pub msg_rct: Option<ReceiptJson>,
    /// What the message cost.
    #[serde(default)]
    pub gas_cost: Value,
    /// The execution trace.
    #[serde(default)]
    pub execution_trace: Value,
    /// Why execution failed; empty on success.
    #[serde(default)]
    pub error: String,
    /// Execution time, nanoseconds.
    #[serde(default)]
    pub duration: i64,
}

impl LotusJson for InvocResult {
    type Shape = InvocResultJson;

    fn to_shape(&self, network: Network) -> Result<InvocResultJson, JsonError> {
        let msg_cid = self
            .msg
            .as_ref()
            .map(|m| m.cid().map_err(|e| JsonError::Encode(e.to_string())))
            .transpose()?;
        let gas_used = self.receipt.as_ref().map_or(0, |r| r.gas_used);
        let gas_cost = json!({
            "Message": msg_cid.as_ref().map(CidJson::new),
            "GasUsed": gas_used.to_string(),
            "BaseFeeBurn": "0",
            "OverEstimationBurn": "0",
            "MinerPenalty": "0",
            "MinerTip": "0",
            "Refund": "0",
            "TotalCost": "0",
        });
        let execution_trace = match &self.msg {
            None => Value::Null,
            Some(m) => {
                let params_codec = if m.params.is_empty() { 0 } else { CBOR_CODEC };
                let (exit_code, ret) = self
                    .receipt
                    .as_ref()
                    .map_or((0, None), |r| (r.exit_code.value(), bytes_text(&r.return_data)));
                let return_codec = if ret.is_some() { CBOR_CODEC } else { 0 };
                json!({
                    "Msg": {
                        "From": format_address(&m.from, network),
                        "To": format_address(&m.to, network),
                        "Value": amount_text(&m.value),
                        "Method": m.method,
                        "Params": bytes_text(&m.params),
                        "ParamsCodec": params_codec,
                        "GasLimit": m.gas_limit,
                        "ReadOnly": false,
                    },
                    "MsgRct": {"ExitCode": exit_code, "Return": ret, "ReturnCodec": return_codec},
                    "GasCharges": null,
                    "Subcalls": null,
                })
            }
        };
        Ok(InvocResultJson {
            msg_cid: msg_cid.as_ref().map(CidJson::new),
            msg: self.msg.as_ref().map(|m| m.to_shape(network)).transpose()?,
            msg_rct: self.receipt.as_ref().map(ReceiptJson::new),
            gas_cost,
            execution_trace,
            error: self.error.clone(),
            duration: i64::try_from(self.duration.as_nanos()).unwrap_or(i64::MAX),
        })
    }

    fn from_shape(r: InvocResultJson) -> Result<Self, JsonError> {
        Ok(InvocResult {
            msg: r.msg.map(Message::from_shape).transpose()?,
            receipt: r.msg_rct.map(|rct| rct.parse("InvocResult.MsgRct")).transpose()?,
            error: r.error,
            duration: Duration::from_nanos(u64::try_from(r.duration).unwrap_or(0)),
        })
    }
}

/// The code CID of each actor by its Lotus name (`StateActorCodeCIDs`).
impl LotusJson for BTreeMap<String, Cid> {
    type Shape = BTreeMap<String, CidJson>;

    fn to_shape(&self, _network: Network) -> Result<Self::Shape, JsonError> {
        Ok(self.iter().map(|(name, cid)| (name.clone(), CidJson::new(cid))).collect())
    }

    fn from_shape(shape: Self::Shape) -> Result<Self, JsonError> {
        shape.into_iter().map(|(name, c)| Ok((name, c.parse("ActorCodeCIDs")?))).collect()
    }
}
