//! `cairn-bench`: benchmarks that drive the real suite over gRPC.
//!
//! - `quality`: a seeded simulator of a telecom customer base that asks the
//!   recommendation service for the next best action, reports what the
//!   customer did, and compares the service's acceptance rate with uniform
//!   random choice, a context-free popularity baseline and the oracle that
//!   knows the hidden acceptance probabilities.
//! - `quality-offline`: the same world against the scorer in process.
//! - `speed`: Decide's median and p99 latency at an offered rate with a
//!   catalogue of 200 actions, and the throughput reached.
//! - `load`: the load generator (`make bench`): a seeded customer base,
//!   touchpoint ingestion (streamed and batched), Decide, profile resolve
//!   and a mixed journey, each read against an empty gRPC method of the same
//!   server; a table and a JSON report.
//!
//! The suite is started in this process (`cairn::Suite::start`) on a fresh
//! PostgreSQL database and Redis prefix, dropped afterwards.

mod load;
mod quality;
mod speed;
mod suite;

use clap::{Parser, Subcommand};

/// The command line.
#[derive(Parser)]
#[command(name = "cairn-bench", about = "Benchmarks of the Cairn suite")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The recommendation quality benchmark.
    Quality(quality::Options),
    /// The quality benchmark's world and the service's scorer in process,
    /// without gRPC or stores: for tuning the bandit quickly.
    QualityOffline(quality::OfflineOptions),
    /// Decide's latency (median, p99) at a fixed offered rate with a
    /// catalogue of 200 actions, and the throughput reached.
    Speed(speed::Options),
    /// The load generator: every scenario against the baseline, a table and
    /// a JSON report (`make bench`).
    Load(load::Options),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The suite's own warnings (a learner that cannot fold, a refused
    // call) go to standard error, where they explain a figure that looks
    // wrong; RUST_LOG widens or narrows them.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Quality(options) => runtime.block_on(quality::run(options)),
        Command::QualityOffline(options) => quality::run_offline(options),
        Command::Speed(options) => runtime.block_on(speed::run(options)),
        Command::Load(options) => runtime.block_on(load::run(options)),
    }
}
