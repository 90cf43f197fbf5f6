//! `paych bench --retrieval`: a paid retrieval beside an unpaid transfer of the same bytes,
//! over the same transport, in the same run — between two nodes in one process (a
//! provider and a client, each a manager on its own sled store with its own networking, on
//! one in-process devnet), directly on loopback and through the latency relay
//! ([`paych_node::relay`]) at each `--delays` value (held that long in each direction), for
//! each `--chunk-sizes` value.
//!
//! Both transfers are the client's `retrieve` of one blob from the provider: the unpaid one
//! with the blob published free, the paid one with the same blob published at a price, so
//! the same chunks cross the same connection with the same pipeline of requests; only the
//! credit window and the payments differ. Each combination runs `--retrieval-rounds` rounds
//! and more while it has run less than `--retrieval-min-secs` (20 s; at most [`MAX_ROUNDS`]:
//! a fast link's rounds are short and spread more),
//! each five pairs of short retrievals and then an unpaid and a paid retrieval of the whole
//! blob, one after the other (alternating which goes first),
//! so that a machine whose speed drifts slows both sides alike. Every link starts with a
//! fresh client (a new connection through that link) and a warm-up retrieval.
//!
//! Reported per link and chunk size: throughput of both (bytes over the retrieval's whole
//! time, the manifest's round trip included, median over the rounds), their ratio (the
//! median of each round's ratio: a round's two retrievals run back to back, so the
//! machine's drift between rounds cancels), time to
//! first byte of both (median over [`TTFB_PAIRS_PER_ROUND`] pairs of short retrievals per
//! round, one of each kind back to back, of the first pipeline's worth of chunks of the blob), and the paid
//! one's excess: the median of each pair's difference (a first byte varies by more than a
//! loopback round trip from one retrieval to the next, so only many pairs show it), the raw round trip of the link (a request the provider refuses at once, p50), and
//! vouchers per paid retrieval. Targets: paid ÷ unpaid throughput ≥ 0.9; paid time to first byte ≤
//! unpaid + one round trip. The ratios are printed, never assumed.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::types::{Address, TokenAmount};
use paych_node::host::{Host, HostConfig};
use paych_node::inbound::InboundConfig;
use paych_node::pay::Payer;
use paych_node::relay::{LinkShape, Relay};
use paych_node::retrieval::{
    self, pipeline_depth, Faults, PriceLimit, RetrievalProvider, Retrieved,
};
use paych_protocol::dial_from::tcp_socket_addr;
use paych_protocol::retrieval::Hash;
use paych_protocol::{RetrievalRequest, RetrievalStatus};
use serde_json::json;

use super::{micros, party, percentile, BenchArgs, Party, STEP_TIMEOUT};

/// What one chunk costs, attoFIL.
const PRICE_PER_CHUNK: u64 = 1000;
/// Raw round trips measured per link.
const RTT_SAMPLES: usize = 20;
/// Rounds of one link and chunk size, at most, however short.
const MAX_ROUNDS: usize = 100;
/// Pairs of short retrievals (one of each kind) timed for their first byte, per round.
const TTFB_PAIRS_PER_ROUND: usize = 5;
/// The target: paid throughput against unpaid, at least.
const TARGET_THROUGHPUT_VS_UNPAID: f64 = 0.9;

/// One link and chunk size, measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The relay's delay each way; zero: straight over loopback, no relay.
    delay_ms: u64,
    chunk_size: u64,
    /// The link's raw request round trip, p50.
    rtt_us: f64,
    /// Median over the rounds, MB/s (10^6 bytes).
    paid_mb_s: f64,
    unpaid_mb_s: f64,
    /// Median over the rounds of each round's paid ÷ unpaid throughput (the two measured
    /// back to back, so that the machine's drift cancels).
    ratio: f64,
    /// Median over the rounds.
    paid_ttfb_us: f64,
    unpaid_ttfb_us: f64,
    /// Median over the pairs of short retrievals of each pair's paid less unpaid time to
    /// first byte (the two run back to back).
    ttfb_excess_us: f64,
    /// Vouchers per paid retrieval, median.
    vouchers: usize,
    /// Rounds measured.
    rounds: usize,
}

