//! SyncRoot's messages as AMQP messages: JSON bodies, persistent, each kind under its AMQP
//! `type`. A [`ContactChange`] carries its id as the AMQP `message-id` so brokers' tooling and
//! logs can correlate; changes accepted together for one shard travel as one [`ChangePack`].

use lapin::BasicProperties;

use crate::domain::ContactChange;
use crate::domain::change::{
    CHANGE_FORMAT_VERSION, ChangePack, DeliveryPack, DeliveryTask, PackedTask,
};
use crate::domain::inbound::InboundBatch;

/// AMQP `type` of contact changes.
pub const CHANGE_TYPE: &str = "syncroot.contact.change";

/// Why a message is not a change this build can apply (it goes to the dead-letter queue).
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("body is not a contact change: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("unknown change format version {0} (this build reads version {CHANGE_FORMAT_VERSION})")]
    UnknownVersion(u32),
}

pub fn encode(change: &ContactChange) -> (Vec<u8>, BasicProperties) {
    // Serialising plain data with string keys cannot fail.
    let body = serde_json::to_vec(change).unwrap_or_default();
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_type(CHANGE_TYPE.into())
        .with_message_id(change.message_id.to_string().into())
        .with_timestamp(change.accepted_at.timestamp().max(0) as u64);
    (body, props)
}

/// AMQP `type` of change packs.
pub const PACK_TYPE: &str = "syncroot.contact.changes";

/// A pack of changes for one shard: its own message id, and the time its first change was
/// accepted (the oldest), which bounds the queue's oldest-message age (`metrics::backlog`).
pub fn encode_pack(pack: &ChangePack) -> (Vec<u8>, BasicProperties) {
    let body = serde_json::to_vec(pack).unwrap_or_default();
    let first = pack.changes.iter().map(|p| p.change.accepted_at).min();
    let mut props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_type(PACK_TYPE.into())
        .with_message_id(uuid::Uuid::new_v4().to_string().into());
    if let Some(first) = first {
        props = props.with_timestamp(first.timestamp().max(0) as u64);
    }
    (body, props)
}

/// The changes a message from a shard queue carries, by its AMQP `type`: a pack's, in order,
/// each with its trace context; or the one change (any other type, or none: messages before
/// packs were all single changes).
pub fn decode_changes(kind: Option<&str>, body: &[u8]) -> Result<ChangePack, DecodeError> {
    if kind == Some(PACK_TYPE) {
        return decode_versioned(body);
    }
    let change = decode(body)?;
    Ok(ChangePack {
        v: change.v,
        changes: vec![crate::domain::change::PackedChange {
            change,
            trace: Default::default(),
        }],
    })
}

/// AMQP `type` of delivery tasks.
pub const DELIVERY_TYPE: &str = "syncroot.delivery";

pub fn encode_delivery(task: &DeliveryTask) -> (Vec<u8>, BasicProperties) {
    let body = serde_json::to_vec(task).unwrap_or_default();
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_type(DELIVERY_TYPE.into());
    (body, props)
}

/// AMQP `type` of delivery task packs.
pub const DELIVERY_PACK_TYPE: &str = "syncroot.deliveries";

/// A pack of delivery tasks for one CRM.
pub fn encode_delivery_pack(pack: &DeliveryPack) -> (Vec<u8>, BasicProperties) {
    let body = serde_json::to_vec(pack).unwrap_or_default();
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_type(DELIVERY_PACK_TYPE.into());
    (body, props)
}

/// The tasks a message from a delivery queue carries, by its AMQP `type`: a pack's, in order,
/// each with its trace context; or the one task (any other type, or none).
pub fn decode_deliveries(kind: Option<&str>, body: &[u8]) -> Result<DeliveryPack, DecodeError> {
    if kind == Some(DELIVERY_PACK_TYPE) {
        return decode_versioned(body);
    }
    let task = decode_delivery(body)?;
    Ok(DeliveryPack {
        v: task.v,
        tasks: vec![PackedTask {
            task,
            trace: Default::default(),
        }],
    })
}

/// Header naming why SyncRoot itself dead-lettered a message (`permanent`,
/// `retries_exhausted`); messages RabbitMQ dead-lettered carry `x-death` instead.
pub const REASON_HEADER: &str = "x-syncroot-reason";

/// A delivery task on its way to the dead-letter exchange, with the reason in a header.
pub fn encode_dead_delivery(task: &DeliveryTask, reason: &str) -> (Vec<u8>, BasicProperties) {
    let (body, props) = encode_delivery(task);
    let mut headers = lapin::types::FieldTable::default();
    headers.insert(
        REASON_HEADER.into(),
        lapin::types::AMQPValue::LongString(reason.as_bytes().to_vec().into()),
    );
    (body, props.with_headers(headers))
}

/// AMQP `type` of webhook batches.
pub const INBOUND_TYPE: &str = "syncroot.inbound";

pub fn encode_inbound(batch: &InboundBatch) -> (Vec<u8>, BasicProperties) {
    let body = serde_json::to_vec(batch).unwrap_or_default();
    let props = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/json".into())
        .with_type(INBOUND_TYPE.into())
        .with_message_id(uuid::Uuid::new_v4().to_string().into());
    (body, props)
}

pub fn decode_inbound(body: &[u8]) -> Result<InboundBatch, DecodeError> {
    decode_versioned(body)
}

