//! How a customer moves through a journey: the rules that turn a touchpoint
//! or a passed deadline into a transition. Pure functions over a definition
//! and a position, so that the rules are tested without a database and the
//! storage only has to apply what they decide.
//!
//! The rules:
//! - A customer outside the journey enters at the first stage (in order)
//!   whose condition the touchpoint matches, on the latest version, if the
//!   journey is not archived, the entry rule holds and, for a customer who
//!   finished or left before, re-entry is allowed and its wait has passed.
//! - A customer in the journey stays on the version they entered. A
//!   touchpoint matching the exit condition makes them leave. Otherwise they
//!   move to the first stage after the current one whose condition matches,
//!   searching on to the end and then, when the journey loops, from its loop
//!   stage. A touchpoint for the current keyed stage with a new key (a new
//!   cart) starts the stage again.
//! - A touchpoint that happened before the customer's last transition (late
//!   or out of order) is stored on the timeline but moves nobody: positions
//!   only move forward in time.
//! - A stage's time limit passing marks the position abandoned (once); the
//!   customer may still come back by a matching touchpoint. The journey's
//!   inactivity limit passing makes them leave.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::definition::JourneyDefinition;
use super::touchpoint::Touchpoint;

/// Where a customer stands in one journey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JourneyStatus {
    /// In a stage.
    Active,
    /// Reached a completing stage.
    Completed,
    /// Left by the exit rule or for inactivity.
    Exited,
    /// Stayed beyond the stage's limit; may still come back.
    Abandoned,
}

impl JourneyStatus {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Completed => "completed",
            Self::Exited => "exited",
            Self::Abandoned => "abandoned",
        }
    }

    /// From the stored name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "active" => Self::Active,
            "completed" => Self::Completed,
            "exited" => Self::Exited,
            "abandoned" => Self::Abandoned,
            _ => return None,
        })
    }

    /// True while the customer is in a stage of the journey.
    pub fn in_journey(self) -> bool {
        matches!(self, Self::Active | Self::Abandoned)
    }
}

/// A customer's position in one journey.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    /// The journey.
    pub journey_id: String,
    /// The definition version the customer is on.
    pub version: i32,
    /// The current stage; `None` once they completed or left.
    pub stage: Option<String>,
    /// When they entered the current stage (or finished).
    pub stage_entered_at: DateTime<Utc>,
    /// Where they stand.
    pub status: JourneyStatus,
    /// The value of the current stage's key property (a cart id), if any.
    pub key: Option<String>,
    /// When they last moved.
    pub last_transition_at: DateTime<Utc>,
}

/// A move between stages.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The journey.
    pub journey_id: String,
    /// The version the customer is on.
    pub version: i32,
    /// The stage left; `None` on entering.
    pub from: Option<String>,
    /// The stage entered; `None` on leaving.
    pub to: Option<String>,
    /// The touchpoint that caused it, if one did.
    pub touchpoint_id: Option<String>,
    /// When it happened.
    pub at: DateTime<Utc>,
}

/// What a touchpoint or a deadline does to a position.
#[derive(Debug, Clone, PartialEq)]
pub struct Move {
    /// The position afterwards.
    pub position: Position,
    /// The transition, when the stage changed (an abandonment is not one).
    pub transition: Option<Transition>,
    /// Set when the move is a detected abandonment: the stalled stage's key
    /// (its key property's value, or the time the stage was entered).
    pub abandonment_key: Option<String>,
}

/// Values the conditions read: `touchpoint` and `profile`, as JSON.
pub type RuleVariables = serde_json::Map<String, serde_json::Value>;

