//! The recommendation service's view of the profile service: who the
//! customer is (attributes, segments, groups) and whether they may be
//! contacted on a channel for a purpose now (consent and their quiet hours,
//! evaluated by the profile service in the customer's time zone).

use std::collections::{BTreeMap, HashMap};

use cairn_contract::profile::v1 as profile;
use cairn_contract::profile::v1::profile_service_client::ProfileServiceClient;
use cairn_runtime::common::{CustomerReference, TypedValue, timestamp_from_proto};
use cairn_runtime::peer::{PeerChannel, refusal_about, with_retry};
use cairn_runtime::{Error, Result};
use chrono::{DateTime, NaiveTime, Utc};
use chrono_tz::Tz;
use tonic::Code;
use uuid::Uuid;

use crate::domain::contact::QuietHours;

/// A known customer as the profile service holds them.
#[derive(Debug, Clone)]
pub struct Customer {
    /// The profile (a merged-away id resolves to the survivor).
    pub profile_id: Uuid,
    /// Attributes by name.
    pub attributes: BTreeMap<String, TypedValue>,
}

/// What a decision needs to know of a known customer.
#[derive(Debug, Clone)]
pub struct DecisionContext {
    /// The customer.
    pub customer: Customer,
    /// Segment ids.
    pub segments: Vec<String>,
    /// Groups as (id, type), type "household", "family", "company" or "other".
    pub groups: Vec<(String, String)>,
    /// The contact answer on the decision's channel per purpose asked about.
    pub contacts: HashMap<String, ContactAnswer>,
}

/// The profile service's answer about one contact.
#[derive(Debug, Clone)]
pub struct ContactAnswer {
    /// `ContactVerdict` of the profile contract.
    pub verdict: profile::ContactVerdict,
    /// When the customer's quiet hours end, when they are why not.
    pub allowed_from: Option<DateTime<Utc>>,
    /// The customer's zone, when they stated one.
    pub time_zone: Option<Tz>,
    /// The customer's own quiet hours, when they stated them.
    pub quiet_hours: Option<QuietHours>,
}

impl ContactAnswer {
    /// True when consent allows the contact (quiet hours aside).
    pub fn consented(&self) -> bool {
        !matches!(
            self.verdict,
            profile::ContactVerdict::Denied | profile::ContactVerdict::NoConsent
        )
    }

    /// The answer for an anonymous customer: no consent answers, so only
    /// the service purpose (which needs no opt-in) is allowed.
    pub fn anonymous(purpose: &str) -> Self {
        Self {
            verdict: if purpose == "service" {
                profile::ContactVerdict::ServicePurpose
            } else {
                profile::ContactVerdict::NoConsent
            },
            allowed_from: None,
            time_zone: None,
            quiet_hours: None,
        }
    }
}

/// Calls to the profile service.
#[derive(Clone)]
pub struct ProfileDirectory {
    client: ProfileServiceClient<PeerChannel>,
}

impl ProfileDirectory {
    /// A directory calling the profile service over `channel`.
    pub fn new(channel: PeerChannel) -> Self {
        Self {
            client: ProfileServiceClient::new(channel),
        }
    }

    /// The customer `customer` names, `None` when no profile holds it.
    pub async fn find(
        &self,
        field: &str,
        customer: &CustomerReference,
    ) -> Result<Option<Customer>> {
        let outcome = with_retry(|| {
            let mut client = self.client.clone();
            let request = profile::GetProfileRequest {
                customer: Some(customer.to_proto()),
            };
            async move { client.get_profile(request).await }
        })
        .await;
        match outcome {
            Ok(response) => {
                customer_of(response.into_inner().profile.unwrap_or_default()).map(Some)
            }
            Err(status) if status.code() == Code::NotFound => Ok(None),
            Err(status) => Err(refusal_about(field, status)),
        }
    }

    /// May the customer be contacted on `channel` for `purpose` now?
    pub async fn check_contact(
        &self,
        profile_id: Uuid,
        channel: i32,
        purpose: &str,
    ) -> Result<ContactAnswer> {
        let response = with_retry(|| {
            let mut client = self.client.clone();
            let request = profile::CheckContactRequest {
                customer: Some(CustomerReference::ProfileId(profile_id).to_proto()),
                channel,
                purpose: purpose.to_string(),
            };
            async move { client.check_contact(request).await }
        })
        .await
        .map_err(|status| refusal_about("customer", status))?;
        Ok(contact_answer(response.into_inner()))
    }

    /// The customer `customer` names, with their segments, groups and the
    /// contact answer on `channel` for each of `purposes`, in one call;
    /// `None` when no profile holds the reference.
    pub async fn decision_context(
        &self,
        field: &str,
        customer: &CustomerReference,
        channel: i32,
        purposes: &[String],
    ) -> Result<Option<DecisionContext>> {
        let outcome = with_retry(|| {
            let mut client = self.client.clone();
            let request = profile::GetDecisionContextRequest {
                customer: Some(customer.to_proto()),
                channel,
                purposes: purposes.to_vec(),
            };
            async move { client.get_decision_context(request).await }
        })
        .await;
        let context = match outcome {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == Code::NotFound => return Ok(None),
            Err(status) => return Err(refusal_about(field, status)),
        };
        let customer = customer_of(context.profile.unwrap_or_default())?;
        let groups = context
            .groups
            .into_iter()
            .map(|group| {
                let kind = match profile::GroupType::try_from(group.r#type) {
                    Ok(profile::GroupType::Household) => "household",
                    Ok(profile::GroupType::Family) => "family",
                    Ok(profile::GroupType::Company) => "company",
                    _ => "other",
                };
                (group.group_id, kind.to_string())
            })
            .collect();
        let contacts = context
            .contacts
            .into_iter()
            .map(|contact| {
                let answer = contact_answer(contact.answer.unwrap_or_default());
                (contact.purpose, answer)
            })
            .collect();
        Ok(Some(DecisionContext {
            customer,
            segments: context.segment_ids,
            groups,
            contacts,
        }))
    }
}

/// The customer a profile of the profile contract describes.
fn customer_of(profile: profile::Profile) -> Result<Customer> {
    let profile_id = Uuid::parse_str(&profile.profile_id)
        .map_err(|_| Error::internal("the profile service answered without a profile id"))?;
    let attributes = profile
        .attributes
        .into_iter()
        .filter_map(|(name, value)| {
            TypedValue::from_proto(&name, value)
                .ok()
                .map(|value| (name, value))
        })
        .collect();
    Ok(Customer {
        profile_id,
        attributes,
    })
}

/// The contact answer of the profile contract in the recommendation
/// service's terms.
fn contact_answer(response: profile::CheckContactResponse) -> ContactAnswer {
    let preferences = response.preferences.unwrap_or_default();
    let time = |text: &str| NaiveTime::parse_from_str(text, "%H:%M").ok();
    let quiet_hours = match (
        time(&preferences.quiet_hours_start),
        time(&preferences.quiet_hours_end),
    ) {
        (Some(start), Some(end)) => Some(QuietHours { start, end }),
        _ => None,
    };
    ContactAnswer {
        verdict: profile::ContactVerdict::try_from(response.verdict)
            .unwrap_or(profile::ContactVerdict::NoConsent),
        allowed_from: response
            .allowed_from
            .and_then(|time| timestamp_from_proto("allowed_from", &time).ok()),
        time_zone: preferences.time_zone.parse().ok(),
        quiet_hours,
    }
}
