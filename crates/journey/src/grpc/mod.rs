//! The gRPC face of the journey service.

pub mod analytics;
pub mod context;
pub mod convert;
pub mod definitions;
pub mod sessions;
pub mod watch;

use cairn_contract::journey::v1 as pb;
use cairn_contract::journey::v1::journey_service_server::JourneyService;
use cairn_runtime::Error;
use cairn_runtime::auth::ScopeTable;
use tonic::{Request, Response, Status};

use crate::profiles::ProfileDirectory;
use crate::storage::{TimelineFilter, TouchpointStore};
use cairn_runtime::Violations;
use cairn_runtime::common::{CustomerReference, channel, timestamp_from_proto};
use cairn_runtime::pagination::{decode_token, encode_token, page_size};

/// The protobuf name of the service.
pub const SERVICE_NAME: &str = "cairn.journey.v1.JourneyService";

/// The scope each method needs, as the contract documents it.
pub fn scopes() -> ScopeTable {
    ScopeTable::from_contract(SERVICE_NAME)
}

/// The gRPC handlers.
#[derive(Clone)]
pub struct JourneyApi {
    store: TouchpointStore,
    profiles: ProfileDirectory,
    sessions: crate::storage::sessions::SessionStore,
    recommendations: crate::recommendations::Recommendations,
    feedback: crate::feedback::FeedbackDesk,
    bus: std::sync::Arc<dyn cairn_runtime::bus::EventBus>,
    shutdown: tokio_util::sync::CancellationToken,
    context_deadline: std::time::Duration,
}

/// The other services the handlers call.
pub struct Peers {
    /// Who customers are.
    pub profiles: ProfileDirectory,
    /// Next best actions.
    pub recommendations: crate::recommendations::Recommendations,
    /// Tickets and scores.
    pub feedback: crate::feedback::FeedbackDesk,
}

impl JourneyApi {
    /// Handlers over `store`, resolving customers through `profiles`;
    /// watches follow `bus` until `shutdown`.
    /// The customer context gathers within `context_deadline`.
    pub fn new(
        store: TouchpointStore,
        sessions: crate::storage::sessions::SessionStore,
        peers: Peers,
        bus: std::sync::Arc<dyn cairn_runtime::bus::EventBus>,
        shutdown: tokio_util::sync::CancellationToken,
        context_deadline: std::time::Duration,
    ) -> Self {
        Self {
            store,
            profiles: peers.profiles,
            sessions,
            recommendations: peers.recommendations,
            feedback: peers.feedback,
            bus,
            shutdown,
            context_deadline,
        }
    }
}

/// A point in time.
type Time = chrono::DateTime<chrono::Utc>;

/// A request's optional time range, checked: (start, end), either open.
pub(crate) fn time_range(
    range: Option<cairn_contract::common::v1::TimeRange>,
) -> cairn_runtime::Result<(Option<Time>, Option<Time>)> {
    let range = range.unwrap_or_default();
    let mut violations = Violations::new();
    let start = range
        .start_time
        .as_ref()
        .and_then(|t| violations.check(timestamp_from_proto("time_range.start_time", t)));
    let end = range
        .end_time
        .as_ref()
        .and_then(|t| violations.check(timestamp_from_proto("time_range.end_time", t)));
    if let (Some(start), Some(end)) = (start, end)
        && end < start
    {
        violations.add(
            "time_range.end_time",
            "before start_time; the range's end must come after its start",
        );
    }
    violations.finish()?;
    Ok((start, end))
}

/// Answers a handler's result on the wire, mapping domain errors in one place.
fn answer<T>(result: cairn_runtime::Result<T>) -> Result<Response<T>, Status> {
    result.map(Response::new).map_err(Status::from)
}

/// What became of one touchpoint of a batch or a stream.
fn touchpoint_result(
    index: i64,
    touchpoint_id: String,
    outcome: cairn_runtime::Result<(crate::domain::Touchpoint, bool)>,
) -> pb::TouchpointResult {
    match outcome {
        Ok((stored, duplicate)) => pb::TouchpointResult {
            index,
            touchpoint_id,
            outcome: if duplicate {
                pb::TouchpointOutcome::Duplicate
            } else {
                pb::TouchpointOutcome::Stored
            } as i32,
            profile_id: stored.profile_id.to_string(),
            ..Default::default()
        },
        Err(error) => {
            let status = Status::from(error);
            pb::TouchpointResult {
                index,
                touchpoint_id,
                outcome: pb::TouchpointOutcome::Refused as i32,
                error_message: status.message().to_string(),
                error_code: status.code() as i32,
                ..Default::default()
            }
        }
    }
}

