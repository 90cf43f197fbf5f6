//! The testnet's report: [`Report`] (what `--json` prints), the invariants checked against
//! the chain's end state, and [`render`], the report as people read it.

use std::collections::BTreeMap;

use paych_core::chain::devnet::SenderStats;
use paych_core::types::{format_fil, TokenAmount};
use paych_node::relay::LinkShape;
use serde::Serialize;

use super::rounds::{Pair, RoundOutcome};

mod routed;
pub use routed::HubFigures;

/// One invariant of the run and whether it held.
#[derive(Debug, Clone, Serialize)]
pub struct Invariant {
    /// What it says.
    pub name: String,
    /// Whether it held.
    pub ok: bool,
    /// The figures behind it.
    pub detail: String,
}

/// A node's wallet before and after the run.
#[derive(Debug, Clone, Serialize)]
pub struct Balance {
    /// `client-0`, `provider-1`, …
    pub node: String,
    /// Its wallet address.
    pub address: String,
    /// attoFIL after funding.
    pub before_atto: String,
    /// attoFIL at the end.
    pub after_atto: String,
    /// Gas fees its messages paid, attoFIL.
    pub fees_atto: String,
    /// Chain messages it sent.
    pub messages: u64,
}

/// What the run did; `--json` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Daemons run.
    pub nodes: usize,
    /// Of which clients.
    pub clients: usize,
    /// Of which providers.
    pub providers: usize,
    /// Payment channels used.
    pub channels: usize,
    /// Retrievals completed.
    pub retrievals: usize,
    /// Retrieval attempts that failed and were tried again.
    pub retries: usize,
    /// Why they failed (the first few).
    pub retry_reasons: Vec<String>,
    /// Payments made: vouchers sent (a paid retrieval pays its checked chunks while more
    /// arrive, so one voucher may pay for several; a routed payment pays one chunk).
    pub payments: usize,
    /// Bytes retrieved and checked.
    pub bytes: u64,
    /// How fast the payments went.
    #[serde(flatten)]
    pub speed: Speed,
    /// How fast each retrieval's bytes came (none with `--hub`, where chunks are paid, not
    /// transferred).
    #[serde(flatten)]
    pub transfer: Option<Transfer>,
    /// With `--wan`: the shape of every link between daemons.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wan: Option<Link>,
    /// What the run put on chain.
    #[serde(flatten)]
    pub chain: ChainUse,
    /// Wallet balances.
    pub balances: Vec<Balance>,
    /// The daemons' memory.
    #[serde(flatten)]
    pub memory: Memory,
    /// With `--hub`: what went through the hub.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub: Option<HubFigures>,
    /// The node killed and restarted, if any, and what came back.
    pub crash: Option<String>,
    /// The invariants checked.
    pub invariants: Vec<Invariant>,
    /// Whether every invariant held.
    pub invariants_ok: bool,
    /// Seconds the whole run took.
    pub total_secs: f64,
}

/// How fast the payments went, beside the bare crypto they cost (flattened into the report).
#[derive(Debug, Clone, Serialize)]
pub struct Speed {
    /// Seconds the two retrieval rounds took.
    pub retrieval_secs: f64,
    /// Payments per second over the retrieval rounds.
    pub payments_per_sec: f64,
    /// Bare secp256k1 signatures per second on one core, measured in the same run.
    pub raw_sign_per_sec: f64,
    /// Bare secp256k1 recoveries per second on one core, measured in the same run.
    pub raw_recover_per_sec: f64,
    /// `1 / (1/sign + 1/recover)`: payments per second one core could make if a payment
    /// cost only its signature and its recovery.
    pub crypto_ceiling_payments_per_sec: f64,
    /// `payments_per_sec ÷ crypto_ceiling_payments_per_sec`.
    pub payments_vs_crypto_ceiling: f64,
    /// Median payment latency (voucher made, stored, sent, validated, stored, answered), µs.
    pub latency_p50_us: u64,
    /// 99th percentile payment latency, µs.
    pub latency_p99_us: u64,
}

/// How fast each retrieval's bytes came, from the client's `PaychRetrieve` answers
/// (flattened into the report).
#[derive(Debug, Clone, Serialize)]
pub struct Transfer {
    /// Median per-retrieval throughput: its bytes over its whole time (`ElapsedMicros`),
    /// MB/s (10^6 bytes a second).
    pub retrieval_mb_per_sec_p50: f64,
    /// The slowest retrieval's throughput, MB/s.
    pub retrieval_mb_per_sec_min: f64,
    /// Median time from a retrieval's request to its first checked chunk
    /// (`FirstByteMicros`), µs.
    pub first_byte_p50_us: u64,
    /// 99th percentile time to the first checked chunk, µs.
    pub first_byte_p99_us: u64,
}

