//! A hub's fee and its signed policy: what a hub charges and takes, announced in a record
//! signed by the hub's key so that a payer can hold the hub to it.
//!
//! CBOR (tuple): `FeePolicy = [base, ppm]`, `HubPolicy = [hub, fee, max_amount, max_lock,
//! expires_unix]`, `SignedHubPolicy = [policy, signature]`; the hub signs the policy's CBOR
//! with the key of its f1 address (as a payer signs a voucher: secp256k1 over blake2b-256).
//! A signed policy is at most [`MAX_POLICY_BYTES`]; decoding never panics.

use fvm_ipld_encoding::tuple::*;
use fvm_shared::address::Address;
use fvm_shared::crypto::signature::Signature;
use fvm_shared::econ::TokenAmount;

use crate::crypto::{self, CryptoError, SecretKey};
use crate::types::decode::{self, tuple_from_ipld, DecodeError};
use crate::wallet::{Wallet, WalletError};

/// The longest encoded signed policy, in bytes.
pub const MAX_POLICY_BYTES: usize = 512;
/// Parts per million: the unit of [`FeePolicy::ppm`].
pub const PPM: u64 = 1_000_000;

/// What a hub charges to route an amount: `base + ceil(amount · ppm / 1 000 000)`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize_tuple)]
pub struct FeePolicy {
    /// The fee every route pays.
    pub base: TokenAmount,
    /// The fee per routed amount, in parts per million.
    pub ppm: u64,
}

impl FeePolicy {
    /// The fee for routing `amount` (rounded up: the hub never charges less than its rate).
    pub fn fee(&self, amount: &TokenAmount) -> TokenAmount {
        let scaled = amount.atto() * self.ppm;
        let proportional = (scaled + (PPM - 1)) / PPM;
        &self.base + TokenAmount::from_atto(proportional)
    }
}

/// What a hub announces: its fee, the largest amount it routes, the furthest lock it takes
/// and until when the announcement holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize_tuple)]
pub struct HubPolicy {
    /// The hub's f1 address, whose key signs the policy.
    pub hub: Address,
    /// Its fee.
    pub fee: FeePolicy,
    /// The largest amount it routes in one payment.
    pub max_amount: TokenAmount,
    /// The furthest a payer's lock may lie beyond the head, in epochs.
    pub max_lock: u64,
    /// The policy holds until this moment, in unix seconds.
    pub expires_unix: u64,
}

/// A hub's policy with the hub's signature over its CBOR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize_tuple)]
pub struct SignedHubPolicy {
    /// The policy.
    pub policy: HubPolicy,
    /// The hub's signature over [`HubPolicy::signing_bytes`].
    pub signature: Signature,
}

/// Why a hub policy could not be made, read or trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    /// The bytes are not a signed policy's layout, or too long.
    #[error("hub policy: {0}")]
    Decode(#[from] DecodeError),
    /// The policy could not be encoded.
    #[error("hub policy: {0}")]
    Encode(String),
    /// The signature is not the hub's over the policy.
    #[error("hub policy signature: {0}")]
    BadSignature(CryptoError),
    /// The wallet could not sign for the hub.
    #[error("hub key: {0}")]
    Wallet(String),
    /// The policy's time has passed.
    #[error("hub policy expired at {expires} (unix seconds); it is now {now}")]
    Expired {
        /// Its expiry.
        expires: u64,
        /// The time it was checked at.
        now: u64,
    },
}

impl From<WalletError> for RouteError {
    fn from(e: WalletError) -> Self {
        RouteError::Wallet(e.to_string())
    }
}

impl HubPolicy {
    /// The bytes the hub signs: the policy's CBOR.
    pub fn signing_bytes(&self) -> Result<Vec<u8>, RouteError> {
        fvm_ipld_encoding::to_vec(self).map_err(|e| RouteError::Encode(e.to_string()))
    }
}

impl SignedHubPolicy {
    /// Signs `policy` with the hub's key held by `wallet`.
    pub fn sign(policy: HubPolicy, wallet: &dyn Wallet) -> Result<Self, RouteError> {
        let signature = wallet.sign(&policy.hub, &policy.signing_bytes()?)?;
        Ok(SignedHubPolicy { policy, signature })
    }

    /// Signs `policy` with `key`, whose f1 address must be the policy's hub.
    pub fn sign_with_key(policy: HubPolicy, key: &SecretKey) -> Result<Self, RouteError> {
        let signature = crypto::sign(key, &policy.signing_bytes()?);
        Ok(SignedHubPolicy { policy, signature })
    }

    /// The policy, once its signature is checked to be the hub's.
    pub fn verify(&self) -> Result<HubPolicy, RouteError> {
        crypto::verify(&self.signature, &self.policy.hub, &self.policy.signing_bytes()?)
            .map_err(RouteError::BadSignature)?;
        Ok(self.policy.clone())
    }

