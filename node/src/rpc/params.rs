//! The parameter types of the node's API methods, each read one way by the server (from a
//! positional JSON parameter, with the error message callers see) and written one way by the
//! client: [`Param`] for the client's side, `ReadParam` for the server's, and [`ParamList`]
//! for a method's parameter tuple (Lotus's positional parameters).
//!
//! It knows no method and never touches the manager, the wallet or the network.

use base64::Engine as _;
use libp2p::{Multiaddr, PeerId};
use paych_core::invoice::{Hub, MAX_HUBS, MAX_MULTIADDR_LEN};
use paych_core::jsonrpc::RpcError;
use paych_core::lotus_json::{self as json, JsonError, LotusJson, ModVerifyParamsJson};
use paych_core::manager::VoucherSpec;
use paych_core::types::{format_address, Address, ModVerifyParams, Network, TokenAmount};
use paych_core::wallet::KeyInfo;
use paych_protocol::retrieval::Hash;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::envelope::Params;
use crate::retrieval::{parse_root, MAX_PUBLISHED_BYTES};

/// The most vouchers one `PaychNewPayment` creates.
pub const MAX_PAYMENT_VOUCHERS: usize = 1024;
/// The most addresses a `NetConnect` tries.
pub const MAX_CONNECT_ADDRS: usize = 16;

/// A value the client writes as one positional parameter.
pub trait Param {
    /// The parameter's JSON, with addresses written for `network`.
    fn write(&self, network: Network) -> Result<Value, JsonError>;
}

/// A value the server reads from one positional parameter.
pub(crate) trait ReadParam: Sized {
    /// Reads parameter `i`; a bad value gets `INVALID_PARAMS` naming the method and `i`.
    fn read(p: &mut Params<'_>, i: usize) -> Result<Self, RpcError>;
}

/// A method's positional parameters, as a tuple.
pub trait ParamList: Send + 'static {
    /// How many parameters.
    const ARITY: usize;
    /// The parameters' JSON array.
    fn write_all(&self, network: Network) -> Result<Vec<Value>, JsonError>;
}

