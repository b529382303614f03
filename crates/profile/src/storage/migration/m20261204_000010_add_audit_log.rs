//! The audit log of access to personal data: who read, exported or erased
//! whose data, and when; never the data itself, and the person only as a
//! keyed hash of their profile id (so an erasure leaves no readable id).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000010_add_audit_log"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("profile_audit_log")
                    .col(ColumnDef::new("id").string_len(36).not_null().primary_key())
                    .col(
                        ColumnDef::new("occurred_at")
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new("subject").string_len(256).not_null())
                    .col(ColumnDef::new("acting_for").string_len(64).null())
                    .col(ColumnDef::new("action").string_len(64).not_null())
                    .col(ColumnDef::new("person_hash").string_len(64).null())
                    .col(ColumnDef::new("records").integer().not_null())
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("profile_audit_log_person")
                    .table("profile_audit_log")
                    .col("person_hash")
                    .col("occurred_at")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table("profile_audit_log").to_owned())
            .await
    }
}