impl Row {
    fn throughput_ratio(&self) -> f64 {
        self.ratio
    }

    /// How much later the paid retrieval's first byte came, in round trips of the link.
    fn ttfb_excess_rtts(&self) -> f64 {
        self.ttfb_excess_us / self.rtt_us.max(1e-9)
    }

    fn met(&self) -> bool {
        self.throughput_ratio() >= TARGET_THROUGHPUT_VS_UNPAID && self.ttfb_excess_rtts() <= 1.0
    }

    fn link(&self) -> String {
        match self.delay_ms {
            0 => "loopback".to_owned(),
            d => format!("relay {d} ms"),
        }
    }
}

/// What one `--retrieval` run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrievalReport {
    blob_bytes: u64,
    rounds: usize,
    min_secs: u64,
    rows: Vec<Row>,
}

impl RetrievalReport {
    /// The report as `--json` prints it.
    pub fn json(&self) -> serde_json::Value {
        let rows: Vec<_> = self
            .rows
            .iter()
            .map(|r| {
                json!({
                    "delay_ms": r.delay_ms,
                    "chunk_size": r.chunk_size,
                    "rtt_us": r.rtt_us,
                    "paid_mb_s": r.paid_mb_s,
                    "unpaid_mb_s": r.unpaid_mb_s,
                    "paid_vs_unpaid_throughput": r.throughput_ratio(),
                    "paid_ttfb_us": r.paid_ttfb_us,
                    "unpaid_ttfb_us": r.unpaid_ttfb_us,
                    "ttfb_excess_us": r.ttfb_excess_us,
                    "ttfb_excess_rtts": r.ttfb_excess_rtts(),
                    "vouchers_per_retrieval": r.vouchers,
                    "rounds": r.rounds,
                    "targets_met": r.met(),
                })
            })
            .collect();
        json!({
            "retrieval": true,
            "blob_bytes": self.blob_bytes,
            "rounds": self.rounds,
            "min_secs": self.min_secs,
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "rows": rows,
        })
    }

    /// The report as people read it.
    pub fn table(&self) -> String {
        let mut out = format!(
            "paych bench --retrieval: a blob of {} bytes, at least {} rounds and {} s per row, {} cores\n\n\
             {:<14} {:>8} {:>9} {:>11} {:>11} {:>7} {:>11} {:>11} {:>8} {:>8}  targets\n",
            self.blob_bytes,
            self.rounds,
            self.min_secs,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "link",
            "chunk",
            "rtt",
            "paid",
            "unpaid",
            "ratio",
            "paid ttfb",
            "unpaid ttfb",
            "excess",
            "vouchers",
        );
        for r in &self.rows {
            out.push_str(&format!(
                "{:<14} {:>8} {:>6.2} ms {:>6.1} MB/s {:>6.1} MB/s {:>7.3} {:>8.2} ms {:>8.2} ms {:>5.2} rtt {:>8}  {}\n",
                r.link(),
                r.chunk_size,
                r.rtt_us / 1000.0,
                r.paid_mb_s,
                r.unpaid_mb_s,
                r.throughput_ratio(),
                r.paid_ttfb_us / 1000.0,
                r.unpaid_ttfb_us / 1000.0,
                r.ttfb_excess_rtts(),
                r.vouchers,
                if r.met() { "met" } else { "missed" },
            ));
        }
        out.push_str(&format!(
            "\nratio: paid / unpaid throughput, the median of each round's (target >= \
             {TARGET_THROUGHPUT_VS_UNPAID}); excess: paid time to first byte less unpaid, the median \
             of each pair's, in round trips of the link (target <= 1)\n"
        ));
        out
    }
}

