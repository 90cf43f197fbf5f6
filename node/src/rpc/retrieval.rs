//! The paid-retrieval methods: `PaychRetrievalPublish` (a blob offered for paid retrieval,
//! paid to the wallet's default address) and `PaychRetrieve` (a blob fetched and paid for
//! chunk by chunk). Each makes one call to the node's retrieval provider or client.

use paych_core::jsonrpc::RpcError;
use paych_core::lotus_json::amount_text;
use paych_core::lotus_json::api::{ManifestJson, RetrievedJson};
use paych_core::wallet::Wallet;

use super::context::{handlers, method_error, Api};
use super::envelope::invalid_param;
use super::methods::*;
use super::params::{BlobData, PublishSpec};
use crate::retrieval;

handlers! {
    PaychRetrievalPublish(api, (spec,)) => {
        let invalid = |e: String| invalid_param(PaychRetrievalPublish::NAME, 0, e);
        let manifest = publish(api, spec).await.map_err(invalid)?;
        Ok(ManifestJson {
            root: hex::encode(&manifest.root),
            size: manifest.size,
            chunk_size: manifest.chunk_size,
            chunks: manifest.chunks(),
            price_per_chunk: amount_text(&manifest.price_per_chunk),
            payee: api.address_text(&manifest.payee),
        })
    };
    PaychRetrieve(api, (ch, root, per_chunk, total)) => {
        // A retrieval never pays a price the caller did not bound.
        let limit = retrieval::PriceLimit { per_chunk, total };
        let got =
            retrieval::retrieve(api.payer()?, ch, root.0, limit).await.map_err(method_error)?;
        Ok(RetrievedJson {
            root: hex::encode(&got.manifest.root),
            bytes: got.bytes,
            chunks: got.manifest.chunks(),
            paid: amount_text(&got.paid),
            lane: got.lane,
            payment_micros: got
                .payment_latencies
                .iter()
                .map(|d| micros(*d))
                .collect(),
            first_byte_micros: got.first_byte.map(micros),
            elapsed_micros: micros(got.elapsed),
        })
    };
}

/// A duration in whole microseconds, saturating.
fn micros(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Publishes `spec`'s blob, paid to the wallet's default address.
async fn publish(api: &Api, spec: PublishSpec) -> Result<paych_protocol::Manifest, String> {
    let data = match spec.data {
        BlobData::Bytes(data) => data,
        BlobData::Random(size) => {
            let mut data = vec![0u8; size];
            getrandom::getrandom(&mut data).map_err(|e| e.to_string())?;
            data
        }
    };
    let faults = retrieval::Faults { corrupt_chunk: spec.corrupt_chunk };
    let payee = api
        .wallet
        .default_address()
        .map_err(|e| e.to_string())?
        .ok_or("the wallet has no default address")?;
    let provider = api.retrieval().map_err(|e: RpcError| e.message)?;
    provider
        .publish(data, spec.chunk_size, spec.price_per_chunk, payee, faults)
        .map_err(|e| e.to_string())
}
