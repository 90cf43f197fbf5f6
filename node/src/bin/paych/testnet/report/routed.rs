//! The report of a `--hub` run: what went through the hub ([`HubFigures`]) and the
//! invariants of routed payments, checked against the chain's end state (every channel
//! settled and collected, so each party's balance change is final).
//!
//! The receipts are what the clients' `PaychPayInvoice` answered. A payment whose call
//! failed (a daemon killed under it) was paid again with a fresh invoice; the first one
//! may still have been paid on chain with its secret (the payee redeeming the hub's
//! conditional voucher, the hub then the payer's). Every chunk costs the same, so each such
//! payment moves exactly one chunk's price to its payee, one fee to the hub, and both from
//! its payer: the invariants count them and require the counts to agree — nobody paid for a
//! payment its payee was not paid, and the hub kept exactly its fees.

use paych_core::types::TokenAmount;
use serde::Serialize;

use super::{
    chain_invariants, completion_invariants, percentile, sum, Ending, Invariant, Ledger,
    RoundOutcome, Run,
};

/// What went through the hub (the `hub` object of the report).
#[derive(Debug, Clone, Serialize)]
pub struct HubFigures {
    /// The hub's name and address.
    pub hub: String,
    /// Channels opened: one per client to the hub and one from the hub per provider.
    pub channels_opened: usize,
    /// Channels the same clients and providers would have opened without a hub (C × P).
    pub channels_direct: usize,
    /// Payments routed through the hub with a receipt.
    pub routed_payments: usize,
    /// What they paid the providers, attoFIL.
    pub routed_amount_atto: String,
    /// The hub's fees on them, attoFIL.
    pub fees_atto: String,
    /// Routed payments per second over the rounds.
    pub routed_payments_per_sec: f64,
    /// Median latency of one routed payment (`PaychPayInvoice` called until its receipt), µs.
    pub routed_latency_p50_us: u64,
    /// 99th percentile latency of one routed payment, µs.
    pub routed_latency_p99_us: u64,
    /// Payments that failed and were paid again with a fresh invoice.
    pub failed_attempts: usize,
    /// Seconds every route took to resolve after the rounds (a failed payment's by its
    /// secret or its lock).
    pub resolve_secs: f64,
}

impl HubFigures {
    /// The figures of the run, the hub being party `hub`.
    pub fn new(
        run: &Run,
        ledger: &Ledger,
        hub: usize,
        payments_per_sec: f64,
        sorted_latencies: &[u64],
    ) -> Self {
        let (name, address) = run.parties.get(hub).cloned().unwrap_or_default();
        let receipts = Receipts::of(&ledger.rounds);
        HubFigures {
            hub: format!("{name} {address}"),
            channels_opened: run.channels,
            channels_direct: run.clients * run.providers,
            routed_payments: receipts.count,
            routed_amount_atto: sum(&receipts.amount_to).atto().to_string(),
            fees_atto: receipts.fees.atto().to_string(),
            routed_payments_per_sec: payments_per_sec,
            routed_latency_p50_us: percentile(sorted_latencies, 0.50),
            routed_latency_p99_us: percentile(sorted_latencies, 0.99),
            failed_attempts: receipts.failed_to.iter().sum(),
            resolve_secs: ledger.resolve_secs,
        }
    }
}

/// The hub's lines of the report as people read it.
pub fn render(hub: &HubFigures, line: &mut impl FnMut(String)) {
    line(format!(
        "hub            {}: {} channels opened ({} without a hub)",
        hub.hub, hub.channels_opened, hub.channels_direct
    ));
    line(format!(
        "routed         {} payments, {} attoFIL to the providers, {} attoFIL in fees, {} failed and paid again; every route resolved {:.1} s after the rounds",
        hub.routed_payments, hub.routed_amount_atto, hub.fees_atto, hub.failed_attempts, hub.resolve_secs
    ));
    line(format!(
        "               {:.1} routed payments/s; latency p50 {} µs, p99 {} µs (invoice paid until its receipt)",
        hub.routed_payments_per_sec, hub.routed_latency_p50_us, hub.routed_latency_p99_us
    ));
}

/// The receipts of the rounds, by party.
struct Receipts {
    count: usize,
    /// What the receipts paid each provider.
    amount_to: Vec<TokenAmount>,
    /// What the receipts cost each client (amounts and fees).
    cost_to: Vec<TokenAmount>,
    /// The fees of every receipt.
    fees: TokenAmount,
    /// Failed payments to each provider.
    failed_to: Vec<usize>,
    /// Failed payments of each client.
    failed_from: Vec<usize>,
    /// One payment's amount and fee (every chunk costs the same), from the first receipt.
    unit: Option<(TokenAmount, TokenAmount)>,
}

impl Receipts {
    fn of(rounds: &[RoundOutcome]) -> Self {
        let (clients, providers) = rounds
            .iter()
            .flat_map(|r| r.retrieved.iter().map(|(job, _)| (job.client + 1, job.provider + 1)))
            .fold((0, 0), |(c, p), (jc, jp)| (c.max(jc), p.max(jp)));
        Self::sized(rounds, clients, providers)
    }

