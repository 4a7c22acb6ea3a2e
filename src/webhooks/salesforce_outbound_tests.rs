//! Outbound Message parsing against fixtures in tests/fixtures/salesforce/outbound/ (one as a
//! Salesforce org sent it, one written to Salesforce's WSDL documentation) and hostile input.

use super::*;

const OBSERVED: &str =
    include_str!("../../tests/fixtures/salesforce/outbound/observed_opportunity_line_items.xml");
const CONTACTS: &str =
    include_str!("../../tests/fixtures/salesforce/outbound/contact_two_notifications.xml");
const INTEGRATION_USER: &str = "0055e000000IntgAAC";

fn received() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-03-06T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

#[test]
fn a_message_as_salesforce_sent_it_parses() {
    let m = parse(OBSERVED.as_bytes()).unwrap();
    assert_eq!(m.organization_id, "*****************");
    assert_eq!(m.action_id, "04k400000004CYMAA2");
    let ids: Vec<(&str, &str, &str)> = m
        .notifications
        .iter()
        .map(|n| (n.id.as_str(), n.object_type.as_str(), n.record_id.as_str()))
        .collect();
    assert_eq!(
        ids,
        vec![
            (
                "04lR00000004z4uIAA",
                "OpportunityLineItem",
                "00k40000004PHXtAAO"
            ),
            (
                "04lR00000004z4qIAA",
                "OpportunityLineItem",
                "00k40000004P5IhAAK"
            ),
            (
                "04lR00000004z4vIAA",
                "OpportunityLineItem",
                "00k40000004PK51AAG"
            ),
        ]
    );
    // Not contacts: nothing to sync, every notification counted as ignored.
    let p = events(&m, INTEGRATION_USER, received());
    assert_eq!((p.events.len(), p.ignored), (0, 3));
}

#[test]
fn contact_notifications_become_changed_events() {
    let m = parse(CONTACTS.as_bytes()).unwrap();
    assert_eq!(m.organization_id, "00D5e000000KQ2eEAG");
    assert_eq!(m.notifications[0].fields["Title"], "CTO & founder");
    let p = events(&m, INTEGRATION_USER, received());
    assert_eq!(p.ignored, 0);
    let e = &p.events[0];
    assert_eq!(
        (e.kind.clone(), e.remote_id.as_str(), e.key.as_str(), e.ours),
        (
            EventKind::Changed,
            "0035e00000ZkM3hAAF",
            "om:04l5e00000Gx7QzAAJ",
            false
        )
    );
    // LastModifiedDate wins over SystemModstamp when both are sent; a whole-second stamp
    // stands for the end of its second.
    assert_eq!(e.occurred_at.to_rfc3339(), "2024-03-05T09:00:00.999+00:00");
    // Modified by the integration user: SyncRoot's own write. Only SystemModstamp was sent.
    let e = &p.events[1];
    assert!(e.ours);
    assert_eq!(e.occurred_at.to_rfc3339(), "2024-03-05T09:05:00.999+00:00");
}

#[test]
fn without_dates_the_receipt_time_is_used_and_a_15_character_user_id_matches() {
    let body = CONTACTS
        .replace(
            "<sf:LastModifiedDate>2024-03-05T09:00:00.000Z</sf:LastModifiedDate>",
            "",
        )
        .replace(
            "<sf:SystemModstamp>2024-03-05T09:00:01.000Z</sf:SystemModstamp>",
            "",
        );
    let p = events(
        &parse(body.as_bytes()).unwrap(),
        "0055e000001AbCd",
        received(),
    );
    assert_eq!(p.events[0].occurred_at, received());
    assert!(p.events[0].ours);
    assert!(!p.events[1].ours);
}

