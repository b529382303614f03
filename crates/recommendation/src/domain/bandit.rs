//! The learned model and how policies turn it into choices: a contextual
//! bandit over a linear model of the acceptance probability.
//!
//! # The model
//! Each action has a Bayesian ridge regression of the reward (1 accepted,
//! 0 declined or ignored) on the decision's features. What one action
//! learns is shared in two levels, so that similar actions and similar
//! customers teach each other and a new action does not start from
//! nothing (cold start):
//! - a global model over every outcome of every action;
//! - a group model per kind and category, whose prior mean is the global
//!   model's weights;
//! - the action's own model, whose prior mean is its group's weights.
//!
//! At every level the weights are `θ = (λI + XᵀX)⁻¹ (Xᵀr + λ·θ_prior)` with
//! the prior precision λ = [`PRIOR_PRECISION`]. Customers with similar
//! features get similar estimates, because the model is a function of the
//! features, not of the customer.
//!
//! The model keeps only sufficient statistics (`XᵀX`, `Xᵀr` and counts) per
//! level: sums that do not depend on the order outcomes arrive in, that
//! replicas can fold into shared storage, and that hold no personal data.
//!
//! # Exploration
//! For a decision's features `x`, the posterior of an action's acceptance
//! probability is normal with mean `θ·x` and standard deviation
//! `σ·sqrt(xᵀA⁻¹x)` (σ = [`NOISE_SCALE`]). The scoring methods:
//! - linear Thompson sampling (the default): rank by one draw from that
//!   posterior, spread scaled by `exploration` (default 1);
//! - linear upper confidence bound: rank by mean + `exploration` × spread;
//! - epsilon-greedy: with probability `exploration` (default 0.05) a
//!   uniformly random candidate, else the best mean;
//! - uniformly random: a baseline.
//!
//! Every choice is logged with the probability with which it was made, so
//! other policies can be evaluated offline (inverse propensity scoring).

use std::collections::HashMap;

use nalgebra::{DMatrix, DVector};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::features::Features;

/// Prior precision λ of every level: how many observations' worth of
/// weight the prior mean has along each feature.
pub const PRIOR_PRECISION: f64 = 1.0;
/// σ: the reward noise scale that turns `sqrt(xᵀA⁻¹x)` into the posterior
/// standard deviation of the acceptance probability. For acceptance rates
/// of a few percent the Bernoulli standard deviation is about 0.2.
pub const NOISE_SCALE: f64 = 0.2;
/// An action with fewer final outcomes of its own than this is scored
/// mostly from its group (cold start).
pub const COLD_START_OUTCOMES: i64 = 50;
/// The acceptance probability assumed before anything is learnt (the
/// global prior mean of the intercept): typical offer acceptance is a few
/// percent, and a positive prior lets value and priority rank a cold
/// catalogue.
pub const PRIOR_ACCEPTANCE: f64 = 0.05;
/// Resamples used to estimate Thompson sampling's selection probabilities.
pub const RESAMPLES: usize = 200;
/// The most features the model keeps; later new features are ignored.
pub const MAX_FEATURES: usize = 256;

/// The key of the global statistics.
pub const GLOBAL: &str = "global";

/// The statistics key of a learning group.
pub fn group_key(group: &str) -> String {
    format!("group:{group}")
}

/// The statistics key of an action.
pub fn action_key(action_id: &str) -> String {
    format!("action:{action_id}")
}

/// Sufficient statistics of one ridge regression.
#[derive(Debug, Clone, PartialEq)]
pub struct Statistics {
    /// Number of features.
    pub dimension: usize,
    /// XᵀX, row-major, `dimension²` entries.
    pub gram: Vec<f64>,
    /// Xᵀr.
    pub response: Vec<f64>,
    /// Final outcomes learnt.
    pub outcomes: i64,
    /// Of which accepted.
    pub accepted: i64,
}

