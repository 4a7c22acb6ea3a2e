//! The committed spec is the one the code generates, and it documents every error.

#[test]
fn the_committed_openapi_document_matches_the_code() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json"))
            .expect("openapi/openapi.json exists");
    let generated = syncroot::api::openapi_pretty();
    assert!(
        committed == generated,
        "openapi/openapi.json is out of date with the code: run `make openapi` and commit the result"
    );
}

#[test]
fn every_operation_has_a_unique_id_and_documents_its_errors_as_problems() {
    let spec: serde_json::Value = serde_json::from_str(&syncroot::api::openapi_pretty()).unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            assert!(ids.insert(id.to_owned()), "duplicate operationId {id}");
            // Salesforce Outbound Messages are answered in SOAP, faults included (Salesforce
            // shows a fault's text in its delivery status); only their 404 is a problem.
            let soap = path.starts_with("/webhooks/salesforce/outbound");
            for (status, resp) in op["responses"].as_object().unwrap() {
                if soap && status != "404" {
                    assert!(
                        resp["content"].get("text/xml").is_some(),
                        "{method} {path} {status} is not a SOAP document"
                    );
                    continue;
                }
                if (status.starts_with('4') || status.starts_with('5')) && path != "/readyz" {
                    assert!(
                        resp["content"].get("application/problem+json").is_some(),
                        "{method} {path} {status} is not a problem document"
                    );
                }
            }
        }
    }
}

#[test]
fn every_keyed_operation_names_its_scope_and_documents_403_and_429() {
    let spec: serde_json::Value = serde_json::from_str(&syncroot::api::openapi_pretty()).unwrap();
    // What the README promises, written out rather than derived from the code.
    let expected = |method: &str, path: &str| -> Option<(&str, &str)> {
        if path.starts_with("/contacts") || path == "/changes" {
            Some(("api_key", if method == "get" { "read" } else { "write" }))
        } else if path.starts_with("/dlq") || path.starts_with("/admin") {
            Some(("admin_key", "admin"))
        } else {
            None
        }
    };
    let mut keyed = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let security = &op["security"];
            match expected(method, path) {
                Some((scheme, scope)) => {
                    keyed += 1;
                    assert_eq!(
                        security,
                        &serde_json::json!([{ scheme: [scope] }]),
                        "{method} {path}"
                    );
                    let responses = &op["responses"];
                    assert!(responses.get("403").is_some(), "{method} {path}: no 403");
                    assert!(
                        responses["429"]["headers"].get("Retry-After").is_some(),
                        "{method} {path}: no 429 with Retry-After"
                    );
                }
                None => assert!(
                    security.is_null() || security == &serde_json::json!([{}]),
                    "{method} {path} needs no key: {security}"
                ),
            }
        }
    }
    assert_eq!(
        keyed, 27,
        "every /contacts, /changes, /dlq and /admin operation"
    );
}
