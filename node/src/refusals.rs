//! Refusals: what the node turns away — a connection over a limit, a request over a
//! per-peer or total in-flight cap, a voucher, reconcile, retrieval or route request answered
//! with an error status, a request that could not be read — named by a fixed set of reasons.
//!
//! Every refusal is counted in `/metrics` (`paych_refusals_total{reason}`, see
//! [`crate::metrics::Metrics::refused`]) and logged at `info` through [`RefusalLog`]: at most
//! one line per reason per [`LOG_INTERVAL`], the next line saying how many were left out,
//! so that a peer cannot flood the log by getting itself refused. This module only names
//! and paces refusals; the network loop decides what to refuse.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use paych_protocol::LimitKind;

/// At most one log line per reason in this long.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Why something was refused; each reason is a label value of `paych_refusals_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// An inbound connection over the cap per remote address.
    ConnectionsPerIp,
    /// A connection over the cap per peer.
    ConnectionsPerPeer,
    /// An inbound connection over the cap on established inbound connections.
    ConnectionsInbound,
    /// An outbound connection over the cap on established outbound connections.
    ConnectionsOutbound,
    /// A connection over the cap on established connections in total.
    ConnectionsTotal,
    /// An inbound connection over the cap on connections still being upgraded.
    PendingInbound,
    /// A dial over the cap on outbound connections still being dialled or upgraded.
    PendingOutbound,
    /// A voucher request over the in-flight cap (per peer or in total): `RateLimited`.
    VoucherRateLimited,
    /// A reconcile request over the in-flight cap (per peer or in total): `RateLimited`.
    ReconcileRateLimited,
    /// A retrieval request the provider answered `RateLimited`.
    RetrievalRateLimited,
    /// A voucher answered with an error status.
    VoucherRefused,
    /// A reconcile request answered with an error status.
    ReconcileRefused,
    /// A retrieval request answered with an error status.
    RetrievalRefused,
    /// A route request over the in-flight cap (per peer or in total): `Busy`.
    RouteBusy,
    /// A route request answered with an error status.
    RouteRefused,
    /// An inbound request the codec refused (malformed, oversized, too slow).
    RequestUnreadable,
}

impl Refusal {
    /// Every reason.
    pub const ALL: [Refusal; 16] = [
        Refusal::ConnectionsPerIp,
        Refusal::ConnectionsPerPeer,
        Refusal::ConnectionsInbound,
        Refusal::ConnectionsOutbound,
        Refusal::ConnectionsTotal,
        Refusal::PendingInbound,
        Refusal::PendingOutbound,
        Refusal::VoucherRateLimited,
        Refusal::ReconcileRateLimited,
        Refusal::RetrievalRateLimited,
        Refusal::VoucherRefused,
        Refusal::ReconcileRefused,
        Refusal::RetrievalRefused,
        Refusal::RouteBusy,
        Refusal::RouteRefused,
        Refusal::RequestUnreadable,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::ConnectionsPerIp => "connections_per_ip",
            Refusal::ConnectionsPerPeer => "connections_per_peer",
            Refusal::ConnectionsInbound => "connections_inbound",
            Refusal::ConnectionsOutbound => "connections_outbound",
            Refusal::ConnectionsTotal => "connections_total",
            Refusal::PendingInbound => "pending_inbound",
            Refusal::PendingOutbound => "pending_outbound",
            Refusal::VoucherRateLimited => "voucher_rate_limited",
            Refusal::ReconcileRateLimited => "reconcile_rate_limited",
            Refusal::RetrievalRateLimited => "retrieval_rate_limited",
            Refusal::VoucherRefused => "voucher_refused",
            Refusal::ReconcileRefused => "reconcile_refused",
            Refusal::RetrievalRefused => "retrieval_refused",
            Refusal::RouteBusy => "route_busy",
            Refusal::RouteRefused => "route_refused",
            Refusal::RequestUnreadable => "request_unreadable",
        }
    }

    /// The refusal of a connection denied by `limit`.
    pub fn of_limit(limit: LimitKind) -> Refusal {
        match limit {
            LimitKind::InboundPerIp => Refusal::ConnectionsPerIp,
            LimitKind::EstablishedPerPeer => Refusal::ConnectionsPerPeer,
            LimitKind::EstablishedIncoming => Refusal::ConnectionsInbound,
            LimitKind::EstablishedOutgoing => Refusal::ConnectionsOutbound,
            LimitKind::EstablishedTotal => Refusal::ConnectionsTotal,
            LimitKind::PendingIncoming => Refusal::PendingInbound,
            LimitKind::PendingOutgoing => Refusal::PendingOutbound,
        }
    }
}

/// Paces the log lines of refusals: per reason, the first is logged, then none until
/// the interval has passed since the last line; the next line carries the number left out.
#[derive(Debug)]
pub struct RefusalLog {
    interval: Duration,
    /// Per reason (a fixed set, so this map stays small): when its last line was written,
    /// and how many refusals were not logged since.
    windows: Mutex<HashMap<Refusal, (Instant, u64)>>,
}

impl Default for RefusalLog {
    fn default() -> Self {
        RefusalLog::new(LOG_INTERVAL)
    }
}

impl RefusalLog {
    /// At most one line per reason per `interval`.
    pub fn new(interval: Duration) -> Self {
        RefusalLog { interval, windows: Mutex::new(HashMap::new()) }
    }

    /// Records a refusal at `now`: `Some(left_out)` when it is to be logged, with the number
    /// of refusals of this reason not logged since the last line; `None` when it is left out.
    pub fn admit(&self, refusal: Refusal, now: Instant) -> Option<u64> {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        match windows.get_mut(&refusal) {
            Some((last, left_out)) if now.saturating_duration_since(*last) < self.interval => {
                *left_out = left_out.saturating_add(1);
                None
            }
            Some((last, left_out)) => {
                *last = now;
                Some(std::mem::take(left_out))
            }
            None => {
                windows.insert(refusal, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_reason_per_interval_and_the_next_counts_those_left_out() {
        let log = RefusalLog::new(Duration::from_secs(10));
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        assert_eq!(log.admit(Refusal::ConnectionsPerIp, at(0)), Some(0));
        for s in 1..10 {
            assert_eq!(log.admit(Refusal::ConnectionsPerIp, at(s)), None);
        }
        // Another reason has its own pace.
        assert_eq!(log.admit(Refusal::VoucherRefused, at(5)), Some(0));
        assert_eq!(log.admit(Refusal::ConnectionsPerIp, at(10)), Some(9));
        assert_eq!(log.admit(Refusal::ConnectionsPerIp, at(11)), None);
        assert_eq!(log.admit(Refusal::ConnectionsPerIp, at(25)), Some(1));
        assert_eq!(log.admit(Refusal::ConnectionsPerIp, at(40)), Some(0));
    }

    #[test]
    fn reasons_have_distinct_labels() {
        let labels: std::collections::HashSet<_> = Refusal::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), Refusal::ALL.len());
    }
}
