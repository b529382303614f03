//! The recommendation quality benchmark: a seeded telecom world with hidden,
//! context-dependent acceptance probabilities, driven through the real
//! service over gRPC.
//!
//! # The world
//! Customers have a tenure, a monthly spend, a data usage, a device age, a
//! plan and sometimes a family; each decision happens on the web or in the
//! app, on a device, at a stage of a guided shopping journey or outside it.
//! Twelve actions (upgrades, add-ons, a family plan, a new device, bundles,
//! retention offers, a tip and a callback) each have an eligibility rule and
//! a hidden acceptance probability `sigmoid(base + Σ effects)`: a few strong
//! designed effects (heavy data users take data add-ons, customers near
//! their contract's end take retention discounts, families take family
//! plans, shoppers at checkout take insurance) plus seeded noise on every
//! context predicate, giving acceptance rates of about 1–15%.
//!
//! # The measure
//! For each decision the simulator draws the customer's answer from the
//! hidden probability of the action the service chose, and reports it
//! (accepted, or ignored). It compares, over the same contexts:
//! - the service: observed acceptance rate, and its expected rate (the mean
//!   hidden probability of its choices, less noisy);
//! - uniform random choice among the eligible actions (expected);
//! - a context-free popularity baseline: always the action with the best
//!   average acceptance over the whole population that is eligible
//!   (expected);
//! - the oracle that knows the hidden probabilities (expected).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use cairn_contract::common::v1::{Channel, CustomerRef, Identifier, IdentifierType, Value};
use cairn_contract::common::v1::{customer_ref, value};
use cairn_contract::profile::v1 as profile;
use cairn_contract::profile::v1::profile_service_client::ProfileServiceClient;
use cairn_contract::recommendation::v1 as rec;
use cairn_contract::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use cairn_runtime::ServiceKind;
use futures::StreamExt;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::Mutex;
use tonic::transport::Channel as Transport;

use crate::suite::BenchSuite;

/// Options of the quality benchmark.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Decisions per seed.
    #[arg(long, default_value_t = 200_000)]
    decisions: usize,
    /// Seeds, each a separate run on a fresh suite.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    seeds: Vec<u64>,
    /// Simulated customers.
    #[arg(long, default_value_t = 2_000)]
    customers: usize,
    /// Decisions in flight at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Administrative PostgreSQL URL (a database per run is created there).
    #[arg(
        long,
        env = "CAIRN_TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    database_url: String,
    /// Redis URL.
    #[arg(
        long,
        env = "CAIRN_TEST_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,
}

/// A simulated customer.
#[derive(Debug, Clone)]
struct Customer {
    profile_id: String,
    tenure: f64,
    spend: f64,
    usage: f64,
    device_age: f64,
    plan: &'static str,
    family: bool,
}

/// Where a decision happens.
#[derive(Debug, Clone, Copy)]
struct Moment {
    app: bool,
    device: &'static str,
    stage: Option<&'static str>,
}

/// The context predicates the hidden world is built on.
const PREDICATES: &[&str] = &[
    "young_contract",
    "contract_end",
    "long_tenure",
    "high_value",
    "low_spend",
    "heavy_data",
    "light_data",
    "old_device",
    "new_device",
    "family",
    "plan_basic",
    "plan_plus",
    "plan_premium",
    "app",
    "ios",
    "android",
    "desktop",
    "browse",
    "configure",
    "checkout",
];

fn predicates(customer: &Customer, moment: &Moment) -> [bool; 20] {
    [
        customer.tenure < 4.0,
        (16.0..32.0).contains(&customer.tenure),
        customer.tenure >= 32.0,
        customer.spend >= 64.0,
        customer.spend < 32.0,
        customer.usage >= 16.0,
        customer.usage < 4.0,
        customer.device_age >= 16.0,
        customer.device_age < 4.0,
        customer.family,
        customer.plan == "basic",
        customer.plan == "plus",
        customer.plan == "premium",
        moment.app,
        moment.device == "ios",
        moment.device == "android",
        moment.device == "desktop",
        moment.stage == Some("browse"),
        moment.stage == Some("configure_plan"),
        moment.stage == Some("checkout"),
    ]
}

