//! The recommendation service's migrations, one file per change, each
//! written against its own table definitions.

mod m20261204_000001_create_recommendation_tables;

use sea_orm_migration::prelude::*;

/// The recommendation service's migrator, with its history in
/// `recommendation_migrations`.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261204_000001_create_recommendation_tables::Migration),
            Box::new(cairn_runtime::outbox::KeepPublishedEvents::new(
                "m20261207_000100_keep_published_events",
                "recommendation_outbox",
            )),
            Box::new(cairn_runtime::outbox::TrackRedeliveries::new(
                "m20261215_000101_track_redeliveries",
                "recommendation_outbox",
            )),
        ]
    }

    fn migration_table_name() -> DynIden {
        "recommendation_migrations".into_iden()
    }
}
