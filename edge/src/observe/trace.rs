//! OpenTelemetry traces (`[tracing]`, `docs/tracing.md`): W3C trace
//! context taken from the client (or a trace started), one server span per
//! request and one client span per upstream exchange, the edge's own span
//! sent upstream as the parent, and finished spans exported over OTLP/HTTP.
//!
//! A request never waits for the collector: a finished span goes into a
//! bounded queue with `try_send` (full: dropped and counted) and one tokio
//! task sends batches. Without `otlp_endpoint` nothing here exists and a
//! request pays one `Option` check.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::HeaderMap;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    Sampler, SdkTracer, SdkTracerProvider, Span, SpanData, SpanExporter as _, SpanProcessor,
};
use prometheus::{IntCounter, IntCounterVec};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::trace_context;
use crate::config::TracingConfig;

/// Why tracing could not start (the node then serves without it).
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("tracing needs a tokio runtime to export from")]
    NoRuntime,
    #[error("the OTLP exporter: {0}")]
    Exporter(String),
}

/// The counters of `[tracing]` (`edge_trace_spans_*`).
#[derive(Debug, Clone)]
pub struct TraceCounts {
    pub exported: IntCounter,
    pub dropped: IntCounterVec,
}

/// The traces of one configuration: the SDK's tracer (ids, sampling) and
/// the export queue behind it; W3C trace context is `trace_context.rs`.
#[derive(Debug)]
pub struct Tracing {
    config: TracingConfig,
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    export: Mutex<Option<JoinHandle<()>>>,
}

/// The sampler `sampling` and `parent_based` describe. `0` is off even
/// for a sampled caller: "sampling 0" exports nothing.
fn sampler(config: &TracingConfig) -> Sampler {
    if config.sampling <= 0.0 {
        return Sampler::AlwaysOff;
    }
    let ratio = if config.sampling >= 1.0 {
        Sampler::AlwaysOn
    } else {
        Sampler::TraceIdRatioBased(config.sampling)
    };
    if config.parent_based {
        Sampler::ParentBased(Box::new(ratio))
    } else {
        ratio
    }
}

impl Tracing {
    /// Tracing as `config` says, exporting from a task on the current
    /// runtime; `None` without an endpoint.
    pub fn start(
        config: &TracingConfig,
        node_name: &str,
        counts: TraceCounts,
    ) -> Result<Option<Arc<Tracing>>, TraceError> {
        let Some(url) = config.traces_url() else {
            return Ok(None);
        };
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| TraceError::NoRuntime)?;
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .with_timeout(config.export_timeout)
            .with_headers(config.headers.clone().into_iter().collect())
            .build()
            .map_err(|e| TraceError::Exporter(e.to_string()))?;
        let resource = Resource::builder_empty()
            .with_service_name(config.service_name.clone())
            .with_attribute(KeyValue::new("service.instance.id", node_name.to_owned()))
            .build();
        exporter.set_resource(&resource);
        let (tx, rx) = mpsc::channel(config.queue);
        let queue = Queue {
            tx: ArcSwapOption::from_pointee(tx),
            full: counts.dropped.with_label_values(&["queue_full"]),
        };
        let provider = SdkTracerProvider::builder()
            .with_sampler(sampler(config))
            .with_span_processor(queue)
            .with_resource(resource)
            .build();
        let batches = Batches {
            batch: config.batch,
            interval: config.export_interval,
            timeout: config.export_timeout,
            exported: counts.exported,
            failed: counts.dropped.with_label_values(&["export_failed"]),
        };
        let export = runtime.spawn(batches.run(rx, exporter));
        Ok(Some(Arc::new(Tracing {
            config: config.clone(),
            tracer: provider.tracer("edge"),
            provider,
            export: Mutex::new(Some(export)),
        })))
    }

    /// The configuration this was started from (a reload that leaves it
    /// alone keeps this tracing, queue and all).
    pub fn config(&self) -> &TracingConfig {
        &self.config
    }

    /// A request's part in its trace: the client's `traceparent` (and
    /// `tracestate`) in `headers` continued, or a trace started; its server
    /// span starts now, described by [`RequestTrace::describe`] if it is
    /// recorded (an unrecorded request builds no attribute).
    pub fn request(self: &Arc<Self>, headers: &HeaderMap, method: &str) -> RequestTrace {
        let caller = trace_context::extract(headers);
        let parent = match &caller {
            Some(caller) => Context::new().with_remote_span_context(caller.clone()),
            None => Context::new(),
        };
        let span = self
            .tracer
            .span_builder(span_name(method))
            .with_kind(SpanKind::Server)
            .start_with_context(&self.tracer, &parent);
        let context = match caller {
            // Not recorded here: the origin's spans hang under the
            // client's, as if the edge were not there (W3C's advice for a
            // proxy that does not take part).
            Some(caller) if !span.is_recording() => caller,
            _ => span.span_context().clone(),
        };
        RequestTrace {
            tracing: self.clone(),
            recording: span.is_recording(),
            context,
            span: Some(span),
        }
    }

    /// Sends what is queued and stops exporting, waiting at most `within`.
    pub async fn close(&self, within: Duration) {
        // Shutting the provider down closes the queue; the task sends what
        // it holds and ends.
        let _ = self.provider.shutdown();
        let task = self.export.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = task {
            let _ = tokio::time::timeout(within, task).await;
        }
    }
}

