//! Fixture-driven: each file in `tests/fixtures/hubspot/` holds an input, field-map
//! overrides and the expected output, in one direction.

use super::*;
use crate::providers::hubspot::default_fields;
use serde_json::Value;

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!("../../../tests/fixtures/hubspot/", $name, ".json")),
        )
    };
}

const FIXTURES: [(&str, &str); 12] = [
    fixture!("to_hubspot_standard_fields"),
    fixture!("to_hubspot_nulls_clear"),
    fixture!("to_hubspot_renamed_and_left_out"),
    fixture!("to_hubspot_custom_property"),
    fixture!("from_hubspot_standard_record"),
    fixture!("from_hubspot_nulls_and_absent"),
    fixture!("from_hubspot_invalid_email"),
    fixture!("from_hubspot_missing_email"),
    fixture!("from_hubspot_renamed_and_custom"),
    fixture!("record_from_hubspot_batch_read"),
    fixture!("record_from_hubspot_overrides_and_fallbacks"),
    fixture!("record_from_hubspot_without_modification_time"),
];

#[test]
fn every_fixture_maps_as_expected() {
    for (name, text) in FIXTURES {
        let fixture: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let overrides = fixture["field_map"].as_str().unwrap_or_default();
        let map =
            FieldMap::parse(&default_fields(), overrides).unwrap_or_else(|e| panic!("{name}: {e}"));
        match fixture["direction"].as_str() {
            Some("to_hubspot") => check_to_hubspot(name, &fixture, &map),
            Some("from_hubspot") => check_from_hubspot(name, &fixture, &map),
            Some("record_from_hubspot") => check_record_from_hubspot(name, &fixture, &map),
            other => panic!("{name}: unknown direction {other:?}"),
        }
    }
}

fn check_to_hubspot(name: &str, fixture: &Value, map: &FieldMap) {
    let contact: ContactFields =
        serde_json::from_value(fixture["input"].clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let expected: BTreeMap<String, String> = serde_json::from_value(fixture["expected"].clone())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(to_properties(&contact, map), expected, "{name}");
}

fn check_from_hubspot(name: &str, fixture: &Value, map: &FieldMap) {
    let properties: BTreeMap<String, Option<String>> =
        serde_json::from_value(fixture["input"].clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = from_properties(&properties, map);
    let fields: Vec<(String, Option<String>)> = got
        .fields
        .iter()
        .map(|(f, v)| (f.spec().name.to_owned(), v.clone()))
        .collect();
    let expected: Vec<(String, Option<String>)> =
        serde_json::from_value(fixture["expected"]["fields"].clone())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(fields, expected, "{name}");
    let skipped = fixture["expected"]["skipped"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        got.skipped.len(),
        skipped.len(),
        "{name}: {:?}",
        got.skipped
    );
    for (got, want) in got.skipped.iter().zip(&skipped) {
        assert_eq!(
            got.property,
            want["property"].as_str().unwrap_or_default(),
            "{name}"
        );
        let reason = want["reason_contains"].as_str().unwrap_or_default();
        assert!(
            got.reason.contains(reason),
            "{name}: {:?} lacks {reason:?}",
            got.reason
        );
    }
}

fn check_record_from_hubspot(name: &str, fixture: &Value, map: &FieldMap) {
    let record: Record =
        serde_json::from_value(fixture["input"].clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let got = remote_record(&record, map);
    let expected = &fixture["expected"];
    if let Some(reason) = expected["error_contains"].as_str() {
        let err = got.expect_err(name);
        assert!(err.contains(reason), "{name}: {err:?} lacks {reason:?}");
        return;
    }
    let want = RemoteRecord {
        remote_id: expected["remote_id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        values: serde_json::from_value(expected["values"].clone())
            .unwrap_or_else(|e| panic!("{name}: {e}")),
        modified_at: serde_json::from_value(expected["modified_at"].clone())
            .unwrap_or_else(|e| panic!("{name}: {e}")),
        external_id: expected["external_id"].as_str().map(str::to_owned),
    };
    assert_eq!(got, Ok(want), "{name}");
}
