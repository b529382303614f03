//! Contact counters, per-action caps, global volume limits and cool-downs,
//! in the shared state store (Redis in production), so every replica counts
//! against the same budget.
//!
//! A counter's key names its period ("…:d:2026-12-04", "…:w:2026-W49") and
//! expires after the period, so nothing has to reset it. Reserving increments
//! every counter involved at once and rolls all of them back when one went
//! over its limit: two concurrent reservations never both take the last unit.
//! Everything about a person is under one prefix
//! (`recommendation:person:<profile id>:`), so erasure deletes it in one sweep.

use std::sync::Arc;
use std::time::Duration;

use cairn_runtime::{Error, Result};
use cairn_state::{StateError, StateStore};
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::domain::contact::Periods;

/// How long day counters live: past the day in every time zone.
const DAY_TTL: Duration = Duration::from_secs(3 * 24 * 3600);
/// How long week counters live.
const WEEK_TTL: Duration = Duration::from_secs(15 * 24 * 3600);
/// How long lifetime counters live (ten years: "ever" in practice).
const LIFETIME_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

fn state_error(error: StateError) -> Error {
    match error {
        StateError::Unavailable(_) => {
            Error::Unavailable("the shared state store is not reachable now; retry later".into())
        }
        StateError::Failed(detail) => Error::internal(format!("state store: {detail}")),
    }
}

/// What a counter counts, to name it when it is full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// The customer's cap on one channel or on all channels; the text names it.
    Contact(String),
    /// The action's per-customer cap; the text names it.
    ActionCap(String),
    /// The action's global volume limit; the text names it.
    Volume(String),
}

/// One counter to increment with its limit (0: none).
#[derive(Debug, Clone)]
pub struct Counter {
    /// The key, without the store's prefix.
    pub key: String,
    /// The most it may reach; 0 counts without limit.
    pub limit: i64,
    /// Expiry of a new counter.
    pub ttl: Duration,
    /// What it is, for the refusal.
    pub what: Limit,
}

/// Counters taken by a reservation, to give back if what they counted is
/// not logged after all.
#[derive(Debug, Clone, Default)]
pub struct Reservation {
    keys: Vec<String>,
}

/// The counters of one replica's state store.
#[derive(Clone)]
pub struct Counters {
    state: Arc<dyn StateStore>,
}

/// The prefix of every key about a person.
pub fn person_prefix(profile: Uuid) -> String {
    format!("recommendation:person:{profile}:")
}

impl Counters {
    /// Counters in `state`.
    pub fn new(state: Arc<dyn StateStore>) -> Self {
        Self { state }
    }

