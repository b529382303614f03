//! `cairn`: serve the suite or one service, apply migrations, mint tokens.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use cairn::Suite;
use cairn_runtime::server::termination_signal;
use cairn_runtime::{ServiceKind, Settings, auth, metrics, telemetry};
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// Cairn: one view of each customer across every channel, their journeys,
/// the next best action, and their feedback.
#[derive(Parser)]
#[command(name = "cairn", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the suite: every service, or those named with --only.
    Serve {
        /// Serve only this service (repeatable); what a Kubernetes Deployment runs.
        #[arg(long, value_enum)]
        only: Vec<ServiceKind>,
        #[command(flatten)]
        settings: Settings,
    },
    /// Apply pending database migrations and exit (a Kubernetes Job before a rollout).
    Migrate {
        /// Migrate only this service (repeatable).
        #[arg(long, value_enum)]
        only: Vec<ServiceKind>,
        #[command(flatten)]
        settings: Settings,
    },
    /// Print a bearer token signed with CAIRN_AUTH_HS256_KEY, for trials and tests.
    Token {
        /// A scope to grant, for example profile.read (repeatable).
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Who the token names.
        #[arg(long, default_value = "cairn-cli")]
        subject: String,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
        #[command(flatten)]
        settings: Settings,
    },
}

fn chosen(only: Vec<ServiceKind>) -> Vec<ServiceKind> {
    if only.is_empty() {
        ServiceKind::ALL.to_vec()
    } else {
        only
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cairn: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve { only, settings } => serve(chosen(only), settings).await,
        Command::Migrate { only, settings } => migrate(chosen(only), settings).await,
        Command::Token {
            scopes,
            subject,
            ttl_secs,
            settings,
        } => {
            let key = settings.auth_hs256_key.as_ref().ok_or(
                "set CAIRN_AUTH_HS256_KEY (the key the servers verify with) to mint a token",
            )?;
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let token = auth::mint_token(
                key,
                &subject,
                &scopes,
                Duration::from_secs(ttl_secs),
                settings.auth_issuer.as_deref(),
                settings.auth_audience.as_deref(),
            )
            .map_err(|error| error.to_string())?;
            println!("{token}");
            Ok(())
        }
    }
}

async fn serve(services: Vec<ServiceKind>, settings: Settings) -> Result<(), String> {
    let name = match services.as_slice() {
        [one] => format!("cairn-{one}"),
        _ => "cairn".to_string(),
    };
    let _telemetry = telemetry::init(&settings, &name)?;
    if settings.auth_disabled {
        let banner = "AUTHENTICATION IS OFF (CAIRN_AUTH_DISABLED=true): every caller may call every method. \
                      Use this for a local trial only, never in production.";
        tracing::warn!("{banner}");
        eprintln!("\n  !!! {banner}\n");
    }
    if settings.metrics_port != 0 {
        metrics::serve_prometheus(SocketAddr::new(settings.host, settings.metrics_port))?;
    }
    let shutdown = CancellationToken::new();
    let suite = Suite::start(settings, &services, shutdown.clone())
        .await
        .map_err(|error| error.to_string())?;
    for (service, address) in &suite.addresses {
        tracing::info!(%service, %address, "listening");
    }
    let signal = shutdown.clone();
    tokio::spawn(async move {
        termination_signal().await;
        tracing::info!("shutting down: finishing calls in flight");
        signal.cancel();
    });
    suite.wait().await.map_err(|error| error.to_string())
}

async fn migrate(services: Vec<ServiceKind>, settings: Settings) -> Result<(), String> {
    let _telemetry = telemetry::init(&settings, "cairn-migrate")?;
    for service in services {
        cairn::migrate_service(service, &settings)
            .await
            .map_err(|error| format!("{service}: {error}"))?;
        tracing::info!(%service, "migrations applied");
    }
    Ok(())
}