/// One action of the world.
struct WorldAction {
    id: &'static str,
    kind: rec::ActionKind,
    category: &'static str,
    rule: &'static str,
    eligible: fn(&Customer) -> bool,
    base: f64,
    effects: Vec<f64>,
}

fn designed(pairs: &[(&str, f64)]) -> Vec<f64> {
    PREDICATES
        .iter()
        .map(|name| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0.0, |(_, w)| *w)
        })
        .collect()
}

fn world(seed: u64) -> Vec<WorldAction> {
    use rec::ActionKind::*;
    let mut actions = vec![
        WorldAction {
            id: "upgrade-5g",
            kind: SalesOffer,
            category: "upgrade",
            rule: "",
            eligible: |_| true,
            base: -4.2,
            effects: designed(&[("heavy_data", 2.0), ("app", 0.8), ("plan_premium", -1.0)]),
        },
        WorldAction {
            id: "data-addon-10gb",
            kind: SalesOffer,
            category: "add_on",
            rule: "",
            eligible: |_| true,
            base: -4.0,
            effects: designed(&[
                ("heavy_data", 2.2),
                ("plan_basic", 1.0),
                ("light_data", -1.5),
            ]),
        },
        WorldAction {
            id: "roaming-pass",
            kind: SalesOffer,
            category: "add_on",
            rule: "",
            eligible: |_| true,
            base: -4.4,
            effects: designed(&[("high_value", 1.6), ("desktop", 1.0), ("long_tenure", 0.6)]),
        },
        WorldAction {
            id: "family-plan",
            kind: SalesOffer,
            category: "family_plan",
            rule: "",
            eligible: |_| true,
            base: -4.6,
            effects: designed(&[("family", 2.8), ("high_value", 0.5)]),
        },
        WorldAction {
            id: "new-device",
            kind: SalesOffer,
            category: "device",
            rule: "attributes.device_age_months >= 12.0",
            eligible: |c| c.device_age >= 12.0,
            base: -4.0,
            effects: designed(&[("old_device", 2.2), ("ios", 0.8), ("browse", 0.6)]),
        },
        WorldAction {
            id: "streaming-bundle",
            kind: SalesOffer,
            category: "bundle",
            rule: "",
            eligible: |_| true,
            base: -4.1,
            effects: designed(&[("app", 1.4), ("young_contract", 1.2), ("android", 0.6)]),
        },
        WorldAction {
            id: "retention-discount",
            kind: RetentionOffer,
            category: "retention_discount",
            rule: "attributes.tenure_months >= 12.0",
            eligible: |c| c.tenure >= 12.0,
            base: -4.5,
            effects: designed(&[("contract_end", 3.0), ("low_spend", 0.8)]),
        },
        WorldAction {
            id: "loyalty-reward",
            kind: RetentionOffer,
            category: "loyalty",
            rule: "",
            eligible: |_| true,
            base: -4.3,
            effects: designed(&[("long_tenure", 2.2), ("plan_premium", 1.0)]),
        },
        WorldAction {
            id: "premium-plan",
            kind: SalesOffer,
            category: "upgrade",
            rule: "attributes.plan != 'premium'",
            eligible: |c| c.plan != "premium",
            base: -4.8,
            effects: designed(&[("high_value", 2.2), ("configure", 1.5), ("plan_plus", 1.0)]),
        },
        WorldAction {
            id: "device-insurance",
            kind: SalesOffer,
            category: "add_on",
            rule: "",
            eligible: |_| true,
            base: -4.3,
            effects: designed(&[("checkout", 2.4), ("new_device", 1.0)]),
        },
        WorldAction {
            id: "usage-tip",
            kind: Information,
            category: "tip",
            rule: "",
            eligible: |_| true,
            base: -4.4,
            effects: designed(&[("light_data", 1.6), ("young_contract", 0.8)]),
        },
        WorldAction {
            id: "setup-callback",
            kind: Service,
            category: "callback",
            rule: "",
            eligible: |_| true,
            base: -4.2,
            effects: designed(&[("young_contract", 1.8), ("desktop", 0.8)]),
        },
    ];
    // Seeded noise on every predicate of every action: the world differs by
    // seed, and no effect is exactly zero.
    let mut rng = SmallRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    for action in &mut actions {
        action.base += rng.random_range(-0.3..0.3) - 0.8;
        for effect in &mut action.effects {
            *effect += rng.random_range(-0.4..0.4);
        }
    }
    actions
}

