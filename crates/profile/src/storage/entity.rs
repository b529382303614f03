//! The rows of the profile service's tables, as sea-orm entities.

/// `profile_profiles`: one row per profile.
pub mod profile {
    use sea_orm::entity::prelude::*;

    /// A profile row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "profile_profiles")]
    pub struct Model {
        /// The profile id (UUID text).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// "anonymous" or "known".
        pub state: String,
        /// Attributes as JSON (`{"name": {"string": "x"}}`).
        pub attributes: Json,
        /// Creation time.
        pub created_at: DateTimeUtc,
        /// Last change.
        pub updated_at: DateTimeUtc,
        /// The survivor this profile was merged into, if it was.
        pub merged_into: Option<String>,
        /// When each attribute was last observed (`{"plan": "2026-…"}`).
        pub attribute_times: Option<Json>,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `profile_identifiers`: every identifier a profile holds or held.
pub mod identifier {
    use sea_orm::entity::prelude::*;

    /// An identifier row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "profile_identifiers")]
    pub struct Model {
        /// Row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The owning profile.
        pub profile_id: String,
        /// The kind's stored name.
        pub kind: String,
        /// The normalised value.
        pub value: String,
        /// Shared by several people.
        pub shared: bool,
        /// Held since.
        pub valid_from: DateTimeUtc,
        /// Held until (released), or null.
        pub valid_until: Option<DateTimeUtc>,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `profile_requests`: idempotency keys of CreateProfile.
pub mod request {
    use sea_orm::entity::prelude::*;

    /// A request row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "profile_requests")]
    pub struct Model {
        /// The caller's key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_id: String,
        /// The profile the first call created.
        pub profile_id: String,
        /// When.
        pub created_at: DateTimeUtc,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `profile_erasures`: erasure requests, received and completed.
pub mod erasure {
    use sea_orm::entity::prelude::*;

    /// An erasure row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "profile_erasures")]
    pub struct Model {
        /// The request id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Keyed hash of the erased profile's id (never the id: after an
        /// erasure no table holds it); with the key, an auditor can match a
        /// known id against it.
        pub profile_hash: String,
        /// When the request arrived.
        pub received_at: DateTimeUtc,
        /// When this service finished erasing.
        pub completed_at: Option<DateTimeUtc>,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `profile_merges`: the reversible merge log.
pub mod merge {
    use sea_orm::entity::prelude::*;

    /// A merge row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "profile_merges")]
    pub struct Model {
        /// The merge id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The profile that survived.
        pub survivor_id: String,
        /// The profile merged into it.
        pub merged_id: String,
        /// Why ("explicit", "identify", ...).
        pub reason: String,
        /// When.
        pub created_at: DateTimeUtc,
        /// What the merge moved, for undoing it.
        pub snapshot: Json,
        /// When it was undone, if it was.
        pub undone_at: Option<DateTimeUtc>,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `profile_suppressions`: keyed hashes of erased people's identifiers.
pub mod suppression {
    use sea_orm::entity::prelude::*;

    /// A suppression row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "profile_suppressions")]
    pub struct Model {
        /// HMAC-SHA256 of the identifier's kind and value, hex.
        #[sea_orm(primary_key, auto_increment = false)]
        pub identifier_hash: String,
        /// The erasure that left it.
        pub erasure_id: String,
        /// When.
        pub created_at: DateTimeUtc,
        /// When the operator lifted it, if they did.
        pub lifted_at: Option<DateTimeUtc>,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `profile_consents`: every consent answer, newest in force.
pub mod consent {
    use sea_orm::entity::prelude::*;

    /// A consent row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "profile_consents")]
    pub struct Model {
        /// Row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The profile.
        pub profile_id: String,
        /// The purpose.
        pub purpose: String,
        /// The channel's enum number.
        pub channel: i32,
        /// Yes or no.
        pub granted: bool,
        /// Where it was given.
        pub source: String,
        /// When.
        pub recorded_at: DateTimeUtc,
        /// When a yes lapses.
        pub expires_at: Option<DateTimeUtc>,
        /// The merge that wrote it, for answers a merge derived.
        pub merge_id: Option<String>,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `profile_preferences`: one row per profile that stated any.
pub mod preference {
    use sea_orm::entity::prelude::*;

    /// A preferences row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "profile_preferences")]
    pub struct Model {
        /// The profile.
        #[sea_orm(primary_key, auto_increment = false)]
        pub profile_id: String,
        /// BCP 47 language tag.
        pub language: Option<String>,
        /// Preferred channel's enum number.
        pub preferred_channel: Option<i32>,
        /// IANA time zone.
        pub time_zone: Option<String>,
        /// Quiet hours start, "HH:MM" local.
        pub quiet_start: Option<String>,
        /// Quiet hours end, "HH:MM" local.
        pub quiet_end: Option<String>,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `profile_attribute_definitions`: registered attributes.
pub mod attribute_definition {
    use sea_orm::entity::prelude::*;

