//! The raw limits paych's figures are reported against, measured in the same run: bare
//! secp256k1 signing and recovery over a voucher's signing bytes.

use std::time::{Duration, Instant};

use paych_core::crypto::{self, SecretKey};
use paych_core::types::{Address, SignedVoucher, TokenAmount};

/// Why a rate could not be measured.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// The voucher's signing bytes could not be made.
    #[error("cannot encode the probe voucher: {0}")]
    Encode(String),
    /// A signature made here did not recover.
    #[error("cannot recover the probe signature: {0}")]
    Recover(String),
}

/// Bare sign and recover rates (per second, one thread) over a voucher's signing bytes
/// (BLAKE2b-256 included), `rounds` of each.
pub fn crypto_rates(key: &SecretKey, rounds: usize) -> Result<(f64, f64), LimitError> {
    let rounds = rounds.max(1);
    let (sign, recover) = crypto_times(key, rounds)?;
    let rate = |time: Duration| rounds as f64 / time.as_secs_f64().max(1e-9);
    Ok((rate(sign), rate(recover)))
}

/// How long `rounds` bare signatures over a voucher's signing bytes take on this thread,
/// and `rounds` recoveries of the signer from one of them (at least one of each).
pub fn crypto_times(key: &SecretKey, rounds: usize) -> Result<(Duration, Duration), LimitError> {
    let rounds = rounds.max(1);
    let voucher = SignedVoucher::new(Address::new_id(1001), 0, 1, TokenAmount::from_atto(1000u64));
    let bytes = voucher.signing_bytes().map_err(|e| LimitError::Encode(e.to_string()))?;
    let start = Instant::now();
    let mut signature = crypto::sign(key, &bytes);
    for _ in 1..rounds {
        signature = crypto::sign(key, &bytes);
    }
    let sign = start.elapsed();
    let start = Instant::now();
    for _ in 0..rounds {
        crypto::recover(&signature, &bytes).map_err(|e| LimitError::Recover(e.to_string()))?;
    }
    Ok((sign, start.elapsed()))
}

/// The most payments per second one core could make if a payment cost only its signature
/// and its recovery: `1 / (1/sign + 1/recover)`.
pub fn crypto_ceiling(sign_per_sec: f64, recover_per_sec: f64) -> f64 {
    if sign_per_sec <= 0.0 || recover_per_sec <= 0.0 {
        return 0.0;
    }
    1.0 / (1.0 / sign_per_sec + 1.0 / recover_per_sec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_positive_and_the_ceiling_is_below_both() {
        let key = crypto::generate_secret_key().unwrap();
        let (sign, recover) = crypto_rates(&key, 20).unwrap();
        assert!(sign > 0.0 && recover > 0.0);
        let ceiling = crypto_ceiling(sign, recover);
        assert!(ceiling > 0.0 && ceiling < sign && ceiling < recover);
        assert_eq!(crypto_ceiling(0.0, 1.0), 0.0);
    }
}
