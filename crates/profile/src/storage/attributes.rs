//! Attribute updates and registered attribute definitions.

use cairn_runtime::storage::BeginWrite;
use std::collections::BTreeMap;

use cairn_runtime::{Error, Result};
use chrono::Utc;
use sea_orm::{ActiveModelTrait, EntityTrait, QueryOrder, Set};
use uuid::Uuid;

use super::entity::{attribute_definition, profile};
use super::{
    ProfileStore, attributes_to_json, live_row, parse_id, times_from_json, times_to_json,
    unique_violation,
};
use crate::domain::{AttributeDefinition, Attributes, Profile, ValueType, check_types};

impl ProfileStore {
    /// Every registered attribute.
    pub async fn attribute_definitions(&self) -> Result<Vec<AttributeDefinition>> {
        Ok(attribute_definition::Entity::find()
            .order_by_asc(attribute_definition::Column::Name)
            .all(&self.db)
            .await?
            .into_iter()
            .filter_map(|row| {
                Some(AttributeDefinition {
                    value_type: ValueType::from_storage_name(&row.value_type)?,
                    name: row.name,
                    description: row.description,
                    personal_data: row.personal_data,
                })
            })
            .collect())
    }

    /// Registers an attribute; ALREADY_EXISTS when the name is taken.
    pub async fn define_attribute(&self, definition: &AttributeDefinition) -> Result<()> {
        let inserted = attribute_definition::ActiveModel {
            name: Set(definition.name.clone()),
            value_type: Set(definition.value_type.storage_name().into()),
            description: Set(definition.description.clone()),
            personal_data: Set(definition.personal_data),
        }
        .insert(&self.db)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(error) if unique_violation(&error) => Err(Error::AlreadyExists(format!(
                "attribute {} is registered already",
                definition.name
            ))),
            Err(error) => Err(error.into()),
        }
    }

    /// Sets attributes of profile `id` (following merges): `set` are
    /// written, `remove` are deleted, `replace_all` drops every other one.
    /// Values are checked against the registered types (`field` names them).
    pub async fn update_attributes(
        &self,
        field: &str,
        id: Uuid,
        set: &Attributes,
        remove: &[String],
        replace_all: bool,
    ) -> Result<Profile> {
        check_types(field, set, &self.attribute_definitions().await?)?;
        let transaction = self.db.begin_write().await?;
        let row = live_row(&transaction, id).await?;
        let mut attributes: Attributes = if replace_all {
            Attributes::new()
        } else {
            serde_json::from_value(row.attributes.clone()).map_err(Error::internal)?
        };
        let mut times: BTreeMap<_, _> = times_from_json(
            row.attribute_times.as_ref(),
            row.updated_at,
            attributes.keys().cloned(),
        );
        let now = Utc::now();
        for name in remove {
            attributes.remove(name);
            times.remove(name);
        }
        for (name, value) in set {
            attributes.insert(name.clone(), value.clone());
            times.insert(name.clone(), now);
        }
        let survivor = row.id.clone();
        profile::ActiveModel {
            id: Set(row.id),
            attributes: Set(attributes_to_json(&attributes)?),
            attribute_times: Set(Some(times_to_json(times.into_iter()))),
            updated_at: Set(now),
            ..Default::default()
        }
        .update(&transaction)
        .await?;
        transaction.commit().await?;
        let id = parse_id(&survivor)?;
        self.refresh_after_change(id).await;
        self.get(id).await
    }
}
