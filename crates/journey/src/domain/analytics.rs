//! Funnels and paths over customers' stored events: pure functions over
//! each customer's events in time order, so the rules are tested without a
//! database and the answers come from every stored event, never a sample.
//!
//! Funnel rules, per customer:
//! - The funnel starts at the customer's first event in the period matching
//!   the first step; later steps count only within the conversion window
//!   after it.
//! - Ordered: each next step is the first matching event after the previous
//!   step. Strict: it must be the very next event. Any order: each step's
//!   first matching event in the window counts, whatever the order.
//! - An optional step may be skipped; it counts for those who took it.
//! - A customer with an event matching an exclusion between the first step
//!   and the last step they reached is left out entirely.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

/// One event of a customer, reduced to what analytics needs.
#[derive(Debug, Clone)]
pub struct Event {
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Its channel's short name ("web").
    pub channel: String,
    /// "channel:type", the step of a path.
    pub label: String,
    /// Which funnel steps it matches.
    pub matches: Vec<bool>,
    /// True when it matches an exclusion.
    pub excluded: bool,
    /// True when it is a stored touchpoint (not a stage entry).
    pub is_touchpoint: bool,
}

/// How steps must follow each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// In order, with other events in between.
    Ordered,
    /// In order, nothing in between.
    Strict,
    /// In any order.
    Any,
}

/// One funnel step's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepFigures {
    /// Customers who reached it.
    pub entered: i64,
    /// Of those, customers who went on to a later step (last: all who reached it).
    pub converted: i64,
    /// Median time from this step to the next reached one.
    pub median_to_next: Option<Duration>,
    /// Customers who stopped here, by the channel of their last event.
    pub drop_off_by_channel: BTreeMap<String, i64>,
    /// Customers who stopped here, by segment.
    pub drop_off_by_segment: BTreeMap<String, i64>,
}

/// A funnel's figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FunnelFigures {
    /// One per step.
    pub steps: Vec<StepFigures>,
    /// Customers who completed every required step.
    pub converted: i64,
}

/// What one customer reached: per step, when (None: not reached).
fn reached(
    events: &[Event],
    steps: usize,
    optional: &[bool],
    order: Order,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    window: Duration,
) -> Option<(Vec<Option<DateTime<Utc>>>, usize)> {
    let first = events
        .iter()
        .position(|event| event.at >= start && event.at < end && event.matches[0])?;
    let t0 = events[first].at;
    let limit = t0 + window;
    let mut times = vec![None; steps];
    times[0] = Some(t0);
    let mut last_index = first;
    match order {
        Order::Any => {
            for (step, time) in times.iter_mut().enumerate().skip(1) {
                *time = events[first..]
                    .iter()
                    .filter(|event| event.at <= limit)
                    .find(|event| event.matches[step])
                    .map(|event| event.at);
            }
            last_index = events[first..]
                .iter()
                .rposition(|event| event.at <= limit)
                .map_or(first, |offset| first + offset);
        }
        Order::Ordered | Order::Strict => {
            let mut position = first + 1;
            for step in 1..steps {
                let found = if order == Order::Strict {
                    events
                        .get(position)
                        .filter(|event| event.at <= limit && event.matches[step])
                        .map(|_| position)
                } else {
                    events[position.min(events.len())..]
                        .iter()
                        .take_while(|event| event.at <= limit)
                        .position(|event| event.matches[step])
                        .map(|offset| position + offset)
                };
                match found {
                    Some(index) => {
                        times[step] = Some(events[index].at);
                        last_index = index;
                        position = index + 1;
                    }
                    None if optional[step] => continue,
                    None => break,
                }
            }
        }
    }
    Some((times, last_index))
}

/// Computes a funnel of `optional.len()` steps over customers' events,
/// `segments_of` naming each customer's segments among those asked for.
pub fn funnel<'a>(
    customers: impl IntoIterator<Item = (&'a str, &'a [Event])>,
    optional: &[bool],
    order: Order,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    window: Duration,
    segments_of: impl Fn(&str) -> Vec<String>,
) -> FunnelFigures {
    let steps = optional.len();
    let mut figures = FunnelFigures {
        steps: vec![StepFigures::default(); steps],
        converted: 0,
    };
    let mut gaps: Vec<Vec<Duration>> = vec![Vec::new(); steps];
    for (customer, events) in customers {
        let Some((times, last_index)) = reached(events, steps, optional, order, start, end, window)
        else {
            continue;
        };
        let last_time = times.iter().flatten().max().copied().unwrap_or(start);
        let excluded = events.iter().any(|event| {
            event.excluded && event.at >= times[0].unwrap_or(start) && event.at <= last_time
        });
        if excluded {
            continue;
        }
        let completed = (0..steps).all(|step| optional[step] || times[step].is_some());
        if completed {
            figures.converted += 1;
        }
        let reached_steps: Vec<usize> = (0..steps).filter(|&step| times[step].is_some()).collect();
        let last_reached = reached_steps.last().copied().unwrap_or(0);
        for (position, &step) in reached_steps.iter().enumerate() {
            let step_figures = &mut figures.steps[step];
            step_figures.entered += 1;
            match reached_steps.get(position + 1) {
                Some(&next) => {
                    step_figures.converted += 1;
                    if let (Some(from), Some(to)) = (times[step], times[next]) {
                        gaps[step].push(to - from);
                    }
                }
                None if step == steps - 1 || completed => step_figures.converted += 1,
                None => {}
            }
        }
        if !completed {
            let stopped = &mut figures.steps[last_reached];
            let channel = events
                .get(last_index)
                .map(|event| event.channel.clone())
                .unwrap_or_default();
            *stopped.drop_off_by_channel.entry(channel).or_default() += 1;
            for segment in segments_of(customer) {
                *stopped.drop_off_by_segment.entry(segment).or_default() += 1;
            }
        }
    }
    for (step, mut durations) in gaps.into_iter().enumerate() {
        durations.sort();
        figures.steps[step].median_to_next = median(&durations);
    }
    figures
}

