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
use cairn_runtime::server::{Readiness, ServiceParts, Shared};
use cairn_runtime::{Result, ServiceKind, Settings, storage as db};
use sea_orm::DatabaseConnection;
use tonic::service::Routes;

struct DatabaseReady(DatabaseConnection);

#[async_trait::async_trait]
impl Readiness for DatabaseReady {
    async fn check(&self) -> Result<()> {
        db::ping(&self.0).await
    }
}

async fn connect(settings: &Settings) -> Result<DatabaseConnection> {
    db::connect(
        &settings.database_url(ServiceKind::Recommendation),
        settings.database_max_connections,
    )
    .await
}

/// Applies the recommendation service's migrations (none yet).
pub async fn migrate(settings: &Settings) -> Result<()> {
    connect(settings).await.map(|_| ())
}

/// Connects the service and returns what the runtime serves.
pub async fn start(shared: &Shared) -> Result<ServiceParts> {
    let db = connect(&shared.settings).await?;
    let server = cairn_runtime::limited!(
        RecommendationServiceServer::new(grpc::RecommendationApi),
        shared.settings
    );
    Ok(ServiceParts {
        kind: ServiceKind::Recommendation,
        routes: Routes::new(server),
        grpc_services: vec![grpc::SERVICE_NAME],
        scopes: grpc::scopes(),
        readiness: Arc::new(DatabaseReady(db)),
    })
}
