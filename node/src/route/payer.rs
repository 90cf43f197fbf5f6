//! The payer's side of a routed payment: what it checks of an invoice before it offers
//! anything, and which hub it pays through.
//!
//! An invoice is paid only if its payee's signature verifies, it has not expired, and one of
//! its hubs is one this node has an open outbound channel to ([`choose_hub`]); the hub's
//! fee must be within the caller's bound ([`check_fee`]).

use paych_core::invoice::{Hub, Invoice, InvoiceError};
use paych_core::types::{Address, TokenAmount};

/// Why an invoice was not paid (before or during the route).
#[derive(Debug, thiserror::Error)]
pub enum PayInvoiceError {
    /// The text is not a valid invoice, its signature is not the payee's, or it expired.
    #[error("invoice: {0}")]
    Invoice(#[from] InvoiceError),
    /// The invoice names no hub this node has an open channel to.
    #[error("none of the invoice's hubs ({0}) is one this node has an open channel to")]
    NoHub(String),
    /// The hub's fee is above the caller's bound.
    #[error("the hub's fee of {} attoFIL is above the bound of {} attoFIL", .fee.atto(), .max.atto())]
    FeeTooHigh {
        /// The fee the hub's policy asks.
        fee: TokenAmount,
        /// The caller's bound.
        max: TokenAmount,
    },
}

/// A hub this node can pay through: the invoice's entry and this node's channel to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChosenHub {
    /// The invoice's entry for the hub.
    pub hub: Hub,
    /// This node's open outbound channel to the hub.
    pub channel: Address,
}

/// Checks the invoice at `now` (unix seconds): bounds, the payee's signature, expiry.
pub fn check_invoice(invoice: &Invoice, now: u64) -> Result<(), PayInvoiceError> {
    Ok(invoice.verify(now)?)
}

/// The first of the invoice's hubs (in the invoice's order) that one of `channels`, this
/// node's open outbound channels as `(payee, channel)`, goes to.
pub fn choose_hub(
    invoice: &Invoice,
    channels: &[(Address, Address)],
) -> Result<ChosenHub, PayInvoiceError> {
    invoice
        .hubs
        .iter()
        .find_map(|hub| {
            channels
                .iter()
                .find(|(to, _)| *to == hub.address)
                .map(|(_, channel)| ChosenHub { hub: hub.clone(), channel: *channel })
        })
        .ok_or_else(|| {
            let named: Vec<String> = invoice.hubs.iter().map(|h| h.address.to_string()).collect();
            PayInvoiceError::NoHub(if named.is_empty() { "none".into() } else { named.join(", ") })
        })
}

/// The fee is within `max` (no bound when `None`).
pub fn check_fee(fee: &TokenAmount, max: Option<&TokenAmount>) -> Result<(), PayInvoiceError> {
    match max {
        Some(max) if fee > max => {
            Err(PayInvoiceError::FeeTooHigh { fee: fee.clone(), max: max.clone() })
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use paych_core::crypto;

    fn hub(id: u64) -> Hub {
        Hub {
            address: Address::new_id(id),
            multiaddr:
                "/ip4/127.0.0.1/tcp/1/p2p/12D3KooWR3xpchtdRaf8WMXv8dVjaKWqZQ5kS53rcFpHcwrSXqdm"
                    .into(),
        }
    }

    fn invoice(hubs: Vec<Hub>, expiry: u64) -> Invoice {
        let key = crypto::generate_secret_key().unwrap();
        let mut invoice = Invoice {
            id: [1; 16],
            amount: TokenAmount::from_atto(100u64),
            payment_hash: [2; 32],
            payee: crypto::secp_address(&crypto::public_key(&key)),
            hubs,
            expiry,
            payee_margin: 7,
            signature: None,
        };
        invoice.sign(&key).unwrap();
        invoice
    }

    #[test]
    fn a_payer_refuses_an_expired_or_forged_invoice() {
        let good = invoice(vec![hub(10)], 1000);
        assert!(check_invoice(&good, 1000).is_ok());
        assert!(matches!(
            check_invoice(&good, 1001),
            Err(PayInvoiceError::Invoice(InvoiceError::Expired { .. }))
        ));
        let forged = Invoice { amount: TokenAmount::from_atto(1u64), ..good };
        assert!(matches!(
            check_invoice(&forged, 0),
            Err(PayInvoiceError::Invoice(InvoiceError::BadSignature(_)))
        ));
    }

    #[test]
    fn a_payer_pays_through_the_first_listed_hub_it_has_a_channel_to() {
        let invoice = invoice(vec![hub(10), hub(11)], 1000);
        let channels = [
            (Address::new_id(11), Address::new_id(2011)),
            (Address::new_id(10), Address::new_id(2010)),
        ];
        let chosen = choose_hub(&invoice, &channels).unwrap();
        assert_eq!(
            (chosen.hub.address, chosen.channel),
            (Address::new_id(10), Address::new_id(2010))
        );
        assert!(matches!(
            choose_hub(&invoice, &[(Address::new_id(12), Address::new_id(2012))]),
            Err(PayInvoiceError::NoHub(_))
        ));
    }

    #[test]
    fn a_fee_above_the_callers_bound_is_refused() {
        let fee = TokenAmount::from_atto(5u64);
        assert!(check_fee(&fee, None).is_ok());
        assert!(check_fee(&fee, Some(&TokenAmount::from_atto(5u64))).is_ok());
        assert!(matches!(
            check_fee(&fee, Some(&TokenAmount::from_atto(4u64))),
            Err(PayInvoiceError::FeeTooHigh { .. })
        ));
    }
}
