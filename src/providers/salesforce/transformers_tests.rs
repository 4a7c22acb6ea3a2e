//! Transformer tests driven by the JSON fixtures in `tests/fixtures/salesforce/`: each names
//! its field-map overrides, its input and the expected output.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::*;
use crate::providers::salesforce::default_fields;

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_str!(concat!(
                "../../../tests/fixtures/salesforce/",
                $name,
                ".json"
            )),
        )
    };
}

const TO_RECORD: [(&str, &str); 3] = [
    fixture!("to_record_standard_fields"),
    fixture!("to_record_nulls_and_missing_last_name"),
    fixture!("to_record_overrides"),
];

const FROM_RECORD: [(&str, &str); 2] = [
    fixture!("from_record_standard_fields"),
    fixture!("from_record_custom_fields_and_bad_email"),
];

const REMOTE_RECORD: [(&str, &str); 3] = [
    fixture!("remote_record_standard_fields"),
    fixture!("remote_record_overrides"),
    fixture!("remote_record_without_modstamp"),
];

/// A queried record → [`RemoteRecord`] case: `expected` holds the record's members, or
/// `error_contains`.
#[derive(Deserialize)]
struct RemoteCase {
    field_map: String,
    last_name_placeholder: String,
    record: Map<String, Value>,
    expected: Value,
}

/// A contact → record case.
#[derive(Deserialize)]
struct ToRecord {
    field_map: String,
    external_id_field: String,
    last_name_placeholder: String,
    contact_id: ContactId,
    contact: ContactFields,
    record: Map<String, Value>,
}

/// A record → unified fields case; `fields` maps unified field names to values.
#[derive(Deserialize)]
struct FromRecord {
    field_map: String,
    last_name_placeholder: String,
    record: Map<String, Value>,
    fields: Map<String, Value>,
    /// Unified field names expected to be skipped.
    skipped: Vec<String>,
}

fn field_map(overrides: &str) -> FieldMap {
    FieldMap::parse(&default_fields(), overrides).expect("fixture field map")
}

fn name(field: Field) -> &'static str {
    field.spec().name
}

#[test]
fn contacts_become_the_records_in_the_fixtures() {
    for (file, text) in TO_RECORD {
        let case: ToRecord = serde_json::from_str(text).expect(file);
        let map = field_map(&case.field_map);
        let shape = RecordShape {
            fields: &map,
            external_id_field: &case.external_id_field,
            last_name_placeholder: &case.last_name_placeholder,
        };
        let got = contact_record(shape, case.contact_id, &case.contact);
        assert_eq!(Value::Object(got), Value::Object(case.record), "{file}");
    }
}

#[test]
fn records_become_the_unified_fields_in_the_fixtures() {
    for (file, text) in FROM_RECORD {
        let case: FromRecord = serde_json::from_str(text).expect(file);
        let map = field_map(&case.field_map);
        let shape = RecordShape {
            fields: &map,
            external_id_field: "SyncRoot_Id__c",
            last_name_placeholder: &case.last_name_placeholder,
        };
        let got = unified_fields(shape, &case.record);
        let values: Map<String, Value> = got
            .values
            .iter()
            .map(|(f, v)| {
                (
                    name(*f).to_owned(),
                    v.clone().map_or(Value::Null, Value::String),
                )
            })
            .collect();
        assert_eq!(values, case.fields, "{file}");
        let skipped: Vec<&str> = got.skipped.iter().map(|(f, _)| name(*f)).collect();
        assert_eq!(skipped, case.skipped, "{file}");
        assert!(got.skipped.iter().all(|(_, why)| !why.is_empty()), "{file}");
    }
}

#[test]
fn queried_records_become_the_remote_records_in_the_fixtures() {
    for (file, text) in REMOTE_RECORD {
        let case: RemoteCase = serde_json::from_str(text).expect(file);
        let map = field_map(&case.field_map);
        let shape = RecordShape {
            fields: &map,
            external_id_field: "SyncRoot_Id__c",
            last_name_placeholder: &case.last_name_placeholder,
        };
        let got = remote_record(shape, &case.record);
        if let Some(reason) = case.expected["error_contains"].as_str() {
            let err = got.expect_err(file);
            assert!(err.contains(reason), "{file}: {err:?} lacks {reason:?}");
            continue;
        }
        let e = &case.expected;
        let want = RemoteRecord {
            remote_id: e["remote_id"].as_str().expect(file).to_owned(),
            values: serde_json::from_value(e["values"].clone()).expect(file),
            modified_at: serde_json::from_value(e["modified_at"].clone()).expect(file),
            external_id: e["external_id"].as_str().map(str::to_owned),
        };
        assert_eq!(got, Ok(want), "{file}");
    }
}

#[test]
fn a_read_selects_id_mapped_fields_external_id_and_modstamp_once_each() {
    let map = field_map("company=Company__c, job_title=syncroot_id__c");
    let shape = RecordShape {
        fields: &map,
        external_id_field: "SyncRoot_Id__c",
        last_name_placeholder: "-",
    };
    assert_eq!(
        read_fields(shape),
        [
            "Id",
            "Email",
            "FirstName",
            "LastName",
            "Phone",
            "Company__c",
            "syncroot_id__c",
            "SystemModstamp"
        ]
    );
}

#[test]
fn a_link_record_adds_the_record_id() {
    let map = field_map("");
    let shape = RecordShape {
        fields: &map,
        external_id_field: "SyncRoot_Id__c",
        last_name_placeholder: "-",
    };
    let contact = ContactFields {
        email: Email::parse("ada@example.com").expect("valid"),
        first_name: None,
        last_name: Some("Lovelace".into()),
        phone: None,
        company: None,
        job_title: None,
    };
    let id = ContactId::new();
    let record = link_record(shape, "003000000000001AAA", id, &contact);
    assert_eq!(record["id"], "003000000000001AAA");
    assert_eq!(record["SyncRoot_Id__c"], id.to_string());
    assert_eq!(record["LastName"], "Lovelace");
}
