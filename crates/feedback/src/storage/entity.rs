//! The feedback service's tables as sea-orm entities (the migrations own
//! their definitions; these only read and write them).

macro_rules! no_relations {
    () => {
        /// No relations are navigated through the ORM.
        #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
        pub enum Relation {}

        impl ActiveModelBehavior for ActiveModel {}
    };
}

/// `feedback_surveys` rows.
pub mod survey {
    use sea_orm::entity::prelude::*;

    /// A survey definition.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "feedback_surveys")]
    pub struct Model {
        /// Its id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// A name for people.
        pub display_name: String,
        /// Questions, triggers and the follow-up delay.
        pub definition: Json,
        /// The invitation channel.
        pub channel: i32,
        /// The consent purpose of invitations.
        pub consent_purpose: String,
        /// The once-per-period rule's period.
        pub minimum_period_seconds: i64,
        /// Whether the period counts every survey.
        pub global_period: bool,
        /// Whether it takes no more answers.
        pub closed: bool,
        /// The creating request's idempotency key.
        pub request_id: Option<String>,
        /// When it was created.
        pub create_time: DateTimeUtc,
        /// When it last changed.
        pub update_time: DateTimeUtc,
    }

    no_relations!();
}

/// `feedback_invitations` rows: every decision, made or refused.
pub mod invitation {
    use sea_orm::entity::prelude::*;

    /// One invitation decision.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "feedback_invitations")]
    pub struct Model {
        /// Its id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The survey.
        pub survey_id: String,
        /// The customer.
        pub profile_id: String,
        /// The triggering touchpoint, or empty.
        pub touchpoint_id: String,
        /// The idempotency key.
        pub request_key: String,
        /// Whether an invitation was made.
        pub invited: bool,
        /// Why not (the contract's enum number).
        pub refusal: i32,
        /// Why not, in words.
        pub refusal_detail: String,
        /// The language to ask in.
        pub language: String,
        /// When it was decided.
        pub create_time: DateTimeUtc,
    }

    no_relations!();
}

/// `feedback_responses` rows.
pub mod response {
    use sea_orm::entity::prelude::*;

    /// A customer's answers to a survey.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "feedback_responses")]
    pub struct Model {
        /// Its id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The survey.
        pub survey_id: String,
        /// The customer.
        pub profile_id: String,
        /// The channel answered on.
        pub channel: i32,
        /// The invitation answered, if any.
        pub invitation_id: Option<String>,
        /// The answers as JSON.
        pub answers: Json,
        /// The NPS answer.
        pub nps: Option<i32>,
        /// The CSAT answer.
        pub csat: Option<i32>,
        /// The effort answer.
        pub effort: Option<i32>,
        /// Segment ids at answer time, as a JSON list.
        pub segments: Json,
        /// The journey stage at answer time.
        pub journey_stage: String,
        /// The idempotency key.
        pub request_id: String,
        /// When it was submitted.
        pub submit_time: DateTimeUtc,
    }

    no_relations!();
}

/// `feedback_comments` rows.
pub mod comment {
    use sea_orm::entity::prelude::*;

    /// A free-text comment.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "feedback_comments")]
    pub struct Model {
        /// Its id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The writer, when known.
        pub profile_id: Option<String>,
        /// Where it came from (enum number).
        pub source: i32,
        /// The channel (enum number).
        pub channel: i32,
        /// The text.
        pub text: String,
        /// A 1-5 rating, 0 for none.
        pub rating: i32,
        /// Its language.
        pub language: String,
        /// Its themes as a JSON list.
        pub themes: Json,
        /// The survey response it came with, if any.
        pub response_id: Option<String>,
        /// The idempotency key.
        pub request_id: Option<String>,
        /// When it was written.
        pub write_time: DateTimeUtc,
    }

    no_relations!();
}

/// `feedback_comment_themes` rows: one per comment and theme, for trends.
pub mod comment_theme {
    use sea_orm::entity::prelude::*;

    /// A theme of a comment.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "feedback_comment_themes")]
    pub struct Model {
        /// The comment.
        #[sea_orm(primary_key, auto_increment = false)]
        pub comment_id: String,
        /// The theme.
        #[sea_orm(primary_key, auto_increment = false)]
        pub theme: String,
        /// The comment's language.
        pub language: String,
        /// When the comment was written.
        pub write_time: DateTimeUtc,
    }

    no_relations!();
}

/// `feedback_tickets` rows.
pub mod ticket {
    use sea_orm::entity::prelude::*;

