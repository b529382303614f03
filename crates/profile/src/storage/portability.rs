//! Bulk import from a BSS/CRM (idempotent per record) and the export of a
//! person's data (recorded with its times).

use cairn_runtime::{Error, Result};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use uuid::Uuid;

use super::entity::{export, import_record};
use super::{MergeRecord, ProfileStore, live_row, parse_id};
use crate::domain::{Attributes, ConsentAnswer, Identifier, MergeRule, Preferences, Profile};

/// Everything the profile service holds about a person.
#[derive(Debug, Clone)]
pub struct PersonalData {
    /// The export request's id.
    pub export_id: Uuid,
    /// When it was received.
    pub received_at: DateTime<Utc>,
    /// When it was completed.
    pub completed_at: DateTime<Utc>,
    /// The profile with every identifier, current and past.
    pub profile: Profile,
    /// Consent history, newest first.
    pub consent_history: Vec<ConsentAnswer>,
    /// Preferences.
    pub preferences: Preferences,
    /// Merges the person took part in.
    pub merges: Vec<MergeRecord>,
}

impl ProfileStore {
    /// Applies one import record: the identifiers are identified (merging
    /// as the rule allows) and the attributes set. A record id applied
    /// before changes nothing and returns the profile it went to.
    pub async fn import(
        &self,
        record_id: &str,
        identifiers: &[Identifier],
        attributes: &Attributes,
        rule: &MergeRule,
    ) -> Result<(Profile, bool)> {
        if let Some(done) = import_record::Entity::find_by_id(record_id.to_string())
            .one(&self.db)
            .await?
        {
            return Ok((self.get(parse_id(&done.profile_id)?).await?, false));
        }
        let outcome = self.identify(identifiers, rule).await?;
        let profile = if attributes.is_empty() {
            outcome.profile
        } else {
            self.update_attributes("attributes", outcome.profile.id, attributes, &[], false)
                .await?
        };
        import_record::Entity::insert(import_record::ActiveModel {
            record_id: Set(record_id.to_string()),
            profile_id: Set(profile.id.to_string()),
            imported_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::column(import_record::Column::RecordId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        Ok((profile, true))
    }

    /// Everything held about profile `id`'s person, with the request recorded.
    pub async fn export(&self, id: Uuid) -> Result<PersonalData> {
        let received_at = Utc::now();
        let live = live_row(&self.db, id).await?;
        let live_id = parse_id(&live.id)?;
        let export_id = Uuid::now_v7();
        export::ActiveModel {
            id: Set(export_id.to_string()),
            profile_id: Set(live.id.clone()),
            received_at: Set(received_at),
            completed_at: Set(None),
        }
        .insert(&self.db)
        .await?;
        let profile = self.get(live_id).await?;
        let (_, consent_history) = self.consents(live_id).await?;
        let preferences = self.preferences(live_id).await?;
        let merges = self.merges_of(live_id).await?;
        let completed_at = Utc::now();
        export::ActiveModel {
            id: Set(export_id.to_string()),
            completed_at: Set(Some(completed_at)),
            ..Default::default()
        }
        .update(&self.db)
        .await
        .map_err(Error::from)?;
        Ok(PersonalData {
            export_id,
            received_at,
            completed_at,
            profile,
            consent_history,
            preferences,
            merges,
        })
    }
}
