//! `WatchTransitions`: stage transitions streamed from the suite's bus as
//! they happen, resumable with a cursor, so any replica can serve any
//! watcher (an agent desktop, a front end).

use cairn_contract::events::v1::change_event::Payload;
use cairn_contract::journey::v1 as pb;
use cairn_runtime::bus::{follow, start_position};
use cairn_runtime::common::CustomerReference;
use cairn_runtime::{Error, Result, Violations};

use super::JourneyApi;

/// Most journeys one watch may name.
const MAX_JOURNEYS: usize = 64;

/// The stream `WatchTransitions` answers with.
pub type TransitionStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<pb::WatchTransitionsResponse, tonic::Status>> + Send>,
>;

impl JourneyApi {
    pub(super) async fn watch(
        &self,
        request: pb::WatchTransitionsRequest,
    ) -> Result<TransitionStream> {
        let mut violations = Violations::new();
        let customer = match request.customer {
            Some(customer) => {
                violations.check(CustomerReference::from_proto("customer", Some(customer)))
            }
            None => None,
        };
        if request.journey_ids.len() > MAX_JOURNEYS {
            violations.add("journey_ids", format!("at most {MAX_JOURNEYS} journeys"));
        }
        for (index, journey_id) in request.journey_ids.iter().enumerate() {
            if let Err(error) = crate::domain::definition::check_journey_id(journey_id) {
                violations.check::<()>(Err(error.within(&format!("journey_ids[{index}]"))));
            }
        }
        violations.finish()?;
        let profile_id = match &customer {
            Some(customer) => Some(self.profiles.find("customer", customer).await?.to_string()),
            None => None,
        };
        let start = start_position(self.bus.as_ref(), &request.cursor, false)
            .await
            .map_err(|error| match error {
                Error::InvalidArgument(_) => Error::invalid(
                    "cursor",
                    "not a cursor this server issued; use a WatchTransitionsResponse.cursor or leave it empty",
                ),
                other => other,
            })?;
        let journeys = request.journey_ids;
        let receiver = follow(
            self.bus.clone(),
            self.shutdown.clone(),
            start,
            move |event| {
                let Some(Payload::StageChanged(changed)) = &event.payload else {
                    return false;
                };
                profile_id.as_ref().is_none_or(|id| *id == event.profile_id)
                    && (journeys.is_empty() || journeys.contains(&changed.journey_id))
            },
            |delivery, cursor| {
                let event = delivery.event;
                let Some(Payload::StageChanged(changed)) = event.payload else {
                    return pb::WatchTransitionsResponse::default();
                };
                pb::WatchTransitionsResponse {
                    transition: Some(pb::Transition {
                        journey_id: changed.journey_id,
                        version: changed.version,
                        from_stage: changed.from_stage,
                        to_stage: changed.to_stage,
                        touchpoint_id: changed.touchpoint_id,
                        transition_time: event.occurred_at,
                        profile_id: event.profile_id,
                    }),
                    cursor,
                }
            },
        );
        Ok(Box::pin(tokio_stream::wrappers::ReceiverStream::new(
            receiver,
        )))
    }
}
