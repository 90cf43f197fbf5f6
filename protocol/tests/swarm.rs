//! Real swarms over loopback TCP (Noise, Yamux): the paych protocols end to end, peers that
//! send garbage, oversized or stalled messages, and connection limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::time::Duration;

use futures::StreamExt;
use libp2p::request_response::InboundFailure;
use libp2p::swarm::{DialError, ListenError, SwarmEvent};
use libp2p::{connection_limits, Multiaddr, PeerId};
use paych_core::combine::{self, PayerView, ReconcilePolicy, ReconcileStatus};
use paych_core::crypto;
use paych_core::types::{Address, LaneState, SignedVoucher, TokenAmount};
use paych_protocol::codec::VOUCHER_REQUEST_MAX_BYTES;
use paych_protocol::{
    Announce, CodecError, Config, LimitKind, ReconcileRequest, ReconcileResponse, SignedPeerRecord,
    VoucherRequest, VoucherStatus,
};
use paych_testkit::keys::{address, key, signed_voucher};
use paych_testkit::raw_peer::{raw_swarm, send_raw};
use paych_testkit::swarm::{
    dial_anew, drive, in_time, listen, new_swarm, payee_accepting, refuse_reconcile,
    request_reconcile, request_voucher, responder, Seen,
};
use tokio::sync::mpsc;

fn channel() -> Address {
    Address::new_id(1001)
}

#[tokio::test]
async fn payee_answers_a_signed_voucher_with_its_delta() {
    in_time(async {
        let payer_key = key(1);
        let (payee_id, payee_addr, mut seen) =
            payee_accepting(&Config::default(), address(&payer_key)).await;

        let mut payer = new_swarm(&Config::default());
        let mut request = VoucherRequest::new(signed_voucher(&payer_key, channel(), 0, 1, 700));
        request.flow = Some(b"retrieval-7".to_vec());
        let response =
            request_voucher(&mut payer, payee_id, &payee_addr, request.clone()).await.unwrap();

        assert_eq!(response.status(), Some(VoucherStatus::Accepted));
        assert_eq!(response.delta, TokenAmount::from_atto(700));
        assert_eq!(response.lane_amount, TokenAmount::from_atto(700));
        let received = next_request(&mut seen).await;
        assert_eq!(received, request, "the payee decoded exactly what was sent");

        // A voucher signed by someone else is answered with a rejection, not a failure.
        let forged = VoucherRequest::new(signed_voucher(&key(9), channel(), 0, 2, 900));
        let response = request_voucher(&mut payer, payee_id, &payee_addr, forged).await.unwrap();
        assert_eq!(response.status(), Some(VoucherStatus::InvalidSignature));
        assert!(response.delta.is_zero());
        assert!(!response.is_held());
    })
    .await;
}

#[tokio::test]
async fn payer_announces_itself_with_a_peer_record_the_payee_can_verify() {
    in_time(async {
        let payer_key = key(1);
        // The payee accepts only an announce whose record names the sending peer.
        let payer_address = address(&payer_key);
        let answer: Box<dyn Fn(PeerId, &VoucherRequest) -> _ + Send> =
            Box::new(move |peer, request: &VoucherRequest| {
                let verified = request
                    .announce
                    .as_ref()
                    .map(|a| a.peer_record.verify())
                    .transpose()
                    .ok()
                    .flatten();
                match verified {
                    Some(v) if v.peer_id == peer && v.address == payer_address => {
                        paych_protocol::VoucherResponse::accepted(
                            request.voucher.amount.clone(),
                            request.voucher.amount.clone(),
                        )
                    }
                    _ => paych_protocol::VoucherResponse::rejected(
                        VoucherStatus::UnknownChannel,
                        TokenAmount::default(),
                        "no verifiable announce",
                    ),
                }
            });
        let (payee_id, payee_addr, _seen) =
            responder(&Config::default(), answer, refuse_reconcile()).await;

        let mut payer = new_swarm(&Config::default());
        let payer_id = *payer.local_peer_id();
        let payer_listen = listen(&mut payer).await;
        let record = SignedPeerRecord::new(&payer_key, &payer_id, &[payer_listen], 1).unwrap();
        let mut request = VoucherRequest::new(signed_voucher(&payer_key, channel(), 0, 1, 10));
        request.announce = Some(Box::new(Announce {
            channel: channel(),
            from: payer_address,
            to: address(&key(2)),
            peer_record: record,
        }));
        let response = request_voucher(&mut payer, payee_id, &payee_addr, request).await.unwrap();
        assert_eq!(response.status(), Some(VoucherStatus::Accepted));
    })
    .await;
}

