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
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, Settings, TracesSampler};

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
/// Logs pass `RUST_LOG`; spans exported as traces pass the traces filter and
/// the sampler of their own settings, so that quieter logs never switch
/// tracing off.
pub fn init(settings: &Settings, service_name: &str) -> Result<TelemetryGuard, String> {
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(service_name.to_string())
        .build();
    let mut builder = SdkTracerProvider::builder()
        .with_resource(resource)
        .with_sampler(sampler(
            settings.traces_sampler,
            settings.traces_sampler_arg,
        ));
    if let Some(endpoint) = &settings.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()
            .map_err(|error| format!("cannot build the OTLP exporter for {endpoint}: {error}"))?;
        builder = builder.with_batch_exporter(exporter);
    }
    let provider = builder.build();
    let traces = EnvFilter::try_new(&settings.traces_filter).map_err(|error| {
        format!(
            "CAIRN_TRACES_FILTER {:?} is not a filter: {error}",
            settings.traces_filter
        )
    })?;
    install_filtered(
        provider.clone(),
        settings.log_format,
        log_filter(),
        traces,
        std::io::stdout,
    )?;
    Ok(TelemetryGuard { provider })
}

/// The sampler `OTEL_TRACES_SAMPLER` names, with `ratio` its argument.
pub fn sampler(kind: TracesSampler, ratio: f64) -> Sampler {
    match kind {
        TracesSampler::AlwaysOn => Sampler::AlwaysOn,
        TracesSampler::AlwaysOff => Sampler::AlwaysOff,
        TracesSampler::TraceIdRatio => Sampler::TraceIdRatioBased(ratio),
        TracesSampler::ParentBasedAlwaysOn => Sampler::ParentBased(Box::new(Sampler::AlwaysOn)),
        TracesSampler::ParentBasedAlwaysOff => Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
        TracesSampler::ParentBasedTraceIdRatio => {
            Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(ratio)))
        }
    }
}

/// The log filter unless `RUST_LOG` says otherwise.
pub const DEFAULT_LOG_FILTER: &str = "info,sqlx=warn,sea_orm=warn,h2=warn,hyper=warn,tower=warn";

/// The spans exported as traces unless `CAIRN_TRACES_FILTER` says
/// otherwise: every call's server span and the work inside it at info,
/// whatever `RUST_LOG` lets into the logs.
pub const DEFAULT_TRACES_FILTER: &str = "info,sqlx=warn,sea_orm=warn,h2=warn,hyper=warn,tower=warn";

/// `RUST_LOG`, or the default log filter when it is unset or not a filter.
fn log_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER))
}

/// Installs `provider` as the process's tracer, with logs in `format`
/// passing `RUST_LOG` and spans exported as the default traces filter says.
pub fn install(provider: SdkTracerProvider, format: LogFormat) -> Result<(), String> {
    install_filtered(
        provider,
        format,
        log_filter(),
        EnvFilter::new(DEFAULT_TRACES_FILTER),
        std::io::stdout,
    )
}

/// Installs `provider` as the process's tracer, with logs in `format`
/// passing `filter` written to `writer`, and spans exported when they pass
/// the same filter: what tests use to capture the logs and search them (and
/// every span the logs would show) for personal data.
pub fn install_with<W>(
    provider: SdkTracerProvider,
    format: LogFormat,
    filter: EnvFilter,
    writer: W,
) -> Result<(), String>
where
    W: for<'writer> tracing_subscriber::fmt::MakeWriter<'writer> + Send + Sync + 'static,
{
    let traces = EnvFilter::try_new(filter.to_string())
        .map_err(|error| format!("the log filter does not parse again: {error}"))?;
    install_filtered(provider, format, filter, traces, writer)
}

/// Installs `provider` as the process's tracer: logs in `format` passing
/// `logs` written to `writer`, and spans exported when they pass `traces`.
/// Each filter belongs to its own layer, so neither narrows the other.
pub fn install_filtered<W>(
    provider: SdkTracerProvider,
    format: LogFormat,
    logs: EnvFilter,
    traces: EnvFilter,
    writer: W,
) -> Result<(), String>
where
    W: for<'writer> tracing_subscriber::fmt::MakeWriter<'writer> + Send + Sync + 'static,
{
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    let tracer = provider.tracer("cairn");
    let log_layer = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(false)
            .with_writer(writer)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer().with_writer(writer).boxed(),
    };
    tracing_subscriber::registry()
        .with(log_layer.with_filter(logs))
        .with(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(traces),
        )
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

/// Writes the trace context into outgoing call metadata: the current
/// span's when the traces filter lets it through, else that of the nearest
/// span it did let through (the context the OpenTelemetry layer
/// activated): a span only the logs show must not cut the trace.
pub fn inject_trace_context(metadata: &mut tonic::metadata::MetadataMap) {
    use opentelemetry::trace::TraceContextExt;
    let mut context = tracing::Span::current().context();
    if !context.span().span_context().is_valid() {
        context = opentelemetry::Context::current();
    }
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
