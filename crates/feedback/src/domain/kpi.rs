//! The measures and their 95% confidence intervals, and time buckets.
//!
//! Methods, chosen so that small samples are not over-read:
//! - proportions (CSAT as the share of 4s and 5s, FCR, churn rate): the
//!   Wilson score interval, which stays inside 0-100 and is honest for small
//!   samples and for shares near 0 or 100, where the plain normal interval
//!   is not;
//! - NPS: each answer scores +1 (promoter), 0 (passive) or -1 (detractor);
//!   NPS is 100 times their mean, and its interval is the normal
//!   approximation with the variance of that mean, p + d - (p - d)^2 over n
//!   (p and d the shares of promoters and detractors), clamped to -100..100;
//! - CES, a mean of 1-7 answers: Student's t interval with the sample
//!   standard deviation, clamped to 1..7 (one answer gives the whole scale).

use chrono::{DateTime, Datelike, Duration, NaiveTime, TimeZone, Utc};

/// The two-sided 95% normal quantile.
const Z95: f64 = 1.959_963_984_540_054;

/// One measure with its sample size and interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measure {
    /// The value.
    pub value: f64,
    /// How many answers, tickets or customers it is computed from.
    pub count: i64,
    /// Lower bound of the 95% interval.
    pub lower: f64,
    /// Upper bound of the 95% interval.
    pub upper: f64,
}

/// NPS of 0-10 answers; `None` without answers.
pub fn nps(scores: &[i32]) -> Option<Measure> {
    if scores.is_empty() {
        return None;
    }
    let n = scores.len() as f64;
    let promoters = scores.iter().filter(|s| **s >= 9).count() as f64 / n;
    let detractors = scores.iter().filter(|s| **s <= 6).count() as f64 / n;
    let mean = promoters - detractors;
    let variance = (promoters + detractors - mean * mean).max(0.0);
    let half = Z95 * (variance / n).sqrt();
    Some(Measure {
        value: 100.0 * mean,
        count: scores.len() as i64,
        lower: (100.0 * (mean - half)).max(-100.0),
        upper: (100.0 * (mean + half)).min(100.0),
    })
}

/// CSAT of 1-5 answers as the share of 4s and 5s, in percent.
pub fn csat(scores: &[i32]) -> Option<Measure> {
    let satisfied = scores.iter().filter(|s| **s >= 4).count() as i64;
    proportion(satisfied, scores.len() as i64)
}

/// The mean of 1-7 effort answers.
pub fn ces(scores: &[i32]) -> Option<Measure> {
    if scores.is_empty() {
        return None;
    }
    let n = scores.len() as f64;
    let mean = scores.iter().map(|s| f64::from(*s)).sum::<f64>() / n;
    let (lower, upper) = if scores.len() < 2 {
        (1.0, 7.0)
    } else {
        let variance = scores
            .iter()
            .map(|s| (f64::from(*s) - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0);
        let half = student_t95(scores.len() - 1) * (variance / n).sqrt();
        ((mean - half).max(1.0), (mean + half).min(7.0))
    };
    Some(Measure {
        value: mean,
        count: scores.len() as i64,
        lower,
        upper,
    })
}

/// `successes` of `total` in percent with the Wilson interval; `None` when `total` is 0.
pub fn proportion(successes: i64, total: i64) -> Option<Measure> {
    if total <= 0 {
        return None;
    }
    let n = total as f64;
    let p = successes as f64 / n;
    let z2 = Z95 * Z95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(Measure {
        value: 100.0 * p,
        count: total,
        lower: (100.0 * (centre - half)).max(0.0),
        upper: (100.0 * (centre + half)).min(100.0),
    })
}

/// The 97.5% quantile of Student's t with `degrees` degrees of freedom.
fn student_t95(degrees: usize) -> f64 {
    const TABLE: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match degrees {
        0 => f64::INFINITY,
        1..=30 => TABLE[degrees - 1],
        31..=60 => 2.000,
        61..=120 => 1.980,
        _ => Z95,
    }
}

/// How figures are grouped over time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    /// The whole window as one bucket.
    Whole,
    /// UTC days.
    Day,
    /// ISO weeks, from Monday.
    Week,
    /// Calendar months.
    Month,
}