/// What the payer knows: vouchers it issued on lanes 0, 1 and 2, of which the chain has
/// redeemed lanes 0 and 1.
struct PayerBook {
    key: paych_core::crypto::SecretKey,
    issued: BTreeMap<(u64, u64), SignedVoucher>,
    chain_lanes: BTreeMap<u64, LaneState>,
}

impl PayerBook {
    fn new() -> Self {
        let key = key(1);
        let mut issued = BTreeMap::new();
        for (lane, amount) in [(0, 300), (1, 500), (2, 200)] {
            issued.insert((lane, 4), signed_voucher(&key, channel(), lane, 4, amount));
        }
        let mut chain_lanes = BTreeMap::new();
        for lane in [0, 1] {
            chain_lanes.insert(lane, LaneState { redeemed: TokenAmount::from_atto(100), nonce: 2 });
        }
        PayerBook { key, issued, chain_lanes }
    }

    /// Answers `peer`, which proves the key its request's record was signed by when the
    /// record names it; only the channel's payee (`key(2)`) is answered.
    fn answer(&self, peer: PeerId, request: &ReconcileRequest) -> ReconcileResponse {
        let addresses = [channel()];
        let closed = BTreeSet::new();
        let view = PayerView {
            addresses: &addresses,
            payee: Some(address(&key(2))),
            settling: false,
            issued: &self.issued,
            closed: &closed,
            chain_lanes: &self.chain_lanes,
        };
        let requester = match request.payee_record.verify() {
            Ok(verified) if verified.peer_id == peer => Some(verified.address),
            _ => None,
        };
        match combine::plan_combined(
            &view,
            requester.as_ref(),
            &request.vouchers,
            &request.req_val,
            &ReconcilePolicy::default(),
        ) {
            Ok(plan) => {
                let mut combined = plan.voucher;
                combined.signature =
                    Some(crypto::sign(&self.key, &combined.signing_bytes().unwrap()));
                ReconcileResponse::success(combined)
            }
            Err(refusal) => ReconcileResponse::from(refusal),
        }
    }
}

