//! The `cairn` command line, in the library so that tests parse the very
//! arguments the container image and the Kubernetes manifests pass
//! (`serve --only journey`, `migrate`) with the parser the binary uses.

use cairn_runtime::{ServiceKind, Settings};
use clap::{Parser, Subcommand};

/// Cairn: one view of each customer across every channel, their journeys,
/// the next best action, and their feedback.
#[derive(Debug, Parser)]
#[command(name = "cairn", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `cairn`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the suite: every service, or those named with --only.
    Serve {
        /// Serve only this service (repeatable); what a Kubernetes Deployment runs.
        #[arg(long, value_enum)]
        only: Vec<ServiceKind>,
        /// Every setting, from flags and environment variables.
        #[command(flatten)]
        settings: Settings,
    },
    /// Apply pending database migrations and exit (a Kubernetes Job before a rollout).
    Migrate {
        /// Migrate only this service (repeatable).
        #[arg(long, value_enum)]
        only: Vec<ServiceKind>,
        /// Every setting, from flags and environment variables.
        #[command(flatten)]
        settings: Settings,
    },
    /// Journeys as code: apply journey definitions kept in files.
    Journeys {
        /// What to do.
        #[command(subcommand)]
        command: JourneysCommand,
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
        /// A customer's own token: the profile id of the one customer a
        /// front end acts for (the `profile_id` claim).
        #[arg(long)]
        profile_id: Option<String>,
        /// Every setting, from flags and environment variables.
        #[command(flatten)]
        settings: Settings,
    },
}

/// What `cairn journeys` does.
#[derive(Debug, clap::Subcommand)]
pub enum JourneysCommand {
    /// Validate journey definition files (TOML) with the journey service and
    /// apply them when all are valid: create new journeys, version changed ones.
    Apply {
        /// Files or folders of *.toml journey definitions.
        #[arg(required = true)]
        paths: Vec<std::path::PathBuf>,
        /// The journey service.
        #[arg(
            long,
            env = "CAIRN_JOURNEY_ADDR",
            default_value = "http://127.0.0.1:50052"
        )]
        address: String,
        /// A bearer token with the scopes journey.read and journey.write.
        #[arg(long, env = "CAIRN_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Validate and report, change nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// The services `--only` names, or every service when it names none.
pub fn selected_services(only: &[ServiceKind]) -> Vec<ServiceKind> {
    if only.is_empty() {
        ServiceKind::ALL.to_vec()
    } else {
        only.to_vec()
    }
}
