//! A Cairn service in its own process, the `cairn` binary as the container
//! image runs it, so that a test can kill it the hard way (SIGKILL: no
//! shutdown hook, no grace period, no flushing) and start it again.
//!
//! The integration tests are another package than the binary, so cargo does
//! not hand them `CARGO_BIN_EXE_cairn`: [`cairn_binary`] builds it with
//! `cargo build --bin cairn` into the target folder the test itself was built
//! in (found from the test executable's path), which is a no-op when it is
//! up to date.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The `cairn` binary of this source tree, built on first use.
///
/// A hard link to it is returned rather than the file cargo writes, so that
/// another build into a shared target folder cannot swap the binary under a
/// running test.
pub fn cairn_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            let test = std::env::current_exe().expect("the test executable's path");
            // <target>/<profile>/deps/<test> → <target>/<profile>
            let profile_folder = test
                .parent()
                .and_then(|deps| deps.parent())
                .expect("the test runs from <target>/<profile>/deps")
                .to_path_buf();
            let target = profile_folder
                .parent()
                .expect("a target folder")
                .to_path_buf();
            let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("the workspace")
                .to_path_buf();
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut build = std::process::Command::new(cargo);
            build
                .args(["build", "--quiet", "--bin", "cairn"])
                .current_dir(&workspace)
                .env("CARGO_TARGET_DIR", &target);
            if profile_folder
                .file_name()
                .is_some_and(|name| name == "release")
            {
                build.arg("--release");
            }
            let status = build
                .status()
                .unwrap_or_else(|error| panic!("cannot run cargo to build cairn: {error}"));
            assert!(status.success(), "`cargo build --bin cairn` failed");
            let built = profile_folder.join("cairn");
            let pinned = profile_folder.join(format!("cairn-under-test-{}", std::process::id()));
            let _ = std::fs::remove_file(&pinned);
            std::fs::hard_link(&built, &pinned)
                .or_else(|_| std::fs::copy(&built, &pinned).map(|_| ()))
                .unwrap_or_else(|error| panic!("cannot pin {}: {error}", built.display()));
            pinned
        })
        .clone()
}

/// A `cairn serve` process.
pub struct ServiceProcess {
    /// Where its service listens.
    pub address: SocketAddr,
    child: Child,
}

impl ServiceProcess {
    /// Starts `cairn serve --only <service>` with `environment` (every
    /// setting through its environment variable, as in Kubernetes) and waits
    /// until it serves (health SERVING, 60 s at most).
    pub async fn start(service: &str, environment: &[(&str, String)]) -> Self {
        let process = Self::start_listening(service, environment).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let channel =
                tonic::transport::Endpoint::from_shared(format!("http://{}", process.address))
                    .expect("an address")
                    .connect()
                    .await;
            if let Ok(channel) = channel {
                let status = tonic_health::pb::health_client::HealthClient::new(channel)
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: String::new(),
                    })
                    .await
                    .map(|response| response.into_inner().status);
                if matches!(status, Ok(code) if code == tonic_health::pb::health_check_response::ServingStatus::Serving as i32)
                {
                    return process;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "cairn serve --only {service} did not become SERVING within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts `cairn serve --only <service>` with `environment` and waits
    /// only until it says where it listens (it may not serve yet: its stores
    /// may be down).
    pub async fn start_listening(service: &str, environment: &[(&str, String)]) -> Self {
        let binary = cairn_binary();
        let mut command = Command::new(&binary);
        command
            .args(["serve", "--only", service])
            .env_clear()
            .env("CAIRN_LOG_FORMAT", "json")
            .env("CAIRN_METRICS_PORT", "0")
            .env("RUST_LOG", "info,sqlx=warn,sea_orm=warn,h2=warn,hyper=warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (name, value) in environment {
            command.env(name, value);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let address = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(record) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let fields = &record["fields"];
                if fields["message"] == "listening"
                    && let Some(address) = fields["address"].as_str()
                {
                    return address.parse::<SocketAddr>().ok();
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("cairn serve --only {service} did not start listening"));
        // Keep reading its logs so that the pipe never fills up.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { address, child }
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the process with SIGKILL and waits until it is gone.
    pub async fn kill(mut self) {
        self.child
            .kill()
            .await
            .unwrap_or_else(|error| panic!("cannot kill the service process: {error}"));
    }
}
