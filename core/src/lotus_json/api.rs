//! The shapes of the payment-channel node's own API answers, in Lotus JSON: the manager's
//! answers in Lotus's shapes (`ChannelInfo`, `ChannelAvailableFunds`, `PaymentInfo`,
//! `VoucherCreateResult`), the node's `PaychStatus`, and the shapes of the methods Lotus
//! does not have (`PaychPay`, `PaychReconcile`, `PaychRetrieve`, `PaychRetrievalPublish`,
//! `PaychInvoice`, Lotus's `AddrInfo` for `Net*`).
//!
//! Each shape is a plain serde struct with the field names the API writes; the server builds
//! it from the manager's values (with addresses written for its network) and the client reads
//! it back. It does no I/O and decides nothing.

use serde::{Deserialize, Serialize};

use super::{amount_text, CidJson, JsonError, LotusJson, SignedVoucherJson};
use crate::invoice::Invoice;
use crate::manager::{AvailableFunds, ChannelHandle, ChannelStatus, LaneStatus};
use crate::store::Direction;
use crate::types::{format_address, Address, Network, SignedVoucher, TokenAmount};

fn address_option(addr: &Option<Address>, network: Network) -> Option<String> {
    addr.as_ref().map(|a| format_address(a, network))
}

fn cid_option(cid: &Option<cid::Cid>) -> Option<CidJson> {
    cid.as_ref().map(CidJson::new)
}

/// Lotus's `ChannelInfo`: what `PaychGet`, `PaychFund`, `PaychCreate` and `PaychLookup`
/// answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChannelInfo {
    /// The channel's address, once it exists on chain.
    pub channel: Option<String>,
    /// The message to wait for (`PaychGetWaitReady`) before the channel can be used.
    pub wait_sentinel: Option<CidJson>,
}

impl ChannelInfo {
    /// The shape of a manager's handle.
    pub fn new(handle: &ChannelHandle, network: Network) -> Self {
        ChannelInfo {
            channel: address_option(&handle.channel, network),
            wait_sentinel: cid_option(&handle.wait_sentinel),
        }
    }
}

/// A channel, its parties and its funds, as both [`ChannelAvailableFunds`] and
/// [`ChannelStatusJson`] write them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChannelFunds {
    /// The channel's address, if created.
    pub channel: Option<String>,
    /// The payer.
    pub from: String,
    /// The payee.
    pub to: String,
    /// Funds confirmed on chain, attoFIL.
    pub confirmed_amt: String,
    /// Funds in a message that has not landed.
    pub pending_amt: String,
    /// Funds queued for the next message.
    pub queued_amt: String,
}

impl ChannelFunds {
    /// The shape of a channel's `(channel, from, to)` and `[confirmed, pending, queued]`.
    pub fn new(
        (channel, from, to): (&Option<Address>, &Address, &Address),
        [confirmed, pending, queued]: [&TokenAmount; 3],
        network: Network,
    ) -> Self {
        ChannelFunds {
            channel: address_option(channel, network),
            from: format_address(from, network),
            to: format_address(to, network),
            confirmed_amt: amount_text(confirmed),
            pending_amt: amount_text(pending),
            queued_amt: amount_text(queued),
        }
    }
}

/// Lotus's `ChannelAvailableFunds` (with its `VoucherReedeemedAmt` spelling).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChannelAvailableFunds {
    /// The channel, its parties and its funds.
    #[serde(flatten)]
    pub funds: ChannelFunds,
    /// Confirmed funds neither reserved nor spent by vouchers.
    pub non_reserved_amt: String,
    /// What will be available once pending and queued funds land.
    pub pending_available_amt: String,
    /// The message carrying pending funds.
    pub pending_wait_sentinel: Option<CidJson>,
    /// Funds spent by vouchers (Lotus's spelling).
    #[serde(rename = "VoucherReedeemedAmt")]
    pub voucher_reedeemed_amt: String,
}

impl ChannelAvailableFunds {
    /// The shape of the manager's funds.
    pub fn new(funds: &AvailableFunds, network: Network) -> Self {
        let parties = (&funds.channel, &funds.from, &funds.to);
        let amounts = [&funds.confirmed, &funds.pending, &funds.queued];
        ChannelAvailableFunds {
            funds: ChannelFunds::new(parties, amounts, network),
            non_reserved_amt: amount_text(&funds.non_reserved),
            pending_available_amt: amount_text(&funds.pending_available),
            pending_wait_sentinel: cid_option(&funds.pending_wait_sentinel),
            voucher_reedeemed_amt: amount_text(&funds.voucher_redeemed),
        }
    }
}

/// One lane in a [`ChannelStatusJson`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LaneStatusJson {
    /// The lane.
    pub lane: u64,
    /// The highest nonce the node holds on it.
    pub nonce: u64,
    /// Its cumulative amount, attoFIL.
    pub amount: String,
    /// Redeemed on chain, attoFIL.
    pub redeemed_on_chain: String,
    /// Closed by a merge.
    pub closed: bool,
}

