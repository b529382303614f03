//! The recommendation service: next best action.
//!
//! # Layout
//! - [`grpc`]: the `RecommendationService` handlers.
//!
//! The foundation serves the whole v1 contract so that integrators can see
//! it; methods not built yet answer UNIMPLEMENTED (the recommendation issue
//! fills them in).

pub mod grpc;

use std::sync::Arc;

use cairn_contract::recommendation::v1::recommendation_service_server::RecommendationServiceServer;
use cairn_runtime::server::{ServiceParts, Shared};
use cairn_runtime::{Result, ServiceKind, Settings, storage as db};
use tonic::service::Routes;

/// Applies the recommendation service's migrations (none yet).
pub async fn migrate(settings: &Settings) -> Result<()> {
    db::connect_service(settings, ServiceKind::Recommendation)
        .await
        .map(|_| ())
}

/// Connects the service and returns what the runtime serves.
pub async fn start(shared: &Shared) -> Result<ServiceParts> {
    let db = db::connect_service(&shared.settings, ServiceKind::Recommendation).await?;
    let server = cairn_runtime::limited!(
        RecommendationServiceServer::new(grpc::RecommendationApi),
        shared.settings
    );
    Ok(ServiceParts {
        kind: ServiceKind::Recommendation,
        routes: Routes::new(server),
        grpc_services: vec![grpc::SERVICE_NAME],
        scopes: grpc::scopes(),
        readiness: Arc::new(db::DatabaseReady(db)),
    })
}
