//! Lotus-compatible API tokens: JSON Web Tokens signed with HMAC-SHA256 (HS256) over a
//! node's 32-byte secret, whose claims `{"Allow":["read","write","sign","admin"]}` name the
//! permissions their holder has. Tokens carry no expiry, as Lotus's do.
//!
//! This module only issues and checks tokens; it never stores the secret.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The length of a node's token secret, in bytes.
pub const SECRET_LEN: usize = 32;
/// The longest token accepted, in bytes.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// The most permissions a token may name.
const MAX_PERMISSIONS: usize = 16;
/// The JOSE header of every token issued: `{"alg":"HS256","typ":"JWT"}`.
const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// What a caller may do, from least to most. Each permission includes the ones below it
/// when a method is checked against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// Read channels, funds, vouchers and balances.
    Read,
    /// Store vouchers and keys (no signing, no messages).
    Write,
    /// Sign vouchers and send chain messages.
    Sign,
    /// Export and import keys.
    Admin,
}

impl Permission {
    /// Every permission, from least to most.
    pub const ALL: [Permission; 4] =
        [Permission::Read, Permission::Write, Permission::Sign, Permission::Admin];

    /// Its name in a token's claims: `read`, `write`, `sign`, `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Read => "read",
            Permission::Write => "write",
            Permission::Sign => "sign",
            Permission::Admin => "admin",
        }
    }

    /// The permission named `name`, if any.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }

    /// The permissions a token for this level carries, as Lotus issues them: this one and
    /// every one below it.
    pub fn up_to(self) -> Vec<Permission> {
        Self::ALL.into_iter().filter(|p| *p <= self).collect()
    }
}

impl std::fmt::Display for Permission {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Longer than [`MAX_TOKEN_BYTES`].
    #[error("token longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    /// Not three dot-separated parts of base64url.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// Signed with another algorithm than HS256.
    #[error("unsupported token algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The signature does not match the node's secret.
    #[error("invalid token signature")]
    BadSignature,
    /// The token's `exp` claim is in the past.
    #[error("token expired")]
    Expired,
    /// The claims name a permission that does not exist.
    #[error("unknown permission {0:?}")]
    UnknownPermission(String),
}

#[derive(Serialize, Deserialize)]
struct Claims {
    #[serde(rename = "Allow")]
    allow: Vec<String>,
    /// Tokens issued here carry no expiry; one that does is honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<u64>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

/// A fresh random secret of [`SECRET_LEN`] bytes.
pub fn new_secret() -> Result<Vec<u8>, getrandom::Error> {
    let mut secret = vec![0u8; SECRET_LEN];
    getrandom::getrandom(&mut secret)?;
    Ok(secret)
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    // HMAC takes a key of any length; this never fails.
    match <Hmac<Sha256> as KeyInit>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

/// A token granting `permissions`, signed with `secret`.
pub fn issue(secret: &[u8], permissions: &[Permission]) -> String {
    let claims =
        Claims { allow: permissions.iter().map(|p| p.as_str().to_owned()).collect(), exp: None };
    // A struct holding a list of strings always serializes.
    let claims = serde_json::to_vec(&claims).unwrap_or_default();
    let signing_input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(HEADER), URL_SAFE_NO_PAD.encode(claims));
    let mut mac = mac(secret);
    mac.update(signing_input.as_bytes());
    let signature = mac.finalize().into_bytes();
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The permissions `token` grants, after checking that `secret` signed it with HS256
/// (compared in constant time).
pub fn verify(secret: &[u8], token: &str) -> Result<Vec<Permission>, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("a token has three parts"));
    };
    let decode = |part: &str, what: &'static str| {
        URL_SAFE_NO_PAD.decode(part).map_err(|_| AuthError::Malformed(what))
    };
    let header: Header = serde_json::from_slice(&decode(header, "header is not base64url")?)
        .map_err(|_| AuthError::Malformed("header is not a JOSE header"))?;
    if header.alg != "HS256" {
        // At most 32 bytes of it, cut at a character boundary.
        let alg: String = header
            .alg
            .chars()
            .scan(0, |len, c| {
                *len += c.len_utf8();
                (*len <= 32).then_some(c)
            })
            .collect();
        return Err(AuthError::UnsupportedAlgorithm(alg));
    }
    let signature = decode(signature, "signature is not base64url")?;
    let signing_input_len = token.len() - signature_part_len(token);
    let mut mac = mac(secret);
    mac.update(token.as_bytes().get(..signing_input_len).unwrap_or_default());
    mac.verify_slice(&signature).map_err(|_| AuthError::BadSignature)?;
    let claims: Claims = serde_json::from_slice(&decode(claims, "claims are not base64url")?)
        .map_err(|_| AuthError::Malformed("claims lack an Allow list"))?;
    if let Some(exp) = claims.exp {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(u64::MAX);
        if exp <= now {
            return Err(AuthError::Expired);
        }
    }
    if claims.allow.len() > MAX_PERMISSIONS {
        return Err(AuthError::Malformed("too many permissions"));
    }
    claims
        .allow
        .iter()
        .map(|name| {
            Permission::parse(name).ok_or_else(|| {
                AuthError::UnknownPermission(name.chars().take(32).collect::<String>())
            })
        })
        .collect()
}

