//! The `[hub]` section of `config.toml`: whether this node routes payments as a hub, its fee,
//! its caps on what one route and what the routes of one payer or payee may hold pending,
//! the capacity it commits per outbound channel, and its auto-collateral.
//!
//! This module owns the section's fields, their defaults, their text and their checks
//! ([`HubConfig::validate`]); it never reads files, the chain or the network.

use paych_core::route::FeePolicy;
use paych_core::types::TokenAmount;

use super::collateral::CollateralPolicy;

/// The most a fee's parts per million may be: the whole amount again.
pub const MAX_FEE_PPM: u64 = 1_000_000;
/// The most pending routes one payer or one payee may be allowed at once.
pub const MAX_PENDING_COUNT: usize = 4096;
/// The longest auto-collateral window, in epochs (one settle window).
pub const MAX_COLLATERAL_WINDOW: u64 = 1440;

/// One attoFIL amount in FIL, for the defaults.
const FIL: u128 = 1_000_000_000_000_000_000;

/// Why a `[hub]` section was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubConfigError {
    /// `fee_ppm` above [`MAX_FEE_PPM`].
    #[error("hub.fee_ppm {0} is above {MAX_FEE_PPM}")]
    FeePpm(u64),
    /// A pending count of zero or above [`MAX_PENDING_COUNT`].
    #[error("hub.{key} {value} must be from 1 to {MAX_PENDING_COUNT}")]
    PendingCount {
        /// The key.
        key: &'static str,
        /// Its value.
        value: usize,
    },
    /// An enabled hub that would route nothing: `max_amount`, a pending value cap or the
    /// capacity per channel is zero.
    #[error("hub.{0} must be positive on an enabled hub")]
    Zero(&'static str),
    /// A collateral window of zero or above [`MAX_COLLATERAL_WINDOW`].
    #[error("hub.collateral_window {0} must be from 1 to {MAX_COLLATERAL_WINDOW} epochs (0: off)")]
    CollateralWindow(u64),
    /// `collateral_min_top_up` above `collateral_max_top_up`, or the latter zero.
    #[error("hub.collateral_min_top_up must be at most hub.collateral_max_top_up, which must be positive")]
    CollateralBounds,
}

/// The `[hub]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubConfig {
    /// `enabled` (0 or 1): answer route requests as a hub. Off by default: a node that is
    /// not a hub answers every offer `NotAHub`.
    pub enabled: bool,
    /// `fee_base` (attoFIL): the fee every routed payment pays, whatever its amount.
    pub fee_base: TokenAmount,
    /// `fee_ppm`: the fee's part of the amount, in parts per million (rounded up), at most
    /// [`MAX_FEE_PPM`].
    pub fee_ppm: u64,
    /// `max_amount` (attoFIL): the largest amount one routed payment may forward.
    pub max_amount: TokenAmount,
    /// `max_pending_value_per_payer` (attoFIL): what one payer's routes may hold pending.
    pub max_pending_value_per_payer: TokenAmount,
    /// `max_pending_count_per_payer`: how many routes one payer may hold pending.
    pub max_pending_count_per_payer: usize,
    /// `max_pending_value_per_payee` (attoFIL): what routes to one payee may hold pending.
    pub max_pending_value_per_payee: TokenAmount,
    /// `max_pending_count_per_payee`: how many routes to one payee may be pending.
    pub max_pending_count_per_payee: usize,
    /// `capacity_per_channel` (attoFIL): the most conditional value the hub holds pending
    /// on one outbound channel (besides what its funds allow).
    pub capacity_per_channel: TokenAmount,
    /// `collateral_window`, `collateral_min_top_up`, `collateral_max_top_up`: auto-collateral
    /// of outbound channels sized on completed flow; off while the window is 0.
    pub collateral: Option<CollateralPolicy>,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            enabled: false,
            fee_base: TokenAmount::default(),
            fee_ppm: 1000,
            max_amount: TokenAmount::from_atto(FIL),
            max_pending_value_per_payer: TokenAmount::from_atto(10 * FIL),
            max_pending_count_per_payer: 64,
            max_pending_value_per_payee: TokenAmount::from_atto(10 * FIL),
            max_pending_count_per_payee: 64,
            capacity_per_channel: TokenAmount::from_atto(100 * FIL),
            collateral: None,
        }
    }
}