fn probability(action: &WorldAction, customer: &Customer, moment: &Moment) -> f64 {
    let active = predicates(customer, moment);
    let logit = action.base
        + action
            .effects
            .iter()
            .zip(active)
            .filter(|(_, on)| *on)
            .map(|(w, _)| w)
            .sum::<f64>();
    1.0 / (1.0 + (-logit).exp())
}

fn customer_at(rng: &mut SmallRng) -> Customer {
    let plan = match rng.random_range(0..100) {
        0..50 => "basic",
        50..85 => "plus",
        _ => "premium",
    };
    Customer {
        profile_id: String::new(),
        tenure: rng.random_range(0.0..72.0_f64).floor(),
        spend: (15.0 + 135.0 * rng.random::<f64>().powi(2)).floor(),
        usage: if rng.random_bool(0.6) {
            rng.random_range(0.0..8.0_f64).floor()
        } else {
            rng.random_range(8.0..60.0_f64).floor()
        },
        device_age: rng.random_range(0.0..48.0_f64).floor(),
        plan,
        family: rng.random_bool(0.3),
    }
}

fn moment_at(rng: &mut SmallRng) -> Moment {
    let app = rng.random_bool(0.45);
    let device = if app {
        if rng.random_bool(0.45) {
            "ios"
        } else {
            "android"
        }
    } else {
        match rng.random_range(0..100) {
            0..30 => "ios",
            30..60 => "android",
            _ => "desktop",
        }
    };
    let stage = match rng.random_range(0..100) {
        0..40 => None,
        40..65 => Some("browse"),
        65..85 => Some("configure_plan"),
        _ => Some("checkout"),
    };
    Moment { app, device, stage }
}

fn number(value: f64) -> Value {
    Value {
        kind: Some(value::Kind::NumberValue(value)),
    }
}

fn text(value: &str) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(value.into())),
    }
}

fn by_id(id: &str) -> Option<CustomerRef> {
    Some(CustomerRef {
        customer: Some(customer_ref::Customer::ProfileId(id.into())),
    })
}

async fn connect(address: String) -> anyhow::Result<Transport> {
    Ok(tonic::transport::Endpoint::from_shared(address)?
        .tcp_nodelay(true)
        .connect()
        .await?)
}

