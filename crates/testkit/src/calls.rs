//! The CRM calls a run cost, sorted by kind from a sandbox's counters (`GET
//! /__sandbox/counters`: calls per route template).
//!
//! Kinds: full-read pages, reads by record id, writes, matching queries (records with given
//! e-mail addresses) and anything else. The Salesforce sandbox counts its `query` resource as
//! one route whatever the SOQL; when its counters also carry `queries` (calls by query shape,
//! such as `"Contact WHERE Email"`), the e-mail and id queries are told apart from the read's
//! pages, and otherwise they stay in the pages and matching is unknown. What it is not: when a
//! run reads the counters, or what it judges them against (the bench's scenarios).

use crate::holdings::Crm;
use serde::Serialize;
use serde_json::Value;

/// One sandbox's API calls, by kind.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CallsByKind {
    /// Reading every record: HubSpot list pages; Salesforce `query` and `queryMore` pages and
    /// Bulk API 2.0 query job calls (create, status, results).
    pub pages: u64,
    /// Records read by id: HubSpot `batch/read` and single reads; Salesforce sObject reads,
    /// Collections retrieves and (told apart only with `queries`) queries by `Id`.
    pub by_id: u64,
    /// Creates, updates, upserts and deletes, batch or single.
    pub writes: u64,
    /// Records looked up by e-mail: HubSpot `search`; Salesforce queries by `Email`. `None`
    /// when the Salesforce sandbox does not count queries by shape (they are in `pages`).
    pub matching: Option<u64>,
    /// Every other call (metadata, limits, queries by other fields).
    pub other: u64,
    pub total: u64,
}

impl CallsByKind {
    /// Sorts `counters` (a sandbox's `GET /__sandbox/counters`) by kind.
    pub fn of(crm: Crm, counters: &Value) -> Self {
        let mut kinds = Self::default();
        if let Some(calls) = counters["calls"].as_object() {
            for (route, n) in calls {
                let n = n.as_u64().unwrap_or(0);
                kinds.total += n;
                match crm {
                    Crm::HubSpot => kinds.add_hubspot(route, n),
                    Crm::Salesforce => kinds.add_salesforce(route, n),
                }
            }
        }
        if crm == Crm::HubSpot {
            kinds.matching.get_or_insert(0);
        } else if let Some(shapes) = counters["queries"].as_object() {
            kinds.split_queries(shapes);
        }
        kinds
    }

    /// `"<METHOD> /crm/v3/objects/contacts[/…]"`.
    fn add_hubspot(&mut self, route: &str, n: u64) {
        let (method, path) = route.split_once(' ').unwrap_or(("", route));
        let kind = if path.ends_with("/search") {
            self.matching.get_or_insert(0)
        } else if path.ends_with("/batch/read") {
            &mut self.by_id
        } else if !path.starts_with("/crm/v3/objects/") {
            &mut self.other
        } else if method != "GET" {
            &mut self.writes
        } else if path.ends_with("{contactId}") {
            &mut self.by_id
        } else {
            &mut self.pages
        };
        *kind += n;
    }

    /// `"<METHOD> /services/data/{version}/…"`.
    fn add_salesforce(&mut self, route: &str, n: u64) {
        let (method, path) = route.split_once(' ').unwrap_or(("", route));
        let path = path.trim_start_matches("/services/data/{version}");
        let kind = if path.starts_with("/query") || path.starts_with("/jobs/query") {
            &mut self.pages
        } else if !path.starts_with("/sobjects/") && !path.starts_with("/composite/sobjects") {
            &mut self.other
        } else if method == "GET" {
            &mut self.by_id
        } else {
            &mut self.writes
        };
        *kind += n;
    }

    /// Moves the queries by e-mail, by id and by other fields out of `pages`.
    fn split_queries(&mut self, shapes: &serde_json::Map<String, Value>) {
        let mut matching = 0;
        for (shape, n) in shapes {
            let n = n.as_u64().unwrap_or(0);
            let Some((_, filter)) = shape.split_once(" WHERE ") else {
                continue;
            };
            let kind = match filter.split_whitespace().next() {
                Some("Email") => &mut matching,
                Some("Id") => &mut self.by_id,
                _ => &mut self.other,
            };
            *kind += n;
            self.pages = self.pages.saturating_sub(n);
        }
        self.matching = Some(matching);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn salesforce_queries_are_split_by_shape_only_when_counted_so() {
        let calls = json!({
            "GET /services/data/{version}/query": 20,
            "GET /services/data/{version}/query/{locator}": 14,
            "PATCH /services/data/{version}/composite/sobjects/{sobject}/{field}": 3,
            "GET /services/data/{version}/limits": 1,
        });
        let plain = CallsByKind::of(Crm::Salesforce, &json!({ "calls": calls }));
        assert_eq!((plain.pages, plain.writes, plain.other), (34, 3, 1));
        assert_eq!(plain.matching, None);
        let queries = json!({"Contact": 1, "Contact WHERE Email": 17, "Contact WHERE Id": 2});
        let split = CallsByKind::of(
            Crm::Salesforce,
            &json!({"calls": calls, "queries": queries}),
        );
        assert_eq!(
            (split.pages, split.by_id, split.matching),
            (15, 2, Some(17))
        );
        assert_eq!(split.total, 38);
    }

    #[test]
    fn hubspot_calls_are_sorted_by_route() {
        let calls = json!({"calls": {
            "GET /crm/v3/objects/contacts": 500,
            "POST /crm/v3/objects/contacts/batch/upsert": 120,
            "POST /crm/v3/objects/contacts/batch/read": 7,
            "POST /crm/v3/objects/contacts/search": 2,
            "GET /crm/v3/properties/contacts": 1,
        }});
        let k = CallsByKind::of(Crm::HubSpot, &calls);
        assert_eq!(
            (k.pages, k.writes, k.by_id, k.matching, k.other, k.total),
            (500, 120, 7, Some(2), 1, 630)
        );
    }
}
