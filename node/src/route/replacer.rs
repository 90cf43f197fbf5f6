//! Replacements to one peer sent together.
//!
//! A routed payment's unconditional replacements go to the hub (from the payer) and to the
//! payee (from the hub) after the payer has its receipt, off the payment's path. So that
//! many routes do not each cost an exchange, the replacements made for one peer while a
//! request to it is out wait for it and then go together — up to
//! [`MAX_REPLACEMENTS_PER_REQUEST`] in one `ReplaceMany` request, whose intakes the receiver
//! runs together, sharing its store's flushes. Nothing waits on purpose: a lone replacement
//! goes at once, as a `Replace`. A batch the receiver refuses as a whole is sent again one
//! replacement at a time, so that each learns its own answer (a replacement taken before is
//! acknowledged again).
//!
//! Each peer has a queue of at most [`QUEUE_LEN`] replacements and a task that sends them; a
//! task with nothing to send for [`IDLE`] ends. At most [`MAX_QUEUES`] peers have one at a
//! time: beyond, or with a full queue, a replacement is sent alone, at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use paych_core::types::SignedVoucher;
use paych_protocol::route::MAX_REPLACEMENTS_PER_REQUEST;
use paych_protocol::{RouteReplacement, RouteRequest, RouteStatus};
use tokio::sync::{mpsc, oneshot};

use crate::network::NetworkClient;

/// Replacements waiting for one peer, at most.
pub const QUEUE_LEN: usize = 256;
/// Peers with a queue of their own, at most.
pub const MAX_QUEUES: usize = 1024;
/// How long a peer's task waits for a replacement before it ends.
pub const IDLE: Duration = Duration::from_secs(5);

/// What became of a replacement sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// The receiver took it (or had before).
    Taken,
    /// The receiver refused it; this binds nobody.
    Refused {
        /// The receiver's status.
        status: RouteStatus,
        /// Its explanation.
        message: String,
    },
    /// The receiver could not be reached, or its answer did not come.
    Unreachable(String),
}

impl Sent {
    /// Whether `receiver` (named in the log) took it; a refusal, or a failure to reach it,
    /// is logged.
    pub fn taken_by(self, receiver: &str) -> bool {
        match self {
            Sent::Taken => true,
            Sent::Refused { status, message } => {
                tracing::warn!(%status, %message, receiver, "the replacement was refused");
                false
            }
            Sent::Unreachable(e) => {
                tracing::warn!(error = %e, receiver, "cannot send the replacement");
                false
            }
        }
    }
}

/// One replacement waiting to be sent, and who waits for its answer.
struct Queued {
    payment_hash: Vec<u8>,
    voucher: SignedVoucher,
    addrs: Vec<Multiaddr>,
    reply: oneshot::Sender<Sent>,
}

/// Sends replacements, together where several wait for one peer. Cheap to share.
pub struct Replacer {
    net: NetworkClient,
    queues: Mutex<HashMap<PeerId, mpsc::Sender<Queued>>>,
}

impl Replacer {
    /// A replacer sending through `net`.
    pub fn new(net: NetworkClient) -> Arc<Self> {
        Arc::new(Replacer { net, queues: Mutex::new(HashMap::new()) })
    }

    /// Sends `voucher`, the replacement of the route of `payment_hash`, to `peer` (reachable
    /// at `addrs`), with the others waiting for it; what became of it.
    pub async fn send(
        self: &Arc<Self>,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        payment_hash: Vec<u8>,
        voucher: SignedVoucher,
    ) -> Sent {
        let (reply, answer) = oneshot::channel();
        let mut queued = Queued { payment_hash, voucher, addrs, reply };
        // A queue whose task just ended is closed: a second try makes a new one.
        for _ in 0..2 {
            let Some(queue) = self.queue(peer) else { break };
            match queue.try_send(queued) {
                Ok(()) => {
                    return answer.await.unwrap_or_else(|_| {
                        Sent::Unreachable("the replacement's sender stopped".into())
                    })
                }
                Err(mpsc::error::TrySendError::Full(back)) => {
                    queued = back;
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(back)) => {
                    queued = back;
                    self.forget(peer, &queue);
                }
            }
        }
        self.send_alone(peer, queued.addrs, queued.payment_hash, queued.voucher).await
    }

    /// The replacements waiting for `peer` now, not yet in a request.
    pub fn waiting(&self, peer: PeerId) -> usize {
        let Ok(queues) = self.queues.lock() else { return 0 };
        queues.get(&peer).map_or(0, |q| q.max_capacity() - q.capacity())
    }

