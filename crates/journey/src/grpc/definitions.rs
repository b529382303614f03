//! Journey definitions and customers' positions over gRPC: the wire forms
//! and the handlers' bodies.

use std::sync::Arc;
use std::time::Duration;

use cairn_contract::journey::v1 as pb;
use cairn_runtime::common::{CustomerReference, timestamp_to_proto};
use cairn_runtime::pagination::{listing, page_size};
use cairn_runtime::{Error, Result, Violations};

use super::JourneyApi;
use crate::domain::definition::{
    DefinitionDocument, EntryDocument, ExitDocument, JourneyDefinition, ReentryDocument,
    StageDocument, format_duration,
};
use crate::domain::progress::{JourneyStatus, Transition};
use crate::storage::journeys::{JourneyState, etag_of};
use cairn_runtime::auth::Principal;

/// A wire duration named `field` as a document writes it; empty when unset.
fn duration_text(
    violations: &mut Violations,
    field: &str,
    value: Option<prost_types::Duration>,
) -> String {
    let Some(value) = value else {
        return String::new();
    };
    match Duration::try_from(value) {
        Ok(duration) if !duration.is_zero() => format_duration(duration),
        Ok(_) => String::new(),
        Err(_) => {
            violations.add(field, "must not be negative");
            String::new()
        }
    }
}

/// The document of a wire definition, every field checked at once.
pub fn document_from_proto(wire: pb::JourneyDefinition) -> Result<DefinitionDocument> {
    let mut violations = Violations::new();
    let reentry = wire.reentry.unwrap_or_default();
    let exit = wire.exit.unwrap_or_default();
    let document = DefinitionDocument {
        journey_id: wire.journey_id,
        display_name: wire.display_name,
        description: wire.description,
        entry: EntryDocument {
            condition: wire.entry.unwrap_or_default().condition,
        },
        reentry: ReentryDocument {
            allowed: reentry.allowed,
            after: duration_text(&mut violations, "reentry.after", reentry.after),
        },
        exit: ExitDocument {
            condition: exit.condition,
            inactivity: duration_text(&mut violations, "exit.inactivity", exit.inactivity),
        },
        stages: wire
            .stages
            .into_iter()
            .enumerate()
            .map(|(index, stage)| StageDocument {
                max_duration: duration_text(
                    &mut violations,
                    &format!("stages[{index}].max_duration"),
                    stage.max_duration,
                ),
                name: stage.name,
                condition: stage.condition,
                key_property: stage.key_property,
                completes_journey: stage.completes_journey,
            })
            .collect(),
        loop_to_stage: wire.loop_to_stage,
    };
    violations.finish()?;
    Ok(document)
}

fn wire_duration(value: Option<Duration>) -> Option<prost_types::Duration> {
    value.and_then(|value| prost_types::Duration::try_from(value).ok())
}

/// The wire form of a compiled definition.
pub fn definition_to_proto(definition: &JourneyDefinition) -> pb::JourneyDefinition {
    let document = &definition.document;
    pb::JourneyDefinition {
        journey_id: definition.id.clone(),
        version: definition.version,
        display_name: document.display_name.clone(),
        description: document.description.clone(),
        stages: definition
            .stages
            .iter()
            .map(|stage| pb::Stage {
                name: stage.name.clone(),
                condition: stage.condition.source().to_string(),
                max_duration: wire_duration(stage.max_duration),
                key_property: stage.key_property.clone().unwrap_or_default(),
                completes_journey: stage.completes_journey,
            })
            .collect(),
        entry: Some(pb::EntryRule {
            condition: document.entry.condition.clone(),
        }),
        reentry: Some(pb::ReentryRule {
            allowed: definition.reentry.allowed,
            after: wire_duration(
                (!definition.reentry.after.is_zero()).then_some(definition.reentry.after),
            ),
        }),
        exit: Some(pb::ExitRule {
            condition: document.exit.condition.clone(),
            inactivity: wire_duration(definition.inactivity),
        }),
        archived: definition.archived,
        etag: etag_of(definition),
        update_time: Some(timestamp_to_proto(definition.updated_at)),
        loop_to_stage: document.loop_to_stage.clone(),
    }
}

/// The wire form of a transition of `profile_id`.
pub fn transition_to_proto(profile_id: &str, transition: &Transition) -> pb::Transition {
    pb::Transition {
        journey_id: transition.journey_id.clone(),
        version: transition.version,
        from_stage: transition.from.clone().unwrap_or_default(),
        to_stage: transition.to.clone().unwrap_or_default(),
        touchpoint_id: transition.touchpoint_id.clone().unwrap_or_default(),
        transition_time: Some(timestamp_to_proto(transition.at)),
        profile_id: profile_id.to_string(),
    }
}