/// Why one value of the section was refused: what it must be.
pub(crate) type HubKeyError = String;

impl HubConfig {
    /// Checks the section as a whole (each value was checked for its type when read).
    pub fn validate(&self) -> Result<(), HubConfigError> {
        if self.fee_ppm > MAX_FEE_PPM {
            return Err(HubConfigError::FeePpm(self.fee_ppm));
        }
        for (key, value) in [
            ("max_pending_count_per_payer", self.max_pending_count_per_payer),
            ("max_pending_count_per_payee", self.max_pending_count_per_payee),
        ] {
            if !(1..=MAX_PENDING_COUNT).contains(&value) {
                return Err(HubConfigError::PendingCount { key, value });
            }
        }
        if self.enabled {
            for (key, value) in [
                ("max_amount", &self.max_amount),
                ("max_pending_value_per_payer", &self.max_pending_value_per_payer),
                ("max_pending_value_per_payee", &self.max_pending_value_per_payee),
                ("capacity_per_channel", &self.capacity_per_channel),
            ] {
                if !value.is_positive() {
                    return Err(HubConfigError::Zero(key));
                }
            }
        }
        if let Some(policy) = &self.collateral {
            if !(1..=MAX_COLLATERAL_WINDOW).contains(&policy.window) {
                return Err(HubConfigError::CollateralWindow(policy.window));
            }
            if !policy.max_top_up.is_positive() || policy.min_top_up > policy.max_top_up {
                return Err(HubConfigError::CollateralBounds);
            }
        }
        Ok(())
    }

    /// The fee policy the hub announces: `fee_base` plus `fee_ppm` parts per million of
    /// the amount, rounded up.
    pub fn fee_policy(&self) -> FeePolicy {
        FeePolicy { base: self.fee_base.clone(), ppm: self.fee_ppm }
    }

    /// Sets `key` (its name inside `[hub]`) to `value`; `None` for a key the section does
    /// not have.
    pub(crate) fn set(&mut self, key: &str, value: &str) -> Option<Result<(), HubKeyError>> {
        let result = match key {
            "enabled" => flag(value).map(|v| self.enabled = v),
            "fee_base" => atto(value).map(|v| self.fee_base = v),
            "fee_ppm" => number(value).map(|v| self.fee_ppm = v),
            "max_amount" => atto(value).map(|v| self.max_amount = v),
            "max_pending_value_per_payer" => {
                atto(value).map(|v| self.max_pending_value_per_payer = v)
            }
            "max_pending_count_per_payer" => {
                number(value).map(|v| self.max_pending_count_per_payer = v)
            }
            "max_pending_value_per_payee" => {
                atto(value).map(|v| self.max_pending_value_per_payee = v)
            }
            "max_pending_count_per_payee" => {
                number(value).map(|v| self.max_pending_count_per_payee = v)
            }
            "capacity_per_channel" => atto(value).map(|v| self.capacity_per_channel = v),
            "collateral_window" => number(value).map(|v: u64| {
                if v == 0 {
                    self.collateral = None;
                } else {
                    self.collateral_mut().window = v;
                }
            }),
            "collateral_min_top_up" => atto(value).map(|v| self.collateral_mut().min_top_up = v),
            "collateral_max_top_up" => atto(value).map(|v| self.collateral_mut().max_top_up = v),
            _ => return None,
        };
        Some(result)
    }

    /// The collateral policy, made with the defaults if the section had none yet.
    fn collateral_mut(&mut self) -> &mut CollateralPolicy {
        self.collateral.get_or_insert_with(CollateralPolicy::default)
    }

