//! Logs (tracing, JSON or pretty), metrics (OpenTelemetry instruments
//! exported through a Prometheus registry served at `/metrics`, plus the
//! standard `process_*` gauges) and traces (OpenTelemetry spans exported over
//! OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set, with W3C trace
//! context carried in HTTP and NATS headers; off otherwise).

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use opentelemetry::metrics::Meter;
use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prometheus::{Encoder, TextEncoder};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::fmt::writer::{BoxMakeWriter, MakeWriter};
use tracing_subscriber::{EnvFilter, Layer, layer::SubscriberExt, util::SubscriberInitExt};

/// How log lines are written (`LOG_FORMAT=json|pretty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One JSON object per line (production).
    #[default]
    Json,
    /// Human-readable lines (local development).
    Pretty,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "json" => Ok(Self::Json),
            "pretty" | "text" => Ok(Self::Pretty),
            other => Err(format!(
                "unknown log format {other:?} (expected json or pretty)"
            )),
        }
    }
}

/// What [`init`] sets up.
#[derive(Debug, Clone, Default)]
pub struct TelemetrySettings {
    /// `service.name` of the metrics' `target_info` and of every span.
    pub service_name: &'static str,
    pub log_format: LogFormat,
    /// Base URL of an OTLP/HTTP receiver (`http://collector:4318`); spans go
    /// to `<base>/v1/traces`. `None` or empty: no tracing.
    pub otlp_endpoint: Option<String>,
    /// `Some(interval)`: log lines gather in memory and are written to
    /// stdout together every `interval` (sooner when 64 KiB have gathered,
    /// and when the guard drops), one write for many lines. `None`: each
    /// line is written as it is logged.
    pub log_flush: Option<Duration>,
}

/// Flushes and stops the span exporter when dropped (keep it alive in
/// `main` until the service has stopped).
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    tracer: Option<SdkTracerProvider>,
    log_flusher: Option<LogFlusher>,
}

impl TelemetryGuard {
    /// Sends the spans that are still buffered (tests; shutdown does it too).
    pub fn flush(&self) {
        if let Some(t) = &self.tracer {
            let _ = t.force_flush();
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(t) = self.tracer.take()
            && let Err(e) = t.shutdown()
        {
            tracing::warn!(error = %e, "trace exporter did not shut down cleanly");
        }
        // Last: whatever was logged until now reaches stdout.
        if let Some(f) = self.log_flusher.take() {
            f.stop();
        }
    }
}

/// Buffered log lines waiting for their write to stdout.
#[derive(Default)]
struct LogBuffer {
    lines: Mutex<Vec<u8>>,
}

/// Gathered bytes that make a write happen at once rather than at the tick.
const LOG_BUFFER_LIMIT: usize = 64 * 1024;

impl LogBuffer {
    /// Writes what has gathered. Holding stdout's lock while taking the
    /// lines keeps two flushes from writing out of order.
    fn write_out(&self) {
        let mut out = std::io::stdout().lock();
        let pending = match self.lines.lock() {
            Ok(mut lines) if !lines.is_empty() => std::mem::take(&mut *lines),
            _ => return,
        };
        // Nowhere to report a failed log write; the lines are dropped.
        let _ = out.write_all(&pending);
        let _ = out.flush();
    }
}

/// The fmt layer's writer when lines are buffered: each event's line (the
/// formatter hands over a whole line in one write) is appended to the buffer.
#[derive(Clone)]
struct BufferedStdout(Arc<LogBuffer>);

impl Write for &LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let full = match self.lines.lock() {
            Ok(mut lines) => {
                lines.extend_from_slice(buf);
                lines.len() >= LOG_BUFFER_LIMIT
            }
            Err(_) => false,
        };
        if full {
            self.write_out();
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BufferedStdout {
    type Writer = &'a LogBuffer;
    fn make_writer(&'a self) -> Self::Writer {
        &self.0
    }
}

/// The thread that writes the buffered lines every interval; stopping it
/// writes what is left.
struct LogFlusher {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl LogFlusher {
    fn start(buffer: Arc<LogBuffer>, every: Duration) -> std::io::Result<Self> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("log-flush".into())
            .spawn(move || {
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    buffer.write_out();
                }
                buffer.write_out();
            })?;
        Ok(Self { stop, thread })
    }

    fn stop(self) {
        drop(self.stop);
        let _ = self.thread.join();
    }
}

static SERVICE_NAME: OnceLock<&'static str> = OnceLock::new();
static TRACING: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (and trace context is read from and written
/// to headers). Hot paths skip the propagation work when it is off.
pub fn tracing_enabled() -> bool {
    TRACING.load(Ordering::Relaxed)
}

fn resource() -> Resource {
    Resource::builder()
        .with_service_name(*SERVICE_NAME.get().unwrap_or(&"shortline"))
        .build()
}

/// Installs the global tracing subscriber (`RUST_LOG` filters, default
/// `info`) and, with an OTLP endpoint, the span exporter and the W3C trace
/// context propagator. Call once, first thing in `main`; later calls only
/// return an empty guard.
pub fn init(settings: &TelemetrySettings) -> anyhow::Result<TelemetryGuard> {
    if !settings.service_name.is_empty() {
        let _ = SERVICE_NAME.set(settings.service_name);
    }
    let endpoint = settings
        .otlp_endpoint
        .as_deref()
        .map(|e| e.trim().trim_end_matches('/'))
        .filter(|e| !e.is_empty());
    let tracer = match endpoint {
        Some(base) => {
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_endpoint(format!("{base}/v1/traces"))
                .build()?;
            Some(
                SdkTracerProvider::builder()
                    .with_resource(resource())
                    .with_batch_exporter(exporter)
                    .build(),
            )
        }
        None => None,
    };
    let otel_layer = tracer.as_ref().map(|t| {
        tracing_opentelemetry::layer()
            .with_tracer(t.tracer("shortline"))
            .with_filter(tracing_subscriber::filter::LevelFilter::INFO)
    });
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let buffer = settings
        .log_flush
        .filter(|every| !every.is_zero())
        .map(|every| (Arc::new(LogBuffer::default()), every));
    let writer = match &buffer {
        Some((b, _)) => BoxMakeWriter::new(BufferedStdout(b.clone())),
        None => BoxMakeWriter::new(std::io::stdout),
    };
    let fmt_layer = match settings.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(writer)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().with_writer(writer).boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(otel_layer)
        .with(fmt_layer.with_filter(filter))
        .try_init()
        .is_ok();
    if !installed {
        return Ok(TelemetryGuard {
            tracer: None,
            log_flusher: None,
        });
    }
    let log_flusher = match buffer {
        Some((b, every)) => Some(LogFlusher::start(b, every)?),
        None => None,
    };
    if let Some(t) = &tracer {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        opentelemetry::global::set_tracer_provider(t.clone());
        TRACING.store(true, Ordering::Relaxed);
        tracing::info!(
            endpoint = endpoint.unwrap_or_default(),
            "exporting traces over OTLP/HTTP"
        );
    }
    Ok(TelemetryGuard {
        tracer,
        log_flusher,
    })
}

/// Logs only (no traces): for tools and tests.
pub fn init_tracing(format: LogFormat) {
    let _ = init(&TelemetrySettings {
        log_format: format,
        ..Default::default()
    })
    .map(std::mem::forget);
}

/// The current span's trace context as W3C headers (`traceparent`,
/// `tracestate`); empty when tracing is off or there is no span.
pub fn current_trace_headers() -> HashMap<String, String> {
    let mut headers = HashMap::new();
    if tracing_enabled() {
        let cx = tracing::Span::current().context();
        opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut headers));
    }
    headers
}

