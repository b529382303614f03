//! Changes to identifiers a profile holds: marking one shared, and
//! releasing one (a recycled or ported phone number).

use cairn_runtime::{Error, Result};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::entity::identifier;
use super::{ProfileStore, parse_id};
use crate::domain::{Identifier, Profile};

impl ProfileStore {
    /// Marks the held `identifier` shared (or not); returns its profile.
    pub async fn set_shared(&self, wanted: &Identifier, shared: bool) -> Result<Profile> {
        let row = self.current_row(wanted).await?;
        identifier::Entity::update_many()
            .col_expr(identifier::Column::Shared, Expr::value(shared))
            .filter(identifier::Column::Id.eq(row.id))
            .exec(&self.db)
            .await?;
        self.get(parse_id(&row.profile_id)?).await
    }

    /// Ends the hold on `identifier` at `at`: it stays in the profile's
    /// history, and anyone can claim it afterwards without inheriting the
    /// old profile's history or consent.
    pub async fn release(&self, wanted: &Identifier, at: DateTime<Utc>) -> Result<Profile> {
        let row = self.current_row(wanted).await?;
        let released = identifier::Entity::update_many()
            .col_expr(identifier::Column::ValidUntil, Expr::value(Some(at)))
            .filter(identifier::Column::Id.eq(row.id))
            .filter(identifier::Column::ValidUntil.is_null())
            .exec(&self.db)
            .await?;
        if released.rows_affected == 0 {
            return Err(Error::Aborted(
                "the identifier was released concurrently".into(),
            ));
        }
        self.get(parse_id(&row.profile_id)?).await
    }

    async fn current_row(&self, wanted: &Identifier) -> Result<identifier::Model> {
        identifier::Entity::find()
            .filter(identifier::Column::Kind.eq(wanted.kind().storage_name()))
            .filter(identifier::Column::Value.eq(wanted.value()))
            .filter(identifier::Column::ValidUntil.is_null())
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::not_found("profile holding", wanted.to_string()))
    }
}
