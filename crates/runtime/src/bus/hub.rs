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
        let mut after: Option<Position> = if request.cursor.is_empty() {
            if request.from_oldest {
                None
            } else {
                Some(self.bus.newest().await?)
            }
        } else {
            let cursor: Position = request.cursor.parse()?;
            self.bus.check_retained(cursor).await?;
            Some(cursor)
        };

        let (sender, receiver) = tokio::sync::mpsc::channel(READ_BATCH);
        let bus = self.bus.clone();
        let shutdown = self.shutdown.clone();
        let topics = request.topics;
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
                    if delivery.event.topic.is_empty()
                        || !topic_matches(&topics, &delivery.event.topic)
                    {
                        continue;
                    }
                    let response = SubscribeResponse {
                        cursor: delivery.position.to_string(),
                        event: Some(delivery.event),
                    };
                    if sender.send(Ok(response)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }
}
