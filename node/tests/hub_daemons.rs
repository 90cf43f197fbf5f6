//! Three `paych daemon` processes on one devnet — a payer, a hub (`[hub] enabled = 1`) and a
//! payee — and an invoice paid through the hub over the API: `PaychInvoice` on the payee,
//! `PaychPayInvoice` on the payer, the receipt's secret the invoice's pre-image, and the
//! payee holding the unconditional replacement.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use paych_core::crypto::blake2b_256;
use paych_core::lotus_json as json;
use paych_core::types::{parse_address, Address};
use paych_node::rpc::client::ApiClient;
use paych_node::rpc::methods::*;
use paych_node::rpc::params::{InvoiceHubs, InvoiceText};
use paych_testkit::amounts::atto;
use paych_testkit::daemon::{rpc_url, start_daemon, start_devnet};
use paych_testkit::deadline::DEADLINE;
use serde_json::json;

const PAYCH: &str = env!("CARGO_BIN_EXE_paych");

/// How often a wait asks a daemon again.
const POLL: Duration = Duration::from_millis(50);

/// Gives `addr` money from the devnet's faucet at `devnet_url` and waits until `api` sees it.
async fn faucet(devnet_url: &str, api: &ApiClient, addr: &Address) {
    let funded = reqwest::Client::new()
        .post(devnet_url)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "Devnet.Faucet",
            "params": [json::to_value(addr, paych_core::types::Network::Testnet).unwrap(),
                "10000000000000000000"]}))
        .send()
        .await
        .unwrap();
    assert!(funded.status().is_success());
    let start = Instant::now();
    while api.call::<WalletBalance>((*addr,)).await.unwrap() == "0" {
        assert!(start.elapsed() < DEADLINE, "the faucet's money never arrived");
        tokio::time::sleep(POLL).await;
    }
}

/// A daemon's API, its default address and where it listens (`ADDRESS=MULTIADDR/p2p/ID`).
async fn identity(repo: &Path) -> (ApiClient, Address, String) {
    let api = ApiClient::from_repo(repo).unwrap();
    let addr = api.call::<WalletDefaultAddress>(()).await.unwrap().unwrap();
    let listen = api.call::<NetAddrsListen>(()).await.unwrap();
    let multiaddr = format!("{}/p2p/{}", listen.addrs[0], listen.id);
    (api, parse_address(&addr).unwrap().0, multiaddr)
}

