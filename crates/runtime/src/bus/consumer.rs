//! Consumer groups: how a service acts on other services' events.
//!
//! Each service reads the bus in its own group, so every service sees every
//! event once while its replicas share the work. An event is acknowledged
//! only after its handler succeeded; one that a crashed replica left pending
//! is reclaimed by another after `min_idle`. Delivery is therefore at least
//! once, and handlers must be idempotent by event id (see [`crate::inbox`]).

use std::sync::Arc;
use std::time::Duration;

use cairn_contract::events::v1::ChangeEvent;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Delivery, EventBus, topic_matches};
use crate::error::Result;

/// Acts on events of some topics.
#[async_trait::async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// The topics it handles ("profile.erased", "profile.*"); others are acknowledged unread.
    fn topics(&self) -> Vec<String>;

    /// Handles one event. An error leaves the event pending, to be retried.
    async fn handle(&self, event: &ChangeEvent) -> Result<()>;
}

/// How a consumer reads.
#[derive(Debug, Clone)]
pub struct ConsumerOptions {
    /// The group: the consuming service's name.
    pub group: String,
    /// This replica's name within the group.
    pub consumer: String,
    /// How long an event may stay unacknowledged before another consumer takes it over.
    pub min_idle: Duration,
    /// Events read at a time.
    pub batch: usize,
}

impl ConsumerOptions {
    /// Options for `group`, with a fresh consumer name for this replica.
    pub fn new(group: &str) -> Self {
        Self {
            group: group.to_string(),
            consumer: format!("{group}-{}", uuid::Uuid::now_v7()),
            min_idle: Duration::from_secs(30),
            batch: 64,
        }
    }
}

/// Starts a consumer of `bus` for `handler`, until `shutdown` fires.
pub fn spawn_consumer(
    bus: Arc<dyn EventBus>,
    options: ConsumerOptions,
    handler: Arc<dyn EventHandler>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let topics = handler.topics();
        let mut backoff = Duration::from_millis(100);
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let round = async {
                let mut deliveries = bus
                    .claim_stale(
                        &options.group,
                        &options.consumer,
                        options.min_idle,
                        options.batch,
                    )
                    .await?;
                if deliveries.is_empty() {
                    deliveries = bus
                        .read_group(
                            &options.group,
                            &options.consumer,
                            options.batch,
                            Duration::from_millis(500),
                        )
                        .await?;
                }
                handle_all(&*bus, &options.group, &topics, &*handler, deliveries).await
            };
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => break,
                outcome = round => outcome,
            };
            match outcome {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(error) => {
                    tracing::warn!(group = %options.group, %error, "event consumer round failed; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    })
}

async fn handle_all(
    bus: &dyn EventBus,
    group: &str,
    topics: &[String],
    handler: &dyn EventHandler,
    deliveries: Vec<Delivery>,
) -> Result<()> {
    let mut handled = Vec::with_capacity(deliveries.len());
    let mut redelivered = Vec::new();
    for delivery in deliveries {
        let wanted =
            !delivery.event.topic.is_empty() && topic_matches(topics, &delivery.event.topic);
        if wanted && let Err(error) = handler.handle(&delivery.event).await {
            // Left pending: reclaimed and retried after min_idle.
            tracing::warn!(
                group,
                event_id = %delivery.event.event_id,
                topic = %delivery.event.topic,
                %error,
                "handling an event failed; it will be retried"
            );
            continue;
        }
        if delivery.redelivered {
            redelivered.push(delivery.position);
        } else {
            handled.push(delivery.position);
        }
    }
    bus.ack_redelivered(group, &redelivered).await?;
    bus.ack(group, &handled).await
}
