//! The journey service's view of the feedback service: a customer's open
//! tickets and latest scores, for the customer context.

use std::collections::HashMap;

use cairn_contract::feedback::v1 as feedback;
use cairn_contract::feedback::v1::feedback_service_client::FeedbackServiceClient;
use cairn_runtime::common::CustomerReference;
use cairn_runtime::peer::{PeerChannel, with_retry};
use cairn_runtime::{Error, Result};
use uuid::Uuid;

/// Statuses of a ticket still being worked on (TMF621 names).
const OPEN: &[feedback::TicketStatus] = &[
    feedback::TicketStatus::Acknowledged,
    feedback::TicketStatus::InProgress,
    feedback::TicketStatus::Pending,
    feedback::TicketStatus::Held,
];

/// The latest score of each kind a customer gave, and when.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LatestScores {
    /// NPS, 0-10.
    pub nps: Option<i32>,
    /// CSAT, 1-5.
    pub csat: Option<i32>,
    /// Effort, 1-7.
    pub effort: Option<i32>,
    /// When the latest answer was given.
    pub answered_at: Option<prost_types::Timestamp>,
}

/// Asks the feedback service.
#[derive(Clone)]
pub struct FeedbackDesk {
    client: FeedbackServiceClient<PeerChannel>,
}

impl FeedbackDesk {
    /// Asks over `channel`.
    pub fn new(channel: PeerChannel) -> Self {
        Self {
            client: FeedbackServiceClient::new(channel),
        }
    }

    /// The customer's open tickets.
    pub async fn open_tickets(&self, profile_id: Uuid) -> Result<Vec<feedback::Ticket>> {
        let request = feedback::ListTicketsRequest {
            customer: Some(CustomerReference::ProfileId(profile_id).to_proto()),
            statuses: OPEN.iter().map(|status| *status as i32).collect(),
            page_size: 20,
            ..Default::default()
        };
        let response = with_retry(|| {
            let mut client = self.client.clone();
            let request = request.clone();
            async move { client.list_tickets(request).await }
        })
        .await
        .map_err(Error::from)?;
        Ok(response.into_inner().tickets)
    }

    /// The latest NPS, CSAT and effort answers among the customer's recent
    /// responses (question kinds read from each survey's definition).
    pub async fn latest_scores(&self, profile_id: Uuid) -> Result<LatestScores> {
        let request = feedback::ListSurveyResponsesRequest {
            customer: Some(CustomerReference::ProfileId(profile_id).to_proto()),
            page_size: 20,
            ..Default::default()
        };
        let mut responses = with_retry(|| {
            let mut client = self.client.clone();
            let request = request.clone();
            async move { client.list_survey_responses(request).await }
        })
        .await
        .map_err(Error::from)?
        .into_inner()
        .responses;
        responses.sort_by_key(|response| {
            std::cmp::Reverse(response.submit_time.as_ref().map(|t| (t.seconds, t.nanos)))
        });
        let mut kinds: HashMap<String, HashMap<String, i32>> = HashMap::new();
        let mut scores = LatestScores {
            answered_at: responses.first().and_then(|r| r.submit_time),
            ..Default::default()
        };
        for response in responses {
            if !kinds.contains_key(&response.survey_id) {
                let request = feedback::GetSurveyRequest {
                    survey_id: response.survey_id.clone(),
                };
                let survey = with_retry(|| {
                    let mut client = self.client.clone();
                    let request = request.clone();
                    async move { client.get_survey(request).await }
                })
                .await
                .map_err(Error::from)?
                .into_inner()
                .survey
                .unwrap_or_default();
                kinds.insert(
                    response.survey_id.clone(),
                    survey
                        .questions
                        .into_iter()
                        .map(|question| (question.question_id, question.r#type))
                        .collect(),
                );
            }
            let survey = &kinds[&response.survey_id];
            for answer in response.answers {
                let Some(feedback::answer::Value::Score(score)) = answer.value else {
                    continue;
                };
                let slot = match feedback::QuestionType::try_from(
                    survey.get(&answer.question_id).copied().unwrap_or_default(),
                ) {
                    Ok(feedback::QuestionType::Nps) => &mut scores.nps,
                    Ok(feedback::QuestionType::Csat) => &mut scores.csat,
                    Ok(feedback::QuestionType::Effort) => &mut scores.effort,
                    _ => continue,
                };
                slot.get_or_insert(score);
            }
        }
        Ok(scores)
    }
}
