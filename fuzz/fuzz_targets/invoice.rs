//! An invoice, as a payer reads it: the first byte picks its CBOR (as the route protocol
//! carries it) or its text form (`paychinv1…`, as a user pastes it), the rest is the input.
//!
//! Decoding never panics and refuses with a typed `InvoiceError`; an accepted invoice stays
//! within its bounds, re-encodes to the same value in both forms, and encoding is a fixed
//! point; checking its signature and expiry never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paych_core::invoice::{Invoice, MAX_HUBS, MAX_INVOICE_BYTES, MAX_TEXT_LEN};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, input)) = data.split_first() else { return };
    let decoded = if mode % 2 == 0 {
        Invoice::from_cbor(input)
    } else {
        let Ok(text) = std::str::from_utf8(input) else { return };
        Invoice::from_text(text)
    };
    let Ok(invoice) = decoded else { return };
    assert!(invoice.hubs.len() <= MAX_HUBS, "more hubs than the bound decoded");
    let cbor = invoice.to_cbor().expect("a decoded invoice encodes");
    assert!(cbor.len() <= MAX_INVOICE_BYTES, "a decoded invoice encodes beyond the bound");
    assert_eq!(Invoice::from_cbor(&cbor).expect("its CBOR decodes"), invoice, "CBOR round trip");
    assert_eq!(invoice.to_cbor().expect("encodes"), cbor, "CBOR encoding is not a fixed point");
    let text = invoice.to_text().expect("a decoded invoice prints");
    assert!(text.len() <= MAX_TEXT_LEN, "a decoded invoice prints beyond the bound");
    assert_eq!(Invoice::from_text(&text).expect("its text decodes"), invoice, "text round trip");
    let _ = invoice.verify(u64::from(mode) << 24);
    invoice.signing_bytes().expect("a decoded invoice has signing bytes");
});