#[tokio::test]
async fn payer_folds_lanes_into_one_combined_voucher_or_refuses_with_a_status() {
    in_time(async {
        let book = PayerBook::new();
        let payer_address = address(&book.key);
        let voucher = |lane| book.issued[&(lane, 4)].clone();
        let (on_chain, not_on_chain) = (vec![voucher(0), voucher(1)], vec![voucher(1), voucher(2)]);

        let (payer_id, payer_addr, _seen) = responder(
            &Config::default(),
            Box::new(|_, _| unreachable!()),
            Box::new(move |peer, r| book.answer(peer, r)),
        )
        .await;
        let mut payee = new_swarm(&Config::default());
        let payee_record = SignedPeerRecord::new(&key(2), payee.local_peer_id(), &[], 1).unwrap();

        let request = ReconcileRequest {
            vouchers: on_chain.clone(),
            req_val: TokenAmount::from_atto(790),
            payee_record: payee_record.clone(),
        };
        let response =
            request_reconcile(&mut payee, payer_id, &payer_addr, request.clone()).await.unwrap();
        assert_eq!(response.status(), Some(ReconcileStatus::Success));
        let combined = response.combined.expect("a combined voucher");
        let held: BTreeMap<u64, u64> = [(0, 4), (1, 4)].into();
        combine::check_combined(&on_chain, &request.req_val, &held, &combined).unwrap();
        crypto::verify(
            combined.signature.as_ref().unwrap(),
            &payer_address,
            &combined.signing_bytes().unwrap(),
        )
        .unwrap();

        let refused = ReconcileRequest {
            vouchers: not_on_chain,
            req_val: TokenAmount::from_atto(1),
            payee_record: payee_record.clone(),
        };
        let response = request_reconcile(&mut payee, payer_id, &payer_addr, refused).await.unwrap();
        assert_eq!(response.status(), Some(ReconcileStatus::LaneNotOnChain));
        assert!(response.combined.is_none());
        assert!(response.message.is_some_and(|m| m.contains("lane 2")));

        // Another peer sending the payee's record, or its own record signed by another key,
        // proves nothing: refused.
        let mut stranger = new_swarm(&Config::default());
        let replayed = ReconcileRequest { payee_record, ..request.clone() };
        let response =
            request_reconcile(&mut stranger, payer_id, &payer_addr, replayed).await.unwrap();
        assert_eq!(response.status(), Some(ReconcileStatus::NotPayee));
        let own = SignedPeerRecord::new(&key(9), stranger.local_peer_id(), &[], 1).unwrap();
        let own = ReconcileRequest { payee_record: own, ..request };
        let response = request_reconcile(&mut stranger, payer_id, &payer_addr, own).await.unwrap();
        assert_eq!(response.status(), Some(ReconcileStatus::NotPayee));
    })
    .await;
}

// --- misbehaving peers -----------------------------------------------------------------

/// The next inbound voucher failure the responder reports, skipping other observations.
async fn next_voucher_failure(seen: &mut mpsc::Receiver<Seen>) -> (PeerId, InboundFailure) {
    loop {
        match seen.recv().await.expect("responder running") {
            Seen::VoucherInboundFailure(peer, error) => return (peer, error),
            Seen::Voucher(..) => panic!("a misbehaving peer's request was answered"),
            _ => {}
        }
    }
}

/// The next voucher request the responder answered.
async fn next_request(seen: &mut mpsc::Receiver<Seen>) -> VoucherRequest {
    loop {
        if let Seen::Voucher(_, request) = seen.recv().await.expect("responder running") {
            return *request;
        }
    }
}

fn codec_error(failure: &InboundFailure) -> CodecError {
    match failure {
        InboundFailure::Io(e) => CodecError::from_io(e).cloned().expect("a codec error"),
        other => panic!("expected an I/O failure carrying a codec error, got {other:?}"),
    }
}

/// A payee with `config` accepting key 1's vouchers, facing `attacker`.
async fn payee_and_attacker<A>(
    config: &Config,
    attacker: A,
) -> (PeerId, Multiaddr, mpsc::Receiver<Seen>, A) {
    let (payee_id, payee_addr, seen) = payee_accepting(config, address(&key(1))).await;
    (payee_id, payee_addr, seen, attacker)
}

/// Checks that an honest payer still gets answers from `payee`.
async fn honest_payer_is_still_answered(payee_id: PeerId, payee_addr: &Multiaddr) {
    let mut honest = new_swarm(&Config::default());
    let request = VoucherRequest::new(signed_voucher(&key(1), channel(), 3, 1, 42));
    let response = request_voucher(&mut honest, payee_id, payee_addr, request).await.unwrap();
    assert_eq!(response.status(), Some(VoucherStatus::Accepted));
}

