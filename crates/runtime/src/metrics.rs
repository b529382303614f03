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

/// Every method path the suite serves: the contract's, health and reflection.
fn known_paths() -> &'static std::collections::HashSet<String> {
    static PATHS: std::sync::OnceLock<std::collections::HashSet<String>> =
        std::sync::OnceLock::new();
    PATHS.get_or_init(|| {
        use prost::Message;
        let mut paths = std::collections::HashSet::new();
        for encoded in [
            cairn_contract::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
        ] {
            let Ok(set) = prost_types::FileDescriptorSet::decode(encoded) else {
                continue;
            };
            for file in &set.file {
                for service in &file.service {
                    for method in &service.method {
                        paths.insert(format!(
                            "/{}.{}/{}",
                            file.package(),
                            service.name(),
                            method.name()
                        ));
                    }
                }
            }
        }
        for reflection in ["v1", "v1alpha"] {
            paths.insert(format!(
                "/grpc.reflection.{reflection}.ServerReflection/ServerReflectionInfo"
            ));
        }
        paths
    })
}

/// Times one call and records it when the call ends.
pub struct CallTimer {
    service: &'static str,
    method: String,
    started: Instant,
}

impl CallTimer {
    /// Starts timing a call to `path` of `service`. A path that names no
    /// method of the contract (a scanner's guess) is recorded as "unknown",
    /// so that callers cannot create metric series without bound.
    pub fn start(service: &'static str, path: &str) -> Self {
        let method = if known_paths().contains(path) {
            path.to_string()
        } else {
            "unknown".to_string()
        };
        Self {
            service,
            method,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_served_methods_get_their_own_series() {
        let known = CallTimer::start(
            "journey",
            "/cairn.journey.v1.JourneyService/RecordTouchpoint",
        );
        assert_eq!(
            known.method,
            "/cairn.journey.v1.JourneyService/RecordTouchpoint"
        );
        let health = CallTimer::start("journey", "/grpc.health.v1.Health/Check");
        assert_eq!(health.method, "/grpc.health.v1.Health/Check");
        let guessed = CallTimer::start("journey", "/admin.Secret/Dump");
        assert_eq!(guessed.method, "unknown");
    }
}
