//! Logs and traces.
//!
//! **Logs**: `tracing` events to stderr, filtered by the `log` setting, as text for a terminal
//! or as JSON lines for a log collector (`log_format = json`, which the Helm chart sets). A JSON
//! line carries the fields of the spans it happened in (`span`, `spans`): an API request's
//! `request_id`, a worker's `contact`, `crm` and `attempt`. What goes into a span or an event
//! is ids, counts, codes and error texts, never a secret or a contact's field values (the e-mail
//! address, phone, names): the API logs its route template, not the URL.
//!
//! **Traces** (off unless `otlp_endpoint` is set): the same spans, exported over OTLP/HTTP
//! (protobuf) in batches, so one change can be followed from the API request through the queue
//! to each CRM call. Each role exports under `service.name` (`otlp_service_name`) with its role
//! in the resource attribute `syncroot.role`. [`Telemetry::shutdown`] exports what is left.
//!
//! Not here: where spans begin (the API's `observe` middleware, the consumers, the CRM
//! transport) and how trace context crosses the queue and reaches the CRMs ([`context`]).

pub mod context;

use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, Targets};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

use crate::config::{LogConfig, TraceConfig};

/// Path of the traces signal under an OTLP/HTTP endpoint (OTLP specification, "OTLP/HTTP
/// Request"): <https://opentelemetry.io/docs/specs/otlp/#otlphttp-request>
const TRACES_PATH: &str = "/v1/traces";

/// What [`start`] set up; keep it until the process ends, then [`Telemetry::shutdown`].
#[must_use = "call Telemetry::shutdown before exiting, or spans still batched are lost"]
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still batched and stops the exporter. Blocks (the exporter's own
    /// timeout bounds it): call it from a blocking context.
    pub fn shutdown(self) {
        if let Some(provider) = self.traces
            && let Err(e) = provider.shutdown()
        {
            tracing::warn!(error = %e, "could not export the last spans");
        }
    }
}

/// Logs only, no traces: for the test harness and commands that are not roles. Safe to call
/// more than once (later calls are ignored), which the tests rely on.
pub fn init(cfg: &LogConfig) {
    let _ = Registry::default().with(logs(cfg)).try_init();
}

/// Logs and, when an OTLP endpoint is configured, traces. `role` (`api`, `forwarder`, …) goes
/// into every span's resource.
pub fn start(log: &LogConfig, trace: &TraceConfig, role: &str) -> anyhow::Result<Telemetry> {
    let provider = match &trace.otlp_endpoint {
        Some(endpoint) => Some(tracer_provider(endpoint, &trace.service_name, role)?),
        None => None,
    };
    // Only SyncRoot's own spans are traced, at info and above: the exporter's own logging and
    // the libraries' spans stay out of the traces.
    let traces = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("syncroot"))
            .with_filter(Targets::new().with_target("syncroot", tracing::Level::INFO))
    });
    Registry::default()
        .with(logs(log))
        .with(traces)
        .try_init()
        .context("installing the log subscriber")?;
    if let Some(endpoint) = &trace.otlp_endpoint {
        tracing::info!(%endpoint, role, "exporting traces over OTLP/HTTP");
    }
    Ok(Telemetry { traces: provider })
}

/// The log layer: text or JSON lines on stderr, with its own filter (the trace layer has its
/// own, so a quiet log does not thin the traces).
fn logs(cfg: &LogConfig) -> Box<dyn Layer<Registry> + Send + Sync> {
    let filter = EnvFilter::try_new(&cfg.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    if cfg.json {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    }
}

/// A batch exporter to `<endpoint>/v1/traces`, OTLP/HTTP with protobuf bodies. The exporter
/// also honours the standard `OTEL_EXPORTER_OTLP_HEADERS`, `…_TIMEOUT` and `…_COMPRESSION`
/// variables, and the batch processor `OTEL_BSP_*`.
fn tracer_provider(
    endpoint: &url::Url,
    service_name: &str,
    role: &str,
) -> anyhow::Result<SdkTracerProvider> {
    let url = format!("{}{TRACES_PATH}", endpoint.as_str().trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_endpoint(url)
        .build()
        .context("building the OTLP span exporter")?;
    let resource = Resource::builder()
        .with_service_name(service_name.to_owned())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .with_attribute(KeyValue::new("syncroot.role", role.to_owned()))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}
