//! Journey definitions (every version), customers' positions with their
//! due times, the history of transitions, and detected abandonments.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000003_create_journeys"
    }
}

fn time(name: &'static str) -> ColumnDef {
    ColumnDef::new(name)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Every version is kept: customers stay on the version they entered.
        manager
            .create_table(
                Table::create()
                    .table("journey_definitions")
                    .col(ColumnDef::new("journey_id").string_len(64).not_null())
                    .col(ColumnDef::new("version").integer().not_null())
                    .col(ColumnDef::new("document").json_binary().not_null())
                    .col(ColumnDef::new("archived").boolean().not_null())
                    .col(time("updated_at"))
                    .primary_key(Index::create().col("journey_id").col("version"))
                    .to_owned(),
            )
            .await?;
        // One row per customer and journey. `due_at` is when something
        // happens by itself (a stage's limit, inactivity); replicas claim due
        // rows with FOR UPDATE SKIP LOCKED, so each is handled once.
        manager
            .create_table(
                Table::create()
                    .table("journey_states")
                    .col(ColumnDef::new("customer_id").string_len(36).not_null())
                    .col(ColumnDef::new("journey_id").string_len(64).not_null())
                    .col(ColumnDef::new("profile_id").string_len(36).not_null())
                    .col(ColumnDef::new("version").integer().not_null())
                    .col(ColumnDef::new("stage").string_len(64).not_null())
                    .col(time("stage_entered_at"))
                    .col(ColumnDef::new("status").string_len(16).not_null())
                    .col(ColumnDef::new("stage_key").string_len(256).null())
                    .col(time("last_transition_at"))
                    .col(ColumnDef::new("due_at").timestamp_with_time_zone().null())
                    .primary_key(Index::create().col("customer_id").col("journey_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("journey_states_due")
                    .table("journey_states")
                    .col("due_at")
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table("journey_transitions")
                    .col(ColumnDef::new("id").string_len(36).not_null().primary_key())
                    .col(ColumnDef::new("customer_id").string_len(36).not_null())
                    .col(ColumnDef::new("profile_id").string_len(36).not_null())
                    .col(ColumnDef::new("journey_id").string_len(64).not_null())
                    .col(ColumnDef::new("version").integer().not_null())
                    .col(ColumnDef::new("from_stage").string_len(64).not_null())
                    .col(ColumnDef::new("to_stage").string_len(64).not_null())
                    .col(ColumnDef::new("touchpoint_id").string_len(128).null())
                    .col(time("transition_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("journey_transitions_customer")
                    .table("journey_transitions")
                    .col("customer_id")
                    .col("journey_id")
                    .col("transition_at")
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("journey_transitions_stage")
                    .table("journey_transitions")
                    .col("journey_id")
                    .col("to_stage")
                    .col("transition_at")
                    .to_owned(),
            )
            .await?;
        // The unique key makes detection happen once per customer, journey,
        // stage and cart (or visit), whatever the replicas do.
        manager
            .create_table(
                Table::create()
                    .table("journey_abandonments")
                    .col(ColumnDef::new("id").string_len(36).not_null().primary_key())
                    .col(ColumnDef::new("customer_id").string_len(36).not_null())
                    .col(ColumnDef::new("profile_id").string_len(36).not_null())
                    .col(ColumnDef::new("journey_id").string_len(64).not_null())
                    .col(ColumnDef::new("stage").string_len(64).not_null())
                    .col(ColumnDef::new("stage_key").string_len(256).not_null())
                    .col(time("detected_at"))
                    .col(ColumnDef::new("status").string_len(16).not_null())
                    .col(ColumnDef::new("decision_id").string_len(64).null())
                    .col(ColumnDef::new("action_id").string_len(128).null())
                    .col(ColumnDef::new("channel").integer().null())
                    .col(ColumnDef::new("attempts").integer().not_null())
                    .col(
                        ColumnDef::new("next_attempt_at")
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("journey_abandonments_once")
                    .table("journey_abandonments")
                    .col("customer_id")
                    .col("journey_id")
                    .col("stage")
                    .col("stage_key")
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("journey_abandonments_work")
                    .table("journey_abandonments")
                    .col("next_attempt_at")
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "journey_abandonments",
            "journey_transitions",
            "journey_states",
            "journey_definitions",
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}
