//! Offline evaluation of a policy against the decision log by inverse
//! propensity scoring (IPS): each logged decision's first-ranked action is
//! replayed under the candidate policy with the model as it is now; the
//! reward (1 accepted, else 0) is weighted by the candidate's probability of
//! that action over the logged selection probability. Intervals use the
//! normal approximation.

use chrono::{DateTime, Utc};
use rand::SeedableRng;
use rand::rngs::SmallRng;

use cairn_contract::recommendation::v1::{ExclusionReason, OutcomeType};

use crate::domain::bandit::{self, Model, Scored, Scorer};
use crate::domain::decision::Decision;

/// An estimate with its interval.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Interval {
    /// Point estimate.
    pub value: f64,
    /// Lower bound.
    pub lower: f64,
    /// Upper bound.
    pub upper: f64,
}

/// The result of an evaluation.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Evaluation {
    /// Decisions used.
    pub decisions_evaluated: i64,
    /// Of which the candidate's first choice equals the logged one.
    pub matched_decisions: i64,
    /// Estimated acceptance rate of the candidate.
    pub acceptance_rate: Interval,
    /// Estimated value per decision of the candidate.
    pub value_per_decision: Interval,
    /// Observed acceptance rate of the logged policies.
    pub live_acceptance_rate: Interval,
    /// Observed value per decision of the logged policies.
    pub live_value_per_decision: Interval,
    /// Confidence level of the intervals.
    pub confidence_level: f64,
    /// Earliest decision evaluated.
    pub first_time: Option<DateTime<Utc>>,
    /// Latest decision evaluated.
    pub last_time: Option<DateTime<Utc>>,
}

/// The standard normal quantile of `p` (0.5 < p < 1), by Abramowitz and
/// Stegun 26.2.23 (error below 4.5e-4, plenty for a confidence interval).
pub fn normal_quantile(p: f64) -> f64 {
    let tail = (1.0 - p).clamp(1e-12, 0.5);
    let t = (-2.0 * tail.ln()).sqrt();
    t - (2.515517 + 0.802853 * t + 0.010328 * t * t)
        / (1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t)
}

fn interval(values: &[f64], z: f64) -> Interval {
    let n = values.len() as f64;
    if n == 0.0 {
        return Interval::default();
    }
    let mean = values.iter().sum::<f64>() / n;
    let variance = if n > 1.0 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    let half = z * (variance / n).sqrt();
    Interval {
        value: mean,
        lower: mean - half,
        upper: mean + half,
    }
}

/// The reward of a decision's first-ranked action: `Some(1.0)` accepted,
/// `Some(0.0)` declined, ignored or expired without one, `None` while open.
fn reward(decision: &Decision, action_id: &str, now: DateTime<Utc>) -> Option<f64> {
    let last_final = decision
        .outcomes
        .iter()
        .rfind(|outcome| outcome.action_id == action_id && crate::storage::is_final(outcome.kind));
    match last_final {
        Some(outcome) if outcome.kind == OutcomeType::Accepted as i32 => Some(1.0),
        Some(_) => Some(0.0),
        None if decision.expire_time <= now => Some(0.0),
        None => None,
    }
}

/// Evaluates `scorer` on `decisions` with `model`.
pub fn evaluate(
    model: &Model,
    scorer: &Scorer,
    decisions: &[Decision],
    confidence_level: f64,
) -> Evaluation {
    let now = Utc::now();
    let z = normal_quantile(0.5 + confidence_level / 2.0);
    let mut rng = SmallRng::seed_from_u64(20_261_204);
    let mut weighted = Vec::new();
    let mut weighted_value = Vec::new();
    let mut live = Vec::new();
    let mut live_value = Vec::new();
    let mut matched = 0;
    let mut first_time: Option<DateTime<Utc>> = None;
    let mut last_time: Option<DateTime<Utc>> = None;
    for decision in decisions {
        let pool: Vec<_> = decision
            .candidates
            .iter()
            .filter(|candidate| {
                candidate.reason == 0
                    || candidate.reason == ExclusionReason::Outscored as i32
                    || candidate.reason == ExclusionReason::BelowMinimumScore as i32
            })
            .collect();
        let Some(logged) = pool.iter().position(|candidate| candidate.rank == 1) else {
            continue;
        };
        let logged_probability = pool[logged].selection_probability;
        if logged_probability <= 0.0 {
            continue;
        }
        let Some(reward) = reward(decision, &pool[logged].action_id, now) else {
            continue;
        };
        let x = model.vector(&decision.features);
        let scored: Vec<Scored> = pool
            .iter()
            .map(|candidate| {
                let estimate = model.estimate(&candidate.action_id, &candidate.group, &x);
                Scored {
                    mean: estimate.mean,
                    spread: estimate.spread,
                    factor: if candidate.factor > 0.0 {
                        candidate.factor
                    } else {
                        1.0
                    },
                }
            })
            .collect();
        let probability = bandit::first_choice_probability(scorer, &scored, logged, &mut rng);
        if bandit::mode(scorer, &scored) == Some(logged) {
            matched += 1;
        }
        let weight = probability / logged_probability;
        let value_factor = if pool[logged].value_factor > 0.0 {
            pool[logged].value_factor
        } else {
            1.0
        };
        weighted.push(reward * weight);
        weighted_value.push(reward * value_factor * weight);
        live.push(reward);
        live_value.push(reward * value_factor);
        first_time = Some(first_time.map_or(decision.decide_time, |t| t.min(decision.decide_time)));
        last_time = Some(last_time.map_or(decision.decide_time, |t| t.max(decision.decide_time)));
    }
    Evaluation {
        decisions_evaluated: weighted.len() as i64,
        matched_decisions: matched,
        acceptance_rate: interval(&weighted, z),
        value_per_decision: interval(&weighted_value, z),
        live_acceptance_rate: interval(&live, z),
        live_value_per_decision: interval(&live_value, z),
        confidence_level,
        first_time,
        last_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles() {
        assert!((normal_quantile(0.975) - 1.96).abs() < 0.01);
        assert!((normal_quantile(0.95) - 1.645).abs() < 0.01);
    }

    #[test]
    fn intervals_hold_their_mean() {
        let estimate = interval(&[1.0, 0.0, 1.0, 0.0], 1.96);
        assert_eq!(estimate.value, 0.5);
        assert!(estimate.lower < 0.5 && estimate.upper > 0.5);
    }
}
