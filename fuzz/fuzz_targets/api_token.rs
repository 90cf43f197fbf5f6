//! API tokens (HS256 JSON Web Tokens), as the API reads them from `Authorization` headers.
//!
//! The first byte picks the mode. In the first, the rest is the token text, checked against
//! the node's secret: the fuzzer cannot forge the HMAC, so this exercises the parts read
//! before the signature (the split, base64url, the JOSE header). In the second, the rest is
//! split into a header and claims that are signed with the node's secret, as if the node had
//! issued them: this exercises everything read after the signature (the claims, `Allow`,
//! `exp`, permission names).
//!
//! Checking never panics and refuses with a typed `AuthError`. A token that is accepted
//! grants only known permissions, and a token issued for those permissions grants the same.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use paych_fuzz::hs256;
use paych_node::rpc::auth;

const SECRET: [u8; auth::SECRET_LEN] = [42; auth::SECRET_LEN];

fn check(token: &str) {
    let Ok(permissions) = auth::verify(&SECRET, token) else { return };
    let issued = auth::issue(&SECRET, &permissions);
    assert_eq!(auth::verify(&SECRET, &issued), Ok(permissions), "issued token differs");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode % 2 == 0 {
        if let Ok(token) = std::str::from_utf8(rest) {
            check(token);
        }
    } else {
        // Header and claims, split at the first 0xff byte.
        let split = rest.iter().position(|b| *b == 0xff).unwrap_or(rest.len());
        let (header, claims) = rest.split_at(split);
        let claims = claims.get(1..).unwrap_or_default();
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(hs256(&SECRET, input.as_bytes())));
        check(&token);
    }
});