/// The span name of a request: its method, or `HTTP` for one outside
/// RFC 9110's (OpenTelemetry's HTTP conventions: names stay few).
fn span_name(method: &str) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE",
    ];
    KNOWN.into_iter().find(|m| *m == method).unwrap_or("HTTP")
}

/// What a recorded request's server span is described with.
#[derive(Debug)]
pub struct RequestStart<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub host: &'a str,
    pub scheme: &'static str,
    /// `1.1`, `2` (`network.protocol.version`).
    pub protocol: &'static str,
}

/// What a request's server span ends with.
#[derive(Debug)]
pub struct RequestEnd<'a> {
    /// The client, once `real_ip` has had its say.
    pub client: IpAddr,
    pub status: u16,
    pub body_bytes: u64,
    pub site: &'a str,
    pub cache_status: &'static str,
    pub cache_tier: Option<&'static str>,
    pub peer: Option<&'a str>,
    pub upstream_status: Option<u16>,
    pub error: Option<&'static str>,
    pub body_end: &'static str,
}

/// One request's place in its trace.
#[derive(Debug)]
pub struct RequestTrace {
    tracing: Arc<Tracing>,
    /// The ids children are made under: the request's span, or the
    /// caller's when this request is not recorded.
    context: SpanContext,
    /// Whether this request's spans are recorded (sampled).
    recording: bool,
    /// The request's span (recording only when sampled); `None` for the
    /// copy a background fill or revalidation carries.
    span: Option<Span>,
}

impl RequestTrace {
    /// Whether this request's spans are recorded and exported.
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// Puts what the request asked for on its span (call it only when
    /// [`is_recording`](Self::is_recording): building it has a cost).
    pub fn describe(&mut self, start: RequestStart<'_>) {
        let Some(span) = &mut self.span else {
            return;
        };
        let mut attributes = vec![
            KeyValue::new("http.request.method", start.method.to_owned()),
            KeyValue::new("url.path", start.path.to_owned()),
            KeyValue::new("network.protocol.version", start.protocol),
            KeyValue::new("url.scheme", start.scheme),
        ];
        if !start.host.is_empty() {
            attributes.push(KeyValue::new("server.address", start.host.to_owned()));
        }
        span.set_attributes(attributes);
    }

    /// The trace for background work this request started (a fill or a
    /// revalidation that outlives it): its upstream spans are children of
    /// this request's span.
    pub fn background(&self) -> RequestTrace {
        RequestTrace {
            tracing: self.tracing.clone(),
            context: self.context.clone(),
            recording: self.recording,
            span: None,
        }
    }

    /// Starts the span of one upstream exchange and puts its ids in the
    /// request going upstream (`traceparent`, and the caller's
    /// `tracestate`), in place of the client's. Not recorded, no span is
    /// made and the trace's ids go upstream as they are.
    pub fn upstream(
        &self,
        method: &str,
        peer: &str,
        attempt: usize,
        headers: &mut HeaderMap,
    ) -> Option<UpstreamSpan> {
        let tracing = &self.tracing;
        if !self.recording {
            trace_context::inject(&self.context, headers);
            return None;
        }
        let parent = Context::new().with_remote_span_context(self.context.clone());
        let span = tracing
            .tracer
            .span_builder(span_name(method))
            .with_kind(SpanKind::Client)
            .with_attributes([
                KeyValue::new("http.request.method", method.to_owned()),
                KeyValue::new("server.address", peer.to_owned()),
                KeyValue::new("http.request.resend_count", attempt as i64),
            ])
            .start_with_context(&tracing.tracer, &parent);
        trace_context::inject(span.span_context(), headers);
        Some(UpstreamSpan { span })
    }

