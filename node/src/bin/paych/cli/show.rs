//! What the client commands print, in the forms `lotus paych` prints them (Lotus
//! `cli/paych.go`): a channel's status rows (`paychStatus`, `formatNameValues`), voucher
//! lines (`outputVoucher`, sorted as `sortVouchers` sorts them) and FIL amounts
//! (`types.FIL`: `0.5 FIL`). It only formats what the daemon answered; it calls nothing.

use anyhow::anyhow;
use paych_core::lotus_json::api::{ChannelAvailableFunds, ChannelStatusJson};
use paych_core::lotus_json::{self as json, CidJson, SignedVoucherJson};
use paych_core::types::{format_fil, SignedVoucher};

/// Lotus's `paychStatus`: `Channel does not exist`, `Creating channel`, `Adding Funds to
/// channel` or `Channel exists`, then the rows Lotus prints for that case, in its order and
/// with its labels.
pub fn write_funds(out: &mut String, f: &ChannelAvailableFunds) -> anyhow::Result<()> {
    let (from, to) = (("From", f.funds.from.clone()), ("To", f.funds.to.clone()));
    let sentinel = f.pending_wait_sentinel.as_ref().map(|c| c.cid.clone());
    let Some(channel) = &f.funds.channel else {
        match sentinel {
            Some(sentinel) => {
                out.push_str("Creating channel\n");
                let pending = ("Pending Amt", fil(&f.funds.pending_amt)?);
                write_rows(out, &[from, to, pending, ("Wait Sentinel", sentinel)]);
            }
            None => {
                out.push_str("Channel does not exist\n");
                write_rows(out, &[from, to]);
            }
        }
        return Ok(());
    };
    out.push_str(if sentinel.is_none() { "Channel exists\n" } else { "Adding Funds to channel\n" });
    let mut rows = vec![
        ("Channel", channel.clone()),
        from,
        to,
        ("Confirmed Amt", fil(&f.funds.confirmed_amt)?),
        ("Available Amt", fil(&f.non_reserved_amt)?),
        ("Voucher Redeemed Amt", fil(&f.voucher_reedeemed_amt)?),
        ("Pending Amt", fil(&f.funds.pending_amt)?),
        ("Pending Available Amt", fil(&f.pending_available_amt)?),
        ("Queued Amt", fil(&f.funds.queued_amt)?),
    ];
    if let Some(sentinel) = sentinel {
        rows.push(("Add Funds Wait Sentinel", sentinel));
    }
    write_rows(out, &rows);
    Ok(())
}

/// paych's own rows of `paych status --verbose`, after Lotus's: the channel's direction,
/// life, reservations, lanes and settlement (`PaychStatus`).
pub fn write_details(out: &mut String, s: &ChannelStatusJson) -> anyhow::Result<()> {
    let direction = match s.direction {
        1 => "inbound",
        2 => "outbound",
        _ => "unknown",
    };
    let settling =
        if s.settling { format!("yes, at epoch {}", s.settling_at) } else { "no".to_owned() };
    let mut rows = vec![
        ("Direction", direction.to_owned()),
        ("Lifecycle", s.lifecycle.clone()),
        ("Reserved Amt", fil(&s.reserved_amt)?),
        ("Next Lane", s.next_lane.to_string()),
        ("Settling", settling),
    ];
    if let Some(message) = &s.pending_chain_message {
        rows.push(("Pending Message", message.cid.clone()));
    }
    if let Some(error) = &s.create_error {
        rows.push(("Create Error", error.clone()));
    }
    out.push_str("Details\n");
    write_rows(out, &rows);
    if !s.lanes.is_empty() {
        out.push_str("  Lanes:\n");
    }
    for lane in &s.lanes {
        let closed = if lane.closed { ", closed" } else { "" };
        out.push_str(&format!(
            "    Lane {}, Nonce {}: {} (redeemed on chain {}{closed})\n",
            lane.lane,
            lane.nonce,
            fil(&lane.amount)?,
            fil(&lane.redeemed_on_chain)?,
        ));
    }
    Ok(())
}

/// `  Name: value` lines, values aligned (Lotus's `formatNameValues`).
pub fn write_rows(out: &mut String, rows: &[(&str, String)]) {
    let width = rows.iter().map(|(name, _)| name.len()).max().unwrap_or(0);
    for (name, value) in rows {
        let pad = " ".repeat(width - name.len());
        out.push_str(&format!("  {name}: {pad}{value}\n"));
    }
}

/// Lotus's voucher lines (`outputVoucher`): `Lane L, Nonce N: AMOUNT FIL`, then
/// `; VOUCHER` with `export`, sorted by lane and then nonce (`sortVouchers`).
pub fn write_vouchers(
    out: &mut String,
    vouchers: Vec<SignedVoucherJson>,
    export: bool,
) -> anyhow::Result<()> {
    let mut vouchers = vouchers.into_iter().map(voucher).collect::<anyhow::Result<Vec<_>>>()?;
    vouchers.sort_by_key(|v| (v.lane, v.nonce));
    for voucher in vouchers {
        out.push_str(&format!(
            "Lane {}, Nonce {}: {}",
            voucher.lane,
            voucher.nonce,
            format_fil(&voucher.amount)
        ));
        if export {
            out.push_str(&format!("; {}", voucher.to_base64url()?));
        }
        out.push('\n');
    }
    Ok(())
}

/// A voucher from its Lotus JSON shape.
pub fn voucher(shape: SignedVoucherJson) -> anyhow::Result<SignedVoucher> {
    <SignedVoucher as json::LotusJson>::from_shape(shape)
        .map_err(|e| anyhow!("the daemon answered a voucher that cannot be read: {e}"))
}

/// A voucher's text form from its Lotus JSON shape.
pub fn voucher_text(shape: SignedVoucherJson) -> anyhow::Result<String> {
    Ok(voucher(shape)?.to_base64url()?)
}

/// A CID from its Lotus JSON shape.
pub fn cid(shape: &CidJson) -> anyhow::Result<cid::Cid> {
    shape.parse("cid").map_err(|e| anyhow!("the daemon answered a CID that cannot be read: {e}"))
}

/// An attoFIL decimal string of the API, in FIL as `types.FIL` prints it (`0.5 FIL`).
pub fn fil(text: &str) -> anyhow::Result<String> {
    Ok(format_fil(&amount(text)?))
}

/// An attoFIL decimal string of the API, checked (for texts that print attoFIL, as Lotus's
/// `shortfall: N` does).
pub fn atto(text: &str) -> anyhow::Result<String> {
    Ok(amount(text)?.atto().to_string())
}

/// An attoFIL decimal string of the API as an amount.
fn amount(text: &str) -> anyhow::Result<paych_core::types::TokenAmount> {
    json::parse_amount_field("amount", text)
        .map_err(|e| anyhow!("the daemon answered an amount that cannot be read: {e}"))
}
