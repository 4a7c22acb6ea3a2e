//! Counters for benchmarks and tests, served by `GET /__sandbox/counters`.
//!
//! What it is: how many calls each route template received (errors included), how many records
//! were written and by which route, every collection call with its size (refused ones too, see
//! [`crate::kit::batches`]), and webhook delivery figures. What it is not: Salesforce's
//! API usage, which is `limits.rs` (the token endpoint and control API never count there).

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::kit::batches::BatchCalls;

/// All counters; reset by `POST /__sandbox/counters/reset`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Counters {
    /// Calls per `"<METHOD> <route template>"` under `/services/data`, errors included.
    pub calls: BTreeMap<String, u64>,
    /// Records written (created, updated or deleted) per route template.
    pub records: BTreeMap<String, u64>,
    /// SOQL queries run (`/query`, `/queryAll`; not their further pages) by shape: the object
    /// and the fields filtered on, such as `Contact WHERE Email` or `Contact` for all.
    pub queries: BTreeMap<String, u64>,
    pub records_written: u64,
    /// Every sObject Collections call, refused or not.
    pub batches: BatchCalls,
    /// Calls refused with 403 `REQUEST_LIMIT_EXCEEDED` or a forced 429.
    pub rate_limited: u64,
    /// Calls answered with an injected `error_rate` error or an `outage` 503.
    pub errors_injected: u64,
    pub token_requests: u64,
    /// Webhook deliveries answered with 2xx.
    pub webhooks_sent: u64,
    /// Change events inside those deliveries.
    pub webhook_events_sent: u64,
    /// Webhook attempts that failed (non-2xx, timeout or connection error); each retry counts.
    pub webhook_failures: u64,
    /// Outbound Messages answered with `<Ack>true</Ack>`.
    pub outbound_messages_sent: u64,
    /// Notifications inside those messages.
    pub outbound_notifications_sent: u64,
    /// Outbound Message attempts that failed (no Ack, non-2xx, timeout or connection error).
    pub outbound_message_failures: u64,
    /// Committed writes whose answer was dropped, stalled or replaced by an error.
    pub after_write_faults: crate::kit::after_write::Injected,
}

impl Counters {
    pub fn call(&mut self, route: &str) {
        *self.calls.entry(route.to_string()).or_default() += 1;
    }

    /// Counts a query by its shape.
    pub fn query(&mut self, q: &super::soql::Query) {
        let mut shape = q.object.clone();
        for (i, c) in q.conditions.iter().enumerate() {
            shape.push_str(if i == 0 { " WHERE " } else { " AND " });
            shape.push_str(&c.field);
        }
        *self.queries.entry(shape).or_default() += 1;
    }

    pub fn written(&mut self, route: &str, n: u64) {
        if n > 0 {
            *self.records.entry(route.to_string()).or_default() += n;
            self.records_written += n;
        }
    }

    /// The JSON served by the control API.
    pub fn snapshot(&self) -> Value {
        json!({
            "calls": self.calls,
            "calls_total": self.calls.values().sum::<u64>(),
            "records_written": self.records_written,
            "records": self.records,
            "queries": self.queries,
            "batches": self.batches,
            "rate_limited": self.rate_limited,
            "errors_injected": self.errors_injected,
            "token_requests": self.token_requests,
            "webhooks_sent": self.webhooks_sent,
            "webhook_events_sent": self.webhook_events_sent,
            "webhook_failures": self.webhook_failures,
            "outbound_messages_sent": self.outbound_messages_sent,
            "outbound_notifications_sent": self.outbound_notifications_sent,
            "outbound_message_failures": self.outbound_message_failures,
            "after_write_faults": self.after_write_faults,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_calls_show_their_largest_call_refused_or_not() {
        let mut c = Counters::default();
        let route = "POST /services/data/{version}/composite/sobjects";
        c.call(route);
        c.call(route);
        assert!(c.batches.admit(route, 150, 200));
        assert!(!c.batches.admit(route, 201, 200));
        c.written(route, 150);
        let s = c.snapshot();
        assert_eq!(s["calls_total"], 2);
        assert_eq!(s["records"][route], 150);
        let b = &s["batches"][route];
        assert_eq!(
            (
                &b["calls"],
                &b["records"],
                &b["max_records"],
                &b["refused_oversized"]
            ),
            (&json!(2), &json!(351), &json!(201), &json!(1))
        );
        assert_eq!(s["records_written"], 150);
    }

    #[test]
    fn queries_are_counted_by_what_they_filter_on() {
        let mut c = Counters::default();
        for q in [
            "SELECT Id FROM Contact WHERE Email IN ('a@x.io', 'b@x.io')",
            "SELECT Id, Email FROM Contact WHERE Email = 'c@x.io'",
            "SELECT Id FROM Contact WHERE SystemModstamp >= 2026-01-01T00:00:00Z AND Id > '003'",
            "SELECT Id, Email FROM Contact",
        ] {
            c.query(&super::super::soql::parse(q).unwrap());
        }
        let s = c.snapshot();
        assert_eq!(
            s["queries"],
            json!({"Contact WHERE Email": 2, "Contact WHERE SystemModstamp AND Id": 1, "Contact": 1})
        );
    }
}
