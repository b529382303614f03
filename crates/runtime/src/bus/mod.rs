//! The suite's event bus: change events published by one service and
//! consumed by the others and by integrators.
//!
//! Production runs it on a Redis Stream with consumer groups (at-least-once
//! delivery, pending entries reclaimed from a consumer that died); a local
//! trial runs it in process. Services never publish directly from a handler:
//! they write events to their own outbox in the same transaction as the
//! change (see [`crate::outbox`]), and a relay publishes them, so a crash
//! between commit and publish loses nothing.

mod consumer;
mod cursor;
mod forget;
mod hub;
mod memory;
mod redis;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use cairn_contract::events::v1::ChangeEvent;

pub use self::consumer::{ConsumerOptions, EventHandler, spawn_consumer};
pub use self::cursor::Cursor;
pub use self::forget::{FORGET_GROUP, ForgetErased};
pub use self::hub::{EventHub, follow, start_position};
pub use self::memory::MemoryBus;
pub use self::redis::RedisBus;
use crate::error::{Error, Result};

/// A position in the bus's log: Redis stream ids (`<milliseconds>-<sequence>`),
/// also used by the in-process bus so cursors look the same everywhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    /// Milliseconds part.
    pub millis: u64,
    /// Sequence part.
    pub sequence: u64,
}

impl Position {
    /// The position just before this one: an exclusive lower bound that
    /// includes this position.
    pub fn just_before(self) -> Self {
        match self.sequence {
            0 => Self {
                millis: self.millis.saturating_sub(1),
                sequence: u64::MAX,
            },
            sequence => Self {
                millis: self.millis,
                sequence: sequence - 1,
            },
        }
    }

    /// The position just after this one: an exclusive upper bound that
    /// includes this position.
    pub fn just_after(self) -> Self {
        match self.sequence {
            u64::MAX => Self {
                millis: self.millis.saturating_add(1),
                sequence: 0,
            },
            sequence => Self {
                millis: self.millis,
                sequence: sequence + 1,
            },
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.millis, self.sequence)
    }
}

impl FromStr for Position {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let invalid = || {
            Error::invalid(
                "cursor",
                "not a cursor this server issued; use a SubscribeResponse.cursor or leave it empty",
            )
        };
        let (millis, sequence) = text.split_once('-').ok_or_else(invalid)?;
        Ok(Self {
            millis: millis.parse().map_err(|_| invalid())?,
            sequence: sequence.parse().map_err(|_| invalid())?,
        })
    }
}

/// Where an event was first published: the bus generation (see
/// [`EventBus::generation`]) and its position in that generation's log.
/// A replay of the event after the log was lost carries it, so that a
/// listener resuming from an older generation can tell what it saw already.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The generation the event was first published in.
    pub generation: String,
    /// Its position in that generation's log.
    pub position: Position,
}

/// One event read from the bus, with where it sits.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Its position, used as the cursor and to acknowledge it.
    pub position: Position,
    /// The event.
    pub event: ChangeEvent,
    /// Where the event was first published, when this is a replay from a
    /// service's outbox after the log was lost; `None` for a first publication.
    pub origin: Option<Origin>,
    /// True for a copy redelivered to one consumer group from a service's
    /// outbox because the log was trimmed past that group (see
    /// [`EventBus::redeliver`]); it is acknowledged with
    /// [`EventBus::ack_redelivered`].
    pub redelivered: bool,
}

/// A consumer group that the log was trimmed past: events after `after`
/// (its last-delivered position) and before `before` (the oldest retained
/// event) were removed before the group read them. The services' outboxes
/// redeliver them (see [`crate::outbox::Outbox::redeliver_missed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// The consumer group.
    pub group: String,
    /// The last position delivered to the group.
    pub after: Position,
    /// The oldest position still in the log.
    pub before: Position,
    /// How many events the group missed, when the bus can tell (Redis
    /// cannot once entries after the group's position were deleted).
    pub missed: Option<u64>,
}