    /// Ends the request's span with what happened.
    pub fn finish(mut self, end: RequestEnd<'_>) {
        let Some(mut span) = self.span.take() else {
            return;
        };
        if !span.is_recording() {
            return;
        }
        let mut attributes = vec![
            KeyValue::new("http.response.status_code", i64::from(end.status)),
            KeyValue::new("http.response.body.size", end.body_bytes as i64),
            KeyValue::new("client.address", end.client.to_string()),
            KeyValue::new("edge.site", end.site.to_owned()),
            KeyValue::new("edge.cache.status", end.cache_status),
            KeyValue::new("edge.body_end", end.body_end),
        ];
        if let Some(tier) = end.cache_tier {
            attributes.push(KeyValue::new("edge.cache.tier", tier));
        }
        if let Some(peer) = end.peer {
            attributes.push(KeyValue::new("edge.peer", peer.to_owned()));
        }
        if let Some(status) = end.upstream_status {
            attributes.push(KeyValue::new(
                "edge.upstream.status_code",
                i64::from(status),
            ));
        }
        if let Some(error) = end.error {
            attributes.push(KeyValue::new("error.type", error));
        }
        span.set_attributes(attributes);
        // OpenTelemetry's HTTP conventions: a server span is an error for
        // 5xx only (a 4xx is the client's).
        if end.status >= 500 || end.error.is_some() {
            span.set_status(Status::error(end.error.unwrap_or("server error")));
        }
        span.end();
    }
}

/// The span of one upstream exchange; it ends when dropped (with the
/// response body, or at the failure).
#[derive(Debug)]
pub struct UpstreamSpan {
    span: Span,
}

impl UpstreamSpan {
    /// The peer answered with `status`.
    pub fn answered(&mut self, status: u16) {
        if self.span.is_recording() {
            self.span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if status >= 500 {
                self.span.set_status(Status::error("upstream 5xx"));
            }
        }
    }

    /// The exchange failed: `kind` as in `edge_origin_errors_total`.
    pub fn failed(mut self, kind: &'static str) {
        if self.span.is_recording() {
            self.span.set_attribute(KeyValue::new("error.type", kind));
            self.span.set_status(Status::error(kind));
        }
    }
}

/// The span processor: finished sampled spans into the bounded queue,
/// never waiting.
#[derive(Debug)]
struct Queue {
    /// Emptied by `shutdown`, which lets the export task end.
    tx: ArcSwapOption<mpsc::Sender<SpanData>>,
    full: IntCounter,
}

impl SpanProcessor for Queue {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        if !span.span_context.is_sampled() {
            return;
        }
        if let Some(tx) = self.tx.load().as_ref()
            && tx.try_send(span).is_err()
        {
            self.full.inc();
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        self.tx.store(None);
        Ok(())
    }
}

/// The export task's settings and counters.
struct Batches {
    batch: usize,
    interval: Duration,
    timeout: Duration,
    exported: IntCounter,
    failed: IntCounter,
}

impl Batches {
    /// Sends a batch once `batch` spans are queued or `interval` passed,
    /// one request at a time: while the collector is slow the queue fills
    /// and spans are dropped there, not held here.
    async fn run(
        self,
        mut rx: mpsc::Receiver<SpanData>,
        exporter: opentelemetry_otlp::SpanExporter,
    ) {
        let mut spans = Vec::with_capacity(self.batch);
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let room = self.batch - spans.len();
            let closed = tokio::select! {
                n = rx.recv_many(&mut spans, room) => {
                    if n > 0 && spans.len() < self.batch {
                        continue;
                    }
                    n == 0
                }
                _ = tick.tick() => false,
            };
            if !spans.is_empty() {
                let batch = std::mem::replace(&mut spans, Vec::with_capacity(self.batch));
                let n = batch.len() as u64;
                match tokio::time::timeout(self.timeout, exporter.export(batch)).await {
                    Ok(Ok(())) => self.exported.inc_by(n),
                    Ok(Err(err)) => {
                        self.failed.inc_by(n);
                        tracing::debug!(error = %err, spans = n, "trace export failed");
                    }
                    Err(_) => {
                        self.failed.inc_by(n);
                        tracing::debug!(spans = n, "trace export timed out");
                    }
                }
            }
            if closed {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts() -> TraceCounts {
        TraceCounts {
            exported: IntCounter::new("exported", "x").expect("counter"),
            dropped: IntCounterVec::new(prometheus::Opts::new("dropped", "x"), &["reason"])
                .expect("counter"),
        }
    }

    fn config(sampling: f64) -> TracingConfig {
        TracingConfig {
            // Nothing listens on port 9: exports fail, which is counted.
            otlp_endpoint: Some("http://127.0.0.1:9".into()),
            sampling,
            export_interval: Duration::from_millis(20),
            export_timeout: Duration::from_millis(500),
            ..TracingConfig::default()
        }
    }

    fn begin(tracing: &Arc<Tracing>, headers: &HeaderMap) -> RequestTrace {
        let mut trace = tracing.request(headers, "GET");
        if trace.is_recording() {
            trace.describe(describe());
        }
        trace
    }

    fn describe() -> RequestStart<'static> {
        RequestStart {
            method: "GET",
            path: "/a",
            host: "example.com",
            scheme: "http",
            protocol: "1.1",
        }
    }

    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn started(sampling: f64, counts: TraceCounts) -> Arc<Tracing> {
        Tracing::start(&config(sampling), "n", counts)
            .expect("starts")
            .expect("configured")
    }

    /// Headers with the caller's `traceparent`.
    fn from_caller() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", CALLER.parse().expect("value"));
        headers
    }

