//! The journey service's view of the recommendation service: the next best
//! action for a customer on a channel, asked over gRPC.

use cairn_contract::recommendation::v1 as recommendation;
use cairn_contract::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use cairn_runtime::common::CustomerReference;
use cairn_runtime::peer::{PeerChannel, with_retry};
use cairn_runtime::{Error, Result};
use uuid::Uuid;

/// A chosen action.
#[derive(Debug, Clone, PartialEq)]
pub struct NextBestAction {
    /// The decision's id, for reporting the outcome.
    pub decision_id: String,
    /// The action; `None` when the best action is to do nothing.
    pub action_id: Option<String>,
    /// Its name for people.
    pub display_name: String,
    /// Why it was chosen.
    pub explanation: String,
}

/// Asks the recommendation service.
#[derive(Clone)]
pub struct Recommendations {
    client: RecommendationServiceClient<PeerChannel>,
}

impl Recommendations {
    /// Asks over `channel`.
    pub fn new(channel: PeerChannel) -> Self {
        Self {
            client: RecommendationServiceClient::new(channel),
        }
    }

    /// The next best action for `profile_id` on `channel`, in the context of
    /// a journey stage. `request_id` makes a retried ask one decision.
    pub async fn decide(
        &self,
        profile_id: Uuid,
        channel: i32,
        journey_id: &str,
        stage: &str,
        request_id: &str,
    ) -> Result<NextBestAction> {
        let request = recommendation::DecideRequest {
            customer: Some(CustomerReference::ProfileId(profile_id).to_proto()),
            channel,
            context: Some(recommendation::DecisionContext {
                journey_id: journey_id.to_string(),
                stage: stage.to_string(),
                ..Default::default()
            }),
            max_actions: 1,
            explain: true,
            request_id: request_id.to_string(),
        };
        let response = with_retry(|| {
            let mut client = self.client.clone();
            let request = request.clone();
            async move { client.decide(request).await }
        })
        .await
        .map_err(Error::from)?
        .into_inner();
        let best = response.actions.into_iter().next();
        Ok(NextBestAction {
            decision_id: response.decision_id,
            action_id: best
                .as_ref()
                .and_then(|chosen| chosen.action.as_ref())
                .map(|action| action.action_id.clone()),
            display_name: best
                .as_ref()
                .and_then(|chosen| chosen.action.as_ref())
                .map(|action| action.name.clone())
                .unwrap_or_default(),
            explanation: best
                .and_then(|chosen| chosen.explanation)
                .map(|explanation| {
                    let drivers: Vec<String> = explanation
                        .drivers
                        .iter()
                        .map(|driver| driver.feature.clone())
                        .collect();
                    format!(
                        "eligible by {}; driven by {}",
                        explanation.eligibility_rule,
                        drivers.join(", ")
                    )
                })
                .unwrap_or_default(),
        })
    }

    /// The profile decision `decision_id` was made for, as the
    /// recommendation service logged it (before any later merge), asked
    /// with this service's own token; `None` for a decision it does not
    /// know or one of an anonymous customer.
    pub async fn decided_for(&self, decision_id: Uuid) -> Result<Option<Uuid>> {
        let outcome = with_retry(|| {
            let mut client = self.client.clone();
            let request = recommendation::GetDecisionRequest {
                decision_id: decision_id.to_string(),
                view: recommendation::DecisionView::Basic as i32,
            };
            async move { client.get_decision(request).await }
        })
        .await;
        match outcome {
            Ok(response) => Ok(response
                .into_inner()
                .decision
                .and_then(|decision| Uuid::parse_str(&decision.profile_id).ok())),
            Err(status) if status.code() == tonic::Code::NotFound => Ok(None),
            Err(status) => Err(Error::from(status)),
        }
    }
}
