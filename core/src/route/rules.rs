//! The deadlines of a route and the checks of its vouchers and secrets (design §9), as pure
//! functions of what the caller read from the chain.
//!
//! Every deadline is the earlier of a voucher's lock and its channel's `settling_at − 1`:
//! nobody can revoke a conditional voucher before its `time_lock_max`, and `Settle` cuts every
//! voucher short. A lock is inclusive (a voucher redeems while `epoch ≤ time_lock_max`).

use fvm_shared::clock::ChainEpoch;
use fvm_shared::econ::TokenAmount;

use super::{RouteParams, RouteRefusal};
use crate::invoice::SECRET_LEN;
use crate::types::{SignedVoucher, SETTLE_DELAY};

/// The payer's lock `T1 = head + D_R + Δ + slack`, where `D_R` is the invoice's payee
/// margin, `Δ` the hub's delta and `slack` extra epochs for the route's round trips.
pub fn offer_lock(
    head: ChainEpoch,
    invoice_margin: ChainEpoch,
    params: &RouteParams,
    slack: ChainEpoch,
) -> ChainEpoch {
    head.saturating_add(invoice_margin.max(0))
        .saturating_add(params.hub_delta())
        .saturating_add(slack.max(0))
}

/// The last epoch a channel's voucher can redeem at: `settling_at − 1` when it settles,
/// otherwise the earliest `settling_at` a `Settle` sent now could set, less `conf` (a
/// settle may already be on its way without being final).
fn channel_deadline(settling_at: ChainEpoch, head: ChainEpoch, conf: u64) -> ChainEpoch {
    if settling_at != 0 {
        return settling_at.saturating_sub(1);
    }
    let conf = ChainEpoch::try_from(conf).unwrap_or(ChainEpoch::MAX);
    head.saturating_add(SETTLE_DELAY).saturating_sub(conf)
}

/// The hub's deadline `D_H = min(T1, settling_at − 1 of P→H, or head + 1440 − conf when P→H
/// is not settling)`: the last epoch the payer's voucher can surely land at.
pub fn hub_deadline(
    t1: ChainEpoch,
    inbound_settling_at: ChainEpoch,
    head: ChainEpoch,
    conf: u64,
) -> ChainEpoch {
    t1.min(channel_deadline(inbound_settling_at, head, conf))
}

/// The payee's lock `T2 = D_H − Δ`.
pub fn forward_lock(d_h: ChainEpoch, params: &RouteParams) -> ChainEpoch {
    d_h.saturating_sub(params.hub_delta())
}

/// The hub's two deadlines for one route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardPlan {
    /// `D_H`: the last epoch the payer's voucher can land at.
    pub hub_deadline: ChainEpoch,
    /// `T2`: the payee's lock.
    pub payee_lock: ChainEpoch,
}

/// The hub's deadlines for a route whose payer locked at `t1` on a channel settling at
/// `inbound_settling_at` (0: not settling), refused with `DeadlineTooClose` unless
/// `T2 ≥ head + payee_margin` (the payee's `D_R`, from the invoice).
pub fn plan_forward(
    t1: ChainEpoch,
    inbound_settling_at: ChainEpoch,
    head: ChainEpoch,
    params: &RouteParams,
    payee_margin: ChainEpoch,
) -> Result<ForwardPlan, RouteRefusal> {
    let hub_deadline = hub_deadline(t1, inbound_settling_at, head, params.conf);
    let payee_lock = forward_lock(hub_deadline, params);
    let needed = head.saturating_add(payee_margin.max(0));
    if payee_lock < needed {
        return Err(RouteRefusal::DeadlineTooClose { deadline: payee_lock, needed });
    }
    Ok(ForwardPlan { hub_deadline, payee_lock })
}

