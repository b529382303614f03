//! The scenarios: what each one calls, and what it counts.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, ensure};
use cairn_contract::common::v1::{Channel, CustomerRef, Identifier, IdentifierType, customer_ref};
use cairn_contract::common::v1::{Value, value};
use cairn_contract::feedback::v1 as feedback;
use cairn_contract::feedback::v1::feedback_service_client::FeedbackServiceClient;
use cairn_contract::journey::v1 as journey;
use cairn_contract::journey::v1::journey_service_client::JourneyServiceClient;
use cairn_contract::profile::v1 as profile;
use cairn_contract::profile::v1::profile_service_client::ProfileServiceClient;
use cairn_contract::recommendation::v1 as rec;
use cairn_contract::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Mutex, Semaphore};
use tonic::transport::Channel as Transport;

use super::driver::{Call, Shape, closed_loop, connect, open_loop};
use super::report::Measurement;
use super::world::World;

/// What every scenario needs: where the services are and who the customers are.
#[derive(Clone)]
pub struct Bench {
    /// The profile service's address.
    pub profile: String,
    /// The journey service's address.
    pub journey: String,
    /// The recommendation service's address.
    pub recommendation: String,
    /// The feedback service's address.
    pub feedback: String,
    /// The customer base.
    pub world: World,
    /// Profile ids of a sample of the base, for calls by profile id.
    pub customers: Arc<Vec<String>>,
    /// The survey the mixed journey answers.
    pub survey_id: String,
    /// A tag unique to this run, in touchpoint ids.
    pub run: String,
}

fn by_profile(id: &str) -> Option<CustomerRef> {
    Some(CustomerRef {
        customer: Some(customer_ref::Customer::ProfileId(id.into())),
    })
}

fn by_identifier(identifier: Identifier) -> Option<CustomerRef> {
    Some(CustomerRef {
        customer: Some(customer_ref::Customer::Identifier(identifier)),
    })
}

fn text(value: impl Into<String>) -> Value {
    Value {
        kind: Some(value::Kind::StringValue(value.into())),
    }
}

fn now() -> Option<prost_types::Timestamp> {
    Some(prost_types::Timestamp::from(std::time::SystemTime::now()))
}

/// A seeded random number generator for one call.
fn rng_for(seed: u64, call: Call) -> SmallRng {
    SmallRng::seed_from_u64(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ call.sequence)
}

// --- Setup ---------------------------------------------------------------

