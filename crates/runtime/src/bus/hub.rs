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

use super::{EventBus, Position, topic_matches};
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
            |delivery| SubscribeResponse {
                cursor: delivery.position.to_string(),
                event: Some(delivery.event),
            },
        );
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }
}

/// Where a listener starts: after `cursor` when it has one (OUT_OF_RANGE
/// when events after it were trimmed), else at the oldest retained event or
/// at the live end.
pub async fn start_position(
    bus: &dyn EventBus,
    cursor: &str,
    from_oldest: bool,
) -> Result<Option<Position>, Error> {
    if cursor.is_empty() {
        if from_oldest {
            Ok(None)
        } else {
            Ok(Some(bus.newest().await?))
        }
    } else {
        let cursor: Position = cursor.parse()?;
        bus.check_retained(cursor).await?;
        Ok(Some(cursor))
    }
}

/// Follows the bus from `after`, sending each selected event, shaped by
/// `shape`, to the returned receiver until the receiver is dropped or
/// `shutdown` fires: the loop behind every server stream of events (the
/// hub's `Subscribe`, journey's `WatchTransitions`). A slow reader gets
/// backpressure: the bus is read no faster than the stream is drained.
pub fn follow<T: Send + 'static>(
    bus: Arc<dyn EventBus>,
    shutdown: CancellationToken,
    mut after: Option<Position>,
    select: impl Fn(&cairn_contract::events::v1::ChangeEvent) -> bool + Send + 'static,
    shape: impl Fn(super::Delivery) -> T + Send + 'static,
) -> tokio::sync::mpsc::Receiver<Result<T, Status>> {
    let (sender, receiver) = tokio::sync::mpsc::channel(READ_BATCH);
    tokio::spawn(async move {
        loop {
            let read = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = sender.closed() => break,
                read = bus.read(after, READ_BATCH, READ_WAIT) => read,
            };
            let deliveries = match read {
                Ok(deliveries) => deliveries,
                Err(error) => {
                    let _ = sender.send(Err(Status::from(error))).await;
                    break;
                }
            };
            for delivery in deliveries {
                after = Some(delivery.position);
                if !select(&delivery.event) {
                    continue;
                }
                if sender.send(Ok(shape(delivery))).await.is_err() {
                    return;
                }
            }
        }
    });
    receiver
}
