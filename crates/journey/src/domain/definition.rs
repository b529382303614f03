//! Journey definitions: named journeys with ordered stages, each entered
//! when a touchpoint matches its condition.
//!
//! A definition exists in two forms. The [`DefinitionDocument`] is what
//! people write (a TOML file in the operator's repository, applied with
//! `cairn journeys apply`) and what the database keeps for every version;
//! the [`JourneyDefinition`] is the checked, compiled form the service runs.
//! [`DefinitionDocument::compile`] is the only way from one to the other, so
//! a definition that runs is always one that was validated.

use std::time::Duration;

use cairn_runtime::rules::Rule;
use cairn_runtime::{Error, Result, Violations};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Most stages in one journey.
pub const MAX_STAGES: usize = 64;
/// Longest journey id.
pub const MAX_JOURNEY_ID_BYTES: usize = 64;
/// Variables a stage or exit condition may read.
pub const TOUCHPOINT_VARIABLES: &[&str] = &["touchpoint", "profile"];
/// Variables an entry condition may read.
pub const ENTRY_VARIABLES: &[&str] = &["profile"];

/// A journey definition as people write it and as each version is stored.
/// Durations are written the human way: `"30m"`, `"2h"`, `"7d"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefinitionDocument {
    /// Lower-case letters, digits, '_' and '-'.
    pub journey_id: String,
    /// A name for people.
    #[serde(default)]
    pub display_name: String,
    /// What the journey is for.
    #[serde(default)]
    pub description: String,
    /// Who may enter.
    #[serde(default)]
    pub entry: EntryDocument,
    /// Whether a customer who finished or left may start again.
    #[serde(default)]
    pub reentry: ReentryDocument,
    /// When a customer leaves without completing.
    #[serde(default)]
    pub exit: ExitDocument,
    /// The stages, in order.
    #[serde(default)]
    pub stages: Vec<StageDocument>,
    /// The stage the search for a customer's next stage wraps to after the
    /// last one (the loyalty loop); empty means the journey has no loop.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub loop_to_stage: String,
}

/// Who may enter, as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryDocument {
    /// A CEL condition over `profile`; empty means everyone.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub condition: String,
}

/// Re-entry, as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReentryDocument {
    /// True when a customer who completed or left may enter again.
    #[serde(default)]
    pub allowed: bool,
    /// How long after leaving, for example `"30d"`; empty means at once.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub after: String,
}

/// The exit rule, as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExitDocument {
    /// A CEL condition over the touchpoint that makes the customer leave.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub condition: String,
    /// Leave after this long without a transition; empty means never.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub inactivity: String,
}

/// One stage, as written.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageDocument {
    /// Unique in the journey.
    pub name: String,
    /// A CEL condition over `touchpoint` and `profile`.
    pub condition: String,
    /// The longest expected stay; beyond it the customer abandoned here.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub max_duration: String,
    /// The touchpoint property the stage is about (a cart or an order id).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key_property: String,
    /// True when entering this stage completes the journey.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub completes_journey: bool,
}

/// A checked and compiled journey definition of one version.
#[derive(Debug, Clone)]
pub struct JourneyDefinition {
    /// The journey's id.
    pub id: String,
    /// Its version, from 1.
    pub version: i32,
    /// The stages, in order.
    pub stages: Vec<Stage>,
    /// Who may enter; `None` means everyone.
    pub entry: Option<Rule>,
    /// Whether and when a customer may enter again.
    pub reentry: Reentry,
    /// A touchpoint condition that makes the customer leave.
    pub exit: Option<Rule>,
    /// Leave after this long without a transition.
    pub inactivity: Option<Duration>,
    /// Where the search for the next stage wraps to after the last stage.
    pub loop_to: Option<usize>,
    /// Nobody enters an archived journey.
    pub archived: bool,
    /// The document it was compiled from.
    pub document: DefinitionDocument,
    /// When this version was written.
    pub updated_at: DateTime<Utc>,
}

