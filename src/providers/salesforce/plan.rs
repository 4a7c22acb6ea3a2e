//! What each item of a batch needs, decided from the items and the look-ups alone: write a
//! linked record by its id, link an existing Contact found by e-mail (by the matching query, or
//! by a recent complete read: [`SyncItem::known`]), upsert by external id (not yet linked),
//! delete a record, or nothing.
//!
//! What it is not: I/O. The queries are `lookup.rs`; the writes are in `mod.rs`.

use std::collections::HashMap;

use super::lookup::EmailMatch;
use crate::domain::{ContactFields, ContactId};
use crate::providers::{ItemOutcome, Known, SyncItem};

/// What to send for one item.
#[derive(Clone, Debug)]
pub enum Action {
    /// Write the contact with the upsert by external id.
    Upsert,
    /// Write the contact onto this record by id — the linked record, or an existing one found
    /// by e-mail — which also sets its external id. A record gone since falls back to the upsert.
    Link(String),
    /// Delete this record.
    Delete(String),
    /// Nothing to send; the outcome is known.
    Done(ItemOutcome),
}

/// Each item's action. `by_email`: whether records are matched by e-mail at all; `matches` are
/// Contacts by lower-cased e-mail (empty when matching by e-mail is off); `orphans` are record
/// ids by lower-cased external id, for tombstones without a remote id.
pub fn actions(
    items: &[SyncItem],
    by_email: bool,
    mut matches: HashMap<String, Vec<EmailMatch>>,
    orphans: &HashMap<String, String>,
) -> Vec<Action> {
    items
        .iter()
        .map(|item| match (&item.contact, &item.remote_id) {
            (None, Some(record)) => Action::Delete(record.clone()),
            (None, None) => match orphans.get(&item.contact_id.to_string().to_lowercase()) {
                Some(record) => Action::Delete(record.clone()),
                None => Action::Done(ItemOutcome::Synced { remote_id: None }),
            },
            // Once linked, the record is written by its id, so the link holds even if someone
            // clears or changes the external-id field in Salesforce.
            (Some(_), Some(record)) => Action::Link(record.clone()),
            // A recent complete read found the address: no query was asked for it.
            (Some(_), None) if by_email && item.known.is_some() => match &item.known {
                Some(Known::Record(record)) => Action::Link(record.clone()),
                _ => Action::Upsert,
            },
            (Some(contact), None) => link_target(item.contact_id, contact, &mut matches)
                .map_or(Action::Upsert, Action::Link),
        })
        .collect()
}

/// The existing Contact a not-yet-linked contact should take over: one with its e-mail and
/// no SyncRoot id. A record is handed out once, so two contacts never share it.
fn link_target(
    id: ContactId,
    contact: &ContactFields,
    matches: &mut HashMap<String, Vec<EmailMatch>>,
) -> Option<String> {
    let candidates = matches.get_mut(contact.email.as_str())?;
    let own = id.to_string();
    // A record already carrying this contact's id was written by an earlier attempt whose
    // result was never recorded; the upsert finds it by external id.
    if candidates.iter().any(|m| {
        m.external_id
            .as_deref()
            .is_some_and(|x| x.eq_ignore_ascii_case(&own))
    }) {
        return None;
    }
    // A record carrying another SyncRoot id is another contact's link; taking it over would
    // unlink that contact, so it is left alone and this contact gets its own record.
    let free = candidates.iter().position(|m| m.external_id.is_none())?;
    Some(candidates.remove(free).id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Email;

    fn live(email: &str) -> SyncItem {
        SyncItem {
            contact_id: ContactId::new(),
            version: 1,
            contact: Some(ContactFields {
                email: Email::parse(email).expect("valid"),
                first_name: None,
                last_name: None,
                phone: None,
                company: None,
                job_title: None,
            }),
            remote_id: None,
            left_emails: Vec::new(),
            known: None,
        }
    }

    fn found(id: &str, ext: Option<&str>) -> EmailMatch {
        EmailMatch {
            id: id.into(),
            external_id: ext.map(Into::into),
        }
    }

    fn kinds(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Upsert => "upsert".to_owned(),
                Action::Link(id) => format!("link {id}"),
                Action::Delete(id) => format!("delete {id}"),
                Action::Done(_) => "done".to_owned(),
            })
            .collect()
    }

    #[test]
    fn a_free_match_is_linked_once_and_anothers_link_is_left_alone() {
        let items = [live("a@x.io"), live("a@x.io"), live("b@x.io")];
        let matches = HashMap::from([
            ("a@x.io".to_owned(), vec![found("003A", None)]),
            (
                "b@x.io".to_owned(),
                vec![found("003B", Some("someone-else"))],
            ),
        ]);
        let got = actions(&items, true, matches, &HashMap::new());
        assert_eq!(kinds(&got), ["link 003A", "upsert", "upsert"]);
    }

    #[test]
    fn a_record_already_carrying_the_contact_is_upserted_not_relinked() {
        let item = live("a@x.io");
        let own = item.contact_id.to_string();
        let matches = HashMap::from([(
            "a@x.io".to_owned(),
            vec![found("003A", None), found("003B", Some(&own))],
        )]);
        assert_eq!(
            kinds(&actions(&[item], true, matches, &HashMap::new())),
            ["upsert"]
        );
    }

    #[test]
    fn linked_contacts_are_written_by_id_and_tombstones_delete_what_they_can_find() {
        let mut linked = live("a@x.io");
        linked.remote_id = Some("003L".into());
        let gone = |remote: Option<&str>| SyncItem {
            contact: None,
            remote_id: remote.map(Into::into),
            ..live("z@x.io")
        };
        let (known, orphan, never) = (gone(Some("003K")), gone(None), gone(None));
        let orphans = HashMap::from([(orphan.contact_id.to_string(), "003O".to_owned())]);
        let matches = HashMap::from([("a@x.io".to_owned(), vec![found("003A", None)])]);
        let got = actions(&[linked, known, orphan, never], true, matches, &orphans);
        assert_eq!(
            kinds(&got),
            ["link 003L", "delete 003K", "delete 003O", "done"]
        );
    }

    #[test]
    fn what_a_recent_read_found_is_used_instead_of_a_match_and_only_when_matching_by_email() {
        let mut found_there = live("a@x.io");
        found_there.known = Some(Known::Record("003R".into()));
        let mut nowhere = live("b@x.io");
        nowhere.known = Some(Known::Absent);
        // The query's answer is not asked for these; were one there, it would not be used.
        let matches = HashMap::from([("b@x.io".to_owned(), vec![found("003B", None)])]);
        let items = [found_there, nowhere];
        let got = actions(&items, true, matches.clone(), &HashMap::new());
        assert_eq!(kinds(&got), ["link 003R", "upsert"]);
        // Matching by e-mail switched off: nothing is linked by address, whatever is known.
        let got = actions(&items, false, HashMap::new(), &HashMap::new());
        assert_eq!(kinds(&got), ["upsert", "upsert"]);
    }
}