    /// `peer`'s queue, made (with its task) if it has none; `None` when too many peers
    /// have one.
    fn queue(self: &Arc<Self>, peer: PeerId) -> Option<mpsc::Sender<Queued>> {
        let mut queues = self.queues.lock().ok()?;
        if let Some(queue) = queues.get(&peer).filter(|q| !q.is_closed()) {
            return Some(queue.clone());
        }
        if queues.len() >= MAX_QUEUES && !queues.contains_key(&peer) {
            return None;
        }
        let (queue, waiting) = mpsc::channel(QUEUE_LEN);
        queues.insert(peer, queue.clone());
        let replacer = self.clone();
        let own = queue.clone();
        tokio::spawn(async move { replacer.run(peer, own, waiting).await });
        Some(queue)
    }

    /// Drops `peer`'s queue from the map if it is still `queue`.
    fn forget(&self, peer: PeerId, queue: &mpsc::Sender<Queued>) {
        if let Ok(mut queues) = self.queues.lock() {
            if queues.get(&peer).is_some_and(|q| q.same_channel(queue)) {
                queues.remove(&peer);
            }
        }
    }

    /// `peer`'s task: sends what waits, as much of it at once as a request takes, until
    /// nothing came for [`IDLE`]; then leaves the map, closes its queue and sends what came
    /// in meanwhile.
    async fn run(
        self: Arc<Self>,
        peer: PeerId,
        own: mpsc::Sender<Queued>,
        mut waiting: mpsc::Receiver<Queued>,
    ) {
        loop {
            let first = match tokio::time::timeout(IDLE, waiting.recv()).await {
                Ok(Some(first)) => first,
                Ok(None) => return,
                Err(_) => break,
            };
            let mut batch = vec![first];
            while batch.len() < MAX_REPLACEMENTS_PER_REQUEST {
                match waiting.try_recv() {
                    Ok(next) => batch.push(next),
                    Err(_) => break,
                }
            }
            self.send_batch(peer, batch).await;
        }
        self.forget(peer, &own);
        drop(own);
        waiting.close();
        let mut rest = Vec::new();
        while let Ok(next) = waiting.try_recv() {
            rest.push(next);
        }
        while !rest.is_empty() {
            let tail = rest.split_off(rest.len().min(MAX_REPLACEMENTS_PER_REQUEST));
            self.send_batch(peer, std::mem::replace(&mut rest, tail)).await;
        }
    }

    /// Sends `batch` to `peer` in one request and answers each replacement's waiter. A
    /// request names a payment hash once: a replacement queued again for a hash already in
    /// the batch is sent alone, after it.
    async fn send_batch(&self, peer: PeerId, batch: Vec<Queued>) {
        let mut seen = std::collections::HashSet::new();
        let (batch, again): (Vec<Queued>, Vec<Queued>) =
            batch.into_iter().partition(|q| seen.insert(q.payment_hash.clone()));
        self.send_together(peer, batch).await;
        for q in again {
            let sent = self.send_alone(peer, q.addrs, q.payment_hash, q.voucher).await;
            let _ = q.reply.send(sent);
        }
    }

    /// [`Self::send_batch`] of replacements on distinct payment hashes.
    async fn send_together(&self, peer: PeerId, mut batch: Vec<Queued>) {
        if batch.len() == 1 {
            if let Some(q) = batch.pop() {
                let sent = self.send_alone(peer, q.addrs, q.payment_hash, q.voucher).await;
                let _ = q.reply.send(sent);
            }
            return;
        }
        let addrs = batch.first().map(|q| q.addrs.clone()).unwrap_or_default();
        let replacements = batch
            .iter()
            .map(|q| RouteReplacement {
                payment_hash: q.payment_hash.clone(),
                voucher: q.voucher.clone(),
            })
            .collect();
        tracing::debug!(%peer, count = batch.len(), "replacements sent together");
        let request = RouteRequest::ReplaceMany { replacements };
        match self.net.ask(peer, addrs, request).await {
            Ok(r) if r.status.is_ok() => {
                for q in batch {
                    let _ = q.reply.send(Sent::Taken);
                }
            }
            Ok(r) => {
                tracing::debug!(%peer, status = %r.status, message = %r.message, "replacements refused together; sent again one by one");
                let alone = batch.into_iter().map(|q| async move {
                    let sent = self.send_alone(peer, q.addrs, q.payment_hash, q.voucher).await;
                    let _ = q.reply.send(sent);
                });
                futures::future::join_all(alone).await;
            }
            Err(e) => {
                for q in batch {
                    let _ = q.reply.send(Sent::Unreachable(e.to_string()));
                }
            }
        }
    }

    /// Sends one replacement in a request of its own.
    async fn send_alone(
        &self,
        peer: PeerId,
        addrs: Vec<Multiaddr>,
        payment_hash: Vec<u8>,
        voucher: SignedVoucher,
    ) -> Sent {
        let request = RouteRequest::Replace { payment_hash, voucher };
        match self.net.ask(peer, addrs, request).await {
            Ok(r) if r.status.is_ok() => Sent::Taken,
            Ok(r) => Sent::Refused { status: r.status, message: r.message },
            Err(e) => Sent::Unreachable(e.to_string()),
        }
    }
}
