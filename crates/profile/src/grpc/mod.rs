//! The gRPC face of the profile service: each handler converts the request,
//! calls the store, and converts the answer back.

pub mod convert;

use cairn_contract::profile::v1 as pb;
use cairn_contract::profile::v1::profile_service_server::ProfileService;
use cairn_runtime::auth::{Principal, ScopeTable, require_scope};
use cairn_runtime::common::CustomerReference;
use cairn_runtime::pagination::{PageTokens, listing, page_size};
use cairn_runtime::{Error, Result, Violations};
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::domain::{Attributes, MergeRule, NewProfile, PhoneRules, Profile, Purpose};
use crate::storage::{ProfileStore, Resolution, Wanted};

/// The protobuf name of the service.
pub const SERVICE_NAME: &str = "cairn.profile.v1.ProfileService";

/// The scope each method needs, as the contract documents it.
pub fn scopes() -> ScopeTable {
    ScopeTable::from_contract(SERVICE_NAME)
}

/// The gRPC handlers.
pub struct ProfileApi {
    store: ProfileStore,
    phone: PhoneRules,
    merge_rule: MergeRule,
    tokens: PageTokens,
    peers: Option<crate::peers::PersonalDataPeers>,
}

/// Most identifiers one identify or create call may carry (the contract
/// says so in both requests' comments).
const MAX_IDENTIFY: usize = 20;
/// Most customers one BatchResolveProfiles call may name (the contract
/// says so in the request's comment): as many as a batch of touchpoints.
const MAX_BATCH_RESOLVE: usize = 1000;
/// Most facts one ReportFacts call may carry, as many as a profile's
/// attributes (the contract says so in the request's comment).
const MAX_FACTS: usize = crate::domain::MAX_ATTRIBUTES;
/// Longest merge reason.
const MAX_REASON_BYTES: usize = 256;
/// Most purposes one GetDecisionContext answers about: a catalogue uses a
/// handful, and each is a consent lookup.
const MAX_DECISION_PURPOSES: usize = 64;

impl ProfileApi {
    /// Handlers over `store`; `phone` says how phone numbers are read,
    /// `merge_rule` is the automatic-merge policy, `tokens` sign page tokens.
    pub fn new(
        store: ProfileStore,
        phone: PhoneRules,
        merge_rule: MergeRule,
        tokens: PageTokens,
    ) -> Self {
        Self {
            store,
            phone,
            merge_rule,
            tokens,
            peers: None,
        }
    }

    /// The handlers gathering the other services' parts of a personal data
    /// export from `peers` (without them, those parts are reported missing).
    pub fn with_peers(mut self, peers: crate::peers::PersonalDataPeers) -> Self {
        self.peers = Some(peers);
        self
    }

    /// The profile a customer reference names, if `caller` may see it: the
    /// one place where this service holds a customer's token to that
    /// customer's data ([`Principal::admit`]).
    async fn find(
        &self,
        caller: &Principal,
        field: &str,
        customer: CustomerReference,
    ) -> Result<Profile> {
        let found = self.lookup(field, customer).await;
        caller.admit(found, |profile| profile.id)
    }

    /// The profile a customer reference names, whoever asks.
    async fn lookup(&self, field: &str, customer: CustomerReference) -> Result<Profile> {
        match customer {
            CustomerReference::ProfileId(id) => self.store.get(id).await,
            CustomerReference::Identifier(wire) => {
                let identifier =
                    convert::identifier(&format!("{field}.identifier"), Some(wire), &self.phone)?;
                self.store
                    .find_by_identifier(&identifier)
                    .await?
                    .ok_or_else(|| Error::not_found("profile with", identifier.to_string()))
            }
        }
    }
}

