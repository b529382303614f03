//! The production bus: one Redis Stream per suite (key `<prefix>events`),
//! trimmed to about the configured retention, with one consumer group per
//! consuming service.
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

use super::{Delivery, EventBus, Origin, Position};
use crate::error::{Error, Result};

/// How often an empty read looks again while it waits.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// An event bus on a Redis Stream.
#[derive(Clone)]
pub struct RedisBus {
    connection: ConnectionManager,
    key: String,
    generation_key: String,
    retention: usize,
}

impl RedisBus {
    /// A bus on the stream `<prefix>events`, keeping about `retention` events.
    pub fn new(connection: ConnectionManager, prefix: &str, retention: usize) -> Self {
        Self {
            connection,
            key: format!("{prefix}events"),
            generation_key: format!("{prefix}events:generation"),
            retention: retention.max(1),
        }
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
            }),
            Err(error) => {
                // Kept as an empty event so that consumers acknowledge it
                // (no topic matches it) instead of reclaiming it forever.
                tracing::warn!(position = %entry.id, %error, "undecodable event on the bus");
                Some(Delivery {
                    position,
                    event: ChangeEvent::default(),
                    origin,
                })
            }
        }
    }

    async fn ensure_group(&self, group: &str) -> Result<()> {
        let mut connection = self.connection.clone();
        let created: redis::RedisResult<()> = connection
            .xgroup_create_mkstream(&self.key, group, "0")
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(error) if error.code() == Some("BUSYGROUP") => Ok(()),
            Err(error) => Err(error.into()),
        }
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
        let mut connection = self.connection.clone();
        let exists: bool = connection.exists(&self.key).await?;
        if !exists {
            // No stream yet: nothing was ever trimmed.
            return Ok(());
        }
        let info: std::collections::HashMap<String, redis::Value> = redis::cmd("XINFO")
            .arg("STREAM")
            .arg(&self.key)
            .query_async(&mut connection)
            .await?;
        // Trimming does not record what it removed (max-deleted-entry-id
        // counts XDEL only), so: events were lost after `after` when some
        // were trimmed and `after` lies before the oldest retained one. The
        // one false alarm is a cursor exactly on the newest trimmed event,
        // a listener a whole retention behind anyway.
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
        if number("entries-added") > number("length") && after < oldest {
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
                    .xread_options(&[&self.key], &[">"], &options)
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

    async fn claim_stale(
        &self,
        group: &str,
        consumer: &str,
        min_idle: Duration,
        max: usize,
    ) -> Result<Vec<Delivery>> {
        self.ensure_group(group).await?;
        let mut connection = self.connection.clone();
        let options = StreamAutoClaimOptions::default().count(max);
        let reply: StreamAutoClaimReply = connection
            .xautoclaim_options(
                &self.key,
                group,
                consumer,
                min_idle.as_millis() as u64,
                "0-0",
                options,
            )
            .await?;
        Ok(reply.claimed.iter().filter_map(Self::decode).collect())
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