/// The provider's node: its manager, its networking and the blobs it serves.
struct Provider {
    party: Party,
    host: Host,
    blobs: Arc<RetrievalProvider>,
}

/// Runs every combination.
pub async fn measure(args: &BenchArgs, dir: &Path) -> anyhow::Result<RetrievalReport> {
    let blob_bytes = args.blob_mib.saturating_mul(1 << 20);
    let rounds = usize::try_from(args.retrieval_rounds).unwrap_or(1);
    let min_measure = Duration::from_secs(args.retrieval_min_secs);
    let devnet = Devnet::new(DevnetConfig {
        block_time: Some(Duration::from_millis(10)),
        ..DevnetConfig::default()
    })
    .context("cannot start the devnet")?;
    let miner = devnet.start_mining().context("the devnet has no block time")?;
    let provider_party = party(&devnet, dir, "provider", 1).await?;
    let client = party(&devnet, dir, "client", 100).await?;
    let blobs = Arc::new(RetrievalProvider::default());
    let provider_host = start_provider(&provider_party, blobs.clone()).await?;
    let provider = Provider { party: provider_party, host: provider_host, blobs };
    let channel = open_channel(&client, &provider.party).await?;
    miner.abort();

    let data = blob(usize::try_from(blob_bytes).context("the blob is too large")?);
    let mut rows = Vec::new();
    for &delay_ms in &args.delays {
        let link = Link::start(&provider, delay_ms).await?;
        let (host, payer) = link.client(&client, &provider).await?;
        let rtt_us = raw_round_trip(&payer, &link).await?;
        for &chunk_size in &args.chunk_sizes {
            let row = measure_row(
                &payer,
                &provider,
                channel,
                &data,
                chunk_size,
                (rounds, min_measure),
                delay_ms,
                rtt_us,
            )
            .await?;
            rows.push(row);
        }
        host.shutdown(STEP_TIMEOUT).await;
        link.stop();
    }
    provider.host.shutdown(STEP_TIMEOUT).await;
    provider.party.manager.shutdown().await?;
    client.manager.shutdown().await?;
    Ok(RetrievalReport { blob_bytes, rounds, min_secs: args.retrieval_min_secs, rows })
}

/// One link and chunk size: `rounds` unpaid and paid retrievals of `data`.
#[allow(clippy::too_many_arguments)]
async fn measure_row(
    payer: &Payer,
    provider: &Provider,
    channel: Address,
    data: &[u8],
    chunk_size: u64,
    (rounds, min_measure): (usize, Duration),
    delay_ms: u64,
    rtt_us: f64,
) -> anyhow::Result<Row> {
    let get =
        |bytes, is_paid| publish_and_get(payer, provider, channel, bytes, chunk_size, is_paid);
    // Warm up: one retrieval of each kind.
    get(data, false).await?;
    get(data, true).await?;
    // Time to first byte: short retrievals of the first pipeline's worth of chunks.
    let short = &data[..data.len().min(pipeline_depth(chunk_size) * chunk_size as usize)];
    // Each round: its share of the first-byte pairs (in turn unpaid first and paid first),
    // then one long retrieval of each kind (in turn unpaid first and paid first).
    let (mut paid_ttfb, mut unpaid_ttfb) = (Vec::new(), Vec::new());
    let (mut paid, mut unpaid) = (Vec::new(), Vec::new());
    let started = Instant::now();
    let mut round = 0;
    while round < rounds || (started.elapsed() < min_measure && round < MAX_ROUNDS) {
        for pair in 0..TTFB_PAIRS_PER_ROUND {
            let paid_first = pair % 2 == 1;
            for is_paid in [paid_first, !paid_first] {
                let ttfb = ttfb_us(&get(short, is_paid).await?);
                match is_paid {
                    true => paid_ttfb.push(ttfb),
                    false => unpaid_ttfb.push(ttfb),
                }
            }
        }
        let paid_first = round % 2 == 1;
        for is_paid in [paid_first, !paid_first] {
            let got = get(data, is_paid).await?;
            match is_paid {
                true => paid.push(got),
                false => unpaid.push(got),
            }
        }
        round += 1;
    }
    Ok(Row {
        delay_ms,
        chunk_size,
        rtt_us,
        paid_mb_s: median(paid.iter().map(mb_per_s).collect()),
        unpaid_mb_s: median(unpaid.iter().map(mb_per_s).collect()),
        ratio: median(
            paid.iter().zip(&unpaid).map(|(p, u)| mb_per_s(p) / mb_per_s(u).max(1e-9)).collect(),
        ),
        rounds: round,
        ttfb_excess_us: median(paid_ttfb.iter().zip(&unpaid_ttfb).map(|(p, u)| p - u).collect()),
        paid_ttfb_us: median(paid_ttfb),
        unpaid_ttfb_us: median(unpaid_ttfb),
        vouchers: {
            let mut v: Vec<usize> = paid.iter().map(|g| g.payment_latencies.len()).collect();
            v.sort_unstable();
            v.get(v.len() / 2).copied().unwrap_or(0)
        },
    })
}