#[tonic::async_trait]
impl ProfileService for ProfileApi {
    async fn create_profile(
        &self,
        request: Request<pb::CreateProfileRequest>,
    ) -> Result<Response<pb::CreateProfileResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        if request.identifiers.is_empty() || request.identifiers.len() > MAX_IDENTIFY {
            violations.add(
                "identifiers",
                format!(
                    "between 1 and {MAX_IDENTIFY} identifiers; got {}",
                    request.identifiers.len()
                ),
            );
        }
        let identifiers: Vec<_> = request
            .identifiers
            .into_iter()
            .enumerate()
            .filter_map(|(index, wire)| {
                violations.check(convert::identifier(
                    &format!("identifiers[{index}]"),
                    Some(wire),
                    &self.phone,
                ))
            })
            .collect();
        let attributes = convert::attributes("attributes", request.attributes, &mut violations);
        let request_id = violations.check(convert::request_id(request.request_id));
        violations.finish()?;
        let (profile, _) = self
            .store
            .create(NewProfile {
                identifiers,
                attributes,
                anonymous: false,
                request_id: request_id.flatten(),
            })
            .await?;
        Ok(Response::new(pb::CreateProfileResponse {
            profile: Some(convert::profile_to_proto(&profile)),
        }))
    }

    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> Result<Response<pb::GetProfileResponse>, Status> {
        let caller = Principal::of(&request)?;
        let request = request.into_inner();
        let customer = CustomerReference::from_proto("customer", request.customer)?;
        let profile = self.find(&caller, "customer", customer).await?;
        self.store
            .audit(&caller, "get_profile", Some(profile.id), 1)
            .await?;
        Ok(Response::new(pb::GetProfileResponse {
            profile: Some(convert::profile_to_proto(&profile)),
        }))
    }

    async fn list_profiles(
        &self,
        request: Request<pb::ListProfilesRequest>,
    ) -> Result<Response<pb::ListProfilesResponse>, Status> {
        let caller = Principal::of(&request)?;
        let request = request.into_inner();
        let page_listing = listing("profile.list_profiles", &request);
        let mut violations = Violations::new();
        let limit = violations.check(page_size(request.page_size));
        let after = violations.check(self.tokens.decode(&page_listing, &request.page_token));
        let state = violations.check(convert::state_filter(request.state));
        let segment_id = if request.segment_id.is_empty() {
            Some(None)
        } else {
            violations
                .check(convert::segment_id("segment_id", &request.segment_id))
                .map(Some)
        };
        let identifier_kind = match request.identifier_type {
            0 => Some(None),
            raw => match violations.check(convert::identifier_kind("identifier_type", raw)) {
                Some(Some(kind)) => Some(Some(kind)),
                Some(None) => {
                    violations.add(
                        "identifier_type",
                        "custom identifier types cannot be listed by type",
                    );
                    None
                }
                None => None,
            },
        };
        violations.finish()?;
        let (Some(limit), Some(after), Some(state), Some(segment_id), Some(identifier_kind)) =
            (limit, after, state, segment_id, identifier_kind)
        else {
            return Err(Error::internal("checked fields missing").into());
        };
        let filter = crate::storage::ProfileFilter {
            state,
            segment_id,
            identifier_kind,
        };
        let page = self.store.list(limit, after, &filter).await?;
        self.store
            .audit(&caller, "list_profiles", None, page.profiles.len())
            .await?;
        Ok(Response::new(pb::ListProfilesResponse {
            profiles: page
                .profiles
                .iter()
                .map(convert::profile_to_proto)
                .collect(),
            next_page_token: page
                .next
                .map(|position| self.tokens.encode(&page_listing, &position))
                .unwrap_or_default(),
            ..Default::default()
        }))
    }

    async fn resolve_profile(
        &self,
        request: Request<pb::ResolveProfileRequest>,
    ) -> Result<Response<pb::ResolveProfileResponse>, Status> {
        if request.get_ref().create_if_missing {
            require_scope(&request, "profile.write")?;
        }
        let caller = Principal::of(&request)?;
        let request = request.into_inner();
        let identifier = convert::identifier("identifier", request.identifier, &self.phone)?;
        let (profile, created) = self
            .store
            .resolve(&identifier, request.create_if_missing)
            .await?;
        self.store
            .audit(&caller, "resolve_profile", Some(profile.id), 1)
            .await?;
        Ok(Response::new(pb::ResolveProfileResponse {
            profile: Some(convert::profile_to_proto(&profile)),
            created,
            ..Default::default()
        }))
    }

    async fn batch_resolve_profiles(
        &self,
        request: Request<pb::BatchResolveProfilesRequest>,
    ) -> Result<Response<pb::BatchResolveProfilesResponse>, Status> {
        if request.get_ref().create_if_missing {
            require_scope(&request, "profile.write")?;
        }
        let caller = Principal::of(&request)?;
        let request = request.into_inner();
        if request.customers.is_empty() || request.customers.len() > MAX_BATCH_RESOLVE {
            return Err(Error::invalid(
                "customers",
                format!(
                    "between 1 and {MAX_BATCH_RESOLVE} customers in one call; got {}",
                    request.customers.len()
                ),
            )
            .into());
        }
        // A malformed reference is answered alone; the others are resolved.
        let checked: Vec<Result<Wanted>> = request
            .customers
            .into_iter()
            .map(|customer| convert::wanted(customer, &self.phone))
            .collect();
        let wanted: Vec<Wanted> = checked
            .iter()
            .filter_map(|reference| reference.as_ref().ok().cloned())
            .collect();
        let mut resolved = self
            .store
            .resolve_many(&wanted, request.create_if_missing)
            .await?
            .into_iter();
        let outcomes: Vec<Result<Resolution>> = checked
            .into_iter()
            .map(|reference| match reference {
                Ok(_) => resolved.next().unwrap_or_else(|| {
                    Err(Error::internal("a reference of the batch was not answered"))
                }),
                Err(error) => Err(error),
            })
            .collect();
        let mut persons = Vec::new();
        for resolution in outcomes.iter().flatten() {
            if !persons.contains(&resolution.profile_id) {
                persons.push(resolution.profile_id);
            }
        }
        self.store
            .audit_each(&caller, "batch_resolve_profiles", &persons)
            .await?;
        Ok(Response::new(pb::BatchResolveProfilesResponse {
            results: outcomes
                .into_iter()
                .enumerate()
                .map(|(index, outcome)| convert::resolved_to_proto(index, outcome))
                .collect(),
        }))
    }

    async fn identify_profile(
        &self,
        request: Request<pb::IdentifyProfileRequest>,
    ) -> Result<Response<pb::IdentifyProfileResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        if request.identifiers.is_empty() || request.identifiers.len() > MAX_IDENTIFY {
            violations.add(
                "identifiers",
                format!("between 1 and {MAX_IDENTIFY} identifiers"),
            );
        }
        let identifiers: Vec<_> = request
            .identifiers
            .into_iter()
            .enumerate()
            .filter_map(|(index, wire)| {
                violations.check(convert::identifier(
                    &format!("identifiers[{index}]"),
                    Some(wire),
                    &self.phone,
                ))
            })
            .collect();
        violations.finish()?;
        let outcome = self.store.identify(&identifiers, &self.merge_rule).await?;
        Ok(Response::new(pb::IdentifyProfileResponse {
            profile: Some(convert::profile_to_proto(&outcome.profile)),
            created: outcome.created,
            merges: outcome.merges.iter().map(convert::merge_to_proto).collect(),
            refused_merges: outcome
                .refused
                .into_iter()
                .map(|(profile_id, reason)| pb::RefusedMerge {
                    profile_id: profile_id.to_string(),
                    reason,
                })
                .collect(),
        }))
    }

    async fn merge_profiles(
        &self,
        request: Request<pb::MergeProfilesRequest>,
    ) -> Result<Response<pb::MergeProfilesResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let survivor = violations.check(profile_id(
            "survivor_profile_id",
            &request.survivor_profile_id,
        ));
        let merged = violations.check(profile_id("merged_profile_id", &request.merged_profile_id));
        if request.reason.trim().is_empty() || request.reason.len() > MAX_REASON_BYTES {
            violations.add(
                "reason",
                format!("required, at most {MAX_REASON_BYTES} bytes: why, for the merge log"),
            );
        }
        violations.finish()?;
        let (Some(survivor), Some(merged)) = (survivor, merged) else {
            return Err(Error::internal("checked fields missing").into());
        };
        let merge = self
            .store
            .merge(survivor, merged, request.reason.trim())
            .await?;
        let profile = self.store.get(merge.survivor_id).await?;
        Ok(Response::new(pb::MergeProfilesResponse {
            merge: Some(convert::merge_to_proto(&merge)),
            profile: Some(convert::profile_to_proto(&profile)),
        }))
    }

    async fn unmerge_profile(
        &self,
        request: Request<pb::UnmergeProfileRequest>,
    ) -> Result<Response<pb::UnmergeProfileResponse>, Status> {
        let merge_id = uuid_field("merge_id", &request.into_inner().merge_id)?;
        let (survivor, restored) = self.store.unmerge(merge_id).await?;
        Ok(Response::new(pb::UnmergeProfileResponse {
            survivor: Some(convert::profile_to_proto(&survivor)),
            restored: Some(convert::profile_to_proto(&restored)),
        }))
    }

    async fn list_merges(
        &self,
        request: Request<pb::ListMergesRequest>,
    ) -> Result<Response<pb::ListMergesResponse>, Status> {
        let id = profile_id("profile_id", &request.into_inner().profile_id)?;
        let merges = self.store.merges_of(id).await?;
        Ok(Response::new(pb::ListMergesResponse {
            merges: merges.iter().map(convert::merge_to_proto).collect(),
        }))
    }

    async fn erase_personal_data(
        &self,
        request: Request<pb::ErasePersonalDataRequest>,
    ) -> Result<Response<pb::ErasePersonalDataResponse>, Status> {
        let caller = Principal::of(&request)?;
        let customer = CustomerReference::from_proto("customer", request.into_inner().customer)?;
        let profile = self.find(&caller, "customer", customer).await?;
        let erasure = self.store.erase(profile.id).await?;
        self.store
            .audit(&caller, "erase_personal_data", Some(profile.id), 1)
            .await?;
        tracing::info!(erasure_request_id = %erasure.id, profiles = erasure.profile_ids.len(), "erased a person");
        Ok(Response::new(pb::ErasePersonalDataResponse {
            erasure_request: Some(convert::erasure_to_proto(&erasure)),
        }))
    }

    async fn lift_suppression(
        &self,
        request: Request<pb::LiftSuppressionRequest>,
    ) -> Result<Response<pb::LiftSuppressionResponse>, Status> {
        let identifier =
            convert::identifier("identifier", request.into_inner().identifier, &self.phone)?;
        self.store.lift_suppression(&identifier).await?;
        Ok(Response::new(pb::LiftSuppressionResponse {}))
    }

    async fn record_consent(
        &self,
        request: Request<pb::RecordConsentRequest>,
    ) -> Result<Response<pb::RecordConsentResponse>, Status> {
        let caller = Principal::of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let customer =
            violations.check(CustomerReference::from_proto("customer", request.customer));
        let answer = violations.check(convert::consent(
            "consent",
            request.consent,
            chrono::Utc::now(),
        ));
        violations.finish()?;
        let (Some(customer), Some(answer)) = (customer, answer) else {
            return Err(Error::internal("checked fields missing").into());
        };
        let profile = self.find(&caller, "customer", customer).await?;
        let profile_id = self.store.record_consent(profile.id, &answer).await?;
        Ok(Response::new(pb::RecordConsentResponse {
            profile_id: profile_id.to_string(),
        }))
    }

    async fn list_consents(
        &self,
        request: Request<pb::ListConsentsRequest>,
    ) -> Result<Response<pb::ListConsentsResponse>, Status> {
        let caller = Principal::of(&request)?;
        let customer = CustomerReference::from_proto("customer", request.into_inner().customer)?;
        let profile = self.find(&caller, "customer", customer).await?;
        let (current, history) = self.store.consents(profile.id).await?;
        self.store
            .audit(&caller, "list_consents", Some(profile.id), 1)
            .await?;
        Ok(Response::new(pb::ListConsentsResponse {
            current: current.iter().map(convert::consent_to_proto).collect(),
            history: history.iter().map(convert::consent_to_proto).collect(),
        }))
    }

    async fn update_preferences(
        &self,
        request: Request<pb::UpdatePreferencesRequest>,
    ) -> Result<Response<pb::UpdatePreferencesResponse>, Status> {
        let caller = Principal::of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let customer =
            violations.check(CustomerReference::from_proto("customer", request.customer));
        let preferences =
            violations.check(convert::preferences("preferences", request.preferences));
        violations.finish()?;
        let (Some(customer), Some(preferences)) = (customer, preferences) else {
            return Err(Error::internal("checked fields missing").into());
        };
        let profile = self.find(&caller, "customer", customer).await?;
        self.store.set_preferences(profile.id, &preferences).await?;
        Ok(Response::new(pb::UpdatePreferencesResponse {
            preferences: Some(convert::preferences_to_proto(&preferences)),
        }))
    }

    async fn check_contact(
        &self,
        request: Request<pb::CheckContactRequest>,
    ) -> Result<Response<pb::CheckContactResponse>, Status> {
        let caller = Principal::of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let customer =
            violations.check(CustomerReference::from_proto("customer", request.customer));
        let channel = violations.check(cairn_runtime::common::channel("channel", request.channel));
        let purpose = violations.check(convert::purpose("purpose", &request.purpose));
        violations.finish()?;
        let (Some(customer), Some(channel), Some(purpose)) = (customer, channel, purpose) else {
            return Err(Error::internal("checked fields missing").into());
        };
        let profile = self.find(&caller, "customer", customer).await?;
        let (decision, preferences) = self
            .store
            .check_contact(profile.id, &purpose, channel as i32, chrono::Utc::now())
            .await?;
        Ok(Response::new(convert::contact_answer_to_proto(
            &decision,
            &preferences,
        )))
    }

    async fn get_decision_context(
        &self,
        request: Request<pb::GetDecisionContextRequest>,
    ) -> Result<Response<pb::GetDecisionContextResponse>, Status> {
        let caller = Principal::of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let customer =
            violations.check(CustomerReference::from_proto("customer", request.customer));
        let channel = violations.check(cairn_runtime::common::channel("channel", request.channel));
        if request.purposes.len() > MAX_DECISION_PURPOSES {
            violations.add(
                "purposes",
                format!("at most {MAX_DECISION_PURPOSES} purposes"),
            );
        }
        let mut purposes = Vec::new();
        for (i, raw) in request.purposes.iter().enumerate() {
            if let Some(purpose) =
                violations.check(convert::purpose(&format!("purposes[{i}]"), raw))
                && !purposes.iter().any(|(known, _)| known == raw)
            {
                purposes.push((raw.clone(), purpose));
            }
        }
        violations.finish()?;
        let (Some(customer), Some(channel)) = (customer, channel) else {
            return Err(Error::internal("checked fields missing").into());
        };
        let profile = self.find(&caller, "customer", customer).await?;
        self.store
            .audit(&caller, "get_decision_context", Some(profile.id), 1)
            .await?;
        let (raw_purposes, purposes): (Vec<String>, Vec<Purpose>) = purposes.into_iter().unzip();
        let (segment_ids, groups, (decisions, preferences)) = tokio::try_join!(
            self.store.profile_segments(profile.id),
            self.store.groups_of(profile.id),
            self.store
                .check_contacts(profile.id, &purposes, channel as i32, chrono::Utc::now()),
        )?;
        let contacts = raw_purposes
            .into_iter()
            .zip(&decisions)
            .map(|(purpose, decision)| pb::PurposeContact {
                purpose,
                answer: Some(convert::contact_answer_to_proto(decision, &preferences)),
            })
            .collect();
        Ok(Response::new(pb::GetDecisionContextResponse {
            profile: Some(convert::profile_to_proto(&profile)),
            segment_ids,
            groups: groups.iter().map(convert::group_to_proto).collect(),
            contacts,
        }))
    }

    async fn update_identifier(
        &self,
        request: Request<pb::UpdateIdentifierRequest>,
    ) -> Result<Response<pb::UpdateIdentifierResponse>, Status> {
        let request = request.into_inner();
        let identifier = convert::identifier("identifier", request.identifier, &self.phone)?;
        let profile = self.store.set_shared(&identifier, request.shared).await?;
        Ok(Response::new(pb::UpdateIdentifierResponse {
            profile: Some(convert::profile_to_proto(&profile)),
        }))
    }

    async fn release_identifier(
        &self,
        request: Request<pb::ReleaseIdentifierRequest>,
    ) -> Result<Response<pb::ReleaseIdentifierResponse>, Status> {
        let request = request.into_inner();
        let identifier = convert::identifier("identifier", request.identifier, &self.phone)?;
        let at = match &request.release_time {
            Some(time) => cairn_runtime::common::timestamp_from_proto("release_time", time)?,
            None => chrono::Utc::now(),
        };
        let profile = self.store.release(&identifier, at).await?;
        Ok(Response::new(pb::ReleaseIdentifierResponse {
            profile: Some(convert::profile_to_proto(&profile)),
        }))
    }

    async fn update_profile(
        &self,
        request: Request<pb::UpdateProfileRequest>,
    ) -> Result<Response<pb::UpdateProfileResponse>, Status> {
        let request = request.into_inner();
        let wire = request
            .profile
            .ok_or_else(|| Error::invalid("profile", "required"))?;
        let mut violations = Violations::new();
        let id = violations.check(profile_id("profile.profile_id", &wire.profile_id));
        let mut attributes =
            convert::attributes("profile.attributes", wire.attributes, &mut violations);
        let paths = request
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        let mut remove = Vec::new();
        if !paths.is_empty() {
            let mut named = Attributes::new();
            for (index, path) in paths.iter().enumerate() {
                match path.strip_prefix("attributes.") {
                    Some(name) if !name.is_empty() => match attributes.remove(name) {
                        Some(value) => {
                            named.insert(name.to_string(), value);
                        }
                        None => remove.push(name.to_string()),
                    },
                    _ => violations.add(
                        format!("update_mask.paths[{index}]"),
                        "only \"attributes.<name>\" paths can be updated",
                    ),
                }
            }
            attributes = named;
        }
        violations.finish()?;
        let id = id.ok_or_else(|| Error::internal("checked id missing"))?;
        let profile = self
            .store
            .update_attributes(
                "profile.attributes",
                id,
                &attributes,
                &remove,
                paths.is_empty(),
            )
            .await?;
        Ok(Response::new(pb::UpdateProfileResponse {
            profile: Some(convert::profile_to_proto(&profile)),
        }))
    }

    async fn batch_upsert_attributes(
        &self,
        request: Request<pb::BatchUpsertAttributesRequest>,
    ) -> Result<Response<pb::BatchUpsertAttributesResponse>, Status> {
        let caller = Principal::of(&request)?;
        let upserts = request.into_inner().upserts;
        if upserts.is_empty() || upserts.len() > 1000 {
            return Err(Error::invalid("upserts", "between 1 and 1000 entries").into());
        }
        let mut results = Vec::with_capacity(upserts.len());
        for (index, upsert) in upserts.into_iter().enumerate() {
            let field = format!("upserts[{index}]");
            let outcome: Result<Profile> = async {
                let mut violations = Violations::new();
                let customer = violations.check(CustomerReference::from_proto(
                    &format!("{field}.customer"),
                    upsert.customer,
                ));
                let attributes = convert::attributes(
                    &format!("{field}.attributes"),
                    upsert.attributes,
                    &mut violations,
                );
                violations.finish()?;
                let customer =
                    customer.ok_or_else(|| Error::internal("checked customer missing"))?;
                let profile = self
                    .find(&caller, &format!("{field}.customer"), customer)
                    .await?;
                self.store
                    .update_attributes(
                        &format!("{field}.attributes"),
                        profile.id,
                        &attributes,
                        &[],
                        false,
                    )
                    .await
            }
            .await;
            results.push(record_result(index.to_string(), outcome));
        }
        Ok(Response::new(pb::BatchUpsertAttributesResponse { results }))
    }

    async fn create_attribute_definition(
        &self,
        request: Request<pb::CreateAttributeDefinitionRequest>,
    ) -> Result<Response<pb::CreateAttributeDefinitionResponse>, Status> {
        let definition =
            convert::attribute_definition("definition", request.into_inner().definition)?;
        self.store.define_attribute(&definition).await?;
        Ok(Response::new(pb::CreateAttributeDefinitionResponse {
            definition: Some(convert::attribute_definition_to_proto(&definition)),
        }))
    }

    async fn list_attribute_definitions(
        &self,
        _request: Request<pb::ListAttributeDefinitionsRequest>,
    ) -> Result<Response<pb::ListAttributeDefinitionsResponse>, Status> {
        let definitions = self.store.attribute_definitions().await?;
        Ok(Response::new(pb::ListAttributeDefinitionsResponse {
            definitions: definitions
                .iter()
                .map(convert::attribute_definition_to_proto)
                .collect(),
        }))
    }

    async fn import_profiles(
        &self,
        request: Request<tonic::Streaming<pb::ImportProfilesRequest>>,
    ) -> Result<Response<ImportStream>, Status> {
        let mut records = request.into_inner();
        let store = self.store.clone();
        let phone = self.phone.clone();
        let rule = self.merge_rule.clone();
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let record = match records.message().await {
                    Ok(Some(record)) => record,
                    Ok(None) => break,
                    Err(status) => {
                        let _ = sender.send(Err(status)).await;
                        break;
                    }
                };
                let record_id = record.record_id.clone();
                let outcome = import_one(&store, &phone, &rule, record).await;
                let result = record_result(record_id, outcome);
                if sender
                    .send(Ok(pb::ImportProfilesResponse {
                        result: Some(result),
                    }))
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

    async fn export_personal_data(
        &self,
        request: Request<pb::ExportPersonalDataRequest>,
    ) -> Result<Response<pb::ExportPersonalDataResponse>, Status> {
        let caller = Principal::of(&request)?;
        let customer = CustomerReference::from_proto("customer", request.into_inner().customer)?;
        let profile = self.find(&caller, "customer", customer).await?;
        let data = self.store.export(profile.id).await?;
        self.store
            .audit(&caller, "export_personal_data", Some(profile.id), 1)
            .await?;
        let groups = self.store.groups_of(profile.id).await?;
        let referrals = self.store.referrals_of(profile.id).await?;
        let segment_ids = self.store.profile_segments(profile.id).await?;
        let current = convert::profile_to_proto(&data.profile);
        let gathered = match &self.peers {
            Some(peers) => peers.gather(profile.id).await,
            None => crate::peers::Gathered {
                missing: vec!["journey".into(), "recommendation".into(), "feedback".into()],
                ..Default::default()
            },
        };
        Ok(Response::new(pb::ExportPersonalDataResponse {
            journeys: gathered.journeys,
            recommendations: gathered.recommendations,
            feedback: gathered.feedback,
            missing_parts: gathered.missing,
            export_request_id: data.export_id.to_string(),
            receive_time: Some(cairn_runtime::common::timestamp_to_proto(data.received_at)),
            complete_time: Some(cairn_runtime::common::timestamp_to_proto(data.completed_at)),
            identifier_history: current.identifiers.clone(),
            profile: Some(current),
            consent_history: data
                .consent_history
                .iter()
                .map(convert::consent_to_proto)
                .collect(),
            preferences: Some(convert::preferences_to_proto(&data.preferences)),
            merges: data.merges.iter().map(convert::merge_to_proto).collect(),
            groups: groups.iter().map(convert::group_to_proto).collect(),
            referrals: referrals.iter().map(convert::referral_to_proto).collect(),
            segment_ids,
        }))
    }

    async fn create_segment(
        &self,
        request: Request<pb::CreateSegmentRequest>,
    ) -> Result<Response<pb::CreateSegmentResponse>, Status> {
        let wire = request
            .into_inner()
            .segment
            .ok_or_else(|| Error::invalid("segment", "required"))?;
        let mut violations = Violations::new();
        let id = violations.check(convert::segment_id("segment.segment_id", &wire.segment_id));
        let rule = violations.check(convert::segment_rule("segment.rule", &wire.rule));
        if wire.display_name.len() > 256 {
            violations.add("segment.display_name", "at most 256 bytes");
        }
        if wire.description.len() > 1024 {
            violations.add("segment.description", "at most 1024 bytes");
        }
        violations.finish()?;
        let (Some(id), Some(rule)) = (id, rule) else {
            return Err(Error::internal("checked fields missing").into());
        };
        let segment = self
            .store
            .create_segment(&id, &wire.display_name, &wire.description, rule)
            .await?;
        Ok(Response::new(pb::CreateSegmentResponse {
            segment: Some(convert::segment_to_proto(&segment)),
        }))
    }

    async fn get_segment(
        &self,
        request: Request<pb::GetSegmentRequest>,
    ) -> Result<Response<pb::GetSegmentResponse>, Status> {
        let id = convert::segment_id("segment_id", &request.into_inner().segment_id)?;
        let segment = self.store.segment(&id).await?;
        Ok(Response::new(pb::GetSegmentResponse {
            segment: Some(convert::segment_to_proto(&segment)),
        }))
    }

    async fn list_segments(
        &self,
        request: Request<pb::ListSegmentsRequest>,
    ) -> Result<Response<pb::ListSegmentsResponse>, Status> {
        let request = request.into_inner();
        let page_listing = listing("profile.list_segments", &request);
        let limit = page_size(request.page_size)?;
        let after = self.tokens.decode(&page_listing, &request.page_token)?;
        let (segments, next) = self.store.segments(limit, after).await?;
        Ok(Response::new(pb::ListSegmentsResponse {
            segments: segments.iter().map(convert::segment_to_proto).collect(),
            next_page_token: next
                .map(|p| self.tokens.encode(&page_listing, &p))
                .unwrap_or_default(),
        }))
    }

    async fn update_segment(
        &self,
        request: Request<pb::UpdateSegmentRequest>,
    ) -> Result<Response<pb::UpdateSegmentResponse>, Status> {
        let request = request.into_inner();
        let wire = request
            .segment
            .ok_or_else(|| Error::invalid("segment", "required"))?;
        let id = convert::segment_id("segment.segment_id", &wire.segment_id)?;
        let paths = request
            .update_mask
            .map(|mask| mask.paths)
            .unwrap_or_default();
        let wants = |name: &str| paths.is_empty() || paths.iter().any(|p| p == name);
        let mut violations = Violations::new();
        for (index, path) in paths.iter().enumerate() {
            if !["display_name", "description", "rule"].contains(&path.as_str()) {
                violations.add(
                    format!("update_mask.paths[{index}]"),
                    "one of display_name, description, rule",
                );
            }
        }
        let rule = if wants("rule") {
            violations
                .check(convert::segment_rule("segment.rule", &wire.rule))
                .map(Some)
        } else {
            Some(None)
        };
        violations.finish()?;
        let rule = rule.ok_or_else(|| Error::internal("checked rule missing"))?;
        let segment = self
            .store
            .update_segment(
                &id,
                wants("display_name").then_some(wire.display_name.as_str()),
                wants("description").then_some(wire.description.as_str()),
                rule,
            )
            .await?;
        Ok(Response::new(pb::UpdateSegmentResponse {
            segment: Some(convert::segment_to_proto(&segment)),
        }))
    }

    async fn delete_segment(
        &self,
        request: Request<pb::DeleteSegmentRequest>,
    ) -> Result<Response<pb::DeleteSegmentResponse>, Status> {
        let id = convert::segment_id("segment_id", &request.into_inner().segment_id)?;
        self.store.delete_segment(&id).await?;
        Ok(Response::new(pb::DeleteSegmentResponse {}))
    }

    async fn update_segment_members(
        &self,
        request: Request<pb::UpdateSegmentMembersRequest>,
    ) -> Result<Response<pb::UpdateSegmentMembersResponse>, Status> {
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = violations.check(convert::segment_id("segment_id", &request.segment_id));
        let add: Vec<Uuid> = request
            .add_profile_ids
            .iter()
            .enumerate()
            .filter_map(|(index, raw)| {
                violations.check(profile_id(&format!("add_profile_ids[{index}]"), raw))
            })
            .collect();
        let remove: Vec<Uuid> = request
            .remove_profile_ids
            .iter()
            .enumerate()
            .filter_map(|(index, raw)| {
                violations.check(profile_id(&format!("remove_profile_ids[{index}]"), raw))
            })
            .collect();
        violations.finish()?;
        let id = id.ok_or_else(|| Error::internal("checked id missing"))?;
        let segment = self.store.update_static_members(&id, &add, &remove).await?;
        Ok(Response::new(pb::UpdateSegmentMembersResponse {
            segment: Some(convert::segment_to_proto(&segment)),
        }))
    }

    async fn list_segment_members(
        &self,
        request: Request<pb::ListSegmentMembersRequest>,
    ) -> Result<Response<pb::ListSegmentMembersResponse>, Status> {
        let request = request.into_inner();
        let page_listing = listing("profile.list_segment_members", &request);
        let mut violations = Violations::new();
        let id = violations.check(convert::segment_id("segment_id", &request.segment_id));
        let limit = violations.check(page_size(request.page_size));
        let after = violations.check(self.tokens.decode(&page_listing, &request.page_token));
        violations.finish()?;
        let (Some(id), Some(limit), Some(after)) = (id, limit, after) else {
            return Err(Error::internal("checked fields missing").into());
        };
        let (profile_ids, next) = self.store.segment_members(&id, limit, after).await?;
        Ok(Response::new(pb::ListSegmentMembersResponse {
            profile_ids,
            next_page_token: next
                .map(|p| self.tokens.encode(&page_listing, &p))
                .unwrap_or_default(),
        }))
    }

    async fn list_profile_segments(
        &self,
        request: Request<pb::ListProfileSegmentsRequest>,
    ) -> Result<Response<pb::ListProfileSegmentsResponse>, Status> {
        let caller = Principal::of(&request)?;
        let customer = CustomerReference::from_proto("customer", request.into_inner().customer)?;
        let profile = self.find(&caller, "customer", customer).await?;
        let segment_ids = self.store.profile_segments(profile.id).await?;
        Ok(Response::new(pb::ListProfileSegmentsResponse {
            segment_ids,
        }))
    }

    async fn report_facts(
        &self,
        request: Request<pb::ReportFactsRequest>,
    ) -> Result<Response<pb::ReportFactsResponse>, Status> {
        let caller = Principal::of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let customer =
            violations.check(CustomerReference::from_proto("customer", request.customer));
        let mut facts = Attributes::new();
        if request.facts.len() > MAX_FACTS {
            violations.add(
                "facts",
                format!(
                    "at most {MAX_FACTS} facts in one call; got {}",
                    request.facts.len()
                ),
            );
        }
        for (name, value) in request.facts {
            let field = format!("facts[{name}]");
            let valid = !name.is_empty()
                && name.len() <= 128
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.');
            if !valid {
                violations.add(&field, "names are lower-case letters, digits, '_' and '.'");
                continue;
            }
            if let Some(value) =
                violations.check(cairn_runtime::common::TypedValue::from_proto(&field, value))
            {
                facts.insert(name, value);
            }
        }
        violations.finish()?;
        let customer = customer.ok_or_else(|| Error::internal("checked customer missing"))?;
        let profile = self.find(&caller, "customer", customer).await?;
        let segment_ids = self.store.report_facts(profile.id, &facts).await?;
        Ok(Response::new(pb::ReportFactsResponse { segment_ids }))
    }

    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Result<Response<pb::CreateGroupResponse>, Status> {
        let wire = request
            .into_inner()
            .group
            .ok_or_else(|| Error::invalid("group", "required"))?;
        let group_type = convert::group_type("group.type", wire.r#type)?;
        if wire.display_name.len() > 256 {
            return Err(Error::invalid("group.display_name", "at most 256 bytes").into());
        }
        let mut group = self
            .store
            .create_group(group_type, &wire.display_name)
            .await?;
        for (index, member) in wire.members.iter().enumerate() {
            let field = format!("group.members[{index}]");
            let profile = profile_id(&format!("{field}.profile_id"), &member.profile_id)?;
            let role = convert::group_role(&format!("{field}.role"), member.role)?;
            group = self.store.add_group_member(group.id, profile, role).await?;
        }
        Ok(Response::new(pb::CreateGroupResponse {
            group: Some(convert::group_to_proto(&group)),
        }))
    }

    async fn get_group(
        &self,
        request: Request<pb::GetGroupRequest>,
    ) -> Result<Response<pb::GetGroupResponse>, Status> {
        let id = uuid_field("group_id", &request.into_inner().group_id)?;
        let group = self.store.group(id).await?;
        Ok(Response::new(pb::GetGroupResponse {
            group: Some(convert::group_to_proto(&group)),
        }))
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let caller = Principal::of(&request)?;
        let request = request.into_inner();
        let page_listing = listing("profile.list_groups", &request);
        let mut violations = Violations::new();
        let customer =
            violations.check(CustomerReference::from_proto("customer", request.customer));
        let limit = violations.check(page_size(request.page_size));
        let after = violations.check(self.tokens.decode(&page_listing, &request.page_token));
        violations.finish()?;
        let (Some(customer), Some(limit), Some(after)) = (customer, limit, after) else {
            return Err(Error::internal("checked fields missing").into());
        };
        let profile = self.find(&caller, "customer", customer).await?;
        // A customer belongs to a handful of groups: they are read whole and
        // paged here, in the order of their ids.
        let mut groups = self.store.groups_of(profile.id).await?;
        groups.sort_by_key(|group| group.id);
        let mut page: Vec<_> = groups
            .iter()
            .filter(|group| {
                after
                    .as_deref()
                    .is_none_or(|after| group.id.to_string().as_str() > after)
            })
            .take(limit as usize + 1)
            .collect();
        let next_page_token = if page.len() > limit as usize {
            page.truncate(limit as usize);
            page.last()
                .map(|group| self.tokens.encode(&page_listing, &group.id.to_string()))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Ok(Response::new(pb::ListGroupsResponse {
            groups: page.into_iter().map(convert::group_to_proto).collect(),
            next_page_token,
        }))
    }

    async fn add_group_member(
        &self,
        request: Request<pb::AddGroupMemberRequest>,
    ) -> Result<Response<pb::AddGroupMemberResponse>, Status> {
        let caller = Principal::of(&request)?;
        let request = request.into_inner();
        let mut violations = Violations::new();
        let id = violations.check(uuid_field("group_id", &request.group_id));
        let customer =
            violations.check(CustomerReference::from_proto("customer", request.customer));
        let role = violations.check(convert::group_role("role", request.role));
        violations.finish()?;
        let (Some(id), Some(customer), Some(role)) = (id, customer, role) else {
            return Err(Error::internal("checked fields missing").into());
        };
        let member = self.find(&caller, "customer", customer).await?;
        let group = self.store.add_group_member(id, member.id, role).await?;
        Ok(Response::new(pb::AddGroupMemberResponse {
            group: Some(convert::group_to_proto(&group)),
        }))
    }

    async fn remove_group_member(
        &self,
        request: Request<pb::RemoveGroupMemberRequest>,
    ) -> Result<Response<pb::RemoveGroupMemberResponse>, Status> {
        let caller = Principal::of(&request)?;
        let request = request.into_inner();
        let id = uuid_field("group_id", &request.group_id)?;
        let customer = CustomerReference::from_proto("customer", request.customer)?;
        let member = self.find(&caller, "customer", customer).await?;
        let group = self.store.remove_group_member(id, member.id).await?;
        Ok(Response::new(pb::RemoveGroupMemberResponse {
            group: Some(convert::group_to_proto(&group)),
        }))
    }

    async fn record_referral(
        &self,
        request: Request<pb::RecordReferralRequest>,
    ) -> Result<Response<pb::RecordReferralResponse>, Status> {
        let caller = Principal::of(&request)?;
        let wire = request
            .into_inner()
            .referral
            .ok_or_else(|| Error::invalid("referral", "required"))?;
        let mut violations = Violations::new();
        let referrer = violations.check(CustomerReference::from_proto(
            "referral.referrer",
            wire.referrer,
        ));
        let referred = violations.check(CustomerReference::from_proto(
            "referral.referred",
            wire.referred,
        ));
        let outcome = if wire.outcome.is_empty() {
            "pending".to_string()
        } else {
            wire.outcome
        };
        if !["pending", "joined", "rewarded", "lapsed"].contains(&outcome.as_str()) {
            violations.add(
                "referral.outcome",
                "one of pending, joined, rewarded, lapsed",
            );
        }
        let at = match &wire.referral_time {
            Some(time) => violations.check(cairn_runtime::common::timestamp_from_proto(
                "referral.referral_time",
                time,
            )),
            None => Some(chrono::Utc::now()),
        };
        violations.finish()?;
        let (Some(referrer), Some(referred), Some(at)) = (referrer, referred, at) else {
            return Err(Error::internal("checked fields missing").into());
        };
        let referrer = self.find(&caller, "referral.referrer", referrer).await?;
        let referred = self.find(&caller, "referral.referred", referred).await?;
        let referral = self
            .store
            .record_referral(referrer.id, referred.id, at, &outcome)
            .await?;
        Ok(Response::new(pb::RecordReferralResponse {
            referral: Some(convert::referral_to_proto(&referral)),
        }))
    }

    async fn list_referrals(
        &self,
        request: Request<pb::ListReferralsRequest>,
    ) -> Result<Response<pb::ListReferralsResponse>, Status> {
        let caller = Principal::of(&request)?;
        let customer = CustomerReference::from_proto("customer", request.into_inner().customer)?;
        let profile = self.find(&caller, "customer", customer).await?;
        let referrals = self.store.referrals_of(profile.id).await?;
        Ok(Response::new(pb::ListReferralsResponse {
            referrals: referrals.iter().map(convert::referral_to_proto).collect(),
        }))
    }
}

/// The per-record answer of a batch or an import.
fn record_result(record: String, outcome: Result<Profile>) -> pb::RecordResult {
    match outcome {
        Ok(profile) => pb::RecordResult {
            record,
            ok: true,
            profile_id: profile.id.to_string(),
            ..Default::default()
        },
        Err(error) => {
            let status = Status::from(error);
            pb::RecordResult {
                record,
                ok: false,
                error_message: status.message().to_string(),
                error_code: status.code() as i32,
                ..Default::default()
            }
        }
    }
}

/// The answer stream of ImportProfiles.
type ImportStream = std::pin::Pin<
    Box<dyn futures::Stream<Item = Result<pb::ImportProfilesResponse, Status>> + Send + 'static>,
>;

/// Checks and applies one import record.
async fn import_one(
    store: &ProfileStore,
    phone: &PhoneRules,
    rule: &MergeRule,
    record: pb::ImportProfilesRequest,
) -> Result<Profile> {
    let mut violations = Violations::new();
    if record.record_id.is_empty() || record.record_id.len() > 128 {
        violations.add(
            "record_id",
            "required, at most 128 bytes: the record's id in the source system",
        );
    }
    if record.identifiers.is_empty() || record.identifiers.len() > MAX_IDENTIFY {
        violations.add(
            "identifiers",
            format!("between 1 and {MAX_IDENTIFY} identifiers"),
        );
    }
    let identifiers: Vec<_> = record
        .identifiers
        .into_iter()
        .enumerate()
        .filter_map(|(index, wire)| {
            violations.check(convert::identifier(
                &format!("identifiers[{index}]"),
                Some(wire),
                phone,
            ))
        })
        .collect();
    let attributes = convert::attributes("attributes", record.attributes, &mut violations);
    violations.finish()?;
    let (profile, _) = store
        .import(&record.record_id, &identifiers, &attributes, rule)
        .await?;
    Ok(profile)
}

/// Parses a profile id named `field`.
pub fn profile_id(field: &str, raw: &str) -> Result<Uuid> {
    uuid_field(field, raw)
}

/// Parses a UUID named `field`: INVALID_ARGUMENT when empty or malformed.
fn uuid_field(field: &str, raw: &str) -> Result<Uuid> {
    if raw.is_empty() {
        return Err(Error::invalid(field, "required"));
    }
    Uuid::parse_str(raw).map_err(|_| Error::invalid(field, "must be a UUID"))
}