impl Transfer {
    /// The figures of the retrievals that brought bytes; `None` if none did.
    fn of(rounds: &[RoundOutcome]) -> Option<Transfer> {
        let retrieved = || rounds.iter().flat_map(|r| &r.retrieved).map(|(_, got)| got);
        let mut rates: Vec<f64> = retrieved()
            .filter(|got| got.bytes > 0 && got.elapsed_micros > 0)
            .map(|got| got.bytes as f64 / got.elapsed_micros as f64)
            .collect();
        if rates.is_empty() {
            return None;
        }
        rates.sort_unstable_by(f64::total_cmp);
        let mut first: Vec<u64> = retrieved().filter_map(|got| got.first_byte_micros).collect();
        first.sort_unstable();
        let median = (rates.len() as f64 * 0.5).ceil() as usize;
        Some(Transfer {
            retrieval_mb_per_sec_p50: rates[median.clamp(1, rates.len()) - 1],
            retrieval_mb_per_sec_min: rates[0],
            first_byte_p50_us: percentile(&first, 0.50),
            first_byte_p99_us: percentile(&first, 0.99),
        })
    }
}

/// The shape of every link between daemons with `--wan`.
#[derive(Debug, Clone, Serialize)]
pub struct Link {
    /// The one-way delay each direction, ms.
    pub delay_ms: f64,
    /// At most this much more per chunk, ms.
    pub jitter_ms: f64,
    /// The rate cap each direction, bytes a second; none: no cap.
    pub rate_bytes_per_sec: Option<u64>,
}

impl From<LinkShape> for Link {
    fn from(shape: LinkShape) -> Self {
        Link {
            delay_ms: shape.delay.as_secs_f64() * 1e3,
            jitter_ms: shape.jitter.as_secs_f64() * 1e3,
            rate_bytes_per_sec: shape.rate,
        }
    }
}

/// What the run put on chain, beside the alternatives (flattened into the report).
#[derive(Debug, Clone, Serialize)]
pub struct ChainUse {
    /// Chain messages the nodes sent.
    pub chain_messages: u64,
    /// Of which: creates, add-funds, updates (voucher redemptions), settles, collects.
    pub chain_messages_by_kind: BTreeMap<String, u64>,
    /// Messages if every lane with new payments were redeemed on its own each round.
    pub chain_messages_one_per_lane: u64,
    /// Messages if every chunk were paid by its own chain message.
    pub chain_messages_one_per_payment: u64,
    /// Channels reconciled into one combined voucher.
    pub reconciled_channels: usize,
    /// Vouchers the providers' settlers submitted after a client settled.
    pub settler_submissions: u64,
    /// Gas burnt during the run, attoFIL.
    pub gas_burnt_atto: String,
}

/// The daemons' peak resident memory (flattened into the report).
#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    /// The largest peak resident memory of one daemon, KiB (Linux; 0 elsewhere).
    pub peak_rss_kib_max: u64,
    /// The mean of the daemons' peak resident memory, KiB (Linux; 0 elsewhere).
    pub peak_rss_kib_mean: u64,
}

