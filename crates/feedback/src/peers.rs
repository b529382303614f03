//! Calls to the other services: the profile service (who a customer is,
//! consent, segments) and the recommendation service (the shared contact
//! budget, and whose a decision named on a complaint is).

use cairn_contract::profile::v1 as profile;
use cairn_contract::profile::v1::profile_service_client::ProfileServiceClient;
use cairn_contract::recommendation::v1 as recommendation;
use cairn_contract::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use cairn_runtime::common::{CustomerReference, timestamp_from_proto};
use cairn_runtime::peer::{PeerChannel, refusal_about, with_retry};
use cairn_runtime::{Error, Result};
use chrono::{DateTime, Utc};
use tonic::Code;
use uuid::Uuid;

use crate::storage::BudgetAnswer;

/// Resolves customers and asks about consent through the profile service.
#[derive(Clone)]
pub struct ProfileDirectory {
    client: ProfileServiceClient<PeerChannel>,
}

/// The profile service's answer to "may we contact this customer now?".
#[derive(Debug, Clone)]
pub struct ContactAnswer {
    /// True when the contact may happen now.
    pub allowed: bool,
    /// True when quiet hours are why not.
    pub quiet_hours: bool,
    /// When quiet hours end.
    pub allowed_from: Option<DateTime<Utc>>,
    /// The customer's language, BCP 47; empty when none is stated.
    pub language: String,
}

impl ProfileDirectory {
    /// A directory calling the profile service over `channel`.
    pub fn new(channel: PeerChannel) -> Self {
        Self {
            client: ProfileServiceClient::new(channel),
        }
    }

    /// The profile id of `customer`, creating an anonymous profile for an
    /// identifier seen for the first time (a ticket from a new caller).
    pub async fn resolve(&self, field: &str, customer: &CustomerReference) -> Result<Uuid> {
        let outcome = match customer {
            CustomerReference::ProfileId(_) => return self.find(field, customer).await,
            CustomerReference::Identifier(identifier) => with_retry(|| {
                let mut client = self.client.clone();
                let request = profile::ResolveProfileRequest {
                    identifier: Some(identifier.clone()),
                    create_if_missing: true,
                    ..Default::default()
                };
                async move { client.resolve_profile(request).await }
            })
            .await
            .map(|response| response.into_inner().profile),
        };
        let found = outcome.map_err(|status| refusal_about(field, status))?;
        profile_id(found)
    }

    /// The profile id of an existing `customer` (following merges): NOT_FOUND when unknown.
    pub async fn find(&self, field: &str, customer: &CustomerReference) -> Result<Uuid> {
        let outcome = with_retry(|| {
            let mut client = self.client.clone();
            let request = profile::GetProfileRequest {
                customer: Some(customer.to_proto()),
            };
            async move { client.get_profile(request).await }
        })
        .await
        .map(|response| response.into_inner().profile);
        let found = outcome.map_err(|status| refusal_about(field, status))?;
        profile_id(found)
    }

    /// Whether `profile_id` may be contacted on `channel` for `purpose` now.
    pub async fn check_contact(
        &self,
        profile_id: Uuid,
        channel: i32,
        purpose: &str,
    ) -> Result<ContactAnswer> {
        let answer = with_retry(|| {
            let mut client = self.client.clone();
            let request = profile::CheckContactRequest {
                customer: Some(CustomerReference::ProfileId(profile_id).to_proto()),
                channel,
                purpose: purpose.to_string(),
            };
            async move { client.check_contact(request).await }
        })
        .await
        .map_err(|status| refusal_about("customer", status))?
        .into_inner();
        Ok(ContactAnswer {
            allowed: answer.allowed,
            quiet_hours: answer.verdict == profile::ContactVerdict::QuietHours as i32,
            allowed_from: answer
                .allowed_from
                .as_ref()
                .and_then(|t| timestamp_from_proto("allowed_from", t).ok()),
            language: answer.preferences.map(|p| p.language).unwrap_or_default(),
        })
    }

