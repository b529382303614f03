//! The journey service's view of the profile service: who a touchpoint's
//! customer is, asked over gRPC.

use cairn_contract::profile::v1 as profile;
use cairn_contract::profile::v1::profile_service_client::ProfileServiceClient;
use cairn_runtime::common::CustomerReference;
use cairn_runtime::peer::{PeerChannel, refusal_about, with_retry};
use cairn_runtime::{Error, Result};
use std::collections::HashMap;

use tonic::{Code, Status};
use uuid::Uuid;

/// Resolves customer references to profile ids through the profile service.
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

    /// The profile id of `customer`: a profile id is followed to its merge
    /// survivor; an identifier seen for the first time gets an anonymous
    /// profile. `field` names the reference in errors.
    pub async fn resolve(&self, field: &str, customer: &CustomerReference) -> Result<Uuid> {
        let profile = self
            .ask(customer)
            .await
            .map_err(|status| refusal_about(field, status))?;
        profile_id(profile)
    }

    /// The profile ids of many references (each named by its field in its
    /// error), in their order, as [`Self::resolve`] answers each: the
    /// distinct references go to the profile service in one
    /// BatchResolveProfiles call (of at most [`MAX_BATCH_RESOLVE`]), which
    /// looks them up together and creates the profiles of identifiers seen
    /// for the first time together. What a batch of touchpoints uses, where
    /// many touchpoints name the same customer. A profile service that does
    /// not know the call yet (an older replica during an upgrade) is asked
    /// one reference at a time, as before it.
    pub async fn resolve_all(
        &self,
        customers: &[(String, &CustomerReference)],
    ) -> Vec<Result<Uuid>> {
        let mut distinct: Vec<&CustomerReference> = Vec::new();
        let mut position: HashMap<String, usize> = HashMap::new();
        let slots: Vec<usize> = customers
            .iter()
            .map(|(_, customer)| {
                *position.entry(format!("{customer:?}")).or_insert_with(|| {
                    distinct.push(customer);
                    distinct.len() - 1
                })
            })
            .collect();
        let mut answers: Vec<Answer> = Vec::with_capacity(distinct.len());
        for chunk in distinct.chunks(MAX_BATCH_RESOLVE) {
            answers.extend(self.ask_batch(chunk).await);
        }
        customers
            .iter()
            .zip(slots)
            .map(|((field, _), slot)| match answers.get(slot) {
                Some(Answer::Resolved(resolved)) => item_outcome(field, resolved),
                Some(Answer::Profile(profile)) => profile_id(profile.clone()),
                Some(Answer::Refused(status)) => Err(refusal_about(field, status.clone())),
                None => Err(Error::internal(
                    "the profile service did not answer every customer",
                )),
            })
            .collect()
    }

    /// The profile service's answers about `customers` (at most
    /// [`MAX_BATCH_RESOLVE`]), one each, in order.
    async fn ask_batch(&self, customers: &[&CustomerReference]) -> Vec<Answer> {
        let request = profile::BatchResolveProfilesRequest {
            customers: customers
                .iter()
                .map(|customer| customer.to_proto())
                .collect(),
            create_if_missing: true,
        };
        let answered = with_retry(|| {
            let mut client = self.client.clone();
            let request = request.clone();
            async move { client.batch_resolve_profiles(request).await }
        })
        .await;
        match answered {
            Ok(response) => {
                let results = response.into_inner().results;
                if results.len() != customers.len() {
                    let status = Status::internal(format!(
                        "the profile service answered {} of {} customers",
                        results.len(),
                        customers.len()
                    ));
                    return customers
                        .iter()
                        .map(|_| Answer::Refused(status.clone()))
                        .collect();
                }
                results.into_iter().map(Answer::Resolved).collect()
            }
            Err(status) if status.code() == Code::Unimplemented => {
                self.ask_one_by_one(customers).await
            }
            Err(status) => customers
                .iter()
                .map(|_| Answer::Refused(status.clone()))
                .collect(),
        }
    }

    /// The answers about `customers` asked one by one, up to
    /// [`RESOLVES_IN_FLIGHT`] at a time: for a profile service without
    /// BatchResolveProfiles.
    async fn ask_one_by_one(&self, customers: &[&CustomerReference]) -> Vec<Answer> {
        use futures::StreamExt;
        // Owned futures, collected before they are polled: a lazily mapped
        // stream of borrowing futures is not Send for every lifetime.
        let asks: Vec<_> = customers
            .iter()
            .map(|customer| {
                let (directory, customer) = (self.clone(), (*customer).clone());
                async move {
                    match directory.ask(&customer).await {
                        Ok(profile) => Answer::Profile(profile),
                        Err(status) => Answer::Refused(status),
                    }
                }
            })
            .collect();
        futures::stream::iter(asks)
            .buffered(RESOLVES_IN_FLIGHT)
            .collect()
            .await
    }

    /// The profile service's answer about `customer`, creating an anonymous
    /// profile for an identifier seen for the first time.
    async fn ask(
        &self,
        customer: &CustomerReference,
    ) -> std::result::Result<Option<profile::Profile>, Status> {
        match customer {
            CustomerReference::ProfileId(_) => with_retry(|| {
                let mut client = self.client.clone();
                let request = profile::GetProfileRequest {
                    customer: Some(customer.to_proto()),
                };
                async move { client.get_profile(request).await }
            })
            .await
            .map(|response| response.into_inner().profile),
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
        }
    }
}

