//! Touchpoints, and the service's outbox and inbox.

use cairn_runtime::inbox::Inbox;
use cairn_runtime::outbox::Outbox;
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000001_create_touchpoints"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("journey_touchpoints")
                    // The client-chosen id under a primary key: a retry or a
                    // replay can never store a touchpoint twice.
                    .col(
                        ColumnDef::new("id")
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new("profile_id").string_len(36).not_null())
                    .col(ColumnDef::new("channel").integer().not_null())
                    .col(ColumnDef::new("kind").string_len(80).not_null())
                    .col(
                        ColumnDef::new("occurred_at")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new("received_at")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new("properties").json_binary().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("journey_touchpoints_timeline")
                    .table("journey_touchpoints")
                    .col("profile_id")
                    .col("occurred_at")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(Outbox::create_table("journey_outbox"))
            .await?;
        manager
            .create_table(Inbox::create_table("journey_inbox"))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["journey_inbox", "journey_outbox", "journey_touchpoints"] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
