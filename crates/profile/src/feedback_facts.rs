//! What customers say becomes what the profile knows: the feedback
//! service's events are recorded as reported facts, so that dynamic
//! segments ("promoters", "open complainers") and through them the
//! recommendation service's eligibility rules can act on feedback, for
//! example a referral offer only for promoters.
//!
//! Facts written: `last_nps` (0-10), `nps_category` ("promoter", "passive",
//! "detractor"), `last_csat`, `last_effort`, and `open_complaint` (true while
//! the customer has an open complaint ticket).

use cairn_contract::events::v1::ChangeEvent;
use cairn_contract::events::v1::change_event::Payload;
use cairn_runtime::bus::EventHandler;
use cairn_runtime::common::TypedValue;
use cairn_runtime::{Error, Result};
use uuid::Uuid;

use crate::domain::Attributes;
use crate::storage::ProfileStore;

/// Records feedback events as facts of the profile.
pub struct FeedbackFacts {
    store: ProfileStore,
}

impl FeedbackFacts {
    /// Records into `store`.
    pub fn new(store: ProfileStore) -> Self {
        Self { store }
    }
}

/// The facts an event carries, if any.
fn facts_of(event: &ChangeEvent) -> Attributes {
    let mut facts = Attributes::new();
    match &event.payload {
        Some(Payload::SurveyAnswered(answered)) => {
            for (name, score) in [
                ("last_nps", answered.nps_score),
                ("last_csat", answered.csat_score),
                ("last_effort", answered.effort_score),
            ] {
                if score >= 0 {
                    facts.insert(name.into(), TypedValue::Number(f64::from(score)));
                }
            }
            if !answered.nps_category.is_empty() {
                facts.insert(
                    "nps_category".into(),
                    TypedValue::String(answered.nps_category.clone()),
                );
            }
        }
        Some(Payload::TicketChanged(changed)) => {
            facts.insert(
                "open_complaint".into(),
                TypedValue::Bool(changed.open_complaint),
            );
        }
        _ => {}
    }
    facts
}

#[async_trait::async_trait]
impl EventHandler for FeedbackFacts {
    fn topics(&self) -> Vec<String> {
        vec![
            "feedback.survey_answered".into(),
            "feedback.ticket_changed".into(),
        ]
    }

    async fn handle(&self, event: &ChangeEvent) -> Result<()> {
        let facts = facts_of(event);
        if facts.is_empty() {
            return Ok(());
        }
        let Ok(profile_id) = Uuid::parse_str(&event.profile_id) else {
            return Ok(());
        };
        match self.store.report_facts(profile_id, &facts).await {
            // The person was erased since: nothing to keep.
            Err(Error::NotFound { .. }) => Ok(()),
            outcome => outcome.map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_contract::events::v1::SurveyAnswered;

    #[test]
    fn a_promoter_answer_becomes_facts_and_missing_scores_do_not() {
        let event = ChangeEvent {
            payload: Some(Payload::SurveyAnswered(SurveyAnswered {
                nps_score: 10,
                csat_score: -1,
                effort_score: -1,
                nps_category: "promoter".into(),
                ..Default::default()
            })),
            ..Default::default()
        };
        let facts = facts_of(&event);
        assert_eq!(facts.get("last_nps"), Some(&TypedValue::Number(10.0)));
        assert_eq!(
            facts.get("nps_category"),
            Some(&TypedValue::String("promoter".into()))
        );
        assert!(!facts.contains_key("last_csat"));
    }
}
