//! The load generator: starts the suite on a fresh database and Redis
//! prefix, seeds a synthetic customer base, runs every scenario against the
//! services over real gRPC connections, and reads each figure against the
//! baseline (an empty gRPC method of the same server) measured in the same
//! run, so that the ratios mean something on a busy or slow machine.
//!
//! # Layout
//! - [`driver`]: closed-loop and open-loop drivers.
//! - [`world`]: the customer base, seeded straight into PostgreSQL.
//! - [`scenarios`]: what each scenario calls.
//! - [`report`]: HDR histograms, the table and the JSON file.

pub mod driver;
pub mod report;
pub mod scenarios;
pub mod world;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use cairn_runtime::ServiceKind;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sea_orm::{Database, DatabaseConnection};

use crate::suite::BenchSuite;
use driver::Shape;
use report::{Figure, GrowthPoint, Measurement, Mode, Report};
use scenarios::{Acknowledged, Bench, StreamShape};
use world::{World, count};

/// The scenarios, by name.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// Touchpoints through the client-streaming call.
    IngestStream,
    /// Touchpoints through the batch call.
    IngestBatch,
    /// Decide over the catalogue.
    Decide,
    /// ResolveProfile by a random identifier.
    Resolve,
    /// The mixed journey across the four services.
    Mixed,
}

/// Options of the load generator. `make bench` uses the defaults.
#[derive(clap::Args, Debug, Clone, serde::Serialize)]
pub struct Options {
    /// The scenarios to run (the baseline always runs).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "ingest-stream,ingest-batch,decide,resolve,mixed"
    )]
    scenarios: Vec<Scenario>,
    /// HTTP/2 connections of each closed-loop phase.
    #[arg(long, default_value_t = 4)]
    connections: usize,
    /// Calls in flight on each connection.
    #[arg(long, default_value_t = 16)]
    in_flight: usize,
    /// Measured seconds of each closed-loop phase.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Stop each closed-loop phase after this many calls instead (still at
    /// most --seconds).
    #[arg(long)]
    count: Option<u64>,
    /// Seconds of warm-up before each phase, not counted.
    #[arg(long, default_value_t = 2)]
    warmup_seconds: u64,
    /// Offered rate of the latency phases (calls per second, open loop).
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    /// Measured seconds of each latency phase.
    #[arg(long, default_value_t = 10)]
    rate_seconds: u64,
    /// Profiles in the customer base.
    #[arg(long, default_value_t = 1_000_000)]
    profiles: u64,
    /// Stored profiles and touchpoints at which resolve and streaming
    /// ingestion are measured again, for the growth curve (empty: none).
    #[arg(long, value_delimiter = ',', default_value = "10000,100000,1000000")]
    growth: Vec<u64>,
    /// Measured seconds of each growth point.
    #[arg(long, default_value_t = 5)]
    growth_seconds: u64,
    /// Client streams of the streaming ingestion.
    #[arg(long, default_value_t = 4)]
    streams: usize,
    /// Messages each stream keeps unacknowledged.
    #[arg(long, default_value_t = 4)]
    window: usize,
    /// Touchpoints per stream message and per batch call.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Actions in the catalogue.
    #[arg(long, default_value_t = 200)]
    actions: usize,
    /// Customers (a seeded sample of the base) that Decide is asked about.
    #[arg(long, default_value_t = 10_000)]
    sample: usize,
    /// Seed of the customer base and of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Database connections of each service.
    #[arg(long, default_value_t = 16)]
    pool: u32,
    /// Where the JSON report goes.
    #[arg(long, default_value = "target/cairn-bench.json")]
    json: PathBuf,
    /// Decisions per seed of the recommendation quality benchmark run
    /// after the load (0 skips it).
    #[arg(long, default_value_t = 0)]
    quality_decisions: usize,
    /// Seeds of the quality benchmark.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    quality_seeds: Vec<u64>,
    /// Administrative PostgreSQL URL (a database per run is created there).
    #[arg(
        long,
        env = "CAIRN_TEST_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/test"
    )]
    #[serde(skip)]
    database_url: String,
    /// Redis URL.
    #[arg(
        long,
        env = "CAIRN_TEST_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    #[serde(skip)]
    redis_url: String,
}