    /// A support case.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "feedback_tickets")]
    pub struct Model {
        /// Cairn's id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The external system's id.
        pub external_id: Option<String>,
        /// The creating request's idempotency key.
        pub request_id: Option<String>,
        /// The customer.
        pub profile_id: String,
        /// The opening channel.
        pub channel: i32,
        /// The category.
        pub category: String,
        /// The priority (enum number; 0 is read as normal).
        pub priority: i32,
        /// TMF621 severity.
        pub severity: String,
        /// A short description.
        pub description: String,
        /// Whether it is a complaint.
        pub complaint: bool,
        /// The status (enum number).
        pub status: i32,
        /// The case's language.
        pub language: String,
        /// When it is due.
        pub due_time: Option<DateTimeUtc>,
        /// The agent working on it.
        pub assignee: String,
        /// Segment ids at opening, as a JSON list.
        pub segments: Json,
        /// Contacts from the customer, on any channel.
        pub inbound_contacts: i32,
        /// Whether it was ever reopened after a resolution.
        pub reopened: bool,
        /// The recommendation decision a complaint is about, or empty.
        pub decision_id: String,
        /// The action of that decision, or empty.
        pub action_id: String,
        /// The first outbound contact.
        pub first_response_time: Option<DateTimeUtc>,
        /// The last resolution.
        pub resolve_time: Option<DateTimeUtc>,
        /// When it was opened.
        pub create_time: DateTimeUtc,
        /// When it last changed.
        pub update_time: DateTimeUtc,
    }

    no_relations!();
}

/// `feedback_ticket_contacts` rows.
pub mod ticket_contact {
    use sea_orm::entity::prelude::*;

    /// One contact of a ticket.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "feedback_ticket_contacts")]
    pub struct Model {
        /// Its row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The ticket.
        pub ticket_id: String,
        /// The channel.
        pub channel: i32,
        /// Who handled it.
        pub handled_by: String,
        /// When.
        pub contact_time: DateTimeUtc,
        /// A note.
        pub note: String,
        /// Whether it came from the operator.
        pub outbound: bool,
    }

    no_relations!();
}

/// `feedback_ticket_history` rows.
pub mod ticket_history {
    use sea_orm::entity::prelude::*;

    /// One status change.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "feedback_ticket_history")]
    pub struct Model {
        /// Its row id.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// The ticket.
        pub ticket_id: String,
        /// The new status.
        pub status: i32,
        /// When.
        pub change_time: DateTimeUtc,
        /// Why.
        pub reason: String,
    }

    no_relations!();
}

/// `feedback_ticket_skills` rows.
pub mod ticket_skill {
    use sea_orm::entity::prelude::*;

    /// A skill a ticket needs.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "feedback_ticket_skills")]
    pub struct Model {
        /// The ticket.
        #[sea_orm(primary_key, auto_increment = false)]
        pub ticket_id: String,
        /// The skill.
        #[sea_orm(primary_key, auto_increment = false)]
        pub skill: String,
    }

    no_relations!();
}

/// `feedback_follow_ups` rows.
pub mod follow_up {
    use sea_orm::entity::prelude::*;

    /// A follow-up task.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "feedback_follow_ups")]
    pub struct Model {
        /// Its id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The customer.
        pub profile_id: String,
        /// The response that created it.
        pub response_id: String,
        /// Why.
        pub reason: String,
        /// When it is due.
        pub due_time: DateTimeUtc,
        /// Who it is assigned to.
        pub assignee: String,
        /// The answer given.
        pub answer: String,
        /// "open", "answered" or "closed".
        pub status: String,
        /// When it was created.
        pub create_time: DateTimeUtc,
        /// When it last changed.
        pub update_time: DateTimeUtc,
    }

    no_relations!();
}

/// `feedback_churn` rows.
pub mod churn {
    use sea_orm::entity::prelude::*;

    /// A customer who left.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "feedback_churn")]
    pub struct Model {
        /// Its id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The customer.
        pub profile_id: String,
        /// Why.
        pub reason: String,
        /// "record" (RecordChurn) or "exit_survey".
        pub source: String,
        /// The idempotency key.
        pub request_id: Option<String>,
        /// When.
        pub churn_time: DateTimeUtc,
    }

    no_relations!();
}

/// `feedback_feature_requests` rows.
pub mod feature_request {
    use sea_orm::entity::prelude::*;

    /// A feature request.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "feedback_feature_requests")]
    pub struct Model {
        /// Its id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        /// The first wording.
        pub text: String,
        /// Its language.
        pub language: String,
        /// What requests are compared on.
        pub signature: Json,
        /// How many asked.
        pub votes: i64,
        /// When first asked.
        pub create_time: DateTimeUtc,
    }

    no_relations!();
}

/// `feedback_feature_votes` rows.
pub mod feature_vote {
    use sea_orm::entity::prelude::*;

    /// One customer's vote.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "feedback_feature_votes")]
    pub struct Model {
        /// The request.
        #[sea_orm(primary_key, auto_increment = false)]
        pub feature_request_id: String,
        /// The voter.
        #[sea_orm(primary_key, auto_increment = false)]
        pub voter: String,
        /// When.
        pub vote_time: DateTimeUtc,
    }

    no_relations!();
}

/// `feedback_journey_stages` rows: the last stage heard per customer.
pub mod journey_stage {
    use sea_orm::entity::prelude::*;

    /// A customer's current stage.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "feedback_journey_stages")]
    pub struct Model {
        /// The customer.
        #[sea_orm(primary_key, auto_increment = false)]
        pub profile_id: String,
        /// The stage.
        pub stage: String,
        /// When it was heard.
        pub update_time: DateTimeUtc,
    }

    no_relations!();
}
