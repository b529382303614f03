//! The feedback service: surveys with triggers and the once-per-period
//! rule, answers and the measures over them (NPS, CSAT, CES, FCR, churn),
//! comments in many languages with their themes, TMF621 tickets in one
//! shared queue, trends, follow-up tasks, and what recommendation learns.
//!
//! # Layout
//! - [`domain`]: surveys and answer checks, measures with confidence
//!   intervals, language detection and themes, the ticket lifecycle.
//! - [`storage`]: tables, migrations and the transactional store.
//! - [`grpc`]: the `FeedbackService` handlers and the wire conversions.
//! - [`invitations`]: deciding an invitation (consent, period, sampling,
//!   the shared contact budget).
//! - [`peers`]: calls to the profile and recommendation services.
//! - [`events`]: touchpoints that trigger surveys, stage changes, erasure.
//!
//! Events published (through the outbox): `feedback.survey_invited`,
//! `feedback.survey_answered`, `feedback.ticket_changed`.

pub mod domain;
pub mod events;
pub mod grpc;
pub mod invitations;
pub mod peers;
pub mod storage;

use std::sync::Arc;

use cairn_contract::feedback::v1::feedback_service_server::FeedbackServiceServer;
use cairn_runtime::auth::ServiceCredentials;
use cairn_runtime::bus::{ConsumerOptions, spawn_consumer};
use cairn_runtime::inbox::Inbox;
use cairn_runtime::outbox::Outbox;
use cairn_runtime::server::{ServiceParts, Shared};
use cairn_runtime::{Result, ServiceKind, Settings, peer, storage as db};
use tonic::service::Routes;

use crate::storage::FeedbackStore;
use crate::storage::migration::Migrator;

/// Applies the feedback service's migrations to its database.
pub async fn migrate(settings: &Settings) -> Result<()> {
    db::migrate::<Migrator>(
        &db::connect_service(settings, ServiceKind::Feedback).await?,
        "feedback",
    )
    .await
}

/// Connects the service, starts its background work (outbox relay, event
/// consumer) and returns what the runtime serves.
pub async fn start(shared: &Shared) -> Result<ServiceParts> {
    let settings = &shared.settings;
    let db = db::connect_service(settings, ServiceKind::Feedback).await?;
    if settings.migrate_on_start {
        db::migrate::<Migrator>(&db, "feedback").await?;
    }
    let outbox = Outbox::new("feedback_outbox");
    outbox.spawn_relay(
        db.clone(),
        shared.bus.clone(),
        settings.outbox_retention(),
        shared.shutdown.clone(),
    );
    let store = FeedbackStore::new(db.clone(), outbox, Inbox::new("feedback_inbox"));
    let credentials = ServiceCredentials::from_settings(settings, "feedback");
    let profiles = peers::ProfileDirectory::new(peer::channel(
        &settings.peer_address(ServiceKind::Profile),
        credentials.clone(),
        settings.peer_deadline(),
    )?);
    let recommendation = peer::channel(
        &settings.peer_address(ServiceKind::Recommendation),
        credentials,
        settings.peer_deadline(),
    )?;
    let budget = peers::ContactBudget::new(recommendation.clone());
    let decisions = peers::DecisionDirectory::new(recommendation);
    let inviter = invitations::Inviter::new(store.clone(), profiles.clone(), budget);
    spawn_consumer(
        shared.bus.clone(),
        ConsumerOptions::new("feedback"),
        Arc::new(events::FeedbackEvents::new(store.clone(), inviter.clone())),
        shared.shutdown.clone(),
    );
    let api = grpc::FeedbackApi::new(
        store,
        profiles,
        decisions,
        inviter,
        cairn_runtime::pagination::PageTokens::from_settings(settings)?,
    );
    let server = cairn_runtime::limited!(FeedbackServiceServer::new(api), settings);
    Ok(ServiceParts {
        kind: ServiceKind::Feedback,
        routes: Routes::new(server),
        grpc_services: vec![grpc::SERVICE_NAME],
        scopes: grpc::scopes(),
        readiness: Arc::new(db::DatabaseReady(db)),
    })
}
