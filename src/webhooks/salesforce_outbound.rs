//! Salesforce Outbound Messages: the SOAP 1.1 `notifications` call a Salesforce org sends when a
//! Flow or workflow rule fires, turned into [`InboundEvent`]s; and the two answers Salesforce
//! reads, the `Ack` and a SOAP fault. Set-up for an admin: docs/salesforce-outbound-messages.md.
//!
//! Wire format (the WSDL Salesforce generates per outbound message):
//! <https://developer.salesforce.com/docs/atlas.en-us.api.meta/api/sforce_api_om_outboundmessaging_wsdl.htm>
//!
//! ```text
//! soapenv:Envelope/soapenv:Body/notifications (http://soap.sforce.com/2005/09/outbound)
//!   OrganizationId, ActionId, SessionId (nillable), EnterpriseUrl, PartnerUrl,
//!   Notification × 1..100: Id (the notification's id), sObject xsi:type="sf:Contact"
//!                          with sf:Id and the fields the admin selected
//! ```
//!
//! Outbound Messages carry no signature; the receiver (`api::outbound_message`) checks the
//! organisation id and a secret path segment. Pure: bytes in, values out.
//!
//! XML safety: a document with a DOCTYPE is refused, so no entity can be declared, and any
//! reference other than XML's five predefined entities and numeric character references is
//! refused: no external entities, no entity expansion. Nesting depth and element count are
//! bounded; the receiver bounds the body size.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use quick_xml::NsReader;
use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};

use super::salesforce::Parsed;
use crate::domain::inbound::{EventKind, InboundEvent};

const SOAP_ENVELOPE: &[u8] = b"http://schemas.xmlsoap.org/soap/envelope/";
const OUTBOUND: &[u8] = b"http://soap.sforce.com/2005/09/outbound";
const XSI: &[u8] = b"http://www.w3.org/2001/XMLSchema-instance";

/// Most notifications Salesforce puts in one message.
pub const MAX_NOTIFICATIONS: usize = 100;
/// Deeper than any outbound message nests (Envelope/Body/notifications/Notification/sObject/field).
const MAX_DEPTH: usize = 16;
/// 100 notifications of a Contact with every field are a few thousand elements.
const MAX_ELEMENTS: usize = 50_000;

/// Prefix of every event key, so Outbound Message notification ids never meet the signed
/// convention's transaction keys in the dedupe table.
pub const KEY_PREFIX: &str = "om:";

/// A parsed `notifications` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The sending org's id (`00D…`, 18 characters).
    pub organization_id: String,
    /// The outbound message (action) that sent it (`04k…`).
    pub action_id: String,
    pub notifications: Vec<Notification>,
}

/// One `Notification`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The notification's own id (`04l…`): the same on every redelivery, so the dedupe key.
    pub id: String,
    /// `xsi:type` of the `sObject` without its prefix: `Contact`.
    pub object_type: String,
    /// The record's id (`sf:Id`).
    pub record_id: String,
    /// The other selected fields by API name, as sent (nil fields are empty).
    pub fields: BTreeMap<String, String>,
}

/// Why a body is not an outbound message. The receiver answers 400 with this text in a SOAP
/// fault, which Salesforce shows in its outbound message queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Salesforce outbound message: {0}")]
pub struct ParseError(String);

fn bad(why: impl Into<String>) -> ParseError {
    ParseError(why.into())
}

/// Parses an outbound message.
pub fn parse(body: &[u8]) -> Result<Message, ParseError> {
    let root = read_tree(body)?;
    if !(root.ns == SOAP_ENVELOPE && root.name == "Envelope") {
        return Err(bad("the root element is not a SOAP 1.1 soapenv:Envelope"));
    }
    let body = root
        .child(SOAP_ENVELOPE, "Body")
        .ok_or_else(|| bad("the envelope has no soapenv:Body"))?;
    let n = body.child(OUTBOUND, "notifications").ok_or_else(|| {
        bad("the body holds no notifications element of namespace http://soap.sforce.com/2005/09/outbound")
    })?;
    let organization_id = n.required_text("OrganizationId")?;
    let action_id = n
        .child(OUTBOUND, "ActionId")
        .map(|e| e.text.trim().to_owned())
        .unwrap_or_default();
    let notifications = n
        .children
        .iter()
        .filter(|c| c.ns == OUTBOUND && c.name == "Notification")
        .map(notification)
        .collect::<Result<Vec<_>, _>>()?;
    if notifications.is_empty() {
        return Err(bad("the message holds no Notification"));
    }
    if notifications.len() > MAX_NOTIFICATIONS {
        return Err(bad(format!(
            "the message holds {} notifications; Salesforce sends at most {MAX_NOTIFICATIONS}",
            notifications.len()
        )));
    }
    Ok(Message {
        organization_id,
        action_id,
        notifications,
    })
}

