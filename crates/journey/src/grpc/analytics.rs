//! Funnels and top paths over gRPC: requests checked here, figures computed
//! by `domain::analytics` from every stored event of the period.

use std::collections::{BTreeMap, HashMap, HashSet};

use cairn_contract::journey::v1 as pb;
use cairn_runtime::rules::Rule;
use cairn_runtime::{Error, Result, Violations};
use chrono::{DateTime, Duration, Utc};

use super::JourneyApi;
use crate::domain::Touchpoint;
use crate::domain::analytics::{self, Event, Order};
use crate::domain::progress::{RuleVariables, touchpoint_variable};
use crate::storage::channel_name;

/// Most steps in one funnel.
const MAX_STEPS: usize = 100;
/// Most exclusions or segments in one funnel.
const MAX_FILTERS: usize = 20;
/// The conversion window when the request sets none.
const DEFAULT_WINDOW_DAYS: i64 = 30;
/// How far before the period a path may reach back.
const PATH_LOOKBACK_DAYS: i64 = 30;
/// Variables of funnel and path conditions.
const VARIABLES: &[&str] = &["touchpoint"];

/// A funnel step, checked.
enum Step {
    Touchpoint(Rule),
    Stage { journey_id: String, stage: String },
}

/// A channel's short name for results: "web", "mobile_app".
fn short_channel(channel: i32) -> String {
    channel_name(channel)
        .trim_start_matches("CHANNEL_")
        .to_lowercase()
}

fn variables(touchpoint: &Touchpoint) -> RuleVariables {
    let mut variables = RuleVariables::new();
    variables.insert(
        "touchpoint".into(),
        touchpoint_variable(touchpoint, &channel_name(touchpoint.channel)),
    );
    variables
}

fn label(touchpoint: &Touchpoint) -> String {
    let kind = touchpoint.kind.as_str();
    format!(
        "{}:{}",
        short_channel(touchpoint.channel),
        kind.strip_prefix("custom:").unwrap_or(kind)
    )
}

/// A required, closed time range.
fn period(
    range: Option<cairn_contract::common::v1::TimeRange>,
) -> Result<(DateTime<Utc>, DateTime<Utc>)> {
    match super::time_range(range)? {
        (Some(start), Some(end)) => Ok((start, end)),
        _ => Err(Error::invalid(
            "time_range",
            "required: both start_time and end_time, so the answer covers a known period",
        )),
    }
}