/// A channel from `from` to `to` funded with `amount` (nothing reserved), once it is open.
async fn fund(api: &ApiClient, from: Address, to: Address, amount: u64) -> Address {
    let funded = api.call::<PaychFund>((from, to, atto(amount))).await.unwrap();
    let sentinel = funded.wait_sentinel.unwrap().parse("WaitSentinel").unwrap();
    let channel = api.call::<PaychGetWaitReady>((sentinel,)).await.unwrap();
    parse_address(&channel).unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_pay_an_invoice_through_a_hub_over_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let (_devnet, info) = start_devnet(PAYCH);
    let devnet_url = rpc_url(info.trim_start_matches(':'));

    let payee_repo = dir.path().join("payee");
    let _payee = start_daemon(PAYCH, &payee_repo, &info, &[]);
    let (payee_api, payee_addr, payee_at) = identity(&payee_repo).await;

    // The hub routes, and knows where the payee listens.
    let hub_repo = dir.path().join("hub");
    std::fs::create_dir(&hub_repo).unwrap();
    let private = <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o700);
    std::fs::set_permissions(&hub_repo, private).unwrap();
    std::fs::write(hub_repo.join("config.toml"), "[hub]\nenabled = 1\nfee_base = \"3\"\n").unwrap();
    let payee_peer = format!(
        "{}={payee_at}",
        json::to_value(&payee_addr, paych_core::types::Network::Testnet).unwrap().as_str().unwrap()
    );
    let _hub = start_daemon(PAYCH, &hub_repo, &info, &[payee_peer]);
    let (hub_api, hub_addr, hub_at) = identity(&hub_repo).await;

    let payer_repo = dir.path().join("payer");
    let _payer = start_daemon(PAYCH, &payer_repo, &info, &[]);
    let (payer_api, payer_addr, _) = identity(&payer_repo).await;

    faucet(&devnet_url, &payer_api, &payer_addr).await;
    faucet(&devnet_url, &hub_api, &hub_addr).await;
    let payer_channel = fund(&payer_api, payer_addr, hub_addr, 100_000).await;
    let hub_channel = fund(&hub_api, hub_addr, payee_addr, 100_000).await;

    let hubs = InvoiceHubs::parse_pair(&format!(
        "{}={hub_at}",
        json::to_value(&hub_addr, paych_core::types::Network::Testnet).unwrap().as_str().unwrap()
    ))
    .unwrap();
    let invoice = payee_api
        .call::<PaychInvoice>((payee_addr, atto(1000), 600, InvoiceHubs(vec![hubs])))
        .await
        .unwrap();
    let receipt = payer_api
        .call::<PaychPayInvoice>((InvoiceText(invoice.text.clone()), Some(atto(10))))
        .await
        .unwrap();
    let secret = hex::decode(&receipt.secret).unwrap();
    assert_eq!(hex::encode(blake2b_256(&secret)), invoice.payment_hash);
    assert_eq!((receipt.amount.as_str(), receipt.fee.as_str()), ("1000", "4"), "{receipt:?}");
    let text = |a: &Address| json::to_value(a, paych_core::types::Network::Testnet).unwrap();
    assert_eq!(receipt.channel, text(&payer_channel).as_str().unwrap());
    assert_eq!(receipt.hub, text(&hub_addr).as_str().unwrap());

    // The payee ends up holding the hub's unconditional replacement for the amount.
    let start = Instant::now();
    loop {
        let vouchers = payee_api.call::<PaychVoucherList>((hub_channel,)).await.unwrap();
        let replaced = vouchers
            .iter()
            .any(|v| v.amount == "1000" && v.secret_hash.as_deref().unwrap_or("").is_empty());
        if replaced {
            break;
        }
        assert!(start.elapsed() < DEADLINE, "the payee never got the replacement: {vouchers:?}");
        tokio::time::sleep(POLL).await;
    }
    // Paying it again is refused before anything is signed.
    let again = payer_api.call::<PaychPayInvoice>((InvoiceText(invoice.text), None)).await;
    assert!(again.unwrap_err().to_string().contains("offered before"));

    // The same through the command line: `paych pay-invoice` prints the receipt.
    let second = payee_api
        .call::<PaychInvoice>((
            payee_addr,
            atto(500),
            600,
            InvoiceHubs(vec![hubs_of(&hub_addr, &hub_at)]),
        ))
        .await
        .unwrap();
    let output = std::process::Command::new(PAYCH)
        .args(["pay-invoice", &second.text, "--max-fee", "10 attoFIL", "--repo"])
        .arg(&payer_repo)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{printed} {}", String::from_utf8_lossy(&output.stderr));
    assert!(printed.contains(&format!("Payment Hash: {}", second.payment_hash)), "{printed}");
    let secret_line = printed.lines().find(|l| l.trim_start().starts_with("Secret:")).unwrap();
    let secret = hex::decode(secret_line.split_whitespace().last().unwrap()).unwrap();
    assert_eq!(hex::encode(blake2b_256(&secret)), second.payment_hash);
    // A fee above the bound is refused with the hub's fee named.
    let third = payee_api
        .call::<PaychInvoice>((
            payee_addr,
            atto(500),
            600,
            InvoiceHubs(vec![hubs_of(&hub_addr, &hub_at)]),
        ))
        .await
        .unwrap();
    let output = std::process::Command::new(PAYCH)
        .args(["pay-invoice", &third.text, "--max-fee", "1 attoFIL", "--repo"])
        .arg(&payer_repo)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("fee of 4 attoFIL is above the bound of 1 attoFIL"), "{said}");
}

/// The invoice's entry for the hub at `addr`, listening at `at`.
fn hubs_of(addr: &Address, at: &str) -> paych_core::invoice::Hub {
    paych_core::invoice::Hub { address: *addr, multiaddr: at.to_owned() }
}