    /// A definition row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "profile_attribute_definitions")]
    pub struct Model {
        /// The attribute's name.
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        /// "string", "number", "bool", "timestamp" or "list".
        pub value_type: String,
        /// What it means.
        pub description: String,
        /// Whether values are personal data.
        pub personal_data: bool,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `profile_import_records`: import record ids already applied.
pub mod import_record {
    use sea_orm::entity::prelude::*;

    /// An import record row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "profile_import_records")]
    pub struct Model {
        /// The source system's record id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub record_id: String,
        /// The profile it went to.
        pub profile_id: String,
        /// When.
        pub imported_at: DateTimeUtc,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `profile_audit_log`: who read, exported or erased whose personal data, and when.
pub mod audit {
    use sea_orm::entity::prelude::*;

    /// One access to personal data.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "profile_audit_log")]
    pub struct Model {
        /// The entry's id (UUID v7, so ids sort by time).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// When.
        pub occurred_at: DateTimeUtc,
        /// Who: the token's subject.
        pub subject: String,
        /// The keyed hash of the customer a customer-facing token acted for.
        pub acting_for: Option<String>,
        /// What: the RPC, for example "get_profile".
        pub action: String,
        /// Whose: the keyed hash of the person's profile id; none for a list.
        pub person_hash: Option<String>,
        /// How many profiles the access returned.
        pub records: i32,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `profile_exports`: export requests and their times.
pub mod export {
    use sea_orm::entity::prelude::*;

    /// An export row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "profile_exports")]
    pub struct Model {
        /// The request id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The exported profile.
        pub profile_id: String,
        /// When the request arrived.
        pub received_at: DateTimeUtc,
        /// When the export was produced.
        pub completed_at: Option<DateTimeUtc>,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `profile_segments`: segment definitions.
pub mod segment {
    use sea_orm::entity::prelude::*;

    /// A segment row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "profile_segments")]
    pub struct Model {
        /// The segment id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// A name for people.
        pub display_name: String,
        /// What it is for.
        pub description: String,
        /// The CEL rule of a dynamic segment; null for a static one.
        pub rule: Option<String>,
        /// When it was created.
        pub created_at: DateTimeUtc,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `profile_segment_members`: who is in which segment.
pub mod segment_member {
    use sea_orm::entity::prelude::*;

    /// A membership row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "profile_segment_members")]
    pub struct Model {
        /// The segment.
        #[sea_orm(primary_key, auto_increment = false)]
        pub segment_id: String,
        /// The member.
        #[sea_orm(primary_key, auto_increment = false)]
        pub profile_id: String,
        /// Since when.
        pub joined_at: DateTimeUtc,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `profile_facts`: facts other services report about a profile.
pub mod fact {
    use sea_orm::entity::prelude::*;

    /// A facts row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "profile_facts")]
    pub struct Model {
        /// The profile.
        #[sea_orm(primary_key, auto_increment = false)]
        pub profile_id: String,
        /// Facts by name, as typed values.
        pub facts: Json,
        /// Last change.
        pub updated_at: DateTimeUtc,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `profile_groups`.
pub mod group {
    use sea_orm::entity::prelude::*;

    /// A group row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "profile_groups")]
    pub struct Model {
        /// The group id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// "household", "family" or "company".
        pub group_type: String,
        /// A name for people.
        pub display_name: String,
        /// When it was created.
        pub created_at: DateTimeUtc,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `profile_group_members`.
pub mod group_member {
    use sea_orm::entity::prelude::*;

    /// A membership row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "profile_group_members")]
    pub struct Model {
        /// The group.
        #[sea_orm(primary_key, auto_increment = false)]
        pub group_id: String,
        /// The member.
        #[sea_orm(primary_key, auto_increment = false)]
        pub profile_id: String,
        /// "owner", "payer" or "member".
        pub role: String,
        /// Since when.
        pub joined_at: DateTimeUtc,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// `profile_referrals`.
pub mod referral {
    use sea_orm::entity::prelude::*;

    /// A referral row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "profile_referrals")]
    pub struct Model {
        /// The referral id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// Who referred.
        pub referrer_id: String,
        /// Who was referred.
        pub referred_id: String,
        /// When.
        pub referred_at: DateTimeUtc,
        /// "pending", "joined", "rewarded" or "lapsed".
        pub outcome: String,
    }

    /// No relations are navigated through the ORM.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
