//! The `paych` binary as a user runs it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

const VOUCHER: &str = "i0MA6QcAAED2AAFJAA3gtrOnZAAAAIBYQgE2VQw-i10-Wh8MhWzNgp0p72vHLI787C7Ne7C0uEbvyRvw1FLqSSOyowC3r5hlzQLOQHuvoZosfb7DuKKl_oCFAQ";

fn paych(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_paych")).args(args).output().unwrap()
}

#[test]
fn voucher_decode_prints_the_fields_of_a_lotus_voucher() {
    let out = paych(&["voucher", "decode", VOUCHER]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Channel          t01001\n"), "{text}");
    assert!(text.contains("Lane             0\n"), "{text}");
    assert!(text.contains("Nonce            1\n"), "{text}");
    assert!(text.contains("Amount           1 FIL (1000000000000000000 attoFIL)\n"), "{text}");
    assert!(text.contains("Signature        secp256k1 36550c3e"), "{text}");
}

#[test]
fn voucher_decode_explains_a_bad_voucher_and_fails() {
    let out = paych(&["voucher", "decode", "not-a-voucher"]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("cannot decode the voucher"), "{err}");
    assert!(err.contains("CBOR") || err.contains("base64"), "{err}");
}