impl Statistics {
    /// Empty statistics over `dimension` features.
    pub fn new(dimension: usize) -> Self {
        Self {
            dimension,
            gram: vec![0.0; dimension * dimension],
            response: vec![0.0; dimension],
            outcomes: 0,
            accepted: 0,
        }
    }

    /// Extends the statistics to `dimension` features; new features were 0
    /// in every past outcome, so their sums are 0 (exact, not a guess).
    pub fn grow(&mut self, dimension: usize) {
        if dimension <= self.dimension {
            return;
        }
        let mut gram = vec![0.0; dimension * dimension];
        for row in 0..self.dimension {
            for column in 0..self.dimension {
                gram[row * dimension + column] = self.gram[row * self.dimension + column];
            }
        }
        self.gram = gram;
        self.response.resize(dimension, 0.0);
        self.dimension = dimension;
    }

    /// Adds one outcome with sparse features `x` (index, value) and `reward`.
    pub fn add(&mut self, x: &[(usize, f64)], reward: f64) {
        for &(i, xi) in x {
            self.response[i] += reward * xi;
            for &(j, xj) in x {
                self.gram[i * self.dimension + j] += xi * xj;
            }
        }
        self.outcomes += 1;
        if reward > 0.0 {
            self.accepted += 1;
        }
    }

    /// The sums as little-endian bytes: gram then response.
    pub fn to_bytes(&self) -> (Vec<u8>, Vec<u8>) {
        let encode = |values: &[f64]| values.iter().flat_map(|v| v.to_le_bytes()).collect();
        (encode(&self.gram), encode(&self.response))
    }

    /// Reads sums written by [`Statistics::to_bytes`]; `None` when the sizes
    /// do not match `dimension`.
    pub fn from_bytes(
        dimension: usize,
        gram: &[u8],
        response: &[u8],
        outcomes: i64,
        accepted: i64,
    ) -> Option<Self> {
        let decode = |bytes: &[u8]| -> Vec<f64> {
            bytes
                .chunks_exact(8)
                .map(|chunk| {
                    let mut array = [0u8; 8];
                    array.copy_from_slice(chunk);
                    f64::from_le_bytes(array)
                })
                .collect()
        };
        let gram = decode(gram);
        let response = decode(response);
        (gram.len() == dimension * dimension && response.len() == dimension).then_some(Self {
            dimension,
            gram,
            response,
            outcomes,
            accepted,
        })
    }
}

/// Stored statistics of one level, with the learning group of an action.
#[derive(Debug, Clone)]
pub struct StoredStatistics {
    /// "global", "group:…" or "action:…".
    pub key: String,
    /// For an action, its group ("kind:category"); else empty.
    pub group: String,
    /// The sums.
    pub statistics: Statistics,
}

/// One level of the model, solved.
#[derive(Debug, Clone)]
struct Level {
    mean: DVector<f64>,
    /// Lower Cholesky factor of λI + XᵀX.
    factor: DMatrix<f64>,
    outcomes: i64,
}

/// The model as solved from the statistics: what scoring reads.
#[derive(Debug, Clone)]
pub struct Model {
    /// The model's version (increased by each fold of outcomes).
    pub version: i64,
    /// Feature names by index.
    pub features: Vec<String>,
    index: HashMap<String, usize>,
    global: Level,
    groups: HashMap<String, Level>,
    actions: HashMap<String, Level>,
}

/// The model's estimate of one action for one decision.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Mean acceptance probability, clamped to 0..1.
    pub mean: f64,
    /// Unclamped linear prediction, for ranking ties and exploration.
    pub raw_mean: f64,
    /// sqrt(xᵀA⁻¹x): the posterior spread before the noise scale.
    pub spread: f64,
    /// True when the action has too few outcomes of its own.
    pub cold_start: bool,
    /// Each feature's contribution θ_i·x_i, by feature name.
    pub contributions: Vec<(String, f64)>,
}

