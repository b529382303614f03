//! Spans and logs of the test process, recorded in memory so that tests can
//! check that trace context crossed a service-to-service call, and that no
//! personal data or secret reaches a log line or a span.

use std::io::Write;
use std::sync::{Mutex, OnceLock};

use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing_subscriber::fmt::MakeWriter;

static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
static LOGS: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Every Cairn crate logs at debug level in tests, so that the search for
/// personal data covers more than production's default shows.
const TEST_LOG_FILTER: &str = "info,sqlx=warn,sea_orm=warn,h2=warn,hyper=warn,tower=warn,\
    cairn=debug,cairn_runtime=debug,cairn_state=debug,cairn_profile=debug,cairn_journey=debug,\
    cairn_recommendation=debug,cairn_feedback=debug";

/// Writes log lines to standard output (the test runner shows them for a
/// failed test) and to the in-memory capture.
#[derive(Clone, Copy, Default)]
pub struct CaptureWriter;

impl Write for CaptureWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        LOGS.lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend_from_slice(bytes);
        std::io::stdout().write(bytes)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

impl<'writer> MakeWriter<'writer> for CaptureWriter {
    type Writer = CaptureWriter;

    fn make_writer(&'writer self) -> Self::Writer {
        *self
    }
}

/// Installs the process's telemetry once, exporting spans to memory and
/// capturing logs.
pub fn install_once() -> &'static InMemorySpanExporter {
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(TEST_LOG_FILTER));
        // Another installer (a unit test in the same binary) may have won; the
        // exporter then stays empty and trace tests say so.
        let _ = cairn_runtime::telemetry::install_with(
            provider,
            cairn_runtime::config::LogFormat::Text,
            filter,
            CaptureWriter,
        );
        exporter
    })
}

/// Every finished span so far.
pub fn finished_spans() -> Vec<SpanData> {
    install_once().get_finished_spans().unwrap_or_default()
}

/// Every log line written so far by this test process, as bytes.
pub fn captured_logs() -> Vec<u8> {
    install_once();
    LOGS.lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .clone()
}
