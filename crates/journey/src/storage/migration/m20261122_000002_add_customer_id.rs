//! The customer a touchpoint belongs to now (its profile, or the survivor
//! of a merge), beside the profile it was recorded for, so that timelines
//! follow merges and an unmerge can give touchpoints back.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000002_add_customer_id"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("journey_touchpoints")
                    .add_column(
                        ColumnDef::new("customer_id")
                            .string_len(36)
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE journey_touchpoints SET customer_id = profile_id WHERE customer_id = ''",
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("journey_touchpoints_customer")
                    .table("journey_touchpoints")
                    .col("customer_id")
                    .col("occurred_at")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("journey_touchpoints_customer")
                    .table("journey_touchpoints")
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("journey_touchpoints")
                    .drop_column("customer_id")
                    .to_owned(),
            )
            .await
    }
}
