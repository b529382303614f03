//! One telemetry setup, installed once per process: structured logs with
//! `tracing`, OpenTelemetry traces exported over OTLP when an endpoint is
//! configured, and W3C trace context carried on every incoming and outgoing
//! gRPC call.
//!
//! A tracer provider is installed even without an exporter, so that trace
//! context a caller sends is still passed on to the next service.

use std::task::{Context, Poll};

use futures::future::BoxFuture;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, Settings};

/// Keeps the tracer provider alive; dropping it flushes spans still buffered.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            eprintln!("telemetry: flushing spans failed: {error}");
        }
    }
}

/// Installs logging and tracing for the process. `service_name` becomes the
/// OpenTelemetry `service.name` ("cairn" when one process runs every service).
pub fn init(settings: &Settings, service_name: &str) -> Result<TelemetryGuard, String> {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_string())
        .build();
    let mut builder = SdkTracerProvider::builder().with_resource(resource);
    if let Some(endpoint) = &settings.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|error| format!("cannot build the OTLP exporter for {endpoint}: {error}"))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    install(provider.clone(), settings.log_format)?;
    Ok(TelemetryGuard { provider })
}

/// The log filter unless `RUST_LOG` says otherwise.
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,sea_orm=warn,h2=warn,hyper=warn,tower=warn";

/// Installs `provider` as the process's tracer, with logs in `format`.
/// Tests call it with a provider that records spans in memory.
pub fn install(provider: SdkTracerProvider, format: LogFormat) -> Result<(), String> {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    install_with(provider, format, filter, std::io::stdout)
}

/// Installs `provider` as the process's tracer, with logs in `format`
/// passing `filter` written to `writer`: what tests use to capture the logs
/// and search them for personal data.
pub fn install_with<W>(
    provider: SdkTracerProvider,
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Result<(), String>
where
    W: for<'writer> tracing_subscriber::fmt::MakeWriter<'writer> + Send + Sync + 'static,
{
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    let tracer = provider.tracer("cairn");
    let logs = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .with_writer(writer)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(writer).boxed(),
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(logs)
        .with(tracing_opentelemetry::layer().with_tracer(tracer))
        .try_init()
        .map_err(|error| format!("telemetry is already installed: {error}"))
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|key| key.as_str()).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// Writes the current span's trace context into outgoing call metadata.
pub fn inject_trace_context(metadata: &mut tonic::metadata::MetadataMap) {
    let context = tracing::Span::current().context();
    TraceContextPropagator::new().inject_context(&context, &mut MetadataInjector(metadata));
}

/// The tower layer that opens a server span for every call, as a child of
/// the trace context the caller sent.
#[derive(Debug, Clone)]
pub struct TraceLayer {
    service: &'static str,
}

impl TraceLayer {
    /// Spans of calls to `service` ("profile", ...).
    pub fn new(service: &'static str) -> Self {
        Self { service }
    }
}

impl<S> tower::Layer<S> for TraceLayer {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Traced {
            inner,
            service: self.service,
        }
    }
}

/// The service that [`TraceLayer`] wraps around a server's routes.
#[derive(Debug, Clone)]
pub struct Traced<S> {
    inner: S,
    service: &'static str,
}

impl<S, B, ResBody> tower::Service<http::Request<B>> for Traced<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_string();
        let (rpc_service, rpc_method) = path
            .trim_start_matches('/')
            .split_once('/')
            .unwrap_or((path.as_str(), ""));
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %path,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %rpc_service,
            rpc.method = %rpc_method,
            cairn.service = self.service,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers()));
        let _ = span.set_parent(parent);
        let metrics = crate::metrics::CallTimer::start(self.service, &path);
        let future = self.inner.call(request);
        let record_span = span.clone();
        Box::pin(
            async move {
                let response = future.await;
                let code = match &response {
                    Ok(response) => response
                        .headers()
                        .get("grpc-status")
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.parse::<i32>().ok())
                        .unwrap_or(0),
                    Err(_) => 2,
                };
                record_span.record("rpc.grpc.status_code", code);
                metrics.finish(code);
                response
            }
            .instrument(span),
        )
    }
}