/// The length of the signature part of a token, with its leading dot.
fn signature_part_len(token: &str) -> usize {
    token.rfind('.').map(|dot| token.len() - dot).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const SECRET: [u8; 32] = [7; 32];

    #[test]
    fn issued_token_verifies_with_its_permissions() {
        let token = issue(&SECRET, &Permission::Sign.up_to());
        assert_eq!(
            verify(&SECRET, &token).unwrap(),
            vec![Permission::Read, Permission::Write, Permission::Sign]
        );
        assert!(token.starts_with("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."));
    }

    #[test]
    fn token_signed_with_another_secret_is_refused() {
        let token = issue(&[8; 32], &[Permission::Admin]);
        assert_eq!(verify(&SECRET, &token), Err(AuthError::BadSignature));
    }

    #[test]
    fn token_with_altered_claims_is_refused() {
        let token = issue(&SECRET, &[Permission::Read]);
        let parts: Vec<&str> = token.split('.').collect();
        let claims = URL_SAFE_NO_PAD.encode(r#"{"Allow":["admin"]}"#);
        let forged = format!("{}.{claims}.{}", parts[0], parts[2]);
        assert_eq!(verify(&SECRET, &forged), Err(AuthError::BadSignature));
    }

    #[test]
    fn token_with_another_algorithm_is_refused() {
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(r#"{"Allow":["admin"]}"#);
        assert!(matches!(
            verify(&SECRET, &format!("{header}.{claims}.")),
            Err(AuthError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn garbage_and_oversized_tokens_are_refused() {
        for token in ["", "abc", "a.b", "a.b.c.d", "!!.!!.!!", "e30.e30.e30"] {
            assert!(verify(&SECRET, token).is_err(), "{token}");
        }
        assert_eq!(verify(&SECRET, &"a".repeat(MAX_TOKEN_BYTES + 1)), Err(AuthError::TooLong));
    }

    fn signed(claims: &str) -> String {
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(HEADER), URL_SAFE_NO_PAD.encode(claims));
        let mut m = mac(&SECRET);
        m.update(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(m.finalize().into_bytes()))
    }

    #[test]
    fn unknown_permission_is_refused() {
        let token = signed(r#"{"Allow":["root"]}"#);
        assert_eq!(verify(&SECRET, &token), Err(AuthError::UnknownPermission("root".into())));
    }

    #[test]
    fn expired_token_is_refused_and_a_future_expiry_is_honoured() {
        let token = signed(r#"{"Allow":["read"],"exp":1000}"#);
        assert_eq!(verify(&SECRET, &token), Err(AuthError::Expired));
        let token = signed(r#"{"Allow":["read"],"exp":99999999999}"#);
        assert_eq!(verify(&SECRET, &token), Ok(vec![Permission::Read]));
    }

    #[test]
    fn a_long_unsupported_algorithm_with_multibyte_characters_is_refused_not_a_panic() {
        let header = URL_SAFE_NO_PAD.encode(format!("{{\"alg\":\"{}\"}}", "é".repeat(40)));
        let token = format!("{header}.e30.c2ln");
        match verify(&[7u8; 32], &token) {
            Err(AuthError::UnsupportedAlgorithm(alg)) => assert!(alg.len() <= 32),
            other => panic!("{other:?}"),
        }
    }
}
