//! The sea-orm entities of the service's tables (see the migration for
//! what each holds).

macro_rules! no_relations {
    () => {
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    };
}

pub mod action {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "recommendation_actions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub action_id: String,
        pub kind: String,
        pub state: String,
        pub channels: Json,
        pub body: Json,
        pub create_time: DateTimeUtc,
        pub version: i64,
    }

    no_relations!();
}

pub mod contact_policy {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "recommendation_contact_policy")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub body: Json,
        pub version: i64,
    }

    no_relations!();
}

pub mod policy {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "recommendation_policies")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub policy_id: String,
        pub display_name: String,
        pub description: String,
        pub scorer: Json,
        pub state: String,
        pub create_time: DateTimeUtc,
        pub promote_time: Option<DateTimeUtc>,
        pub retire_time: Option<DateTimeUtc>,
    }

    no_relations!();
}

pub mod decision {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "recommendation_decisions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub decision_id: String,
        pub request_id: Option<String>,
        pub profile_id: String,
        pub customer_id: String,
        pub channel: i32,
        pub policy_id: String,
        pub no_action_reason: i32,
        pub context: Json,
        pub features: Json,
        pub candidates: Json,
        pub shadow_choices: Json,
        pub decide_time: DateTimeUtc,
        pub expire_time: DateTimeUtc,
    }

    no_relations!();
}

pub mod decision_action {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "recommendation_decision_actions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub decision_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub action_id: String,
        pub rank: i32,
        pub customer_id: String,
        pub policy_id: String,
        pub latest_outcome: i32,
        #[sea_orm(column_name = "final")]
        pub is_final: bool,
        pub propensity: f64,
        pub chosen: Json,
        pub decide_time: DateTimeUtc,
        pub expire_time: DateTimeUtc,
    }

    no_relations!();
}

pub mod outcome {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "recommendation_outcomes")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub decision_id: String,
        pub action_id: String,
        pub outcome: i32,
        pub channel: i32,
        pub source: i32,
        pub occur_time: DateTimeUtc,
        pub record_time: DateTimeUtc,
    }

    no_relations!();
}

pub mod learning_event {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "recommendation_learning_events")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub action_id: String,
        pub group_key: String,
        pub features: Json,
        pub reward: f64,
    }

    no_relations!();
}

pub mod model_statistics {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "recommendation_model_statistics")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub model_key: String,
        pub group_key: String,
        pub version: i64,
        pub dimension: i32,
        pub gram: Vec<u8>,
        pub response: Vec<u8>,
        pub outcomes: i64,
        pub accepted: i64,
    }

    no_relations!();
}

pub mod model {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "recommendation_model")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: i32,
        pub version: i64,
        pub features: Json,
        pub outcomes_learned: i64,
        pub update_time: Option<DateTimeUtc>,
    }

    no_relations!();
}

pub mod version {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "recommendation_versions")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        pub version: i64,
    }

    no_relations!();
}

pub mod complaint {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "recommendation_complaints")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub profile_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub ticket_id: String,
        pub open: bool,
        pub close_time: Option<DateTimeUtc>,
    }

    no_relations!();
}

pub mod journey_stage {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "recommendation_journey_stages")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub profile_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub journey_id: String,
        pub stage: String,
        pub update_time: DateTimeUtc,
    }

    no_relations!();
}

pub mod idempotency {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "recommendation_idempotency")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub request_key: String,
        pub fingerprint: String,
        pub response: Vec<u8>,
        pub profile_id: String,
        pub create_time: DateTimeUtc,
    }

    no_relations!();
}