/// A parameter tuple the server reads.
pub(crate) trait ReadParams: ParamList + Sized {
    /// Reads every parameter, in order.
    fn read_all(p: &mut Params<'_>) -> Result<Self, RpcError>;
}

macro_rules! tuples {
    ($( ($($name:ident $i:tt),*) = $arity:literal; )*) => {$(
        impl<$($name: Param + Send + 'static),*> ParamList for ($($name,)*) {
            const ARITY: usize = $arity;
            #[allow(unused_variables)]
            fn write_all(&self, network: Network) -> Result<Vec<Value>, JsonError> {
                Ok(vec![$(self.$i.write(network)?),*])
            }
        }
        impl<$($name: Param + ReadParam + Send + 'static),*> ReadParams for ($($name,)*) {
            #[allow(unused_variables)]
            fn read_all(p: &mut Params<'_>) -> Result<Self, RpcError> {
                Ok(($($name::read(p, $i)?,)*))
            }
        }
    )*};
}

tuples! {
    () = 0;
    (A 0) = 1;
    (A 0, B 1) = 2;
    (A 0, B 1, C 2) = 3;
    (A 0, B 1, C 2, D 3) = 4;
}

fn encode<T: LotusJson>(value: &T, network: Network) -> Result<Value, JsonError> {
    json::to_value(value, network)
}

impl Param for Address {
    fn write(&self, network: Network) -> Result<Value, JsonError> {
        Ok(Value::String(format_address(self, network)))
    }
}

impl ReadParam for Address {
    fn read(p: &mut Params<'_>, i: usize) -> Result<Self, RpcError> {
        p.address(i)
    }
}

/// Amounts are never negative in the API.
impl Param for TokenAmount {
    fn write(&self, _network: Network) -> Result<Value, JsonError> {
        Ok(Value::String(json::amount_text(self)))
    }
}

impl ReadParam for TokenAmount {
    fn read(p: &mut Params<'_>, i: usize) -> Result<Self, RpcError> {
        let amount = p.amount(i)?;
        if amount.is_negative() {
            return Err(p.invalid(i, "the amount must not be negative"));
        }
        Ok(amount)
    }
}

/// An optional bound (`PaychRetrieve`'s total): an amount or `null`.
impl Param for Option<TokenAmount> {
    fn write(&self, network: Network) -> Result<Value, JsonError> {
        self.as_ref().map_or(Ok(Value::Null), |a| a.write(network))
    }
}

impl ReadParam for Option<TokenAmount> {
    fn read(p: &mut Params<'_>, i: usize) -> Result<Self, RpcError> {
        match p.take(i) {
            Value::Null => Ok(None),
            Value::String(text) => json::parse_amount_field("maxTotal", &text)
                .ok()
                .filter(|a| !a.is_negative())
                .map(Some)
                .ok_or_else(|| p.invalid(i, "expected a non-negative attoFIL amount")),
            _ => Err(p.invalid(i, "expected an attoFIL amount or null")),
        }
    }
}

impl Param for u64 {
    fn write(&self, _network: Network) -> Result<Value, JsonError> {
        Ok(Value::from(*self))
    }
}

impl ReadParam for u64 {
    fn read(p: &mut Params<'_>, i: usize) -> Result<Self, RpcError> {
        p.u64(i)
    }
}

impl Param for i64 {
    fn write(&self, _network: Network) -> Result<Value, JsonError> {
        Ok(Value::from(*self))
    }
}

impl ReadParam for i64 {
    fn read(p: &mut Params<'_>, i: usize) -> Result<Self, RpcError> {
        p.i64(i)
    }
}

impl Param for bool {
    fn write(&self, _network: Network) -> Result<Value, JsonError> {
        Ok(Value::Bool(*self))
    }
}

impl ReadParam for bool {
    fn read(p: &mut Params<'_>, i: usize) -> Result<Self, RpcError> {
        p.bool(i)
    }
}

/// A tipset key: an array of block CIDs, `[]` or `null` for the head.
impl Param for json::TipSetKey {
    fn write(&self, network: Network) -> Result<Value, JsonError> {
        encode(self, network)
    }
}

impl ReadParam for json::TipSetKey {
    fn read(p: &mut Params<'_>, i: usize) -> Result<Self, RpcError> {
        p.tipset_key(i)
    }
}

impl Param for cid::Cid {
    fn write(&self, network: Network) -> Result<Value, JsonError> {
        encode(self, network)
    }
}

impl ReadParam for cid::Cid {
    fn read(p: &mut Params<'_>, i: usize) -> Result<Self, RpcError> {
        p.lotus(i)
    }
}

impl Param for paych_core::types::SignedVoucher {
    fn write(&self, network: Network) -> Result<Value, JsonError> {
        encode(self, network)
    }
}

impl ReadParam for paych_core::types::SignedVoucher {
    fn read(p: &mut Params<'_>, i: usize) -> Result<Self, RpcError> {
        p.lotus(i)
    }
}

/// Bytes (a secret, a proof): standard base64, `null` for none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bytes(pub Vec<u8>);

impl Param for Bytes {
    fn write(&self, _network: Network) -> Result<Value, JsonError> {
        Ok(json::bytes_text(&self.0).map_or(Value::Null, Value::String))
    }
}

impl ReadParam for Bytes {
    fn read(p: &mut Params<'_>, i: usize) -> Result<Self, RpcError> {
        match p.take(i) {
            Value::Null => Ok(Bytes::default()),
            Value::String(text) => json::parse_bytes_field("bytes", Some(&text))
                .map(Bytes)
                .map_err(|e| p.invalid(i, e)),
            _ => Err(p.invalid(i, "expected base64 bytes or null")),
        }
    }
}

/// `PaychPay`'s flow: a name whose payments share a lane, or `null`.
impl Param for Option<String> {
    fn write(&self, _network: Network) -> Result<Value, JsonError> {
        Ok(self.clone().map_or(Value::Null, Value::String))
    }
}

impl ReadParam for Option<String> {
    fn read(p: &mut Params<'_>, i: usize) -> Result<Self, RpcError> {
        match p.take(i) {
            Value::Null => Ok(None),
            Value::String(flow) => Ok(Some(flow)),
            _ => Err(p.invalid(i, "expected a string or null")),
        }
    }
}

/// `PaychPayInvoice`'s invoice: its `paychinv1…` text, at most
/// [`paych_core::invoice::MAX_TEXT_LEN`] characters (decoded and checked by the payer).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceText(pub String);

impl Param for InvoiceText {
    fn write(&self, _network: Network) -> Result<Value, JsonError> {
        Ok(Value::String(self.0.clone()))
    }
}

impl ReadParam for InvoiceText {
    fn read(p: &mut Params<'_>, i: usize) -> Result<Self, RpcError> {
        match p.take(i) {
            Value::String(text) if text.len() <= paych_core::invoice::MAX_TEXT_LEN => {
                Ok(InvoiceText(text))
            }
            Value::String(text) => Err(p.invalid(
                i,
                format!(
                    "an invoice of {} characters is longer than {}",
                    text.len(),
                    paych_core::invoice::MAX_TEXT_LEN
                ),
            )),
            _ => Err(p.invalid(i, "expected the invoice's paychinv1… text")),
        }
    }
}

/// `PaychGet`'s options: `{"OffChain": bool}` or `null`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GetOptions {
    /// The channel must exist and cover the amount without a chain message.
    pub off_chain: bool,
}

