//! A TCP relay that gives a loopback link the shape of a wide-area one: every byte, in each
//! direction, is held for a one-way delay (plus, optionally, a jitter drawn per chunk) and
//! paced to an optional rate. This machine's kernels may have no `netem` queueing
//! discipline, so the bench, the testnet and the tests put this relay between two nodes
//! instead: a node dials the relay's address, the relay dials the real one.
//!
//! Bytes never reorder: a chunk is delivered at its arrival plus the delay and its jitter,
//! or right after the chunk before it, whichever is later. Each direction holds at most
//! [`MAX_QUEUED_CHUNKS`] chunks of at most [`CHUNK_BYTES`] bytes; a sender beyond that waits
//! (TCP back-pressure), and a relay takes at most [`MAX_CONNECTIONS`] connections at once
//! (more are closed on arrival). A half-close crosses the relay once the bytes before it
//! have; either side failing ends the connection.
//!
//! With [`RelayOptions::keep_source_ip`], the relay's upstream connection leaves from the
//! address its client came from (any port): on Linux every 127.0.0.0/8 address is local, so
//! nodes on 127.0.0.2, 127.0.0.3, … still look like distinct hosts to whatever the relay
//! stands in front of. A relay may be bound first ([`Relay::bind`]) and told its upstream
//! later, so that its address can be handed out before the upstream exists.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The most bytes one read takes, and so the largest chunk a direction queues.
pub const CHUNK_BYTES: usize = 32 * 1024;
/// The most chunks a direction holds in flight (with [`CHUNK_BYTES`]: 8 MiB).
pub const MAX_QUEUED_CHUNKS: usize = 256;
/// The most connections a relay carries at once.
pub const MAX_CONNECTIONS: usize = 1024;
/// The longest delay or jitter a shape takes (a typo in a unit should not stall a run for
/// hours).
pub const MAX_DELAY: Duration = Duration::from_secs(60);

/// Why a link shape could not be read or a relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The shape's text is not `DELAY[,JITTER[,RATE]]`.
    #[error("link shape {text:?}: {why}")]
    BadShape {
        /// The text given.
        text: String,
        /// What is wrong with it.
        why: String,
    },
    /// The relay's socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// The socket's error.
        source: std::io::Error,
    },
}

/// How a relay shapes each direction of a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkShape {
    /// The one-way delay every byte takes, each direction.
    pub delay: Duration,
    /// At most this much more, drawn uniformly per chunk (never reordering bytes).
    pub jitter: Duration,
    /// The most bytes per second each direction carries; `None`: no cap.
    pub rate: Option<u64>,
}

impl LinkShape {
    /// A link that only delays.
    pub fn delay(delay: Duration) -> Self {
        LinkShape { delay, ..LinkShape::default() }
    }

    /// The time `bytes` take at the rate cap (zero without one).
    fn pacing(&self, bytes: usize) -> Duration {
        match self.rate {
            Some(rate) if rate > 0 => {
                let bytes = u64::try_from(bytes).unwrap_or(u64::MAX);
                Duration::from_nanos(bytes.saturating_mul(1_000_000_000) / rate)
            }
            _ => Duration::ZERO,
        }
    }
}

/// `DELAY[,JITTER[,RATE]]`: durations as `20ms`, `1s` (see [`crate::parse_duration`]), the
/// rate in bytes per second with an optional `k`, `M` or `G` (powers of 1000), e.g.
/// `50ms,5ms,10M`.
impl FromStr for LinkShape {
    type Err = RelayError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = |why: String| RelayError::BadShape { text: text.to_owned(), why };
        let parts: Vec<&str> = text.split(',').map(str::trim).collect();
        if parts.len() > 3 {
            return Err(bad("expected DELAY[,JITTER[,RATE]]".into()));
        }
        let duration = |part: &str| -> Result<Duration, RelayError> {
            let d = crate::parse_duration(part).map_err(bad)?;
            if d > MAX_DELAY {
                return Err(bad(format!("{part} is above the longest, {}s", MAX_DELAY.as_secs())));
            }
            Ok(d)
        };
        let delay = duration(parts[0])?;
        let jitter = parts.get(1).map(|p| duration(p)).transpose()?.unwrap_or_default();
        let rate = parts.get(2).map(|p| parse_rate(p).map_err(bad)).transpose()?;
        Ok(LinkShape { delay, jitter, rate })
    }
}