#[tokio::test]
async fn payee_reports_malformed_cbor_as_an_inbound_failure_and_keeps_answering() {
    in_time(async {
        let (payee_id, payee_addr, mut seen, mut attacker) =
            payee_and_attacker(&Config::default(), raw_swarm(false)).await;
        let attacker_id = *attacker.local_peer_id();
        // An array of three integers: CBOR, but not a voucher request.
        send_raw(&mut attacker, payee_id, &payee_addr, vec![0x83, 0x01, 0x02, 0x03]).await;
        let (peer, failure) = next_voucher_failure(&mut seen).await;
        assert_eq!(peer, attacker_id);
        assert!(
            matches!(&failure, InboundFailure::Io(e) if e.kind() == io::ErrorKind::InvalidData)
        );
        assert!(matches!(
            codec_error(&failure),
            CodecError::Decode { what: "voucher request", .. }
        ));

        // Not CBOR at all.
        send_raw(&mut attacker, payee_id, &payee_addr, vec![0xff, 0x00, 0x13]).await;
        let (_, failure) = next_voucher_failure(&mut seen).await;
        assert!(matches!(codec_error(&failure), CodecError::Decode { .. }));

        honest_payer_is_still_answered(payee_id, &payee_addr).await;
    })
    .await;
}

#[tokio::test]
async fn payee_refuses_an_oversized_request_without_reading_it_all_and_keeps_answering() {
    in_time(async {
        let (payee_id, payee_addr, mut seen, mut attacker) =
            payee_and_attacker(&Config::default(), raw_swarm(false)).await;
        let oversized = vec![0x40; 4 * VOUCHER_REQUEST_MAX_BYTES];
        send_raw(&mut attacker, payee_id, &payee_addr, oversized).await;
        let (_, failure) = next_voucher_failure(&mut seen).await;
        assert!(
            matches!(&failure, InboundFailure::Io(e) if e.kind() == io::ErrorKind::InvalidData)
        );
        assert_eq!(
            codec_error(&failure),
            CodecError::TooLarge { what: "voucher request", limit: VOUCHER_REQUEST_MAX_BYTES }
        );

        honest_payer_is_still_answered(payee_id, &payee_addr).await;
    })
    .await;
}

#[tokio::test]
async fn payee_times_out_a_peer_that_stalls_mid_message_and_keeps_answering() {
    in_time(async {
        let config = Config { read_timeout: Duration::from_millis(300), ..Config::default() };
        let (payee_id, payee_addr, mut seen, mut attacker) =
            payee_and_attacker(&config, raw_swarm(true)).await;
        // The start of a voucher request, and then nothing.
        attacker.behaviour_mut().send_request_with_addresses(
            &payee_id,
            vec![0x83, 0x8b],
            vec![payee_addr.clone()],
        );
        let attacker_loop = drive(attacker);
        let (_, failure) = next_voucher_failure(&mut seen).await;
        assert!(matches!(&failure, InboundFailure::Io(e) if e.kind() == io::ErrorKind::TimedOut));
        assert!(matches!(codec_error(&failure), CodecError::Timeout { .. }));
        attacker_loop.abort();

        honest_payer_is_still_answered(payee_id, &payee_addr).await;
    })
    .await;
}

// --- connection limits -----------------------------------------------------------------

fn one_per_peer() -> Config {
    Config { max_established_per_peer: 1, ..Config::default() }
}

#[tokio::test]
async fn dialer_denies_itself_a_second_connection_to_the_same_peer() {
    in_time(async {
        let (listener_id, addr, _seen) =
            payee_accepting(&Config::default(), address(&key(1))).await;

        let mut dialer = new_swarm(&one_per_peer());
        dial_anew(&mut dialer, listener_id, &addr);
        loop {
            if let SwarmEvent::ConnectionEstablished { .. } = dialer.select_next_some().await {
                break;
            }
        }
        dial_anew(&mut dialer, listener_id, &addr);
        let cause = loop {
            match dialer.select_next_some().await {
                SwarmEvent::OutgoingConnectionError {
                    error: DialError::Denied { cause }, ..
                } => break cause,
                SwarmEvent::ConnectionEstablished { num_established, .. } => {
                    panic!("a second connection was established ({num_established})")
                }
                _ => {}
            }
        };
        let exceeded = cause.downcast::<connection_limits::Exceeded>().expect("a limit");
        assert_eq!(exceeded.limit(), 1);
        assert_eq!(dialer.network_info().connection_counters().num_established(), 1);
    })
    .await;
}

