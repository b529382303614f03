//! A private Redis of one test, in its own `redis-server` process on a free
//! port, that the test may stop and start again empty (`--save ''
//! --appendonly no`: nothing survives a restart), without touching the
//! shared Redis other tests use.

use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// A `redis-server` process of one test.
pub struct PrivateRedis {
    /// The port it listens on (the same after a restart).
    pub port: u16,
    child: Option<Child>,
}

impl PrivateRedis {
    /// A private Redis on a free port, answering.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .unwrap_or_else(|error| panic!("no free port for a private Redis: {error}"));
        Self::on(port).await
    }

    /// A private Redis on `port`, not started yet: [`Self::resume`] starts it.
    pub fn not_started() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .map(|address| address.port())
            .unwrap_or_else(|error| panic!("no free port for a private Redis: {error}"));
        Self { port, child: None }
    }

    async fn on(port: u16) -> Self {
        let mut redis = Self { port, child: None };
        redis.resume().await;
        redis
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (empty) and waits until it answers PING.
    pub async fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|error| {
                panic!("cannot start redis-server (is it installed? `make test` needs it): {error}")
            });
        self.child = Some(child);
        let client = redis::Client::open(self.url()).unwrap_or_else(|error| panic!("{error}"));
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut connection) = client.get_multiplexed_async_connection().await {
                let pong: redis::RedisResult<String> =
                    redis::cmd("PING").query_async(&mut connection).await;
                if pong.is_ok() {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the private redis-server on port {} did not answer within 10 s",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server (SIGKILL: nothing is saved) and waits until it is gone.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Stops the server and starts it again on the same port, empty.
    pub async fn restart_empty(&mut self) {
        self.stop().await;
        self.resume().await;
    }
}
