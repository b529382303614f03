//! Groups (households, families, companies) with member roles, and
//! referrals (who brought whom), for family campaigns and referral programmes.

use cairn_runtime::{Error, Result};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use uuid::Uuid;

use super::entity::{group, group_member, referral};
use super::{ProfileStore, live_row};

/// A group with its members.
#[derive(Debug, Clone)]
pub struct GroupRecord {
    /// Its id.
    pub id: Uuid,
    /// "household", "family" or "company".
    pub group_type: String,
    /// A name for people.
    pub display_name: String,
    /// Members: profile id, role, since.
    pub members: Vec<(String, String, DateTime<Utc>)>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// A referral.
#[derive(Debug, Clone)]
pub struct ReferralRecord {
    /// Its id.
    pub id: Uuid,
    /// Who referred.
    pub referrer_id: String,
    /// Who was referred.
    pub referred_id: String,
    /// When.
    pub referred_at: DateTime<Utc>,
    /// What came of it.
    pub outcome: String,
}

impl ProfileStore {
    /// Creates a group.
    pub async fn create_group(&self, group_type: &str, display_name: &str) -> Result<GroupRecord> {
        let id = Uuid::now_v7();
        group::ActiveModel {
            id: Set(id.to_string()),
            group_type: Set(group_type.to_string()),
            display_name: Set(display_name.to_string()),
            created_at: Set(Utc::now()),
        }
        .insert(&self.db)
        .await?;
        self.group(id).await
    }

    /// The group `id` with its members.
    pub async fn group(&self, id: Uuid) -> Result<GroupRecord> {
        let row = group::Entity::find_by_id(id.to_string())
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("group", id.to_string()))?;
        let members = group_member::Entity::find()
            .filter(group_member::Column::GroupId.eq(row.id.clone()))
            .order_by_asc(group_member::Column::JoinedAt)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| (m.profile_id, m.role, m.joined_at))
            .collect();
        Ok(GroupRecord {
            id,
            group_type: row.group_type,
            display_name: row.display_name,
            members,
            created_at: row.created_at,
        })
    }

    /// The groups profile `id` belongs to.
    pub async fn groups_of(&self, id: Uuid) -> Result<Vec<GroupRecord>> {
        let live = live_row(&self.db, id).await?;
        let ids: Vec<String> = group_member::Entity::find()
            .filter(group_member::Column::ProfileId.eq(live.id))
            .all(&self.db)
            .await?
            .into_iter()
            .map(|m| m.group_id)
            .collect();
        let mut groups = Vec::with_capacity(ids.len());
        for id in ids {
            groups.push(
                self.group(Uuid::parse_str(&id).map_err(Error::internal)?)
                    .await?,
            );
        }
        Ok(groups)
    }

    /// Adds profile `member` (following merges) to group `id` with `role`, or changes its role.
    pub async fn add_group_member(
        &self,
        id: Uuid,
        member: Uuid,
        role: &str,
    ) -> Result<GroupRecord> {
        self.group(id).await?;
        let live = live_row(&self.db, member).await?;
        group_member::Entity::insert(group_member::ActiveModel {
            group_id: Set(id.to_string()),
            profile_id: Set(live.id),
            role: Set(role.to_string()),
            joined_at: Set(Utc::now()),
        })
        .on_conflict(
            OnConflict::columns([
                group_member::Column::GroupId,
                group_member::Column::ProfileId,
            ])
            .update_column(group_member::Column::Role)
            .to_owned(),
        )
        .exec_without_returning(&self.db)
        .await?;
        self.refresh_after_change(member).await;
        self.group(id).await
    }

    /// Removes profile `member` from group `id`; NOT_FOUND when it was not in it.
    pub async fn remove_group_member(&self, id: Uuid, member: Uuid) -> Result<GroupRecord> {
        let live = live_row(&self.db, member).await?;
        let removed = group_member::Entity::delete_many()
            .filter(group_member::Column::GroupId.eq(id.to_string()))
            .filter(group_member::Column::ProfileId.eq(live.id))
            .exec(&self.db)
            .await?;
        if removed.rows_affected == 0 {
            return Err(Error::not_found("member of group", id.to_string()));
        }
        self.group(id).await
    }

    /// Records that `referrer` referred `referred`.
    pub async fn record_referral(
        &self,
        referrer: Uuid,
        referred: Uuid,
        at: DateTime<Utc>,
        outcome: &str,
    ) -> Result<ReferralRecord> {
        let referrer = live_row(&self.db, referrer).await?;
        let referred = live_row(&self.db, referred).await?;
        if referrer.id == referred.id {
            return Err(Error::invalid(
                "referral.referred",
                "a customer cannot refer themselves",
            ));
        }
        let id = Uuid::now_v7();
        referral::ActiveModel {
            id: Set(id.to_string()),
            referrer_id: Set(referrer.id.clone()),
            referred_id: Set(referred.id.clone()),
            referred_at: Set(at),
            outcome: Set(outcome.to_string()),
        }
        .insert(&self.db)
        .await?;
        Ok(ReferralRecord {
            id,
            referrer_id: referrer.id,
            referred_id: referred.id,
            referred_at: at,
            outcome: outcome.to_string(),
        })
    }

    /// Referrals profile `id` made or received, newest first.
    pub async fn referrals_of(&self, id: Uuid) -> Result<Vec<ReferralRecord>> {
        let live = live_row(&self.db, id).await?;
        Ok(referral::Entity::find()
            .filter(
                referral::Column::ReferrerId
                    .eq(live.id.clone())
                    .or(referral::Column::ReferredId.eq(live.id)),
            )
            .order_by_desc(referral::Column::ReferredAt)
            .all(&self.db)
            .await?
            .into_iter()
            .filter_map(|row| {
                Some(ReferralRecord {
                    id: Uuid::parse_str(&row.id).ok()?,
                    referrer_id: row.referrer_id,
                    referred_id: row.referred_id,
                    referred_at: row.referred_at,
                    outcome: row.outcome,
                })
            })
            .collect())
    }
}