#[tokio::test]
async fn listener_denies_a_second_connection_from_the_same_peer() {
    in_time(async {
        let (listener_id, addr, mut seen) =
            payee_accepting(&one_per_peer(), address(&key(1))).await;

        // The dialer allows itself two connections; the listener allows one.
        let mut dialer = new_swarm(&Config::default());
        let dialer_id = *dialer.local_peer_id();
        for _ in 0..2 {
            dial_anew(&mut dialer, listener_id, &addr);
        }
        let dialer_loop = drive(dialer);
        let mut established = Vec::new();
        let denied = loop {
            match seen.recv().await.expect("listener running") {
                Seen::Established(peer, n) => established.push((peer, n)),
                Seen::IncomingDenied(limit) => break limit,
                _ => {}
            }
        };
        assert_eq!(established, vec![(dialer_id, 1)]);
        assert_eq!(denied, Some(1), "denied for exceeding the per-peer limit");
        dialer_loop.abort();

        // The one connection still works.
        honest_payer_is_still_answered(listener_id, &addr).await;
    })
    .await;
}

/// Dials a listener with `config` from `identities` swarms (all from 127.0.0.1), each
/// dialling `dials_each` times, and returns the limit named by the listener's first denial.
async fn first_inbound_denial(config: Config, identities: usize, dials_each: usize) -> LimitKind {
    let mut listener = new_swarm(&config);
    let addr = listen(&mut listener).await;
    let listener_id = *listener.local_peer_id();
    let mut dialers = Vec::new();
    for _ in 0..identities {
        let mut dialer = new_swarm(&Config::default());
        for _ in 0..dials_each {
            dial_anew(&mut dialer, listener_id, &addr);
        }
        dialers.push(drive(dialer));
    }
    let kind = loop {
        if let SwarmEvent::IncomingConnectionError {
            error: ListenError::Denied { cause }, ..
        } = listener.select_next_some().await
        {
            break LimitKind::of(&cause).expect("denied by a connection limit");
        }
    };
    for dialer in dialers {
        dialer.abort();
    }
    kind
}

#[tokio::test]
async fn each_connection_limit_that_denies_a_connection_is_named() {
    in_time(async {
        let per_ip = Config { max_inbound_per_ip: 1, ..Config::default() };
        assert_eq!(first_inbound_denial(per_ip, 2, 1).await, LimitKind::InboundPerIp);
        assert_eq!(first_inbound_denial(one_per_peer(), 1, 2).await, LimitKind::EstablishedPerPeer);
        let incoming = Config { max_established_incoming: 1, ..Config::default() };
        assert_eq!(first_inbound_denial(incoming, 2, 1).await, LimitKind::EstablishedIncoming);
        let total = Config { max_established: 1, ..Config::default() };
        assert_eq!(first_inbound_denial(total, 2, 1).await, LimitKind::EstablishedTotal);
        let no_pending = Config { max_pending_incoming: 0, ..Config::default() };
        assert_eq!(first_inbound_denial(no_pending, 1, 1).await, LimitKind::PendingIncoming);

        let mut dialer = new_swarm(&Config { max_pending_outgoing: 0, ..Config::default() });
        let addr: Multiaddr = "/ip4/127.0.0.1/tcp/9".parse().unwrap();
        match dialer.dial(addr) {
            Err(DialError::Denied { cause }) => {
                assert_eq!(LimitKind::of(&cause), Some(LimitKind::PendingOutgoing))
            }
            other => panic!("the dial was not denied: {other:?}"),
        }
    })
    .await;
}

