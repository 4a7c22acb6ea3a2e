//! What a message RabbitMQ dead-lettered says about itself: where it came from and why
//! (`x-death` and the `x-first-death-*` headers), and a diagnosis a person can act on.
//!
//! Pure: no I/O. Not here: keeping the entry (the worker in `mod.rs`).

use lapin::types::{AMQPValue, FieldTable};
use uuid::Uuid;

use crate::queue::envelope;

/// Why a worker could not process a message: an error code, a message, and the contact when
/// the message names one.
pub(super) fn diagnose(
    body: &[u8],
    kind: Option<&str>,
    death: &Death,
) -> (String, String, Option<Uuid>) {
    let why = format!(
        "dead-lettered by RabbitMQ from {} ({}) after {} deliver{}",
        death.queue.as_deref().unwrap_or("an unknown queue"),
        death.reason.as_deref().unwrap_or("unknown reason"),
        death.count,
        if death.count == 1 { "y" } else { "ies" }
    );
    // The contact it names (a pack's first), and how many changes or tasks it carries.
    let decoded = match kind {
        Some(envelope::DELIVERY_TYPE | envelope::DELIVERY_PACK_TYPE) => {
            envelope::decode_deliveries(kind, body)
                .map(|p| (p.tasks.first().map(|t| t.task.contact_id.0), p.tasks.len()))
        }
        _ => envelope::decode_changes(kind, body).map(|p| {
            (
                p.changes.first().map(|c| c.change.contact_id.0),
                p.changes.len(),
            )
        }),
    };
    match decoded {
        Ok((contact, n)) => (
            "WORKER_FAILED".into(),
            match kind {
                Some(envelope::PACK_TYPE) => format!(
                    "{why}: a worker kept failing on this pack of {n} change{} (see its logs)",
                    if n == 1 { "" } else { "s" }
                ),
                Some(envelope::DELIVERY_PACK_TYPE) => format!(
                    "{why}: a worker kept failing on this pack of {n} delivery task{} (see its logs)",
                    if n == 1 { "" } else { "s" }
                ),
                _ => format!("{why}: a worker kept failing on it (see its logs)"),
            },
            contact,
        ),
        Err(envelope::DecodeError::UnknownVersion(v)) => (
            "UNKNOWN_VERSION".into(),
            format!("{why}: format version {v} is unknown to this build"),
            None,
        ),
        Err(e) => ("UNDECODABLE".into(), format!("{why}: {e}"), None),
    }
}

/// What RabbitMQ says about a dead-lettered message (`x-death`, newest first; the first death
/// is where it came from).
#[derive(Debug, Default)]
pub(super) struct Death {
    pub(super) queue: Option<String>,
    pub(super) reason: Option<String>,
    pub(super) exchange: Option<String>,
    pub(super) routing_key: Option<String>,
    pub(super) count: i64,
}

impl Death {
    pub(super) fn read(headers: &FieldTable) -> Self {
        let mut d = Death {
            queue: text(headers, "x-first-death-queue"),
            reason: text(headers, "x-first-death-reason"),
            exchange: text(headers, "x-first-death-exchange"),
            ..Death::default()
        };
        let deaths = match headers.inner().get("x-death") {
            Some(AMQPValue::FieldArray(a)) => a.as_slice().to_vec(),
            _ => Vec::new(),
        };
        // The entry of the first death's queue carries its routing keys and count.
        for death in deaths {
            let AMQPValue::FieldTable(t) = death else {
                continue;
            };
            if d.queue.is_some() && text(&t, "queue") != d.queue {
                continue;
            }
            d.count = match t.inner().get("count") {
                Some(AMQPValue::LongLongInt(n)) => *n,
                Some(AMQPValue::LongInt(n)) => i64::from(*n),
                _ => 0,
            };
            if let Some(AMQPValue::FieldArray(keys)) = t.inner().get("routing-keys") {
                d.routing_key = keys.as_slice().first().and_then(as_text);
            }
            break;
        }
        d
    }
}

pub(super) fn text(t: &FieldTable, key: &str) -> Option<String> {
    t.inner().get(key).and_then(as_text)
}

