//! The inbox: how a consumer stays idempotent under at-least-once delivery.
//!
//! A handler records the event id in its service's `<service>_inbox` table
//! in the same transaction as the event's effect; a second delivery finds the
//! id already there and changes nothing.

use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{ColumnDef, OnConflict, Query, Table, TableCreateStatement};

use crate::error::Result;

/// The inbox of one service.
#[derive(Debug, Clone)]
pub struct Inbox {
    table: String,
}

impl Inbox {
    /// The inbox in `table` (created by [`Inbox::create_table`] in a migration).
    pub fn new(table: impl Into<String>) -> Self {
        Self {
            table: table.into(),
        }
    }

    /// The statement that creates an inbox table named `table`.
    pub fn create_table(table: &str) -> TableCreateStatement {
        Table::create()
            .table(table.to_string())
            .if_not_exists()
            .col(
                ColumnDef::new("event_id")
                    .string_len(64)
                    .not_null()
                    .primary_key(),
            )
            .col(ColumnDef::new("handled_at").big_integer().not_null())
            .to_owned()
    }

    /// Records `event_id` within the caller's transaction; true when this is
    /// its first delivery (go ahead), false when it was handled before (skip).
    pub async fn first_delivery(
        &self,
        transaction: &impl ConnectionTrait,
        event_id: &str,
    ) -> Result<bool> {
        let now = chrono::Utc::now().timestamp_millis();
        let insert = Query::insert()
            .into_table(self.table.clone())
            .columns(["event_id", "handled_at"])
            .values_panic([event_id.into(), now.into()])
            .on_conflict(OnConflict::column("event_id").do_nothing().to_owned())
            .to_owned();
        let result = transaction.execute(&insert).await?;
        Ok(result.rows_affected() == 1)
    }
}
