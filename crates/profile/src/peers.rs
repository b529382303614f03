//! The other services' parts of a person's data, gathered over gRPC for the
//! personal data export: what the journey, recommendation and feedback
//! services hold, each asked with the profile service's own credentials.

use std::time::Duration;

use cairn_contract::feedback::v1 as feedback;
use cairn_contract::feedback::v1::feedback_service_client::FeedbackServiceClient;
use cairn_contract::journey::v1 as journey;
use cairn_contract::journey::v1::journey_service_client::JourneyServiceClient;
use cairn_contract::recommendation::v1 as recommendation;
use cairn_contract::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use cairn_runtime::auth::ServiceCredentials;
use cairn_runtime::common::CustomerReference;
use cairn_runtime::peer::{PeerChannel, channel, with_retry};
use cairn_runtime::{Result, ServiceKind, Settings};
use tonic::{Code, Status};
use uuid::Uuid;

/// Clients of the services that hold parts of a person's data.
#[derive(Clone)]
pub struct PersonalDataPeers {
    journey: JourneyServiceClient<PeerChannel>,
    recommendation: RecommendationServiceClient<PeerChannel>,
    feedback: FeedbackServiceClient<PeerChannel>,
}

/// The other services' parts of one person's data.
#[derive(Debug, Default)]
pub struct Gathered {
    /// The journey service's part.
    pub journeys: Option<journey::ExportCustomerJourneysResponse>,
    /// The recommendation service's part.
    pub recommendations: Option<recommendation::ExportCustomerDecisionsResponse>,
    /// The feedback service's part.
    pub feedback: Option<feedback::ExportCustomerFeedbackResponse>,
    /// The services that could not answer.
    pub missing: Vec<String>,
}

impl PersonalDataPeers {
    /// Clients of the peers the settings name. An export may be large: the
    /// calls get the default deadline, not the short peer deadline.
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        let credentials = ServiceCredentials::from_settings(settings, "profile");
        let deadline = settings.default_deadline().max(Duration::from_secs(5));
        let to = |service| {
            channel(
                &settings.peer_address(service),
                credentials.clone(),
                deadline,
            )
        };
        Ok(Self {
            journey: JourneyServiceClient::new(to(ServiceKind::Journey)?),
            recommendation: RecommendationServiceClient::new(to(ServiceKind::Recommendation)?),
            feedback: FeedbackServiceClient::new(to(ServiceKind::Feedback)?),
        })
    }

    /// Every other service's part of the data of `profile_id`, asked at once.
    pub async fn gather(&self, profile_id: Uuid) -> Gathered {
        let customer = Some(CustomerReference::ProfileId(profile_id).to_proto());
        let journeys = with_retry(|| {
            let mut client = self.journey.clone();
            let request = journey::ExportCustomerJourneysRequest {
                customer: customer.clone(),
            };
            async move { client.export_customer_journeys(request).await }
        });
        let recommendations = with_retry(|| {
            let mut client = self.recommendation.clone();
            let request = recommendation::ExportCustomerDecisionsRequest {
                customer: customer.clone(),
            };
            async move { client.export_customer_decisions(request).await }
        });
        let feedback = with_retry(|| {
            let mut client = self.feedback.clone();
            let request = feedback::ExportCustomerFeedbackRequest {
                customer: customer.clone(),
            };
            async move { client.export_customer_feedback(request).await }
        });
        let (journeys, recommendations, feedback) =
            tokio::join!(journeys, recommendations, feedback);
        let mut missing = Vec::new();
        Gathered {
            journeys: part("journey", journeys, &mut missing),
            recommendations: part("recommendation", recommendations, &mut missing),
            feedback: part("feedback", feedback, &mut missing),
            missing,
        }
    }
}

/// A peer's answer as a part of the export: NOT_FOUND means the service
/// holds nothing on the person (an empty part); any other failure leaves
/// the part missing, named in `missing`.
fn part<T: Default>(
    service: &str,
    answer: std::result::Result<tonic::Response<T>, Status>,
    missing: &mut Vec<String>,
) -> Option<T> {
    match answer {
        Ok(response) => Some(response.into_inner()),
        Err(status) if status.code() == Code::NotFound => Some(T::default()),
        Err(status) => {
            tracing::warn!(service, code = ?status.code(), "a part of a personal data export is missing");
            missing.push(service.to_string());
            None
        }
    }
}