#[tokio::test]
async fn listener_denies_connections_from_one_address_beyond_its_cap_whatever_the_identities() {
    in_time(async {
        let (listener_id, addr, mut seen) = payee_accepting(
            &Config { max_inbound_per_ip: 2, ..Config::default() },
            address(&key(1)),
        )
        .await;

        // Two identities from 127.0.0.1 hold a connection each: the address is full.
        let mut holders = Vec::new();
        for _ in 0..2 {
            let mut holder = new_swarm(&Config::default());
            holder.dial(addr.clone()).unwrap();
            loop {
                if let SwarmEvent::ConnectionEstablished { .. } = holder.select_next_some().await {
                    break;
                }
            }
            holders.push(drive(holder));
        }
        // A third identity from the same address is turned away.
        let mut third = new_swarm(&Config::default());
        let request = VoucherRequest::new(signed_voucher(&key(1), channel(), 3, 1, 42));
        let refused = request_voucher(&mut third, listener_id, &addr, request).await;
        assert!(refused.is_err(), "{refused:?}");
        let denied = loop {
            match seen.recv().await.expect("listener running") {
                Seen::IncomingDeniedPerIp(limit) => break limit,
                Seen::Voucher(..) => panic!("the third identity was answered"),
                _ => {}
            }
        };
        assert_eq!(denied, 2);

        // Once a holder leaves, its slot is free again.
        holders.pop().unwrap().abort();
        let request = VoucherRequest::new(signed_voucher(&key(1), channel(), 3, 1, 42));
        let answered = loop {
            let mut again = new_swarm(&Config::default());
            // The listener may not have seen the holder's connection close yet.
            if let Ok(response) =
                request_voucher(&mut again, listener_id, &addr, request.clone()).await
            {
                break response;
            }
        };
        assert_eq!(answered.status(), Some(VoucherStatus::Accepted));
    })
    .await;
}

#[tokio::test]
async fn a_peer_that_connects_and_does_nothing_is_disconnected_after_the_idle_timeout() {
    in_time(async {
        let config =
            Config { idle_connection_timeout: Duration::from_secs(1), ..Config::default() };
        let mut listener = new_swarm(&config);
        let addr = listen(&mut listener).await;
        // The idle peer would keep the connection for a minute; the listener does not.
        let mut idle = new_swarm(&Config::default());
        idle.dial(addr).unwrap();
        let idle_loop = drive(idle);
        let mut established = false;
        loop {
            match listener.select_next_some().await {
                SwarmEvent::ConnectionEstablished { .. } => established = true,
                SwarmEvent::ConnectionClosed { .. } => break,
                _ => {}
            }
        }
        assert!(established);
        assert_eq!(listener.network_info().connection_counters().num_established(), 0);
        idle_loop.abort();
    })
    .await;
}

#[tokio::test]
async fn a_node_dials_from_its_own_address_and_identify_shares_only_what_it_announces() {
    in_time(async {
        let mut listener = new_swarm(&Config::default());
        let listener_addr = listen(&mut listener).await;
        let announced: Multiaddr = "/ip4/127.0.0.9/tcp/4242".parse().unwrap();
        let config = Config {
            dial_from: Some("127.0.0.5".parse().unwrap()),
            announce: vec![announced.clone()],
            ..Config::default()
        };
        let mut dialer = new_swarm(&config);
        // A listen address of its own, which identify must not share.
        dialer.listen_on("/ip4/127.0.0.5/tcp/0".parse().unwrap()).unwrap();
        let dialer_id = *dialer.local_peer_id();
        dial_anew(&mut dialer, *listener.local_peer_id(), &listener_addr);
        let dialer_task = drive(dialer);

        let (mut came_from, mut shared) = (None, None);
        while came_from.is_none() || shared.is_none() {
            match listener.select_next_some().await {
                SwarmEvent::ConnectionEstablished { peer_id, endpoint, .. }
                    if peer_id == dialer_id =>
                {
                    came_from = Some(endpoint.get_remote_address().clone());
                }
                SwarmEvent::Behaviour(paych_protocol::Event::Identify(event)) => {
                    if let libp2p::identify::Event::Received { peer_id, info, .. } = *event {
                        if peer_id == dialer_id {
                            shared = Some(info.listen_addrs);
                        }
                    }
                }
                _ => {}
            }
        }
        dialer_task.abort();
        let came_from = came_from.unwrap();
        assert!(came_from.to_string().starts_with("/ip4/127.0.0.5/tcp/"), "{came_from}");
        assert_eq!(shared.unwrap(), vec![announced]);
    })
    .await;
}