impl Param for Option<GetOptions> {
    fn write(&self, _network: Network) -> Result<Value, JsonError> {
        Ok(self.map_or(Value::Null, |o| serde_json::json!({ "OffChain": o.off_chain })))
    }
}

impl ReadParam for Option<GetOptions> {
    fn read(p: &mut Params<'_>, i: usize) -> Result<Self, RpcError> {
        match p.take(i) {
            Value::Null => Ok(None),
            Value::Object(options) => match options.get("OffChain") {
                None | Some(Value::Null) => Ok(Some(GetOptions::default())),
                Some(Value::Bool(b)) => Ok(Some(GetOptions { off_chain: *b })),
                Some(_) => Err(p.invalid(i, "OffChain must be true or false")),
            },
            _ => Err(p.invalid(i, "expected {\"OffChain\":bool} or null")),
        }
    }
}

/// The vouchers of `PaychNewPayment`, each in Lotus's `VoucherSpec` shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoucherSpecs(pub Vec<VoucherSpec>);

/// One voucher of `PaychNewPayment`, in Lotus's `VoucherSpec` shape.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct VoucherSpecJson {
    amount: String,
    #[serde(default)]
    time_lock_min: i64,
    #[serde(default)]
    time_lock_max: i64,
    #[serde(default)]
    min_settle: i64,
    #[serde(default)]
    extra: Option<Value>,
}

impl VoucherSpecJson {
    fn parse(self) -> Result<VoucherSpec, JsonError> {
        let amount = json::parse_amount_field("Amount", &self.amount)?;
        let extra = match self.extra {
            None | Some(Value::Null) => None,
            Some(extra) => Some(json::from_value::<ModVerifyParams>(extra)?),
        };
        Ok(VoucherSpec {
            amount,
            time_lock_min: self.time_lock_min,
            time_lock_max: self.time_lock_max,
            min_settle_height: self.min_settle,
            extra,
            secret_hash: Vec::new(),
        })
    }

    fn new(spec: &VoucherSpec, network: Network) -> Result<Self, JsonError> {
        let extra: Option<ModVerifyParamsJson> =
            spec.extra.as_ref().map(|e| e.to_shape(network)).transpose()?;
        Ok(VoucherSpecJson {
            amount: json::amount_text(&spec.amount),
            time_lock_min: spec.time_lock_min,
            time_lock_max: spec.time_lock_max,
            min_settle: spec.min_settle_height,
            extra: extra
                .map(|e| serde_json::to_value(e).map_err(|e| JsonError::Encode(e.to_string())))
                .transpose()?,
        })
    }
}

impl Param for VoucherSpecs {
    fn write(&self, network: Network) -> Result<Value, JsonError> {
        let specs = self
            .0
            .iter()
            .map(|s| VoucherSpecJson::new(s, network))
            .collect::<Result<Vec<_>, _>>()?;
        serde_json::to_value(specs).map_err(|e| JsonError::Encode(e.to_string()))
    }
}

impl ReadParam for VoucherSpecs {
    fn read(p: &mut Params<'_>, i: usize) -> Result<Self, RpcError> {
        let Value::Array(items) = p.take(i) else {
            return Err(p.invalid(i, "expected an array of voucher specs"));
        };
        if items.is_empty() || items.len() > MAX_PAYMENT_VOUCHERS {
            return Err(p.invalid(i, format!("between 1 and {MAX_PAYMENT_VOUCHERS} vouchers")));
        }
        items
            .into_iter()
            .map(|item| {
                let spec: VoucherSpecJson =
                    serde_json::from_value(item).map_err(|e| p.invalid(i, e))?;
                let spec = spec.parse().map_err(|e| p.invalid(i, e))?;
                if spec.amount.is_negative() {
                    return Err(p.invalid(i, "the amount must not be negative"));
                }
                Ok(spec)
            })
            .collect::<Result<Vec<_>, _>>()
            .map(VoucherSpecs)
    }
}

