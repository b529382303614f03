//! The feedback service: surveys, tickets, measures and trends.
//!
//! # Layout
//! - [`grpc`]: the `FeedbackService` handlers.
//!
//! The foundation serves the whole v1 contract so that integrators can see
//! it; methods not built yet answer UNIMPLEMENTED (the feedback issue
//! fills them in).

pub mod grpc;

use std::sync::Arc;

use cairn_contract::feedback::v1::feedback_service_server::FeedbackServiceServer;
use cairn_runtime::server::{ServiceParts, Shared};
use cairn_runtime::{Result, ServiceKind, Settings, storage as db};
use tonic::service::Routes;

/// Applies the feedback service's migrations (none yet).
pub async fn migrate(settings: &Settings) -> Result<()> {
    db::connect_service(settings, ServiceKind::Feedback)
        .await
        .map(|_| ())
}

/// Connects the service and returns what the runtime serves.
pub async fn start(shared: &Shared) -> Result<ServiceParts> {
    let db = db::connect_service(&shared.settings, ServiceKind::Feedback).await?;
    let server = cairn_runtime::limited!(
        FeedbackServiceServer::new(grpc::FeedbackApi),
        shared.settings
    );
    Ok(ServiceParts {
        kind: ServiceKind::Feedback,
        routes: Routes::new(server),
        grpc_services: vec![grpc::SERVICE_NAME],
        scopes: grpc::scopes(),
        readiness: Arc::new(db::DatabaseReady(db)),
    })
}