    /// [`Self::verify`], and the policy must not have expired at `now` (unix seconds).
    pub fn verify_at(&self, now: u64) -> Result<HubPolicy, RouteError> {
        let policy = self.verify()?;
        if now > policy.expires_unix {
            return Err(RouteError::Expired { expires: policy.expires_unix, now });
        }
        Ok(policy)
    }

    /// The signed policy's CBOR.
    pub fn to_cbor(&self) -> Result<Vec<u8>, RouteError> {
        fvm_ipld_encoding::to_vec(self).map_err(|e| RouteError::Encode(e.to_string()))
    }

    /// Decodes a signed policy from at most [`MAX_POLICY_BYTES`] of CBOR; the signature is
    /// not checked (see [`Self::verify`]).
    pub fn from_cbor(bytes: &[u8]) -> Result<Self, RouteError> {
        if bytes.len() > MAX_POLICY_BYTES {
            return Err(DecodeError::TooLong {
                what: "hub policy",
                max: MAX_POLICY_BYTES,
                found: bytes.len(),
            }
            .into());
        }
        Ok(decode::decode(bytes)?)
    }
}

tuple_from_ipld!(FeePolicy as "fee policy" {
    base: decode::amount_field,
    ppm: decode::u64_field,
});

tuple_from_ipld!(HubPolicy as "hub policy" {
    hub: decode::address_field,
    fee: |item, _| <FeePolicy as decode::FromIpld>::from_ipld(item),
    max_amount: decode::amount_field,
    max_lock: decode::u64_field,
    expires_unix: decode::u64_field,
});

tuple_from_ipld!(SignedHubPolicy as "signed hub policy" {
    policy: |item, _| <HubPolicy as decode::FromIpld>::from_ipld(item),
    signature: |item, _| decode::signature_field(item),
});

#[cfg(test)]
mod tests {
    use super::*;

    fn atto(n: u64) -> TokenAmount {
        TokenAmount::from_atto(n)
    }

    fn key() -> (SecretKey, Address) {
        let key = crypto::secret_key(&[3u8; 32]).unwrap();
        let addr = crypto::secp_address(&crypto::public_key(&key));
        (key, addr)
    }

    fn policy(hub: Address) -> HubPolicy {
        HubPolicy {
            hub,
            fee: FeePolicy { base: atto(100), ppm: 2_500 },
            max_amount: atto(1_000_000_000),
            max_lock: 600,
            expires_unix: 2_000_000_000,
        }
    }

    #[test]
    fn the_fee_is_base_plus_parts_per_million_rounded_up() {
        let fee = FeePolicy { base: atto(100), ppm: 2_500 };
        assert_eq!(fee.fee(&atto(0)), atto(100));
        assert_eq!(fee.fee(&atto(1)), atto(101));
        assert_eq!(fee.fee(&atto(400)), atto(101));
        assert_eq!(fee.fee(&atto(401)), atto(102));
        assert_eq!(fee.fee(&atto(1_000_000)), atto(2_600));
        assert_eq!(FeePolicy::default().fee(&atto(1_000)), atto(0));
    }

    #[test]
    fn a_signed_policy_round_trips_and_verifies_as_the_hubs() {
        let (key, hub) = key();
        let signed = SignedHubPolicy::sign_with_key(policy(hub), &key).unwrap();
        let bytes = signed.to_cbor().unwrap();
        assert!(bytes.len() <= MAX_POLICY_BYTES);
        let decoded = SignedHubPolicy::from_cbor(&bytes).unwrap();
        assert_eq!(decoded, signed);
        assert_eq!(decoded.verify().unwrap(), policy(hub));
        assert_eq!(decoded.verify_at(2_000_000_000).unwrap(), policy(hub));
        assert!(matches!(decoded.verify_at(2_000_000_001), Err(RouteError::Expired { .. })));
    }

    #[test]
    fn a_policy_changed_after_signing_or_signed_by_another_key_is_refused() {
        let (key, hub) = key();
        let mut signed = SignedHubPolicy::sign_with_key(policy(hub), &key).unwrap();
        signed.policy.fee.ppm = 0;
        assert!(matches!(signed.verify(), Err(RouteError::BadSignature(_))));
        let other = crypto::secret_key(&[4u8; 32]).unwrap();
        let forged = SignedHubPolicy::sign_with_key(policy(hub), &other).unwrap();
        assert!(matches!(forged.verify(), Err(RouteError::BadSignature(_))));
    }

    #[test]
    fn hostile_bytes_are_refused_with_a_typed_error() {
        let (key, hub) = key();
        let bytes = SignedHubPolicy::sign_with_key(policy(hub), &key).unwrap().to_cbor().unwrap();
        for cut in 0..bytes.len() {
            assert!(SignedHubPolicy::from_cbor(&bytes[..cut]).is_err());
        }
        assert!(matches!(
            SignedHubPolicy::from_cbor(&vec![0u8; MAX_POLICY_BYTES + 1]),
            Err(RouteError::Decode(DecodeError::TooLong { .. }))
        ));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(SignedHubPolicy::from_cbor(&trailing).is_err());
        assert!(SignedHubPolicy::from_cbor(&[0x82, 0x80, 0x40]).is_err());
    }
}