/// Bytes per second: digits, then `k`, `M` or `G` (powers of 1000) or nothing; never zero.
fn parse_rate(text: &str) -> Result<u64, String> {
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 =
        number.parse().map_err(|_| format!("rate {text:?}: expected e.g. 500k or 10M"))?;
    let scale = match unit {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => return Err(format!("rate {text:?}: the unit must be k, M or G")),
    };
    match value.checked_mul(scale) {
        Some(0) => Err(format!("rate {text:?}: a link must carry something")),
        Some(rate) => Ok(rate),
        None => Err(format!("rate {text:?}: too large")),
    }
}

/// How a relay makes its upstream connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RelayOptions {
    /// Bind each upstream connection to the IP address its client connected from (port 0),
    /// so that the upstream sees the client's address rather than the relay's. The address
    /// must be local (any 127.0.0.0/8 address is, on Linux); if it cannot be bound, the
    /// connection is closed.
    pub keep_source_ip: bool,
}

/// A relay's listener, bound but not relaying yet: connections wait in the socket's
/// backlog until [`BoundRelay::relay_to`] names the upstream.
#[derive(Debug)]
pub struct BoundRelay {
    listener: TcpListener,
    addr: SocketAddr,
}

impl BoundRelay {
    /// Where the relay listens.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Starts relaying every connection to `upstream` with `shape` and `options`.
    pub fn relay_to(self, upstream: SocketAddr, shape: LinkShape, options: RelayOptions) -> Relay {
        let task = tokio::spawn(accept_loop(self.listener, upstream, shape, options));
        Relay { addr: self.addr, upstream, task }
    }
}

/// A running relay: connections to [`Relay::local_addr`] reach `upstream` through the shape.
/// Dropping it (or [`Relay::stop`]) closes the listener and every connection it carries.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    upstream: SocketAddr,
    task: JoinHandle<()>,
}

impl Relay {
    /// Listens on `listen` (port 0: any free port) and relays every connection to
    /// `upstream` with `shape`.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        shape: LinkShape,
    ) -> Result<Relay, RelayError> {
        Ok(Relay::bind(listen).await?.relay_to(upstream, shape, RelayOptions::default()))
    }

    /// Listens on `listen` (port 0: any free port) without relaying yet.
    pub async fn bind(listen: SocketAddr) -> Result<BoundRelay, RelayError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| RelayError::Listen { addr: listen, source })?;
        let addr =
            listener.local_addr().map_err(|source| RelayError::Listen { addr: listen, source })?;
        Ok(BoundRelay { listener, addr })
    }

    /// Where to connect to reach the upstream through the relay.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the relay connects to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Closes the listener and every connection.
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    shape: LinkShape,
    options: RelayOptions,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    // Dropped with this task (the relay stopped): every connection's tasks end with it.
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((inbound, client)) = accepted else {
                    // Out of descriptors, say: wait rather than spin.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::debug!("relay: connection refused, at its cap");
                    continue;
                };
                let source = options.keep_source_ip.then(|| client.ip());
                connections.spawn(async move {
                    let _slot = slot;
                    relay_connection(inbound, upstream, source, shape).await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn relay_connection(
    inbound: TcpStream,
    upstream: SocketAddr,
    source: Option<IpAddr>,
    shape: LinkShape,
) {
    let outbound = match connect_upstream(upstream, source).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::debug!(%upstream, error = %e, "relay: cannot reach the upstream");
            return;
        }
    };
    for stream in [&inbound, &outbound] {
        let _ = stream.set_nodelay(true);
    }
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    // Each direction ends on its own (a half-close); the connection ends with both.
    tokio::join!(direction(in_read, out_write, shape), direction(out_read, in_write, shape));
}

/// Connects to `upstream`, from `source` (any port) when given.
async fn connect_upstream(
    upstream: SocketAddr,
    source: Option<IpAddr>,
) -> std::io::Result<TcpStream> {
    let Some(source) = source else { return TcpStream::connect(upstream).await };
    let socket = match source {
        IpAddr::V4(_) => TcpSocket::new_v4()?,
        IpAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(source, 0))?;
    socket.connect(upstream).await
}