    /// The segments `profile_id` is in now.
    pub async fn segments(&self, profile_id: Uuid) -> Result<Vec<String>> {
        let answer = with_retry(|| {
            let mut client = self.client.clone();
            let request = profile::ListProfileSegmentsRequest {
                customer: Some(CustomerReference::ProfileId(profile_id).to_proto()),
            };
            async move { client.list_profile_segments(request).await }
        })
        .await
        .map_err(|status| refusal_about("customer", status))?;
        Ok(answer.into_inner().segment_ids)
    }
}

fn profile_id(found: Option<profile::Profile>) -> Result<Uuid> {
    let id = found.map(|p| p.profile_id).unwrap_or_default();
    Uuid::parse_str(&id)
        .map_err(|_| Error::internal("the profile service answered without a profile id"))
}

/// The recommendation service's contact policy, which survey invitations
/// share with offers and service messages.
#[derive(Clone)]
pub struct ContactBudget {
    client: RecommendationServiceClient<PeerChannel>,
}

impl ContactBudget {
    /// A client of the recommendation service over `channel`.
    pub fn new(channel: PeerChannel) -> Self {
        Self {
            client: RecommendationServiceClient::new(channel),
        }
    }

    /// Counts one survey invitation against the customer's budget on
    /// `channel`, atomically, when the contact policy allows it. The same
    /// `request_id` again counts nothing more. UNAVAILABLE (after the peer
    /// retries) reaches the caller as UNAVAILABLE, to retry later.
    pub async fn reserve(
        &self,
        profile_id: Uuid,
        channel: i32,
        purpose: &str,
        reference: &str,
        request_id: &str,
    ) -> Result<BudgetAnswer> {
        let answer = with_retry(|| {
            let mut client = self.client.clone();
            let request = recommendation::ReserveContactRequest {
                customer: Some(CustomerReference::ProfileId(profile_id).to_proto()),
                channel,
                purpose: purpose.to_string(),
                kind: recommendation::ActionKind::Information as i32,
                transactional: false,
                reference: reference.to_string(),
                request_id: request_id.to_string(),
            };
            async move { client.reserve_contact(request).await }
        })
        .await
        .map_err(|status| match status.code() {
            Code::Unavailable | Code::DeadlineExceeded => Error::Unavailable(
                "the recommendation service (shared contact budget) is not reachable now; retry later"
                    .into(),
            ),
            _ => refusal_about("customer", status),
        })?
        .into_inner();
        let budget = answer.budget.unwrap_or_default();
        // The contact policy's quiet hours are not a spent budget: they end
        // at a known time, which the invitation's answer passes on.
        let quiet_hours_until = (!answer.granted
            && budget.reason == recommendation::ExclusionReason::QuietHours as i32)
            .then(|| {
                budget.next_allowed_time.as_ref().and_then(|time| {
                    cairn_runtime::common::timestamp_from_proto("next_allowed_time", time).ok()
                })
            })
            .flatten();
        let detail = Some(budget.detail)
            .filter(|detail| !detail.is_empty())
            .unwrap_or_else(|| "the shared contact budget is spent".into());
        Ok(BudgetAnswer {
            granted: answer.granted,
            detail: if answer.granted {
                String::new()
            } else {
                format!("customer: {detail}")
            },
            quiet_hours_until,
        })
    }
}

/// The recommendation service's decisions, asked with this service's own
/// token: whose a decision named on a customer's complaint is.
#[derive(Clone)]
pub struct DecisionDirectory {
    client: RecommendationServiceClient<PeerChannel>,
}

impl DecisionDirectory {
    /// A client of the recommendation service over `channel`.
    pub fn new(channel: PeerChannel) -> Self {
        Self {
            client: RecommendationServiceClient::new(channel),
        }
    }

    /// The profile decision `decision_id` was made for, as the
    /// recommendation service logged it (before any later merge); `None`
    /// for a decision it does not know or one of an anonymous customer.
    pub async fn decided_for(&self, field: &str, decision_id: Uuid) -> Result<Option<Uuid>> {
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
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => match status.code() {
                Code::Unavailable | Code::DeadlineExceeded => Err(Error::Unavailable(format!(
                    "{field}: the recommendation service is not reachable to check the decision; retry later"
                ))),
                _ => Err(Error::from(status)),
            },
        }
    }
}
