//! Touchpoint ingestion, the application side of RecordTouchpoint,
//! RecordTouchpoints and StreamTouchpoints: who each touchpoint's customer
//! is (one batch resolve per batch), whether the caller may write for them,
//! which journeys they move through, and one transaction per batch. The
//! gRPC layer only converts the wire touchpoints in and the outcomes out.

use std::collections::{BTreeSet, HashMap};

use cairn_runtime::auth::Principal;
use cairn_runtime::common::CustomerReference;
use cairn_runtime::{Error, Result};
use uuid::Uuid;

use crate::domain::{IncomingTouchpoint, Touchpoint};
use crate::profiles::ProfileDirectory;
use crate::recommendations::Recommendations;
use crate::storage::TouchpointStore;

/// Most touchpoints in one RecordTouchpoints call or one stream message.
pub const MAX_TOUCHPOINTS_PER_BATCH: usize = 1000;

/// What became of one touchpoint: stored, with whether it had been stored
/// before (a retry, answered with the stored one), or refused.
pub type Outcome = Result<(Touchpoint, bool)>;

/// A touchpoint of a batch as checked: named by its field in the request
/// (`touchpoints[3]`), or refused already.
pub type Checked = Result<(String, IncomingTouchpoint)>;

/// Records touchpoints: the store, and the services that say who a
/// customer is and whom a decision was made for.
#[derive(Clone)]
pub struct Ingestion {
    store: TouchpointStore,
    profiles: ProfileDirectory,
    recommendations: Recommendations,
}

impl Ingestion {
    /// Ingestion into `store`, resolving customers through `profiles` and
    /// checking the decisions a customer's token names with
    /// `recommendations`.
    pub fn new(
        store: TouchpointStore,
        profiles: ProfileDirectory,
        recommendations: Recommendations,
    ) -> Self {
        Self {
            store,
            profiles,
            recommendations,
        }
    }

    /// The profile id of the customer a request concerns, if `caller` may
    /// touch their data: the one place where this service holds a
    /// customer's token to that customer ([`Principal::admit`]). With
    /// `create`, an identifier seen for the first time gets an anonymous
    /// profile, except for a customer's token, which only ever names its own.
    pub async fn customer_of(
        &self,
        caller: &Principal,
        field: &str,
        customer: &CustomerReference,
        create: bool,
    ) -> Result<Uuid> {
        let found = if create && !caller.is_customer() {
            self.profiles.resolve(field, customer).await
        } else {
            self.profiles.find(field, customer).await
        };
        caller.admit(found, |profile_id| *profile_id)
    }

    /// For a customer's token, a decision a touchpoint names must be that
    /// customer's, so that one customer's front end cannot record an
    /// outcome on another's decision: the recommendation service says whom
    /// it was made for (asked with this service's own token) and the
    /// profile service where that profile went through merges. Another
    /// customer's decision, an unknown one and a malformed id all get
    /// [`Principal::admit`]'s one refusal. A system's token is trusted here;
    /// the recommendation service checks again, for everyone, when it
    /// consumes the touchpoint's event.
    async fn admit_decision(
        &self,
        caller: &Principal,
        field: &str,
        incoming: &IncomingTouchpoint,
    ) -> Result<()> {
        if !caller.is_customer() {
            return Ok(());
        }
        let Some(decision_id) = incoming.decision_id() else {
            return Ok(());
        };
        let field = format!("{field}.properties.decision_id");
        let unknown = || Error::not_found("decision", format!("named in {field}"));
        let owner = match Uuid::parse_str(decision_id) {
            Ok(id) => self.recommendations.decided_for(id).await?,
            Err(_) => None,
        };
        let survivor = match owner {
            None => Err(unknown()),
            Some(owner) if Some(owner) == caller.customer() => Ok(owner),
            Some(owner) => match self
                .profiles
                .find(&field, &CustomerReference::ProfileId(owner))
                .await
            {
                Err(Error::NotFound { .. }) => Err(unknown()),
                found => found,
            },
        };
        caller.admit(survivor, |profile_id| *profile_id).map(|_| ())
    }

    /// Resolves and stores one checked touchpoint named `field`; returns it
    /// and whether it was stored before.
    pub async fn record_one(
        &self,
        caller: &Principal,
        field: &str,
        incoming: IncomingTouchpoint,
    ) -> Outcome {
        // A retry of a stored touchpoint is answered without asking the
        // profile service, and only to a caller who may see it.
        if let Some(stored) = self.store.find(&incoming.id).await? {
            let stored = caller.admit(Ok(stored), |touchpoint| touchpoint.profile_id)?;
            return Ok((stored, true));
        }
        let profile_id = self
            .customer_of(
                caller,
                &format!("{field}.customer"),
                &incoming.customer,
                true,
            )
            .await?;
        self.admit_decision(caller, field, &incoming).await?;
        let journeys = self.store.journeys();
        let heads = journeys.heads(journeys.database(), true).await?;
        let profile = if heads.iter().any(|journey| journey.reads_profile()) {
            self.profiles.rule_variable(profile_id).await?
        } else {
            crate::profiles::empty_rule_variable()
        };
        self.store
            .record(incoming.into_touchpoint(profile_id), &heads, profile)
            .await
    }

