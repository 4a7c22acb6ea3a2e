//! Text output of `syncroot dlq`: a table of entries, and one entry in full. Works on the API's
//! JSON as received, so a field the client does not know yet is simply not shown.

use serde_json::Value;

/// Columns of `syncroot dlq list`: header and the member shown.
const COLUMNS: [(&str, &str); 9] = [
    ("ID", "id"),
    ("CRM", "crm"),
    ("CONTACT", "contact_id"),
    ("VERSION", "version"),
    ("STATUS", "status"),
    ("REASON", "reason"),
    ("ERROR", "error_code"),
    ("ATTEMPTS", "attempts"),
    ("LAST FAILED", "last_failed_at"),
];

/// A value as a cell: `-` when absent or null.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.chars().filter(|c| !c.is_control()).collect(),
        other => other.to_string(),
    }
}

/// The entries as an aligned table (just a line saying so when there are none).
pub fn table(items: &[Value]) -> String {
    if items.is_empty() {
        return "no dead letters\n".into();
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|item| COLUMNS.iter().map(|(_, k)| cell(&item[*k])).collect())
        .collect();
    let widths: Vec<usize> = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, (h, _))| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([h.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(COLUMNS.iter().map(|(h, _)| (*h).to_owned()).collect());
    for r in rows {
        out.push_str(&line(r));
    }
    out
}

/// One entry in full: its fields, every error (oldest first), a kept message's origin and body.
pub fn entry(e: &Value) -> String {
    let mut out = String::new();
    let mut field = |label: &str, v: String| out.push_str(&format!("{label:<16} {v}\n"));
    for (label, key) in [
        ("id", "id"),
        ("kind", "kind"),
        ("crm", "crm"),
        ("contact", "contact_id"),
        ("version", "version"),
        ("operation", "operation"),
        ("status", "status"),
        ("reason", "reason"),
        ("attempts", "attempts"),
        ("rounds", "rounds"),
        ("first failed at", "first_failed_at"),
        ("last failed at", "last_failed_at"),
        ("next attempt at", "next_attempt_at"),
    ] {
        field(label, cell(&e[key]));
    }
    field(
        "last error",
        format!("{}: {}", cell(&e["error_code"]), cell(&e["error_message"])),
    );
    let errors = e["errors"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!("errors ({}, oldest first):\n", errors.len()));
    for err in &errors {
        let kind = if err["retryable"] == true {
            "retryable"
        } else {
            "permanent"
        };
        out.push_str(&format!(
            "  {}  {}  {kind}  {}\n",
            cell(&err["at"]),
            cell(&err["code"]),
            cell(&err["message"])
        ));
    }
    let source = &e["source"];
    if source.is_object() {
        out.push_str("source:\n");
        for (label, key) in [
            ("queue", "queue"),
            ("exchange", "exchange"),
            ("routing key", "routing_key"),
            ("content type", "content_type"),
            ("message type", "message_type"),
        ] {
            out.push_str(&format!("  {label:<14} {}\n", cell(&source[key])));
        }
        if let Some(body) = source["body"].as_str() {
            out.push_str(&format!("  body ({}):\n", cell(&source["body_encoding"])));
            for l in body.lines() {
                out.push_str(&format!("    {l}\n"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_aligns_columns_and_shows_nulls_as_dashes() {
        let items = [
            json!({"id": "a", "crm": "hubspot", "contact_id": "c1", "version": 3, "status": "parked",
                   "reason": "permanent", "error_code": "INVALID_EMAIL", "attempts": 1, "last_failed_at": "t"}),
            json!({"id": "bb", "crm": null, "contact_id": null, "version": null, "status": "parked",
                   "reason": "rejected", "error_code": "UNDECODABLE", "attempts": 20, "last_failed_at": "t"}),
        ];
        let text = table(&items);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ID  CRM      CONTACT"), "{text}");
        assert!(lines[2].starts_with("bb  -        -"), "{text}");
        assert_eq!(table(&[]), "no dead letters\n");
    }

    #[test]
    fn an_entry_shows_its_error_history_and_body() {
        let e = json!({"id": "x", "kind": "message", "status": "parked", "reason": "rejected",
            "error_code": "UNDECODABLE", "error_message": "not JSON",
            "errors": [{"at": "t1", "code": "UNDECODABLE", "message": "not JSON", "retryable": false}],
            "source": {"queue": "q", "body": "hello\nworld", "body_encoding": "utf8"}});
        let text = entry(&e);
        assert!(
            text.contains("errors (1, oldest first):\n  t1  UNDECODABLE  permanent  not JSON"),
            "{text}"
        );
        assert!(
            text.contains("  body (utf8):\n    hello\n    world\n"),
            "{text}"
        );
        assert!(text.contains("crm              -"), "{text}");
    }
}