/// Publishes `bytes` in chunks of `chunk_size` (at the bench's price, or free) and
/// retrieves them from the provider, checked.
async fn publish_and_get(
    payer: &Payer,
    provider: &Provider,
    channel: Address,
    bytes: &[u8],
    chunk_size: u64,
    is_paid: bool,
) -> anyhow::Result<Retrieved> {
    let price = TokenAmount::from_atto(if is_paid { PRICE_PER_CHUNK } else { 0 });
    let limit = PriceLimit::per_chunk(TokenAmount::from_atto(PRICE_PER_CHUNK));
    let payee = provider.party.addr;
    let manifest =
        provider.blobs.publish(bytes.to_vec(), chunk_size, price, payee, Faults::default())?;
    let root = Hash::try_from(manifest.root.as_slice())
        .map_err(|_| anyhow!("a root of the wrong size"))?;
    let retrieving = retrieval::retrieve(payer, channel, root, limit);
    let got = tokio::time::timeout(STEP_TIMEOUT, retrieving)
        .await
        .context("a retrieval took too long")??;
    check(&got, bytes, is_paid)?;
    Ok(got)
}

/// Checks that a retrieval brought the whole blob and paid what it should.
fn check(got: &Retrieved, data: &[u8], paid: bool) -> anyhow::Result<()> {
    if got.bytes != data.len() as u64 {
        bail!("a retrieval brought {} bytes of {}", got.bytes, data.len());
    }
    let due = TokenAmount::from_atto(PRICE_PER_CHUNK) * got.manifest.chunks();
    let expected = if paid { due } else { TokenAmount::default() };
    if got.paid != expected {
        bail!("a retrieval paid {} attoFIL, not {}", got.paid.atto(), expected.atto());
    }
    Ok(())
}

fn mb_per_s(got: &Retrieved) -> f64 {
    got.bytes as f64 / got.elapsed.as_secs_f64().max(1e-9) / 1e6
}