impl LaneStatusJson {
    fn new(lane: &LaneStatus) -> Self {
        LaneStatusJson {
            lane: lane.lane,
            nonce: lane.nonce,
            amount: amount_text(&lane.amount),
            redeemed_on_chain: amount_text(&lane.redeemed_on_chain),
            closed: lane.closed,
        }
    }
}

/// `PaychStatus`: Lotus's (`ControlAddr`, `Direction`: 1 inbound, 2 outbound) with
/// everything else the manager knows about the channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ChannelStatusJson {
    /// The node's key on the channel.
    pub control_addr: String,
    /// 1 inbound, 2 outbound.
    pub direction: u8,
    /// The channel, its parties and its funds.
    #[serde(flatten)]
    pub funds: ChannelFunds,
    /// The message carrying pending funds.
    pub pending_chain_message: Option<CidJson>,
    /// The sum of the lanes' cumulative amounts.
    pub voucher_redeemed_amt: String,
    /// Reserved funds.
    pub reserved_amt: String,
    /// Confirmed funds neither reserved nor spent.
    pub available_amt: String,
    /// The next lane `PaychAllocateLane` hands out.
    pub next_lane: u64,
    /// Whether the channel is settling (or settled).
    pub settling: bool,
    /// The epoch at which it settles (0 when not settling).
    pub settling_at: i64,
    /// Its lanes.
    pub lanes: Vec<LaneStatusJson>,
    /// Where it is in its life (`Creating`, `Open`, `Settling`, …).
    pub lifecycle: String,
    /// Why its creation failed.
    pub create_error: Option<String>,
}

impl ChannelStatusJson {
    /// The shape of the manager's status.
    pub fn new(status: &ChannelStatus, network: Network) -> Self {
        ChannelStatusJson {
            control_addr: format_address(&status.control, network),
            direction: match status.direction {
                Direction::Inbound => 1,
                Direction::Outbound => 2,
            },
            funds: ChannelFunds::new(
                (&status.channel, &status.from, &status.to),
                [&status.confirmed, &status.pending, &status.queued],
                network,
            ),
            pending_chain_message: cid_option(&status.pending_message),
            voucher_redeemed_amt: amount_text(&status.voucher_redeemed),
            reserved_amt: amount_text(&status.reserved),
            available_amt: amount_text(&status.available),
            next_lane: status.next_lane,
            settling: status.settling,
            settling_at: status.settling_at,
            lanes: status.lanes.iter().map(LaneStatusJson::new).collect(),
            lifecycle: format!("{:?}", status.lifecycle),
            create_error: status.create_error.clone(),
        }
    }
}

/// Vouchers as their shapes.
pub fn vouchers(
    vouchers: &[SignedVoucher],
    network: Network,
) -> Result<Vec<SignedVoucherJson>, JsonError> {
    vouchers.iter().map(|v| v.to_shape(network)).collect()
}

/// Lotus's `PaymentInfo`: what `PaychNewPayment` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PaymentInfo {
    /// The channel paid on.
    pub channel: String,
    /// The create or add-funds message the payment's funds came with; `null` when none was sent.
    pub wait_sentinel: Option<CidJson>,
    /// The vouchers made.
    pub vouchers: Vec<SignedVoucherJson>,
}

/// Lotus's `VoucherCreateResult`: the voucher, or the shortfall that kept it from being
/// made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct VoucherCreateResult {
    /// The voucher, when the channel covers it.
    pub voucher: Option<SignedVoucherJson>,
    /// What the channel lacks, attoFIL.
    pub shortfall: String,
}

/// What `PaychPay` answers: the voucher sent and the payee's answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PaidJson {
    /// The voucher sent.
    pub voucher: SignedVoucherJson,
    /// Its lane.
    pub lane: u64,
    /// The payee's status (`Accepted`, `Covered`, …).
    pub status: String,
    /// What the payee credited, attoFIL.
    pub delta: String,
    /// The lane's cumulative amount the payee holds, attoFIL.
    pub lane_amount: String,
}

/// What `PaychPayInvoice` answers: the payer's receipt of a routed payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RouteReceiptJson {
    /// The invoice's payment hash, hex.
    pub payment_hash: String,
    /// The secret the payee revealed (blake2b-256 of it is the payment hash), hex: the
    /// proof of payment.
    pub secret: String,
    /// The amount the payee asked for, attoFIL.
    pub amount: String,
    /// The hub's fee, attoFIL.
    pub fee: String,
    /// The hub's address.
    pub hub: String,
    /// The payer's channel to the hub.
    pub channel: String,
    /// The lane of the payer's voucher.
    pub lane: u64,
}

