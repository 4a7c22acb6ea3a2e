//! Result mapping: HubSpot returns records (and a 207's errors), not positions.

use super::*;
use serde_json::json;
use std::collections::BTreeMap;

fn upsert_input(item: usize, email: &str) -> Pending<WriteInput> {
    Pending {
        item,
        key: email.to_owned(),
        input: WriteInput {
            id: email.to_owned(),
            id_property: Some("email".into()),
            properties: BTreeMap::new(),
            object_write_trace_id: format!("trace-{item}"),
        },
    }
}

fn summary(verdicts: &Verdicts) -> Vec<String> {
    verdicts
        .iter()
        .map(|(i, r)| match r {
            Ok(id) => format!("{i}:{id}"),
            Err(f) => format!("{i}:{}", f.clone().into_error().code()),
        })
        .collect()
}

#[test]
fn upsert_results_map_by_trace_id_or_by_the_id_property_value() {
    let batch = [
        upsert_input(0, "ada@example.com"),
        upsert_input(1, "grace@example.com"),
    ];
    // Records come back in any order; the second names no trace id and an upper-cased email.
    let answer = json!({"status": "COMPLETE", "results": [
        {"id": "1002", "properties": {"email": "GRACE@example.com"}},
        {"id": "1001", "properties": {"email": "x@y.io"}, "objectWriteTraceId": "trace-0"}
    ]});
    let bytes = answer.to_string().into_bytes();
    let got = attribute(Endpoint::Upsert, Key::Property("email"), &batch, &bytes).unwrap();
    assert_eq!(summary(&got), ["0:1001", "1:1002"]);
}

#[test]
fn multi_status_errors_map_by_trace_id_or_by_missing_record_id() {
    let mut gone = upsert_input(0, "51");
    gone.input.object_write_trace_id = "untraced".into();
    let batch = [gone, upsert_input(1, "52"), upsert_input(2, "53")];
    let answer = json!({"status": "COMPLETE", "numErrors": 2,
    "results": [{"id": "53", "properties": {}}],
    "errors": [
        {"status": "error", "category": "OBJECT_NOT_FOUND", "context": {"ids": ["51"]}},
        {"status": "error", "category": "VALIDATION_ERROR", "message": "bad",
         "errors": [{"code": "INVALID_EMAIL"}], "context": {"objectWriteTraceId": ["trace-1"]}}
    ]});
    let bytes = answer.to_string().into_bytes();
    let got = attribute(Endpoint::Update, Key::RecordId, &batch, &bytes).unwrap();
    assert!(matches!(got[0].1, Err(Failure::Gone)));
    assert_eq!(
        summary(&got),
        ["0:OBJECT_NOT_FOUND", "1:INVALID_EMAIL", "2:53"]
    );
}

#[test]
fn an_input_the_answer_does_not_mention_is_a_decode_failure() {
    let batch = [upsert_input(0, "ada@example.com")];
    let bytes = json!({"results": []}).to_string().into_bytes();
    let got = attribute(Endpoint::Upsert, Key::Property("email"), &batch, &bytes).unwrap();
    assert_eq!(summary(&got), ["0:DECODE"]);
}

#[test]
fn archive_answers_have_no_body_and_cover_every_input() {
    let batch = [
        Pending {
            item: 3,
            key: "51".into(),
            input: IdInput { id: "51".into() },
        },
        Pending {
            item: 4,
            key: "52".into(),
            input: IdInput { id: "52".into() },
        },
    ];
    let got = attribute(Endpoint::Archive, Key::RecordId, &batch, b"").unwrap();
    assert_eq!(summary(&got), ["3:51", "4:52"]);
}

#[test]
fn an_unreadable_answer_is_a_call_failure() {
    let batch = [upsert_input(0, "ada@example.com")];
    let got = attribute(Endpoint::Upsert, Key::Property("email"), &batch, b"<html>");
    assert!(matches!(
        got,
        Err(Failure::Call {
            error: ProviderError::Decode(_),
            ..
        })
    ));
}
