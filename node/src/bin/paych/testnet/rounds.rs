//! A round of paid retrievals: jobs run concurrently (bounded), each tried again when a
//! node was killed under it, and, in the crash round, one node killed and restarted once
//! enough of the round has completed.
//!
//! With `--hub`, a retrieval's chunks are paid through the hub, one invoice each (the
//! provider's `PaychInvoice`, the client's `PaychPayInvoice`); a payment that fails is paid
//! again with a fresh invoice (an invoice's payment hash is never offered twice).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context};
use paych_core::invoice::Hub;
use paych_core::lotus_json::parse_amount_field;
use paych_core::types::TokenAmount;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use super::nodes::{crash_and_restart, Launcher, Nodes, Retrieved, RoutedPaid};
use super::Progress;

/// Attempts at one retrieval (more than one only when a node was killed under it).
const ATTEMPTS: usize = 4;
/// Retrievals running at once. Each has at most one voucher in flight.
pub const MAX_CONCURRENT_RETRIEVALS: usize = 16;
/// Retry reasons a round keeps for the report.
const MAX_RETRY_REASONS: usize = 8;
/// The pause before a failed retrieval is tried again.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// How often the round looks whether it is time to crash a node.
const CRASH_POLL: Duration = Duration::from_millis(50);
/// How long an invoice of a routed chunk payment stays payable, seconds.
const INVOICE_EXPIRY_SECS: u64 = 600;

/// A client–provider pair, by index: `(client, provider)`.
pub type Pair = (usize, usize);

/// One retrieval to run: client `c` from provider `p`.
#[derive(Debug, Clone, Copy)]
pub struct Job {
    /// The client's index among the clients.
    pub client: usize,
    /// The provider's index among the providers.
    pub provider: usize,
}

/// What the retrievals of a round run over.
pub struct RoundContext {
    /// Every node, providers first.
    pub nodes: Nodes,
    /// How many of them are providers.
    pub providers: usize,
    /// The channel of each pair.
    pub channels: BTreeMap<Pair, String>,
    /// The root of each provider's blob.
    pub roots: Vec<String>,
    /// The most a client pays for a chunk.
    pub max_price: TokenAmount,
    /// With `--hub`: every chunk is paid through this hub instead.
    pub hub: Option<RoutedChunks>,
}

/// How a retrieval's chunks are paid with `--hub`.
pub struct RoutedChunks {
    /// The hub, as the providers' invoices name it.
    pub hub: Hub,
    /// The hub's index among the nodes.
    pub hub_index: usize,
    /// Chunks per retrieval, one routed payment each.
    pub chunks: u64,
}

/// The node to kill during a round, and when.
pub struct CrashPlan {
    /// Its index in the nodes.
    pub index: usize,
    /// Kill once this many retrievals of the round have completed (with `--hub`, this many
    /// routed payments, so that the kill finds routes in flight).
    pub after: usize,
}

/// What one round of retrievals produced.
#[derive(Default)]
pub struct RoundOutcome {
    /// Each retrieval completed, with its job.
    pub retrieved: Vec<(Job, Retrieved)>,
    /// Attempts that failed and were tried again.
    pub retries: usize,
    /// Why (the first few).
    pub retry_reasons: Vec<String>,
    /// What came back of the node killed in this round, if one was.
    pub crash: Option<String>,
}

/// One retrieval task's result: its job, what it got, and why earlier attempts failed.
type Attempted = (Job, anyhow::Result<Retrieved>, Vec<String>);

/// Where a round stands on the progress bar.
pub struct Tally<'a> {
    /// The phase's name on the bar.
    pub phase: &'a str,
    /// Retrievals done before this round.
    pub done_before: usize,
    /// Retrievals of the whole run.
    pub total: usize,
}

