//! TLS in front of a plain server on loopback, for tests of clients that dial `https`: a
//! test CA and a certificate it signs for `localhost` and `127.0.0.1`, both made with
//! rcgen when the proxy starts, and a tokio-rustls proxy (ring) that ends TLS and relays the
//! bytes to the server over TCP.
//!
//! The proxy counts the TCP connections it accepts and the TLS handshakes that fail, so a
//! test can show that a client gave up on a certificate at once rather than retrying.
//! [`GatewayOverTls`] puts it in front of a devnet served as a Lotus gateway
//! (`paych devnet --gateway`'s server) and makes Lotus clients of it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use paych_core::chain::devnet::Devnet;
use paych_core::chain::lotus::{ApiInfo, LotusChain, LotusConfig};
use paych_node::rpc::devnet::{serve_methods, Methods, RpcServer};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_rustls::TlsAcceptor;

/// A CA made for one test, and a server certificate it signed for `localhost` and
/// `127.0.0.1`.
pub struct TestCa {
    /// The CA's certificate, PEM: what a client's CA file holds.
    pub ca_pem: String,
    /// The server's certificate, DER.
    pub server_cert: CertificateDer<'static>,
    /// The server certificate's private key, PKCS#8 DER.
    pub server_key: Vec<u8>,
}

impl TestCa {
    /// A fresh CA and server certificate (ECDSA P-256).
    pub fn new() -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "paych test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let mut server =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        server.distinguished_name.push(DnType::CommonName, "localhost");
        let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key).unwrap();
        TestCa {
            ca_pem: ca_cert.pem(),
            server_cert: server_cert.der().clone(),
            server_key: server_key.serialize_der(),
        }
    }

    /// Writes the CA's certificate to `dir/ca.pem` and answers the path.
    pub fn write_ca_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join("ca.pem");
        std::fs::write(&path, &self.ca_pem).unwrap();
        path
    }

    fn server_config(&self) -> ServerConfig {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![self.server_cert.clone()], key)
            .unwrap()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

/// A TLS proxy on 127.0.0.1 in front of a TCP server. Dropping it stops it.
pub struct TlsProxy {
    addr: SocketAddr,
    ca: TestCa,
    connections: Arc<AtomicUsize>,
    handshakes: Arc<AtomicUsize>,
    failed_handshakes: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TlsProxy {
    /// A proxy with a fresh [`TestCa`], relaying to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let ca = TestCa::new();
        let acceptor = TlsAcceptor::from(Arc::new(ca.server_config()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let handshakes = Arc::new(AtomicUsize::new(0));
        let failed_handshakes = Arc::new(AtomicUsize::new(0));
        let (accepted, done, failed) =
            (connections.clone(), handshakes.clone(), failed_handshakes.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let (acceptor, done, failed) = (acceptor.clone(), done.clone(), failed.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(client).await else {
                        failed.fetch_add(1, Ordering::SeqCst);
                        return;
                    };
                    done.fetch_add(1, Ordering::SeqCst);
                    let Ok(mut server) = TcpStream::connect(upstream).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut server).await;
                });
            }
        });
        TlsProxy { addr, ca, connections, handshakes, failed_handshakes, task }
    }

    /// The address the proxy listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API info a Lotus client dials the proxy with: `:/ip4/127.0.0.1/tcp/PORT/https`.
    pub fn api_info(&self) -> String {
        format!(":/ip4/127.0.0.1/tcp/{}/https", self.addr.port())
    }

    /// The CA whose certificate the proxy presents a certificate of.
    pub fn ca(&self) -> &TestCa {
        &self.ca
    }

    /// The TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// The TLS handshakes completed so far.
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    /// The TLS handshakes that failed so far (a client that did not trust the certificate).
    pub fn failed_handshakes(&self) -> usize {
        self.failed_handshakes.load(Ordering::SeqCst)
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A devnet served with a Lotus gateway's methods only ([`Methods::Gateway`]), behind a
/// [`TlsProxy`], and the CA file a client trusts it with.
pub struct GatewayOverTls {
    /// The devnet's JSON-RPC server (plain HTTP on loopback).
    pub server: RpcServer,
    /// The TLS proxy in front of it.
    pub proxy: TlsProxy,
    /// The test CA's certificate, as a PEM file.
    pub ca_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl GatewayOverTls {
    /// Serves `devnet` as a gateway on loopback, behind a fresh TLS proxy.
    pub async fn start(devnet: &Devnet) -> Self {
        let listen = "127.0.0.1:0".parse().unwrap();
        let server = serve_methods(devnet.clone(), listen, Methods::Gateway).await.unwrap();
        let proxy = TlsProxy::start(server.local_addr()).await;
        let dir = tempfile::tempdir().unwrap();
        let ca_file = proxy.ca().write_ca_file(dir.path());
        GatewayOverTls { server, proxy, ca_file, _dir: dir }
    }

    /// A Lotus client configuration dialling the proxy over `https`, trusting the test CA
    /// through its CA file when `trust_ca` (else only the system's roots).
    pub fn config(&self, trust_ca: bool) -> LotusConfig {
        let mut config = LotusConfig::new(ApiInfo::parse(&self.proxy.api_info()).unwrap());
        config.ca_file = trust_ca.then(|| self.ca_file.clone());
        config
    }

    /// A Lotus client trusting the test CA.
    pub fn client(&self) -> LotusChain {
        LotusChain::new(self.config(true)).unwrap()
    }
}