/// The report as people read it.
pub fn render(report: &Report) -> String {
    let fil = |atto: &str| {
        atto.parse::<u128>().map(|a| format_fil(&TokenAmount::from_atto(a))).unwrap_or_default()
    };
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!(
        "paych testnet: {} nodes ({} clients, {} providers), {} channels, {:.1} s",
        report.nodes, report.clients, report.providers, report.channels, report.total_secs
    ));
    match report.hub {
        Some(_) => line(format!(
            "retrievals     {} ({} payments retried), their chunks paid through the hub",
            report.retrievals, report.retries
        )),
        None => line(format!(
            "retrievals     {} ({} retried), {} bytes checked against their manifests",
            report.retrievals, report.retries, report.bytes
        )),
    }
    for reason in &report.retry_reasons {
        line(format!("  retried: {reason}"));
    }
    line(format!(
        "payments       {} in {:.2} s: {:.0} payments/s",
        report.payments, report.speed.retrieval_secs, report.speed.payments_per_sec
    ));
    line(format!(
        "               {:.3} of the {:.0}/s one core could sign and recover ({:.0} signs/s, {:.0} recoveries/s)",
        report.speed.payments_vs_crypto_ceiling,
        report.speed.crypto_ceiling_payments_per_sec,
        report.speed.raw_sign_per_sec,
        report.speed.raw_recover_per_sec
    ));
    let measured = match report.hub {
        Some(_) => "invoice paid until its receipt",
        None => "voucher made, stored, sent, validated, stored, answered",
    };
    line(format!(
        "latency        p50 {} µs, p99 {} µs ({measured})",
        report.speed.latency_p50_us, report.speed.latency_p99_us
    ));
    if let Some(t) = &report.transfer {
        line(format!(
            "throughput     per retrieval p50 {:.2} MB/s, min {:.2} MB/s; first byte p50 {} µs, p99 {} µs",
            t.retrieval_mb_per_sec_p50,
            t.retrieval_mb_per_sec_min,
            t.first_byte_p50_us,
            t.first_byte_p99_us
        ));
    }
    if let Some(link) = &report.wan {
        let rate = link
            .rate_bytes_per_sec
            .map(|r| format!("at most {r} bytes/s"))
            .unwrap_or_else(|| "no rate cap".into());
        line(format!(
            "wan            every link {} ms each way, jitter up to {} ms, {rate} (each daemon on its own 127.0.0.N behind a relay)",
            link.delay_ms, link.jitter_ms
        ));
    }
    let kinds: Vec<String> =
        report.chain.chain_messages_by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
    line(format!("chain messages {} ({})", report.chain.chain_messages, kinds.join(", ")));
    if report.hub.is_none() {
        line(format!(
            "               vs {} redeeming each lane each round, {} paying on chain per chunk",
            report.chain.chain_messages_one_per_lane, report.chain.chain_messages_one_per_payment
        ));
    }
    if report.hub.is_none() {
        line(format!(
            "reconciled     {} channels into one voucher each; settlers submitted {} vouchers",
            report.chain.reconciled_channels, report.chain.settler_submissions
        ));
    }
    line(format!("gas burnt      {}", fil(&report.chain.gas_burnt_atto)));
    if report.memory.peak_rss_kib_max > 0 {
        line(format!(
            "memory         peak per daemon: mean {} MiB, max {} MiB",
            report.memory.peak_rss_kib_mean / 1024,
            report.memory.peak_rss_kib_max / 1024
        ));
    }
    if let Some(hub) = &report.hub {
        routed::render(hub, &mut line);
    }
    if let Some(crash) = &report.crash {
        line(format!("crash          {crash}"));
    }
    line("balances".into());
    for b in &report.balances {
        line(format!(
            "  {:<12} {}  {} → {}  (gas {}, {} messages)",
            b.node,
            b.address,
            fil(&b.before_atto),
            fil(&b.after_atto),
            fil(&b.fees_atto),
            b.messages
        ));
    }
    line("invariants".into());
    for i in &report.invariants {
        line(format!("  [{}] {}: {}", if i.ok { "ok" } else { "FAILED" }, i.name, i.detail));
    }
    out
}

/// What the phases recorded on the way, for the report.
#[derive(Default)]
pub struct Ledger {
    /// Bare signatures per second on one core.
    pub raw_sign_per_sec: f64,
    /// Bare recoveries per second on one core.
    pub raw_recover_per_sec: f64,
    /// The nodes' funds once funded.
    pub funded: Holdings,
    /// The retrieval rounds.
    pub rounds: Vec<RoundOutcome>,
    /// Seconds the retrieval rounds took.
    pub retrieval_secs: f64,
    /// With `--hub`: seconds the routes took to resolve after the rounds.
    pub resolve_secs: f64,
    /// With `--hub`: the nodes that still had routes open when the run stopped waiting,
    /// with how many (`provider-0 1`).
    pub open_routes: Vec<String>,
    /// What each client issued on each channel, before any voucher was folded.
    pub issued: BTreeMap<Pair, TokenAmount>,
    /// Channels reconciled into one combined voucher.
    pub reconciled: usize,
    /// Vouchers the providers' settlers submitted after the clients settled.
    pub settler_submissions: u64,
    /// What each channel paid out, read before collection.
    pub to_send: BTreeMap<Pair, TokenAmount>,
}

/// The nodes' balances and the gas burnt, at one moment of the run.
#[derive(Default)]
pub struct Holdings {
    /// Each node's balance, providers first.
    pub balances: Vec<TokenAmount>,
    /// Gas burnt since genesis.
    pub burnt: TokenAmount,
}

