//! Spans of the test process, recorded in memory so that tests can check
//! that trace context crossed a service-to-service call.

use std::sync::OnceLock;

use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();

/// Installs the process's telemetry once, exporting spans to memory.
pub fn install_once() -> &'static InMemorySpanExporter {
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        // Another installer (a unit test in the same binary) may have won; the
        // exporter then stays empty and trace tests say so.
        let _ = cairn_runtime::telemetry::install(provider, cairn_runtime::config::LogFormat::Text);
        exporter
    })
}

/// Every finished span so far.
pub fn finished_spans() -> Vec<SpanData> {
    install_once().get_finished_spans().unwrap_or_default()
}