fn notification(e: &Element) -> Result<Notification, ParseError> {
    let id = e.required_text("Id")?;
    let object = e
        .child(OUTBOUND, "sObject")
        .ok_or_else(|| bad(format!("notification {id} has no sObject")))?;
    let object_type = object
        .xsi_type
        .as_deref()
        .map(|t| t.rsplit(':').next().unwrap_or(t).to_owned())
        .ok_or_else(|| bad(format!("the sObject of notification {id} has no xsi:type")))?;
    let mut fields: BTreeMap<String, String> = object
        .children
        .iter()
        .map(|f| (f.name.clone(), f.text.trim().to_owned()))
        .collect();
    let record_id = fields.remove("Id").filter(|v| is_id(v)).ok_or_else(|| {
        bad(format!(
            "the sObject of notification {id} has no valid sf:Id"
        ))
    })?;
    Ok(Notification {
        id,
        object_type,
        record_id,
        fields,
    })
}

/// Turns a message's Contact notifications into events; notifications about other objects are
/// counted as ignored. `integration_user`: the user SyncRoot writes as (empty: unknown); a
/// notification whose `LastModifiedById` is that user reports SyncRoot's own write.
pub fn events(msg: &Message, integration_user: &str, received_at: DateTime<Utc>) -> Parsed {
    let mut out = Parsed::default();
    for n in &msg.notifications {
        if n.object_type != "Contact" {
            out.ignored += 1;
            continue;
        }
        let time = |name: &str| {
            n.fields
                .get(name)
                .and_then(|v| DateTime::parse_from_rfc3339(v).ok())
                .map(|t| t.with_timezone(&Utc))
        };
        let occurred_at = time("LastModifiedDate")
            .or_else(|| time("SystemModstamp"))
            .map_or(received_at, |t| latest_within_second(t, received_at));
        let ours = n
            .fields
            .get("LastModifiedById")
            .is_some_and(|by| same_id(by, integration_user));
        out.events.push(InboundEvent {
            key: format!("{KEY_PREFIX}{}", n.id),
            kind: EventKind::Changed,
            remote_id: n.record_id.clone(),
            occurred_at,
            ours,
        });
    }
    out
}

/// The latest moment a change stamped `t` can have happened. Salesforce stores date-times to
/// the second (`…:05.000Z`), so the change happened within the second that follows, and before
/// the message arrived. The conflict policy compares this with other sources' millisecond
/// times: the start of the second would make an edit lose to an API write it followed within
/// the same second. A stamp with milliseconds is taken as it is.
fn latest_within_second(t: DateTime<Utc>, received_at: DateTime<Utc>) -> DateTime<Utc> {
    if t.timestamp_subsec_millis() != 0 {
        return t;
    }
    (t + chrono::Duration::milliseconds(999))
        .min(received_at)
        .max(t)
}

/// Whether two Salesforce ids name the same thing: an 18-character id is its 15-character,
/// case-sensitive form plus a 3-character case suffix, so the first 15 decide. False when
/// either is not an id.
pub fn same_id(a: &str, b: &str) -> bool {
    is_id(a) && is_id(b) && a[..15] == b[..15]
}

/// 15 or 18 ASCII letters and digits.
pub fn is_id(s: &str) -> bool {
    matches!(s.len(), 15 | 18) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The `notificationsResponse` Salesforce expects; anything else and it redelivers.
pub const ACK: &str = concat!(
    r#"<?xml version="1.0" encoding="UTF-8"?>"#,
    r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">"#,
    r#"<soapenv:Body><notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">"#,
    r#"<Ack>true</Ack></notificationsResponse></soapenv:Body></soapenv:Envelope>"#
);

/// Who a SOAP 1.1 fault blames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCode {
    /// The message is at fault: resending it unchanged fails again.
    Client,
    /// SyncRoot is: the same message may succeed later.
    Server,
}

/// A SOAP 1.1 fault naming the problem; Salesforce shows `faultstring` in its queue.
pub fn fault(code: FaultCode, message: &str) -> String {
    let code = match code {
        FaultCode::Client => "soapenv:Client",
        FaultCode::Server => "soapenv:Server",
    };
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">"#,
            r#"<soapenv:Body><soapenv:Fault><faultcode>{}</faultcode>"#,
            r#"<faultstring>{}</faultstring></soapenv:Fault></soapenv:Body></soapenv:Envelope>"#
        ),
        code,
        quick_xml::escape::escape(message)
    )
}