/// Whether a customer who finished or left may start again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reentry {
    /// May they at all.
    pub allowed: bool,
    /// How long after leaving.
    pub after: Duration,
}

/// One compiled stage.
#[derive(Debug, Clone)]
pub struct Stage {
    /// Unique in the journey.
    pub name: String,
    /// What moves a customer into it.
    pub condition: Rule,
    /// The longest expected stay.
    pub max_duration: Option<Duration>,
    /// The touchpoint property the stage is about.
    pub key_property: Option<String>,
    /// True when entering it completes the journey.
    pub completes_journey: bool,
}

impl JourneyDefinition {
    /// True when any of its rules reads the customer's profile, so the
    /// profile must be fetched before touchpoints are matched.
    pub fn reads_profile(&self) -> bool {
        self.entry.is_some()
            || self.exit.as_ref().is_some_and(|rule| rule.uses("profile"))
            || self
                .stages
                .iter()
                .any(|stage| stage.condition.uses("profile"))
    }

    /// The stage named `name`, with its position.
    pub fn stage(&self, name: &str) -> Option<(usize, &Stage)> {
        self.stages
            .iter()
            .enumerate()
            .find(|(_, stage)| stage.name == name)
    }
}

impl DefinitionDocument {
    /// Reads a document from TOML (a journeys-as-code file); errors name the
    /// line and the key.
    pub fn from_toml(text: &str) -> std::result::Result<Self, String> {
        toml::from_str(text).map_err(|error| error.to_string())
    }

    /// Checks every part and compiles the rules; every problem is reported
    /// at once, each on the field path the contract uses (`stages[2].condition`).
    pub fn compile(
        &self,
        version: i32,
        archived: bool,
        updated_at: DateTime<Utc>,
    ) -> Result<JourneyDefinition> {
        let mut violations = Violations::new();
        violations.check(check_journey_id(&self.journey_id));
        let entry = (!self.entry.condition.trim().is_empty())
            .then(|| {
                violations.check(Rule::compile(
                    "entry.condition",
                    &self.entry.condition,
                    ENTRY_VARIABLES,
                ))
            })
            .flatten();
        let reentry_after = violations
            .check(duration("reentry.after", &self.reentry.after))
            .flatten()
            .unwrap_or_default();
        if !self.reentry.allowed && !self.reentry.after.is_empty() {
            violations.add(
                "reentry.after",
                "set only when reentry.allowed is true; a customer who may not re-enter has no waiting time",
            );
        }
        let exit = (!self.exit.condition.trim().is_empty())
            .then(|| {
                violations.check(Rule::compile(
                    "exit.condition",
                    &self.exit.condition,
                    TOUCHPOINT_VARIABLES,
                ))
            })
            .flatten();
        let inactivity = violations
            .check(duration("exit.inactivity", &self.exit.inactivity))
            .flatten();
        if self.stages.is_empty() {
            violations.add("stages", "at least one stage");
        } else if self.stages.len() > MAX_STAGES {
            violations.add("stages", format!("at most {MAX_STAGES} stages"));
        }
        let mut stages = Vec::with_capacity(self.stages.len());
        for (index, stage) in self.stages.iter().enumerate() {
            let field = format!("stages[{index}]");
            if let Err(error) =
                cairn_runtime::common::check_name(&format!("{field}.name"), &stage.name)
            {
                violations.check::<()>(Err(error));
            } else if self.stages[..index]
                .iter()
                .any(|earlier| earlier.name == stage.name)
            {
                violations.add(
                    format!("{field}.name"),
                    format!(
                        "\"{}\" is used by an earlier stage; names are unique in a journey",
                        stage.name
                    ),
                );
            }
            let condition = violations.check(Rule::compile(
                &format!("{field}.condition"),
                &stage.condition,
                TOUCHPOINT_VARIABLES,
            ));
            let max_duration = violations
                .check(duration(
                    &format!("{field}.max_duration"),
                    &stage.max_duration,
                ))
                .flatten();
            if !stage.key_property.is_empty() {
                violations.check(cairn_runtime::common::check_name(
                    &format!("{field}.key_property"),
                    &stage.key_property,
                ));
            }
            if let Some(condition) = condition {
                stages.push(Stage {
                    name: stage.name.clone(),
                    condition,
                    max_duration,
                    key_property: (!stage.key_property.is_empty())
                        .then(|| stage.key_property.clone()),
                    completes_journey: stage.completes_journey,
                });
            }
        }
        let loop_to = if self.loop_to_stage.is_empty() {
            None
        } else {
            let position = self
                .stages
                .iter()
                .position(|stage| stage.name == self.loop_to_stage);
            if position.is_none() {
                violations.add(
                    "loop_to_stage",
                    format!(
                        "\"{}\" is not one of the journey's stages",
                        self.loop_to_stage
                    ),
                );
            }
            position
        };
        violations.finish()?;
        Ok(JourneyDefinition {
            loop_to,
            id: self.journey_id.clone(),
            version,
            stages,
            entry,
            reentry: Reentry {
                allowed: self.reentry.allowed,
                after: reentry_after,
            },
            exit,
            inactivity,
            archived,
            document: self.clone(),
            updated_at,
        })
    }
}