/// Profile-service calls one batch of touchpoints keeps in flight when
/// the profile service cannot resolve a batch in one call.
pub const RESOLVES_IN_FLIGHT: usize = 32;

/// Most customers in one BatchResolveProfiles call, as the contract says.
pub const MAX_BATCH_RESOLVE: usize = 1000;

/// The profile service's answer about one customer of a batch.
enum Answer {
    /// Its answer in a batch resolve.
    Resolved(profile::ResolvedCustomer),
    /// Its answer to ResolveProfile or GetProfile.
    Profile(Option<profile::Profile>),
    /// The call failed.
    Refused(Status),
}

/// The profile id, or the refusal, of one customer of a batch resolve,
/// named `field` as [`refusal_about`] names a single call's refusal.
fn item_outcome(field: &str, resolved: &profile::ResolvedCustomer) -> Result<Uuid> {
    if resolved.error_code == Code::Ok as i32 {
        return Uuid::parse_str(&resolved.profile_id)
            .map_err(|_| Error::internal("the profile service answered without a profile id"));
    }
    let code = Code::from_i32(resolved.error_code);
    if code == Code::InvalidArgument && !resolved.field_violations.is_empty() {
        return Err(Error::InvalidArgument(
            resolved
                .field_violations
                .iter()
                .map(|violation| {
                    let path = if violation.field.is_empty() {
                        field.to_string()
                    } else {
                        format!("{field}.{}", violation.field)
                    };
                    cairn_runtime::FieldViolation::new(path, violation.description.clone())
                })
                .collect(),
        ));
    }
    Err(refusal_about(
        field,
        Status::new(code, resolved.error_message.clone()),
    ))
}

/// The id of a profile the profile service answered with.
fn profile_id(profile: Option<profile::Profile>) -> Result<Uuid> {
    let id = profile.map(|p| p.profile_id).unwrap_or_default();
    Uuid::parse_str(&id)
        .map_err(|_| Error::internal("the profile service answered without a profile id"))
}

impl ProfileDirectory {
    /// The profile id of an existing `customer` (following merges), never
    /// creating one: NOT_FOUND when the customer is unknown.
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
        let profile = outcome.map_err(|status| refusal_about(field, status))?;
        let id = profile.map(|p| p.profile_id).unwrap_or_default();
        Uuid::parse_str(&id)
            .map_err(|_| Error::internal("the profile service answered without a profile id"))
    }
}

impl ProfileDirectory {
    /// The profile `profile_id` and its segments.
    async fn with_segments(&self, profile_id: Uuid) -> Result<(profile::Profile, Vec<String>)> {
        let customer = CustomerReference::ProfileId(profile_id).to_proto();
        let found = with_retry(|| {
            let mut client = self.client.clone();
            let request = profile::GetProfileRequest {
                customer: Some(customer.clone()),
            };
            async move { client.get_profile(request).await }
        })
        .await
        .map_err(|status| refusal_about("customer", status))?
        .into_inner()
        .profile
        .unwrap_or_default();
        let segments = with_retry(|| {
            let mut client = self.client.clone();
            let request = profile::ListProfileSegmentsRequest {
                customer: Some(customer.clone()),
            };
            async move { client.list_profile_segments(request).await }
        })
        .await
        .map_err(|status| refusal_about("customer", status))?
        .into_inner()
        .segment_ids;
        Ok((found, segments))
    }