    /// Resolves and stores the touchpoints of one batch (a stream message
    /// or a RecordTouchpoints call) in one transaction, answering each in
    /// order: a touchpoint refused when checked stays refused alone; when
    /// the database fails, the batch's other touchpoints are refused with
    /// its error and none is stored.
    pub async fn record_batch(&self, caller: &Principal, batch: Vec<Checked>) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(batch.len());
        let mut checked = Vec::with_capacity(batch.len());
        for (slot, touchpoint) in batch.into_iter().enumerate() {
            match touchpoint {
                Ok((field, incoming)) => {
                    outcomes.push(None);
                    checked.push((slot, field, incoming));
                }
                Err(error) => outcomes.push(Some(Err(error))),
            }
        }
        if let Err(error) = self.store_batch(caller, checked, &mut outcomes).await {
            let status = tonic::Status::from(error);
            for outcome in outcomes.iter_mut().filter(|outcome| outcome.is_none()) {
                *outcome = Some(Err(Error::from(status.clone())));
            }
        }
        outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| {
                    Err(Error::internal(
                        "a touchpoint of the batch was not answered",
                    ))
                })
            })
            .collect()
    }

    /// Stores the checked touchpoints of a batch, filling in their outcomes;
    /// an error means the database failed and nothing more was stored.
    async fn store_batch(
        &self,
        caller: &Principal,
        checked: Vec<(usize, String, IncomingTouchpoint)>,
        outcomes: &mut [Option<Outcome>],
    ) -> Result<()> {
        // Retries of stored touchpoints are answered without asking the profile service.
        let ids: Vec<&str> = checked
            .iter()
            .map(|(_, _, incoming)| incoming.id.as_str())
            .collect();
        let stored = self.store.find_all(&ids).await?;
        let mut fresh = Vec::with_capacity(checked.len());
        for (slot, field, incoming) in checked {
            match stored.get(&incoming.id) {
                // A retry is answered only to a caller who may see it.
                Some(touchpoint) => {
                    outcomes[slot] = Some(
                        caller
                            .admit(Ok(touchpoint.clone()), |touchpoint| touchpoint.profile_id)
                            .map(|touchpoint| (touchpoint, true)),
                    )
                }
                None => fresh.push((slot, field, incoming)),
            }
        }
        if fresh.is_empty() {
            return Ok(());
        }
        let resolved = self.resolve(caller, &fresh).await;
        let journeys = self.store.journeys();
        let heads = journeys.heads(journeys.database(), true).await?;
        let mut slots = Vec::with_capacity(fresh.len());
        let mut touchpoints = Vec::with_capacity(fresh.len());
        for ((slot, _, incoming), profile_id) in fresh.into_iter().zip(resolved) {
            match profile_id {
                Ok(profile_id) => {
                    slots.push(slot);
                    touchpoints.push(incoming.into_touchpoint(profile_id));
                }
                Err(error) => outcomes[slot] = Some(Err(error)),
            }
        }
        let mut profiles = HashMap::new();
        if heads.iter().any(|journey| journey.reads_profile()) {
            let distinct: BTreeSet<Uuid> = touchpoints
                .iter()
                .map(|touchpoint| touchpoint.profile_id)
                .collect();
            for profile_id in distinct {
                match self.profiles.rule_variable(profile_id).await {
                    Ok(variable) => {
                        profiles.insert(profile_id, variable);
                    }
                    // The profile's touchpoints are refused; the others go on.
                    Err(error) => {
                        let status = tonic::Status::from(error);
                        let (refused, kept): (Vec<_>, Vec<_>) = slots
                            .into_iter()
                            .zip(touchpoints)
                            .partition(|(_, touchpoint)| touchpoint.profile_id == profile_id);
                        for (slot, _) in refused {
                            outcomes[slot] = Some(Err(Error::from(status.clone())));
                        }
                        (slots, touchpoints) = kept.into_iter().unzip();
                    }
                }
            }
        }
        if touchpoints.is_empty() {
            return Ok(());
        }
        let results = self
            .store
            .record_batch(touchpoints, &heads, &profiles)
            .await?;
        for (slot, result) in slots.into_iter().zip(results) {
            outcomes[slot] = Some(result);
        }
        Ok(())
    }

    /// The profile id of each fresh touchpoint's customer, in order: for a
    /// system's token, one batch resolve for the whole batch (identifiers
    /// seen for the first time get a profile); a customer's token names
    /// only its own customer, checked one by one with the decisions it
    /// names.
    async fn resolve(
        &self,
        caller: &Principal,
        fresh: &[(usize, String, IncomingTouchpoint)],
    ) -> Vec<Result<Uuid>> {
        if !caller.is_customer() {
            let references: Vec<(String, &CustomerReference)> = fresh
                .iter()
                .map(|(_, field, incoming)| (format!("{field}.customer"), &incoming.customer))
                .collect();
            return self.profiles.resolve_all(&references).await;
        }
        let mut resolved = Vec::with_capacity(fresh.len());
        for (_, field, incoming) in fresh {
            let admitted = match self
                .customer_of(
                    caller,
                    &format!("{field}.customer"),
                    &incoming.customer,
                    true,
                )
                .await
            {
                Ok(profile_id) => self
                    .admit_decision(caller, field, incoming)
                    .await
                    .map(|()| profile_id),
                Err(error) => Err(error),
            };
            resolved.push(admitted);
        }
        resolved
    }
}