#[test]
fn a_whole_second_stamp_is_never_later_than_the_receipt() {
    let t = DateTime::parse_from_rfc3339("2024-03-05T09:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let soon = t + chrono::Duration::milliseconds(300);
    assert_eq!(latest_within_second(t, soon), soon);
    let precise = t + chrono::Duration::milliseconds(12);
    assert_eq!(latest_within_second(precise, received()), precise);
}

#[test]
fn ids_compare_by_their_15_character_form() {
    assert!(same_id("00D5e000000KQ2eEAG", "00D5e000000KQ2e"));
    assert!(same_id("00D5e000000KQ2e", "00D5e000000KQ2eIAQ"));
    assert!(!same_id("00D5e000000KQ2E", "00D5e000000KQ2e"));
    assert!(!same_id("00D5e000000KQ2eEAG", ""));
    assert!(!same_id("00D5e000000KQ2eEA", "00D5e000000KQ2eEA"));
    assert!(!same_id("*****************", "*****************"));
}

#[test]
fn a_doctype_or_an_entity_is_refused() {
    let xxe = CONTACTS.replace(
        r#"<?xml version="1.0" encoding="UTF-8"?>"#,
        r#"<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>"#,
    );
    let e = parse(xxe.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("DOCTYPE"), "{e}");
    let reference = CONTACTS.replace("CTO &amp; founder", "&xxe;");
    let e = parse(reference.as_bytes()).unwrap_err();
    assert!(e.to_string().contains("&xxe;"), "{e}");
    let numeric = CONTACTS.replace("CTO &amp; founder", "CTO &#x26; founder");
    assert_eq!(
        parse(numeric.as_bytes()).unwrap().notifications[0].fields["Title"],
        "CTO & founder"
    );
}

#[test]
fn other_shapes_are_refused_with_a_reason() {
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "empty"),
        ("{\"events\": []}".into(), "outside the root"),
        ("<a><b></a>".into(), "malformed XML"),
        ("<notifications/>".into(), "soapenv:Envelope"),
        (
            CONTACTS.replace("http://soap.sforce.com/2005/09/outbound", "urn:other"),
            "notifications",
        ),
        (
            CONTACTS.replace("<OrganizationId>00D5e000000KQ2eEAG</OrganizationId>", ""),
            "OrganizationId",
        ),
        (
            CONTACTS.replace("<sf:Id>0035e00000ZkM3hAAF</sf:Id>", ""),
            "sf:Id",
        ),
        (
            CONTACTS.replace(r#" xsi:type="sf:Contact""#, ""),
            "xsi:type",
        ),
        (CONTACTS.replace("xsi:nil", "nope:nil"), "prefix nope"),
        (
            CONTACTS.replace("</soapenv:Envelope>", "</soapenv:Envelope><x/>"),
            "more than one root",
        ),
    ];
    for (body, why) in cases {
        let e = parse(body.as_bytes()).unwrap_err().to_string();
        assert!(e.contains(why), "expected {why:?} in {e:?}");
    }
}

#[test]
fn more_than_100_notifications_or_deep_nesting_is_refused() {
    let one = CONTACTS
        .split_once("<Notification>")
        .and_then(|(_, rest)| rest.split_once("</Notification>"))
        .map(|(n, _)| format!("<Notification>{n}</Notification>"))
        .unwrap();
    let many = CONTACTS.replace(&one, &one.repeat(101));
    let e = parse(many.as_bytes()).unwrap_err().to_string();
    assert!(e.contains("at most 100"), "{e}");
    let deep = CONTACTS.replace(
        "<sf:Email>ada@example.com</sf:Email>",
        &format!("{}{}", "<sf:x>".repeat(20), "</sf:x>".repeat(20)),
    );
    let e = parse(deep.as_bytes()).unwrap_err().to_string();
    assert!(e.contains("too deep"), "{e}");
}

#[test]
fn the_ack_and_a_fault_are_soap_envelopes() {
    assert!(ACK.contains(
        r#"<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound"><Ack>true</Ack>"#
    ));
    let f = fault(FaultCode::Client, "OrganizationId <x> & y");
    assert!(f.contains("<faultcode>soapenv:Client</faultcode>"));
    assert!(f.contains("<faultstring>OrganizationId &lt;x&gt; &amp; y</faultstring>"));
    // Our own parser reads a fault as a well-formed envelope (not a message, though).
    assert!(
        parse(f.as_bytes())
            .unwrap_err()
            .to_string()
            .contains("notifications")
    );
}

#[test]
fn the_ack_is_the_fixture_the_conformance_run_reads_with_python() {
    // tests/conformance/test_salesforce_outbound.py checks this file with xml.etree.
    assert_eq!(
        ACK,
        include_str!("../../tests/fixtures/salesforce/outbound/ack.xml")
    );
}