    /// The `profile` variable of journey conditions for `profile_id`: its
    /// attributes and segments, fetched only when some condition reads them.
    pub async fn rule_variable(&self, profile_id: Uuid) -> Result<serde_json::Value> {
        let (profile, segments) = self.with_segments(profile_id).await?;
        let mut attributes = serde_json::Map::new();
        for (name, value) in profile.attributes {
            if let Ok(value) = cairn_runtime::common::TypedValue::from_proto(&name, value) {
                attributes.insert(name, value.to_rule_value());
            }
        }
        Ok(serde_json::json!({ "attributes": attributes, "segments": segments }))
    }
}

/// The `profile` variable when no condition reads it.
pub fn empty_rule_variable() -> serde_json::Value {
    serde_json::json!({ "attributes": {}, "segments": [] })
}

impl ProfileDirectory {
    /// Every member of `segment_id` (profile ids), page by page.
    pub async fn segment_members(
        &self,
        segment_id: &str,
    ) -> Result<std::collections::HashSet<String>> {
        let mut members = std::collections::HashSet::new();
        let mut page_token = String::new();
        loop {
            let request = profile::ListSegmentMembersRequest {
                segment_id: segment_id.to_string(),
                page_size: 1000,
                page_token: page_token.clone(),
            };
            let page = with_retry(|| {
                let mut client = self.client.clone();
                let request = request.clone();
                async move { client.list_segment_members(request).await }
            })
            .await
            .map_err(|status| match status.code() {
                Code::NotFound => Error::not_found("segment", segment_id),
                _ => Error::from(status),
            })?
            .into_inner();
            members.extend(page.profile_ids);
            if page.next_page_token.is_empty() {
                return Ok(members);
            }
            page_token = page.next_page_token;
        }
    }
}

impl ProfileDirectory {
    /// A short view of a profile: state, attributes, segments and language.
    pub async fn summary(
        &self,
        profile_id: Uuid,
    ) -> Result<cairn_contract::journey::v1::ProfileSummary> {
        let (profile, segment_ids) = self.with_segments(profile_id).await?;
        let language = profile
            .attributes
            .get("language")
            .and_then(|value| match &value.kind {
                Some(cairn_contract::common::v1::value::Kind::StringValue(text)) => {
                    Some(text.clone())
                }
                _ => None,
            })
            .unwrap_or_default();
        Ok(cairn_contract::journey::v1::ProfileSummary {
            profile_id: profile.profile_id,
            state: profile::ProfileState::try_from(profile.state)
                .map(|state| {
                    state
                        .as_str_name()
                        .trim_start_matches("PROFILE_STATE_")
                        .to_lowercase()
                })
                .unwrap_or_default(),
            attributes: profile.attributes,
            segment_ids,
            language,
        })
    }
}

/// Most profiles followed when gathering those merged into one: a guard
/// against a merge log that never ends, far above any real customer's.
const MAX_MERGED_PROFILES: usize = 256;

impl ProfileDirectory {
    /// Every profile merged into `profile_id` and not unmerged, through
    /// chains (a visitor merged into a profile later merged into this one):
    /// where state kept by profile id may still wait for a merge event to
    /// move it. Asked of the profile service's merge log (ListMerges) on
    /// every call that needs it, so it holds the moment IdentifyProfile or
    /// MergeProfiles has answered, whatever the bus's delay, and no replica
    /// keeps any of it.
    pub async fn merged_into(&self, profile_id: Uuid) -> Result<Vec<String>> {
        let mut merged = Vec::new();
        let mut pending = vec![profile_id.to_string()];
        while let Some(survivor) = pending.pop() {
            let merges = with_retry(|| {
                let mut client = self.client.clone();
                let request = profile::ListMergesRequest {
                    profile_id: survivor.clone(),
                };
                async move { client.list_merges(request).await }
            })
            .await
            .map_err(|status| refusal_about("customer", status))?
            .into_inner()
            .merges;
            for merge in merges {
                let standing = merge.undo_time.is_none() && merge.survivor_profile_id == survivor;
                if standing
                    && merge.merged_profile_id != profile_id.to_string()
                    && !merged.contains(&merge.merged_profile_id)
                {
                    if merged.len() >= MAX_MERGED_PROFILES {
                        tracing::warn!(
                            limit = MAX_MERGED_PROFILES,
                            "a profile has more merged profiles than are followed"
                        );
                        return Ok(merged);
                    }
                    merged.push(merge.merged_profile_id.clone());
                    pending.push(merge.merged_profile_id);
                }
            }
        }
        Ok(merged)
    }
}