/// Gives `survivor` the group memberships and referrals of `merged` (a merge).
pub(crate) async fn carry_groups(
    db: &impl ConnectionTrait,
    survivor: &str,
    merged: &str,
) -> Result<()> {
    for membership in group_member::Entity::find()
        .filter(group_member::Column::ProfileId.eq(merged))
        .all(db)
        .await?
    {
        group_member::Entity::insert(group_member::ActiveModel {
            group_id: Set(membership.group_id.clone()),
            profile_id: Set(survivor.to_string()),
            role: Set(membership.role),
            joined_at: Set(membership.joined_at),
        })
        .on_conflict(
            OnConflict::columns([
                group_member::Column::GroupId,
                group_member::Column::ProfileId,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    }
    group_member::Entity::delete_many()
        .filter(group_member::Column::ProfileId.eq(merged))
        .exec(db)
        .await?;
    for column in [referral::Column::ReferrerId, referral::Column::ReferredId] {
        referral::Entity::update_many()
            .col_expr(column, Expr::value(survivor.to_string()))
            .filter(column.eq(merged))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Deletes the group memberships and referrals of `profiles` (erasure).
pub(crate) async fn erase_groups(db: &impl ConnectionTrait, profiles: &[String]) -> Result<()> {
    group_member::Entity::delete_many()
        .filter(group_member::Column::ProfileId.is_in(profiles.to_vec()))
        .exec(db)
        .await?;
    referral::Entity::delete_many()
        .filter(
            referral::Column::ReferrerId
                .is_in(profiles.to_vec())
                .or(referral::Column::ReferredId.is_in(profiles.to_vec())),
        )
        .exec(db)
        .await?;
    Ok(())
}

/// The groups `profile` is in: (group id, group type, role).
pub(crate) async fn memberships_of(
    db: &impl ConnectionTrait,
    profile: &str,
) -> Result<Vec<(String, String, String)>> {
    let memberships = group_member::Entity::find()
        .filter(group_member::Column::ProfileId.eq(profile))
        .all(db)
        .await?;
    let mut found = Vec::with_capacity(memberships.len());
    for membership in memberships {
        if let Some(group) = group::Entity::find_by_id(membership.group_id.clone())
            .one(db)
            .await?
        {
            found.push((membership.group_id, group.group_type, membership.role));
        }
    }
    Ok(found)
}