impl JourneyApi {
    pub(super) async fn run_funnel_of(
        &self,
        request: pb::RunFunnelRequest,
    ) -> Result<pb::RunFunnelResponse> {
        let mut violations = Violations::new();
        if request.steps.len() < 2 || request.steps.len() > MAX_STEPS {
            violations.add("steps", format!("between 2 and {MAX_STEPS} steps"));
        }
        let mut steps = Vec::with_capacity(request.steps.len());
        for (index, step) in request.steps.iter().enumerate() {
            let field = format!("steps[{index}]");
            match &step.step {
                Some(pb::funnel_step::Step::TouchpointCondition(condition)) => {
                    if let Some(rule) = violations.check(Rule::compile(
                        &format!("{field}.touchpoint_condition"),
                        condition,
                        VARIABLES,
                    )) {
                        steps.push(Step::Touchpoint(rule));
                    }
                }
                Some(pb::funnel_step::Step::JourneyStage(stage)) => match stage.split_once('/') {
                    Some((journey_id, stage)) if !journey_id.is_empty() && !stage.is_empty() => {
                        steps.push(Step::Stage {
                            journey_id: journey_id.to_string(),
                            stage: stage.to_string(),
                        });
                    }
                    _ => violations.add(
                        format!("{field}.journey_stage"),
                        "\"journey_id/stage\", for example \"guided_shopping/cart\"",
                    ),
                },
                None => violations.add(field, "set touchpoint_condition or journey_stage"),
            }
        }
        if request.steps.first().is_some_and(|step| step.optional) {
            violations.add(
                "steps[0].optional",
                "the first step starts the funnel and cannot be optional",
            );
        }
        let order = match pb::FunnelOrder::try_from(request.order) {
            Ok(pb::FunnelOrder::Unspecified | pb::FunnelOrder::Ordered) => Order::Ordered,
            Ok(pb::FunnelOrder::Strict) => Order::Strict,
            Ok(pb::FunnelOrder::Any) => Order::Any,
            Err(_) => {
                violations.add("order", "one of the FunnelOrder values");
                Order::Ordered
            }
        };
        let window = match request.conversion_window {
            None => Duration::days(DEFAULT_WINDOW_DAYS),
            Some(window) => match std::time::Duration::try_from(window) {
                Ok(window) if !window.is_zero() => {
                    Duration::from_std(window).unwrap_or(Duration::days(DEFAULT_WINDOW_DAYS))
                }
                _ => {
                    violations.add("conversion_window", "must be longer than zero");
                    Duration::days(DEFAULT_WINDOW_DAYS)
                }
            },
        };
        if request.exclusions.len() > MAX_FILTERS {
            violations.add("exclusions", format!("at most {MAX_FILTERS}"));
        }
        let exclusions: Vec<Rule> = request
            .exclusions
            .iter()
            .enumerate()
            .filter_map(|(index, source)| {
                violations.check(Rule::compile(
                    &format!("exclusions[{index}]"),
                    source,
                    VARIABLES,
                ))
            })
            .collect();
        if request.segment_ids.len() > MAX_FILTERS {
            violations.add("segment_ids", format!("at most {MAX_FILTERS}"));
        }
        let range = violations.check(period(request.time_range));
        violations.finish()?;
        let Some((start, end)) = range else {
            return Err(Error::internal("checked period missing"));
        };

        let mut segments: Vec<(String, HashSet<String>)> = Vec::new();
        for segment_id in &request.segment_ids {
            segments.push((
                segment_id.clone(),
                self.profiles.segment_members(segment_id).await?,
            ));
        }
        let horizon = end + window;
        let mut events: BTreeMap<String, Vec<Event>> = BTreeMap::new();
        for (customer, touchpoint) in self.store.between(start, horizon).await? {
            let variables = variables(&touchpoint);
            let matches = steps
                .iter()
                .map(|step| match step {
                    Step::Touchpoint(rule) => rule.evaluate(&variables).unwrap_or(false),
                    Step::Stage { .. } => false,
                })
                .collect();
            events.entry(customer).or_default().push(Event {
                at: touchpoint.occurred_at,
                channel: short_channel(touchpoint.channel),
                label: label(&touchpoint),
                matches,
                excluded: exclusions
                    .iter()
                    .any(|rule| rule.evaluate(&variables).unwrap_or(false)),
                is_touchpoint: true,
            });
        }
        let journeys: Vec<String> = steps
            .iter()
            .filter_map(|step| match step {
                Step::Stage { journey_id, .. } => Some(journey_id.clone()),
                Step::Touchpoint(_) => None,
            })
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for (customer, journey_id, stage, at) in self
            .store
            .journeys()
            .entries_between(&journeys, start, horizon)
            .await?
        {
            let matches = steps
                .iter()
                .map(|step| matches!(step, Step::Stage { journey_id: j, stage: s } if *j == journey_id && *s == stage))
                .collect();
            events.entry(customer).or_default().push(Event {
                at,
                channel: String::new(),
                label: format!("{journey_id}/{stage}"),
                matches,
                excluded: false,
                is_touchpoint: false,
            });
        }
        for customer_events in events.values_mut() {
            customer_events.sort_by_key(|event| event.at);
        }
        let optional: Vec<bool> = request.steps.iter().map(|step| step.optional).collect();
        let figures = analytics::funnel(
            events
                .iter()
                .map(|(customer, list)| (customer.as_str(), list.as_slice())),
            &optional,
            order,
            start,
            end,
            window,
            |customer| {
                segments
                    .iter()
                    .filter(|(_, members)| members.contains(customer))
                    .map(|(segment_id, _)| segment_id.clone())
                    .collect()
            },
        );
        Ok(pb::RunFunnelResponse {
            steps: figures
                .steps
                .into_iter()
                .zip(&request.steps)
                .map(|(step, wire)| pb::FunnelStepResult {
                    name: wire.name.clone(),
                    entered: step.entered,
                    converted: step.converted,
                    conversion_rate: if step.entered == 0 {
                        0.0
                    } else {
                        step.converted as f64 / step.entered as f64
                    },
                    median_time_to_next: step
                        .median_to_next
                        .and_then(|gap| gap.to_std().ok())
                        .and_then(|gap| prost_types::Duration::try_from(gap).ok()),
                    drop_off_by_channel: step.drop_off_by_channel.into_iter().collect(),
                    drop_off_by_segment: step.drop_off_by_segment.into_iter().collect(),
                })
                .collect(),
            converted: figures.converted,
        })
    }

