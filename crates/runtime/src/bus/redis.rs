//! The production bus: one Redis Stream per suite (key `<prefix>events`),
//! trimmed to about the configured retention, with one consumer group per
//! consuming service.
//!
//! A consumer group that the trimming passed before it read everything (its
//! service down or slow for longer than the retention) would lose the
//! trimmed events; [`EventBus::gaps`] finds such groups, and the services'
//! outboxes redeliver what each group missed into the group's own
//! redelivery stream (`<prefix>events:redelivery:<group>`), which is never
//! trimmed: its entries are deleted as the group acknowledges them.
//!
//! Reads poll without `BLOCK`: a blocking read would hold up every other
//! command on the shared multiplexed connection, and a short poll interval
//! costs Redis little next to a dedicated connection per listener.

use std::time::Duration;

use cairn_contract::events::v1::ChangeEvent;
use prost::Message;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamMaxlen, StreamReadOptions,
    StreamReadReply,
};

use super::{Delivery, EventBus, Gap, Origin, Position};
use crate::error::{Error, Result};

/// How often an empty read looks again while it waits.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// An event bus on a Redis Stream.
#[derive(Clone)]
pub struct RedisBus {
    connection: ConnectionManager,
    key: String,
    generation_key: String,
    prefix: String,
    retention: usize,
}

/// What `XINFO STREAM` says about the log, as far as trimming goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct StreamState {
    /// Entries in the stream now.
    length: u64,
    /// Entries ever added to it.
    entries_added: u64,
    /// The oldest entry still in it.
    oldest: Position,
}

impl StreamState {
    /// The gap of a group that was last delivered `after` (or that still
    /// has an unacknowledged entry there) and whose lag Redis reports as
    /// `lag`, if the trimming passed it. With a known lag the group missed
    /// `lag - length` events (every retained entry is after it); without one
    /// (entries after it were deleted), it may have missed some.
    fn gap(&self, group: &str, after: Position, lag: Option<u64>) -> Option<Gap> {
        if self.entries_added <= self.length || after >= self.oldest {
            return None;
        }
        let missed = match lag {
            Some(lag) if lag <= self.length => return None,
            Some(lag) => Some(lag - self.length),
            None => None,
        };
        Some(Gap {
            group: group.to_string(),
            after,
            before: self.oldest,
            missed,
        })
    }
}

impl RedisBus {
    /// A bus on the stream `<prefix>events`, keeping about `retention` events.
    pub fn new(connection: ConnectionManager, prefix: &str, retention: usize) -> Self {
        Self {
            connection,
            key: format!("{prefix}events"),
            generation_key: format!("{prefix}events:generation"),
            prefix: prefix.to_string(),
            retention: retention.max(1),
        }
    }

    /// The stream of events redelivered to `group` alone.
    fn redelivery_key(&self, group: &str) -> String {
        format!("{}events:redelivery:{group}", self.prefix)
    }

    /// The deliveries of a read or claim reply, the group's redeliveries
    /// (older than anything in the log) first.
    fn deliveries(&self, group: &str, keys: Vec<redis::streams::StreamKey>) -> Vec<Delivery> {
        let redelivery_key = self.redelivery_key(group);
        let mut redelivered = Vec::new();
        let mut logged = Vec::new();
        for key in keys {
            let from_redelivery = key.key == redelivery_key;
            for entry in &key.ids {
                if let Some(mut delivery) = Self::decode(entry) {
                    delivery.redelivered = from_redelivery;
                    if from_redelivery {
                        redelivered.push(delivery);
                    } else {
                        logged.push(delivery);
                    }
                }
            }
        }
        redelivered.extend(logged);
        redelivered
    }

    fn decode(entry: &StreamId) -> Option<Delivery> {
        let position = entry.id.parse().ok()?;
        let bytes: Vec<u8> = entry.get("event")?;
        let origin = match (
            entry.get::<String>("origin_generation"),
            entry
                .get::<String>("origin_position")
                .and_then(|text| text.parse::<Position>().ok()),
        ) {
            (Some(generation), Some(position)) => Some(Origin {
                generation,
                position,
            }),
            _ => None,
        };
        match ChangeEvent::decode(bytes.as_slice()) {
            Ok(event) => Some(Delivery {
                position,
                event,
                origin,
                redelivered: false,
            }),
            Err(error) => {
                // Kept as an empty event so that consumers acknowledge it
                // (no topic matches it) instead of reclaiming it forever.
                tracing::warn!(position = %entry.id, %error, "undecodable event on the bus");
                Some(Delivery {
                    position,
                    event: ChangeEvent::default(),
                    origin,
                    redelivered: false,
                })
            }
        }
    }