    async fn read(&self, key: &str) -> Result<i64> {
        let value = self.state.get(key).await.map_err(state_error)?;
        Ok(value
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0))
    }

    /// Reads several counters at once.
    pub async fn read_all(&self, keys: &[String]) -> Result<Vec<i64>> {
        futures::future::try_join_all(keys.iter().map(|key| self.read(key))).await
    }

    /// The keys of the customer's contacts on `channel` (a name, or "all"):
    /// (day, week).
    pub fn contact_keys(profile: Uuid, channel: &str, periods: &Periods) -> (String, String) {
        let base = format!("{}contact:{channel}", person_prefix(profile));
        (
            format!("{base}:d:{}", periods.day),
            format!("{base}:w:{}", periods.week),
        )
    }

    /// The keys of one customer's uses of an action: (day, week, lifetime).
    pub fn action_keys(profile: Uuid, action_id: &str, periods: &Periods) -> [String; 3] {
        let base = format!("{}action:{action_id}", person_prefix(profile));
        [
            format!("{base}:d:{}", periods.day),
            format!("{base}:w:{}", periods.week),
            format!("{base}:life"),
        ]
    }

    /// The keys of an action's global volume: (day, week).
    pub fn volume_keys(action_id: &str, periods: &Periods) -> (String, String) {
        let base = format!("recommendation:volume:{action_id}");
        (
            format!("{base}:d:{}", periods.day),
            format!("{base}:w:{}", periods.week),
        )
    }

    /// Expiry of a day counter.
    pub fn day_ttl() -> Duration {
        DAY_TTL
    }

    /// Expiry of a week counter.
    pub fn week_ttl() -> Duration {
        WEEK_TTL
    }

    /// Expiry of a lifetime counter.
    pub fn lifetime_ttl() -> Duration {
        LIFETIME_TTL
    }

    /// Increments every counter; when one goes over its limit, gives every
    /// increment back and answers which limit was full.
    pub async fn reserve(&self, counters: &[Counter]) -> Result<Result<Reservation, Limit>> {
        let mut taken = Vec::with_capacity(counters.len());
        let mut full = None;
        for counter in counters {
            let value = self
                .state
                .increment(&counter.key, 1, counter.ttl)
                .await
                .map_err(state_error);
            let value = match value {
                Ok(value) => value,
                Err(error) => {
                    self.release(Reservation { keys: taken }).await;
                    return Err(error);
                }
            };
            taken.push(counter.key.clone());
            if counter.limit > 0 && value > counter.limit {
                full = Some(counter.what.clone());
                break;
            }
        }
        match full {
            Some(limit) => {
                self.release(Reservation { keys: taken }).await;
                Ok(Err(limit))
            }
            None => Ok(Ok(Reservation { keys: taken })),
        }
    }

    /// Gives back what `reservation` took (best effort: a failure is logged
    /// and leaves the counters one too high until their period ends).
    pub async fn release(&self, reservation: Reservation) {
        for key in reservation.keys {
            if let Err(error) = self.state.increment(&key, -1, DAY_TTL).await {
                tracing::warn!(%error, "could not give a contact counter back");
            }
        }
    }

    fn cooldown_key(profile: Uuid, action_id: &str) -> String {
        format!("{}cooldown:{action_id}", person_prefix(profile))
    }

    /// Until when the customer's cool-down of `action_id` runs, if it does.
    pub async fn cooldown(&self, profile: Uuid, action_id: &str) -> Result<Option<DateTime<Utc>>> {
        let value = self
            .state
            .get(&Self::cooldown_key(profile, action_id))
            .await
            .map_err(state_error)?;
        Ok(value
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| DateTime::parse_from_rfc3339(&text).ok())
            .map(|time| time.with_timezone(&Utc))
            .filter(|until| *until > Utc::now()))
    }

    /// Starts a cool-down of `action_id` for the customer until `until`.
    pub async fn start_cooldown(
        &self,
        profile: Uuid,
        action_id: &str,
        until: DateTime<Utc>,
    ) -> Result<()> {
        let ttl = (until - Utc::now()).to_std().unwrap_or(Duration::ZERO);
        if ttl.is_zero() {
            return Ok(());
        }
        self.state
            .set(
                &Self::cooldown_key(profile, action_id),
                until.to_rfc3339().as_bytes(),
                ttl,
            )
            .await
            .map_err(state_error)
    }

    /// Deletes every counter and cool-down of the person.
    pub async fn erase(&self, profile: Uuid) -> Result<u64> {
        self.state
            .delete_prefix(&person_prefix(profile))
            .await
            .map_err(state_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_state::MemoryStore;

    #[tokio::test]
    async fn a_full_counter_gives_every_increment_back() {
        let counters = Counters::new(Arc::new(MemoryStore::new()));
        let counter = |key: &str, limit| Counter {
            key: key.into(),
            limit,
            ttl: DAY_TTL,
            what: Limit::Contact(key.into()),
        };
        let both = [counter("a", 2), counter("b", 1)];
        assert!(counters.reserve(&both).await.unwrap().is_ok());
        let refused = counters.reserve(&both).await.unwrap();
        assert_eq!(refused.unwrap_err(), Limit::Contact("b".into()));
        assert_eq!(
            counters.read_all(&["a".into(), "b".into()]).await.unwrap(),
            [1, 1]
        );
    }

    #[tokio::test]
    async fn cooldowns_expire_and_erasure_clears_a_person() {
        let counters = Counters::new(Arc::new(MemoryStore::new()));
        let anna = Uuid::now_v7();
        counters
            .start_cooldown(anna, "x", Utc::now() + chrono::Duration::hours(1))
            .await
            .unwrap();
        assert!(counters.cooldown(anna, "x").await.unwrap().is_some());
        assert!(counters.erase(anna).await.unwrap() >= 1);
        assert!(counters.cooldown(anna, "x").await.unwrap().is_none());
    }
}
