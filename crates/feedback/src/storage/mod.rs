//! The feedback service's storage: every write in one transaction with its
//! change events (outbox), every consumed event once (inbox).

pub mod entity;
pub mod migration;

mod analytics;
mod comments;
mod people;
mod surveys;
mod tickets;

pub use analytics::{ResolvedTicket, ThemeMention};
pub use comments::{CommentFilter, NewComment};
pub use people::PersonalFeedback;
pub use surveys::{BudgetAnswer, NewInvitation, NewResponse, ResponseFilter};
pub use tickets::{NewTicket, QueueFilter, TicketChanges, TicketFilter, TicketView};

use cairn_runtime::inbox::Inbox;
use cairn_runtime::outbox::Outbox;
use cairn_runtime::{Error, Result};
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseConnection, DbErr, SqlErr};

/// The name this service publishes under.
const SOURCE: &str = "feedback";

/// The feedback service's tables.
#[derive(Clone)]
pub struct FeedbackStore {
    db: DatabaseConnection,
    outbox: Outbox,
    inbox: Inbox,
}

impl FeedbackStore {
    /// A store on `db`, publishing through `outbox`, consuming through `inbox`.
    pub fn new(db: DatabaseConnection, outbox: Outbox, inbox: Inbox) -> Self {
        Self { db, outbox, inbox }
    }
}

/// True when `error` is a unique-constraint violation (a lost race).
fn is_unique_violation(error: &DbErr) -> bool {
    matches!(error.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// A page position "time|id" of newest-first listings.
fn position(time: DateTime<Utc>, id: &str) -> String {
    format!("{}|{id}", time.to_rfc3339())
}

/// Reads a position written by [`position`].
fn parse_position(after: &str) -> Result<(DateTime<Utc>, String)> {
    let invalid = || Error::invalid("page_token", "not a token of this listing");
    let (time, id) = after.split_once('|').ok_or_else(invalid)?;
    let time = DateTime::parse_from_rfc3339(time)
        .map_err(|_| invalid())?
        .with_timezone(&Utc);
    Ok((time, id.to_string()))
}

/// A JSON list of strings.
fn string_list(value: &serde_json::Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}
