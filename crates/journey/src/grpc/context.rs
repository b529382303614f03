//! `GetCustomerContext`: one view of a customer for an agent desktop, a
//! store clerk or a chatbot, gathered from every service at once within one
//! deadline; a part that does not answer in time is listed as missing.

use std::future::Future;
use std::time::Duration;

use cairn_contract::journey::v1 as pb;
use cairn_runtime::common::{CustomerReference, channel};
use cairn_runtime::{Error, Result, Violations};
use tokio::time::Instant;
use uuid::Uuid;

use super::JourneyApi;
use super::convert::touchpoint_to_proto;
use super::definitions::state_to_proto;
use super::sessions::session_to_proto;
use crate::storage::TimelineFilter;

/// Runs `part` until `deadline`; `None` (and `name` listed in `missing`)
/// when it fails or runs out of time.
async fn within<T>(
    deadline: Instant,
    name: &'static str,
    part: impl Future<Output = Result<T>>,
) -> std::result::Result<T, &'static str> {
    match tokio::time::timeout_at(deadline, part).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => {
            tracing::debug!(part = name, %error, "customer context part failed");
            Err(name)
        }
        Err(_) => Err(name),
    }
}

/// The part's value, or its name added to `missing`.
fn present<T>(part: std::result::Result<T, &'static str>, missing: &mut Vec<String>) -> Option<T> {
    match part {
        Ok(value) => Some(value),
        Err(name) => {
            missing.push(name.to_string());
            None
        }
    }
}

impl JourneyApi {
    pub(super) async fn customer_context(
        &self,
        request: pb::GetCustomerContextRequest,
        deadline: Duration,
    ) -> Result<pb::GetCustomerContextResponse> {
        let mut violations = Violations::new();
        let customer =
            violations.check(CustomerReference::from_proto("customer", request.customer));
        let asking = violations.check(channel("channel", request.channel));
        let count = match request.touchpoint_count {
            0 => 10,
            n @ 1..=50 => n as u64,
            _ => {
                violations.add("touchpoint_count", "0 to 50; 0 means 10");
                10
            }
        };
        violations.finish()?;
        let (Some(customer), Some(asking)) = (customer, asking) else {
            return Err(Error::internal("checked fields missing"));
        };
        let deadline = Instant::now() + deadline;
        let profile_id: Uuid = match &customer {
            CustomerReference::ProfileId(id) => {
                // A known id is enough to read what this service holds, even
                // when the profile service is slow; merges are followed when it answers.
                match within(
                    deadline,
                    "profile",
                    self.profiles.find("customer", &customer),
                )
                .await
                {
                    Ok(found) => found,
                    Err(_) => *id,
                }
            }
            CustomerReference::Identifier(_) => {
                tokio::time::timeout_at(deadline, self.profiles.find("customer", &customer))
                    .await
                    .map_err(|_| {
                        Error::Unavailable(
                            "the profile service did not resolve the identifier in time; retry"
                                .into(),
                        )
                    })??
            }
        };
        let customer_id = profile_id.to_string();
        let everything = TimelineFilter::default();
        let request_id = format!("context:{}", Uuid::now_v7());
        let (profile, states, session, recent, tickets, scores, best) = tokio::join!(
            within(deadline, "profile", self.profiles.summary(profile_id)),
            within(
                deadline,
                "journeys",
                self.store.journeys().states(&customer_id)
            ),
            within(deadline, "session", async {
                // Sessions kept under profiles merged into this one are
                // combined into it first, as the session calls do.
                let merged = self.profiles.merged_into(profile_id).await?;
                self.sessions.get(&customer_id, &merged).await
            }),
            within(
                deadline,
                "recent_touchpoints",
                self.store.timeline(profile_id, &everything, count, None)
            ),
            within(deadline, "tickets", self.feedback.open_tickets(profile_id)),
            within(
                deadline,
                "feedback",
                self.feedback.latest_scores(profile_id)
            ),
            within(
                deadline,
                "next_best_action",
                self.recommendations
                    .decide(profile_id, asking as i32, "", "", &request_id)
            ),
        );
        let mut missing = Vec::new();
        let profile = present(profile, &mut missing);
        let states = present(states, &mut missing);
        let session = present(session, &mut missing);
        let recent = present(recent, &mut missing);
        let tickets = present(tickets, &mut missing);
        let scores = present(scores, &mut missing);
        let best = present(best, &mut missing);
        Ok(pb::GetCustomerContextResponse {
            profile,
            journeys: states
                .unwrap_or_default()
                .iter()
                .map(state_to_proto)
                .collect(),
            session: session
                .flatten()
                .map(|session| session_to_proto(&session, self.sessions.idle())),
            recent_touchpoints: recent
                .map(|(touchpoints, _)| touchpoints.iter().map(touchpoint_to_proto).collect())
                .unwrap_or_default(),
            open_tickets: tickets
                .unwrap_or_default()
                .into_iter()
                .map(|ticket| pb::TicketSummary {
                    ticket_id: ticket.ticket_id,
                    category: ticket.category,
                    status: cairn_contract::feedback::v1::TicketStatus::try_from(ticket.status)
                        .map(|status| {
                            status
                                .as_str_name()
                                .trim_start_matches("TICKET_STATUS_")
                                .to_lowercase()
                        })
                        .unwrap_or_default(),
                    open_time: ticket.create_time,
                })
                .collect(),
            feedback: scores.map(|scores| pb::FeedbackSummary {
                last_nps: scores.nps.unwrap_or(-1),
                last_csat: scores.csat.unwrap_or(-1),
                last_effort: scores.effort.unwrap_or(-1),
                last_answer_time: scores.answered_at,
            }),
            next_best_action: best.map(|best| pb::NextBestActionSummary {
                decision_id: best.decision_id,
                action_id: best.action_id.unwrap_or_default(),
                display_name: best.display_name,
                explanation: best.explanation,
            }),
            missing_parts: missing,
        })
    }
}