/// The kind of key `WalletNew` makes: only `"secp256k1"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    /// A secp256k1 key (`t1…` addresses).
    Secp256k1,
}

/// The key type's name on the wire.
const SECP256K1: &str = "secp256k1";

impl Param for KeyType {
    fn write(&self, _network: Network) -> Result<Value, JsonError> {
        Ok(Value::String(SECP256K1.to_owned()))
    }
}

impl ReadParam for KeyType {
    fn read(p: &mut Params<'_>, i: usize) -> Result<Self, RpcError> {
        match p.take(i) {
            Value::String(kind) if kind == SECP256K1 => Ok(KeyType::Secp256k1),
            _ => Err(p.invalid(i, "only \"secp256k1\" keys are supported")),
        }
    }
}

impl Param for KeyInfo {
    fn write(&self, _network: Network) -> Result<Value, JsonError> {
        serde_json::to_value(self).map_err(|e| JsonError::Encode(e.to_string()))
    }
}

impl ReadParam for KeyInfo {
    fn read(p: &mut Params<'_>, i: usize) -> Result<Self, RpcError> {
        serde_json::from_value(p.take(i)).map_err(|e| p.invalid(i, e))
    }
}

/// Lotus's `AddrInfo` as `NetConnect` takes it: a peer and its multiaddrs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfo {
    /// The peer.
    pub id: PeerId,
    /// Where to reach it (at most [`MAX_CONNECT_ADDRS`]).
    pub addrs: Vec<Multiaddr>,
}

impl AddrInfo {
    /// The shape the API writes.
    pub fn to_json(&self) -> json::api::AddrInfoJson {
        json::api::AddrInfoJson {
            id: self.id.to_string(),
            addrs: self.addrs.iter().map(ToString::to_string).collect(),
        }
    }

    fn parse(value: &Value) -> Result<AddrInfo, String> {
        let id =
            value["ID"].as_str().ok_or("expected {\"ID\": peer id, \"Addrs\": [multiaddr]}")?;
        let id: PeerId = id.parse().map_err(|e| format!("ID: {e}"))?;
        let addrs = match &value["Addrs"] {
            Value::Array(addrs) if addrs.len() <= MAX_CONNECT_ADDRS => addrs,
            Value::Array(_) => return Err(format!("at most {MAX_CONNECT_ADDRS} addresses")),
            _ => return Err("Addrs: expected an array of multiaddrs".to_owned()),
        };
        let addrs = addrs
            .iter()
            .map(|a| {
                let text = a.as_str().ok_or("Addrs: expected strings")?;
                text.parse::<Multiaddr>().map_err(|e| format!("Addrs: {e}"))
            })
            .collect::<Result<Vec<_>, String>>()?;
        Ok(AddrInfo { id, addrs })
    }
}

impl Param for AddrInfo {
    fn write(&self, _network: Network) -> Result<Value, JsonError> {
        serde_json::to_value(self.to_json()).map_err(|e| JsonError::Encode(e.to_string()))
    }
}

impl ReadParam for AddrInfo {
    fn read(p: &mut Params<'_>, i: usize) -> Result<Self, RpcError> {
        let value = p.take(i);
        AddrInfo::parse(&value).map_err(|e| p.invalid(i, e))
    }
}

/// The hubs of `PaychInvoice`: `[{"Address": key address, "Multiaddr": "…/p2p/<peer id>"}]`,
/// at most [`MAX_HUBS`], or `null` for none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InvoiceHubs(pub Vec<Hub>);

impl InvoiceHubs {
    /// Reads one hub from `ADDRESS=MULTIADDR` (as the CLI's `--hub` takes it).
    pub fn parse_pair(text: &str) -> Result<Hub, String> {
        let (address, multiaddr) =
            text.split_once('=').ok_or("expected ADDRESS=MULTIADDR (…/p2p/<peer id>)")?;
        Self::hub(address, multiaddr)
    }

