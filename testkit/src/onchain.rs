//! Parties acting on a chain directly, with raw keys and no manager: funded from a devnet's
//! faucet, sending signed messages through a [`Chain`] — the devnet in process, or a Lotus
//! client of the devnet served over JSON-RPC as `paych devnet` serves it — creating channels
//! through the Init actor and redeeming vouchers (with a secret, for conditional ones). For
//! tests of what the chain shows.

use std::sync::Arc;
use std::time::Duration;

use paych_core::chain::devnet::{Devnet, DevnetConfig};
use paych_core::chain::lotus::LotusChain;
use paych_core::chain::{ActorKind, Chain, MessageLookup};
use paych_core::crypto::{self, SecretKey};
use paych_core::types::{
    decode, paych_method, Address, ConstructorParams, ExecParams, ExecReturn, Message,
    SignedVoucher, TokenAmount, UpdateChannelStateParams, INIT_ACTOR_ID, INIT_EXEC_METHOD,
};
use paych_node::rpc::devnet::RpcServer;

use crate::amounts::fil;
use crate::keys::{address, key};

/// The longest a test waits for a mined message.
const WAIT: Duration = Duration::from_secs(10);

/// A devnet, mined on demand, and the chain the parties use to reach it.
pub struct OnChain {
    /// The devnet (to mine and fund).
    pub devnet: Devnet,
    /// The chain as the parties and the code under test see it.
    pub chain: Arc<dyn Chain>,
    /// The devnet's JSON-RPC server when the chain is a Lotus client of it.
    server: Option<RpcServer>,
}

/// A key and its address.
pub struct Party {
    /// The secp256k1 key.
    pub key: SecretKey,
    /// Its f1 address.
    pub address: Address,
}

impl OnChain {
    /// A devnet reached in process.
    pub fn in_process() -> Self {
        let devnet = Devnet::new(DevnetConfig::default()).unwrap();
        OnChain { chain: Arc::new(devnet.clone()), devnet, server: None }
    }

    /// A devnet served over JSON-RPC on loopback, reached with the Lotus client.
    pub async fn over_json_rpc() -> Self {
        let devnet = Devnet::new(DevnetConfig::default()).unwrap();
        let server = paych_node::rpc::devnet::serve(devnet.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let chain = Arc::new(LotusChain::from_api_info(&server.api_info()).unwrap());
        OnChain { devnet, chain, server: Some(server) }
    }

    /// Whether the chain is reached over JSON-RPC.
    pub fn is_remote(&self) -> bool {
        self.server.is_some()
    }

    /// The party of key `seed`, funded with `amount` FIL from the faucet.
    pub async fn party(&self, seed: u8, amount: u64) -> Party {
        let key = key(seed);
        let party = Party { address: address(&key), key };
        let cid = self.devnet.faucet(&party.address, fil(amount)).unwrap();
        self.devnet.mine(1);
        self.chain.wait(&cid, 0, WAIT).await.unwrap();
        party
    }

    /// Signs `from`'s message calling `method` of `to` with `value` and `params`, pushes it
    /// through the chain, mines an epoch and answers its lookup (whatever its exit code).
    pub async fn send(
        &self,
        from: &Party,
        to: Address,
        value: TokenAmount,
        method: u64,
        params: Vec<u8>,
    ) -> MessageLookup {
        let nonce = self.chain.next_nonce(&from.address).await.unwrap();
        let message = Message::new(from.address, to, nonce, value, method, params);
        let message = self.chain.estimate_gas(message).await.unwrap();
        let signed = crypto::sign_message(&from.key, message).unwrap();
        let cid = self.chain.push(&signed).await.unwrap();
        self.devnet.mine(1);
        self.chain.wait(&cid, 0, WAIT).await.unwrap()
    }

    /// Creates a channel of `amount` FIL from `payer` to `payee` through the Init actor;
    /// answers its robust and ID addresses.
    pub async fn create_channel(
        &self,
        payer: &Party,
        payee: &Party,
        amount: u64,
    ) -> (Address, Address) {
        let code = self.chain.actor_code(ActorKind::PaymentChannel).await.unwrap();
        let ctor = ConstructorParams { from: payer.address, to: payee.address };
        let ctor = fvm_ipld_encoding::to_vec(&ctor).unwrap();
        let exec = ExecParams { code_cid: code, constructor_params: ctor };
        let exec = fvm_ipld_encoding::to_vec(&exec).unwrap();
        let init = Address::new_id(INIT_ACTOR_ID);
        let created = self.send(payer, init, fil(amount), INIT_EXEC_METHOD, exec).await;
        assert!(created.receipt.is_ok(), "channel creation failed: {created:?}");
        let ret: ExecReturn = decode::decode(&created.receipt.return_data).unwrap();
        (ret.robust_address, ret.id_address)
    }

    /// `payee` submits `voucher` to `channel` with `secret` (empty for none): an
    /// `UpdateChannelState` message, mined; answers its lookup.
    pub async fn redeem(
        &self,
        payee: &Party,
        channel: Address,
        voucher: &SignedVoucher,
        secret: &[u8],
    ) -> MessageLookup {
        let params = UpdateChannelStateParams { sv: voucher.clone(), secret: secret.to_vec() };
        let params = fvm_ipld_encoding::to_vec(&params).unwrap();
        let method = paych_method::UPDATE_CHANNEL_STATE;
        self.send(payee, channel, TokenAmount::default(), method, params).await
    }
}
