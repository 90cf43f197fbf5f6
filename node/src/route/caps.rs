//! The hub's caps on pending routes: what the routes of one payer, and the routes to one
//! payee, may hold pending at once (value and count), and what one outbound channel may
//! hold pending ([`PendingCaps`]). Pending means forwarded and not yet resolved (replaced,
//! redeemed or expired). In memory, rebuilt from the stored routes when the node starts.
//!
//! These caps bound jamming: a payer who opens routes and never lets them resolve locks at
//! most its cap of the hub's outbound funds, for at most one lock's time.

use std::collections::HashMap;

use paych_core::types::{Address, TokenAmount};

use super::config::HubConfig;

/// What is pending for one party or channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Load {
    count: usize,
    value: TokenAmount,
}

impl Load {
    fn add(&mut self, value: &TokenAmount) {
        self.count += 1;
        self.value += value;
    }

    fn remove(&mut self, value: &TokenAmount) {
        self.count = self.count.saturating_sub(1);
        self.value = if &self.value > value { &self.value - value } else { TokenAmount::default() };
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// One pending route, as the caps count it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRoute {
    /// The payer (the `from` of the inbound channel).
    pub payer: Address,
    /// The payee.
    pub payee: Address,
    /// The hub's outbound channel to the payee.
    pub channel: Address,
    /// The amount forwarded.
    pub amount: TokenAmount,
}

/// Why a route was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapRefusal {
    /// A payer's or payee's cap on pending routes.
    #[error("the {who}'s pending routes would exceed its cap of {cap}")]
    CapExceeded {
        /// `payer` or `payee`.
        who: &'static str,
        /// The cap, as text (a count or attoFIL).
        cap: String,
    },
    /// The outbound channel's capacity.
    #[error("the channel to the payee would hold more than {0} attoFIL pending")]
    NoCapacity(String),
}

/// The pending load per payer, per payee and per outbound channel.
#[derive(Debug, Default)]
pub struct PendingCaps {
    payers: HashMap<Address, Load>,
    payees: HashMap<Address, Load>,
    channels: HashMap<Address, Load>,
}

impl PendingCaps {
    /// Admits `route` if every cap of `config` still holds with it, and counts it.
    pub fn admit(&mut self, route: &PendingRoute, config: &HubConfig) -> Result<(), CapRefusal> {
        let payer = self.payers.get(&route.payer).cloned().unwrap_or_default();
        let payee = self.payees.get(&route.payee).cloned().unwrap_or_default();
        let channel = self.channels.get(&route.channel).cloned().unwrap_or_default();
        let over = |load: &Load, count: usize, value: &TokenAmount| {
            load.count + 1 > count || &load.value + &route.amount > *value
        };
        if over(&payer, config.max_pending_count_per_payer, &config.max_pending_value_per_payer) {
            return Err(CapRefusal::CapExceeded {
                who: "payer",
                cap: cap_text(
                    config.max_pending_count_per_payer,
                    &config.max_pending_value_per_payer,
                ),
            });
        }
        if over(&payee, config.max_pending_count_per_payee, &config.max_pending_value_per_payee) {
            return Err(CapRefusal::CapExceeded {
                who: "payee",
                cap: cap_text(
                    config.max_pending_count_per_payee,
                    &config.max_pending_value_per_payee,
                ),
            });
        }
        if &channel.value + &route.amount > config.capacity_per_channel {
            return Err(CapRefusal::NoCapacity(config.capacity_per_channel.atto().to_string()));
        }
        self.count(route);
        Ok(())
    }

    /// Counts `route` whatever the caps (a route found in the store at start).
    pub fn count(&mut self, route: &PendingRoute) {
        self.payers.entry(route.payer).or_default().add(&route.amount);
        self.payees.entry(route.payee).or_default().add(&route.amount);
        self.channels.entry(route.channel).or_default().add(&route.amount);
    }

    /// Stops counting `route`, resolved.
    pub fn release(&mut self, route: &PendingRoute) {
        for (map, key) in [
            (&mut self.payers, route.payer),
            (&mut self.payees, route.payee),
            (&mut self.channels, route.channel),
        ] {
            if let Some(load) = map.get_mut(&key) {
                load.remove(&route.amount);
                if load.is_empty() {
                    map.remove(&key);
                }
            }
        }
    }

    /// Routes pending in all, and their value.
    pub fn total(&self) -> (usize, TokenAmount) {
        self.channels
            .values()
            .fold((0, TokenAmount::default()), |(n, v), load| (n + load.count, v + &load.value))
    }
}

fn cap_text(count: usize, value: &TokenAmount) -> String {
    format!("{count} routes or {} attoFIL", value.atto())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn atto(n: u64) -> TokenAmount {
        TokenAmount::from_atto(n)
    }

    fn route(payer: u64, payee: u64, amount: u64) -> PendingRoute {
        PendingRoute {
            payer: Address::new_id(payer),
            payee: Address::new_id(payee),
            channel: Address::new_id(payee + 1000),
            amount: atto(amount),
        }
    }

    fn config() -> HubConfig {
        HubConfig {
            max_pending_count_per_payer: 2,
            max_pending_value_per_payer: atto(100),
            max_pending_count_per_payee: 3,
            max_pending_value_per_payee: atto(150),
            capacity_per_channel: atto(120),
            ..HubConfig::default()
        }
    }

    #[test]
    fn a_payer_over_its_pending_count_or_value_is_refused_until_a_route_resolves() {
        let mut caps = PendingCaps::default();
        caps.admit(&route(1, 10, 40), &config()).unwrap();
        caps.admit(&route(1, 11, 40), &config()).unwrap();
        let third = caps.admit(&route(1, 12, 1), &config()).unwrap_err();
        assert!(matches!(third, CapRefusal::CapExceeded { who: "payer", .. }), "{third}");
        caps.release(&route(1, 11, 40));
        let too_much = caps.admit(&route(1, 12, 61), &config()).unwrap_err();
        assert!(matches!(too_much, CapRefusal::CapExceeded { who: "payer", .. }));
        caps.admit(&route(1, 12, 60), &config()).unwrap();
        assert_eq!(caps.total(), (2, atto(100)));
    }

    #[test]
    fn routes_to_one_payee_are_capped_whoever_pays() {
        let mut caps = PendingCaps::default();
        for payer in 1..=3 {
            caps.admit(&route(payer, 10, 30), &config()).unwrap();
        }
        let fourth = caps.admit(&route(4, 10, 1), &config()).unwrap_err();
        assert!(matches!(fourth, CapRefusal::CapExceeded { who: "payee", .. }), "{fourth}");
    }

    #[test]
    fn an_outbound_channel_holds_at_most_its_capacity_pending() {
        let mut caps = PendingCaps::default();
        caps.admit(&route(1, 10, 90), &config()).unwrap();
        let over = caps.admit(&route(2, 10, 31), &config()).unwrap_err();
        assert!(matches!(over, CapRefusal::NoCapacity(_)), "{over}");
        caps.release(&route(1, 10, 90));
        assert_eq!(caps.total(), (0, atto(0)));
        caps.admit(&route(2, 10, 31), &config()).unwrap();
    }
}
