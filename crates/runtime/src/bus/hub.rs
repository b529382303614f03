//! `EventHubService.Subscribe`: integrators follow the suite's change
//! events with a resumable cursor (the TM Forum hub/listener idea in gRPC).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cairn_contract::events::v1::event_hub_service_server::EventHubService;
use cairn_contract::events::v1::{SubscribeRequest, SubscribeResponse};
use futures::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::{Cursor, EventBus, Position, topic_matches};
use crate::error::{Error, Violations};

/// The largest number of topic filters one subscription may carry.
const MAX_TOPICS: usize = 64;
/// Events read from the bus at a time.
const READ_BATCH: usize = 256;
/// How long one read waits for new events before checking for shutdown.
const READ_WAIT: Duration = Duration::from_millis(500);

/// The stream `Subscribe` answers with.
type SubscribeStream =
    Pin<Box<dyn Stream<Item = Result<SubscribeResponse, Status>> + Send + 'static>>;

/// Serves `Subscribe` from the suite's bus.
#[derive(Clone)]
pub struct EventHub {
    bus: Arc<dyn EventBus>,
    shutdown: CancellationToken,
}

impl EventHub {
    /// A hub streaming from `bus`; its streams end when `shutdown` fires.
    pub fn new(bus: Arc<dyn EventBus>, shutdown: CancellationToken) -> Self {
        Self { bus, shutdown }
    }

    /// The generated server of the hub, ready to add to a router.
    pub fn into_server(
        self,
    ) -> cairn_contract::events::v1::event_hub_service_server::EventHubServiceServer<Self> {
        cairn_contract::events::v1::event_hub_service_server::EventHubServiceServer::new(self)
    }
}

fn check_topics(topics: &[String]) -> Result<(), Error> {
    let mut violations = Violations::new();
    if topics.len() > MAX_TOPICS {
        violations.add("topics", format!("at most {MAX_TOPICS} topic filters"));
    }
    for (index, topic) in topics.iter().enumerate() {
        let name = topic.strip_suffix(".*").unwrap_or(topic);
        let valid = !name.is_empty()
            && name.len() <= 128
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
        if !valid {
            violations.add(
                format!("topics[{index}]"),
                "a topic is \"area.event\" or \"area.*\" in lower-case letters, digits, '_' and '.'",
            );
        }
    }
    violations.finish()
}

#[tonic::async_trait]
impl EventHubService for EventHub {
    async fn subscribe(
        &self,
        request: Request<SubscribeRequest>,
    ) -> Result<Response<SubscribeStream>, Status> {
        let request = request.into_inner();
        check_topics(&request.topics)?;
        let start = start_position(self.bus.as_ref(), &request.cursor, request.from_oldest).await?;
        let topics = request.topics;
        let receiver = follow(
            self.bus.clone(),
            self.shutdown.clone(),
            start,
            move |event| !event.topic.is_empty() && topic_matches(&topics, &event.topic),
            |delivery, cursor| SubscribeResponse {
                cursor,
                event: Some(delivery.event),
            },
        );
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }
}

/// Where a listener starts: after `cursor` when it has one (OUT_OF_RANGE
/// when events after it were trimmed; from the start of the current log,
/// skipping replays it saw, when the cursor is of a log the bus has since
/// lost), else at the oldest retained event or at the live end.
pub async fn start_position(
    bus: &dyn EventBus,
    cursor: &str,
    from_oldest: bool,
) -> Result<Cursor, Error> {
    let generation = bus.generation().await?;
    if cursor.is_empty() {
        let position = if from_oldest {
            Position::default()
        } else {
            bus.newest().await?
        };
        return Ok(Cursor {
            generation: Some(generation),
            position,
            earlier: Vec::new(),
        });
    }
    let mut cursor: Cursor = cursor.parse()?;
    match cursor.generation.take() {
        Some(older) if older != generation => {
            cursor.leave(older, cursor.position);
            cursor.position = Position::default();
        }
        _ => bus.check_retained(cursor.position).await?,
    }
    cursor.generation = Some(generation);
    Ok(cursor)
}

/// Follows the bus from `cursor`, sending each selected event, shaped by
/// `shape` with the cursor to resume after it, to the returned receiver
/// until the receiver is dropped or `shutdown` fires: the loop behind every
/// server stream of events (the hub's `Subscribe`, journey's
/// `WatchTransitions`). A slow reader gets backpressure: the bus is read no
/// faster than the stream is drained. When the bus loses its log while a
/// listener follows it, the listener goes on from the start of the new log,
/// skipping the replays of events it had seen.
pub fn follow<T: Send + 'static>(
    bus: Arc<dyn EventBus>,
    shutdown: CancellationToken,
    mut cursor: Cursor,
    select: impl Fn(&cairn_contract::events::v1::ChangeEvent) -> bool + Send + 'static,
    shape: impl Fn(super::Delivery, String) -> T + Send + 'static,
) -> tokio::sync::mpsc::Receiver<Result<T, Status>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(READ_BATCH);
    tokio::spawn(async move {
        loop {
            let after = (cursor.position != Position::default()).then_some(cursor.position);
            let read = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = sender.closed() => break,
                read = bus.read(after, READ_BATCH, READ_WAIT) => read,
            };
            // What was read belongs to the generation the cursor names only
            // if the log has not been lost meanwhile.
            let read = match read {
                Ok(deliveries) => bus.generation().await.map(|now| (deliveries, now)),
                Err(error) => Err(error),
            };
            let (deliveries, now) = match read {
                Ok(read) => read,
                Err(error) => {
                    let _ = sender.send(Err(Status::from(error))).await;
                    break;
                }
            };
            if cursor.generation.as_deref() != Some(now.as_str()) {
                if let Some(left) = cursor.generation.replace(now) {
                    cursor.leave(left, cursor.position);
                }
                cursor.position = Position::default();
                tracing::info!("the bus lost its log; a listener goes on from its replays");
                continue;
            }
            for delivery in deliveries {
                cursor.position = delivery.position;
                if delivery
                    .origin
                    .as_ref()
                    .is_some_and(|origin| cursor.saw(origin))
                {
                    continue;
                }
                if !select(&delivery.event) {
                    continue;
                }
                let resume = cursor.to_string();
                if sender.send(Ok(shape(delivery, resume))).await.is_err() {
                    return;
                }
            }
        }
    });
    receiver
}