    pub(super) async fn list_top_paths_of(
        &self,
        request: pb::ListTopPathsRequest,
    ) -> Result<pb::ListTopPathsResponse> {
        let mut violations = Violations::new();
        let end_rule = if request.end_condition.trim().is_empty() {
            if !request.before_abandonment {
                violations.add(
                    "end_condition",
                    "required unless before_abandonment is set: a CEL condition such as touchpoint.type == \"purchase\"",
                );
            }
            None
        } else {
            if request.before_abandonment {
                violations.add(
                    "before_abandonment",
                    "set either end_condition or before_abandonment, not both",
                );
            }
            violations.check(Rule::compile(
                "end_condition",
                &request.end_condition,
                VARIABLES,
            ))
        };
        let length = match request.path_length {
            0 => 5,
            n @ 1..=20 => n as usize,
            _ => {
                violations.add("path_length", "1 to 20, or 0 for 5");
                5
            }
        };
        let limit = match request.limit {
            0 => 10,
            n @ 1..=100 => n as usize,
            _ => {
                violations.add("limit", "1 to 100, or 0 for 10");
                10
            }
        };
        let range = violations.check(period(request.time_range));
        violations.finish()?;
        let Some((start, end)) = range else {
            return Err(Error::internal("checked period missing"));
        };
        let mut events: HashMap<String, Vec<(Event, bool)>> = HashMap::new();
        for (customer, touchpoint) in self
            .store
            .between(start - Duration::days(PATH_LOOKBACK_DAYS), end)
            .await?
        {
            let is_end = touchpoint.occurred_at >= start
                && end_rule
                    .as_ref()
                    .is_some_and(|rule| rule.evaluate(&variables(&touchpoint)).unwrap_or(false));
            events.entry(customer).or_default().push((
                Event {
                    at: touchpoint.occurred_at,
                    channel: short_channel(touchpoint.channel),
                    label: label(&touchpoint),
                    matches: Vec::new(),
                    excluded: false,
                    is_touchpoint: true,
                },
                is_end,
            ));
        }
        let ends: Vec<(String, DateTime<Utc>)> = if request.before_abandonment {
            let filter = crate::storage::abandonments::AbandonmentFilter {
                start: Some(start),
                end: Some(end),
                ..Default::default()
            };
            let (rows, _) = crate::storage::abandonments::list(
                self.store.journeys().database(),
                &filter,
                1_000_000,
                None,
            )
            .await?;
            rows.into_iter()
                .map(|row| (row.customer_id, row.detected_at))
                .collect()
        } else {
            events
                .iter()
                .filter_map(|(customer, list)| {
                    list.iter()
                        .find(|(_, is_end)| *is_end)
                        .map(|(event, _)| (customer.clone(), event.at))
                })
                .collect()
        };
        let plain: HashMap<&String, Vec<Event>> = events
            .iter()
            .map(|(customer, list)| {
                (
                    customer,
                    list.iter().map(|(event, _)| event.clone()).collect(),
                )
            })
            .collect();
        let empty = Vec::new();
        let paths = ends.iter().map(|(customer, at)| {
            analytics::path_before(plain.get(customer).unwrap_or(&empty), *at, length)
        });
        Ok(pb::ListTopPathsResponse {
            paths: analytics::top_paths(paths, limit)
                .into_iter()
                .map(|path| pb::TouchpointPath {
                    steps: path.steps,
                    count: path.count,
                    count_by_channel: path.by_channel.into_iter().collect(),
                })
                .collect(),
        })
    }
}