/// The `touchpoint` variable of conditions.
pub fn touchpoint_variable(touchpoint: &Touchpoint, channel_name: &str) -> serde_json::Value {
    let (kind, custom_type) = match touchpoint.kind.as_str().strip_prefix("custom:") {
        Some(custom) => ("custom", custom),
        None => (touchpoint.kind.as_str(), ""),
    };
    serde_json::json!({
        "id": touchpoint.id,
        "type": kind,
        "custom_type": custom_type,
        "channel": channel_name,
        "properties": touchpoint
            .properties
            .iter()
            .map(|(name, value)| (name.clone(), value.to_rule_value()))
            .collect::<serde_json::Map<_, _>>(),
    })
}

/// True when `rule` holds; a rule that fails on these values (a missing
/// property, a type mismatch) does not hold.
fn holds(rule: &cairn_runtime::rules::Rule, variables: &RuleVariables) -> bool {
    rule.evaluate(variables).unwrap_or(false)
}

fn key_of(definition: &JourneyDefinition, stage: usize, touchpoint: &Touchpoint) -> Option<String> {
    let property = definition.stages[stage].key_property.as_ref()?;
    touchpoint
        .properties
        .get(property)
        .map(|value| match value.to_rule_value() {
            serde_json::Value::String(text) => text,
            other => other.to_string(),
        })
}

/// What `touchpoint` does to a customer's `position` in a journey.
/// `latest` is the journey's latest version (for entering); `own` is the
/// version the position is on (for moving within).
pub fn on_touchpoint(
    latest: &JourneyDefinition,
    own: &JourneyDefinition,
    position: Option<&Position>,
    touchpoint: &Touchpoint,
    variables: &RuleVariables,
) -> Option<Move> {
    let at = touchpoint.occurred_at;
    let transition = |version: i32, from: Option<String>, to: Option<String>| Transition {
        journey_id: latest.id.clone(),
        version,
        from,
        to,
        touchpoint_id: Some(touchpoint.id.clone()),
        at,
    };
    match position {
        Some(current) if current.status.in_journey() => {
            if at < current.last_transition_at {
                return None;
            }
            if let Some(exit) = &own.exit
                && holds(exit, variables)
            {
                return Some(Move {
                    position: Position {
                        stage: None,
                        stage_entered_at: at,
                        status: JourneyStatus::Exited,
                        key: None,
                        last_transition_at: at,
                        ..current.clone()
                    },
                    transition: Some(transition(current.version, current.stage.clone(), None)),
                    abandonment_key: None,
                });
            }
            let current_index = current
                .stage
                .as_deref()
                .and_then(|name| own.stage(name))
                .map(|(index, _)| index)?;
            // A new key for the current keyed stage (a second cart) starts it again.
            if holds(&own.stages[current_index].condition, variables) {
                let key = key_of(own, current_index, touchpoint);
                if key.is_some() && key != current.key {
                    return Some(enter(own, current, current_index, key, at, &transition));
                }
            }
            let after = (current_index + 1)..own.stages.len();
            let looped = own
                .loop_to
                .map(|start| start..current_index)
                .unwrap_or(0..0);
            let next = after
                .chain(looped)
                .find(|&index| holds(&own.stages[index].condition, variables))?;
            let key = key_of(own, next, touchpoint);
            Some(enter(own, current, next, key, at, &transition))
        }
        _ => {
            if latest.archived {
                return None;
            }
            if let Some(finished) = position {
                let wait = chrono::Duration::from_std(latest.reentry.after).ok()?;
                if !latest.reentry.allowed || at < finished.last_transition_at + wait {
                    return None;
                }
            }
            if let Some(entry) = &latest.entry
                && !holds(entry, variables)
            {
                return None;
            }
            let first = (0..latest.stages.len())
                .find(|&index| holds(&latest.stages[index].condition, variables))?;
            let stage = &latest.stages[first];
            let completes = stage.completes_journey;
            Some(Move {
                position: Position {
                    journey_id: latest.id.clone(),
                    version: latest.version,
                    stage: (!completes).then(|| stage.name.clone()),
                    stage_entered_at: at,
                    status: if completes {
                        JourneyStatus::Completed
                    } else {
                        JourneyStatus::Active
                    },
                    key: key_of(latest, first, touchpoint),
                    last_transition_at: at,
                },
                transition: Some(transition(latest.version, None, Some(stage.name.clone()))),
                abandonment_key: None,
            })
        }
    }
}