fn solve_level(
    statistics: Option<&Statistics>,
    dimension: usize,
    prior: &DVector<f64>,
) -> Option<Level> {
    let mut precision = DMatrix::<f64>::identity(dimension, dimension) * PRIOR_PRECISION;
    let mut target = prior * PRIOR_PRECISION;
    let mut outcomes = 0;
    if let Some(statistics) = statistics {
        let mut statistics = statistics.clone();
        statistics.grow(dimension);
        for row in 0..dimension.min(statistics.dimension) {
            for column in 0..dimension.min(statistics.dimension) {
                precision[(row, column)] += statistics.gram[row * statistics.dimension + column];
            }
            target[row] += statistics.response[row];
        }
        outcomes = statistics.outcomes;
    }
    let cholesky = nalgebra::Cholesky::new(precision)?;
    let mean = cholesky.solve(&target);
    Some(Level {
        mean,
        factor: cholesky.l(),
        outcomes,
    })
}

impl Model {
    /// The model before anything was learnt.
    pub fn empty() -> Self {
        Self::solve(0, Vec::new(), &[])
    }

    /// Solves the model from its statistics over `features`.
    pub fn solve(version: i64, features: Vec<String>, statistics: &[StoredStatistics]) -> Self {
        let dimension = features.len();
        let index = features
            .iter()
            .enumerate()
            .map(|(i, name)| (name.clone(), i))
            .collect();
        let by_key: HashMap<&str, &StoredStatistics> = statistics
            .iter()
            .map(|stored| (stored.key.as_str(), stored))
            .collect();
        let mut prior = DVector::zeros(dimension);
        if let Some(bias) = index_of(&features, super::features::BIAS) {
            prior[bias] = PRIOR_ACCEPTANCE;
        }
        let fallback = || Level {
            mean: prior.clone(),
            factor: DMatrix::identity(dimension, dimension) * PRIOR_PRECISION.sqrt(),
            outcomes: 0,
        };
        let global = solve_level(
            by_key.get(GLOBAL).map(|stored| &stored.statistics),
            dimension,
            &prior,
        )
        .unwrap_or_else(fallback);
        let mut groups = HashMap::new();
        for stored in statistics {
            if let Some(group) = stored.key.strip_prefix("group:")
                && let Some(level) = solve_level(Some(&stored.statistics), dimension, &global.mean)
            {
                groups.insert(group.to_string(), level);
            }
        }
        let mut actions = HashMap::new();
        for stored in statistics {
            if let Some(action) = stored.key.strip_prefix("action:") {
                let prior = groups
                    .get(&stored.group)
                    .map(|level: &Level| &level.mean)
                    .unwrap_or(&global.mean);
                if let Some(level) = solve_level(Some(&stored.statistics), dimension, prior) {
                    actions.insert(action.to_string(), level);
                }
            }
        }
        Self {
            version,
            features,
            index,
            global,
            groups,
            actions,
        }
    }

    /// The dense feature vector of `features` (features the model has not
    /// learnt about yet have weight 0 and are left out).
    pub fn vector(&self, features: &Features) -> DVector<f64> {
        let mut x = DVector::zeros(self.features.len());
        for (name, value) in features {
            if let Some(&i) = self.index.get(name) {
                x[i] = *value;
            }
        }
        x
    }

    /// Final outcomes of the action's own that the model learnt from.
    pub fn action_outcomes(&self, action_id: &str) -> i64 {
        self.actions
            .get(action_id)
            .map_or(0, |level| level.outcomes)
    }