    /// The section's text, `[hub]` header included.
    pub fn to_text(&self) -> String {
        let collateral = self.collateral.as_ref().map_or_else(
            || "collateral_window = 0\n".to_owned(),
            |p| {
                format!(
                    "collateral_window = {}\ncollateral_min_top_up = \"{}\"\n\
                     collateral_max_top_up = \"{}\"\n",
                    p.window,
                    p.min_top_up.atto(),
                    p.max_top_up.atto()
                )
            },
        );
        format!(
            "\n# Hub routing (docs/hub.md): route payments between payers and payees (1) or\n\
             # not (0); the fee per payment (attoFIL) plus parts per million of its amount;\n\
             # the largest payment; what the routes of one payer and of one payee may hold\n\
             # pending (attoFIL, and how many); the most conditional value pending on one\n\
             # outbound channel; auto-collateral of outbound channels: over the last\n\
             # collateral_window epochs of completed flow (0: off), top-ups between the\n\
             # min and the max (attoFIL).\n\
             [hub]\n\
             enabled = {}\n\
             fee_base = \"{}\"\n\
             fee_ppm = {}\n\
             max_amount = \"{}\"\n\
             max_pending_value_per_payer = \"{}\"\n\
             max_pending_count_per_payer = {}\n\
             max_pending_value_per_payee = \"{}\"\n\
             max_pending_count_per_payee = {}\n\
             capacity_per_channel = \"{}\"\n{collateral}",
            u8::from(self.enabled),
            self.fee_base.atto(),
            self.fee_ppm,
            self.max_amount.atto(),
            self.max_pending_value_per_payer.atto(),
            self.max_pending_count_per_payer,
            self.max_pending_value_per_payee.atto(),
            self.max_pending_count_per_payee,
            self.capacity_per_channel.atto(),
        )
    }
}

fn flag(value: &str) -> Result<bool, HubKeyError> {
    match value {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err("is 0 or 1".into()),
    }
}

fn number<T: std::str::FromStr>(value: &str) -> Result<T, HubKeyError> {
    value.parse().map_err(|_| "is not a whole number in range".into())
}

fn atto(value: &str) -> Result<TokenAmount, HubKeyError> {
    value.parse::<u128>().map(TokenAmount::from_atto).map_err(|_| "is not an attoFIL amount".into())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_hub_is_off_by_default_and_its_defaults_are_valid() {
        let config = HubConfig::default();
        assert!(!config.enabled);
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(HubConfig { enabled: true, ..config }.validate(), Ok(()));
    }

    #[test]
    fn the_announced_fee_is_the_base_plus_the_parts_per_million_rounded_up() {
        let config = HubConfig {
            fee_base: TokenAmount::from_atto(7u64),
            fee_ppm: 1000,
            ..HubConfig::default()
        }
        .fee_policy();
        assert_eq!(
            config.fee(&TokenAmount::from_atto(1_000_000u64)),
            TokenAmount::from_atto(1007u64)
        );
        assert_eq!(
            config.fee(&TokenAmount::from_atto(1_000_001u64)),
            TokenAmount::from_atto(1008u64)
        );
        assert_eq!(config.fee(&TokenAmount::from_atto(1u64)), TokenAmount::from_atto(8u64));
        assert_eq!(config.fee(&TokenAmount::default()), TokenAmount::from_atto(7u64));
    }

    #[test]
    fn a_hub_section_that_could_not_work_is_refused_with_its_key() {
        let enabled = HubConfig { enabled: true, ..HubConfig::default() };
        let cases = [
            (HubConfig { fee_ppm: MAX_FEE_PPM + 1, ..enabled.clone() }, "fee_ppm"),
            (HubConfig { max_pending_count_per_payer: 0, ..enabled.clone() }, "count_per_payer"),
            (
                HubConfig { max_pending_count_per_payee: MAX_PENDING_COUNT + 1, ..enabled.clone() },
                "count_per_payee",
            ),
            (HubConfig { max_amount: TokenAmount::default(), ..enabled.clone() }, "max_amount"),
            (
                HubConfig { capacity_per_channel: TokenAmount::default(), ..enabled.clone() },
                "capacity_per_channel",
            ),
            (
                HubConfig {
                    collateral: Some(CollateralPolicy {
                        window: MAX_COLLATERAL_WINDOW + 1,
                        ..CollateralPolicy::default()
                    }),
                    ..enabled.clone()
                },
                "collateral_window",
            ),
            (
                HubConfig {
                    collateral: Some(CollateralPolicy {
                        min_top_up: TokenAmount::from_atto(10u64),
                        max_top_up: TokenAmount::from_atto(9u64),
                        ..CollateralPolicy::default()
                    }),
                    ..enabled.clone()
                },
                "collateral_min_top_up",
            ),
        ];
        for (config, key) in cases {
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(key), "{key}: {error}");
        }
        // A hub that is off may leave its caps at zero.
        let off = HubConfig { max_amount: TokenAmount::default(), ..HubConfig::default() };
        assert_eq!(off.validate(), Ok(()));
    }
}