impl Bucket {
    /// The start of the bucket holding `time`; `window_start` for [`Bucket::Whole`].
    pub fn start_of(self, time: DateTime<Utc>, window_start: DateTime<Utc>) -> DateTime<Utc> {
        let day = time.date_naive();
        let midnight =
            |date: chrono::NaiveDate| Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN));
        match self {
            Self::Whole => window_start,
            Self::Day => midnight(day),
            Self::Week => {
                midnight(day - Duration::days(i64::from(day.weekday().num_days_from_monday())))
            }
            Self::Month => midnight(day.with_day(1).unwrap_or(day)),
        }
    }

    /// The bucket after the one starting at `start`.
    pub fn next(self, start: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Self::Whole => None,
            Self::Day => Some(start + Duration::days(1)),
            Self::Week => Some(start + Duration::days(7)),
            Self::Month => start.checked_add_months(chrono::Months::new(1)),
        }
    }

    /// Every bucket start of the window `[start, end)`, oldest first.
    pub fn starts(self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut starts = vec![self.start_of(start, start)];
        while let Some(next) = starts.last().and_then(|last| self.next(*last)) {
            if next >= end || starts.len() >= 10_000 {
                break;
            }
            starts.push(next);
        }
        starts
    }
}

/// One answer as the measures see it.
#[derive(Debug, Clone)]
pub struct ResponseFact {
    /// When it was submitted.
    pub time: DateTime<Utc>,
    /// The survey.
    pub survey_id: String,
    /// The channel's enum number.
    pub channel: i32,
    /// Segments at answer time.
    pub segments: Vec<String>,
    /// Journey stage at answer time.
    pub stage: String,
    /// NPS answer.
    pub nps: Option<i32>,
    /// CSAT answer.
    pub csat: Option<i32>,
    /// Effort answer.
    pub effort: Option<i32>,
}

/// One resolved ticket as FCR sees it.
#[derive(Debug, Clone)]
pub struct TicketFact {
    /// When it was resolved.
    pub time: DateTime<Utc>,
    /// The groups it falls in under the breakdown.
    pub groups: Vec<String>,
    /// Resolved on the first contact.
    pub first_contact: bool,
}

/// The measures of one bucket and group.
#[derive(Debug, Clone, PartialEq)]
pub struct KpiRow {
    /// Start of the bucket.
    pub bucket_start: DateTime<Utc>,
    /// The group; empty without a breakdown.
    pub group: String,
    /// NPS.
    pub nps: Option<Measure>,
    /// CSAT.
    pub csat: Option<Measure>,
    /// CES.
    pub ces: Option<Measure>,
    /// FCR.
    pub fcr: Option<Measure>,
    /// Churn rate.
    pub churn_rate: Option<Measure>,
}

#[derive(Default)]
struct Tally {
    nps: Vec<i32>,
    csat: Vec<i32>,
    effort: Vec<i32>,
    resolved: i64,
    first_contact: i64,
}