/// The chain's end state, read once every channel is collected.
pub struct Ending {
    /// The nodes' funds at the end.
    pub holdings: Holdings,
    /// Each node's messages and fees, providers first.
    pub stats: Vec<SenderStats>,
    /// Funds still in channels (none once all are collected).
    pub left_in_channels: TokenAmount,
}

/// The run's shape and the nodes, as the report names them.
pub struct Run {
    /// Clients.
    pub clients: usize,
    /// Providers.
    pub providers: usize,
    /// Channels opened.
    pub channels: usize,
    /// With `--hub`: the hub's index among the parties (after the providers and clients).
    pub hub: Option<usize>,
    /// Retrievals planned.
    pub retrievals: usize,
    /// Whether a node was killed (retries are then expected).
    pub crashed: bool,
    /// With `--wan`: the links' shape.
    pub wan: Option<LinkShape>,
    /// With `--wan`: whether every connection between daemons crossed a relay, and the
    /// figures.
    pub crossings: Option<(bool, String)>,
    /// Each node's name and address, providers first.
    pub parties: Vec<(String, String)>,
    /// Each daemon's peak resident memory, KiB.
    pub peaks_kib: Vec<u64>,
    /// Seconds the whole run took.
    pub total_secs: f64,
}

impl Report {
    /// The report of a run: the figures of `ledger`, checked against `end`.
    pub fn new(run: &Run, ledger: &Ledger, end: &Ending) -> Report {
        let rounds = &ledger.rounds;
        let payments: usize = rounds.iter().map(RoundOutcome::payments).sum();
        let retrievals: usize = rounds.iter().map(RoundOutcome::retrievals).sum();
        let retries: usize = rounds.iter().map(|r| r.retries).sum();
        let by_kind = messages_by_kind(&end.stats);
        let chain_messages: u64 = end.stats.iter().map(|s| s.messages).sum();
        let other_messages = chain_messages - by_kind.get("update").copied().unwrap_or(0);
        let lanes_paid: u64 =
            rounds.iter().flat_map(|r| r.lanes().into_values()).map(|l| l.len() as u64).sum();
        let mut latencies: Vec<u64> = rounds.iter().flat_map(RoundOutcome::latencies_us).collect();
        latencies.sort_unstable();
        let payments_per_sec = ratio(payments as f64, ledger.retrieval_secs);
        let crypto_ceiling =
            paych_node::limits::crypto_ceiling(ledger.raw_sign_per_sec, ledger.raw_recover_per_sec);
        let invariants = match run.hub {
            Some(hub) => routed::invariants(run, ledger, end, hub),
            None => invariants(run, ledger, end, retrievals, retries),
        };
        let mut invariants = invariants;
        if let Some((held, detail)) = &run.crossings {
            invariants.push(Invariant::new(
                "every connection between daemons crossed a relay",
                *held,
                detail.clone(),
            ));
        }
        let peaks = &run.peaks_kib;
        Report {
            nodes: run.parties.len(),
            clients: run.clients,
            providers: run.providers,
            channels: run.channels,
            retrievals,
            retries,
            retry_reasons: rounds.iter().flat_map(|r| &r.retry_reasons).cloned().collect(),
            payments,
            bytes: rounds.iter().map(RoundOutcome::bytes).sum(),
            transfer: Transfer::of(rounds),
            wan: run.wan.map(Link::from),
            speed: Speed {
                retrieval_secs: ledger.retrieval_secs,
                payments_per_sec,
                raw_sign_per_sec: ledger.raw_sign_per_sec,
                raw_recover_per_sec: ledger.raw_recover_per_sec,
                crypto_ceiling_payments_per_sec: crypto_ceiling,
                payments_vs_crypto_ceiling: ratio(payments_per_sec, crypto_ceiling),
                latency_p50_us: percentile(&latencies, 0.50),
                latency_p99_us: percentile(&latencies, 0.99),
            },
            chain: ChainUse {
                chain_messages,
                chain_messages_by_kind: by_kind,
                chain_messages_one_per_lane: other_messages + lanes_paid,
                chain_messages_one_per_payment: other_messages
                    + rounds.iter().map(RoundOutcome::chunks).sum::<u64>(),
                reconciled_channels: ledger.reconciled,
                settler_submissions: ledger.settler_submissions,
                gas_burnt_atto: (&end.holdings.burnt - &ledger.funded.burnt).atto().to_string(),
            },
            balances: balances(run, ledger, end),
            memory: Memory {
                peak_rss_kib_max: peaks.iter().copied().max().unwrap_or(0),
                peak_rss_kib_mean: peaks.iter().sum::<u64>() / (peaks.len() as u64).max(1),
            },
            hub: run.hub.map(|hub| HubFigures::new(run, ledger, hub, payments_per_sec, &latencies)),
            crash: rounds.iter().find_map(|r| r.crash.clone()),
            invariants_ok: invariants.iter().all(|i| i.ok),
            invariants,
            total_secs: run.total_secs,
        }
    }
}