/// One direction: a reader that timestamps chunks, a writer that delivers each when due.
async fn direction(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, shape: LinkShape) {
    let (queue, mut queued) = mpsc::channel::<(Instant, Vec<u8>)>(MAX_QUEUED_CHUNKS);
    let reader = async move {
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let read = tokio::select! {
                read = from.read(&mut buf) => read,
                // The writer gave up (its side closed): nothing read would be delivered.
                () = queue.closed() => break,
            };
            match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let chunk = buf.get(..n).map(<[u8]>::to_vec).unwrap_or_default();
                    if queue.send((Instant::now(), chunk)).await.is_err() {
                        break;
                    }
                }
            }
        }
        // The queue closes here: the writer half-closes once it has delivered the rest.
    };
    let writer = async move {
        let mut jitter = Jitter::new(shape.jitter);
        let mut last_due = Instant::now();
        let mut line_free = Instant::now();
        while let Some((arrived, chunk)) = queued.recv().await {
            let due = (arrived + shape.delay + jitter.next()).max(last_due);
            tokio::time::sleep_until(due).await;
            last_due = due;
            if shape.rate.is_some() {
                let start = line_free.max(Instant::now());
                tokio::time::sleep_until(start).await;
                line_free = start + shape.pacing(chunk.len());
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    tokio::join!(reader, writer);
}

/// A delay drawn uniformly from `[0, max]` per chunk: a small generator seeded from the
/// process's random hasher keys (the jitter needs no cryptographic strength).
struct Jitter {
    max_nanos: u64,
    state: u64,
}

impl Jitter {
    fn new(max: Duration) -> Self {
        let seed = RandomState::new().build_hasher().finish() | 1;
        Jitter { max_nanos: u64::try_from(max.as_nanos()).unwrap_or(u64::MAX), state: seed }
    }

    fn next(&mut self) -> Duration {
        if self.max_nanos == 0 {
            return Duration::ZERO;
        }
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        let draw = self.state.wrapping_mul(0x2545_f491_4f6c_dd1d);
        Duration::from_nanos(draw % self.max_nanos.saturating_add(1))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_shape_reads_delay_jitter_and_rate() {
        let ms = Duration::from_millis;
        assert_eq!("20ms".parse::<LinkShape>().ok(), Some(LinkShape::delay(ms(20))));
        assert_eq!(
            "50ms, 5ms, 10M".parse::<LinkShape>().ok(),
            Some(LinkShape { delay: ms(50), jitter: ms(5), rate: Some(10_000_000) })
        );
        assert_eq!(
            "1s,0ms,500k".parse::<LinkShape>().ok(),
            Some(LinkShape { delay: ms(1000), jitter: ms(0), rate: Some(500_000) })
        );
        assert_eq!("0ms,0ms,7".parse::<LinkShape>().ok().and_then(|s| s.rate), Some(7));
    }

    #[test]
    fn a_bad_shape_is_refused_with_what_is_wrong() {
        for bad in ["", "20", "20ms,", "fast", "20ms,1ms,0", "20ms,1ms,10Q", "2m", "1ms,2ms,3,4"] {
            let err = bad.parse::<LinkShape>().expect_err(bad);
            assert!(matches!(err, RelayError::BadShape { .. }), "{bad}: {err}");
        }
        let err = "20ms,1ms,99999999999G".parse::<LinkShape>().expect_err("overflow");
        assert!(err.to_string().contains("too large"), "{err}");
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        let max = Duration::from_micros(750);
        let mut jitter = Jitter::new(max);
        assert!((0..10_000).map(|_| jitter.next()).all(|d| d <= max));
        assert_eq!(Jitter::new(Duration::ZERO).next(), Duration::ZERO);
    }

    #[test]
    fn pacing_is_bytes_over_the_rate() {
        let shape = LinkShape { rate: Some(1_000_000), ..LinkShape::default() };
        assert_eq!(shape.pacing(500_000), Duration::from_millis(500));
        assert_eq!(LinkShape::default().pacing(500_000), Duration::ZERO);
    }
}