pub fn decode(body: &[u8]) -> Result<ContactChange, DecodeError> {
    decode_versioned(body)
}

pub fn decode_delivery(body: &[u8]) -> Result<DeliveryTask, DecodeError> {
    decode_versioned(body)
}

/// Reads the format version first, so a message from a newer build is refused by its version
/// rather than by whatever field it happens to lack.
fn decode_versioned<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, DecodeError> {
    #[derive(serde::Deserialize)]
    struct Version {
        v: u32,
    }
    let Version { v } = serde_json::from_slice(body)?;
    if v != CHANGE_FORMAT_VERSION {
        return Err(DecodeError::UnknownVersion(v));
    }
    Ok(serde_json::from_slice(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ChangeOp, ContactFields, ContactId, Email};

    fn change() -> ContactChange {
        ContactChange {
            v: CHANGE_FORMAT_VERSION,
            message_id: uuid::Uuid::new_v4(),
            contact_id: ContactId::new(),
            seq: 3,
            op: ChangeOp::Upsert,
            origin: crate::domain::Origin::Api,
            accepted_at: chrono::Utc::now(),
            created_at: chrono::Utc::now(),
            contact: ContactFields {
                email: Email::parse("ada@example.com").unwrap(),
                first_name: Some("Ada".into()),
                last_name: None,
                phone: None,
                company: None,
                job_title: None,
            },
            bulk: false,
        }
    }

    #[test]
    fn a_change_round_trips() {
        let c = change();
        let (body, props) = encode(&c);
        assert_eq!(decode(&body).unwrap(), c);
        assert_eq!(props.delivery_mode(), &Some(2));
    }

    #[test]
    fn a_pack_round_trips_in_order_and_a_single_change_reads_as_a_pack_of_one() {
        use crate::domain::change::PackedChange;
        let (a, b) = (change(), change());
        let trace: std::collections::HashMap<String, String> = [(
            "traceparent".to_owned(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
        )]
        .into();
        let pack = ChangePack {
            v: CHANGE_FORMAT_VERSION,
            changes: vec![
                PackedChange {
                    change: a.clone(),
                    trace: trace.clone(),
                },
                PackedChange {
                    change: b.clone(),
                    trace: Default::default(),
                },
            ],
        };
        let (body, props) = encode_pack(&pack);
        assert_eq!(props.kind().as_ref().map(|k| k.as_str()), Some(PACK_TYPE));
        assert_eq!(props.delivery_mode(), &Some(2));
        assert_eq!(decode_changes(Some(PACK_TYPE), &body).unwrap(), pack);
        // A forwarder that knows only single changes cannot take a pack for one.
        assert!(decode(&body).is_err());

        let (body, props) = encode(&a);
        let kind = props.kind().as_ref().map(|k| k.to_string());
        let one = decode_changes(kind.as_deref(), &body).unwrap();
        assert_eq!(one.changes.len(), 1);
        assert_eq!(one.changes[0].change, a);
        assert_eq!(decode_changes(None, &body).unwrap(), one);
        // A pack is read as a pack only by its type.
        assert!(decode_changes(Some(CHANGE_TYPE), &encode_pack(&pack).0).is_err());
    }

    #[test]
    fn a_delivery_pack_round_trips_and_a_single_task_reads_as_a_pack_of_one() {
        use crate::domain::Crm;
        let a = DeliveryTask::new(ContactId::new(), 2, Crm::Hubspot);
        let b = DeliveryTask::new(ContactId::new(), 1, Crm::Hubspot).in_bulk(true);
        let pack = DeliveryPack {
            v: CHANGE_FORMAT_VERSION,
            tasks: vec![
                PackedTask {
                    task: a.clone(),
                    trace: [("traceparent".to_owned(), "00-x-y-01".to_owned())].into(),
                },
                PackedTask {
                    task: b,
                    trace: Default::default(),
                },
            ],
        };
        let (body, props) = encode_delivery_pack(&pack);
        assert_eq!(
            props.kind().as_ref().map(|k| k.as_str()),
            Some(DELIVERY_PACK_TYPE)
        );
        assert_eq!(props.delivery_mode(), &Some(2));
        assert_eq!(
            decode_deliveries(Some(DELIVERY_PACK_TYPE), &body).unwrap(),
            pack
        );
        // A delivery worker that knows only single tasks cannot take a pack for one.
        assert!(decode_delivery(&body).is_err());

        let (body, _) = encode_delivery(&a);
        let one = decode_deliveries(Some(DELIVERY_TYPE), &body).unwrap();
        assert_eq!(one.tasks.len(), 1);
        assert_eq!(one.tasks[0].task, a);
        assert_eq!(decode_deliveries(None, &body).unwrap(), one);
        assert!(decode_deliveries(Some(DELIVERY_TYPE), &encode_delivery_pack(&pack).0).is_err());
    }

    #[test]
    fn garbage_and_future_versions_are_refused() {
        assert!(matches!(
            decode(b"not json"),
            Err(DecodeError::Malformed(_))
        ));
        let mut v: serde_json::Value = serde_json::to_value(change()).unwrap();
        v["v"] = 2.into();
        assert!(matches!(
            decode(v.to_string().as_bytes()),
            Err(DecodeError::UnknownVersion(2))
        ));
        assert!(matches!(
            decode(br#"{"v":1}"#),
            Err(DecodeError::Malformed(_))
        ));
    }
}
