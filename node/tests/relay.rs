//! The latency relay over real TCP on loopback: bytes cross it intact, in order and
//! half-closed in turn, each direction held for at least its delay and paced to its rate;
//! a payment over libp2p crosses it like any link; a node behind a relay announces the
//! relay and is reached there; and a relay can keep each client's own address.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use libp2p::multiaddr::Protocol;
use libp2p::Multiaddr;
use paych_node::host::HostConfig;
use paych_node::network::NetworkConfig;
use paych_node::reconcile_as_payee::find_peer;
use paych_node::relay::{LinkShape, Relay, RelayError, RelayOptions};
use paych_protocol::VoucherStatus;
use paych_testkit::amounts::atto;
use paych_testkit::deadline::{eventually, within};
use paych_testkit::devnet::Net;
use paych_testkit::node::{host, payer_to, send_voucher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

const LOOPBACK: &str = "127.0.0.1:0";

/// An upstream that echoes every byte back and half-closes when its peer does.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind(LOOPBACK).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.into_split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
                let _ = write.shutdown().await;
            });
        }
    });
    addr
}

/// Bytes no two offsets of which repeat a short pattern: reordering or loss shows.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_cross_the_relay_intact_in_order_and_half_closed_in_turn() {
    let shape =
        LinkShape { delay: Duration::from_millis(2), jitter: Duration::from_millis(3), rate: None };
    let relay = Relay::start(LOOPBACK.parse().unwrap(), echo_server().await, shape).await.unwrap();
    let sent = pattern(3 * 1024 * 1024 + 17);
    let stream = TcpStream::connect(relay.local_addr()).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let to_send = sent.clone();
    let writer = tokio::spawn(async move {
        for piece in to_send.chunks(5_000) {
            write.write_all(piece).await.unwrap();
        }
        // The half-close crosses both ways: the echo ends, and so does what comes back.
        write.shutdown().await.unwrap();
    });
    let mut echoed = Vec::new();
    within("the echo", read.read_to_end(&mut echoed)).await.unwrap();
    writer.await.unwrap();
    assert_eq!(echoed.len(), sent.len());
    assert!(echoed == sent, "the bytes came back changed or reordered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_direction_holds_every_byte_for_at_least_its_delay() {
    let delay = Duration::from_millis(40);
    let relay =
        Relay::start(LOOPBACK.parse().unwrap(), echo_server().await, LinkShape::delay(delay))
            .await
            .unwrap();
    let mut stream = TcpStream::connect(relay.local_addr()).await.unwrap();
    for round in 0..3u8 {
        let start = Instant::now();
        stream.write_all(&[round; 100]).await.unwrap();
        let mut back = [0u8; 100];
        within("the echo", stream.read_exact(&mut back)).await.unwrap();
        assert_eq!(back, [round; 100]);
        // There and back: the delay twice, whatever the machine's speed (a lower bound).
        assert!(start.elapsed() >= 2 * delay, "round {round} took {:?}", start.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_cap_paces_what_a_direction_carries() {
    const RATE: u64 = 2_000_000;
    const BYTES: usize = 400_000;
    let shape = LinkShape { rate: Some(RATE), ..LinkShape::default() };
    let relay = Relay::start(LOOPBACK.parse().unwrap(), echo_server().await, shape).await.unwrap();
    let stream = TcpStream::connect(relay.local_addr()).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        write.write_all(&pattern(BYTES)).await.unwrap();
        write.shutdown().await.unwrap();
    });
    let mut echoed = Vec::new();
    within("the echo", read.read_to_end(&mut echoed)).await.unwrap();
    writer.await.unwrap();
    assert_eq!(echoed, pattern(BYTES));
    // Each direction carries at most RATE bytes a second; all but the first chunk of each
    // waits for its turn (a lower bound).
    let paced = Duration::from_secs_f64((BYTES - 2 * 32 * 1024) as f64 / RATE as f64);
    assert!(start.elapsed() >= paced, "{BYTES} bytes at {RATE}/s took {:?}", start.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_cannot_listen_says_where() {
    let taken = TcpListener::bind(LOOPBACK).await.unwrap();
    let addr = taken.local_addr().unwrap();
    let err = Relay::start(addr, addr, LinkShape::default()).await.unwrap_err();
    assert!(matches!(err, RelayError::Listen { addr: a, .. } if a == addr), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_crosses_the_relay_and_waits_its_round_trip() {
    let delay = Duration::from_millis(25);
    let net = Net::new();
    let (payer, _payee, channel, (payer_net, _, _), (_payee_net, payee_peer, payee_addrs)) =
        net.online_channel(10, 0, atto(1000), HostConfig::default()).await;
    let upstream = tcp_socket(&payee_addrs[0]);
    let relay =
        Relay::start(LOOPBACK.parse().unwrap(), upstream, LinkShape::delay(delay)).await.unwrap();
    let through: Multiaddr =
        format!("/ip4/127.0.0.1/tcp/{}", relay.local_addr().port()).parse().unwrap();

    // The first voucher also dials (through the relay); the second only pays.
    for amount in [10, 20] {
        let voucher = payer.create_voucher(&channel, atto(amount), 0).await;
        let start = Instant::now();
        let response =
            send_voucher(&payer_net, payee_peer, std::slice::from_ref(&through), voucher).await;
        assert_eq!(response.status(), Some(VoucherStatus::Accepted), "{response:?}");
        assert!(start.elapsed() >= 2 * delay, "a payment took {:?}", start.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payer_behind_a_relay_announces_the_relay_and_its_payee_reaches_it_there() {
    let net = Net::new();
    let (payer, payee, channel) = net.channel(10, 10, atto(1_000_000)).await;
    let bound = Relay::bind(LOOPBACK.parse().unwrap()).await.unwrap();
    let front: Multiaddr =
        format!("/ip4/127.0.0.1/tcp/{}", bound.local_addr().port()).parse().unwrap();
    let protocol = paych_protocol::Config { announce: vec![front.clone()], ..Default::default() };
    let behind = HostConfig {
        network: NetworkConfig { protocol, ..NetworkConfig::default() },
        ..HostConfig::default()
    };
    let (payer_net, payer_peer, payer_addrs) = host(payer.m(), behind).await;
    let relay = bound.relay_to(
        tcp_socket(&payer_addrs[0]),
        LinkShape::delay(Duration::from_millis(5)),
        RelayOptions::default(),
    );
    let (payee_net, payee_peer, payee_addrs) = host(payee.m(), HostConfig::default()).await;

    // The first payment announces the payer: at the relay's address, never its own.
    let pay = payer_to(&payer, &payer_net, &payee, payee_peer, &payee_addrs);
    let paid = pay.pay(&channel, atto(100), Some(b"flow".to_vec())).await.unwrap();
    assert_eq!(paid.response.status(), Some(VoucherStatus::Accepted), "{:?}", paid.response);
    let (peer, addrs) = find_peer(payee.m(), &payer.addr).unwrap();
    assert_eq!((peer, addrs.clone()), (payer_peer, vec![front.clone()]));

    // Disconnected, the payee dials the payer back where it announced: through the relay.
    payee_net.disconnect(payer_peer).await.unwrap();
    payer_net.disconnect(payee_peer).await.unwrap();
    let what = "the disconnection";
    eventually(what, || async { !payee_net.peers().await.unwrap().contains(&payer_peer) }).await;
    let dialled = addrs[0].clone().with(Protocol::P2p(payer_peer));
    let back = within("the dial back", payee_net.connect(dialled.clone())).await.unwrap();
    assert_eq!(back, payer_peer);
    let connected = payee_net.peer_addrs().await.unwrap();
    assert!(connected.contains(&(payer_peer, dialled.clone())), "{connected:?} vs {dialled}");
    relay.stop();
}

/// An upstream that writes back the address each connection came from, then closes it.
async fn address_echo_server(listen: &str) -> SocketAddr {
    let listener = TcpListener::bind(listen).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, from)) = listener.accept().await {
            let _ = stream.write_all(from.ip().to_string().as_bytes()).await;
            let _ = stream.shutdown().await;
        }
    });
    addr
}

/// What the upstream saw as the address of a client connecting from `client_ip`.
async fn seen_through(relay: &Relay, client_ip: &str) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{client_ip}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(relay.local_addr()).await.unwrap();
    let mut seen = String::new();
    within("the upstream's answer", stream.read_to_string(&mut seen)).await.unwrap();
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_sees_each_clients_own_loopback_address_when_the_relay_keeps_it() {
    let upstream = address_echo_server("127.0.0.2:0").await;
    let bound = Relay::bind("127.0.0.2:0".parse().unwrap()).await.unwrap();
    let relay = bound.relay_to(
        upstream,
        LinkShape::delay(Duration::from_millis(1)),
        RelayOptions { keep_source_ip: true },
    );
    assert_eq!(seen_through(&relay, "127.0.0.3").await, "127.0.0.3");
    assert_eq!(seen_through(&relay, "127.0.0.4").await, "127.0.0.4");

    // Without the option every client looks like the relay's own host.
    let plain =
        Relay::start("127.0.0.2:0".parse().unwrap(), upstream, LinkShape::default()).await.unwrap();
    assert_ne!(seen_through(&plain, "127.0.0.3").await, "127.0.0.3");
}

/// The TCP socket address of a loopback multiaddr.
fn tcp_socket(addr: &Multiaddr) -> SocketAddr {
    let (mut ip, mut port) = (None, None);
    for part in addr.iter() {
        match part {
            Protocol::Ip4(v4) => ip = Some(v4),
            Protocol::Tcp(p) => port = Some(p),
            _ => {}
        }
    }
    SocketAddr::from((ip.unwrap(), port.unwrap()))
}
