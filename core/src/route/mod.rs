//! Routed payments through a hub (design §9): the pure rules every party applies.
//!
//! This module owns the timing parameters ([`RouteParams`]: `conf`, `S`, `G_H`, `G_R` and the
//! margins `D_R` and `Δ` made of them), the deadlines of a route ([`rules`]: the payer's lock
//! `T1`, the hub's deadline `D_H`, the payee's lock `T2`), the checks a conditional voucher and
//! a secret must pass, the hub's fee and signed policy ([`policy`]), and [`RouteRefusal`]: one
//! variant per refusal of §9, each with the status byte the route protocol sends. It never
//! does I/O and never touches the store, the chain or the network: the manager and the node
//! call it with what they read.

pub mod policy;
pub mod rules;

use fvm_shared::clock::ChainEpoch;
use fvm_shared::econ::TokenAmount;

use crate::types::SETTLE_DELAY;

pub use policy::{FeePolicy, HubPolicy, RouteError, SignedHubPolicy, MAX_POLICY_BYTES};
pub use rules::{
    check_conditional_shape, check_lock_not_too_far, check_payee_lock, check_secret, forward_lock,
    hub_deadline, offer_lock, plan_forward, ForwardPlan,
};

/// The timing parameters of routed payments, in epochs (design §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteParams {
    /// `conf`: the depth after which a party treats a message as final.
    pub conf: u64,
    /// `S`: the epochs a message may wait for inclusion under congestion.
    pub inclusion: u64,
    /// `G_H`: the downtime a hub tolerates.
    pub hub_downtime: u64,
    /// `G_R`: the downtime a payee tolerates.
    pub payee_downtime: u64,
}

/// A hub's downtime `G_H` by default on a public network: 120 epochs (one hour).
pub const HUB_DOWNTIME_EPOCHS: u64 = 120;

impl Default for RouteParams {
    /// Small numbers for the devnet, whose epochs are produced on demand: `conf` 2, `S` 2,
    /// `G_H` 3, `G_R` 3 (so `D_R` = 7 and `Δ` = 10).
    fn default() -> Self {
        RouteParams { conf: 2, inclusion: 2, hub_downtime: 3, payee_downtime: 3 }
    }
}

impl RouteParams {
    /// The parameters on a network whose confidence is `confidence` epochs, with the
    /// invoice's default downtime and inclusion delay and [`HUB_DOWNTIME_EPOCHS`].
    pub fn for_confidence(confidence: u64) -> Self {
        RouteParams {
            conf: confidence,
            inclusion: crate::invoice::INCLUSION_DELAY_EPOCHS.unsigned_abs(),
            hub_downtime: HUB_DOWNTIME_EPOCHS,
            payee_downtime: crate::invoice::PAYEE_DOWNTIME_EPOCHS.unsigned_abs(),
        }
    }

    /// `D_R = conf + G_R + S`: the epochs a payee needs between receiving a conditional
    /// voucher and its lock.
    pub fn payee_margin(&self) -> ChainEpoch {
        epochs(self.conf.saturating_add(self.payee_downtime).saturating_add(self.inclusion))
    }

    /// `Δ = 2·conf + G_H + S + 1`: the epochs between the payee's lock `T2` and the hub's
    /// deadline `D_H` — time for the hub to see a redemption of the payee's voucher become
    /// final, come back from its downtime and land the payer's voucher.
    pub fn hub_delta(&self) -> ChainEpoch {
        epochs(
            self.conf
                .saturating_mul(2)
                .saturating_add(self.hub_downtime)
                .saturating_add(self.inclusion)
                .saturating_add(1),
        )
    }

    /// `S + conf`: how long before its deadline a holder submits a conditional voucher with
    /// its secret, so that the message surely lands (and is final) before it.
    pub fn submit_margin(&self) -> ChainEpoch {
        epochs(self.inclusion.saturating_add(self.conf))
    }

    /// `conf` as an epoch count.
    pub fn conf_epochs(&self) -> ChainEpoch {
        epochs(self.conf)
    }

