//! The org's duplicate rule for Contacts, matching on Email, as `PUT /__sandbox/duplicate-rule`
//! sets it.
//!
//! Contact.Email is not unique in Salesforce (a real org holds any number of Contacts with one
//! e-mail, and so does this sandbox); only unique external-id fields are. A duplicate rule is
//! what an admin adds to stop or flag them:
//! - `block`: a create or update whose Email equals (case-insensitively) another live Contact's
//!   is refused with `DUPLICATES_DETECTED` (crm-apis.md §2.7), naming the match;
//! - `alert`: the save goes through and the match is counted (`alerted`) [UNVERIFIED: through
//!   the API an alert rule may also refuse unless `Sforce-Duplicate-Rule-Header: allowSave=true`
//!   is sent; the sandbox does not read that header];
//! - `off` (the default): no rule.
//!
//! What it is not: Salesforce's fuzzy matching rules; this matches exact e-mails only.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::errors::{ErrorCode, SfError};
use super::store::Contact;

/// What the rule does with a duplicate.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    #[default]
    Off,
    Block,
    Alert,
}

/// The rule and what it has seen since the last reset.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct DuplicateRule {
    pub action: Action,
    /// Saves the `alert` rule let through with a duplicate.
    pub alerted: u64,
}

/// The body of `PUT /__sandbox/duplicate-rule`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuplicateRuleIn {
    pub action: Action,
}

/// The name the refusal gives the rule (Salesforce's standard rule for Contacts).
const RULE_NAME: &str = "Standard_Contact_Duplicate_Rule";

impl DuplicateRule {
    /// Checks the Email a save leaves on record `own` (`None` on create) against `others`.
    pub fn check<'a>(
        &mut self,
        values: &std::collections::BTreeMap<String, Value>,
        own: Option<&str>,
        others: impl Iterator<Item = &'a Contact>,
    ) -> Result<(), SfError> {
        if self.action == Action::Off {
            return Ok(());
        }
        let Some(email) = values.get("Email").and_then(Value::as_str) else {
            return Ok(());
        };
        let email = email.trim().to_lowercase();
        let mut matches = others.filter(|c| {
            !c.is_deleted
                && own.is_none_or(|key| !c.id.starts_with(key))
                && c.values
                    .get("Email")
                    .and_then(Value::as_str)
                    .is_some_and(|e| e.trim().to_lowercase() == email)
        });
        let Some(found) = matches.next() else {
            return Ok(());
        };
        match self.action {
            Action::Block => Err(refusal(&found.id)),
            Action::Alert | Action::Off => {
                self.alerted += 1;
                Ok(())
            }
        }
    }
}

/// `DUPLICATES_DETECTED` with the match, in the shape crm-apis.md §2.7 quotes (including the
/// `duplicateResut` spelling observed in real responses).
fn refusal(matched_id: &str) -> SfError {
    let message = "Use one of these records?";
    let result = json!({
        "allowSave": false,
        "duplicateRule": RULE_NAME,
        "duplicateRuleEntityType": "Contact",
        "errorMessage": message,
        "matchResults": [{
            "entityType": "Contact",
            "matchEngine": "ExactMatchEngine",
            "size": 1,
            "success": true,
            "matchRecords": [{
                "matchConfidence": 100.0,
                "record": {"attributes": {"type": "Contact"}, "Id": matched_id},
            }],
        }],
    });
    SfError::new(ErrorCode::DuplicatesDetected, message).with_duplicate_result(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn contact(id: &str, email: &str, deleted: bool) -> Contact {
        let now = chrono::Utc::now();
        Contact {
            id: id.into(),
            values: BTreeMap::from([("Email".to_owned(), json!(email))]),
            is_deleted: deleted,
            created_date: now,
            created_by: String::new(),
            last_modified_date: now,
            last_modified_by: String::new(),
            system_modstamp: now,
        }
    }

    #[test]
    fn block_refuses_another_live_records_email_and_alert_counts_it() {
        let others = [
            contact("003000000000001AAA", "a@x.io", false),
            contact("003000000000002AAA", "gone@x.io", true),
        ];
        let save = |email: &str| BTreeMap::from([("Email".to_owned(), json!(email))]);
        let mut rule = DuplicateRule {
            action: Action::Block,
            alerted: 0,
        };
        let refused = rule.check(&save("A@X.io "), None, others.iter());
        let e = refused.expect_err("a duplicate");
        assert_eq!(e.code, ErrorCode::DuplicatesDetected);
        let matched = &e.duplicate_result.as_ref().expect("match details")["matchResults"][0];
        assert_eq!(
            matched["matchRecords"][0]["record"]["Id"],
            "003000000000001AAA"
        );
        assert!(
            rule.check(&save("a@x.io"), Some("003000000000001"), others.iter())
                .is_ok()
        );
        assert!(rule.check(&save("gone@x.io"), None, others.iter()).is_ok());
        rule.action = Action::Alert;
        assert!(rule.check(&save("a@x.io"), None, others.iter()).is_ok());
        assert_eq!(rule.alerted, 1);
    }
}
