//! JSON-RPC requests to the node's API, as a caller sends them: the fuzz bytes are the body
//! of `POST /rpc/v1`, sent over loopback to a real API server (`serve_api`) over a real
//! payee's manager on a devnet, with an inbound channel from a real payer.
//!
//! The first byte picks the credentials: none (read only), a read token, a write token, or
//! a token that does not verify. Write is the most granted: methods that sign or send chain
//! messages are refused before their parameters are read, so the fuzzer never moves money
//! or the chain; `Filecoin.WalletNew` (which writes a key file per call) and
//! `Filecoin.StateWaitMsg` (which waits up to an hour for a message that never lands) are not
//! sent. The
//! payee's store is kept between inputs, so `Filecoin.PaychVoucherAdd` builds on what
//! earlier inputs stored.
//!
//! Checked: the server answers every request (a panic in a handler would abort the
//! process) with one of go-jsonrpc's statuses; a body it reads gets a JSON-RPC 2.0 answer
//! (an array of them for a batch; nothing for a notification); and no answer is an internal
//! error (code -32603), which the API keeps for its own failures, never for bad input.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use paych_core::jsonrpc::error_code;
use paych_core::network::FilNetwork;
use paych_fuzz::on_a_manual_net;
use paych_node::rpc::auth::{self, Permission};
use paych_node::rpc::server::{serve_api, ApiServer};
use paych_testkit::amounts::atto;
use paych_testkit::devnet::{Net, Node};
use serde_json::Value;

const SECRET: [u8; auth::SECRET_LEN] = [42; auth::SECRET_LEN];

struct World {
    runtime: tokio::runtime::Runtime,
    _net: Net,
    _payer: Node,
    _payee: Node,
    server: ApiServer,
    client: reqwest::Client,
    tokens: [Option<String>; 4],
}

static WORLD: OnceLock<World> = OnceLock::new();

fn world() -> &'static World {
    WORLD.get_or_init(|| {
        let (runtime, (net, payer, payee, server)) = on_a_manual_net(|net| async move {
            let (payer, payee, _) = net.channel(10, 10, atto(1000)).await;
            payer.m().shutdown().await.expect("payer shutdown");
            let server = serve_api(
                payee.m().clone(),
                payee.wallet.clone(),
                SECRET.to_vec(),
                FilNetwork::Devnet,
                "127.0.0.1:0".parse().expect("an address"),
            )
            .await
            .expect("the API serves");
            (net, payer, payee, server)
        });
        let tokens = [
            None,
            Some(auth::issue(&SECRET, &Permission::Read.up_to())),
            Some(auth::issue(&SECRET, &Permission::Write.up_to())),
            Some(auth::issue(&[7; auth::SECRET_LEN], &Permission::Admin.up_to())),
        ];
        World {
            runtime,
            _net: net,
            _payer: payer,
            _payee: payee,
            server,
            client: reqwest::Client::new(),
            tokens,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&who, body)) = data.split_first() else { return };
    if body.windows(9).any(|w| w == b"WalletNew") || body.windows(12).any(|w| w == b"StateWaitMsg")
    {
        return;
    }
    let w = world();
    let token = &w.tokens[usize::from(who) % w.tokens.len()];
    w.runtime.block_on(async {
        let url = format!("http://{}/rpc/v1", w.server.local_addr());
        let mut request =
            w.client.post(url).header("Content-Type", "application/json").body(body.to_vec());
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("the API answers every request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("the answer is read in full");
        match status {
            401 => assert_eq!(usize::from(who) % 4, 3, "a valid token refused: {text}"),
            // go-jsonrpc's statuses: 200, 400 for an invalid request, 500 for the other
            // envelope errors; a notification that ran gets HTTP 200 and no body.
            200 | 400 | 500 => {
                if text.is_empty() {
                    assert_eq!(status, 200, "an empty answer with HTTP {status}");
                    return;
                }
                let answer: Value = serde_json::from_str(&text).expect("a JSON answer");
                let answers = match answer {
                    Value::Array(answers) => answers,
                    one => vec![one],
                };
                for answer in answers {
                    assert_eq!(answer["jsonrpc"], "2.0", "{text}");
                    let code = answer["error"]["code"].as_i64();
                    assert_ne!(
                        code,
                        Some(error_code::INTERNAL_ERROR),
                        "an internal error for a caller's request: {text}\nrequest: {}",
                        String::from_utf8_lossy(body)
                    );
                }
            }
            other => panic!("HTTP {other} for a request: {text}"),
        }
    });
});