    /// Creates `group` on the log and on its redelivery stream.
    async fn ensure_group(&self, group: &str) -> Result<()> {
        let mut connection = self.connection.clone();
        for key in [self.key.clone(), self.redelivery_key(group)] {
            let created: redis::RedisResult<()> =
                connection.xgroup_create_mkstream(&key, group, "0").await;
            match created {
                Ok(()) => {}
                Err(error) if error.code() == Some("BUSYGROUP") => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    async fn stream_state(&self) -> Result<Option<StreamState>> {
        let mut connection = self.connection.clone();
        let exists: bool = connection.exists(&self.key).await?;
        if !exists {
            return Ok(None);
        }
        let info: std::collections::HashMap<String, redis::Value> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(&self.key)
            .query_async(&mut connection)
            .await?;
        let number = |name: &str| {
            info.get(name)
                .and_then(|value| redis::from_redis_value::<u64>(value.clone()).ok())
                .unwrap_or_default()
        };
        let oldest = info
            .get("recorded-first-entry-id")
            .and_then(|value| redis::from_redis_value::<String>(value.clone()).ok())
            .and_then(|id| id.parse::<Position>().ok())
            .unwrap_or_default();
        Ok(Some(StreamState {
            length: number("length"),
            entries_added: number("entries-added"),
            oldest,
        }))
    }

    async fn poll<F, Fut>(&self, wait: Duration, mut attempt: F) -> Result<Vec<Delivery>>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<Delivery>>>,
    {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let found = attempt().await?;
            if !found.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(found);
            }
            tokio::time::sleep(POLL_INTERVAL.min(deadline - tokio::time::Instant::now())).await;
        }
    }
}

#[async_trait::async_trait]
impl EventBus for RedisBus {
    async fn publish(&self, event: &ChangeEvent) -> Result<Position> {
        let mut connection = self.connection.clone();
        let id: String = connection
            .xadd_maxlen(
                &self.key,
                StreamMaxlen::Approx(self.retention),
                "*",
                &[
                    ("topic", event.topic.as_bytes()),
                    ("event", event.encode_to_vec().as_slice()),
                ],
            )
            .await?;
        id.parse()
    }

    async fn publish_replay(&self, event: &ChangeEvent, origin: &Origin) -> Result<Position> {
        let mut connection = self.connection.clone();
        let position = origin.position.to_string();
        let id: String = connection
            .xadd_maxlen(
                &self.key,
                StreamMaxlen::Approx(self.retention),
                "*",
                &[
                    ("topic", event.topic.as_bytes()),
                    ("event", event.encode_to_vec().as_slice()),
                    ("origin_generation", origin.generation.as_bytes()),
                    ("origin_position", position.as_bytes()),
                ],
            )
            .await?;
        id.parse()
    }

    async fn generation(&self) -> Result<String> {
        // Set only when absent, then read: every replica gets the same id,
        // and a Redis that lost its data gets a new one from whoever asks first.
        let script = redis::Script::new(
            "redis.call('SET', KEYS[1], ARGV[1], 'NX') return redis.call('GET', KEYS[1])",
        );
        let mut connection = self.connection.clone();
        let generation: String = script
            .key(&self.generation_key)
            .arg(uuid::Uuid::now_v7().simple().to_string())
            .invoke_async(&mut connection)
            .await?;
        Ok(generation)
    }

    async fn read(
        &self,
        after: Option<Position>,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        let start = after
            .map(|p| p.to_string())
            .unwrap_or_else(|| "0-0".to_string());
        self.poll(wait, || {
            let mut connection = self.connection.clone();
            let start = start.clone();
            async move {
                let options = StreamReadOptions::default().count(max);
                let reply: Option<StreamReadReply> = connection
                    .xread_options(&[&self.key], &[&start], &options)
                    .await?;
                Ok(reply
                    .into_iter()
                    .flat_map(|reply| reply.keys)
                    .flat_map(|key| key.ids)
                    .filter_map(|entry| Self::decode(&entry))
                    .collect())
            }
        })
        .await
    }

    async fn newest(&self) -> Result<Position> {
        let mut connection = self.connection.clone();
        let newest: Vec<(String, Vec<(String, Vec<u8>)>)> = redis::cmd("XREVRANGE")
            .arg(&self.key)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut connection)
            .await?;
        match newest.first() {
            Some((id, _)) => id.parse(),
            None => Ok(Position::default()),
        }
    }