/// The rows of a window: one per bucket and group with anything in it,
/// oldest bucket first, groups in name order. `response_groups` says which
/// groups an answer falls in under the breakdown (an answer may count in
/// several segments). Churn, when `churn` is given (customers at the start,
/// churn times), only without a breakdown: a bucket's base is the customers
/// at the window's start less those lost before the bucket.
pub fn rows(
    bucket: Bucket,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    responses: &[ResponseFact],
    response_groups: impl Fn(&ResponseFact) -> Vec<String>,
    tickets: &[TicketFact],
    churn: Option<(i64, Vec<DateTime<Utc>>)>,
) -> Vec<KpiRow> {
    use std::collections::BTreeMap;
    let mut tallies: BTreeMap<(DateTime<Utc>, String), Tally> = BTreeMap::new();
    for fact in responses {
        let at = bucket.start_of(fact.time, start);
        for group in response_groups(fact) {
            let tally = tallies.entry((at, group)).or_default();
            tally.nps.extend(fact.nps);
            tally.csat.extend(fact.csat);
            tally.effort.extend(fact.effort);
        }
    }
    for fact in tickets {
        let at = bucket.start_of(fact.time, start);
        for group in &fact.groups {
            let tally = tallies.entry((at, group.clone())).or_default();
            tally.resolved += 1;
            tally.first_contact += i64::from(fact.first_contact);
        }
    }
    let mut churn_by_bucket: BTreeMap<DateTime<Utc>, i64> = BTreeMap::new();
    let base = churn.as_ref().map(|(base, _)| *base);
    if let Some((base, times)) = &churn
        && *base > 0
    {
        for bucket_start in bucket.starts(start, end) {
            tallies.entry((bucket_start, String::new())).or_default();
        }
        for time in times {
            *churn_by_bucket
                .entry(bucket.start_of(*time, start))
                .or_default() += 1;
        }
    }
    let mut lost_before = 0;
    let mut out = Vec::with_capacity(tallies.len());
    for ((bucket_start, group), tally) in tallies {
        let churn_rate = match base {
            Some(base) if base > 0 && group.is_empty() => {
                let lost = churn_by_bucket.get(&bucket_start).copied().unwrap_or(0);
                let at_start = (base - lost_before).max(lost);
                lost_before += lost;
                proportion(lost, at_start)
            }
            _ => None,
        };
        out.push(KpiRow {
            bucket_start,
            group,
            nps: nps(&tally.nps),
            csat: csat(&tally.csat),
            ces: ces(&tally.effort),
            fcr: proportion(tally.first_contact, tally.resolved),
            churn_rate,
        });
    }
    out
}

/// A theme's volume per bucket and its growth: the last bucket over the
/// mean of the others, both plus one (so a theme new in the last bucket
/// grows by its count, and a flat one is 1.0); 1.0 with one bucket.
pub fn growth(volume: &[i64]) -> f64 {
    match volume.split_last() {
        Some((last, others)) if !others.is_empty() => {
            let mean = others.iter().sum::<i64>() as f64 / others.len() as f64;
            (*last as f64 + 1.0) / (mean + 1.0)
        }
        _ => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-6
    }

    #[test]
    fn nps_of_a_known_mix() {
        // 5 promoters, 3 passives, 2 detractors: NPS = 50 - 20 = 30.
        let scores = [10, 9, 9, 10, 9, 7, 8, 8, 3, 6];
        let m = nps(&scores).unwrap();
        assert!(close(m.value, 30.0));
        assert_eq!(m.count, 10);
        // variance = 0.5 + 0.2 - 0.09 = 0.61; half = 1.96 * sqrt(0.061) = 0.48408.
        let half = Z95 * (0.061f64).sqrt() * 100.0;
        assert!(close(m.lower, 30.0 - half), "{m:?}");
        assert!(close(m.upper, 30.0 + half), "{m:?}");
    }

    #[test]
    fn wilson_of_a_share() {
        // 8 of 10: Wilson 95% is 49.02% to 94.33%.
        let m = proportion(8, 10).unwrap();
        assert!(close(m.value, 80.0));
        assert!((m.lower - 49.016).abs() < 0.01, "{m:?}");
        assert!((m.upper - 94.331).abs() < 0.01, "{m:?}");
        assert!(proportion(0, 0).is_none());
        let none = proportion(0, 5).unwrap();
        assert!(close(none.lower, 0.0));
    }

    #[test]
    fn ces_mean_with_t_interval() {
        let m = ces(&[2, 4, 6]).unwrap();
        assert!(close(m.value, 4.0));
        // sd = 2, se = 2 / sqrt(3), t(2) = 4.303: half = 4.969 → clamped to 1..7.
        assert!(close(m.lower, 1.0) && close(m.upper, 7.0));
        let single = ces(&[5]).unwrap();
        assert!(close(single.lower, 1.0) && close(single.upper, 7.0));
    }

    #[test]
    fn growth_of_a_theme() {
        assert!(close(growth(&[1, 1, 1]), 1.0));
        assert!(close(growth(&[0, 0, 4]), 5.0));
        assert!(close(growth(&[3]), 1.0));
    }

    #[test]
    fn churn_base_shrinks_per_bucket() {
        let day = |d| Utc.with_ymd_and_hms(2026, 3, d, 12, 0, 0).unwrap();
        let start = Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap();
        let end = Utc.with_ymd_and_hms(2026, 3, 3, 0, 0, 0).unwrap();
        let rows = rows(
            Bucket::Day,
            start,
            end,
            &[],
            |_| vec![String::new()],
            &[],
            Some((100, vec![day(1), day(1), day(2)])),
        );
        assert_eq!(rows.len(), 2);
        assert!(close(rows[0].churn_rate.unwrap().value, 2.0));
        // 1 of the 98 left at the start of the second day.
        assert!(close(rows[1].churn_rate.unwrap().value, 100.0 / 98.0));
    }

    #[test]
    fn buckets() {
        let t = Utc.with_ymd_and_hms(2026, 3, 18, 15, 0, 0).unwrap(); // a Wednesday
        assert_eq!(
            Bucket::Week.start_of(t, t),
            Utc.with_ymd_and_hms(2026, 3, 16, 0, 0, 0).unwrap()
        );
        assert_eq!(
            Bucket::Month.start_of(t, t),
            Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap()
        );
        let end = Utc.with_ymd_and_hms(2026, 3, 21, 0, 0, 0).unwrap();
        assert_eq!(Bucket::Day.starts(t, end).len(), 3);
        assert_eq!(Bucket::Whole.starts(t, end), vec![t]);
    }
}

