//! Metrics on a Prometheus endpoint: request count, latency histogram and
//! error count per RPC, plus each service's own counters.
//!
//! The `metrics` facade keeps recording cheap and exporter-agnostic; the
//! Prometheus exporter serves `/metrics` on its own port so that scraping
//! never competes with gRPC traffic.

use std::net::SocketAddr;
use std::time::Instant;

use metrics_exporter_prometheus::PrometheusBuilder;

/// Latency buckets in seconds: from a cached lookup to a slow batch.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Serves `/metrics` on `address`. Call once per process.
pub fn serve_prometheus(address: SocketAddr) -> Result<(), String> {
    PrometheusBuilder::new()
        .with_http_listener(address)
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full("cairn_rpc_duration_seconds".into()),
            LATENCY_BUCKETS,
        )
        .map_err(|error| error.to_string())?
        .install()
        .map_err(|error| format!("cannot serve metrics on {address}: {error}"))
}

/// Times one call and records it when the call ends.
pub struct CallTimer {
    service: &'static str,
    method: String,
    started: Instant,
}

impl CallTimer {
    /// Starts timing a call to `path` of `service`.
    pub fn start(service: &'static str, path: &str) -> Self {
        Self {
            service,
            method: path.to_string(),
            started: Instant::now(),
        }
    }

    /// Records the call with its gRPC status `code` (0 is OK).
    pub fn finish(self, code: i32) {
        let elapsed = self.started.elapsed().as_secs_f64();
        let labels = [
            ("service", self.service.to_string()),
            ("method", self.method),
        ];
        metrics::counter!("cairn_rpc_requests_total", &labels).increment(1);
        metrics::histogram!("cairn_rpc_duration_seconds", &labels).record(elapsed);
        if code != 0 {
            let mut labels = labels.to_vec();
            labels.push(("code", code.to_string()));
            metrics::counter!("cairn_rpc_errors_total", &labels).increment(1);
        }
    }
}