    async fn check_retained(&self, after: Position) -> Result<()> {
        let Some(stream) = self.stream_state().await? else {
            // No stream yet: nothing was ever trimmed.
            return Ok(());
        };
        // Trimming does not record what it removed (max-deleted-entry-id
        // counts XDEL only), so: events were lost after `after` when some
        // were trimmed and `after` lies before the oldest retained one. The
        // one false alarm is a cursor exactly on the newest trimmed event,
        // a listener a whole retention behind anyway.
        if stream.entries_added > stream.length && after < stream.oldest {
            return Err(Error::OutOfRange(format!(
                "cursor {after} is older than the retained events; resubscribe with from_oldest and resynchronise"
            )));
        }
        Ok(())
    }

    async fn read_group(
        &self,
        group: &str,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        self.ensure_group(group).await?;
        self.poll(wait, || {
            let mut connection = self.connection.clone();
            async move {
                let options = StreamReadOptions::default()
                    .group(group, consumer)
                    .count(max);
                let reply: Option<StreamReadReply> = connection
                    .xread_options(
                        &[self.redelivery_key(group), self.key.clone()],
                        &[">", ">"],
                        &options,
                    )
                    .await?;
                Ok(self.deliveries(group, reply.map(|reply| reply.keys).unwrap_or_default()))
            }
        })
        .await
    }

    async fn claim_stale(
        &self,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>> {
        self.ensure_group(group).await?;
        let mut connection = self.connection.clone();
        let mut keys = Vec::with_capacity(2);
        for key in [self.redelivery_key(group), self.key.clone()] {
            let options = StreamAutoClaimOptions::default().count(max);
            let reply: StreamAutoClaimReply = connection
                .xautoclaim_options(
                    &key,
                    group,
                    consumer,
                    min_idle.as_millis() as u64,
                    "0-0",
                    options,
                )
                .await?;
            keys.push(redis::streams::StreamKey {
                key,
                ids: reply.claimed,
            });
        }
        Ok(self.deliveries(group, keys))
    }

    async fn gaps(&self) -> Result<Vec<Gap>> {
        let Some(stream) = self.stream_state().await? else {
            return Ok(Vec::new());
        };
        if stream.entries_added <= stream.length {
            return Ok(Vec::new());
        }
        let mut connection = self.connection.clone();
        let groups: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.key)
            .query_async(&mut connection)
            .await?;
        let mut gaps = Vec::new();
        for group in groups {
            let text = |name: &str| {
                group
                    .get(name)
                    .and_then(|value| redis::from_redis_value::<String>(value.clone()).ok())
                    .unwrap_or_default()
            };
            let number = |name: &str| {
                group
                    .get(name)
                    .and_then(|value| redis::from_redis_value::<u64>(value.clone()).ok())
            };
            let name = text("name");
            let mut after: Position = text("last-delivered-id").parse().unwrap_or_default();
            let mut lag = number("lag");
            if number("pending").unwrap_or_default() > 0 {
                // An entry delivered but not acknowledged (its consumer
                // died) is lost too when trimmed: Redis drops it from the
                // group's pending list at the next claim.
                let pending: redis::streams::StreamPendingReply =
                    connection.xpending(&self.key, &name).await?;
                if let redis::streams::StreamPendingReply::Data(pending) = pending
                    && let Ok(oldest_pending) = pending.start_id.parse::<Position>()
                    && oldest_pending < stream.oldest
                    && oldest_pending <= after
                {
                    after = oldest_pending.just_before();
                    lag = None;
                }
            }
            if let Some(gap) = stream.gap(&name, after, lag) {
                gaps.push(gap);
            }
        }
        Ok(gaps)
    }

    async fn redeliver(&self, group: &str, event: &ChangeEvent, origin: &Origin) -> Result<()> {
        self.ensure_group(group).await?;
        let mut connection = self.connection.clone();
        let position = origin.position.to_string();
        let _: Option<String> = connection
            .xadd(
                self.redelivery_key(group),
                "*",
                &[
                    ("topic", event.topic.as_bytes()),
                    ("event", event.encode_to_vec().as_slice()),
                    ("origin_generation", origin.generation.as_bytes()),
                    ("origin_position", position.as_bytes()),
                ],
            )
            .await?;
        Ok(())
    }

    async fn ack_redelivered(&self, group: &str, positions: &[Position]) -> Result<()> {
        if positions.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection.clone();
        let key = self.redelivery_key(group);
        let ids: Vec<String> = positions.iter().map(Position::to_string).collect();
        let _: i64 = connection.xack(&key, group, &ids).await?;
        // The copy was for this group alone: once handled, it can go.
        let _: i64 = connection.xdel(&key, &ids).await?;
        Ok(())
    }