/// Properties of the KPI arithmetic over any answers (proptest): every
/// measure lies in its interval, and the interval in the measure's scale;
/// NPS is exactly promoters less detractors; order does not matter; more
/// of the same answers never widen an interval; bucketing loses and doubles
/// nothing.
#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Floating-point slack for "within".
    const EPSILON: f64 = 1e-9;

    fn inside(measure: &Measure, low: f64, high: f64) -> bool {
        measure.lower - EPSILON <= measure.value
            && measure.value <= measure.upper + EPSILON
            && measure.lower >= low - EPSILON
            && measure.upper <= high + EPSILON
    }

    fn time_in_march(seconds: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 0, 0, 0).unwrap() + Duration::seconds(seconds)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn nps_is_promoters_less_detractors_inside_its_interval(
            scores in prop::collection::vec(0..=10i32, 1..400),
        ) {
            let measure = nps(&scores).unwrap();
            let promoters = scores.iter().filter(|s| **s >= 9).count() as i64;
            let detractors = scores.iter().filter(|s| **s <= 6).count() as i64;
            let exact = 100.0 * (promoters - detractors) as f64 / scores.len() as f64;
            prop_assert!((measure.value - exact).abs() < EPSILON);
            prop_assert_eq!(measure.count, scores.len() as i64);
            prop_assert!(inside(&measure, -100.0, 100.0), "{measure:?}");
        }

        #[test]
        fn the_order_of_answers_does_not_matter(
            scores in prop::collection::vec(0..=10i32, 1..200),
            rotation in 0usize..200,
        ) {
            let mut turned = scores.clone();
            turned.rotate_left(rotation % scores.len());
            turned.reverse();
            prop_assert_eq!(nps(&scores), nps(&turned));
            let effort: Vec<i32> = scores.iter().map(|s| s % 7 + 1).collect();
            let turned_effort: Vec<i32> = turned.iter().map(|s| s % 7 + 1).collect();
            let (a, b) = (ces(&effort).unwrap(), ces(&turned_effort).unwrap());
            prop_assert!((a.value - b.value).abs() < EPSILON);
            prop_assert!((a.upper - b.upper).abs() < 1e-6);
        }

        #[test]
        fn more_of_the_same_answers_never_widen_the_interval(
            scores in prop::collection::vec(0..=10i32, 1..100),
            times in 2usize..6,
        ) {
            let more: Vec<i32> = scores.iter().copied().cycle().take(scores.len() * times).collect();
            let (few, many) = (nps(&scores).unwrap(), nps(&more).unwrap());
            prop_assert!((few.value - many.value).abs() < 1e-6);
            prop_assert!(many.upper - many.lower <= few.upper - few.lower + EPSILON);
            let satisfied = scores.iter().filter(|s| **s >= 5).count() as i64;
            let (few, many) = (
                proportion(satisfied, scores.len() as i64).unwrap(),
                proportion(satisfied * times as i64, more.len() as i64).unwrap(),
            );
            prop_assert!(many.upper - many.lower <= few.upper - few.lower + EPSILON);
        }

        #[test]
        fn shares_stay_in_0_to_100_and_grow_with_successes(
            total in 1i64..100_000,
            share in 0.0f64..=1.0,
        ) {
            let successes = ((total as f64) * share) as i64;
            let measure = proportion(successes, total).unwrap();
            prop_assert!(inside(&measure, 0.0, 100.0), "{measure:?}");
            if successes < total {
                let one_more = proportion(successes + 1, total).unwrap();
                prop_assert!(one_more.value > measure.value);
                prop_assert!(one_more.lower >= measure.lower - EPSILON);
                prop_assert!(one_more.upper >= measure.upper - EPSILON);
            }
        }

        #[test]
        fn csat_is_the_share_of_fours_and_fives_and_ces_stays_on_its_scale(
            scores in prop::collection::vec(1..=5i32, 1..300),
            effort in prop::collection::vec(1..=7i32, 1..300),
        ) {
            let satisfied = scores.iter().filter(|s| **s >= 4).count() as i64;
            prop_assert_eq!(csat(&scores), proportion(satisfied, scores.len() as i64));
            let measure = ces(&effort).unwrap();
            prop_assert!(inside(&measure, 1.0, 7.0), "{measure:?}");
        }

        #[test]
        fn buckets_hold_every_answer_once_in_the_bucket_of_its_time(
            answers in prop::collection::vec((0i64..90 * 86_400, 0..=10i32), 0..300),
            bucket in prop::sample::select(vec![Bucket::Whole, Bucket::Day, Bucket::Week, Bucket::Month]),
        ) {
            let start = time_in_march(0);
            let end = time_in_march(90 * 86_400);
            let facts: Vec<ResponseFact> = answers
                .iter()
                .map(|(at, score)| ResponseFact {
                    time: time_in_march(*at),
                    survey_id: "s".into(),
                    channel: 1,
                    segments: vec![],
                    stage: String::new(),
                    nps: Some(*score),
                    csat: None,
                    effort: None,
                })
                .collect();
            let rows = rows(bucket, start, end, &facts, |_| vec![String::new()], &[], None);
            let counted: i64 = rows.iter().filter_map(|row| row.nps).map(|m| m.count).sum();
            prop_assert_eq!(counted, facts.len() as i64);
            for row in &rows {
                let members: Vec<&ResponseFact> = facts
                    .iter()
                    .filter(|fact| bucket.start_of(fact.time, start) == row.bucket_start)
                    .collect();
                prop_assert_eq!(row.nps.map(|m| m.count).unwrap_or(0), members.len() as i64);
                for fact in members {
                    prop_assert!(fact.time >= row.bucket_start);
                    if let Some(next) = bucket.next(row.bucket_start) {
                        prop_assert!(fact.time < next);
                    }
                }
            }
        }

        #[test]
        fn churn_counts_every_lost_customer_once(
            base in 1i64..10_000,
            lost in prop::collection::vec(0i64..60 * 86_400, 0..200),
        ) {
            let start = time_in_march(0);
            let end = time_in_march(60 * 86_400);
            let times: Vec<DateTime<Utc>> = lost.iter().map(|at| time_in_march(*at)).collect();
            let rows = rows(Bucket::Week, start, end, &[], |_| vec![String::new()], &[], Some((base, times.clone())));
            let mut remaining = base;
            let mut counted = 0i64;
            for row in &rows {
                let in_bucket = times
                    .iter()
                    .filter(|t| Bucket::Week.start_of(**t, start) == row.bucket_start)
                    .count() as i64;
                // Once every customer is lost, a week has no one to lose:
                // its rate is undefined, not 0%.
                if remaining.max(in_bucket) == 0 {
                    prop_assert!(row.churn_rate.is_none(), "{:?}", row.churn_rate);
                    continue;
                }
                let rate = row.churn_rate.unwrap();
                prop_assert!(inside(&rate, 0.0, 100.0), "{rate:?}");
                prop_assert_eq!(rate.count, remaining.max(in_bucket));
                counted += in_bucket;
                remaining -= in_bucket;
            }
            prop_assert_eq!(counted, times.len() as i64);
        }
    }
}
