//! Erasure records keep a keyed hash of the erased profile id, not the id:
//! after an erasure no table holds the person's profile id. Records made
//! before this change lose the id (it cannot be hashed in SQL without the key).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261204_000009_hash_erased_profile_ids"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One change per statement: SQLite alters one thing at a time.
        manager
            .alter_table(
                Table::alter()
                    .table("profile_erasures")
                    .add_column(
                        ColumnDef::new("profile_hash")
                            .string_len(64)
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("profile_erasures")
                    .drop_column("profile_id")
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table("profile_erasures")
                    .add_column(
                        ColumnDef::new("profile_id")
                            .string_len(36)
                            .not_null()
                            .default(""),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table("profile_erasures")
                    .drop_column("profile_hash")
                    .to_owned(),
            )
            .await
    }
}