    fn sized(rounds: &[RoundOutcome], clients: usize, providers: usize) -> Self {
        let mut receipts = Receipts {
            count: 0,
            amount_to: vec![TokenAmount::default(); providers],
            cost_to: vec![TokenAmount::default(); clients],
            fees: TokenAmount::default(),
            failed_to: vec![0; providers],
            failed_from: vec![0; clients],
            unit: None,
        };
        for (job, paid) in rounds.iter().flat_map(RoundOutcome::receipts) {
            receipts.count += 1;
            if let Some(to) = receipts.amount_to.get_mut(job.provider) {
                *to += &paid.amount;
            }
            if let Some(from) = receipts.cost_to.get_mut(job.client) {
                *from += &paid.amount + &paid.fee;
            }
            receipts.fees += &paid.fee;
            receipts.unit.get_or_insert_with(|| (paid.amount.clone(), paid.fee.clone()));
        }
        for ((client, provider), failed) in rounds.iter().flat_map(RoundOutcome::unresolved) {
            if let Some(to) = receipts.failed_to.get_mut(provider) {
                *to += failed;
            }
            if let Some(from) = receipts.failed_from.get_mut(client) {
                *from += failed;
            }
        }
        receipts
    }
}

/// How many payments of `unit` make `extra`, if at most `most` of them do.
fn payments_in(extra: &TokenAmount, unit: Option<&TokenAmount>, most: usize) -> Option<usize> {
    (0..=most).find(|k| match unit {
        Some(unit) => *extra == unit * *k as u64,
        None => extra.is_zero(),
    })
}

/// The invariants of a `--hub` run whose hub is party `hub`.
pub fn invariants(run: &Run, ledger: &Ledger, end: &Ending, hub: usize) -> Vec<Invariant> {
    let receipts = Receipts::sized(&ledger.rounds, run.clients, run.providers);
    let failed: usize = receipts.failed_to.iter().sum();
    let unit = receipts.unit.clone();
    let (amount, fee) = (unit.as_ref().map(|u| &u.0), unit.as_ref().map(|u| &u.1));
    let cost = unit.as_ref().map(|(a, f)| a + f);
    let balance_change = |i: usize| &end.holdings.balances[i] - &ledger.funded.balances[i];
    let mut invariants = chain_invariants(ledger, end);

    let mut paid_without_receipt = Vec::new();
    for p in 0..run.providers {
        let income = balance_change(p) + &end.stats[p].fees;
        let extra = &income - &receipts.amount_to[p];
        let k = payments_in(&extra, amount, receipts.failed_to[p]);
        paid_without_receipt.push(k.unwrap_or(0));
        invariants.push(Invariant::new(
            format!("provider-{p} was paid exactly what its payers' receipts say"),
            k.is_some(),
            format!(
                "income {} attoFIL (balance change plus gas); receipts {} attoFIL; {} of its {} failed payments paid on chain with their secrets",
                income.atto(),
                receipts.amount_to[p].atto(),
                k.map_or_else(|| "no whole number".to_owned(), |k| k.to_string()),
                receipts.failed_to[p]
            ),
        ));
    }
    let mut paid_by = Vec::new();
    for c in 0..run.clients {
        let i = run.providers + c;
        let spent = &ledger.funded.balances[i] - &end.holdings.balances[i] - &end.stats[i].fees;
        let extra = &spent - &receipts.cost_to[c];
        let k = payments_in(&extra, cost.as_ref(), receipts.failed_from[c]);
        paid_by.push(k.unwrap_or(0));
        invariants.push(Invariant::new(
            format!("client-{c} paid only what its receipts say, or payments its payee was paid"),
            k.is_some(),
            format!(
                "spent {} attoFIL (balance change less gas); receipts {} attoFIL (amounts and fees); {} of its {} failed payments paid",
                spent.atto(),
                receipts.cost_to[c].atto(),
                k.map_or_else(|| "no whole number".to_owned(), |k| k.to_string()),
                receipts.failed_from[c]
            ),
        ));
    }
    let gas = &end.stats[hub].fees;
    let change = balance_change(hub);
    let extra = &change + gas - &receipts.fees;
    let k_hub = payments_in(&extra, fee, failed);
    invariants.push(Invariant::new(
        "the hub's balance changed by its fees less its gas",
        k_hub.is_some(),
        format!(
            "change {} attoFIL; fees {} attoFIL on receipts, gas {} attoFIL; {} failed payments' fees",
            change.atto(),
            receipts.fees.atto(),
            gas.atto(),
            k_hub.map_or_else(|| "no whole number of".to_owned(), |k| k.to_string())
        ),
    ));
    let (by_clients, to_providers): (usize, usize) =
        (paid_by.iter().sum(), paid_without_receipt.iter().sum());
    invariants.push(Invariant::new(
        "nobody lost money: every payment a client made paid its provider and the hub its fee",
        k_hub.is_some() && by_clients == to_providers && Some(by_clients) == k_hub,
        format!(
            "failed payments paid on chain: {by_clients} by clients, {to_providers} to providers, {} fees to the hub (of {failed} failed)",
            k_hub.map_or_else(|| "no whole number of".to_owned(), |k| k.to_string())
        ),
    ));
    invariants.push(Invariant::new(
        "every route resolved after the rounds, by its secret or its lock",
        ledger.open_routes.is_empty(),
        match ledger.open_routes.is_empty() {
            true => format!("in {:.1} s", ledger.resolve_secs),
            false => format!(
                "still open after {:.1} s (conditional vouchers signed or held, by node): {}",
                ledger.resolve_secs,
                ledger.open_routes.join(", ")
            ),
        },
    ));
    invariants.push(Invariant::new(
        "channels opened: one per client and one per provider",
        run.channels == run.clients + run.providers,
        format!(
            "{} channels through the hub, against {} without it",
            run.channels,
            run.clients * run.providers
        ),
    ));
    let retrievals = ledger.rounds.iter().map(RoundOutcome::retrievals).sum();
    let retries = ledger.rounds.iter().map(|r| r.retries).sum();
    invariants.extend(completion_invariants(run, retrievals, retries));
    invariants
}
