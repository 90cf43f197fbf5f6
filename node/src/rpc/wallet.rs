//! The `Filecoin.Wallet*` methods: the node's keystore, and balances read from the chain.
//! Each makes one call to the [`KeyStore`](paych_core::wallet::KeyStore) (or the chain);
//! key operations run on a blocking thread.

use paych_core::lotus_json::amount_text;
use paych_core::wallet::Wallet;

use super::context::{handlers, method_error};
use super::methods::*;
use super::params::KeyType;

handlers! {
    WalletNew(api, (KeyType::Secp256k1,)) => {
        let wallet = api.wallet.clone();
        let addr = tokio::task::spawn_blocking(move || wallet.new_key())
            .await
            .map_err(method_error)?
            .map_err(method_error)?;
        Ok(api.address_text(&addr))
    };
    WalletList(api, ()) => {
        let keys = api.wallet.list().map_err(method_error)?;
        Ok(keys.iter().map(|a| api.address_text(a)).collect())
    };
    WalletHas(api, (addr,)) => Ok(api.wallet.has(&addr));
    WalletDefaultAddress(api, ()) => {
        let addr = api.wallet.default_address().map_err(method_error)?;
        Ok(addr.map(|a| api.address_text(&a)))
    };
    WalletBalance(api, (addr,)) => {
        let actor = api.manager.chain().actor(&addr).await.map_err(method_error)?;
        Ok(amount_text(&actor.map(|a| a.balance).unwrap_or_default()))
    };
    WalletExport(api, (addr,)) => api.wallet.export(&addr).map_err(method_error);
    WalletImport(api, (info,)) => {
        let wallet = api.wallet.clone();
        let addr = tokio::task::spawn_blocking(move || wallet.import(&info))
            .await
            .map_err(method_error)?
            .map_err(method_error)?;
        Ok(api.address_text(&addr))
    };
}