    fn hub(address: &str, multiaddr: &str) -> Result<Hub, String> {
        let address = json::parse_address_field("Address", address).map_err(|e| e.to_string())?;
        if multiaddr.len() > MAX_MULTIADDR_LEN {
            return Err(format!("Multiaddr: longer than {MAX_MULTIADDR_LEN} bytes"));
        }
        let parsed: Multiaddr = multiaddr.parse().map_err(|e| format!("Multiaddr: {e}"))?;
        if !matches!(parsed.iter().last(), Some(libp2p::multiaddr::Protocol::P2p(_))) {
            return Err("Multiaddr: must end with /p2p/<peer id>".to_owned());
        }
        Ok(Hub { address, multiaddr: parsed.to_string() })
    }

    fn parse(value: &Value) -> Result<InvoiceHubs, String> {
        let hubs = match value {
            Value::Null => return Ok(InvoiceHubs::default()),
            Value::Array(hubs) if hubs.len() <= MAX_HUBS => hubs,
            Value::Array(_) => return Err(format!("at most {MAX_HUBS} hubs")),
            _ => return Err("expected [{\"Address\", \"Multiaddr\"}] or null".to_owned()),
        };
        hubs.iter()
            .map(|hub| {
                let field =
                    |name: &str| hub[name].as_str().ok_or(format!("{name}: expected a string"));
                Self::hub(field("Address")?, field("Multiaddr")?)
            })
            .collect::<Result<_, _>>()
            .map(InvoiceHubs)
    }
}

impl Param for InvoiceHubs {
    fn write(&self, network: Network) -> Result<Value, JsonError> {
        Ok(Value::Array(
            self.0
                .iter()
                .map(|hub| {
                    serde_json::json!({
                        "Address": format_address(&hub.address, network),
                        "Multiaddr": hub.multiaddr,
                    })
                })
                .collect(),
        ))
    }
}

impl ReadParam for InvoiceHubs {
    fn read(p: &mut Params<'_>, i: usize) -> Result<Self, RpcError> {
        let value = p.take(i);
        InvoiceHubs::parse(&value).map_err(|e| p.invalid(i, e))
    }
}

/// A blob's root hash (`PaychRetrieve`): 64 hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Root(pub Hash);

impl Param for Root {
    fn write(&self, _network: Network) -> Result<Value, JsonError> {
        Ok(Value::String(hex::encode(self.0)))
    }
}

impl ReadParam for Root {
    fn read(p: &mut Params<'_>, i: usize) -> Result<Self, RpcError> {
        match p.take(i) {
            Value::String(root) => parse_root(&root).map(Root).map_err(|e| p.invalid(i, e)),
            _ => Err(p.invalid(i, "expected the root as 64 hex digits")),
        }
    }
}

/// The bytes a published blob holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobData {
    /// These bytes (`"Data"`: base64).
    Bytes(Vec<u8>),
    /// This many random bytes (`"RandomSize"`).
    Random(usize),
}

/// What `PaychRetrievalPublish` publishes: `{"Data": base64 | "RandomSize": n, "ChunkSize":
/// n, "PricePerChunk": attoFIL, "CorruptChunk": n | null}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishSpec {
    /// The blob.
    pub data: BlobData,
    /// Its chunk size in bytes.
    pub chunk_size: u64,
    /// What one chunk costs.
    pub price_per_chunk: TokenAmount,
    /// Serve this chunk with one byte flipped (for tests of a client's checks).
    pub corrupt_chunk: Option<u64>,
}

impl Param for PublishSpec {
    fn write(&self, _network: Network) -> Result<Value, JsonError> {
        let mut spec = serde_json::Map::new();
        match &self.data {
            BlobData::Bytes(data) => spec.insert(
                "Data".into(),
                Value::String(base64::engine::general_purpose::STANDARD.encode(data)),
            ),
            BlobData::Random(size) => spec.insert("RandomSize".into(), Value::from(*size)),
        };
        spec.insert("ChunkSize".into(), Value::from(self.chunk_size));
        spec.insert(
            "PricePerChunk".into(),
            Value::String(json::amount_text(&self.price_per_chunk)),
        );
        spec.insert("CorruptChunk".into(), self.corrupt_chunk.map_or(Value::Null, Value::from));
        Ok(Value::Object(spec))
    }
}