/// The acknowledgement stream of StreamTouchpoints.
type AckStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<pb::StreamTouchpointsResponse, Status>> + Send + 'static>,
>;

impl JourneyApi {
    /// Checks, resolves and stores one touchpoint named `field`; returns it
    /// and whether it was stored before.
    async fn record_one(
        &self,
        field: &str,
        wire: pb::Touchpoint,
    ) -> cairn_runtime::Result<(crate::domain::Touchpoint, bool)> {
        let incoming = convert::IncomingTouchpoint::from_proto(field, wire, chrono::Utc::now())?;
        // A retry of a stored touchpoint is answered without asking the profile service.
        if let Some(stored) = self.store.find(&incoming.id).await? {
            return Ok((stored, true));
        }
        let profile_id = self
            .profiles
            .resolve(&format!("{field}.customer"), &incoming.customer)
            .await?;
        let journeys = self.store.journeys();
        let heads = journeys.heads(journeys.database(), true).await?;
        let profile = if heads.iter().any(|journey| journey.reads_profile()) {
            self.profiles.rule_variable(profile_id).await?
        } else {
            crate::profiles::empty_rule_variable()
        };
        self.store
            .record(incoming.into_touchpoint(profile_id), &heads, profile)
            .await
    }
}

/// Touchpoints of one batch recorded at once: those of different customers
/// go side by side, each customer's in the order sent (their journey moves
/// depend on it). What the wire names one customer by is the key; two
/// identifiers of one person are kept in order by the per-customer lock
/// inside the store, not by this.
const CONCURRENT_CUSTOMERS: usize = 8;

/// Most touchpoints in one RecordTouchpoints call or one stream message.
pub const MAX_TOUCHPOINTS_PER_BATCH: usize = 1000;

impl JourneyApi {
    /// Records a batch whose first touchpoint has the index `first`; returns
    /// one result per touchpoint, in the batch's order.
    async fn record_batch(
        &self,
        first: i64,
        touchpoints: Vec<pb::Touchpoint>,
    ) -> Vec<pb::TouchpointResult> {
        use futures::StreamExt;
        use prost::Message;
        let mut by_customer: Vec<Vec<(i64, pb::Touchpoint)>> = Vec::new();
        let mut groups = std::collections::HashMap::<Vec<u8>, usize>::new();
        for (offset, wire) in touchpoints.into_iter().enumerate() {
            let index = first + offset as i64;
            let key = wire
                .customer
                .as_ref()
                .map(Message::encode_to_vec)
                .unwrap_or_default();
            let group = match groups.get(&key) {
                Some(group) if !key.is_empty() => *group,
                _ => {
                    groups.insert(key, by_customer.len());
                    by_customer.push(Vec::new());
                    by_customer.len() - 1
                }
            };
            by_customer[group].push((index, wire));
        }
        let mut results: Vec<pb::TouchpointResult> = futures::stream::iter(by_customer)
            .map(|group| async move {
                let mut results = Vec::with_capacity(group.len());
                for (index, wire) in group {
                    let touchpoint_id = wire.touchpoint_id.clone();
                    let outcome = self
                        .record_one(&format!("touchpoints[{index}]"), wire)
                        .await;
                    results.push(touchpoint_result(index, touchpoint_id, outcome));
                }
                results
            })
            .buffer_unordered(CONCURRENT_CUSTOMERS)
            .flat_map(futures::stream::iter)
            .collect()
            .await;
        results.sort_by_key(|result| result.index);
        results
    }
}

#[tonic::async_trait]
impl JourneyService for JourneyApi {
    async fn record_touchpoint(
        &self,
        request: Request<pb::RecordTouchpointRequest>,
    ) -> Result<Response<pb::RecordTouchpointResponse>, Status> {
        let wire = request
            .into_inner()
            .touchpoint
            .ok_or_else(|| Error::invalid("touchpoint", "required"))?;
        let (stored, duplicate) = self.record_one("touchpoint", wire).await?;
        Ok(Response::new(pb::RecordTouchpointResponse {
            touchpoint: Some(convert::touchpoint_to_proto(&stored)),
            duplicate,
        }))
    }