/// A log of change events with consumer groups.
#[async_trait::async_trait]
pub trait EventBus: Send + Sync + 'static {
    /// Appends `event`; returns its position.
    async fn publish(&self, event: &ChangeEvent) -> Result<Position>;

    /// Appends `event` again, from a service's outbox, after the log that
    /// held it was lost; `origin` says where it was first published.
    async fn publish_replay(&self, event: &ChangeEvent, origin: &Origin) -> Result<Position>;

    /// The log's generation: an id that stays the same for as long as the
    /// log keeps its events, and changes when it loses them all (Redis
    /// restarted without its data). Created on first use by whichever replica
    /// asks first, in one atomic step. Events published in an older
    /// generation than the current one are lost from the log and must be
    /// replayed from the outboxes.
    async fn generation(&self) -> Result<String>;

    /// Up to `max` events after `after` (from the oldest retained when `None`),
    /// waiting up to `wait` for one when there are none yet.
    async fn read(
        &self,
        after: Option<Position>,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>>;

    /// The position of the newest event (the zero position when there is none):
    /// where a listener that wants only new events starts.
    async fn newest(&self) -> Result<Position>;

    /// OUT_OF_RANGE when events after `after` were already trimmed away, so a
    /// listener resuming there would miss some.
    async fn check_retained(&self, after: Position) -> Result<()>;

    /// Up to `max` events of `group` never delivered to any of its consumers,
    /// now handed to `consumer`, waiting up to `wait`. Creates the group,
    /// starting at the oldest retained event, when it does not exist.
    async fn read_group(
        &self,
        group: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>>;

    /// Events of `group` delivered to some consumer but not acknowledged for
    /// `min_idle`, now handed to `consumer` (the owner probably died).
    async fn claim_stale(
        &self,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>>;

    /// Marks events of `group` as handled.
    async fn ack(&self, group: &str, positions: &[Position]) -> Result<()>;

    /// The consumer groups that the log's trimming passed before they read
    /// everything (a group whose service was down or slow for longer than
    /// the retention): without redelivery they would never see the events
    /// in their [`Gap`].
    async fn gaps(&self) -> Result<Vec<Gap>>;

    /// Hands `event` (from a service's outbox; `origin` says where it was
    /// first published) to `group` alone, in the group's own redelivery
    /// queue, which the log's trimming does not touch: the group's next
    /// [`EventBus::read_group`] returns it, marked `redelivered`, before
    /// the log's events. Other groups and listeners never see the copy.
    async fn redeliver(&self, group: &str, event: &ChangeEvent, origin: &Origin) -> Result<()>;

    /// Marks redelivered events of `group` (see [`Delivery::redelivered`])
    /// as handled, and drops them from the group's redelivery queue.
    async fn ack_redelivered(&self, group: &str, positions: &[Position]) -> Result<()>;

    /// Ok when the bus's store answers.
    async fn ping(&self) -> Result<()>;

    /// Deletes every event about the people `profile_ids` (whose
    /// `profile_id` is one of them), once every consumer group other than
    /// `own_group` has read and acknowledged them all: erasure reaches the
    /// bus too. Ok(true) when they are gone (or there were none); Ok(false)
    /// when some group has yet to handle one, so the caller tries later.
    async fn forget(&self, profile_ids: &[String], own_group: &str) -> Result<bool>;
}

/// True when `topic` is selected by `filters`: empty selects everything, a
/// filter ending in ".*" selects its whole area, any other must be equal.
pub fn topic_matches(filters: &[String], topic: &str) -> bool {
    filters.is_empty()
        || filters
            .iter()
            .any(|filter| match filter.strip_suffix(".*") {
                Some(area) => topic
                    .strip_prefix(area)
                    .is_some_and(|rest| rest.starts_with('.')),
                None => filter == topic,
            })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_order() {
        let a: Position = "1700000000000-3".parse().unwrap();
        assert_eq!(a.to_string(), "1700000000000-3");
        let b: Position = "1700000000000-10".parse().unwrap();
        assert!(a < b);
        assert!("nonsense".parse::<Position>().is_err());
    }

    #[test]
    fn topic_filters() {
        let filters = vec!["profile.*".to_string(), "journey.stage_changed".to_string()];
        assert!(topic_matches(&filters, "profile.merged"));
        assert!(topic_matches(&filters, "journey.stage_changed"));
        assert!(!topic_matches(&filters, "journey.touchpoint_recorded"));
        assert!(!topic_matches(&filters, "profiles.merged"));
        assert!(topic_matches(&[], "anything"));
    }
}
