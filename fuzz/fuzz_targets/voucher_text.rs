//! A signed voucher from its text form (unpadded base64url of its CBOR), as a user pastes it
//! into the CLI or the API.
//!
//! Decoding never panics; an accepted voucher prints as text that decodes to itself, and
//! printing is a fixed point.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paych_core::types::SignedVoucher;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(voucher) = SignedVoucher::from_base64url(text) else { return };
    let printed = voucher.to_base64url().expect("a decoded voucher prints");
    let again = SignedVoucher::from_base64url(&printed).expect("a printed voucher decodes");
    assert_eq!(again, voucher, "voucher changed in a text round trip");
    assert_eq!(again.to_base64url().expect("prints"), printed, "printing is not canonical");
});