/// The wire form of a journey state.
pub fn state_to_proto(state: &JourneyState) -> pb::JourneyState {
    let position = &state.position;
    pb::JourneyState {
        journey_id: position.journey_id.clone(),
        version: position.version,
        profile_id: state.profile_id.clone(),
        current_stage: position.stage.clone().unwrap_or_default(),
        stage_enter_time: Some(timestamp_to_proto(position.stage_entered_at)),
        status: status_to_proto(position.status) as i32,
        transitions: state
            .transitions
            .iter()
            .map(|transition| transition_to_proto(&state.profile_id, transition))
            .collect(),
    }
}

fn status_to_proto(status: JourneyStatus) -> pb::JourneyStatus {
    match status {
        JourneyStatus::Active => pb::JourneyStatus::Active,
        JourneyStatus::Completed => pb::JourneyStatus::Completed,
        JourneyStatus::Exited => pb::JourneyStatus::Exited,
        JourneyStatus::Abandoned => pb::JourneyStatus::Abandoned,
    }
}

/// Fields of a definition an update may name.
const UPDATABLE: &[&str] = &[
    "display_name",
    "description",
    "stages",
    "entry",
    "reentry",
    "exit",
    "loop_to_stage",
];

/// `current` with the fields of `incoming` named by `mask` (all when empty).
fn merge_masked(
    current: &DefinitionDocument,
    incoming: DefinitionDocument,
    mask: &[String],
) -> Result<DefinitionDocument> {
    if mask.is_empty() {
        return Ok(incoming);
    }
    let mut merged = current.clone();
    for (index, path) in mask.iter().enumerate() {
        match path.as_str() {
            "display_name" => merged.display_name = incoming.display_name.clone(),
            "description" => merged.description = incoming.description.clone(),
            "stages" => merged.stages = incoming.stages.clone(),
            "entry" => merged.entry = incoming.entry.clone(),
            "reentry" => merged.reentry = incoming.reentry.clone(),
            "exit" => merged.exit = incoming.exit.clone(),
            "loop_to_stage" => merged.loop_to_stage = incoming.loop_to_stage.clone(),
            other => {
                return Err(Error::invalid(
                    format!("update_mask.paths[{index}]"),
                    format!(
                        "\"{other}\" cannot be changed; use one of {}",
                        UPDATABLE.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(merged)
}

impl JourneyApi {
    pub(super) async fn create_definition(
        &self,
        request: pb::CreateJourneyDefinitionRequest,
    ) -> Result<pb::CreateJourneyDefinitionResponse> {
        let wire = request
            .definition
            .ok_or_else(|| Error::invalid("definition", "required"))?;
        let document = document_from_proto(wire).map_err(|error| error.within("definition"))?;
        let stored = self
            .store
            .journeys()
            .create(&document)
            .await
            .map_err(|error| error.within("definition"))?;
        Ok(pb::CreateJourneyDefinitionResponse {
            definition: Some(definition_to_proto(&stored)),
        })
    }

    pub(super) async fn get_definition(
        &self,
        request: pb::GetJourneyDefinitionRequest,
    ) -> Result<pb::GetJourneyDefinitionResponse> {
        crate::domain::definition::check_journey_id(&request.journey_id)?;
        let journeys = self.store.journeys();
        let definition = match request.version {
            0 => journeys.latest(&request.journey_id).await?,
            version if version > 0 => {
                journeys
                    .version(journeys.database(), &request.journey_id, version)
                    .await?
            }
            _ => {
                return Err(Error::invalid(
                    "version",
                    "0 for the latest, or a version from 1",
                ));
            }
        };
        Ok(pb::GetJourneyDefinitionResponse {
            definition: Some(definition_to_proto(&definition)),
        })
    }

    pub(super) async fn list_definitions(
        &self,
        request: pb::ListJourneyDefinitionsRequest,
    ) -> Result<pb::ListJourneyDefinitionsResponse> {
        let page_listing = listing("journey.list_definitions", &request);
        let limit = page_size(request.page_size)? as usize;
        let after = self.tokens.decode(&page_listing, &request.page_token)?;
        let journeys = self.store.journeys();
        let heads: Vec<Arc<JourneyDefinition>> = journeys
            .heads(journeys.database(), request.include_archived)
            .await?
            .into_iter()
            .filter(|definition| {
                after
                    .as_deref()
                    .is_none_or(|after| definition.id.as_str() > after)
            })
            .collect();
        let next_page_token = if heads.len() > limit {
            self.tokens.encode(&page_listing, &heads[limit - 1].id)
        } else {
            String::new()
        };
        Ok(pb::ListJourneyDefinitionsResponse {
            definitions: heads
                .iter()
                .take(limit)
                .map(|d| definition_to_proto(d))
                .collect(),
            next_page_token,
        })
    }

    pub(super) async fn update_definition(
        &self,
        request: pb::UpdateJourneyDefinitionRequest,
    ) -> Result<pb::UpdateJourneyDefinitionResponse> {
        let wire = request
            .definition
            .ok_or_else(|| Error::invalid("definition", "required"))?;
        crate::domain::definition::check_journey_id(&wire.journey_id)
            .map_err(|error| error.within("definition"))?;
        if wire.etag.is_empty() {
            return Err(Error::invalid(
                "definition.etag",
                "required: the etag of the version you read, so that a concurrent change is not overwritten",
            ));
        }
        let etag = wire.etag.clone();
        let journeys = self.store.journeys();
        let current = journeys.latest(&wire.journey_id).await?;
        let incoming = document_from_proto(wire).map_err(|error| error.within("definition"))?;
        let mask = request
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        let document = merge_masked(&current.document, incoming, &mask)?;
        let stored = journeys
            .update(&document, &etag)
            .await
            .map_err(|error| error.within("definition"))?;
        Ok(pb::UpdateJourneyDefinitionResponse {
            definition: Some(definition_to_proto(&stored)),
        })
    }

    pub(super) async fn archive_definition(
        &self,
        request: pb::ArchiveJourneyDefinitionRequest,
    ) -> Result<pb::ArchiveJourneyDefinitionResponse> {
        crate::domain::definition::check_journey_id(&request.journey_id)?;
        let archived = self.store.journeys().archive(&request.journey_id).await?;
        Ok(pb::ArchiveJourneyDefinitionResponse {
            definition: Some(definition_to_proto(&archived)),
        })
    }

    pub(super) async fn validate_definition(
        &self,
        request: pb::ValidateJourneyDefinitionRequest,
    ) -> Result<pb::ValidateJourneyDefinitionResponse> {
        let wire = request
            .definition
            .ok_or_else(|| Error::invalid("definition", "required"))?;
        let outcome = document_from_proto(wire)
            .and_then(|document| document.compile(1, false, chrono::Utc::now()).map(|_| ()));
        let problems = match outcome {
            Ok(()) => Vec::new(),
            Err(Error::InvalidArgument(violations)) => violations
                .into_iter()
                .map(|violation| format!("{}: {}", violation.field, violation.description))
                .collect(),
            Err(other) => return Err(other),
        };
        Ok(pb::ValidateJourneyDefinitionResponse {
            valid: problems.is_empty(),
            problems,
        })
    }

    pub(super) async fn get_state(
        &self,
        caller: &Principal,
        request: pb::GetJourneyStateRequest,
    ) -> Result<pb::GetJourneyStateResponse> {
        let mut violations = Violations::new();
        let customer =
            violations.check(CustomerReference::from_proto("customer", request.customer));
        violations.check(crate::domain::definition::check_journey_id(
            &request.journey_id,
        ));
        violations.finish()?;
        let customer = customer.ok_or_else(|| Error::internal("checked customer missing"))?;
        let profile_id = self
            .customer_of(caller, "customer", &customer, false)
            .await?;
        let state = self
            .store
            .journeys()
            .state(&profile_id.to_string(), &request.journey_id)
            .await?
            .ok_or_else(|| {
                Error::not_found(
                    "journey state",
                    format!(
                        "the customer never entered journey \"{}\"",
                        request.journey_id
                    ),
                )
            })?;
        Ok(pb::GetJourneyStateResponse {
            state: Some(state_to_proto(&state)),
        })
    }

    pub(super) async fn list_states(
        &self,
        request: pb::ListJourneyStatesRequest,
    ) -> Result<pb::ListJourneyStatesResponse> {
        let customer = CustomerReference::from_proto("customer", request.customer)?;
        let profile_id = self.profiles.find("customer", &customer).await?;
        let states = self
            .store
            .journeys()
            .states(&profile_id.to_string())
            .await?;
        Ok(pb::ListJourneyStatesResponse {
            states: states.iter().map(state_to_proto).collect(),
        })
    }
}

impl JourneyApi {
    pub(super) async fn list_abandonments_of(
        &self,
        request: pb::ListAbandonmentsRequest,
    ) -> Result<pb::ListAbandonmentsResponse> {
        use crate::storage::abandonments::{AbandonmentFilter, list};
        let page_listing = listing("journey.list_abandonments", &request);
        let mut violations = Violations::new();
        let customer = match request.customer {
            Some(customer) => {
                violations.check(CustomerReference::from_proto("customer", Some(customer)))
            }
            None => None,
        };
        if !request.journey_id.is_empty() {
            violations.check(crate::domain::definition::check_journey_id(
                &request.journey_id,
            ));
        }
        let (start, end) = violations
            .check(super::time_range(request.time_range))
            .unwrap_or_default();
        let limit = violations.check(page_size(request.page_size));
        let after = violations.check(self.tokens.decode(&page_listing, &request.page_token));
        violations.finish()?;
        let (Some(limit), Some(after)) = (limit, after) else {
            return Err(Error::internal("checked fields missing"));
        };
        let customer = match customer {
            Some(customer) => Some(self.profiles.find("customer", &customer).await?.to_string()),
            None => None,
        };
        let filter = AbandonmentFilter {
            customer,
            journey_id: (!request.journey_id.is_empty()).then_some(request.journey_id),
            start,
            end,
        };
        let (rows, next) = list(self.store.journeys().database(), &filter, limit, after).await?;
        Ok(pb::ListAbandonmentsResponse {
            abandonments: rows
                .into_iter()
                .map(|row| pb::Abandonment {
                    abandonment_id: row.id,
                    profile_id: row.customer_id,
                    journey_id: row.journey_id,
                    stage: row.stage,
                    key: row.stage_key,
                    detect_time: Some(timestamp_to_proto(row.detected_at)),
                    decision_id: row.decision_id.unwrap_or_default(),
                    action_id: row.action_id.unwrap_or_default(),
                    channel: row.channel.unwrap_or_default(),
                    reengagement_status: row.status,
                })
                .collect(),
            next_page_token: next
                .map(|id| self.tokens.encode(&page_listing, &id))
                .unwrap_or_default(),
        })
    }
}

/// The wire form of a document as written (a journeys-as-code file): what
/// `cairn journeys apply` sends. A duration that does not parse is reported
/// with its field.
pub fn document_to_proto(document: &DefinitionDocument) -> Result<pb::JourneyDefinition> {
    let mut violations = Violations::new();
    let mut duration = |field: String, text: &str| -> Option<prost_types::Duration> {
        if text.trim().is_empty() {
            return None;
        }
        match humantime::parse_duration(text.trim()) {
            Ok(value) => prost_types::Duration::try_from(value).ok(),
            Err(error) => {
                violations.add(
                    field,
                    format!("\"{text}\" is not a duration such as \"2h\" or \"7d\": {error}"),
                );
                None
            }
        }
    };
    let wire = pb::JourneyDefinition {
        journey_id: document.journey_id.clone(),
        display_name: document.display_name.clone(),
        description: document.description.clone(),
        stages: document
            .stages
            .iter()
            .enumerate()
            .map(|(index, stage)| pb::Stage {
                name: stage.name.clone(),
                condition: stage.condition.clone(),
                max_duration: duration(
                    format!("stages[{index}].max_duration"),
                    &stage.max_duration,
                ),
                key_property: stage.key_property.clone(),
                completes_journey: stage.completes_journey,
            })
            .collect(),
        entry: Some(pb::EntryRule {
            condition: document.entry.condition.clone(),
        }),
        reentry: Some(pb::ReentryRule {
            allowed: document.reentry.allowed,
            after: duration("reentry.after".into(), &document.reentry.after),
        }),
        exit: Some(pb::ExitRule {
            condition: document.exit.condition.clone(),
            inactivity: duration("exit.inactivity".into(), &document.exit.inactivity),
        }),
        loop_to_stage: document.loop_to_stage.clone(),
        ..Default::default()
    };
    violations.finish()?;
    Ok(wire)
}

/// The parts of two wire definitions that people write, so that applying
/// an unchanged file is recognised and writes no new version.
pub fn same_content(a: &pb::JourneyDefinition, b: &pb::JourneyDefinition) -> bool {
    let written = |d: &pb::JourneyDefinition| pb::JourneyDefinition {
        journey_id: d.journey_id.clone(),
        display_name: d.display_name.clone(),
        description: d.description.clone(),
        stages: d.stages.clone(),
        entry: Some(d.entry.clone().unwrap_or_default()),
        reentry: Some(d.reentry.unwrap_or_default()),
        exit: Some(d.exit.clone().unwrap_or_default()),
        loop_to_stage: d.loop_to_stage.clone(),
        ..Default::default()
    };
    written(a) == written(b)
}
