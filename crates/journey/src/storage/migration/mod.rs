//! The journey service's migrations, one file per change, each written
//! against its own table definitions.

mod m20261122_000001_create_touchpoints;
mod m20261122_000002_add_customer_id;
mod m20261204_000003_create_journeys;

use sea_orm_migration::prelude::*;

/// The journey service's migrator, with its history in `journey_migrations`.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_create_touchpoints::Migration),
            Box::new(m20261122_000002_add_customer_id::Migration),
            Box::new(m20261204_000003_create_journeys::Migration),
            Box::new(cairn_runtime::outbox::KeepPublishedEvents::new(
                "m20261207_000100_keep_published_events",
                "journey_outbox",
            )),
            Box::new(cairn_runtime::outbox::TrackRedeliveries::new(
                "m20261215_000101_track_redeliveries",
                "journey_outbox",
            )),
        ]
    }

    fn migration_table_name() -> DynIden {
        "journey_migrations".into_iden()
    }
}
