//! A signed voucher from its CBOR, as it arrives from a payer, a Lotus node or a file.
//!
//! Decoding never panics; an accepted voucher re-encodes canonically to itself, and its
//! signing bytes (the same array with a null signature) can always be computed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paych_core::types::SignedVoucher;
use paych_fuzz::check_round_trip;

fuzz_target!(|data: &[u8]| {
    let Some(voucher) =
        check_round_trip("voucher", data, SignedVoucher::from_cbor, SignedVoucher::to_cbor)
    else {
        return;
    };
    let signing = voucher.signing_bytes().expect("a decoded voucher has signing bytes");
    let unsigned = SignedVoucher { signature: None, ..voucher };
    assert_eq!(
        unsigned.to_cbor().expect("encodes"),
        signing,
        "signing bytes are the null-signature form"
    );
});