/// An element with its resolved namespace, its text and its children.
#[derive(Debug, Default)]
struct Element {
    ns: Vec<u8>,
    name: String,
    xsi_type: Option<String>,
    text: String,
    children: Vec<Element>,
}

impl Element {
    fn child(&self, ns: &[u8], name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.ns == ns && c.name == name)
    }

    fn required_text(&self, name: &str) -> Result<String, ParseError> {
        self.child(OUTBOUND, name)
            .map(|e| e.text.trim().to_owned())
            .filter(|t| !t.is_empty())
            .ok_or_else(|| bad(format!("{} has no {name}", self.name)))
    }
}

/// Reads the document into a tree, refusing what a SOAP message never holds.
fn read_tree(body: &[u8]) -> Result<Element, ParseError> {
    let mut reader = NsReader::from_reader(body);
    let mut stack: Vec<Element> = Vec::new();
    let mut root = None;
    let mut elements = 0usize;
    let mut buf = Vec::new();
    loop {
        let (ns, event) = reader
            .read_resolved_event_into(&mut buf)
            .map_err(|e| bad(format!("malformed XML: {e}")))?;
        let ns = namespace(ns)?;
        match event {
            Event::DocType(_) => {
                return Err(bad("a DOCTYPE is not allowed (no entity declarations)"));
            }
            Event::Start(ref s) | Event::Empty(ref s) => {
                elements += 1;
                if stack.len() >= MAX_DEPTH || elements > MAX_ELEMENTS {
                    return Err(bad(
                        "the document nests too deep or holds too many elements",
                    ));
                }
                if root.is_some() && stack.is_empty() {
                    return Err(bad("more than one root element"));
                }
                let mut el = Element {
                    ns,
                    name: String::from_utf8_lossy(s.local_name().as_ref()).into_owned(),
                    ..Element::default()
                };
                for attr in s.attributes() {
                    let attr = attr.map_err(|e| bad(format!("malformed attribute: {e}")))?;
                    let (ans, local) = reader.resolver().resolve_attribute(attr.key);
                    if namespace(ans)? == XSI && local.as_ref() == b"type" {
                        let value = attr
                            .decoded_and_normalized_value(
                                quick_xml::XmlVersion::default(),
                                reader.decoder(),
                            )
                            .map_err(|e| bad(format!("malformed attribute: {e}")))?;
                        el.xsi_type = Some(value.into_owned());
                    }
                }
                if matches!(event, Event::Start(_)) {
                    stack.push(el);
                } else {
                    close(el, &mut stack, &mut root);
                }
            }
            Event::End(_) => {
                if let Some(el) = stack.pop() {
                    close(el, &mut stack, &mut root);
                }
            }
            Event::Text(t) => {
                let text = t
                    .decode()
                    .map_err(|e| bad(format!("malformed text: {e}")))?;
                append(&mut stack, &text)?;
            }
            Event::CData(c) => {
                let text = c
                    .decode()
                    .map_err(|e| bad(format!("malformed CDATA: {e}")))?;
                append(&mut stack, &text)?;
            }
            Event::GeneralRef(r) => {
                let resolved = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => {
                        let name = r
                            .decode()
                            .map_err(|e| bad(format!("malformed reference: {e}")))?;
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or_else(|| bad(format!("entity &{name}; is not allowed")))?
                            .to_owned()
                    }
                    Err(e) => return Err(bad(format!("malformed character reference: {e}"))),
                };
                append(&mut stack, &resolved)?;
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
        }
        buf.clear();
    }
    if !stack.is_empty() {
        return Err(bad("the document ends inside an element"));
    }
    root.ok_or_else(|| bad("the body is empty"))
}

fn namespace(ns: ResolveResult<'_>) -> Result<Vec<u8>, ParseError> {
    match ns {
        ResolveResult::Bound(Namespace(n)) => Ok(n.to_vec()),
        ResolveResult::Unbound => Ok(Vec::new()),
        ResolveResult::Unknown(prefix) => Err(bad(format!(
            "namespace prefix {} is not declared",
            String::from_utf8_lossy(&prefix)
        ))),
    }
}

fn close(el: Element, stack: &mut [Element], root: &mut Option<Element>) {
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => *root = Some(el),
    }
}

/// Text belongs to the open element; outside the root only whitespace may stand.
fn append(stack: &mut [Element], text: &str) -> Result<(), ParseError> {
    match stack.last_mut() {
        Some(el) => {
            el.text.push_str(text);
            Ok(())
        }
        None if text.trim().is_empty() => Ok(()),
        None => Err(bad("text outside the root element")),
    }
}

#[cfg(test)]
#[path = "salesforce_outbound_tests.rs"]
mod tests;