    /// The estimate of `action_id` (in learning group `group`) for `x`.
    pub fn estimate(&self, action_id: &str, group: &str, x: &DVector<f64>) -> Estimate {
        if !self.index.contains_key(super::features::BIAS) {
            // Nothing learnt yet: the prior alone.
            return Estimate {
                mean: PRIOR_ACCEPTANCE,
                raw_mean: PRIOR_ACCEPTANCE,
                spread: 1.0 / PRIOR_PRECISION.sqrt(),
                cold_start: true,
                contributions: Vec::new(),
            };
        }
        let own = self.actions.get(action_id);
        let (mean, spread) = match own {
            Some(level) => (level.mean.dot(x), spread(&level.factor, x)),
            None => {
                let prior = self.groups.get(group).unwrap_or(&self.global);
                (
                    prior.mean.dot(x),
                    x.norm() / PRIOR_PRECISION.sqrt(), // A = λI for an action never learnt
                )
            }
        };
        let weights = own
            .map(|level| &level.mean)
            .or_else(|| self.groups.get(group).map(|level| &level.mean))
            .unwrap_or(&self.global.mean);
        let contributions = x
            .iter()
            .enumerate()
            .filter(|(_, value)| **value != 0.0)
            .map(|(i, value)| (self.features[i].clone(), weights[i] * value))
            .collect();
        Estimate {
            mean: mean.clamp(0.0, 1.0),
            raw_mean: mean,
            spread,
            cold_start: own.is_none_or(|level| level.outcomes < COLD_START_OUTCOMES),
            contributions,
        }
    }
}

fn index_of(features: &[String], name: &str) -> Option<usize> {
    features.iter().position(|feature| feature == name)
}

fn spread(factor: &DMatrix<f64>, x: &DVector<f64>) -> f64 {
    factor
        .solve_lower_triangular(x)
        .map_or_else(|| x.norm(), |w| w.norm())
}

/// How a policy turns estimates into choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Linear Thompson sampling.
    ThompsonSampling,
    /// Linear upper confidence bound.
    UpperConfidenceBound,
    /// Epsilon-greedy.
    EpsilonGreedy,
    /// Uniformly random.
    UniformRandom,
}

impl Method {
    /// The exploration parameter used when a policy sets none.
    pub fn default_exploration(self) -> f64 {
        match self {
            Self::ThompsonSampling | Self::UpperConfidenceBound => 1.0,
            Self::EpsilonGreedy => 0.05,
            Self::UniformRandom => 0.0,
        }
    }
}

/// A policy's scorer configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scorer {
    /// The method.
    pub method: Method,
    /// Its exploration parameter; `None` means the method's default.
    pub exploration: Option<f64>,
    /// Candidates scoring below this are left out.
    pub minimum_score: f64,
}

impl Scorer {
    /// The server's default: Thompson sampling with its default exploration.
    pub fn default_live() -> Self {
        Self {
            method: Method::ThompsonSampling,
            exploration: None,
            minimum_score: 0.0,
        }
    }

    /// The exploration parameter in force.
    pub fn exploration(&self) -> f64 {
        self.exploration
            .unwrap_or_else(|| self.method.default_exploration())
    }
}

/// A candidate as the ranking sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scored {
    /// Mean acceptance probability (clamped).
    pub mean: f64,
    /// Posterior spread before the noise scale.
    pub spread: f64,
    /// value factor × priority factor.
    pub factor: f64,
}

/// One position of a ranking.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ranked {
    /// Index into the candidates.
    pub index: usize,
    /// The propensity the ranking used (after exploration).
    pub ranking_propensity: f64,
    /// ranking propensity × factor.
    pub score: f64,
    /// Probability with which this candidate was put here, given those above.
    pub probability: f64,
    /// True when it is here to explore rather than for the best estimate.
    pub explored: bool,
}

fn best_by(candidates: &[Scored], remaining: &[usize], key: impl Fn(&Scored) -> f64) -> usize {
    let mut best = remaining[0];
    for &i in remaining {
        if key(&candidates[i]) > key(&candidates[best]) {
            best = i;
        }
    }
    best
}

