//! Outbound Messages: the SOAP `notifications` call a Salesforce org sends when a Flow or
//! workflow rule with an Outbound Message action fires on a Contact create or update.
//!
//! What it is: the target (`PUT /__sandbox/outbound-message`), the per-change snapshot of the
//! record, the envelope and the check of the receiver's `<Ack>true</Ack>`. Delivery, retries
//! and pausing are the notifier's (`notifier.rs`), shared with the signed notifications.
//! What it is not: workflow rules or Flow criteria (every create and update of a Contact
//! notifies), the session id (always nil), the client certificate.
//!
//! Vendor doc: https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging_wsdl.htm
//! The sandbox org's id is [`ORG_ID`]; the action id is [`ACTION_ID`].

use quick_xml::NsReader;
use quick_xml::escape::escape;
use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use serde_json::Value;

use super::fields::Schema;
use super::record::{self, Flavour};
use super::store::Contact;

/// The sandbox org's Organization Id (`ids::mint("00D", 1)`), fixed so a receiver can be
/// configured with it before the sandbox starts.
pub const ORG_ID: &str = "00D8d0000000001EAA";
/// The id of the one outbound message (action) the sandbox sends.
pub const ACTION_ID: &str = "04k8d0000000001AAA";
/// Key prefix of notification ids.
pub const NOTIFICATION_PREFIX: &str = "04l";
/// Fields sent when the target names none: what a receiver needs to tell who changed the
/// record, and when.
pub const DEFAULT_FIELDS: [&str; 3] = ["LastModifiedById", "LastModifiedDate", "SystemModstamp"];

const OUTBOUND: &[u8] = b"http://soap.sforce.com/2005/09/outbound";

/// Where Outbound Messages go, and which fields they carry besides `Id`.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: Option<String>,
    pub fields: Vec<String>,
}

impl Default for Target {
    fn default() -> Self {
        Self {
            url: None,
            fields: DEFAULT_FIELDS.map(String::from).to_vec(),
        }
    }
}

/// One notification: its id (the same on every redelivery) and the record's field values as
/// committed, date-times in `Z` form, null fields left out (as Salesforce leaves them out).
#[derive(Debug, Clone)]
pub struct Notification {
    pub id: String,
    pub record_id: String,
    pub values: Vec<(String, String)>,
}