fn median(sorted: &[Duration]) -> Option<Duration> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

/// A path and how often customers took it.
#[derive(Debug, Clone, PartialEq)]
pub struct PathCount {
    /// "channel:type" steps, oldest first.
    pub steps: Vec<String>,
    /// Customers who took it.
    pub count: i64,
    /// By the channel of the path's last step.
    pub by_channel: BTreeMap<String, i64>,
}

/// The `length` touchpoints before `end` of one customer, oldest first.
pub fn path_before(events: &[Event], end: DateTime<Utc>, length: usize) -> Vec<&Event> {
    let before: Vec<&Event> = events
        .iter()
        .filter(|event| event.is_touchpoint && event.at < end)
        .collect();
    before[before.len().saturating_sub(length)..].to_vec()
}

/// Counts paths, most frequent first (ties by path), at most `limit`.
pub fn top_paths<'a>(
    paths: impl IntoIterator<Item = Vec<&'a Event>>,
    limit: usize,
) -> Vec<PathCount> {
    let mut counts: BTreeMap<Vec<String>, PathCount> = BTreeMap::new();
    for path in paths {
        if path.is_empty() {
            continue;
        }
        let steps: Vec<String> = path.iter().map(|event| event.label.clone()).collect();
        let channel = path
            .last()
            .map(|event| event.channel.clone())
            .unwrap_or_default();
        let entry = counts.entry(steps.clone()).or_insert_with(|| PathCount {
            steps,
            count: 0,
            by_channel: BTreeMap::new(),
        });
        entry.count += 1;
        *entry.by_channel.entry(channel).or_default() += 1;
    }
    let mut paths: Vec<PathCount> = counts.into_values().collect();
    paths.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.steps.cmp(&b.steps)));
    paths.truncate(limit);
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(minute: i64, channel: &str, matches: &[bool]) -> Event {
        Event {
            at: DateTime::from_timestamp(1_800_000_000 + minute * 60, 0).unwrap(),
            channel: channel.into(),
            label: format!("{channel}:x"),
            matches: matches.to_vec(),
            excluded: false,
            is_touchpoint: true,
        }
    }

    fn run(customers: &[(&str, Vec<Event>)], optional: &[bool], order: Order) -> FunnelFigures {
        let start = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        funnel(
            customers
                .iter()
                .map(|(id, events)| (*id, events.as_slice())),
            optional,
            order,
            start,
            start + Duration::days(1),
            Duration::hours(1),
            |_| vec!["all".into()],
        )
    }

    #[test]
    fn ordered_strict_and_any_order_count_differently() {
        let customers = vec![
            // a → b → c, with noise between a and b.
            (
                "one",
                vec![
                    event(0, "web", &[true, false, false]),
                    event(1, "web", &[false, false, false]),
                    event(2, "app", &[false, true, false]),
                    event(3, "app", &[false, false, true]),
                ],
            ),
            // a → c → b: not ordered past a, but complete in any order.
            (
                "two",
                vec![
                    event(0, "web", &[true, false, false]),
                    event(1, "web", &[false, false, true]),
                    event(2, "store", &[false, true, false]),
                ],
            ),
            // a only.
            ("three", vec![event(0, "sms", &[true, false, false])]),
        ];
        let ordered = run(&customers, &[false, false, false], Order::Ordered);
        assert_eq!(
            ordered.steps.iter().map(|s| s.entered).collect::<Vec<_>>(),
            [3, 2, 1]
        );
        assert_eq!(ordered.converted, 1);
        assert_eq!(ordered.steps[0].drop_off_by_channel.get("sms"), Some(&1));
        assert_eq!(ordered.steps[1].drop_off_by_channel.get("store"), Some(&1));
        assert_eq!(ordered.steps[0].median_to_next, Some(Duration::minutes(2)));
        let strict = run(&customers, &[false, false, false], Order::Strict);
        assert_eq!(
            strict.steps.iter().map(|s| s.entered).collect::<Vec<_>>(),
            [3, 0, 0]
        );
        let any = run(&customers, &[false, false, false], Order::Any);
        assert_eq!(any.converted, 2);
    }

    #[test]
    fn an_optional_step_may_be_skipped_and_exclusions_leave_customers_out() {
        let mut excluded = event(1, "web", &[false, false, false]);
        excluded.excluded = true;
        let customers = vec![
            (
                "skips",
                vec![
                    event(0, "web", &[true, false, false]),
                    event(2, "web", &[false, false, true]),
                ],
            ),
            (
                "excluded",
                vec![
                    event(0, "web", &[true, false, false]),
                    excluded,
                    event(2, "web", &[false, false, true]),
                ],
            ),
        ];
        let figures = run(&customers, &[false, true, false], Order::Ordered);
        assert_eq!(figures.converted, 1);
        assert_eq!(figures.steps[1].entered, 0);
        assert_eq!(figures.steps[2].entered, 1);
    }
}