    /// Checks that a route fits in one settle window: `D_R + Δ + conf ≤ 1440`.
    pub fn validate(&self) -> Result<(), RouteParamsError> {
        let total =
            self.payee_margin().saturating_add(self.hub_delta()).saturating_add(self.conf_epochs());
        if total > SETTLE_DELAY {
            return Err(RouteParamsError::TooLong { total, limit: SETTLE_DELAY });
        }
        Ok(())
    }
}

/// An epoch count from a `u64` setting, saturating.
fn epochs(n: u64) -> ChainEpoch {
    ChainEpoch::try_from(n).unwrap_or(ChainEpoch::MAX)
}

/// Why route parameters cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteParamsError {
    /// `D_R + Δ + conf` exceeds the settle delay.
    #[error("D_R + Δ + conf = {total} epochs exceeds one settle window of {limit}")]
    TooLong {
        /// `D_R + Δ + conf`.
        total: ChainEpoch,
        /// The settle delay.
        limit: ChainEpoch,
    },
}

/// Why a party refuses a step of a route: one variant per refusal of design §9, each with
/// the status the route protocol answers ([`RouteRefusal::status`]). A refusal binds
/// nobody: nothing was accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteRefusal {
    /// The conditional voucher's shape is not exactly the one expected.
    #[error("conditional voucher shape: {0}")]
    BadShape(String),
    /// The secret is not 32 bytes, or does not hash to the payment hash.
    #[error("bad secret: {0}")]
    BadSecret(String),
    /// The payment hash was seen before.
    #[error("payment hash already seen")]
    HashSeen,
    /// The lane already has a pending conditional voucher.
    #[error("lane {0} has a pending conditional voucher")]
    LanePending(u64),
    /// The channel is settling (or settled).
    #[error("channel is settling at epoch {0}")]
    ChannelSettling(ChainEpoch),
    /// The channel's balance does not cover every pending conditional voucher on it as if
    /// every secret were revealed.
    #[error("channel over-committed: {committed} attoFIL promised, balance {balance} attoFIL")]
    OverCommitted {
        /// What the lanes would pay with every pending voucher revealed.
        committed: TokenAmount,
        /// The channel's balance.
        balance: TokenAmount,
    },
    /// A deadline leaves too little time.
    #[error("deadline {deadline} too close: at least epoch {needed} needed")]
    DeadlineTooClose {
        /// The deadline offered or computed.
        deadline: ChainEpoch,
        /// The earliest deadline that would do.
        needed: ChainEpoch,
    },
    /// The lock lies further ahead than the party takes.
    #[error("lock {lock} lies beyond epoch {limit}")]
    LockTooFar {
        /// The lock.
        lock: ChainEpoch,
        /// The furthest lock taken.
        limit: ChainEpoch,
    },
    /// No channel to the payee with free capacity for the amount.
    #[error("no capacity: {0}")]
    NoCapacity(String),
    /// A cap on pending value or count per payer or payee would be exceeded.
    #[error("cap exceeded: {0}")]
    CapExceeded(String),
    /// The voucher pays less than the amount plus the hub's fee.
    #[error("fee too low: {offered} attoFIL offered, {needed} attoFIL needed")]
    FeeTooLow {
        /// The fee offered.
        offered: TokenAmount,
        /// The fee needed.
        needed: TokenAmount,
    },
    /// The invoice has expired.
    #[error("invoice expired")]
    InvoiceExpired,
    /// The invoice is malformed or its signature is wrong.
    #[error("invoice invalid: {0}")]
    InvoiceInvalid(String),
    /// No route is known under the payment hash.
    #[error("unknown route")]
    UnknownRoute,
    /// The replacement is not the exact unconditional replacement of the pending voucher.
    #[error("bad replacement: {0}")]
    BadReplacement(String),
    /// The payee is unknown or unreachable.
    #[error("no route to the payee: {0}")]
    NoRoute(String),
    /// The next party refused.
    #[error("refused downstream: {0}")]
    Refused(String),
    /// The peer routes no payments.
    #[error("not a hub")]
    NotAHub,
    /// Too much is in flight now.
    #[error("busy")]
    Busy,
    /// Something failed inside the party.
    #[error("internal: {0}")]
    Internal(String),
    /// The channel is not known.
    #[error("unknown channel: {0}")]
    UnknownChannel(String),
}

