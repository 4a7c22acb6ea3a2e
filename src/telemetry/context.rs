//! Trace context across process boundaries, as W3C Trace Context (`traceparent`,
//! `tracestate`): <https://www.w3.org/TR/trace-context/>.
//!
//! - Every message SyncRoot publishes carries the context of the span that published it in its
//!   AMQP headers ([`inject_message`], called by the publisher for every publish), so the
//!   consumer's span continues the same trace ([`follow_message`]). RabbitMQ keeps headers
//!   when it moves a message (retry tiers, dead-lettering), so retries and dead letters stay in
//!   the trace of the change they belong to.
//! - A change packed with others carries its request's context in the pack ([`to_map`],
//!   [`follow_map`]), so each change's processing stays in its own request's trace.
//! - An API request may arrive with a context from the calling application
//!   ([`follow_request`]); a CRM call sends its span's context outward ([`inject_request`]).
//!
//! Without the trace exporter there are no valid contexts: nothing is injected, and what is
//! extracted is ignored. A malformed `traceparent` is ignored too (the span starts a new trace).

use std::collections::HashMap;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry::trace::TraceContextExt as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Adds the current span's trace context to a message's headers, keeping the others.
pub fn inject_message(props: BasicProperties) -> BasicProperties {
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return props;
    }
    let mut headers = props.headers().clone().unwrap_or_default();
    TraceContextPropagator::new().inject_context(&cx, &mut AmqpHeadersMut(&mut headers));
    props.with_headers(headers)
}

/// Makes `span` (just created, not yet entered) continue the trace a message carries, if any.
pub fn follow_message(span: &tracing::Span, props: &BasicProperties) {
    if let Some(headers) = props.headers() {
        follow(span, &AmqpHeaders(headers));
    }
}

/// The trace context of `span` as a text map, for a record that travels inside a message
/// with others (a change in a pack); empty without a valid context.
pub fn to_map(span: &tracing::Span) -> HashMap<String, String> {
    let mut map = HashMap::new();
    let cx = span.context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut map);
    }
    map
}

/// Makes `span` (just created) continue the trace of one item a message carries: a packed
/// item's own context (a text map from [`to_map`]), otherwise the message's, if any.
pub fn follow_item(
    span: &tracing::Span,
    packed: bool,
    trace: &HashMap<String, String>,
    props: &BasicProperties,
) {
    match packed {
        true => follow(span, trace),
        false => follow_message(span, props),
    }
}

/// Adds the current span's trace context to an outgoing HTTP request.
pub fn inject_request(headers: &mut HeaderMap) {
    let cx = tracing::Span::current().context();
    if cx.span().span_context().is_valid() {
        TraceContextPropagator::new().inject_context(&cx, &mut HttpHeadersMut(headers));
    }
}

/// Makes `span` (just created) continue the trace of an incoming HTTP request, if it has one.
pub fn follow_request(span: &tracing::Span, headers: &HeaderMap) {
    follow(span, &HttpHeaders(headers));
}

/// Links `span` to the trace `other` belongs to (a batch span to the messages it serves
/// beyond its parent's).
pub fn link(span: &tracing::Span, other: &tracing::Span) {
    span.add_link(other.context().span().span_context().clone());
}

fn follow(span: &tracing::Span, carrier: &dyn Extractor) {
    let parent = TraceContextPropagator::new().extract(carrier);
    if parent.span().span_context().is_valid() {
        // Fails only when tracing is off (no layer, span disabled): nothing to continue then.
        let _ = span.set_parent(parent);
    }
}

/// AMQP headers as a carrier; the context travels as long strings.
struct AmqpHeaders<'a>(&'a FieldTable);
struct AmqpHeadersMut<'a>(&'a mut FieldTable);

impl Injector for AmqpHeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0
            .insert(key.into(), AMQPValue::LongString(value.into()));
    }
}

impl Extractor for AmqpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match self.0.inner().get(key)? {
            AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
            _ => None,
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(|k| k.as_str()).collect()
    }
}

/// HTTP headers as a carrier.
struct HttpHeaders<'a>(&'a HeaderMap);
struct HttpHeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HttpHeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

impl Extractor for HttpHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_context_survives_amqp_headers_and_a_malformed_one_is_ignored() {
        let propagator = TraceContextPropagator::new();
        let mut headers = FieldTable::default();
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        AmqpHeadersMut(&mut headers).set("traceparent", traceparent.to_owned());
        let cx = propagator.extract(&AmqpHeaders(&headers));
        let sc = cx.span().span_context().clone();
        assert!(sc.is_valid() && sc.is_remote() && sc.is_sampled());
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let mut back = FieldTable::default();
        propagator.inject_context(&cx, &mut AmqpHeadersMut(&mut back));
        assert_eq!(AmqpHeaders(&back).get("traceparent"), Some(traceparent));

        let mut bad = FieldTable::default();
        AmqpHeadersMut(&mut bad).set("traceparent", "00-zz-00f067aa0ba902b7-01".to_owned());
        let cx = propagator.extract(&AmqpHeaders(&bad));
        assert!(!cx.span().span_context().is_valid());
    }
}