/// Runs `jobs` concurrently (one task each, bounded), trying each again when a node was
/// killed under it; with `crash`, kills and restarts that node partway.
pub async fn run_round(
    ctx: &Arc<RoundContext>,
    jobs: &[Job],
    progress: &Progress,
    tally: Tally<'_>,
    crash: Option<(&CrashPlan, &Launcher)>,
) -> anyhow::Result<RoundOutcome> {
    let completed = Arc::new(AtomicUsize::new(0));
    let mut tasks = spawn_jobs(ctx, jobs, &completed);
    let mut outcome = RoundOutcome::default();
    let mut crash = crash;
    progress.bar(tally.phase, tally.done_before, tally.total);
    loop {
        if let Some((plan, launcher)) = crash {
            if completed.load(Ordering::SeqCst) >= plan.after {
                crash = None;
                let index = plan.index;
                let text =
                    crash_and_restart(&ctx.nodes, index, launcher, MAX_CONCURRENT_RETRIEVALS)
                        .await?;
                outcome.crash = Some(text);
            }
        }
        let Ok(next) = tokio::time::timeout(CRASH_POLL, tasks.join_next()).await else {
            continue;
        };
        let Some(joined) = next else { break };
        outcome.record(joined.context("a retrieval task failed")?)?;
        progress.bar(tally.phase, tally.done_before + outcome.retrievals(), tally.total);
    }
    Ok(outcome)
}

/// Spawns one task per job, at most [`MAX_CONCURRENT_RETRIEVALS`] running at once; each
/// counts itself in `completed` when it succeeds (with `--hub`, each routed payment does).
fn spawn_jobs(
    ctx: &Arc<RoundContext>,
    jobs: &[Job],
    completed: &Arc<AtomicUsize>,
) -> JoinSet<Attempted> {
    let permits = Arc::new(Semaphore::new(MAX_CONCURRENT_RETRIEVALS));
    let mut tasks = JoinSet::new();
    for job in jobs.iter().copied() {
        let (ctx, permits, completed) = (ctx.clone(), permits.clone(), completed.clone());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            if let Some(routed) = &ctx.hub {
                return pay_chunks_routed(&ctx, routed, job, &completed).await;
            }
            let attempted = retrieve_with_retries(&ctx, job).await;
            if attempted.1.is_ok() {
                completed.fetch_add(1, Ordering::SeqCst);
            }
            attempted
        });
    }
    tasks
}

/// Up to [`ATTEMPTS`] tries at `job`.
async fn retrieve_with_retries(ctx: &RoundContext, job: Job) -> Attempted {
    let mut failures = Vec::new();
    for _ in 0..ATTEMPTS {
        match retrieve_once(ctx, job).await {
            Ok(got) => return (job, Ok(got), failures),
            Err(e) => {
                failures.push(e.to_string());
                tokio::time::sleep(RETRY_PAUSE).await;
            }
        }
    }
    let error = anyhow!("retrieval failed {ATTEMPTS} times: {}", failures.join("; "));
    (job, Err(error), failures)
}

async fn retrieve_once(ctx: &RoundContext, job: Job) -> anyhow::Result<Retrieved> {
    let rpc = ctx.nodes[ctx.providers + job.client].read().await.rpc.clone();
    let channel = ctx
        .channels
        .get(&(job.client, job.provider))
        .ok_or_else(|| anyhow!("no channel for the pair"))?;
    let root = &ctx.roots[job.provider];
    rpc.paych_retrieve(channel, root, &ctx.max_price).await
}