fn as_text(v: &AMQPValue) -> Option<String> {
    match v {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{FieldArray, LongString};

    fn long(s: &str) -> AMQPValue {
        AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
    }

    #[test]
    fn x_death_names_the_origin_and_the_count() {
        let mut first = FieldTable::default();
        first.insert("queue".into(), long("p.contacts.3"));
        first.insert("reason".into(), long("delivery_limit"));
        first.insert("count".into(), AMQPValue::LongLongInt(21));
        first.insert(
            "routing-keys".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![long("3")])),
        );
        let mut h = FieldTable::default();
        h.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(first)])),
        );
        h.insert("x-first-death-queue".into(), long("p.contacts.3"));
        h.insert("x-first-death-reason".into(), long("delivery_limit"));
        h.insert("x-first-death-exchange".into(), long("p.contacts"));
        let d = Death::read(&h);
        assert_eq!(d.queue.as_deref(), Some("p.contacts.3"));
        assert_eq!(d.exchange.as_deref(), Some("p.contacts"));
        assert_eq!(d.routing_key.as_deref(), Some("3"));
        assert_eq!(d.count, 21);
        let (code, message, contact) = diagnose(b"{not json", None, &d);
        assert_eq!(code, "UNDECODABLE");
        assert!(message.contains("after 21 deliveries"), "{message}");
        assert!(contact.is_none());
        let (code, ..) = diagnose(br#"{"v":9}"#, None, &d);
        assert_eq!(code, "UNKNOWN_VERSION");
    }

    #[test]
    fn a_pack_names_its_first_contact_and_its_size() {
        use crate::domain::change::{CHANGE_FORMAT_VERSION, ChangePack, PackedChange};
        use crate::domain::{ChangeOp, ContactChange, ContactFields, ContactId, Email, Origin};
        let change = |email: &str| PackedChange {
            change: ContactChange {
                v: CHANGE_FORMAT_VERSION,
                message_id: Uuid::new_v4(),
                contact_id: ContactId::new(),
                seq: 1,
                op: ChangeOp::Upsert,
                origin: Origin::Api,
                accepted_at: chrono::Utc::now(),
                created_at: chrono::Utc::now(),
                contact: ContactFields {
                    email: Email::parse(email).unwrap(),
                    first_name: None,
                    last_name: None,
                    phone: None,
                    company: None,
                    job_title: None,
                },
                bulk: false,
            },
            trace: Default::default(),
        };
        let pack = ChangePack {
            v: CHANGE_FORMAT_VERSION,
            changes: vec![change("a@example.com"), change("b@example.com")],
        };
        let first = pack.changes[0].change.contact_id.0;
        let (body, _) = envelope::encode_pack(&pack);
        let d = Death {
            count: 20,
            ..Death::default()
        };
        let (code, message, contact) = diagnose(&body, Some(envelope::PACK_TYPE), &d);
        assert_eq!(code, "WORKER_FAILED");
        assert!(message.contains("pack of 2 changes"), "{message}");
        assert_eq!(contact, Some(first));
        // Without its type it is not a change at all.
        let (code, ..) = diagnose(&body, None, &d);
        assert_eq!(code, "UNDECODABLE");
    }

    #[test]
    fn a_pack_of_delivery_tasks_names_its_first_contact_and_size() {
        use crate::domain::change::{
            CHANGE_FORMAT_VERSION, DeliveryPack, DeliveryTask, PackedTask,
        };
        use crate::domain::{ContactId, Crm};
        let task = |id| PackedTask {
            task: DeliveryTask::new(id, 1, Crm::Salesforce),
            trace: Default::default(),
        };
        let first = ContactId::new();
        let pack = DeliveryPack {
            v: CHANGE_FORMAT_VERSION,
            tasks: vec![task(first), task(ContactId::new()), task(ContactId::new())],
        };
        let (body, _) = envelope::encode_delivery_pack(&pack);
        let d = Death {
            count: 20,
            ..Death::default()
        };
        let (code, message, contact) = diagnose(&body, Some(envelope::DELIVERY_PACK_TYPE), &d);
        assert_eq!(code, "WORKER_FAILED");
        assert!(message.contains("pack of 3 delivery tasks"), "{message}");
        assert_eq!(contact, Some(first.0));
    }
}
