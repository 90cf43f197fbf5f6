//! The route side of the watchtower (design §9 step 7): [`Routes`] is the
//! [`Watcher`] a node's [`paych_core::watch::Watchtower`] scans the chain for. It watches the
//! outbound channels of its open routes (a payee redeeming the hub's conditional voucher on
//! chain, with its secret, instead of answering), wants the secrets of the routes it does
//! not know the secret of yet, and uses each one found at once ([`Routes::secret_found`]:
//! learned durably, and a hub lands the payer's voucher with it).

use paych_core::watch::{FoundSecret, WatchSet, Watcher};

use super::{is_open, Routes};

#[async_trait::async_trait]
impl Watcher for Routes {
    fn watched(&self) -> WatchSet {
        let mut set = WatchSet::new();
        for route in self.open_routes(super::sweep::MAX_ROUTES_PER_PASS).unwrap_or_default() {
            if let Some(leg) = route.outbound.as_ref() {
                set.watch(leg.channel, self.channel_id(&leg.channel));
            }
        }
        set
    }

    fn wants(&self, payment_hash: &[u8]) -> bool {
        matches!(
            self.inner.manager.store().route(payment_hash),
            Ok(Some(route)) if is_open(route.state) && route.secret.is_none()
        )
    }

    async fn found(&self, found: FoundSecret) -> Result<(), String> {
        tracing::info!(channel = %found.channel, lane = found.lane, message = %found.message, "secret found on chain");
        self.secret_found(&found.payment_hash, &found.secret)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