/// A retrieval's chunks paid through the hub, one invoice each, each payment tried up to
/// [`ATTEMPTS`] times with a fresh invoice and counted in `paid` once its receipt came.
async fn pay_chunks_routed(
    ctx: &RoundContext,
    routed: &RoutedChunks,
    job: Job,
    paid_count: &AtomicUsize,
) -> Attempted {
    let mut got = Retrieved::default();
    let mut failures = Vec::new();
    for chunk in 0..routed.chunks {
        let mut paid = false;
        for _ in 0..ATTEMPTS {
            match pay_routed_once(ctx, routed, job).await {
                Ok((receipt, micros)) => {
                    got.receipts.push(receipt);
                    got.payment_micros.push(micros);
                    got.chunks += 1;
                    paid_count.fetch_add(1, Ordering::SeqCst);
                    paid = true;
                    break;
                }
                Err(e) => {
                    got.unresolved += 1;
                    failures.push(e.to_string());
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
        if !paid {
            let error = anyhow!(
                "chunk {chunk}'s routed payment failed {ATTEMPTS} times: {}",
                failures.join("; ")
            );
            return (job, Err(error), failures);
        }
    }
    (job, Ok(got), failures)
}

/// One routed payment of a chunk: the provider's invoice, paid by the client through the
/// hub; the receipt and the latency of paying it (the invoice's issue not counted), µs.
async fn pay_routed_once(
    ctx: &RoundContext,
    routed: &RoutedChunks,
    job: Job,
) -> anyhow::Result<(RoutedPaid, u64)> {
    let (provider, payee) = {
        let node = ctx.nodes[job.provider].read().await;
        (node.rpc.clone(), node.address)
    };
    let hubs = vec![routed.hub.clone()];
    let invoice = provider.paych_invoice(&payee, &ctx.max_price, INVOICE_EXPIRY_SECS, hubs).await?;
    let client = ctx.nodes[ctx.providers + job.client].read().await.rpc.clone();
    // A hub being restarted is waited for, as a provider being restarted is by its lock
    // above (the lock is not held while paying: the crash must find routes in flight).
    drop(ctx.nodes[routed.hub_index].read().await);
    let start = std::time::Instant::now();
    let receipt = client.paych_pay_invoice(&invoice.text).await?;
    let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
    if receipt.payment_hash != invoice.payment_hash {
        anyhow::bail!("the receipt is for {}, not {}", receipt.payment_hash, invoice.payment_hash);
    }
    let paid = RoutedPaid {
        amount: parse_amount_field("Amount", &receipt.amount).context("the receipt's amount")?,
        fee: parse_amount_field("Fee", &receipt.fee).context("the receipt's fee")?,
    };
    Ok((paid, micros))
}

impl RoundOutcome {
    /// Counts one finished job; its failure fails the round.
    fn record(&mut self, (job, result, failures): Attempted) -> anyhow::Result<()> {
        let pair = format!("client-{} from provider-{}", job.client, job.provider);
        self.retries += failures.len();
        let room = MAX_RETRY_REASONS.saturating_sub(self.retry_reasons.len());
        self.retry_reasons.extend(failures.iter().take(room).map(|r| format!("{pair}: {r}")));
        let got = result.with_context(|| {
            format!("client-{} retrieving from provider-{}", job.client, job.provider)
        })?;
        self.retrieved.push((job, got));
        Ok(())
    }

    /// Retrievals completed.
    pub fn retrievals(&self) -> usize {
        self.retrieved.len()
    }

    /// Payments made (vouchers sent, or routed payments).
    pub fn payments(&self) -> usize {
        self.retrieved.iter().map(|(_, got)| got.payment_micros.len()).sum()
    }

    /// Chunks paid for.
    pub fn chunks(&self) -> u64 {
        self.retrieved.iter().map(|(_, got)| got.chunks).sum()
    }

    /// Bytes retrieved and checked.
    pub fn bytes(&self) -> u64 {
        self.retrieved.iter().map(|(_, got)| got.bytes).sum()
    }

    /// Each payment's latency, µs.
    pub fn latencies_us(&self) -> impl Iterator<Item = u64> + '_ {
        self.retrieved.iter().flat_map(|(_, got)| got.payment_micros.iter().copied())
    }

    /// The routed payments' receipts, each with its job.
    pub fn receipts(&self) -> impl Iterator<Item = (Job, &RoutedPaid)> + '_ {
        self.retrieved.iter().flat_map(|(job, got)| got.receipts.iter().map(|r| (*job, r)))
    }

    /// Routed payments tried and failed, per pair.
    pub fn unresolved(&self) -> BTreeMap<Pair, usize> {
        let mut unresolved: BTreeMap<Pair, usize> = BTreeMap::new();
        for (job, got) in &self.retrieved {
            *unresolved.entry((job.client, job.provider)).or_default() += got.unresolved;
        }
        unresolved
    }

    /// The lanes paid on in this round, per pair.
    pub fn lanes(&self) -> BTreeMap<Pair, BTreeSet<u64>> {
        let mut lanes: BTreeMap<Pair, BTreeSet<u64>> = BTreeMap::new();
        for (job, got) in &self.retrieved {
            if let Some(lane) = got.lane {
                lanes.entry((job.client, job.provider)).or_default().insert(lane);
            }
        }
        lanes
    }
}