/// Creates the catalogue of `actions` actions with a mix of eligibility rules
/// (attributes, groups, channel) and a contact policy without caps, so that
/// every Decide ranks the whole eligible catalogue.
pub async fn create_catalogue(address: &str, actions: usize) -> anyhow::Result<()> {
    let channel = connect(address, 1).await?.remove(0);
    let mut client = RecommendationServiceClient::new(channel);
    for i in 0..actions {
        let rule = match i % 4 {
            0 => "attributes.plan == \"premium\" || attributes.plan == \"plus\"".to_string(),
            1 => "attributes.tenure_months > 24".to_string(),
            2 => "channel == \"web\" || groups.exists(g, g.type == \"household\")".to_string(),
            _ => String::new(),
        };
        client
            .create_action(rec::CreateActionRequest {
                action: Some(rec::Action {
                    action_id: format!("action-{i}"),
                    name: format!("Action {i}"),
                    kind: if i % 5 == 0 {
                        rec::ActionKind::Information
                    } else {
                        rec::ActionKind::SalesOffer
                    } as i32,
                    category: format!("category_{}", i % 10),
                    channels: vec![Channel::Web as i32, Channel::MobileApp as i32],
                    eligibility_rule: rule,
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await
            .with_context(|| format!("creating action {i}"))?;
    }
    client
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
    Ok(())
}

/// Creates the survey of the mixed journey; returns its id.
pub async fn create_survey(address: &str) -> anyhow::Result<String> {
    let channel = connect(address, 1).await?.remove(0);
    let mut client = FeedbackServiceClient::new(channel);
    let survey = client
        .create_survey(feedback::CreateSurveyRequest {
            survey: Some(feedback::Survey {
                display_name: "After shopping".into(),
                questions: vec![feedback::Question {
                    question_id: "nps".into(),
                    r#type: feedback::QuestionType::Nps as i32,
                    texts: [("en".to_string(), "Would you recommend us?".to_string())].into(),
                    options: vec![],
                    required: true,
                }],
                channel: Channel::Email as i32,
                consent_purpose: "service".into(),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await?
        .into_inner()
        .survey
        .ok_or_else(|| anyhow!("CreateSurvey answered without a survey"))?;
    Ok(survey.survey_id)
}

// --- Baseline --------------------------------------------------------------

/// The empty method the others are read against: the standard
/// `grpc.health.v1.Health/Check` of the journey service's server, through
/// the same layers (tracing, load shedding, authentication) as every call.
pub async fn baseline(bench: &Bench, shape: Shape) -> anyhow::Result<Measurement> {
    let channels = connect(&bench.journey, shape.connections).await?;
    Ok(closed_loop(shape, move |call| {
        health_check(channels[call.connection].clone())
    })
    .await)
}

/// The baseline at a fixed rate.
pub async fn baseline_rate(
    bench: &Bench,
    rate: u64,
    duration: Duration,
    warmup: Duration,
) -> anyhow::Result<Measurement> {
    let channels = connect(&bench.journey, 4).await?;
    Ok(open_loop(rate, duration, warmup, move |call| {
        health_check(channels[call.connection % channels.len()].clone())
    })
    .await)
}

async fn health_check(channel: Transport) -> anyhow::Result<u64> {
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    client
        .check(tonic_health::pb::HealthCheckRequest {
            service: cairn_runtime::server::LIVENESS.into(),
        })
        .await?;
    Ok(1)
}

// --- Profile resolve -----------------------------------------------------------

/// ResolveProfile of a random identifier (CRM id, phone number, email or
/// device id) of a random profile of the base.
pub async fn resolve(bench: &Bench, shape: Shape) -> anyhow::Result<Measurement> {
    let channels = connect(&bench.profile, shape.connections).await?;
    let world = bench.world;
    Ok(closed_loop(shape, move |call| {
        resolve_one(world, channels[call.connection].clone(), call)
    })
    .await)
}

/// ResolveProfile at a fixed rate.
pub async fn resolve_rate(
    bench: &Bench,
    rate: u64,
    duration: Duration,
    warmup: Duration,
) -> anyhow::Result<Measurement> {
    let channels = connect(&bench.profile, 4).await?;
    let world = bench.world;
    Ok(open_loop(rate, duration, warmup, move |call| {
        resolve_one(
            world,
            channels[call.connection % channels.len()].clone(),
            call,
        )
    })
    .await)
}

async fn resolve_one(world: World, channel: Transport, call: Call) -> anyhow::Result<u64> {
    let identifier = world.random_identifier(&mut rng_for(world.seed, call));
    let response = ProfileServiceClient::new(channel)
        .resolve_profile(profile::ResolveProfileRequest {
            identifier: Some(identifier),
            create_if_missing: false,
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(response.profile.is_some(), "resolved to no profile");
    Ok(1)
}

// --- Decide ----------------------------------------------------------------------

/// Decide for a random customer of the sample, on the web or in the app,
/// sometimes inside the guided shopping journey, over the 200 actions.
pub async fn decide(bench: &Bench, shape: Shape) -> anyhow::Result<Measurement> {
    let channels = connect(&bench.recommendation, shape.connections).await?;
    let (customers, seed) = (bench.customers.clone(), bench.world.seed);
    Ok(closed_loop(shape, move |call| {
        decide_one(
            seed,
            customers.clone(),
            channels[call.connection].clone(),
            call,
        )
    })
    .await)
}

/// Decide at a fixed rate.
pub async fn decide_rate(
    bench: &Bench,
    rate: u64,
    duration: Duration,
    warmup: Duration,
) -> anyhow::Result<Measurement> {
    let channels = connect(&bench.recommendation, 4).await?;
    let (customers, seed) = (bench.customers.clone(), bench.world.seed);
    Ok(open_loop(rate, duration, warmup, move |call| {
        decide_one(
            seed,
            customers.clone(),
            channels[call.connection % channels.len()].clone(),
            call,
        )
    })
    .await)
}

const STAGES: [&str; 4] = ["choose_product", "configure_plan", "cart", "checkout"];

async fn decide_one(
    seed: u64,
    customers: Arc<Vec<String>>,
    channel: Transport,
    call: Call,
) -> anyhow::Result<u64> {
    let mut rng = rng_for(seed, call);
    let customer = &customers[rng.random_range(0..customers.len())];
    let in_journey = rng.random_bool(0.5);
    let response = RecommendationServiceClient::new(channel)
        .decide(rec::DecideRequest {
            customer: by_profile(customer),
            channel: if rng.random_bool(0.5) {
                Channel::Web
            } else {
                Channel::MobileApp
            } as i32,
            context: Some(rec::DecisionContext {
                journey_id: if in_journey {
                    "guided_shopping".into()
                } else {
                    String::new()
                },
                stage: if in_journey {
                    STAGES[rng.random_range(0..STAGES.len())].into()
                } else {
                    String::new()
                },
                device: "android".into(),
                ..Default::default()
            }),
            max_actions: 3,
            ..Default::default()
        })
        .await?
        .into_inner();
    ensure!(!response.decision_id.is_empty(), "a decision without an id");
    Ok(1)
}

// --- Touchpoints --------------------------------------------------------------------

/// A touchpoint of a random customer of the base: the mix a telecom sees
/// (page and product views, carts, checkouts, purchases, usage, chats,
/// offers shown), sent by the identifier the source system knows (CRM id
/// or phone number from the BSS, device id from the app, email from the web).
fn random_touchpoint(world: &World, rng: &mut SmallRng, id: String) -> journey::Touchpoint {
    use journey::TouchpointType as Kind;
    let index = rng.random_range(0..world.profiles.max(1));
    let roll = rng.random_range(0..100);
    let (kind, channel) = match roll {
        0..40 => (Kind::PageView, Channel::Web),
        40..62 => (Kind::ProductView, Channel::Web),
        62..70 => (Kind::AddToCart, Channel::Web),
        70..74 => (Kind::Checkout, Channel::Web),
        74..77 => (Kind::Purchase, Channel::Web),
        77..90 => (Kind::Usage, Channel::MobileApp),
        90..94 => (Kind::Chat, Channel::MobileApp),
        _ => (Kind::OfferShown, Channel::MobileApp),
    };
    let identifier_kind = match (channel, rng.random_range(0..4)) {
        (Channel::MobileApp, 0..3) => IdentifierType::DeviceId,
        (_, 0) => IdentifierType::PhoneNumber,
        (_, 1) => IdentifierType::Email,
        _ => IdentifierType::CrmId,
    };
    let mut properties = std::collections::HashMap::new();
    match kind {
        Kind::AddToCart | Kind::Checkout => {
            properties.insert("cart_id".to_string(), text(format!("cart-{index}")));
        }
        Kind::Purchase => {
            properties.insert("order_id".to_string(), text(format!("order-{index}")));
        }
        Kind::PageView | Kind::ProductView => {
            properties.insert("page".to_string(), text("/plans/unlimited"));
        }
        _ => {}
    }
    journey::Touchpoint {
        touchpoint_id: id,
        customer: by_identifier(world.identifier(identifier_kind, index)),
        channel: channel as i32,
        r#type: kind as i32,
        occurred_at: now(),
        properties,
        ..Default::default()
    }
}

/// What became of the touchpoints acknowledged in a phase, warm-up
/// included: the durability check compares it with the rows stored.
#[derive(Debug, Default)]
pub struct Acknowledged {
    /// Stored for the first time.
    pub stored: AtomicU64,
    /// Answered as already stored (the retries the scenario sends).
    pub duplicates: AtomicU64,
    /// Refused.
    pub refused: AtomicU64,
}

impl Acknowledged {
    /// Counts the per-touchpoint results of one acknowledgement (a stream
    /// message's or a batch call's) and returns how many were stored, or
    /// the first refusal. The others of a message with a refused touchpoint
    /// are stored all the same and counted as such.
    fn count(&self, results: &[journey::TouchpointResult]) -> Result<u64, String> {
        let mut stored = 0;
        let mut refusal = None;
        for result in results {
            match journey::TouchpointOutcome::try_from(result.outcome) {
                Ok(journey::TouchpointOutcome::Stored) => stored += 1,
                Ok(journey::TouchpointOutcome::Duplicate) => {
                    self.duplicates.fetch_add(1, Ordering::Relaxed);
                }
                _ => {
                    self.refused.fetch_add(1, Ordering::Relaxed);
                    refusal.get_or_insert_with(|| result.error_message.clone());
                }
            }
        }
        self.stored.fetch_add(stored, Ordering::Relaxed);
        match refusal {
            None => Ok(stored),
            Some(message) => Err(format!("refused: {message}")),
        }
    }
}

/// How a streaming ingestion phase is shaped.
#[derive(Debug, Clone, Copy)]
pub struct StreamShape {
    /// Client streams open at once (spread over `connections`).
    pub streams: usize,
    /// HTTP/2 connections.
    pub connections: usize,
    /// Messages sent and not yet acknowledged, per stream.
    pub window: usize,
    /// Touchpoints per message.
    pub batch: usize,
    /// How long to measure.
    pub duration: Duration,
    /// Not counted, before.
    pub warmup: Duration,
}

/// Every `RETRY_EVERY`th message repeats one touchpoint of the message
/// before it, as a client retrying after a lost acknowledgement would; the
/// service must answer it as a duplicate and store it once.
const RETRY_EVERY: u64 = 50;

/// StreamTouchpoints: `streams` client streams, each keeping `window`
/// messages of `batch` touchpoints unacknowledged; latency is from sending a
/// message to its acknowledgement (sent only once every touchpoint of it is
/// durable).
pub async fn ingest_stream(
    bench: &Bench,
    shape: StreamShape,
    acknowledged: Arc<Acknowledged>,
) -> anyhow::Result<Measurement> {
    let channels = connect(&bench.journey, shape.connections).await?;
    let started = Instant::now();
    let measuring_from = started + shape.warmup;
    let deadline = measuring_from + shape.duration;
    let mut tasks = Vec::new();
    for stream in 0..shape.streams.max(1) {
        let channel = channels[stream % channels.len()].clone();
        let (bench, acknowledged) = (bench.clone(), acknowledged.clone());
        tasks.push(tokio::spawn(async move {
            one_stream(
                bench,
                channel,
                stream,
                shape,
                (measuring_from, deadline),
                acknowledged,
            )
            .await
        }));
    }
    let mut total = Measurement::new();
    let mut last_ack = measuring_from;
    for task in tasks {
        let (measured, last) = task.await??;
        total.absorb(&measured);
        last_ack = last_ack.max(last);
    }
    total.elapsed = last_ack.saturating_duration_since(measuring_from);
    Ok(total)
}

async fn one_stream(
    bench: Bench,
    channel: Transport,
    stream: usize,
    shape: StreamShape,
    (measuring_from, deadline): (Instant, Instant),
    acknowledged: Arc<Acknowledged>,
) -> anyhow::Result<(Measurement, Instant)> {
    let (sender, receiver) = tokio::sync::mpsc::channel(shape.window.max(1));
    let mut client = JourneyServiceClient::new(channel);
    let mut acks = client
        .stream_touchpoints(tokio_stream::wrappers::ReceiverStream::new(receiver))
        .await?
        .into_inner();
    let window = Arc::new(Semaphore::new(shape.window.max(1)));
    // Send times of the messages in flight, oldest first: acknowledgements
    // come back in order.
    let in_flight: Arc<Mutex<VecDeque<Instant>>> = Arc::default();
    let sending = {
        let (window, in_flight) = (window.clone(), in_flight.clone());
        let mut rng = SmallRng::seed_from_u64(bench.world.seed ^ (stream as u64) << 32);
        tokio::spawn(async move {
            let mut previous: Option<journey::Touchpoint> = None;
            let mut message_number = 0u64;
            let mut touchpoint_number = 0u64;
            while Instant::now() < deadline {
                let Ok(permit) = window.clone().acquire_owned().await else {
                    break;
                };
                permit.forget();
                let mut touchpoints = Vec::with_capacity(shape.batch);
                for _ in 0..shape.batch {
                    let id = format!("{}-s{stream}-{touchpoint_number}", bench.run);
                    touchpoint_number += 1;
                    touchpoints.push(random_touchpoint(&bench.world, &mut rng, id));
                }
                if message_number % RETRY_EVERY == RETRY_EVERY - 1
                    && let Some(retry) = previous.take()
                {
                    touchpoints.push(retry);
                }
                previous = touchpoints.first().cloned();
                message_number += 1;
                in_flight.lock().await.push_back(Instant::now());
                if sender
                    .send(journey::StreamTouchpointsRequest { touchpoints })
                    .await
                    .is_err()
                {
                    break;
                }
            }
            // Dropping the sender ends the stream; the service answers the rest.
        })
    };
    let mut measured = Measurement::new();
    let mut last_ack = measuring_from;
    while let Some(response) = acks.message().await? {
        let sent = in_flight
            .lock()
            .await
            .pop_front()
            .ok_or_else(|| anyhow!("an acknowledgement of no message"))?;
        window.add_permits(1);
        let now = Instant::now();
        let counted = acknowledged.count(&response.results);
        if sent >= measuring_from && sent < deadline {
            match counted {
                Ok(stored) => measured.success(now - sent, stored),
                Err(refusal) => measured.failure(refusal),
            }
            last_ack = now;
        }
    }
    sending.await?;
    Ok((measured, last_ack))
}

/// RecordTouchpoints: calls of `batch` touchpoints each, closed loop.
pub async fn ingest_batch(
    bench: &Bench,
    shape: Shape,
    batch: usize,
    acknowledged: Arc<Acknowledged>,
) -> anyhow::Result<Measurement> {
    let channels = connect(&bench.journey, shape.connections).await?;
    let bench = bench.clone();
    Ok(closed_loop(shape, move |call| {
        let mut client = JourneyServiceClient::new(channels[call.connection].clone());
        let mut rng = rng_for(bench.world.seed ^ 0xBA7C, call);
        let touchpoints: Vec<_> = (0..batch)
            .map(|i| {
                let id = format!("{}-b{}-{i}", bench.run, call.sequence);
                random_touchpoint(&bench.world, &mut rng, id)
            })
            .collect();
        let acknowledged = acknowledged.clone();
        async move {
            let results = client
                .record_touchpoints(journey::RecordTouchpointsRequest { touchpoints })
                .await?
                .into_inner()
                .results;
            acknowledged
                .count(&results)
                .map_err(|refusal| anyhow!(refusal))
        }
    })
    .await)
}

// --- The mixed journey -------------------------------------------------------------

/// gRPC calls in one mixed journey.
pub const MIXED_CALLS: u64 = 9;

/// One customer's visit, as the front ends and the contact centre would
/// make it: resolve by phone number; browse on the web (two views, a web
/// session with a cart, the cart's touchpoint); resume the session in the
/// app and find the cart; abandon (nothing more is sent: the journey holds
/// the customer in the cart stage with its deadline, which the contact
/// centre reads); a decision in the app; a survey answer.
pub async fn mixed(bench: &Bench, shape: Shape) -> anyhow::Result<Measurement> {
    let connections = Connections {
        profile: connect(&bench.profile, shape.connections).await?,
        journey: connect(&bench.journey, shape.connections).await?,
        recommendation: connect(&bench.recommendation, shape.connections).await?,
        feedback: connect(&bench.feedback, shape.connections).await?,
    };
    let connections = Arc::new(connections);
    let bench = bench.clone();
    Ok(closed_loop(shape, move |call| {
        mixed_one(bench.clone(), connections.clone(), call)
    })
    .await)
}

struct Connections {
    profile: Vec<Transport>,
    journey: Vec<Transport>,
    recommendation: Vec<Transport>,
    feedback: Vec<Transport>,
}

async fn mixed_one(bench: Bench, connections: Arc<Connections>, call: Call) -> anyhow::Result<u64> {
    let mut rng = rng_for(bench.world.seed ^ 0x313D, call);
    let index = rng.random_range(0..bench.world.profiles.max(1));
    let c = call.connection;
    let mut profiles = ProfileServiceClient::new(connections.profile[c].clone());
    let mut journeys = JourneyServiceClient::new(connections.journey[c].clone());
    let mut recommendations =
        RecommendationServiceClient::new(connections.recommendation[c].clone());
    let mut feedback = FeedbackServiceClient::new(connections.feedback[c].clone());

    // 1. Who is it?
    let profile_id = profiles
        .resolve_profile(profile::ResolveProfileRequest {
            identifier: Some(bench.world.identifier(IdentifierType::PhoneNumber, index)),
            create_if_missing: false,
            ..Default::default()
        })
        .await
        .context("resolve")?
        .into_inner()
        .profile
        .map(|p| p.profile_id)
        .ok_or_else(|| anyhow!("resolved to no profile"))?;
    let customer = by_profile(&profile_id);
    let tag = format!("{}-m{}", bench.run, call.sequence);
    let touchpoint = |n: u32, kind: journey::TouchpointType, properties: &[(&str, String)]| {
        journey::Touchpoint {
            touchpoint_id: format!("{tag}-{n}"),
            customer: customer.clone(),
            channel: Channel::Web as i32,
            r#type: kind as i32,
            occurred_at: now(),
            properties: properties
                .iter()
                .map(|(name, value)| (name.to_string(), text(value.clone())))
                .collect(),
            ..Default::default()
        }
    };
    let cart_id = format!("cart-{tag}");

    // 2. Browsing on the web.
    journeys
        .record_touchpoints(journey::RecordTouchpointsRequest {
            touchpoints: vec![
                touchpoint(
                    1,
                    journey::TouchpointType::PageView,
                    &[("page", "/".into())],
                ),
                touchpoint(
                    2,
                    journey::TouchpointType::ProductView,
                    &[("page", "/phones/x".into())],
                ),
            ],
        })
        .await
        .context("browse")?;
    let session = journeys
        .resume_session(journey::ResumeSessionRequest {
            customer: customer.clone(),
            channel: Channel::Web as i32,
        })
        .await
        .context("web session")?
        .into_inner()
        .session
        .ok_or_else(|| anyhow!("no session"))?;
    journeys
        .update_session(journey::UpdateSessionRequest {
            customer: customer.clone(),
            channel: Channel::Web as i32,
            session: Some(journey::Session {
                journey_id: "guided_shopping".into(),
                current_step: "cart".into(),
                cart: vec![journey::CartItem {
                    product_offering_id: "phone-x".into(),
                    quantity: 1,
                    ..Default::default()
                }],
                etag: session.etag,
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["journey_id".into(), "current_step".into(), "cart".into()],
            }),
        })
        .await
        .context("cart in the session")?;
    journeys
        .record_touchpoint(journey::RecordTouchpointRequest {
            touchpoint: Some(touchpoint(
                3,
                journey::TouchpointType::AddToCart,
                &[("cart_id", cart_id)],
            )),
        })
        .await
        .context("add to cart")?;

    // 3. Resuming in the app: the cart is there.
    let resumed = journeys
        .resume_session(journey::ResumeSessionRequest {
            customer: customer.clone(),
            channel: Channel::MobileApp as i32,
        })
        .await
        .context("app session")?
        .into_inner();
    ensure!(
        resumed.session.is_some_and(|s| !s.cart.is_empty()),
        "the app session lost the web cart"
    );

    // 4. Abandoning: the customer leaves; the contact centre reads where
    // the journey holds them (the cart stage, unless the ingestion
    // scenarios moved this customer on; its deadline fires the abandonment).
    let state = journeys
        .get_journey_state(journey::GetJourneyStateRequest {
            customer: customer.clone(),
            journey_id: "guided_shopping".into(),
        })
        .await
        .context("journey state")?
        .into_inner();
    ensure!(
        state.state.is_some(),
        "the touchpoints did not bring the customer into the journey"
    );

    // 5. The next best action in the app.
    recommendations
        .decide(rec::DecideRequest {
            customer: customer.clone(),
            channel: Channel::MobileApp as i32,
            context: Some(rec::DecisionContext {
                journey_id: "guided_shopping".into(),
                stage: "cart".into(),
                device: "ios".into(),
                ..Default::default()
            }),
            max_actions: 1,
            ..Default::default()
        })
        .await
        .context("decide")?;

    // 6. A survey answer.
    feedback
        .submit_survey_response(feedback::SubmitSurveyResponseRequest {
            response: Some(feedback::SurveyResponse {
                survey_id: bench.survey_id.clone(),
                customer,
                channel: Channel::Email as i32,
                answers: vec![feedback::Answer {
                    question_id: "nps".into(),
                    value: Some(feedback::answer::Value::Score(rng.random_range(0..=10))),
                }],
                ..Default::default()
            }),
            request_id: tag,
        })
        .await
        .context("survey")?;
    Ok(1)
}