impl Options {
    fn wants(&self, scenario: Scenario) -> bool {
        self.scenarios.contains(&scenario)
    }

    fn shape(&self, seconds: u64) -> Shape {
        Shape {
            connections: self.connections,
            in_flight: self.in_flight,
            duration: Duration::from_secs(seconds),
            count: self.count,
            warmup: Duration::from_secs(self.warmup_seconds),
        }
    }

    fn stream_shape(&self, seconds: u64) -> StreamShape {
        StreamShape {
            streams: self.streams,
            connections: self.connections.min(self.streams).max(1),
            window: self.window,
            batch: self.batch,
            duration: Duration::from_secs(seconds),
            warmup: Duration::from_secs(self.warmup_seconds),
        }
    }

    fn rate_window(&self) -> (Duration, Duration) {
        (
            Duration::from_secs(self.rate_seconds),
            Duration::from_secs(self.warmup_seconds),
        )
    }
}

/// Runs the load generator and prints, then writes, its report.
pub async fn run(options: Options) -> anyhow::Result<()> {
    let mut report = Report {
        started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average_at_start: std::fs::read_to_string("/proc/loadavg")
            .map(|text| {
                text.split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default(),
        options: serde_json::to_value(&options)?,
        figures: Vec::new(),
        growth: Vec::new(),
        quality: Vec::new(),
    };
    let pool = options.pool;
    let suite = BenchSuite::start_with(
        &options.database_url,
        &options.redis_url,
        &ServiceKind::ALL,
        |settings| settings.database_max_connections = pool,
    )
    .await?;
    let outcome = measure(&options, &suite, &mut report).await;
    suite.stop(&options.redis_url).await?;
    outcome?;

    if options.quality_decisions > 0 {
        eprintln!(
            "quality: {} decisions on seeds {:?}",
            options.quality_decisions, options.quality_seeds
        );
        report.quality = quality(&options).await?;
    }

    println!("{}", report.markdown());
    if let Some(parent) = options.json.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&options.json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("writing {}", options.json.display()))?;
    eprintln!("JSON report: {}", options.json.display());
    Ok(())
}

async fn measure(options: &Options, suite: &BenchSuite, report: &mut Report) -> anyhow::Result<()> {
    let db = Database::connect(suite.database_url()).await?;
    let mut bench = Bench {
        profile: suite.address(ServiceKind::Profile),
        journey: suite.address(ServiceKind::Journey),
        recommendation: suite.address(ServiceKind::Recommendation),
        feedback: suite.address(ServiceKind::Feedback),
        world: World::new(options.seed),
        customers: Arc::default(),
        survey_id: String::new(),
        run: format!("r{}", uuid::Uuid::new_v4().simple()),
    };
    eprintln!("setting up: {} actions, a survey", options.actions);
    scenarios::create_catalogue(&bench.recommendation, options.actions).await?;
    bench.survey_id = scenarios::create_survey(&bench.feedback).await?;

    let mut sizes: Vec<u64> = options
        .growth
        .iter()
        .copied()
        .filter(|&size| size <= options.profiles)
        .collect();
    sizes.sort_unstable();
    for &size in &sizes {
        eprintln!("seeding profiles to {size}");
        bench.world.grow_profiles(&db, size).await?;
        if options.wants(Scenario::Resolve) {
            let measured =
                scenarios::resolve(&bench, options.shape(options.growth_seconds)).await?;
            report.growth.push(point("resolve", size, &measured));
        }
    }
    eprintln!("seeding profiles to {}", options.profiles);
    let took = bench.world.grow_profiles(&db, options.profiles).await?;
    eprintln!(
        "  the base is seeded ({:.0} s for the last step)",
        took.as_secs_f64()
    );
    let mut rng = SmallRng::seed_from_u64(options.seed);
    let sample: Vec<u64> = (0..options.sample)
        .map(|_| rng.random_range(0..options.profiles.max(1)))
        .collect();
    bench.customers = Arc::new(bench.world.profile_ids(&db, &sample).await?);

    eprintln!("baseline");
    let shape = options.shape(options.seconds);
    let (rate_duration, warmup) = options.rate_window();
    let baseline = Figure::new(
        "baseline: grpc.health.v1.Health/Check",
        Mode::Saturation,
        shape.describe(),
        "calls",
        &scenarios::baseline(&bench, shape).await?,
    );
    let baseline_rate = Figure::new(
        "baseline: grpc.health.v1.Health/Check",
        Mode::Rate,
        format!("{}/s offered", options.rate),
        "calls",
        &scenarios::baseline_rate(&bench, options.rate, rate_duration, warmup).await?,
    );
    report.figures.push(baseline.clone());
    report.figures.push(baseline_rate.clone());

    if options.wants(Scenario::Resolve) {
        eprintln!("resolve");
        let measured = scenarios::resolve(&bench, shape).await?;
        let figure = Figure::new(
            "resolve: ResolveProfile",
            Mode::Saturation,
            shape.describe(),
            "lookups",
            &measured,
        )
        .against(&baseline);
        let ratio = figure.ratio.unwrap_or_default();
        report.figures.push(
            figure
                .target("≥ 50% of baseline", ratio >= 0.5)
                .note(format!(
                    "over {} profiles with 4 identifiers each",
                    options.profiles
                )),
        );
        let measured = scenarios::resolve_rate(&bench, options.rate, rate_duration, warmup).await?;
        let figure = Figure::new(
            "resolve: ResolveProfile",
            Mode::Rate,
            format!("{}/s offered", options.rate),
            "lookups",
            &measured,
        )
        .against(&baseline_rate);
        let p99 = figure.p99_ms;
        report.figures.push(figure.target("p99 < 5 ms", p99 < 5.0));
    }

    if options.wants(Scenario::Decide) {
        eprintln!("decide");
        let measured = scenarios::decide(&bench, shape).await?;
        let figure = Figure::new(
            "decide: Decide, 200 actions",
            Mode::Saturation,
            shape.describe(),
            "decisions",
            &measured,
        )
        .against(&baseline);
        let ratio = figure.ratio.unwrap_or_default();
        report.figures.push(
            figure
                .target("≥ 40% of baseline", ratio >= 0.4)
                .note(format!(
                    "{} actions; {} customers asked about",
                    options.actions,
                    bench.customers.len()
                )),
        );
        let measured = scenarios::decide_rate(&bench, options.rate, rate_duration, warmup).await?;
        let figure = Figure::new(
            "decide: Decide, 200 actions",
            Mode::Rate,
            format!("{}/s offered", options.rate),
            "decisions",
            &measured,
        )
        .against(&baseline_rate);
        let p99 = figure.p99_ms;
        report.figures.push(figure.target("p99 < 5 ms", p99 < 5.0));
    }

    let wants_ingest =
        options.wants(Scenario::IngestStream) || options.wants(Scenario::IngestBatch);
    if options.wants(Scenario::IngestStream) {
        for &size in &sizes {
            eprintln!("seeding touchpoints to {size}");
            bench.world.grow_touchpoints(&db, size).await?;
            let stored = count(&db, "journey_touchpoints").await?;
            let measured = scenarios::ingest_stream(
                &bench,
                options.stream_shape(options.growth_seconds),
                Arc::default(),
            )
            .await?;
            report
                .growth
                .push(point("ingest (stream)", stored, &measured));
        }
    }
    if wants_ingest && let Some(&largest) = sizes.last() {
        bench.world.grow_touchpoints(&db, largest).await?;
    }
    if options.wants(Scenario::IngestStream) {
        eprintln!("ingest (stream)");
        let shape = options.stream_shape(options.seconds);
        let before = Counts::take(&db).await?;
        let acknowledged = Arc::new(Acknowledged::default());
        let measured = scenarios::ingest_stream(&bench, shape, acknowledged.clone()).await?;
        let durable = Counts::take(&db).await?.since(&before, &acknowledged);
        let figure = Figure::new(
            "ingest: StreamTouchpoints",
            Mode::Saturation,
            format!(
                "{} streams × {} messages of {} in flight",
                shape.streams, shape.window, shape.batch
            ),
            "events",
            &measured,
        )
        .against(&baseline);
        let per_second = figure.per_second;
        report.figures.push(
            figure
                .target("≥ 50,000 events/s", per_second >= 50_000.0)
                .note(format!(
                    "over {} stored touchpoints. {durable}",
                    before.touchpoints
                )),
        );
    }
    if options.wants(Scenario::IngestBatch) {
        eprintln!("ingest (batch)");
        let before = Counts::take(&db).await?;
        let acknowledged = Arc::new(Acknowledged::default());
        let measured =
            scenarios::ingest_batch(&bench, shape, options.batch, acknowledged.clone()).await?;
        let durable = Counts::take(&db).await?.since(&before, &acknowledged);
        let figure = Figure::new(
            "ingest: RecordTouchpoints",
            Mode::Saturation,
            format!("{}, {} per call", shape.describe(), options.batch),
            "events",
            &measured,
        )
        .against(&baseline);
        report.figures.push(figure.note(format!(
            "over {} stored touchpoints. {durable}",
            before.touchpoints
        )));
    }

    if options.wants(Scenario::Mixed) {
        eprintln!("mixed journey");
        let measured = scenarios::mixed(&bench, shape).await?;
        let mut figure = Figure::new(
            "mixed journey",
            Mode::Saturation,
            shape.describe(),
            "journeys",
            &measured,
        )
        .against(&baseline);
        // Read against the baseline call for call.
        figure.ratio = figure
            .ratio
            .map(|ratio| ratio * scenarios::MIXED_CALLS as f64);
        report.figures.push(figure.note(format!(
            "{} gRPC calls per journey across the four services (ratio counts calls): resolve, 2 views, web session and cart, add to cart, app session, journey state, Decide, survey answer",
            scenarios::MIXED_CALLS
        )));
    }
    Ok(())
}

fn point(scenario: &str, stored: u64, measured: &Measurement) -> GrowthPoint {
    let figure = Figure::new(scenario, Mode::Saturation, "", "", measured);
    eprintln!(
        "  {scenario} at {stored} stored rows: {:.0}/s, p99 {:.2} ms",
        figure.per_second, figure.p99_ms
    );
    GrowthPoint {
        scenario: scenario.into(),
        stored,
        per_second: figure.per_second,
        p99_ms: figure.p99_ms,
    }
}

/// Rows of the journey service's tables, before and after an ingestion phase.
struct Counts {
    touchpoints: u64,
    states: u64,
    transitions: u64,
}

impl Counts {
    async fn take(db: &DatabaseConnection) -> anyhow::Result<Self> {
        Ok(Self {
            touchpoints: count(db, "journey_touchpoints").await?,
            states: count(db, "journey_states").await?,
            transitions: count(db, "journey_transitions").await?,
        })
    }

    /// The durability check in words: every touchpoint acknowledged as
    /// stored is a row, once; duplicates added none.
    fn since(&self, before: &Counts, acknowledged: &Acknowledged) -> String {
        let stored = acknowledged.stored.load(Ordering::Relaxed);
        let rows = self.touchpoints - before.touchpoints;
        format!(
            "Durability: {stored} acknowledged as stored (warm-up included), {rows} rows added ({}); {} retries answered as duplicates; {} refused. Journey state: +{} positions, +{} transitions.",
            if rows == stored {
                "every one durable, once"
            } else {
                "MISMATCH"
            },
            acknowledged.duplicates.load(Ordering::Relaxed),
            acknowledged.refused.load(Ordering::Relaxed),
            self.states - before.states,
            self.transitions - before.transitions,
        )
    }
}

/// Runs the recommendation quality benchmark as a child process of this
/// binary (it starts its own suite per seed) and returns its table rows.
async fn quality(options: &Options) -> anyhow::Result<Vec<String>> {
    let seeds: Vec<String> = options.quality_seeds.iter().map(u64::to_string).collect();
    let output = tokio::process::Command::new(std::env::current_exe()?)
        .arg("quality")
        .arg("--decisions")
        .arg(options.quality_decisions.to_string())
        .arg("--seeds")
        .arg(seeds.join(","))
        .arg("--database-url")
        .arg(&options.database_url)
        .arg("--redis-url")
        .arg(&options.redis_url)
        .stderr(std::process::Stdio::inherit())
        .output()
        .await?;
    anyhow::ensure!(output.status.success(), "the quality benchmark failed");
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with('|'))
        .map(str::to_string)
        .collect())
}