/// Checks a conditional voucher's exact shape: secret hash `hash`, `time_lock_max` `lock`,
/// amount `expected_amount` (the lane's new cumulative amount), and every other condition
/// empty — no `time_lock_min`, no `min_settle_height`, no `extra`, no merges.
pub fn check_conditional_shape(
    voucher: &SignedVoucher,
    hash: &[u8],
    lock: ChainEpoch,
    expected_amount: &TokenAmount,
) -> Result<(), RouteRefusal> {
    let bad = |what: String| Err(RouteRefusal::BadShape(what));
    if voucher.secret_hash.as_slice() != hash {
        return bad("the secret hash is not the payment hash".to_owned());
    }
    if voucher.time_lock_max != lock {
        return bad(format!("time_lock_max {} is not {lock}", voucher.time_lock_max));
    }
    if voucher.time_lock_min != 0 {
        return bad(format!("time_lock_min {} is set", voucher.time_lock_min));
    }
    if voucher.min_settle_height != 0 {
        return bad(format!("min_settle_height {} is set", voucher.min_settle_height));
    }
    if voucher.extra.is_some() {
        return bad("an extra call is set".to_owned());
    }
    if !voucher.merges.is_empty() {
        return bad("it merges lanes".to_owned());
    }
    if voucher.amount != *expected_amount {
        return bad(format!(
            "amount {} attoFIL is not {} attoFIL",
            voucher.amount.atto(),
            expected_amount.atto()
        ));
    }
    Ok(())
}

/// Checks a revealed secret: exactly 32 bytes, whose blake2b-256 is `hash`.
pub fn check_secret(secret: &[u8], hash: &[u8]) -> Result<(), RouteRefusal> {
    if secret.len() != SECRET_LEN {
        return Err(RouteRefusal::BadSecret(format!("{} bytes, not {SECRET_LEN}", secret.len())));
    }
    if crate::invoice::payment_hash(secret).as_slice() != hash {
        return Err(RouteRefusal::BadSecret("it does not hash to the payment hash".to_owned()));
    }
    Ok(())
}

/// The payee's check of its lock: `min(T2, settling_at − 1 of H→R) ≥ head + D_R`; a channel
/// settling at `settling_at` (0: not settling).
pub fn check_payee_lock(
    t2: ChainEpoch,
    settling_at: ChainEpoch,
    head: ChainEpoch,
    d_r: ChainEpoch,
) -> Result<(), RouteRefusal> {
    let deadline = if settling_at != 0 { t2.min(settling_at.saturating_sub(1)) } else { t2 };
    let needed = head.saturating_add(d_r.max(0));
    if deadline < needed {
        return Err(RouteRefusal::DeadlineTooClose { deadline, needed });
    }
    Ok(())
}