fn enter(
    own: &JourneyDefinition,
    current: &Position,
    index: usize,
    key: Option<String>,
    at: DateTime<Utc>,
    transition: &dyn Fn(i32, Option<String>, Option<String>) -> Transition,
) -> Move {
    let stage = &own.stages[index];
    let completes = stage.completes_journey;
    Move {
        position: Position {
            stage: (!completes).then(|| stage.name.clone()),
            stage_entered_at: at,
            status: if completes {
                JourneyStatus::Completed
            } else {
                JourneyStatus::Active
            },
            key,
            last_transition_at: at,
            ..current.clone()
        },
        transition: Some(transition(
            current.version,
            current.stage.clone(),
            Some(stage.name.clone()),
        )),
        abandonment_key: None,
    }
}

/// When something happens to `position` by itself: the earlier of the
/// stage's time limit (while active) and the journey's inactivity limit.
pub fn due_at(definition: &JourneyDefinition, position: &Position) -> Option<DateTime<Utc>> {
    if !position.status.in_journey() {
        return None;
    }
    let after = |start: DateTime<Utc>, limit: Duration| {
        chrono::Duration::from_std(limit)
            .ok()
            .and_then(|limit| start.checked_add_signed(limit))
    };
    let stage_limit = (position.status == JourneyStatus::Active)
        .then(|| {
            let (_, stage) = definition.stage(position.stage.as_deref()?)?;
            after(position.stage_entered_at, stage.max_duration?)
        })
        .flatten();
    let inactivity = definition
        .inactivity
        .and_then(|limit| after(position.last_transition_at, limit));
    match (stage_limit, inactivity) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// What the passing of time up to `now` does to `position`: leaving for
/// inactivity wins over abandoning the stage.
pub fn on_deadline(
    definition: &JourneyDefinition,
    position: &Position,
    now: DateTime<Utc>,
) -> Option<Move> {
    if !position.status.in_journey() {
        return None;
    }
    if let Some(limit) = definition.inactivity
        && let Ok(limit) = chrono::Duration::from_std(limit)
        && now >= position.last_transition_at + limit
    {
        return Some(Move {
            position: Position {
                stage: None,
                stage_entered_at: now,
                status: JourneyStatus::Exited,
                key: None,
                last_transition_at: now,
                ..position.clone()
            },
            transition: Some(Transition {
                journey_id: position.journey_id.clone(),
                version: position.version,
                from: position.stage.clone(),
                to: None,
                touchpoint_id: None,
                at: now,
            }),
            abandonment_key: None,
        });
    }
    if position.status != JourneyStatus::Active {
        return None;
    }
    let (_, stage) = definition.stage(position.stage.as_deref()?)?;
    let limit = chrono::Duration::from_std(stage.max_duration?).ok()?;
    if now < position.stage_entered_at + limit {
        return None;
    }
    Some(Move {
        position: Position {
            status: JourneyStatus::Abandoned,
            ..position.clone()
        },
        transition: None,
        abandonment_key: Some(
            position
                .key
                .clone()
                .unwrap_or_else(|| position.stage_entered_at.to_rfc3339()),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::definition::built_in;
    use crate::domain::touchpoint::{Properties, TouchpointKind};
    use cairn_runtime::common::TypedValue;

    fn definition(id: &str) -> JourneyDefinition {
        built_in()
            .into_iter()
            .find(|document| document.journey_id == id)
            .unwrap()
            .compile(1, false, Utc::now())
            .unwrap()
    }

    fn touchpoint(kind: &str, minutes: i64, properties: &[(&str, &str)]) -> Touchpoint {
        Touchpoint {
            id: format!("{kind}-{minutes}"),
            profile_id: uuid::Uuid::nil(),
            channel: 1,
            kind: TouchpointKind::new(kind),
            occurred_at: DateTime::from_timestamp(1_800_000_000 + minutes * 60, 0).unwrap(),
            received_at: Utc::now(),
            properties: properties
                .iter()
                .map(|(name, value)| (name.to_string(), TypedValue::String(value.to_string())))
                .collect::<Properties>(),
        }
    }

    fn step(
        definition: &JourneyDefinition,
        position: Option<&Position>,
        t: &Touchpoint,
    ) -> Option<Move> {
        let mut variables = RuleVariables::new();
        variables.insert("touchpoint".into(), touchpoint_variable(t, "CHANNEL_WEB"));
        variables.insert(
            "profile".into(),
            serde_json::json!({"attributes": {}, "segments": []}),
        );
        on_touchpoint(definition, definition, position, t, &variables)
    }

    #[test]
    fn a_customer_walks_the_guided_journey_and_completes_it() {
        let journey = definition("guided_shopping");
        let entered = step(&journey, None, &touchpoint("product_view", 0, &[])).unwrap();
        assert_eq!(entered.position.stage.as_deref(), Some("choose_product"));
        let cart = step(
            &journey,
            Some(&entered.position),
            &touchpoint("add_to_cart", 5, &[("cart_id", "c1")]),
        )
        .unwrap();
        assert_eq!(cart.position.stage.as_deref(), Some("cart"));
        assert_eq!(cart.position.key.as_deref(), Some("c1"));
        let used = step(&journey, Some(&cart.position), &touchpoint("usage", 9, &[])).unwrap();
        assert_eq!(used.position.status, JourneyStatus::Completed);
        assert_eq!(used.position.stage, None);
        assert_eq!(used.transition.unwrap().to.as_deref(), Some("first_use"));
    }

    #[test]
    fn a_late_touchpoint_moves_nobody() {
        let journey = definition("guided_shopping");
        let entered = step(&journey, None, &touchpoint("add_to_cart", 10, &[])).unwrap();
        assert!(
            step(
                &journey,
                Some(&entered.position),
                &touchpoint("checkout", 5, &[])
            )
            .is_none()
        );
    }

    #[test]
    fn the_loyalty_loop_returns_to_loyalty() {
        let journey = definition("lifecycle");
        let mut position = step(&journey, None, &touchpoint("purchase", 0, &[]))
            .unwrap()
            .position;
        assert_eq!(position.stage.as_deref(), Some("purchase"));
        for (kind, minutes, expected) in [
            ("usage", 1, "loyalty"),
            ("purchase", 2, "buy_again"),
            ("usage", 3, "loyalty"),
        ] {
            position = step(&journey, Some(&position), &touchpoint(kind, minutes, &[]))
                .unwrap()
                .position;
            assert_eq!(position.stage.as_deref(), Some(expected));
        }
    }

    #[test]
    fn a_stalled_stage_is_abandoned_once_keyed_on_its_cart() {
        let journey = definition("guided_shopping");
        let cart = step(
            &journey,
            None,
            &touchpoint("add_to_cart", 0, &[("cart_id", "c9")]),
        )
        .unwrap();
        let due = due_at(&journey, &cart.position).unwrap();
        assert_eq!(
            due - cart.position.stage_entered_at,
            chrono::Duration::hours(2)
        );
        assert!(
            on_deadline(&journey, &cart.position, due - chrono::Duration::seconds(1)).is_none()
        );
        let abandoned = on_deadline(&journey, &cart.position, due).unwrap();
        assert_eq!(abandoned.position.status, JourneyStatus::Abandoned);
        assert_eq!(abandoned.abandonment_key.as_deref(), Some("c9"));
        // Abandoned once: the stage limit no longer applies, only inactivity.
        assert!(due_at(&journey, &abandoned.position).unwrap() > due);
        assert!(
            on_deadline(
                &journey,
                &abandoned.position,
                due + chrono::Duration::hours(1)
            )
            .is_none()
        );
    }
}