/// `a / b`, 0 when `b` is not positive.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

/// The `q` quantile of sorted `values` (nearest rank), 0 when there are none.
pub(super) fn percentile(values: &[u64], q: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let rank = ((values.len() as f64) * q).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

/// The nodes' chain messages by what they did.
fn messages_by_kind(stats: &[SenderStats]) -> BTreeMap<String, u64> {
    let mut by_kind: BTreeMap<String, u64> = BTreeMap::new();
    for ((kind, method), n) in stats.iter().flat_map(|s| &s.by_method) {
        let name = match (kind.as_str(), method) {
            ("init", 2) => "create",
            ("paymentchannel", 0) => "add_funds",
            ("paymentchannel", 2) => "update",
            ("paymentchannel", 3) => "settle",
            ("paymentchannel", 4) => "collect",
            ("missing", 4) => "collect_too_late",
            ("account", 0) | ("missing", 0) => "send",
            _ => "other",
        };
        *by_kind.entry(name.to_owned()).or_default() += n;
    }
    by_kind
}

fn balances(run: &Run, ledger: &Ledger, end: &Ending) -> Vec<Balance> {
    run.parties
        .iter()
        .enumerate()
        .map(|(i, (name, address))| Balance {
            node: name.clone(),
            address: address.clone(),
            before_atto: ledger.funded.balances[i].atto().to_string(),
            after_atto: end.holdings.balances[i].atto().to_string(),
            fees_atto: end.stats[i].fees.atto().to_string(),
            messages: end.stats[i].messages,
        })
        .collect()
}

pub(super) fn sum<'a>(amounts: impl IntoIterator<Item = &'a TokenAmount>) -> TokenAmount {
    amounts.into_iter().fold(TokenAmount::default(), |acc, x| acc + x)
}

impl Invariant {
    pub(super) fn new(name: impl Into<String>, ok: bool, detail: String) -> Self {
        Invariant { name: name.into(), ok, detail }
    }
}

/// The run's invariants, in the order the report lists them.
fn invariants(
    run: &Run,
    ledger: &Ledger,
    end: &Ending,
    retrievals: usize,
    retries: usize,
) -> Vec<Invariant> {
    let mut invariants = chain_invariants(ledger, end);
    invariants.extend((0..run.clients).map(|c| client_spend(run, ledger, end, c)));
    invariants.extend((0..run.providers).map(|p| provider_income(ledger, end, p)));
    invariants.push(no_over_redemption(ledger));
    invariants.extend(completion_invariants(run, retrievals, retries));
    invariants
}

/// The invariants of the chain's end state, whatever the run paid through.
pub(super) fn chain_invariants(ledger: &Ledger, end: &Ending) -> Vec<Invariant> {
    let total_before = sum(&ledger.funded.balances) + &ledger.funded.burnt;
    let total_after = sum(&end.holdings.balances) + &end.holdings.burnt + &end.left_in_channels;
    vec![
        Invariant::new(
            "the sum of all balances plus burnt gas is unchanged",
            total_before == total_after,
            format!("before {} attoFIL, after {} attoFIL", total_before.atto(), total_after.atto()),
        ),
        Invariant::new(
            "every channel was settled and collected",
            end.left_in_channels.is_zero(),
            format!("{} attoFIL left in channels", end.left_in_channels.atto()),
        ),
    ]
}

/// That every retrieval completed, and with no crash, none needed trying again.
pub(super) fn completion_invariants(
    run: &Run,
    retrievals: usize,
    retries: usize,
) -> Vec<Invariant> {
    let mut invariants = Vec::new();
    if !run.crashed {
        invariants.push(Invariant::new(
            "no retrieval failed (none needed trying again)",
            retries == 0,
            format!("{retries} attempts failed"),
        ));
    }
    invariants.push(Invariant::new(
        "every retrieval completed",
        retrievals == run.retrievals,
        format!("{retrievals} of {}", run.retrievals),
    ));
    invariants
}