/// Refuses a lock further than `max_lock` epochs beyond the head: a long lock ties up the
/// hub's funds for nothing (jamming).
pub fn check_lock_not_too_far(
    t1: ChainEpoch,
    head: ChainEpoch,
    max_lock: u64,
) -> Result<(), RouteRefusal> {
    let limit = head.saturating_add(ChainEpoch::try_from(max_lock).unwrap_or(ChainEpoch::MAX));
    if t1 > limit {
        return Err(RouteRefusal::LockTooFar { lock: t1, limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Address, Merge, ModVerifyParams};

    const P: RouteParams =
        RouteParams { conf: 2, inclusion: 2, hub_downtime: 3, payee_downtime: 3 };

    fn atto(n: u64) -> TokenAmount {
        TokenAmount::from_atto(n)
    }

    fn conditional(hash: &[u8], lock: ChainEpoch, amount: u64) -> SignedVoucher {
        let mut v = SignedVoucher::new(Address::new_id(1000), 0, 1, atto(amount));
        v.secret_hash = hash.to_vec();
        v.time_lock_max = lock;
        v
    }

    #[test]
    fn the_payers_lock_leaves_the_payee_and_hub_margins() {
        // D_R 7 from the invoice, Δ 10, slack 3.
        assert_eq!(offer_lock(100, 7, &P, 3), 120);
        assert_eq!(offer_lock(100, -5, &P, -1), 110);
    }

    #[test]
    fn the_hub_deadline_is_the_earliest_of_lock_and_settlement() {
        // Not settling: a settle sent now cuts at head + 1440, less conf.
        assert_eq!(hub_deadline(120, 0, 100, 2), 120);
        assert_eq!(hub_deadline(5000, 0, 100, 2), 100 + 1440 - 2);
        // Settling at 115: nothing lands at 115, so 114.
        assert_eq!(hub_deadline(120, 115, 100, 2), 114);
        assert_eq!(forward_lock(114, &P), 104);
    }

    #[test]
    fn a_hub_refuses_to_forward_when_the_payee_would_have_too_little_time() {
        // T1 120, head 100: D_H 120, T2 110 ≥ 100 + 7.
        assert_eq!(
            plan_forward(120, 0, 100, &P, 7),
            Ok(ForwardPlan { hub_deadline: 120, payee_lock: 110 })
        );
        // The payer settles its channel: settling_at 115 leaves T2 = 104 < 107.
        assert_eq!(
            plan_forward(120, 115, 100, &P, 7),
            Err(RouteRefusal::DeadlineTooClose { deadline: 104, needed: 107 })
        );
        // A lock too close for the hub's Δ.
        assert!(matches!(
            plan_forward(112, 0, 100, &P, 7),
            Err(RouteRefusal::DeadlineTooClose { .. })
        ));
        // Exactly enough.
        assert!(plan_forward(117, 0, 100, &P, 7).is_ok());
    }

    #[test]
    fn a_conditional_voucher_must_have_exactly_the_expected_shape() {
        let h = crate::invoice::payment_hash(&[7; 32]);
        let good = conditional(&h, 50, 10);
        assert_eq!(check_conditional_shape(&good, &h, 50, &atto(10)), Ok(()));
        let mut cases: Vec<(&str, SignedVoucher)> = Vec::new();
        let mut v = good.clone();
        v.secret_hash = vec![1; 32];
        cases.push(("other hash", v));
        let mut v = good.clone();
        v.secret_hash.clear();
        cases.push(("no hash", v));
        let mut v = good.clone();
        v.time_lock_max = 51;
        cases.push(("other lock", v));
        let mut v = good.clone();
        v.time_lock_min = 1;
        cases.push(("time_lock_min", v));
        let mut v = good.clone();
        v.min_settle_height = 1;
        cases.push(("min_settle_height", v));
        let mut v = good.clone();
        v.extra = Some(ModVerifyParams { actor: Address::new_id(5), method: 2, data: vec![] });
        cases.push(("extra", v));
        let mut v = good.clone();
        v.merges = vec![Merge { lane: 1, nonce: 1 }];
        cases.push(("merges", v));
        let mut v = good.clone();
        v.amount = atto(11);
        cases.push(("amount", v));
        for (shows, v) in cases {
            assert!(
                matches!(
                    check_conditional_shape(&v, &h, 50, &atto(10)),
                    Err(RouteRefusal::BadShape(_))
                ),
                "{shows}"
            );
        }
    }

    #[test]
    fn only_the_32_byte_pre_image_of_the_hash_is_a_secret() {
        let secret = [9u8; 32];
        let h = crate::invoice::payment_hash(&secret);
        assert_eq!(check_secret(&secret, &h), Ok(()));
        assert!(matches!(check_secret(&[8u8; 32], &h), Err(RouteRefusal::BadSecret(_))));
        assert!(matches!(check_secret(&[9u8; 31], &h), Err(RouteRefusal::BadSecret(_))));
        // A 300-byte pre-image whose hash were h would still be refused for its length.
        let long = vec![9u8; 300];
        let long_hash = crate::invoice::payment_hash(&long);
        assert!(matches!(check_secret(&long, &long_hash), Err(RouteRefusal::BadSecret(_))));
    }

    #[test]
    fn the_payee_needs_its_margin_before_its_lock_and_before_settlement() {
        assert_eq!(check_payee_lock(110, 0, 100, 7), Ok(()));
        assert_eq!(check_payee_lock(107, 0, 100, 7), Ok(()));
        assert_eq!(
            check_payee_lock(106, 0, 100, 7),
            Err(RouteRefusal::DeadlineTooClose { deadline: 106, needed: 107 })
        );
        assert_eq!(
            check_payee_lock(110, 107, 100, 7),
            Err(RouteRefusal::DeadlineTooClose { deadline: 106, needed: 107 })
        );
    }

    #[test]
    fn a_lock_far_beyond_what_the_route_needs_is_refused() {
        assert_eq!(check_lock_not_too_far(150, 100, 50), Ok(()));
        assert_eq!(
            check_lock_not_too_far(151, 100, 50),
            Err(RouteRefusal::LockTooFar { lock: 151, limit: 150 })
        );
        assert_eq!(check_lock_not_too_far(ChainEpoch::MAX, 100, u64::MAX), Ok(()));
    }
}
