//! Consent answers and preferences in the database.

use cairn_runtime::storage::BeginWrite;
use std::collections::BTreeMap;

use cairn_contract::events::v1::ConsentChanged;
use cairn_contract::events::v1::change_event::Payload;
use cairn_runtime::outbox;
use cairn_runtime::{Error, Result};
use chrono::{DateTime, NaiveTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use uuid::Uuid;

use super::entity::{consent, preference};
use super::{ProfileStore, SOURCE, live_row, parse_id};
use crate::domain::{ConsentAnswer, ContactDecision, Preferences, Purpose, may_contact};

impl ProfileStore {
    /// Records a consent answer of profile `id` (following merges) with its
    /// `profile.consent_changed` event; returns the profile id it landed on.
    pub async fn record_consent(&self, id: Uuid, answer: &ConsentAnswer) -> Result<Uuid> {
        let transaction = self.db.begin_write().await?;
        let live = live_row(&transaction, id).await?;
        insert(&transaction, &live.id, answer, None).await?;
        let event = outbox::event(
            SOURCE,
            "profile.consent_changed",
            &live.id,
            Payload::ConsentChanged(ConsentChanged {
                purpose: answer.purpose.as_str().to_string(),
                channel: answer.channel,
                granted: answer.granted,
            }),
        );
        self.outbox.enqueue(&transaction, &event).await?;
        transaction.commit().await?;
        self.outbox.committed();
        let id = parse_id(&live.id)?;
        self.refresh_after_change(id).await;
        Ok(id)
    }

    /// The answers in force (newest per purpose and channel) and the whole
    /// history, newest first, of profile `id`.
    pub async fn consents(&self, id: Uuid) -> Result<(Vec<ConsentAnswer>, Vec<ConsentAnswer>)> {
        let live = live_row(&self.db, id).await?;
        let history = history(&self.db, &live.id).await?;
        Ok((current(&history), history))
    }

    /// Replaces the preferences of profile `id`.
    pub async fn set_preferences(&self, id: Uuid, preferences: &Preferences) -> Result<()> {
        let live = live_row(&self.db, id).await?;
        let row = preference::ActiveModel {
            profile_id: Set(live.id),
            language: Set(preferences.language.clone()),
            preferred_channel: Set(preferences.preferred_channel),
            time_zone: Set(preferences.time_zone.map(|zone| zone.name().to_string())),
            quiet_start: Set(preferences
                .quiet_hours
                .map(|(start, _)| start.format("%H:%M").to_string())),
            quiet_end: Set(preferences
                .quiet_hours
                .map(|(_, end)| end.format("%H:%M").to_string())),
            updated_at: Set(Utc::now()),
        };
        preference::Entity::insert(row)
            .on_conflict(
                OnConflict::column(preference::Column::ProfileId)
                    .update_columns([
                        preference::Column::Language,
                        preference::Column::PreferredChannel,
                        preference::Column::TimeZone,
                        preference::Column::QuietStart,
                        preference::Column::QuietEnd,
                        preference::Column::UpdatedAt,
                    ])
                    .to_owned(),
            )
            .exec_without_returning(&self.db)
            .await?;
        Ok(())
    }

    /// The preferences of profile `id` (defaults when none were stated).
    pub async fn preferences(&self, id: Uuid) -> Result<Preferences> {
        let live = live_row(&self.db, id).await?;
        preferences_of(&self.db, &live.id).await
    }

    /// May profile `id` be contacted on `channel` for `purpose` at `now`?
    pub async fn check_contact(
        &self,
        id: Uuid,
        purpose: &Purpose,
        channel: i32,
        now: DateTime<Utc>,
    ) -> Result<(ContactDecision, Preferences)> {
        let (mut decisions, preferences) = self
            .check_contacts(id, std::slice::from_ref(purpose), channel, now)
            .await?;
        let decision = decisions
            .pop()
            .ok_or_else(|| Error::internal("no contact decision for the purpose"))?;
        Ok((decision, preferences))
    }

    /// [`Self::check_contact`] for each of `purposes`, in their order, from
    /// one read of the consent history and the preferences.
    pub async fn check_contacts(
        &self,
        id: Uuid,
        purposes: &[Purpose],
        channel: i32,
        now: DateTime<Utc>,
    ) -> Result<(Vec<ContactDecision>, Preferences)> {
        let live = live_row(&self.db, id).await?;
        let answers = current(&history(&self.db, &live.id).await?);
        let preferences = preferences_of(&self.db, &live.id).await?;
        let decisions = purposes
            .iter()
            .map(|purpose| may_contact(&answers, &preferences, purpose, channel, now))
            .collect();
        Ok((decisions, preferences))
    }
}

async fn insert(
    db: &impl ConnectionTrait,
    profile_id: &str,
    answer: &ConsentAnswer,
    merge_id: Option<&str>,
) -> Result<()> {
    consent::ActiveModel {
        profile_id: Set(profile_id.to_string()),
        purpose: Set(answer.purpose.as_str().to_string()),
        channel: Set(answer.channel),
        granted: Set(answer.granted),
        source: Set(answer.source.clone()),
        recorded_at: Set(answer.recorded_at),
        expires_at: Set(answer.expires_at),
        merge_id: Set(merge_id.map(str::to_string)),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

async fn history(db: &impl ConnectionTrait, profile_id: &str) -> Result<Vec<ConsentAnswer>> {
    let rows = consent::Entity::find()
        .filter(consent::Column::ProfileId.eq(profile_id))
        .order_by_desc(consent::Column::RecordedAt)
        .order_by_desc(consent::Column::Id)
        .all(db)
        .await?;
    Ok(rows.into_iter().filter_map(to_answer).collect())
}

fn to_answer(row: consent::Model) -> Option<ConsentAnswer> {
    Some(ConsentAnswer {
        purpose: Purpose::new(&row.purpose)?,
        channel: row.channel,
        granted: row.granted,
        source: row.source,
        recorded_at: row.recorded_at,
        expires_at: row.expires_at,
    })
}

/// The newest answer per purpose and channel of a history sorted newest first.
fn current(history: &[ConsentAnswer]) -> Vec<ConsentAnswer> {
    let mut seen = BTreeMap::new();
    for answer in history {
        seen.entry((answer.purpose.clone(), answer.channel))
            .or_insert_with(|| answer.clone());
    }
    seen.into_values().collect()
}

async fn preferences_of(db: &impl ConnectionTrait, profile_id: &str) -> Result<Preferences> {
    let Some(row) = preference::Entity::find_by_id(profile_id.to_string())
        .one(db)
        .await?
    else {
        return Ok(Preferences::default());
    };
    let time = |text: &Option<String>| {
        text.as_deref()
            .and_then(|t| NaiveTime::parse_from_str(t, "%H:%M").ok())
    };
    Ok(Preferences {
        language: row.language,
        preferred_channel: row.preferred_channel,
        time_zone: row.time_zone.as_deref().and_then(|zone| zone.parse().ok()),
        quiet_hours: time(&row.quiet_start).zip(time(&row.quiet_end)),
    })
}

/// Moves the consent history and (when the survivor has none) the
/// preferences of `merged` to `survivor`, and writes, per purpose and
/// channel both answered, the most restrictive answer as the one in force.
/// Returns the ids of the moved rows and whether preferences moved, for unmerge.
pub(crate) async fn merge_consents(
    db: &impl ConnectionTrait,
    survivor: &str,
    merged: &str,
    merge_id: &str,
) -> Result<(Vec<i64>, bool)> {
    let survivor_current = current(&history(db, survivor).await?);
    let merged_current = current(&history(db, merged).await?);
    let moved: Vec<i64> = consent::Entity::find()
        .filter(consent::Column::ProfileId.eq(merged))
        .all(db)
        .await?
        .into_iter()
        .map(|row| row.id)
        .collect();
    consent::Entity::update_many()
        .col_expr(
            consent::Column::ProfileId,
            Expr::value(survivor.to_string()),
        )
        .filter(consent::Column::Id.is_in(moved.clone()))
        .exec(db)
        .await?;
    let now = Utc::now();
    for theirs in merged_current {
        if let Some(ours) = survivor_current
            .iter()
            .find(|a| a.purpose == theirs.purpose && a.channel == theirs.channel)
        {
            let mut strictest = ConsentAnswer::most_restrictive(ours.clone(), theirs);
            strictest.recorded_at = now;
            strictest.source = "merge".into();
            insert(db, survivor, &strictest, Some(merge_id)).await?;
        }
    }
    let survivor_has = preference::Entity::find_by_id(survivor.to_string())
        .one(db)
        .await?
        .is_some();
    let mut preferences_moved = false;
    if !survivor_has {
        preferences_moved = preference::Entity::update_many()
            .col_expr(
                preference::Column::ProfileId,
                Expr::value(survivor.to_string()),
            )
            .filter(preference::Column::ProfileId.eq(merged))
            .exec(db)
            .await?
            .rows_affected
            > 0;
    }
    Ok((moved, preferences_moved))
}

/// Undoes [`merge_consents`]: the moved rows go back, the derived answers go.
pub(crate) async fn unmerge_consents(
    db: &impl ConnectionTrait,
    survivor: &str,
    merged: &str,
    merge_id: &str,
    moved: &[i64],
    preferences_moved: bool,
) -> Result<()> {
    consent::Entity::delete_many()
        .filter(consent::Column::MergeId.eq(merge_id))
        .exec(db)
        .await?;
    consent::Entity::update_many()
        .col_expr(consent::Column::ProfileId, Expr::value(merged.to_string()))
        .filter(consent::Column::Id.is_in(moved.to_vec()))
        .exec(db)
        .await?;
    if preferences_moved {
        preference::Entity::update_many()
            .col_expr(
                preference::Column::ProfileId,
                Expr::value(merged.to_string()),
            )
            .filter(preference::Column::ProfileId.eq(survivor))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Deletes the consents and preferences of `profiles` (erasure).
pub(crate) async fn erase_consents(db: &impl ConnectionTrait, profiles: &[String]) -> Result<()> {
    consent::Entity::delete_many()
        .filter(consent::Column::ProfileId.is_in(profiles.to_vec()))
        .exec(db)
        .await?;
    preference::Entity::delete_many()
        .filter(preference::Column::ProfileId.is_in(profiles.to_vec()))
        .exec(db)
        .await?;
    Ok(())
}

/// Checks that a time zone name is an IANA zone.
pub fn parse_time_zone(field: &str, name: &str) -> Result<chrono_tz::Tz> {
    name.parse().map_err(|_| {
        Error::invalid(
            field,
            "not an IANA time zone name such as \"Europe/Stockholm\"",
        )
    })
}
