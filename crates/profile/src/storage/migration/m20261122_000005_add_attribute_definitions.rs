//! Registered attributes: a type every value must have, a description, and
//! whether values are personal data.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261122_000005_add_attribute_definitions"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table("profile_attribute_definitions")
                    .col(
                        ColumnDef::new("name")
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new("value_type").string_len(16).not_null())
                    .col(ColumnDef::new("description").string_len(1024).not_null())
                    .col(ColumnDef::new("personal_data").boolean().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table("profile_attribute_definitions")
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