/// Makes the trace context found in `carrier` (HTTP or NATS headers) the
/// parent of `span`. Does nothing when tracing is off or there is none.
pub fn set_parent_from(span: &tracing::Span, carrier: &dyn Extractor) {
    if !tracing_enabled() {
        return;
    }
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(carrier));
    let _ = span.set_parent(cx);
}

/// Links `span` to the trace context found in `carrier` (for a span that
/// handles several messages at once).
pub fn add_link_from(span: &tracing::Span, carrier: &dyn Extractor) {
    if !tracing_enabled() {
        return;
    }
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(carrier));
    let linked = cx.span().span_context().clone();
    if linked.is_valid() {
        span.add_link(linked);
    }
}

/// Writes the current span's trace context into `carrier`.
pub fn inject_current(carrier: &mut dyn Injector) {
    if !tracing_enabled() {
        return;
    }
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, carrier));
}

/// Reads trace headers from an HTTP header map.
pub struct HttpHeaders<'a>(pub &'a axum::http::HeaderMap);

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

struct Metrics {
    registry: prometheus::Registry,
    _provider: SdkMeterProvider,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

fn metrics() -> &'static Metrics {
    METRICS.get_or_init(|| {
        let registry = prometheus::Registry::new();
        let provider = match opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .build()
        {
            Ok(exporter) => SdkMeterProvider::builder()
                .with_resource(resource())
                .with_reader(exporter)
                .build(),
            Err(e) => {
                tracing::error!(error = %e, "prometheus exporter unavailable; metrics disabled");
                SdkMeterProvider::builder().build()
            }
        };
        opentelemetry::global::set_meter_provider(provider.clone());
        // process_cpu_seconds_total, process_resident_memory_bytes, ... (Linux).
        if let Err(e) = registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            tracing::warn!(error = %e, "process metrics unavailable");
        }
        Metrics {
            registry,
            _provider: provider,
        }
    })
}

/// The meter every instrument of a service is created from. The first call
/// installs the process-wide meter provider and its Prometheus registry.
pub fn meter() -> Meter {
    metrics();
    opentelemetry::global::meter("shortline")
}

/// Histogram bucket boundaries for durations in seconds (1 ms … 10 s).
pub const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Renders every instrument in the Prometheus text format.
pub fn render_metrics() -> Result<String, prometheus::Error> {
    let families = metrics().registry.gather();
    let mut out = Vec::new();
    TextEncoder::new().encode(&families, &mut out)?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// `GET /metrics`.
pub async fn metrics_handler() -> Response {
    match render_metrics() {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "failed to encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
