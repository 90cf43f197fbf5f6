//! The Lotus client against a node behind TLS and a gateway: a certificate it does not trust
//! fails at once with the cause named, a CA file makes it trusted, and a client configured
//! for a gateway never asks for a method the gateway lacks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::chain::lotus::{LotusChain, LotusConfigError};
use paych_core::chain::{ActorKind, Chain, ChainError, TlsError};
use paych_testkit::tls::GatewayOverTls;

fn devnet() -> Devnet {
    Devnet::new(DevnetConfig::default()).unwrap()
}

#[tokio::test]
async fn an_untrusted_certificate_fails_with_its_cause_and_is_not_retried() {
    let devnet = devnet();
    let gateway = GatewayOverTls::start(&devnet).await;
    let mut config = gateway.config(false);
    config.retries = 3;
    config.backoff = Duration::from_millis(10);
    let chain = LotusChain::new(config).unwrap();
    let err = chain.head().await.unwrap_err();
    assert!(matches!(&err, ChainError::Tls(TlsError::NotTrusted(_))), "{err:?}");
    assert!(err.to_string().starts_with("TLS: certificate not trusted: "), "{err}");
    assert_eq!(gateway.proxy.connections(), 1, "a TLS failure is not retried");
}

#[tokio::test]
async fn a_ca_file_makes_a_private_nodes_certificate_trusted() {
    let devnet = devnet();
    devnet.mine(3);
    let gateway = GatewayOverTls::start(&devnet).await;
    let chain = gateway.client();
    assert_eq!(chain.head().await.unwrap(), 3);
    assert_eq!(chain.network_name().await.unwrap(), "paych-devnet");
    assert_eq!(gateway.proxy.failed_handshakes(), 0);
}

#[tokio::test]
async fn a_missing_or_empty_ca_file_is_a_configuration_error() {
    let devnet = devnet();
    let gateway = GatewayOverTls::start(&devnet).await;
    let dir = tempfile::tempdir().unwrap();
    for (path, contents) in
        [(dir.path().join("absent.pem"), None), (dir.path().join("empty.pem"), Some(""))]
    {
        if let Some(text) = contents {
            std::fs::write(&path, text).unwrap();
        }
        let mut config = gateway.config(false);
        config.ca_file = Some(path.clone());
        let err = LotusChain::new(config).unwrap_err();
        assert!(matches!(&err, LotusConfigError::CaFile { path: p, .. } if *p == path), "{err}");
    }
}

#[tokio::test]
async fn a_client_configured_for_a_gateway_finds_actor_codes_in_the_table() {
    let devnet = devnet();
    let gateway = GatewayOverTls::start(&devnet).await;
    let mut config = gateway.config(true);
    config.gateway = true;
    let chain = LotusChain::new(config).unwrap();
    assert!(chain.is_gateway());
    let code = chain.actor_code(ActorKind::PaymentChannel).await.unwrap();
    assert_eq!(code, devnet.actor_code_cids()["paymentchannel"]);
    let init = chain.actor(&paych_core::types::Address::new_id(1)).await.unwrap().unwrap();
    assert_eq!(init.kind, ActorKind::Init);
}

#[tokio::test]
async fn a_gateway_answers_method_not_found_for_state_actor_code_cids() {
    let devnet = devnet();
    let gateway = GatewayOverTls::start(&devnet).await;
    let chain = gateway.client();
    let err = chain.actor_code_cids(25).await.unwrap_err();
    assert!(
        matches!(&err, ChainError::Unsupported(m) if m == "method 'Filecoin.StateActorCodeCIDs' not found"),
        "{err:?}"
    );
}
