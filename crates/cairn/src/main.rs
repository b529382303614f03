//! `cairn`: serve the suite or one service, apply migrations, mint tokens.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use cairn::Suite;
use cairn::cli::{Cli, Command, JourneysCommand, selected_services};
use cairn_runtime::server::termination_signal;
use cairn_runtime::{ServiceKind, Settings, auth, metrics, telemetry};
use clap::Parser;
use tokio_util::sync::CancellationToken;

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
        Command::Serve { only, settings } => serve(selected_services(&only), settings).await,
        Command::Migrate { only, settings } => migrate(selected_services(&only), settings).await,
        Command::Journeys {
            command:
                JourneysCommand::Apply {
                    paths,
                    address,
                    token,
                    dry_run,
                },
        } => {
            let outcomes =
                cairn::journeys::apply(&address, token.as_deref(), &paths, dry_run).await?;
            for outcome in outcomes {
                println!("{outcome}");
            }
            Ok(())
        }
        Command::Token {
            scopes,
            subject,
            ttl_secs,
            profile_id,
            settings,
        } => {
            let key = settings.auth_hs256_key.as_ref().ok_or(
                "set CAIRN_AUTH_HS256_KEY (the key the servers verify with) to mint a token",
            )?;
            let scopes: Vec<&str> = scopes.iter().map(String::as_str).collect();
            let ttl = Duration::from_secs(ttl_secs);
            let (issuer, audience) = (
                settings.auth_issuer.as_deref(),
                settings.auth_audience.as_deref(),
            );
            let token = match profile_id {
                Some(raw) => {
                    let profile_id = raw
                        .parse()
                        .map_err(|_| format!("--profile-id {raw} is not a profile id (UUID)"))?;
                    auth::mint_customer_token(
                        key, &subject, profile_id, &scopes, ttl, issuer, audience,
                    )
                }
                None => auth::mint_token(key, &subject, &scopes, ttl, issuer, audience),
            }
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
    let suite = Suite::listen(settings, &services, shutdown.clone())
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
