//! `[tracing]`: OpenTelemetry traces, W3C trace context propagation and
//! the OTLP/HTTP collector they are sent to (`docs/tracing.md`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use super::units;

/// Distributed tracing. Without `otlp_endpoint` the edge neither starts
/// nor changes a trace: a client's `traceparent` goes upstream as it came.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracingConfig {
    /// Where spans are posted, OTLP/HTTP protobuf: `http://HOST:PORT`
    /// (`/v1/traces` is added) or the full URL of the traces endpoint.
    /// With it set, every request takes part in its trace: a client's
    /// `traceparent`/`tracestate` is continued (a new trace is started
    /// without one) and the origin or shield gets the edge's own span as
    /// its parent. Default: unset (off).
    pub otlp_endpoint: Option<String>,
    /// The share of new traces recorded and exported, 0.0 to 1.0. At `0`
    /// nothing is exported (ids are still propagated). Default: `0`.
    pub sampling: f64,
    /// Follow the caller's decision (the `sampled` flag of its
    /// `traceparent`) when there is one, as OpenTelemetry's parent-based
    /// sampler does; `false` lets `sampling` alone decide. Clients can
    /// then ask for traces: spans past `queue` are dropped, never waited
    /// for. Default: `true`.
    pub parent_based: bool,
    /// `service.name` of the exported spans. Default: `edge`.
    pub service_name: String,
    /// Extra fields on every export request (an API key for a hosted
    /// collector). Default: none.
    pub headers: BTreeMap<String, String>,
    /// Finished spans waiting for export; past it spans are dropped and
    /// counted (`edge_trace_spans_dropped_total{reason="queue_full"}`).
    /// Default: `4096`.
    pub queue: usize,
    /// Spans per export request. Default: `512`.
    pub batch: usize,
    /// A batch is sent at least this often. Default: `1s`.
    #[serde(deserialize_with = "units::de_duration")]
    pub export_interval: Duration,
    /// An export request that takes longer is abandoned and its spans
    /// counted as dropped (`reason="export_failed"`). Default: `5s`.
    #[serde(deserialize_with = "units::de_duration")]
    pub export_timeout: Duration,
}

impl Default for TracingConfig {
    fn default() -> Self {
        TracingConfig {
            otlp_endpoint: None,
            sampling: 0.0,
            parent_based: true,
            service_name: "edge".to_owned(),
            headers: BTreeMap::new(),
            queue: 4096,
            batch: 512,
            export_interval: Duration::from_secs(1),
            export_timeout: Duration::from_secs(5),
        }
    }
}

impl TracingConfig {
    /// The traces endpoint: the configured URL, with `/v1/traces` when it
    /// names only the collector.
    pub fn traces_url(&self) -> Option<String> {
        let url = self.otlp_endpoint.as_deref()?;
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        Some(match rest.find('/') {
            Some(at) if !rest[at..].trim_end_matches('/').is_empty() => url.to_owned(),
            _ => format!("{}/v1/traces", url.trim_end_matches('/')),
        })
    }

    /// What serde cannot check: `(key, message)`.
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(0.0..=1.0).contains(&self.sampling) {
            return Err(("tracing.sampling", "must be 0.0 to 1.0".into()));
        }
        match self.traces_url() {
            Some(url) => {
                let uri: http::Uri = url
                    .parse()
                    .map_err(|e| ("tracing.otlp_endpoint", format!("`{url}`: {e}")))?;
                if uri.scheme_str() != Some("http") || uri.host().is_none() {
                    return Err((
                        "tracing.otlp_endpoint",
                        format!(
                            "`{url}` is not http://HOST[:PORT][/PATH] (OTLP over https: \
                             send to a local collector that forwards it)"
                        ),
                    ));
                }
            }
            None if self.sampling > 0.0 => {
                return Err((
                    "tracing.sampling",
                    "spans need somewhere to go: set tracing.otlp_endpoint".into(),
                ));
            }
            None => {}
        }
        for (name, value) in &self.headers {
            if http::HeaderName::try_from(name.as_str()).is_err()
                || http::HeaderValue::try_from(value.as_str()).is_err()
            {
                return Err((
                    "tracing.headers",
                    format!("`{name}` is not a valid header field"),
                ));
            }
        }
        if self.queue == 0 || self.batch == 0 {
            return Err(("tracing.queue", "queue and batch must be at least 1".into()));
        }
        if self.export_interval.is_zero() || self.export_timeout.is_zero() {
            return Err((
                "tracing.export_interval",
                "export_interval and export_timeout must be more than 0".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_endpoint(url: &str) -> TracingConfig {
        TracingConfig {
            otlp_endpoint: Some(url.to_owned()),
            ..TracingConfig::default()
        }
    }

    #[test]
    fn the_traces_path_is_added_to_a_bare_collector() {
        let url = |u| with_endpoint(u).traces_url().unwrap_or_default();
        assert_eq!(url("http://otel:4318"), "http://otel:4318/v1/traces");
        assert_eq!(url("http://otel:4318/"), "http://otel:4318/v1/traces");
        assert_eq!(
            url("http://otel:4318/custom/traces"),
            "http://otel:4318/custom/traces"
        );
        assert_eq!(TracingConfig::default().traces_url(), None);
    }

    #[test]
    fn bad_values_are_named() {
        let key = |c: TracingConfig| c.validate().err().map(|(k, _)| k);
        assert_eq!(key(TracingConfig::default()), None);
        assert_eq!(key(with_endpoint("http://127.0.0.1:4318")), None);
        assert_eq!(
            key(with_endpoint("https://otel:4318")),
            Some("tracing.otlp_endpoint")
        );
        assert_eq!(
            key(with_endpoint("otel:4318")),
            Some("tracing.otlp_endpoint")
        );
        let sampled = |s| TracingConfig {
            sampling: s,
            ..with_endpoint("http://otel:4318")
        };
        assert_eq!(key(sampled(1.5)), Some("tracing.sampling"));
        assert_eq!(key(sampled(f64::NAN)), Some("tracing.sampling"));
        assert_eq!(key(sampled(0.25)), None);
        let nowhere = TracingConfig {
            sampling: 0.5,
            ..TracingConfig::default()
        };
        assert_eq!(key(nowhere), Some("tracing.sampling"));
    }
}