/// Creates segments, customers with consent and families, the catalogue,
/// and a contact policy without the all-channels cap.
async fn set_up(
    suite: &BenchSuite,
    seed: u64,
    count: usize,
    actions: &[WorldAction],
) -> anyhow::Result<Vec<Customer>> {
    let profile_channel = connect(suite.address(ServiceKind::Profile)).await?;
    let mut profiles = ProfileServiceClient::new(profile_channel.clone());
    for (id, rule) in [
        ("high_value", "attributes.monthly_spend >= 64.0"),
        ("heavy_data", "attributes.data_usage_gb >= 16.0"),
    ] {
        profiles
            .create_segment(profile::CreateSegmentRequest {
                segment: Some(profile::Segment {
                    segment_id: id.into(),
                    display_name: id.into(),
                    rule: rule.into(),
                    ..Default::default()
                }),
            })
            .await?;
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let customers: Vec<Customer> = (0..count).map(|_| customer_at(&mut rng)).collect();
    let created = futures::stream::iter(customers.into_iter().enumerate().map(|(i, customer)| {
        let mut profiles = ProfileServiceClient::new(profile_channel.clone());
        async move {
            let response = profiles
                .create_profile(profile::CreateProfileRequest {
                    identifiers: vec![Identifier {
                        r#type: IdentifierType::CrmId as i32,
                        value: format!("bench-{seed}-{i}"),
                        custom_type: String::new(),
                    }],
                    attributes: [
                        ("tenure_months".to_string(), number(customer.tenure)),
                        ("monthly_spend".to_string(), number(customer.spend)),
                        ("data_usage_gb".to_string(), number(customer.usage)),
                        ("device_age_months".to_string(), number(customer.device_age)),
                        ("plan".to_string(), text(customer.plan)),
                    ]
                    .into_iter()
                    .collect(),
                    ..Default::default()
                })
                .await?
                .into_inner();
            let id = response.profile.context("no profile")?.profile_id;
            for channel in [Channel::Web, Channel::MobileApp] {
                profiles
                    .record_consent(profile::RecordConsentRequest {
                        customer: by_id(&id),
                        consent: Some(profile::Consent {
                            purpose: "marketing".into(),
                            channel: channel as i32,
                            granted: true,
                            source: "bench".into(),
                            ..Default::default()
                        }),
                    })
                    .await?;
            }
            if customer.family {
                let group = profiles
                    .create_group(profile::CreateGroupRequest {
                        group: Some(profile::Group {
                            r#type: profile::GroupType::Family as i32,
                            display_name: "family".into(),
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    })
                    .await?
                    .into_inner()
                    .group
                    .context("no group")?;
                profiles
                    .add_group_member(profile::AddGroupMemberRequest {
                        group_id: group.group_id,
                        customer: by_id(&id),
                        role: profile::GroupRole::Member as i32,
                    })
                    .await?;
            }
            Ok::<_, anyhow::Error>(Customer {
                profile_id: id,
                ..customer
            })
        }
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    let customers = created.into_iter().collect::<anyhow::Result<Vec<_>>>()?;

    let mut recommendation = RecommendationServiceClient::new(
        connect(suite.address(ServiceKind::Recommendation)).await?,
    );
    for action in actions {
        recommendation
            .create_action(rec::CreateActionRequest {
                action: Some(rec::Action {
                    action_id: action.id.into(),
                    name: action.id.replace('-', " "),
                    kind: action.kind as i32,
                    category: action.category.into(),
                    channels: vec![Channel::Web as i32, Channel::MobileApp as i32],
                    eligibility_rule: action.rule.into(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await?;
    }
    recommendation
        .update_contact_policy(rec::UpdateContactPolicyRequest {
            contact_policy: Some(rec::ContactPolicy {
                all_channels: Some(rec::ContactCaps::default()),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["all_channels".into()],
            }),
        })
        .await?;
    Ok(customers)
}

/// Figures of one stretch of decisions.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    decisions: f64,
    accepted: f64,
    expected: f64,
    oracle: f64,
    uniform: f64,
    popular: f64,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.decisions += other.decisions;
        self.accepted += other.accepted;
        self.expected += other.expected;
        self.oracle += other.oracle;
        self.uniform += other.uniform;
        self.popular += other.popular;
    }

    fn line(&self, label: &str) -> String {
        let n = self.decisions.max(1.0);
        let rate = |x: f64| 100.0 * x / n;
        format!(
            "| {label} | {:.0} | {:.2}% | {:.2}% | {:.2}% | {:.2}% | {:.2}% | {:.1}% | {:.1}% | {:.1}% |",
            self.decisions,
            rate(self.accepted),
            rate(self.expected),
            rate(self.oracle),
            rate(self.uniform),
            rate(self.popular),
            100.0 * self.accepted / self.oracle.max(1e-9),
            100.0 * self.expected / self.oracle.max(1e-9),
            100.0 * self.popular / self.oracle.max(1e-9),
        )
    }
}

/// Runs the benchmark for every seed and prints the figures.
pub async fn run(options: Options) -> anyhow::Result<()> {
    println!(
        "| seed, stretch | decisions | service observed | service expected | oracle | uniform random | popularity | observed / oracle | expected / oracle | popularity / oracle |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &seed in &options.seeds {
        run_seed(&options, seed).await?;
    }
    Ok(())
}

async fn run_seed(options: &Options, seed: u64) -> anyhow::Result<()> {
    let actions = Arc::new(world(seed));
    let suite = BenchSuite::start(
        &options.database_url,
        &options.redis_url,
        &[ServiceKind::Profile, ServiceKind::Recommendation],
    )
    .await?;
    let customers = Arc::new(set_up(&suite, seed, options.customers, &actions).await?);

    // The popularity order: actions by their mean hidden probability over
    // the population (a large sample of customers and moments).
    let mut rng = SmallRng::seed_from_u64(seed ^ 0xABCD);
    let mut mean = vec![0.0; actions.len()];
    for _ in 0..20_000 {
        let customer = &customers[rng.random_range(0..customers.len())];
        let moment = moment_at(&mut rng);
        for (i, action) in actions.iter().enumerate() {
            if (action.eligible)(customer) {
                mean[i] += probability(action, customer, &moment);
            }
        }
    }
    let mut popularity: Vec<usize> = (0..actions.len()).collect();
    popularity.sort_by(|&a, &b| mean[b].total_cmp(&mean[a]));
    let popularity = Arc::new(popularity);

    let transport = connect(suite.address(ServiceKind::Recommendation)).await?;
    let fifths = Arc::new(Mutex::new(vec![Tally::default(); 5]));
    let next = Arc::new(AtomicUsize::new(0));
    let total = options.decisions;
    let started = Instant::now();
    let workers: Vec<_> = (0..options.concurrency)
        .map(|_| {
            let (actions, customers, popularity, fifths, next) = (
                actions.clone(),
                customers.clone(),
                popularity.clone(),
                fifths.clone(),
                next.clone(),
            );
            let mut client = RecommendationServiceClient::new(transport.clone());
            tokio::spawn(async move {
                let mut local = vec![Tally::default(); 5];
                loop {
                    let t = next.fetch_add(1, Ordering::Relaxed);
                    if t >= total {
                        break;
                    }
                    let mut rng = SmallRng::seed_from_u64(seed.wrapping_mul(1_000_003) ^ t as u64);
                    let customer = &customers[rng.random_range(0..customers.len())];
                    let moment = moment_at(&mut rng);
                    let eligible: Vec<(usize, f64)> = actions
                        .iter()
                        .enumerate()
                        .filter(|(_, action)| (action.eligible)(customer))
                        .map(|(i, action)| (i, probability(action, customer, &moment)))
                        .collect();
                    let oracle = eligible.iter().map(|(_, p)| *p).fold(0.0, f64::max);
                    let uniform = eligible.iter().map(|(_, p)| *p).sum::<f64>()
                        / eligible.len().max(1) as f64;
                    let popular = popularity
                        .iter()
                        .find_map(|i| eligible.iter().find(|(j, _)| j == i).map(|(_, p)| *p))
                        .unwrap_or(0.0);
                    let response = client
                        .decide(rec::DecideRequest {
                            customer: by_id(&customer.profile_id),
                            channel: if moment.app {
                                Channel::MobileApp
                            } else {
                                Channel::Web
                            } as i32,
                            context: Some(rec::DecisionContext {
                                journey_id: if moment.stage.is_some() {
                                    "guided_shopping".into()
                                } else {
                                    String::new()
                                },
                                stage: moment.stage.unwrap_or_default().into(),
                                device: moment.device.into(),
                                ..Default::default()
                            }),
                            max_actions: 1,
                            ..Default::default()
                        })
                        .await?
                        .into_inner();
                    let fifth = (t * 5 / total).min(4);
                    let tally = &mut local[fifth];
                    tally.decisions += 1.0;
                    tally.oracle += oracle;
                    tally.uniform += uniform;
                    tally.popular += popular;
                    if let Some(chosen) = response.actions.first().and_then(|a| a.action.as_ref()) {
                        let p = actions
                            .iter()
                            .find(|action| action.id == chosen.action_id)
                            .map_or(0.0, |action| probability(action, customer, &moment));
                        let accepted = rng.random_bool(p.clamp(0.0, 1.0));
                        tally.expected += p;
                        if accepted {
                            tally.accepted += 1.0;
                        }
                        client
                            .record_outcome(rec::RecordOutcomeRequest {
                                decision_id: response.decision_id.clone(),
                                action_id: chosen.action_id.clone(),
                                outcome: if accepted {
                                    rec::OutcomeType::Accepted
                                } else {
                                    rec::OutcomeType::Ignored
                                } as i32,
                                ..Default::default()
                            })
                            .await?;
                    }
                    if t > 0 && t % 20_000 == 0 {
                        eprintln!("seed {seed}: {t} decisions");
                    }
                }
                let mut shared = fifths.lock().await;
                for (total, mine) in shared.iter_mut().zip(&local) {
                    total.add(mine);
                }
                Ok::<_, anyhow::Error>(())
            })
        })
        .collect();
    for worker in workers {
        worker.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let fifths = fifths.lock().await.clone();
    let mut whole = Tally::default();
    for fifth in &fifths {
        whole.add(fifth);
    }
    println!("{}", whole.line(&format!("seed {seed}, whole run")));
    println!("{}", fifths[4].line(&format!("seed {seed}, last fifth")));
    eprintln!(
        "seed {seed}: {total} decisions with outcomes in {elapsed:.0} s ({:.0} decisions/s, concurrency {})",
        total as f64 / elapsed,
        options.concurrency
    );
    suite.stop(&options.redis_url).await?;
    Ok(())
}

/// Options of the in-process replay of the quality benchmark.
#[derive(clap::Args, Debug, Clone)]
pub struct OfflineOptions {
    /// Decisions per seed.
    #[arg(long, default_value_t = 200_000)]
    decisions: usize,
    /// Seeds.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    seeds: Vec<u64>,
    /// Simulated customers.
    #[arg(long, default_value_t = 2_000)]
    customers: usize,
    /// Decisions between two model refreshes (the service folds and reloads
    /// about every 200 ms).
    #[arg(long, default_value_t = 200)]
    refresh_every: usize,
}

/// The same world and the service's own scorer, in process (no gRPC, no
/// stores): for tuning the bandit quickly. `quality` is the measure.
pub fn run_offline(options: OfflineOptions) -> anyhow::Result<()> {
    use cairn_recommendation::domain::bandit::{
        self, GLOBAL, Model, Scored, Scorer, Statistics, StoredStatistics, action_key, group_key,
    };
    use cairn_recommendation::domain::features::{self, CustomerView, DecisionContext};
    use cairn_runtime::common::TypedValue;
    use std::collections::{BTreeMap, HashMap};

    println!(
        "| seed, stretch | decisions | service observed | service expected | oracle | uniform random | popularity | observed / oracle | expected / oracle | popularity / oracle |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &seed in &options.seeds {
        let actions = world(seed);
        let mut rng = SmallRng::seed_from_u64(seed);
        let customers: Vec<Customer> = (0..options.customers)
            .map(|_| customer_at(&mut rng))
            .collect();
        let views: Vec<CustomerView> = customers
            .iter()
            .map(|c| {
                let mut segments = Vec::new();
                if c.spend >= 64.0 {
                    segments.push("high_value".to_string());
                }
                if c.usage >= 16.0 {
                    segments.push("heavy_data".to_string());
                }
                CustomerView {
                    attributes: BTreeMap::from([
                        ("tenure_months".to_string(), TypedValue::Number(c.tenure)),
                        ("monthly_spend".to_string(), TypedValue::Number(c.spend)),
                        ("data_usage_gb".to_string(), TypedValue::Number(c.usage)),
                        (
                            "device_age_months".to_string(),
                            TypedValue::Number(c.device_age),
                        ),
                        ("plan".to_string(), TypedValue::String(c.plan.to_string())),
                    ]),
                    segments,
                    groups: if c.family {
                        vec![("g".to_string(), "family".to_string())]
                    } else {
                        Vec::new()
                    },
                    stages: BTreeMap::new(),
                }
            })
            .collect();
        let mut mean = vec![0.0; actions.len()];
        let mut sample = SmallRng::seed_from_u64(seed ^ 0xABCD);
        for _ in 0..20_000 {
            let customer = &customers[sample.random_range(0..customers.len())];
            let moment = moment_at(&mut sample);
            for (i, action) in actions.iter().enumerate() {
                if (action.eligible)(customer) {
                    mean[i] += probability(action, customer, &moment);
                }
            }
        }
        let mut popularity: Vec<usize> = (0..actions.len()).collect();
        popularity.sort_by(|&a, &b| mean[b].total_cmp(&mean[a]));

        let scorer = Scorer::default_live();
        let categorical = vec!["plan".to_string()];
        let mut vocabulary: Vec<String> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut statistics: HashMap<String, StoredStatistics> = HashMap::new();
        let mut model = Model::empty();
        let mut fifths = vec![Tally::default(); 5];
        let mut draw = SmallRng::seed_from_u64(seed ^ 0x5EED);
        for t in 0..options.decisions {
            if t % options.refresh_every == 0 && t > 0 {
                let stored: Vec<StoredStatistics> = statistics.values().cloned().collect();
                model = Model::solve(t as i64, vocabulary.clone(), &stored);
            }
            let mut rng = SmallRng::seed_from_u64(seed.wrapping_mul(1_000_003) ^ t as u64);
            let c = rng.random_range(0..customers.len());
            let (customer, view) = (&customers[c], &views[c]);
            let moment = moment_at(&mut rng);
            let context = DecisionContext {
                journey_id: if moment.stage.is_some() {
                    "guided_shopping".into()
                } else {
                    String::new()
                },
                stage: moment.stage.unwrap_or_default().into(),
                device: moment.device.into(),
                ..Default::default()
            };
            let channel = if moment.app { "mobile_app" } else { "web" };
            let named = features::extract(view, &context, channel, &categorical);
            let eligible: Vec<usize> = (0..actions.len())
                .filter(|&i| (actions[i].eligible)(customer))
                .collect();
            let probabilities: Vec<f64> = eligible
                .iter()
                .map(|&i| probability(&actions[i], customer, &moment))
                .collect();
            let x = model.vector(&named);
            let scored: Vec<Scored> = eligible
                .iter()
                .map(|&i| {
                    let group = format!("{}:{}", kind_name(actions[i].kind), actions[i].category);
                    let estimate = model.estimate(actions[i].id, &group, &x);
                    Scored {
                        mean: estimate.mean,
                        spread: estimate.spread,
                        factor: 1.0,
                    }
                })
                .collect();
            let ranking = bandit::rank(&scorer, &scored, 1, &mut draw);
            let chosen = ranking[0].index;
            let p = probabilities[chosen];
            let accepted = rng.random_bool(p);
            let fifth = (t * 5 / options.decisions).min(4);
            let tally = &mut fifths[fifth];
            tally.decisions += 1.0;
            tally.expected += p;
            tally.accepted += f64::from(u8::from(accepted));
            tally.oracle += probabilities.iter().copied().fold(0.0, f64::max);
            tally.uniform += probabilities.iter().sum::<f64>() / probabilities.len() as f64;
            tally.popular += popularity
                .iter()
                .find_map(|i| eligible.iter().position(|j| j == i))
                .map_or(0.0, |k| probabilities[k]);
            // Learn, as a fold would.
            for name in named.keys() {
                if !index.contains_key(name) && vocabulary.len() < bandit::MAX_FEATURES {
                    index.insert(name.clone(), vocabulary.len());
                    vocabulary.push(name.clone());
                }
            }
            let sparse: Vec<(usize, f64)> = named
                .iter()
                .filter_map(|(name, value)| index.get(name).map(|&i| (i, *value)))
                .collect();
            let action = &actions[eligible[chosen]];
            let group = format!("{}:{}", kind_name(action.kind), action.category);
            for (key, group) in [
                (GLOBAL.to_string(), String::new()),
                (group_key(&group), String::new()),
                (action_key(action.id), group.clone()),
            ] {
                let entry = statistics
                    .entry(key.clone())
                    .or_insert_with(|| StoredStatistics {
                        key,
                        group,
                        statistics: Statistics::new(vocabulary.len()),
                    });
                entry.statistics.grow(vocabulary.len());
                entry
                    .statistics
                    .add(&sparse, if accepted { 1.0 } else { 0.0 });
            }
        }
        let mut whole = Tally::default();
        for fifth in &fifths {
            whole.add(fifth);
        }
        println!("{}", whole.line(&format!("seed {seed}, whole run")));
        println!("{}", fifths[4].line(&format!("seed {seed}, last fifth")));
    }
    Ok(())
}

fn kind_name(kind: rec::ActionKind) -> &'static str {
    match kind {
        rec::ActionKind::SalesOffer => "sales_offer",
        rec::ActionKind::RetentionOffer => "retention_offer",
        rec::ActionKind::Service => "service",
        rec::ActionKind::Information => "information",
        rec::ActionKind::Unspecified => "unspecified",
    }
}