fn ttfb_us(got: &Retrieved) -> f64 {
    got.first_byte.map(micros).unwrap_or(f64::NAN)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `len` bytes that do not compress.
fn blob(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// The provider's networking, serving `blobs`.
async fn start_provider(party: &Party, blobs: Arc<RetrievalProvider>) -> anyhow::Result<Host> {
    let inbound = InboundConfig { retrieval: blobs, ..InboundConfig::default() };
    let config = HostConfig { inbound, ..HostConfig::default() };
    let listen = "/ip4/127.0.0.1/tcp/0".parse()?;
    Ok(Host::start(Keypair::generate_ed25519(), config, party.manager.clone(), listen).await?)
}

/// A channel from `from` to `to` with 10 FIL, waited for.
async fn open_channel(from: &Party, to: &Party) -> anyhow::Result<Address> {
    let handle = from
        .manager
        .create(from.addr, to.addr, TokenAmount::from_whole(10), TokenAmount::default())
        .await?;
    let sentinel = handle.wait_sentinel.context("the channel create sent no message")?;
    Ok(tokio::time::timeout(STEP_TIMEOUT, from.manager.get_wait_ready(&sentinel)).await??)
}

/// How the client reaches the provider: straight, or through a relay.
struct Link {
    relay: Option<Relay>,
    /// The provider's address as the client dials it, ending in `/p2p/<peer id>`.
    target: Multiaddr,
    peer: PeerId,
}

impl Link {
    async fn start(provider: &Provider, delay_ms: u64) -> anyhow::Result<Self> {
        let listen =
            provider.host.listen_addrs().first().context("the provider listens nowhere")?;
        let peer = provider.host.peer_id();
        let (relay, addr) = match delay_ms {
            0 => (None, listen.clone()),
            d => {
                let upstream = tcp_socket_addr(listen)
                    .with_context(|| format!("{listen} is not a TCP address"))?;
                let shape = LinkShape::delay(Duration::from_millis(d));
                let relay = Relay::start("127.0.0.1:0".parse()?, upstream, shape).await?;
                let at = relay.local_addr();
                let addr = Multiaddr::from(at.ip()).with(Protocol::Tcp(at.port()));
                (Some(relay), addr)
            }
        };
        Ok(Link { relay, target: addr.with(Protocol::P2p(peer)), peer })
    }

    /// A fresh client node (a new identity, so a new connection through this link) paying
    /// the provider.
    async fn client(&self, client: &Party, provider: &Provider) -> anyhow::Result<(Host, Payer)> {
        let listen = "/ip4/127.0.0.1/tcp/0".parse()?;
        let host = Host::start(
            Keypair::generate_ed25519(),
            HostConfig::default(),
            client.manager.clone(),
            listen,
        )
        .await?;
        let peers = BTreeMap::from([(provider.party.addr, self.target.clone())]);
        let payer = Payer::new(client.manager.clone(), host.client().clone(), peers);
        Ok((host, payer))
    }

    fn stop(self) {
        if let Some(relay) = self.relay {
            relay.stop();
        }
    }
}

/// The link's raw request round trip, p50: a manifest request for a root the provider does
/// not hold, answered at once.
async fn raw_round_trip(payer: &Payer, link: &Link) -> anyhow::Result<f64> {
    let addrs = vec![link.target.clone()];
    let mut times = Vec::with_capacity(RTT_SAMPLES + 1);
    for i in 0..=RTT_SAMPLES {
        let start = Instant::now();
        let answer = payer
            .network()
            .ask(link.peer, addrs.clone(), RetrievalRequest::manifest([0xee; 32]))
            .await?;
        if answer.status() != Some(RetrievalStatus::NotFound) {
            bail!("the provider answered {:?} for a root it does not hold", answer.status());
        }
        // The first one dials the connection; it is not a round trip of the link.
        if i > 0 {
            times.push(start.elapsed());
        }
    }
    times.sort();
    Ok(micros(percentile(&times, 50)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_targets_compare_paid_with_unpaid_and_the_round_trip() {
        let row = Row {
            delay_ms: 20,
            chunk_size: 65536,
            rtt_us: 40_000.0,
            paid_mb_s: 9.5,
            unpaid_mb_s: 10.0,
            ratio: 0.95,
            paid_ttfb_us: 90_000.0,
            unpaid_ttfb_us: 80_000.0,
            ttfb_excess_us: 10_000.0,
            vouchers: 12,
            rounds: 5,
        };
        assert!((row.throughput_ratio() - 0.95).abs() < 1e-9);
        assert!((row.ttfb_excess_rtts() - 0.25).abs() < 1e-9);
        assert!(row.met());
        let slow = Row { ratio: 0.8, ..row.clone() };
        assert!(!slow.met());
        let late = Row { ttfb_excess_us: 50_000.0, ..row };
        assert!(!late.met());
    }
}