impl RouteRefusal {
    /// The route protocol's status byte for this refusal (0 is success and has no refusal).
    pub fn status(&self) -> u8 {
        match self {
            RouteRefusal::BadShape(_) => 1,
            RouteRefusal::BadSecret(_) => 2,
            RouteRefusal::HashSeen => 3,
            RouteRefusal::LanePending(_) => 4,
            RouteRefusal::ChannelSettling(_) => 5,
            RouteRefusal::OverCommitted { .. } => 6,
            RouteRefusal::DeadlineTooClose { .. } => 7,
            RouteRefusal::LockTooFar { .. } => 8,
            RouteRefusal::NoCapacity(_) => 9,
            RouteRefusal::CapExceeded(_) => 10,
            RouteRefusal::FeeTooLow { .. } => 11,
            RouteRefusal::InvoiceExpired => 12,
            RouteRefusal::InvoiceInvalid(_) => 13,
            RouteRefusal::UnknownRoute => 14,
            RouteRefusal::BadReplacement(_) => 15,
            RouteRefusal::NoRoute(_) => 16,
            RouteRefusal::Refused(_) => 17,
            RouteRefusal::NotAHub => 18,
            RouteRefusal::Busy => 19,
            RouteRefusal::Internal(_) => 20,
            RouteRefusal::UnknownChannel(_) => 21,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins_follow_the_design_formulas() {
        let p = RouteParams { conf: 5, inclusion: 7, hub_downtime: 11, payee_downtime: 13 };
        assert_eq!(p.payee_margin(), 5 + 13 + 7);
        assert_eq!(p.hub_delta(), 2 * 5 + 11 + 7 + 1);
        assert_eq!(p.submit_margin(), 12);
        assert_eq!(RouteParams::default().payee_margin(), 7);
        assert_eq!(RouteParams::default().hub_delta(), 10);
    }

    #[test]
    fn parameters_must_fit_one_settle_window() {
        assert!(RouteParams::default().validate().is_ok());
        assert!(RouteParams::for_confidence(5).validate().is_ok());
        // 4·conf + 281 ≤ 1440 with the public defaults: conf 289 fits, 290 does not.
        assert!(RouteParams::for_confidence(289).validate().is_ok());
        assert!(matches!(
            RouteParams::for_confidence(290).validate(),
            Err(RouteParamsError::TooLong { total: 1441, limit: 1440 })
        ));
        let huge = RouteParams { conf: u64::MAX, ..RouteParams::default() };
        assert!(huge.validate().is_err());
    }

    #[test]
    fn every_refusal_has_its_own_status_from_one_to_twenty_one() {
        let zero = TokenAmount::default;
        let all = [
            RouteRefusal::BadShape(String::new()),
            RouteRefusal::BadSecret(String::new()),
            RouteRefusal::HashSeen,
            RouteRefusal::LanePending(0),
            RouteRefusal::ChannelSettling(0),
            RouteRefusal::OverCommitted { committed: zero(), balance: zero() },
            RouteRefusal::DeadlineTooClose { deadline: 0, needed: 0 },
            RouteRefusal::LockTooFar { lock: 0, limit: 0 },
            RouteRefusal::NoCapacity(String::new()),
            RouteRefusal::CapExceeded(String::new()),
            RouteRefusal::FeeTooLow { offered: zero(), needed: zero() },
            RouteRefusal::InvoiceExpired,
            RouteRefusal::InvoiceInvalid(String::new()),
            RouteRefusal::UnknownRoute,
            RouteRefusal::BadReplacement(String::new()),
            RouteRefusal::NoRoute(String::new()),
            RouteRefusal::Refused(String::new()),
            RouteRefusal::NotAHub,
            RouteRefusal::Busy,
            RouteRefusal::Internal(String::new()),
            RouteRefusal::UnknownChannel(String::new()),
        ];
        let statuses: Vec<u8> = all.iter().map(RouteRefusal::status).collect();
        assert_eq!(statuses, (1..=21).collect::<Vec<u8>>());
    }
}
