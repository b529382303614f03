//! The gRPC face of the journey service.

pub mod analytics;
pub mod context;
pub mod convert;
pub mod definitions;
pub mod export;
pub mod sessions;
pub mod watch;

use cairn_contract::journey::v1 as pb;
use cairn_contract::journey::v1::journey_service_server::JourneyService;
use cairn_runtime::Error;
use cairn_runtime::auth::{Principal, ScopeTable};
use tonic::{Request, Response, Status};

use crate::ingest::Ingestion;
pub use crate::ingest::MAX_TOUCHPOINTS_PER_BATCH;
use crate::profiles::ProfileDirectory;
use crate::storage::{TimelineFilter, TouchpointStore};
use cairn_runtime::Violations;
use cairn_runtime::common::{CustomerReference, channel, timestamp_from_proto};
use cairn_runtime::pagination::{PageTokens, listing, page_size};

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
    ingestion: Ingestion,
    profiles: ProfileDirectory,
    sessions: crate::storage::sessions::SessionStore,
    recommendations: crate::recommendations::Recommendations,
    feedback: crate::feedback::FeedbackDesk,
    bus: std::sync::Arc<dyn cairn_runtime::bus::EventBus>,
    shutdown: tokio_util::sync::CancellationToken,
    context_deadline: std::time::Duration,
    tokens: PageTokens,
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
    /// The customer context gathers within `context_deadline`; `tokens`
    /// sign page tokens.
    pub fn new(
        store: TouchpointStore,
        sessions: crate::storage::sessions::SessionStore,
        peers: Peers,
        bus: std::sync::Arc<dyn cairn_runtime::bus::EventBus>,
        shutdown: tokio_util::sync::CancellationToken,
        context_deadline: std::time::Duration,
        tokens: PageTokens,
    ) -> Self {
        Self {
            ingestion: Ingestion::new(
                store.clone(),
                peers.profiles.clone(),
                peers.recommendations.clone(),
            ),
            store,
            profiles: peers.profiles,
            sessions,
            recommendations: peers.recommendations,
            feedback: peers.feedback,
            bus,
            shutdown,
            context_deadline,
            tokens,
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
    /// The profile id of the customer a request concerns, if `caller` may
    /// touch their data ([`Ingestion::customer_of`], the one place that
    /// decides it).
    pub(crate) async fn customer_of(
        &self,
        caller: &Principal,
        field: &str,
        customer: &CustomerReference,
        create: bool,
    ) -> cairn_runtime::Result<uuid::Uuid> {
        self.ingestion
            .customer_of(caller, field, customer, create)
            .await
    }

    /// Checks one wire touchpoint named `field` and records it; returns it
    /// and whether it was stored before.
    async fn record_one(
        &self,
        caller: &Principal,
        field: &str,
        wire: pb::Touchpoint,
    ) -> cairn_runtime::Result<(crate::domain::Touchpoint, bool)> {
        let incoming = convert::incoming_touchpoint(field, wire, chrono::Utc::now())?
            .scoped_to(field, caller.customer())?;
        self.ingestion.record_one(caller, field, incoming).await
    }

    /// Checks the wire touchpoints of one batch (a stream message or a
    /// RecordTouchpoints call), records them in one transaction and answers
    /// each. `first` is the index in the call of the first touchpoint,
    /// which fields and results count from.
    async fn record_batch(
        &self,
        caller: &Principal,
        first: i64,
        wires: Vec<pb::Touchpoint>,
    ) -> Vec<pb::TouchpointResult> {
        let ids: Vec<String> = wires
            .iter()
            .map(|wire| wire.touchpoint_id.clone())
            .collect();
        let now = chrono::Utc::now();
        let checked = wires
            .into_iter()
            .enumerate()
            .map(|(slot, wire)| {
                let field = format!("touchpoints[{}]", first + slot as i64);
                convert::incoming_touchpoint(&field, wire, now)
                    .and_then(|incoming| incoming.scoped_to(&field, caller.customer()))
                    .map(|incoming| (field, incoming))
            })
            .collect();
        self.ingestion
            .record_batch(caller, checked)
            .await
            .into_iter()
            .zip(ids)
            .enumerate()
            .map(|(slot, (outcome, touchpoint_id))| {
                touchpoint_result(first + slot as i64, touchpoint_id, outcome)
            })
            .collect()
    }
}

#[tonic::async_trait]
impl JourneyService for JourneyApi {
    async fn record_touchpoint(
        &self,
        request: Request<pb::RecordTouchpointRequest>,
    ) -> Result<Response<pb::RecordTouchpointResponse>, Status> {
        let caller = Principal::of(&request)?;
        let wire = request
            .into_inner()
            .touchpoint
            .ok_or_else(|| Error::invalid("touchpoint", "required"))?;
        let (stored, duplicate) = self.record_one(&caller, "touchpoint", wire).await?;
        Ok(Response::new(pb::RecordTouchpointResponse {
            touchpoint: Some(convert::touchpoint_to_proto(&stored)),
            duplicate,
        }))
    }

    async fn record_touchpoints(
        &self,
        request: Request<pb::RecordTouchpointsRequest>,
    ) -> Result<Response<pb::RecordTouchpointsResponse>, Status> {
        let caller = Principal::of(&request)?;
        let touchpoints = request.into_inner().touchpoints;
        if touchpoints.is_empty() || touchpoints.len() > MAX_TOUCHPOINTS_PER_BATCH {
            return Err(Error::invalid(
                "touchpoints",
                format!("between 1 and {MAX_TOUCHPOINTS_PER_BATCH} touchpoints"),
            )
            .into());
        }
        Ok(Response::new(pb::RecordTouchpointsResponse {
            results: self.record_batch(&caller, 0, touchpoints).await,
        }))
    }

    async fn list_timeline(
        &self,
        request: Request<pb::ListTimelineRequest>,
    ) -> Result<Response<pb::ListTimelineResponse>, Status> {
        let caller = Principal::of(&request)?;
        let request = request.into_inner();
        let page_listing = listing("journey.list_timeline", &request);
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
        let after = violations.check(self.tokens.decode(&page_listing, &request.page_token));
        violations.finish()?;
        let (Some(customer), Some(limit), Some(after)) = (customer, limit, after) else {
            return Err(Error::internal("checked fields missing").into());
        };
        let profile_id = self
            .customer_of(&caller, "customer", &customer, false)
            .await?;
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
                .map(|position| self.tokens.encode(&page_listing, &position))
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
        let caller = Principal::of(&request)?;
        answer(self.get_state(&caller, request.into_inner()).await)
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
        let caller = Principal::of(&request)?;
        answer(self.get_session_of(&caller, request.into_inner()).await)
    }

    async fn resume_session(
        &self,
        request: Request<pb::ResumeSessionRequest>,
    ) -> Result<Response<pb::ResumeSessionResponse>, Status> {
        let caller = Principal::of(&request)?;
        answer(self.resume_session_of(&caller, request.into_inner()).await)
    }

    async fn update_session(
        &self,
        request: Request<pb::UpdateSessionRequest>,
    ) -> Result<Response<pb::UpdateSessionResponse>, Status> {
        let caller = Principal::of(&request)?;
        answer(self.update_session_of(&caller, request.into_inner()).await)
    }

    async fn end_session(
        &self,
        request: Request<pb::EndSessionRequest>,
    ) -> Result<Response<pb::EndSessionResponse>, Status> {
        let caller = Principal::of(&request)?;
        answer(self.end_session_of(&caller, request.into_inner()).await)
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

    async fn export_customer_journeys(
        &self,
        request: Request<pb::ExportCustomerJourneysRequest>,
    ) -> Result<Response<pb::ExportCustomerJourneysResponse>, Status> {
        answer(self.export_of(request.into_inner()).await)
    }

    async fn stream_touchpoints(
        &self,
        request: Request<tonic::Streaming<pb::StreamTouchpointsRequest>>,
    ) -> Result<Response<AckStream>, Status> {
        let caller = Principal::of(&request)?;
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
                // One transaction per message; messages of a stream are
                // stored in order, so one customer's touchpoints move them
                // through their journeys in the order sent.
                let count = message.touchpoints.len() as i64;
                let results = api.record_batch(&caller, index, message.touchpoints).await;
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