fn standard_normal(rng: &mut impl Rng) -> f64 {
    // Box–Muller: two uniforms to one standard normal.
    let u1: f64 = rng.random::<f64>().max(f64::MIN_POSITIVE);
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

fn thompson_draw(candidate: &Scored, scale: f64, rng: &mut impl Rng) -> f64 {
    (candidate.mean + scale * candidate.spread * standard_normal(rng)).clamp(0.0, 1.0)
}

/// Ranks every candidate under `scorer`, best first, with the probability
/// of each position (estimated by resampling for the first `positions`
/// under Thompson sampling, and a plain 1/n below them).
pub fn rank(
    scorer: &Scorer,
    candidates: &[Scored],
    positions: usize,
    rng: &mut impl Rng,
) -> Vec<Ranked> {
    let exploration = scorer.exploration();
    let mut remaining: Vec<usize> = (0..candidates.len()).collect();
    let mut ranking = Vec::with_capacity(candidates.len());
    let greedy = |c: &Scored| c.mean * c.factor;
    match scorer.method {
        Method::ThompsonSampling => {
            let scale = exploration * NOISE_SCALE;
            let draws: Vec<f64> = candidates
                .iter()
                .map(|c| thompson_draw(c, scale, rng))
                .collect();
            let mut order = remaining.clone();
            order.sort_by(|&a, &b| {
                (draws[b] * candidates[b].factor).total_cmp(&(draws[a] * candidates[a].factor))
            });
            // Selection probabilities by resampling the posterior: how often
            // each candidate comes first among those not ranked above it.
            // A few positions beyond those asked for: volume limits may
            // hand a slot to the next candidates.
            let positions = order.len().min(positions + 2);
            let mut wins = vec![0usize; positions];
            for _ in 0..RESAMPLES {
                let sample: Vec<f64> = candidates
                    .iter()
                    .map(|c| thompson_draw(c, scale, rng) * c.factor)
                    .collect();
                for (position, win) in wins.iter_mut().enumerate() {
                    let chosen = order[position];
                    if order[position..]
                        .iter()
                        .all(|&other| other == chosen || sample[other] < sample[chosen])
                    {
                        *win += 1;
                    }
                }
            }
            for (position, &i) in order.iter().enumerate() {
                let best = best_by(candidates, &order[position..], greedy);
                let probability = if position < positions {
                    (wins[position] as f64 + 0.5) / (RESAMPLES as f64 + 1.0)
                } else {
                    1.0 / (order.len() - position) as f64
                };
                ranking.push(Ranked {
                    index: i,
                    ranking_propensity: draws[i],
                    score: draws[i] * candidates[i].factor,
                    probability: probability.min(1.0),
                    explored: best != i,
                });
            }
        }
        Method::UpperConfidenceBound => {
            let scale = exploration * NOISE_SCALE;
            let bound = |c: &Scored| (c.mean + scale * c.spread).max(0.0);
            while !remaining.is_empty() {
                let i = best_by(candidates, &remaining, |c| bound(c) * c.factor);
                let best = best_by(candidates, &remaining, greedy);
                remaining.retain(|&j| j != i);
                ranking.push(Ranked {
                    index: i,
                    ranking_propensity: bound(&candidates[i]),
                    score: bound(&candidates[i]) * candidates[i].factor,
                    probability: 1.0,
                    explored: best != i,
                });
            }
        }
        Method::EpsilonGreedy => {
            let epsilon = exploration.clamp(0.0, 1.0);
            while !remaining.is_empty() {
                let best = best_by(candidates, &remaining, greedy);
                let n = remaining.len() as f64;
                let explore = rng.random::<f64>() < epsilon;
                let i = if explore {
                    remaining[rng.random_range(0..remaining.len())]
                } else {
                    best
                };
                let probability = epsilon / n + if i == best { 1.0 - epsilon } else { 0.0 };
                remaining.retain(|&j| j != i);
                ranking.push(Ranked {
                    index: i,
                    ranking_propensity: candidates[i].mean,
                    score: candidates[i].mean * candidates[i].factor,
                    probability,
                    explored: i != best,
                });
            }
        }
        Method::UniformRandom => {
            while !remaining.is_empty() {
                let best = best_by(candidates, &remaining, greedy);
                let n = remaining.len() as f64;
                let i = remaining[rng.random_range(0..remaining.len())];
                remaining.retain(|&j| j != i);
                ranking.push(Ranked {
                    index: i,
                    ranking_propensity: candidates[i].mean,
                    score: candidates[i].mean * candidates[i].factor,
                    probability: 1.0 / n,
                    explored: i != best,
                });
            }
        }
    }
    ranking
}

/// The probability that `scorer` ranks candidate `chosen` first (and keeps
/// it above the minimum score), for offline evaluation.
pub fn first_choice_probability(
    scorer: &Scorer,
    candidates: &[Scored],
    chosen: usize,
    rng: &mut impl Rng,
) -> f64 {
    let exploration = scorer.exploration();
    let minimum = scorer.minimum_score;
    let n = candidates.len();
    if n == 0 {
        return 0.0;
    }
    let greedy = |c: &Scored| c.mean * c.factor;
    let all: Vec<usize> = (0..n).collect();
    match scorer.method {
        Method::ThompsonSampling => {
            let scale = exploration * NOISE_SCALE;
            let mut wins = 0usize;
            for _ in 0..RESAMPLES {
                let sample: Vec<f64> = candidates
                    .iter()
                    .map(|c| thompson_draw(c, scale, rng) * c.factor)
                    .collect();
                if sample[chosen] >= minimum && all.iter().all(|&j| sample[j] <= sample[chosen]) {
                    wins += 1;
                }
            }
            wins as f64 / RESAMPLES as f64
        }
        Method::UpperConfidenceBound => {
            let scale = exploration * NOISE_SCALE;
            let bound = |c: &Scored| (c.mean + scale * c.spread).max(0.0) * c.factor;
            let best = best_by(candidates, &all, bound);
            if best == chosen && bound(&candidates[chosen]) >= minimum {
                1.0
            } else {
                0.0
            }
        }
        Method::EpsilonGreedy => {
            if greedy(&candidates[chosen]) < minimum {
                return 0.0;
            }
            let epsilon = exploration.clamp(0.0, 1.0);
            let best = best_by(candidates, &all, greedy);
            epsilon / n as f64 + if best == chosen { 1.0 - epsilon } else { 0.0 }
        }
        Method::UniformRandom => {
            if greedy(&candidates[chosen]) < minimum {
                0.0
            } else {
                1.0 / n as f64
            }
        }
    }
}

/// The candidate `scorer` would rank first without exploration.
pub fn mode(scorer: &Scorer, candidates: &[Scored]) -> Option<usize> {
    if candidates.is_empty() {
        return None;
    }
    let all: Vec<usize> = (0..candidates.len()).collect();
    Some(match scorer.method {
        Method::UpperConfidenceBound => {
            let scale = scorer.exploration() * NOISE_SCALE;
            best_by(candidates, &all, |c| {
                (c.mean + scale * c.spread).max(0.0) * c.factor
            })
        }
        _ => best_by(candidates, &all, |c| c.mean * c.factor),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    fn learn(outcomes: &[(&str, &str, Vec<usize>, f64)], dimension: usize) -> Model {
        let mut stats: HashMap<String, StoredStatistics> = HashMap::new();
        for (action, group, active, reward) in outcomes {
            let x: Vec<(usize, f64)> = active.iter().map(|&i| (i, 1.0)).collect();
            for (key, group) in [
                (GLOBAL.to_string(), String::new()),
                (group_key(group), String::new()),
                (action_key(action), group.to_string()),
            ] {
                stats
                    .entry(key.clone())
                    .or_insert_with(|| StoredStatistics {
                        key,
                        group,
                        statistics: Statistics::new(dimension),
                    })
                    .statistics
                    .add(&x, *reward);
            }
        }
        let features = (0..dimension)
            .map(|i| {
                if i == 0 {
                    "bias".to_string()
                } else {
                    format!("f{i}")
                }
            })
            .collect();
        Model::solve(1, features, &stats.into_values().collect::<Vec<_>>())
    }

    #[test]
    fn statistics_round_trip_and_grow_exactly() {
        let mut statistics = Statistics::new(2);
        statistics.add(&[(0, 1.0), (1, 2.0)], 1.0);
        let (gram, response) = statistics.to_bytes();
        let back = Statistics::from_bytes(2, &gram, &response, 1, 1).unwrap();
        assert_eq!(back, statistics);
        let mut grown = statistics.clone();
        grown.grow(3);
        assert_eq!(
            grown.gram,
            vec![1.0, 2.0, 0.0, 2.0, 4.0, 0.0, 0.0, 0.0, 0.0]
        );
        assert_eq!(grown.response, vec![1.0, 2.0, 0.0]);
    }

    #[test]
    fn the_model_learns_which_context_likes_which_action() {
        // f0 = bias, f1 = young, f2 = family. "data" is accepted by the
        // young, "family" by families.
        let mut outcomes = Vec::new();
        for i in 0..400 {
            let young = i % 2 == 0;
            let active = if young { vec![0, 1] } else { vec![0, 2] };
            outcomes.push((
                "data",
                "sales:data",
                active.clone(),
                f64::from(young && i % 4 == 0),
            ));
            outcomes.push((
                "family",
                "sales:family",
                active,
                f64::from(!young && i % 4 == 1),
            ));
        }
        let model = learn(&outcomes, 3);
        let young = DVector::from_vec(vec![1.0, 1.0, 0.0]);
        let family = DVector::from_vec(vec![1.0, 0.0, 1.0]);
        let data_young = model.estimate("data", "sales:data", &young);
        let family_young = model.estimate("family", "sales:family", &young);
        assert!(
            data_young.mean > family_young.mean + 0.2,
            "{data_young:?} {family_young:?}"
        );
        assert!(
            model.estimate("family", "sales:family", &family).mean
                > model.estimate("data", "sales:data", &family).mean + 0.2
        );
        assert!(!data_young.cold_start);
        // A new action of the data group starts from what the group learnt.
        let newcomer = model.estimate("data-2", "sales:data", &young);
        assert!(newcomer.cold_start);
        assert!(newcomer.mean > 0.2, "{newcomer:?}");
        // Uncertainty shrinks with data.
        assert!(data_young.spread < newcomer.spread);
    }

    #[test]
    fn selection_probabilities_match_each_method() {
        let candidates = [
            Scored {
                mean: 0.10,
                spread: 0.5,
                factor: 1.0,
            },
            Scored {
                mean: 0.05,
                spread: 0.5,
                factor: 1.0,
            },
        ];
        let mut rng = SmallRng::seed_from_u64(7);
        let greedy = Scorer {
            method: Method::EpsilonGreedy,
            exploration: Some(0.2),
            minimum_score: 0.0,
        };
        let p = first_choice_probability(&greedy, &candidates, 0, &mut rng);
        assert!((p - 0.9).abs() < 1e-9);
        let uniform = Scorer {
            method: Method::UniformRandom,
            exploration: None,
            minimum_score: 0.0,
        };
        assert_eq!(
            first_choice_probability(&uniform, &candidates, 1, &mut rng),
            0.5
        );
        let thompson = Scorer::default_live();
        let p0 = first_choice_probability(&thompson, &candidates, 0, &mut rng);
        assert!(p0 > 0.5 && p0 < 1.0, "{p0}");
        let ranking = rank(&thompson, &candidates, 2, &mut rng);
        assert_eq!(ranking.len(), 2);
        assert!(
            ranking
                .iter()
                .all(|r| r.probability > 0.0 && r.probability <= 1.0)
        );
        let ucb = Scorer {
            method: Method::UpperConfidenceBound,
            exploration: Some(0.0),
            minimum_score: 0.0,
        };
        let ranking = rank(&ucb, &candidates, 2, &mut rng);
        assert_eq!(ranking[0].index, 0);
        assert_eq!(ranking[0].probability, 1.0);
        assert_eq!(mode(&ucb, &candidates), Some(0));
    }
}