/// What the channels of the pairs `pick` keeps paid out.
fn paid_out(ledger: &Ledger, pick: impl Fn(&Pair) -> bool) -> TokenAmount {
    sum(ledger.to_send.iter().filter(|(pair, _)| pick(pair)).map(|(_, amount)| amount))
}

/// Client `c`'s balance change, less its gas, against what its channels paid out.
fn client_spend(run: &Run, ledger: &Ledger, end: &Ending, c: usize) -> Invariant {
    let i = run.providers + c;
    let spent = &ledger.funded.balances[i] - &end.holdings.balances[i] - &end.stats[i].fees;
    let paid = paid_out(ledger, |(client, _)| *client == c);
    Invariant::new(
        format!("client-{c}'s spend equals the providers' income from it"),
        spent == paid,
        format!(
            "spent {} attoFIL (balance change less gas); providers redeemed {} attoFIL",
            spent.atto(),
            paid.atto()
        ),
    )
}

/// Provider `p`'s balance change, plus its gas, against what its channels paid out.
fn provider_income(ledger: &Ledger, end: &Ending, p: usize) -> Invariant {
    let income = &end.holdings.balances[p] - &ledger.funded.balances[p] + &end.stats[p].fees;
    let redeemed = paid_out(ledger, |(_, provider)| *provider == p);
    Invariant::new(
        format!("provider-{p}'s income equals what its channels paid out"),
        income == redeemed,
        format!(
            "income {} attoFIL (balance change plus gas); redeemed {} attoFIL",
            income.atto(),
            redeemed.atto()
        ),
    )
}

fn no_over_redemption(ledger: &Ledger) -> Invariant {
    let over: Vec<String> = ledger
        .to_send
        .iter()
        .filter(|(pair, redeemed)| ledger.issued.get(pair).is_none_or(|i| *redeemed > i))
        .map(|((c, p), _)| format!("client-{c}→provider-{p}"))
        .collect();
    let detail = if over.is_empty() {
        format!(
            "issued {}, redeemed {} (the difference is the reconciliation discount and \
             vouchers lost with a killed node)",
            format_fil(&sum(ledger.issued.values())),
            format_fil(&sum(ledger.to_send.values()))
        )
    } else {
        format!("over-redeemed: {}", over.join(", "))
    };
    Invariant::new(
        "no channel paid out more than its client issued in vouchers",
        over.is_empty(),
        detail,
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::super::nodes::Retrieved;
    use super::super::rounds::Job;
    use super::*;

    fn retrieved(bytes: u64, first_byte_micros: Option<u64>, elapsed_micros: u64) -> Retrieved {
        Retrieved { bytes, first_byte_micros, elapsed_micros, ..Retrieved::default() }
    }

    #[test]
    fn per_retrieval_throughput_is_bytes_over_elapsed_and_the_slowest_is_the_minimum() {
        let job = Job { client: 0, provider: 0 };
        let round = RoundOutcome {
            retrieved: vec![
                (job, retrieved(4_000_000, Some(50_000), 2_000_000)),
                (job, retrieved(1_000_000, Some(80_000), 1_000_000)),
                (job, retrieved(9_000_000, Some(40_000), 3_000_000)),
            ],
            ..RoundOutcome::default()
        };
        let transfer = Transfer::of(std::slice::from_ref(&round)).unwrap();
        assert_eq!(transfer.retrieval_mb_per_sec_p50, 2.0);
        assert_eq!(transfer.retrieval_mb_per_sec_min, 1.0);
        assert_eq!((transfer.first_byte_p50_us, transfer.first_byte_p99_us), (50_000, 80_000));
    }

    #[test]
    fn runs_that_transferred_nothing_report_no_throughput() {
        let job = Job { client: 0, provider: 0 };
        let paid_only = RoundOutcome {
            retrieved: vec![(job, retrieved(0, None, 0))],
            ..RoundOutcome::default()
        };
        assert!(Transfer::of(&[paid_only]).is_none());
        assert!(Transfer::of(&[]).is_none());
    }

    #[test]
    fn a_link_is_reported_in_milliseconds_and_bytes_a_second() {
        let link = Link::from("50ms,5ms,10M".parse::<LinkShape>().unwrap());
        assert_eq!((link.delay_ms, link.jitter_ms), (50.0, 5.0));
        assert_eq!(link.rate_bytes_per_sec, Some(10_000_000));
    }
}