/// What `PaychReconcile` answers: the payer's status and the combined voucher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciledJson {
    /// The payer's status by name: `Success`, `NotOurChannel`, `LaneNotOnChain`, …, or
    /// `Unknown(n)` for a code this version does not know.
    #[serde(rename = "Status")]
    pub status: String,
    /// Its code on the wire (0 for success).
    #[serde(rename = "StatusCode")]
    pub status_code: u8,
    /// The combined voucher, when the payer agreed.
    #[serde(rename = "Combined")]
    pub combined: Option<SignedVoucherJson>,
    /// The same voucher in its text form: unpadded base64url CBOR, as `lotus paych
    /// voucher` prints it.
    #[serde(rename = "CombinedText")]
    pub combined_text: Option<String>,
    /// The amount asked for, attoFIL.
    #[serde(rename = "ReqVal")]
    pub req_val: String,
    /// How many vouchers were folded.
    #[serde(rename = "Vouchers")]
    pub vouchers: u64,
    /// The payer's message.
    #[serde(rename = "Message")]
    pub message: Option<String>,
}

/// What `PaychRetrievalPublish` answers: the published blob's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManifestJson {
    /// The root hash, hex.
    pub root: String,
    /// The blob's size in bytes.
    pub size: u64,
    /// The chunk size in bytes.
    pub chunk_size: u64,
    /// How many chunks.
    pub chunks: u64,
    /// What one chunk costs, attoFIL.
    pub price_per_chunk: String,
    /// Who is paid.
    pub payee: String,
}

/// What `PaychRetrieve` answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrievedJson {
    /// The root hash, hex.
    #[serde(rename = "Root")]
    pub root: String,
    /// Bytes received, each chunk checked against the manifest's hash before it was paid
    /// for.
    #[serde(rename = "Bytes")]
    pub bytes: u64,
    /// How many chunks.
    #[serde(rename = "Chunks")]
    pub chunks: u64,
    /// What was paid in all, attoFIL.
    #[serde(rename = "Paid")]
    pub paid: String,
    /// The lane the payments went on (none when nothing was paid).
    #[serde(rename = "Lane")]
    pub lane: Option<u64>,
    /// How long each chunk's payment took, in microseconds: from making the voucher to the
    /// provider's acknowledgement.
    #[serde(rename = "PaymentMicros")]
    pub payment_micros: Vec<u64>,
    /// Microseconds from the call to the first chunk checked against its hash (the
    /// manifest's round trip included); `null` for a blob without chunks.
    #[serde(rename = "FirstByteMicros", default)]
    pub first_byte_micros: Option<u64>,
    /// Microseconds the whole retrieval took, from the call to the last chunk checked.
    #[serde(rename = "ElapsedMicros", default)]
    pub elapsed_micros: u64,
}

/// Lotus's `AddrInfo`: `{"ID": "<peer id>", "Addrs": ["<multiaddr>", …]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddrInfoJson {
    /// The peer id.
    #[serde(rename = "ID")]
    pub id: String,
    /// Its multiaddrs.
    #[serde(rename = "Addrs")]
    pub addrs: Vec<String>,
}

/// A hub of an invoice, as [`InvoiceJson`] writes it (and `PaychInvoice` takes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InvoiceHubJson {
    /// The hub's key address.
    pub address: String,
    /// The hub's multiaddr, `/p2p/<peer id>` included.
    pub multiaddr: String,
}

/// What `PaychInvoice` answers, and what `paych invoice decode` prints: the invoice's text
/// form and its fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct InvoiceJson {
    /// The text form to hand to the payer (`paychinv1…`).
    pub text: String,
    /// The invoice's id, hex.
    pub id: String,
    /// The amount asked, attoFIL.
    pub amount: String,
    /// blake2b-256 of the payee's secret, hex.
    pub payment_hash: String,
    /// The payee's address.
    pub payee: String,
    /// The hubs the payee can be reached through.
    pub hubs: Vec<InvoiceHubJson>,
    /// The expiry, unix seconds.
    pub expiry: u64,
    /// The payee's margin `D_R`, in epochs.
    pub payee_margin: i64,
}

impl InvoiceJson {
    /// The shape of `invoice`, addresses written for `network`.
    pub fn new(invoice: &Invoice, network: Network) -> Result<Self, JsonError> {
        Ok(InvoiceJson {
            text: invoice.to_text().map_err(|e| JsonError::Encode(e.to_string()))?,
            id: hex::encode(invoice.id),
            amount: amount_text(&invoice.amount),
            payment_hash: hex::encode(invoice.payment_hash),
            payee: format_address(&invoice.payee, network),
            hubs: invoice
                .hubs
                .iter()
                .map(|hub| InvoiceHubJson {
                    address: format_address(&hub.address, network),
                    multiaddr: hub.multiaddr.clone(),
                })
                .collect(),
            expiry: invoice.expiry,
            payee_margin: invoice.payee_margin,
        })
    }
}