    async fn record_touchpoints(
        &self,
        request: Request<pb::RecordTouchpointsRequest>,
    ) -> Result<Response<pb::RecordTouchpointsResponse>, Status> {
        let touchpoints = request.into_inner().touchpoints;
        if touchpoints.is_empty() || touchpoints.len() > MAX_TOUCHPOINTS_PER_BATCH {
            return Err(Error::invalid(
                "touchpoints",
                format!("between 1 and {MAX_TOUCHPOINTS_PER_BATCH} touchpoints"),
            )
            .into());
        }
        let results = self.record_batch(0, touchpoints).await;
        Ok(Response::new(pb::RecordTouchpointsResponse { results }))
    }

    async fn list_timeline(
        &self,
        request: Request<pb::ListTimelineRequest>,
    ) -> Result<Response<pb::ListTimelineResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let customer =
            violations.check(CustomerReference::from_proto("customer", request.customer));
        let channels: Vec<i32> = request
            .channels
            .iter()
            .enumerate()
            .filter_map(|(index, raw)| {
                violations
                    .check(channel(&format!("channels[{index}]"), *raw))
                    .map(|c| c as i32)
            })
            .collect();
        let kinds: Vec<String> = request
            .types
            .iter()
            .enumerate()
            .filter_map(|(index, raw)| {
                violations.check(convert::kind_name(&format!("types[{index}]"), *raw))
            })
            .collect();
        let (start, end) = violations
            .check(time_range(request.time_range))
            .unwrap_or_default();
        let limit = violations.check(page_size(request.page_size));
        let after = violations.check(decode_token(&request.page_token));
        violations.finish()?;
        let (Some(customer), Some(limit), Some(after)) = (customer, limit, after) else {
            return Err(Error::internal("checked fields missing").into());
        };
        let profile_id = self.profiles.find("customer", &customer).await?;
        let filter = TimelineFilter {
            channels,
            kinds,
            start,
            end,
        };
        let (touchpoints, next) = self
            .store
            .timeline(profile_id, &filter, limit, after)
            .await?;
        Ok(Response::new(pb::ListTimelineResponse {
            touchpoints: touchpoints
                .iter()
                .map(convert::touchpoint_to_proto)
                .collect(),
            next_page_token: next
                .map(|position| encode_token(&position))
                .unwrap_or_default(),
        }))
    }

    async fn create_journey_definition(
        &self,
        request: Request<pb::CreateJourneyDefinitionRequest>,
    ) -> Result<Response<pb::CreateJourneyDefinitionResponse>, Status> {
        answer(self.create_definition(request.into_inner()).await)
    }

    async fn get_journey_definition(
        &self,
        request: Request<pb::GetJourneyDefinitionRequest>,
    ) -> Result<Response<pb::GetJourneyDefinitionResponse>, Status> {
        answer(self.get_definition(request.into_inner()).await)
    }

    async fn list_journey_definitions(
        &self,
        request: Request<pb::ListJourneyDefinitionsRequest>,
    ) -> Result<Response<pb::ListJourneyDefinitionsResponse>, Status> {
        answer(self.list_definitions(request.into_inner()).await)
    }

    async fn update_journey_definition(
        &self,
        request: Request<pb::UpdateJourneyDefinitionRequest>,
    ) -> Result<Response<pb::UpdateJourneyDefinitionResponse>, Status> {
        answer(self.update_definition(request.into_inner()).await)
    }

    async fn archive_journey_definition(
        &self,
        request: Request<pb::ArchiveJourneyDefinitionRequest>,
    ) -> Result<Response<pb::ArchiveJourneyDefinitionResponse>, Status> {
        answer(self.archive_definition(request.into_inner()).await)
    }

    async fn validate_journey_definition(
        &self,
        request: Request<pb::ValidateJourneyDefinitionRequest>,
    ) -> Result<Response<pb::ValidateJourneyDefinitionResponse>, Status> {
        answer(self.validate_definition(request.into_inner()).await)
    }

    async fn get_journey_state(
        &self,
        request: Request<pb::GetJourneyStateRequest>,
    ) -> Result<Response<pb::GetJourneyStateResponse>, Status> {
        answer(self.get_state(request.into_inner()).await)
    }

    async fn list_journey_states(
        &self,
        request: Request<pb::ListJourneyStatesRequest>,
    ) -> Result<Response<pb::ListJourneyStatesResponse>, Status> {
        answer(self.list_states(request.into_inner()).await)
    }

    async fn watch_transitions(
        &self,
        request: Request<pb::WatchTransitionsRequest>,
    ) -> Result<Response<watch::TransitionStream>, Status> {
        answer(self.watch(request.into_inner()).await)
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::GetSessionResponse>, Status> {
        answer(self.get_session_of(request.into_inner()).await)
    }

    async fn resume_session(
        &self,
        request: Request<pb::ResumeSessionRequest>,
    ) -> Result<Response<pb::ResumeSessionResponse>, Status> {
        answer(self.resume_session_of(request.into_inner()).await)
    }

    async fn update_session(
        &self,
        request: Request<pb::UpdateSessionRequest>,
    ) -> Result<Response<pb::UpdateSessionResponse>, Status> {
        answer(self.update_session_of(request.into_inner()).await)
    }

    async fn end_session(
        &self,
        request: Request<pb::EndSessionRequest>,
    ) -> Result<Response<pb::EndSessionResponse>, Status> {
        answer(self.end_session_of(request.into_inner()).await)
    }

    async fn list_abandonments(
        &self,
        request: Request<pb::ListAbandonmentsRequest>,
    ) -> Result<Response<pb::ListAbandonmentsResponse>, Status> {
        answer(self.list_abandonments_of(request.into_inner()).await)
    }

    async fn run_funnel(
        &self,
        request: Request<pb::RunFunnelRequest>,
    ) -> Result<Response<pb::RunFunnelResponse>, Status> {
        answer(self.run_funnel_of(request.into_inner()).await)
    }

    async fn list_top_paths(
        &self,
        request: Request<pb::ListTopPathsRequest>,
    ) -> Result<Response<pb::ListTopPathsResponse>, Status> {
        answer(self.list_top_paths_of(request.into_inner()).await)
    }

    async fn get_customer_context(
        &self,
        request: Request<pb::GetCustomerContextRequest>,
    ) -> Result<Response<pb::GetCustomerContextResponse>, Status> {
        // The caller's own deadline wins when it is shorter.
        let deadline = request
            .metadata()
            .get("grpc-timeout")
            .and_then(|value| value.to_str().ok())
            .and_then(cairn_runtime::deadline::parse_grpc_timeout)
            .map_or(self.context_deadline, |asked| {
                asked.mul_f64(0.9).min(self.context_deadline)
            });
        answer(self.customer_context(request.into_inner(), deadline).await)
    }

    async fn stream_touchpoints(
        &self,
        request: Request<tonic::Streaming<pb::StreamTouchpointsRequest>>,
    ) -> Result<Response<AckStream>, Status> {
        let mut incoming = request.into_inner();
        let api = self.clone();
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut index: i64 = 0;
            loop {
                let message = match incoming.message().await {
                    Ok(Some(message)) => message,
                    Ok(None) => break,
                    Err(status) => {
                        let _ = sender.send(Err(status)).await;
                        break;
                    }
                };
                // Refused before any of it is worked on: a client bug, and
                // an acknowledgement that would come only after thousands
                // of writes.
                if message.touchpoints.len() > MAX_TOUCHPOINTS_PER_BATCH {
                    let refusal = Error::invalid(
                        "touchpoints",
                        format!(
                            "at most {MAX_TOUCHPOINTS_PER_BATCH} touchpoints per message; \
                             this one had {}",
                            message.touchpoints.len()
                        ),
                    );
                    let _ = sender.send(Err(refusal.into())).await;
                    break;
                }
                let count = message.touchpoints.len() as i64;
                let results = api.record_batch(index, message.touchpoints).await;
                index += count;
                // Acknowledged only after every touchpoint of the message is durable.
                if sender
                    .send(Ok(pb::StreamTouchpointsResponse { results }))
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }
}