impl ReadParam for PublishSpec {
    fn read(p: &mut Params<'_>, i: usize) -> Result<Self, RpcError> {
        let value = p.take(i);
        PublishSpec::parse(&value).map_err(|e| p.invalid(i, e))
    }
}

impl PublishSpec {
    fn parse(spec: &Value) -> Result<PublishSpec, String> {
        let Value::Object(spec) = spec else {
            return Err("expected an object {Data|RandomSize, ChunkSize, PricePerChunk}".into());
        };
        let number = |key: &str| -> Result<Option<u64>, String> {
            match spec.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => {
                    v.as_u64().map(Some).ok_or_else(|| format!("{key} must be a whole number"))
                }
            }
        };
        let data = match (spec.get("Data"), number("RandomSize")?) {
            (Some(Value::String(b64)), None) => BlobData::Bytes(
                base64::engine::general_purpose::STANDARD
                    .decode(b64)
                    .map_err(|e| format!("Data is not base64: {e}"))?,
            ),
            (None | Some(Value::Null), Some(size)) => BlobData::Random(
                usize::try_from(size)
                    .ok()
                    .filter(|s| *s <= MAX_PUBLISHED_BYTES)
                    .ok_or_else(|| format!("RandomSize above {MAX_PUBLISHED_BYTES} bytes"))?,
            ),
            _ => return Err("give exactly one of Data (base64) or RandomSize".into()),
        };
        let chunk_size = number("ChunkSize")?.ok_or("ChunkSize is required")?;
        let price_per_chunk = match spec.get("PricePerChunk") {
            Some(Value::String(text)) => json::parse_amount_field("PricePerChunk", text)
                .ok()
                .filter(|a| !a.is_negative())
                .ok_or("PricePerChunk must be a non-negative attoFIL amount")?,
            _ => return Err("PricePerChunk (attoFIL, as a string) is required".into()),
        };
        let corrupt_chunk = number("CorruptChunk")?;
        Ok(PublishSpec { data, chunk_size, price_per_chunk, corrupt_chunk })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use paych_core::types::SignedVoucher;

    /// Writes `params` as the client does and reads them back as the server does.
    fn written_and_read<P: ReadParams + Clone>(params: &P) -> P {
        let values = params.write_all(Network::Mainnet).unwrap();
        assert_eq!(values.len(), P::ARITY);
        P::read_all(&mut Params::new("Filecoin.Test", values, P::ARITY).unwrap()).unwrap()
    }

    #[test]
    fn what_the_client_writes_the_server_reads_back() {
        let ch = Address::new_id(1001);
        let amount = TokenAmount::from_atto(42u64);
        let (a, b) = written_and_read(&(ch, amount.clone()));
        assert_eq!((a, b), (ch, amount.clone()));
        let voucher = SignedVoucher::new(ch, 3, 4, amount.clone());
        let secret = Bytes(vec![1, 2, 3]);
        let read = written_and_read(&(voucher.clone(), secret.clone(), Bytes::default(), 7u64));
        assert_eq!(read, (voucher, secret, Bytes::default(), 7));
        let options = (Some(GetOptions { off_chain: true }), None::<GetOptions>);
        assert_eq!(written_and_read(&options), options);
        let flows = (Some("flow-1".to_owned()), None::<String>, Some(amount.clone()));
        assert_eq!(written_and_read(&flows), flows);
        let spec = VoucherSpec { amount: amount.clone(), time_lock_max: 9, ..Default::default() };
        let specs = (VoucherSpecs(vec![spec.clone(), spec]), KeyType::Secp256k1);
        assert_eq!(written_and_read(&specs), specs);
        let info =
            AddrInfo { id: PeerId::random(), addrs: vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap()] };
        let blob = PublishSpec {
            data: BlobData::Bytes(vec![7; 10]),
            chunk_size: 4,
            price_per_chunk: amount,
            corrupt_chunk: Some(1),
        };
        let root = Root([5; 32]);
        assert_eq!(written_and_read(&(info.clone(), blob.clone(), root)), (info, blob, root));
    }

    #[test]
    fn a_negative_amount_is_refused_with_the_parameter_named() {
        let values = vec![Value::String("-1".to_owned())];
        let mut p = Params::new("Filecoin.Test", values, 1).unwrap();
        let e = <(TokenAmount,)>::read_all(&mut p).unwrap_err();
        assert_eq!(e.message, "Filecoin.Test parameter 0: the amount must not be negative");
    }
}
