//! `GET /crm/v3/properties/contacts`: the contact property definitions, so clients can
//! check that the properties they map (custom ones included) exist.
//! <https://developers.hubspot.com/docs/api-reference/legacy/crm/objects/contacts/guide>

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::schema::PropertyKind;
use super::state::AppState;

pub async fn list(State(state): State<AppState>) -> Json<Value> {
    let results: Vec<Value> = state
        .schema
        .names()
        .enumerate()
        .map(|(order, (name, def))| {
            let (kind, field) = match def.kind {
                PropertyKind::Text | PropertyKind::Email => ("string", "text"),
                PropertyKind::Enumeration => ("enumeration", "select"),
                PropertyKind::DateTime => ("datetime", "date"),
                PropertyKind::Number => ("number", "number"),
            };
            json!({
                "name": name, "label": name, "type": kind, "fieldType": field,
                "description": "", "groupName": "contactinformation", "options": [],
                "displayOrder": order, "hasUniqueValue": def.unique, "hidden": false,
                "formField": !def.read_only, "calculated": false, "externalOptions": false,
                "modificationMetadata": {"archivable": true, "readOnlyDefinition": true,
                                         "readOnlyValue": def.read_only},
            })
        })
        .collect();
    Json(json!({ "results": results }))
}
