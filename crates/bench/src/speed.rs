//! The speed of Decide: median and p99 latency with a catalogue of 200
//! actions, at a fixed offered rate (open loop: calls start on schedule
//! whether or not earlier ones finished, so a service that falls behind
//! shows it in its latency), and the throughput reached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_contract::common::v1::{Channel, CustomerRef, Identifier, IdentifierType, customer_ref};
use cairn_contract::profile::v1 as profile;
use cairn_contract::profile::v1::profile_service_client::ProfileServiceClient;
use cairn_contract::recommendation::v1 as rec;
use cairn_contract::recommendation::v1::recommendation_service_client::RecommendationServiceClient;
use cairn_runtime::ServiceKind;
use futures::StreamExt;
use tokio::sync::Mutex;

use crate::suite::BenchSuite;

/// Options of the speed benchmark.
#[derive(clap::Args, Debug, Clone)]
pub struct Options {
    /// Decide calls started per second.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// How long to offer that rate, in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Actions in the catalogue.
    #[arg(long, default_value_t = 200)]
    actions: usize,
    /// Customers decided for.
    #[arg(long, default_value_t = 500)]
    customers: usize,
    /// Administrative PostgreSQL URL.
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

fn by_id(id: &str) -> Option<CustomerRef> {
    Some(CustomerRef {
        customer: Some(customer_ref::Customer::ProfileId(id.into())),
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Runs the speed benchmark and prints its figures.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let suite = BenchSuite::start(
        &options.database_url,
        &options.redis_url,
        &[ServiceKind::Profile, ServiceKind::Recommendation],
    )
    .await?;
    let profile_channel =
        tonic::transport::Endpoint::from_shared(suite.address(ServiceKind::Profile))?
            .connect()
            .await?;
    let channel =
        tonic::transport::Endpoint::from_shared(suite.address(ServiceKind::Recommendation))?
            .tcp_nodelay(true)
            .connect()
            .await?;
    let customers: Vec<String> = futures::stream::iter((0..options.customers).map(|i| {
        let mut profiles = ProfileServiceClient::new(profile_channel.clone());
        async move {
            let id = profiles
                .create_profile(profile::CreateProfileRequest {
                    identifiers: vec![Identifier {
                        r#type: IdentifierType::CrmId as i32,
                        value: format!("speed-{i}"),
                        custom_type: String::new(),
                    }],
                    ..Default::default()
                })
                .await?
                .into_inner()
                .profile
                .map(|p| p.profile_id)
                .unwrap_or_default();
            profiles
                .record_consent(profile::RecordConsentRequest {
                    customer: by_id(&id),
                    consent: Some(profile::Consent {
                        purpose: "marketing".into(),
                        channel: Channel::Web as i32,
                        granted: true,
                        source: "bench".into(),
                        ..Default::default()
                    }),
                })
                .await?;
            Ok::<_, anyhow::Error>(id)
        }
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<anyhow::Result<_>>()?;
    let mut client = RecommendationServiceClient::new(channel.clone());
    for i in 0..options.actions {
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
                    eligibility_rule: if i % 3 == 0 {
                        format!("channel == 'web' || {i} > 100")
                    } else {
                        String::new()
                    },
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await?;
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

    let latencies = Arc::new(Mutex::new(Vec::new()));
    let failures = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let total = options.rate * options.seconds;
    let interval = Duration::from_secs_f64(1.0 / options.rate as f64);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(total as usize);
    for i in 0..total {
        let due = started + interval.mul_f64(i as f64);
        tokio::time::sleep_until(due.into()).await;
        let mut client = RecommendationServiceClient::new(channel.clone());
        let customer = customers[i as usize % customers.len()].clone();
        let (latencies, failures) = (latencies.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            let call = Instant::now();
            let outcome = client
                .decide(rec::DecideRequest {
                    customer: by_id(&customer),
                    channel: Channel::Web as i32,
                    max_actions: 3,
                    ..Default::default()
                })
                .await;
            // Latency from the scheduled start: queueing counts.
            let elapsed = due.elapsed().max(call.elapsed()).as_secs_f64() * 1000.0;
            match outcome {
                Ok(_) => latencies.lock().await.push(elapsed),
                Err(_) => {
                    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let mut latencies = latencies.lock().await.clone();
    latencies.sort_by(f64::total_cmp);
    println!(
        "| offered | completed | failed | throughput | median | p99 | catalogue |\n|---|---|---|---|---|---|---|\n| {} /s for {} s | {} | {} | {:.0} /s | {:.1} ms | {:.1} ms | {} actions |",
        options.rate,
        options.seconds,
        latencies.len(),
        failures.load(std::sync::atomic::Ordering::Relaxed),
        latencies.len() as f64 / elapsed,
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        options.actions,
    );
    suite.stop(&options.redis_url).await?;
    Ok(())
}