    fn traceparent(headers: &HeaderMap) -> String {
        headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }

    #[tokio::test]
    async fn the_clients_trace_goes_upstream_with_the_edges_span_as_parent() {
        let tracing = started(1.0, counts());
        let mut client = from_caller();
        client.insert("tracestate", "vendor=1".parse().expect("value"));
        let trace = begin(&tracing, &client);
        let mut upstream = client.clone();
        let span = trace.upstream("GET", "origin:80", 0, &mut upstream);
        let sent = traceparent(&upstream);
        assert!(
            sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{sent}"
        );
        assert!(sent.ends_with("-01"), "{sent}");
        assert!(
            !sent.contains("00f067aa0ba902b7"),
            "the edge's span is the parent: {sent}"
        );
        assert_eq!(
            upstream.get("tracestate").map(|v| v.as_bytes()),
            Some(&b"vendor=1"[..])
        );
        drop(span);
    }

    #[tokio::test]
    async fn unrecorded_the_callers_ids_go_upstream_unchanged() {
        let tracing = started(0.0, counts());
        let client = from_caller();
        let trace = begin(&tracing, &client);
        let mut upstream = client.clone();
        assert!(trace.upstream("GET", "o:80", 0, &mut upstream).is_none());
        assert_eq!(traceparent(&upstream), CALLER);
    }

    #[tokio::test]
    async fn without_a_parent_a_trace_is_started_and_sampling_zero_records_nothing() {
        let exported = counts();
        let tracing = started(0.0, exported.clone());
        let trace = begin(&tracing, &HeaderMap::new());
        let mut upstream = HeaderMap::new();
        assert!(
            trace
                .upstream("GET", "origin:80", 0, &mut upstream)
                .is_none()
        );
        let sent = traceparent(&upstream);
        assert_eq!(sent.len(), 55, "{sent}");
        assert!(sent.ends_with("-00"), "not sampled: {sent}");
        trace.finish(RequestEnd {
            client: IpAddr::from([127, 0, 0, 1]),
            status: 200,
            body_bytes: 1,
            site: "default",
            cache_status: "MISS",
            cache_tier: None,
            peer: None,
            upstream_status: Some(200),
            error: None,
            body_end: "complete",
        });
        tracing.close(Duration::from_secs(1)).await;
        assert_eq!(exported.exported.get(), 0);
        assert_eq!(
            exported.dropped.with_label_values(&["export_failed"]).get(),
            0
        );
    }

    #[tokio::test]
    async fn a_dead_collector_costs_spans_not_requests() {
        let c = counts();
        let tracing = started(1.0, c.clone());
        for _ in 0..3 {
            let trace = begin(&tracing, &HeaderMap::new());
            trace.finish(RequestEnd {
                client: IpAddr::from([127, 0, 0, 1]),
                status: 200,
                body_bytes: 1,
                site: "default",
                cache_status: "HIT",
                cache_tier: Some("memory"),
                peer: None,
                upstream_status: None,
                error: None,
                body_end: "complete",
            });
        }
        tracing.close(Duration::from_secs(2)).await;
        assert_eq!(c.dropped.with_label_values(&["export_failed"]).get(), 3);
        assert_eq!(c.exported.get(), 0);
    }

    #[test]
    fn a_full_queue_drops_and_counts() {
        let (tx, _rx) = mpsc::channel(1);
        let c = counts();
        let queue = Queue {
            tx: ArcSwapOption::from_pointee(tx),
            full: c.dropped.with_label_values(&["queue_full"]),
        };
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOn)
            .with_span_processor(queue)
            .build();
        let tracer = provider.tracer("t");
        for _ in 0..3 {
            tracer.start("s").end();
        }
        assert_eq!(c.dropped.with_label_values(&["queue_full"]).get(), 2);
    }

    #[test]
    fn sampling_zero_is_off_even_for_a_sampled_caller() {
        assert!(matches!(sampler(&config(0.0)), Sampler::AlwaysOff));
        assert!(matches!(sampler(&config(1.0)), Sampler::ParentBased(_)));
        let ratio_alone = TracingConfig {
            parent_based: false,
            ..config(0.5)
        };
        assert!(matches!(
            sampler(&ratio_alone),
            Sampler::TraceIdRatioBased(_)
        ));
    }
}