    async fn ack(&self, group: &str, positions: &[Position]) -> Result<()> {
        if positions.is_empty() {
            return Ok(());
        }
        let mut connection = self.connection.clone();
        let ids: Vec<String> = positions.iter().map(Position::to_string).collect();
        let _: i64 = connection.xack(&self.key, group, &ids).await?;
        Ok(())
    }

    async fn ping(&self) -> Result<()> {
        let mut connection = self.connection.clone();
        let _: String = redis::cmd("PING").query_async(&mut connection).await?;
        Ok(())
    }

    async fn forget(&self, profile_ids: &[String], own_group: &str) -> Result<bool> {
        // WARNING: one pass over the whole stream (up to the retention) per
        // erasure; erasures are rare, and a pass over a million events takes
        // seconds, not minutes.
        let mut connection = self.connection.clone();
        let mut about: Vec<String> = Vec::new();
        let mut start = "-".to_string();
        loop {
            let page: Vec<StreamId> = redis::cmd("XRANGE")
                .arg(&self.key)
                .arg(&start)
                .arg("+")
                .arg("COUNT")
                .arg(FORGET_PAGE)
                .query_async::<redis::streams::StreamRangeReply>(&mut connection)
                .await?
                .ids;
            let Some(last) = page.last().map(|entry| entry.id.clone()) else {
                break;
            };
            about.extend(
                page.iter()
                    .filter_map(Self::decode)
                    .filter(|delivery| profile_ids.contains(&delivery.event.profile_id))
                    .map(|delivery| delivery.position.to_string()),
            );
            if page.len() < FORGET_PAGE {
                break;
            }
            start = format!("({last}");
        }
        let Some(newest) = about
            .iter()
            .filter_map(|id| id.parse::<Position>().ok())
            .max()
        else {
            return Ok(true);
        };
        let groups: Vec<std::collections::HashMap<String, redis::Value>> = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&self.key)
            .query_async(&mut connection)
            .await?;
        for group in groups {
            let text = |name: &str| {
                group
                    .get(name)
                    .and_then(|value| redis::from_redis_value::<String>(value.clone()).ok())
                    .unwrap_or_default()
            };
            let name = text("name");
            if name == own_group {
                continue;
            }
            let delivered: Position = text("last-delivered-id").parse().unwrap_or_default();
            if delivered < newest {
                return Ok(false);
            }
            // Any entry up to `newest` still pending in the group?
            let pending: Vec<redis::Value> = redis::cmd("XPENDING")
                .arg(&self.key)
                .arg(&name)
                .arg("-")
                .arg(newest.to_string())
                .arg(1)
                .query_async(&mut connection)
                .await?;
            if !pending.is_empty() {
                return Ok(false);
            }
        }
        for ids in about.chunks(FORGET_PAGE) {
            let _: i64 = connection.xdel(&self.key, ids).await?;
        }
        Ok(true)
    }
}

/// Entries read (or deleted) per round when the bus forgets a person.
const FORGET_PAGE: usize = 1000;

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> Position {
        Position {
            millis,
            sequence: 0,
        }
    }

    #[test]
    fn a_group_behind_the_oldest_retained_event_missed_what_its_lag_exceeds() {
        let stream = StreamState {
            length: 100,
            entries_added: 300,
            oldest: at(200),
        };
        // Stopped after 50 events: 250 added since, 100 still in the log.
        let gap = stream.gap("journey", at(50), Some(250)).unwrap();
        assert_eq!(
            (gap.after, gap.before, gap.missed),
            (at(50), at(200), Some(150))
        );
        // Exactly on the newest trimmed event: nothing missed.
        assert_eq!(stream.gap("journey", at(199), Some(100)), None);
        // Within the retained events, or nothing trimmed at all.
        assert_eq!(stream.gap("journey", at(200), Some(99)), None);
        let untrimmed = StreamState {
            entries_added: 100,
            ..stream
        };
        assert_eq!(untrimmed.gap("journey", at(0), Some(100)), None);
        // Entries deleted after it: Redis cannot tell the lag; maybe missed.
        assert_eq!(stream.gap("journey", at(50), None).unwrap().missed, None);
    }

    #[test]
    fn just_before_includes_the_position_itself() {
        let position: Position = "1700000000000-0".parse().unwrap();
        assert!(position.just_before() < position);
        assert_eq!(
            position.just_before().to_string(),
            format!("1699999999999-{}", u64::MAX)
        );
        assert_eq!(position.just_before().just_after(), position);
        let next: Position = "1700000000000-4".parse().unwrap();
        assert_eq!(next.just_before().to_string(), "1700000000000-3");
    }
}