/// Checks a journey id named `journey_id`.
pub fn check_journey_id(id: &str) -> Result<()> {
    let valid = !id.is_empty()
        && id.len() <= MAX_JOURNEY_ID_BYTES
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if valid {
        Ok(())
    } else {
        Err(Error::invalid(
            "journey_id",
            format!(
                "required: lower-case letters, digits, '_' and '-', at most {MAX_JOURNEY_ID_BYTES} bytes"
            ),
        ))
    }
}

/// A human duration (`"90s"`, `"2h"`, `"7d"`) named `field`; empty is `None`.
fn duration(field: &str, text: &str) -> Result<Option<Duration>> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    match humantime::parse_duration(text.trim()) {
        Ok(value) if value.is_zero() => Err(Error::invalid(field, "must be longer than zero")),
        Ok(value) => Ok(Some(value)),
        Err(error) => Err(Error::invalid(
            field,
            format!("\"{text}\" is not a duration such as \"90s\", \"2h\" or \"7d\": {error}"),
        )),
    }
}

/// The human form of a duration, as documents write it.
pub fn format_duration(value: Duration) -> String {
    humantime::format_duration(value).to_string()
}

/// The definitions every installation starts with: the lifecycle spiral and
/// the guided shopping journey. Operators change them like any other.
pub fn built_in() -> Vec<DefinitionDocument> {
    [
        include_str!("../../journeys/lifecycle.toml"),
        include_str!("../../journeys/guided_shopping.toml"),
    ]
    .iter()
    .filter_map(|text| DefinitionDocument::from_toml(text).ok())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_in_definitions_compile() {
        let documents = built_in();
        assert_eq!(documents.len(), 2, "a built-in file does not parse");
        for document in documents {
            document
                .compile(1, false, Utc::now())
                .unwrap_or_else(|error| panic!("{}: {error:?}", document.journey_id));
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_field() {
        let document = DefinitionDocument {
            journey_id: "Bad Id".into(),
            stages: vec![
                StageDocument {
                    name: "a".into(),
                    condition: "touchpoint.type ==".into(),
                    ..Default::default()
                },
                StageDocument {
                    name: "a".into(),
                    condition: "true".into(),
                    max_duration: "soon".into(),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let Err(Error::InvalidArgument(violations)) = document.compile(1, false, Utc::now()) else {
            panic!("accepted");
        };
        let fields: Vec<&str> = violations.iter().map(|v| v.field.as_str()).collect();
        assert!(fields.contains(&"journey_id"), "{fields:?}");
        assert!(fields.contains(&"stages[0].condition"), "{fields:?}");
        assert!(fields.contains(&"stages[1].name"), "{fields:?}");
        assert!(fields.contains(&"stages[1].max_duration"), "{fields:?}");
    }
}