impl Notification {
    pub fn of(id: String, c: &Contact, schema: &Schema) -> Self {
        let values = schema
            .fields()
            .iter()
            .filter_map(|def| {
                let text = match record::value(c, def, Flavour::Event) {
                    Value::Null => return None,
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                Some((def.name.clone(), text))
            })
            .collect();
        Self {
            id,
            record_id: c.id.clone(),
            values,
        }
    }
}

/// The SOAP 1.1 `notifications` envelope for these notifications, with `Id` and the `fields`
/// that have a value, in the order given.
pub fn envelope(base_url: &str, notifications: &[Notification], fields: &[String]) -> String {
    let org15 = &ORG_ID[..15];
    let mut out = String::from(concat!(
        r#"<?xml version="1.0" encoding="UTF-8"?>"#,
        r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" "#,
        r#"xmlns:xsd="http://www.w3.org/2001/XMLSchema" "#,
        r#"xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">"#,
        r#"<soapenv:Body><notifications xmlns="http://soap.sforce.com/2005/09/outbound">"#
    ));
    out.push_str(&format!(
        "<OrganizationId>{ORG_ID}</OrganizationId><ActionId>{ACTION_ID}</ActionId>\
         <SessionId xsi:nil=\"true\"/>\
         <EnterpriseUrl>{base}/services/Soap/c/62.0/{org15}</EnterpriseUrl>\
         <PartnerUrl>{base}/services/Soap/u/62.0/{org15}</PartnerUrl>",
        base = escape(base_url)
    ));
    for n in notifications {
        out.push_str(&format!(
            "<Notification><Id>{}</Id><sObject xsi:type=\"sf:Contact\" \
             xmlns:sf=\"urn:sobject.enterprise.soap.sforce.com\"><sf:Id>{}</sf:Id>",
            n.id, n.record_id
        ));
        for name in fields {
            if let Some((field, value)) = n.values.iter().find(|(f, _)| f == name) {
                out.push_str(&format!(
                    "<sf:{field}>{}</sf:{field}>",
                    escape(value.as_str())
                ));
            }
        }
        out.push_str("</sObject></Notification>");
    }
    out.push_str("</notifications></soapenv:Body></soapenv:Envelope>");
    out
}

/// Whether a receiver's answer holds `<Ack>true</Ack>` (namespace
/// `http://soap.sforce.com/2005/09/outbound`); anything else is a failed delivery.
pub fn is_ack(body: &[u8]) -> bool {
    let mut reader = NsReader::from_reader(body);
    let mut in_ack = false;
    let mut buf = Vec::new();
    loop {
        let Ok((ns, event)) = reader.read_resolved_event_into(&mut buf) else {
            return false;
        };
        let ours = matches!(ns, ResolveResult::Bound(Namespace(n)) if n == OUTBOUND);
        match event {
            Event::Start(s) => in_ack = ours && s.local_name().as_ref() == b"Ack",
            Event::Text(t) if in_ack => {
                return t.decode().is_ok_and(|v| v.trim() == "true");
            }
            Event::End(_) => in_ack = false,
            Event::Eof | Event::DocType(_) => return false,
            _ => {}
        }
        buf.clear();
    }
}

/// The fields of a `PUT /__sandbox/outbound-message`, checked against the Contact schema.
pub fn check_fields(names: &[String], schema: &Schema) -> Result<Vec<String>, Vec<String>> {
    let mut problems = Vec::new();
    let mut out = Vec::new();
    for n in names {
        match schema.find(n) {
            Some(def) if def.name != "Id" => out.push(def.name.clone()),
            Some(_) => {}
            None => problems.push(format!("{n} is not a Contact field")),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::ids;

    #[test]
    fn the_org_id_is_the_first_minted_org_id() {
        assert_eq!(ORG_ID, ids::mint(ids::ORG_PREFIX, 1));
    }

    #[test]
    fn the_envelope_carries_the_selected_fields_escaped() {
        let n = Notification {
            id: ids::mint(NOTIFICATION_PREFIX, 7),
            record_id: ids::mint(ids::CONTACT_PREFIX, 3),
            values: vec![
                ("Title".into(), "R&D <lead>".into()),
                ("LastModifiedDate".into(), "2024-03-05T09:00:00.000Z".into()),
                ("Email".into(), "a@example.com".into()),
            ],
        };
        let xml = envelope(
            "http://127.0.0.1:1",
            &[n],
            &["LastModifiedDate".into(), "Title".into(), "Phone".into()],
        );
        assert!(xml.contains(&format!("<OrganizationId>{ORG_ID}</OrganizationId>")));
        assert!(xml.contains(r#"<SessionId xsi:nil="true"/>"#));
        assert!(xml.contains("<sf:LastModifiedDate>2024-03-05T09:00:00.000Z</sf:LastModifiedDate><sf:Title>R&amp;D &lt;lead&gt;</sf:Title></sObject>"));
        assert!(!xml.contains("Email"));
        assert!(!xml.contains("Phone"));
    }

    #[test]
    fn only_a_true_ack_in_the_outbound_namespace_counts() {
        let ack = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"><soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"#;
        assert!(is_ack(ack.as_bytes()));
        assert!(!is_ack(ack.replace(">true<", ">false<").as_bytes()));
        assert!(!is_ack(
            ack.replace("2005/09/outbound", "2005/09/other").as_bytes()
        ));
        assert!(!is_ack(b"<Ack>true</Ack>"));
        assert!(!is_ack(b""));
        assert!(!is_ack(b"{\"ok\": true}"));
    }

    #[test]
    fn fields_are_checked_against_the_schema() {
        let schema = Schema::contact("Ext__c");
        assert_eq!(
            check_fields(&["email".into(), "Id".into()], &schema),
            Ok(vec!["Email".to_string()])
        );
        assert_eq!(
            check_fields(&["Nope".into()], &schema),
            Err(vec!["Nope is not a Contact field".to_string()])
        );
    }
}
