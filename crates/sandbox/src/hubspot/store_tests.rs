use super::*;
use crate::hubspot::config::CustomProperty;

fn store() -> Store {
    let custom = [CustomProperty {
        name: "syncroot_id".into(),
        unique: true,
    }];
    Store::new(Schema::new(&custom))
}

fn props(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn create(store: &mut Store, pairs: &[(&str, &str)]) -> Result<Written, WriteError> {
    store.create(&props(pairs), Utc::now())
}

#[test]
fn create_sets_system_properties_and_reports_each_property() {
    let mut s = store();
    let written = create(
        &mut s,
        &[("email", "Ada@Example.com"), ("firstname", "Ada")],
    );
    let Ok(w) = written else {
        panic!("create failed: {written:?}")
    };
    assert_eq!(
        w.contact.properties.get("hs_object_id"),
        Some(&w.contact.id.to_string())
    );
    assert_eq!(
        w.contact.properties.get("email").map(String::as_str),
        Some("ada@example.com")
    );
    assert!(w.contact.properties.contains_key("createdate"));
    assert_eq!(w.changes.len(), 3);
    assert_eq!(w.changes[0].kind, ChangeKind::Created);
}

#[test]
fn duplicate_email_names_the_existing_id_case_insensitively() {
    let mut s = store();
    let first = create(&mut s, &[("email", "ada@example.com")]).map(|w| w.contact.id);
    let again = create(&mut s, &[("email", "ADA@example.com")]);
    assert_eq!(
        again.err(),
        first
            .ok()
            .map(|existing| WriteError::DuplicateEmail { existing })
    );
}

#[test]
fn archiving_frees_the_email_and_hides_the_record() {
    let mut s = store();
    let id = create(&mut s, &[("email", "ada@example.com")])
        .map(|w| w.contact.id)
        .unwrap_or(0);
    assert!(s.archive(id, Utc::now()).is_some());
    assert!(s.archive(id, Utc::now()).is_none());
    assert!(matches!(
        s.find(Some("email"), "ada@example.com", false),
        Ok(None)
    ));
    assert!(matches!(s.find(None, &id.to_string(), true), Ok(Some(_))));
    assert!(create(&mut s, &[("email", "ada@example.com")]).is_ok());
}

#[test]
fn update_reports_only_changed_properties_and_clears_empty_ones() {
    let mut s = store();
    let id = create(&mut s, &[("firstname", "Ada"), ("lastname", "L")])
        .map(|w| w.contact.id)
        .unwrap_or(0);
    let w = s.update(
        id,
        &props(&[("firstname", "Ada"), ("lastname", "")]),
        Utc::now(),
    );
    let Ok(w) = w else { panic!("update failed") };
    assert_eq!(w.changes.len(), 1);
    assert!(!w.contact.properties.contains_key("lastname"));
}

#[test]
fn rollback_restores_records_and_unique_index() {
    let mut s = store();
    let id = create(&mut s, &[("email", "a@x.io")])
        .map(|w| w.contact.id)
        .unwrap_or(0);
    s.begin();
    let _ = s.update(id, &props(&[("email", "b@x.io")]), Utc::now());
    let _ = create(&mut s, &[("email", "c@x.io")]);
    s.rollback();
    assert_eq!(s.all().count(), 1);
    assert!(matches!(
        s.find(Some("email"), "a@x.io", false),
        Ok(Some(_))
    ));
    assert!(matches!(s.find(Some("email"), "b@x.io", false), Ok(None)));
}

#[test]
fn custom_unique_property_is_enforced_and_looked_up() {
    let mut s = store();
    let _ = create(&mut s, &[("syncroot_id", "sr-1")]);
    let dup = create(&mut s, &[("syncroot_id", "sr-1")]);
    assert!(matches!(dup, Err(WriteError::DuplicateUnique { .. })));
    assert!(matches!(
        s.find(Some("syncroot_id"), "sr-1", false),
        Ok(Some(_))
    ));
    assert!(matches!(
        s.find(Some("firstname"), "x", false),
        Err(WriteError::NotIdProperty(_))
    ));
}

#[test]
fn a_merge_keeps_the_primary_fills_its_gaps_and_archives_the_other() {
    let mut s = store();
    let a = create(&mut s, &[("email", "a@example.com"), ("firstname", "Ada")]).unwrap();
    let b = create(
        &mut s,
        &[
            ("email", "b@example.com"),
            ("firstname", "Augusta"),
            ("jobtitle", "Countess"),
        ],
    )
    .unwrap();
    let (a, b) = (a.contact.id, b.contact.id);
    let w = s.merge(a, b, Utc::now()).unwrap();
    assert_eq!(
        w.contact.properties["firstname"], "Ada",
        "the primary's value stays"
    );
    assert_eq!(
        w.contact.properties["jobtitle"], "Countess",
        "a gap is filled"
    );
    assert_eq!(w.contact.properties["email"], "a@example.com");
    assert_eq!(
        w.changes[0].kind,
        ChangeKind::Merged {
            merged_ids: vec![b],
            moved: 1
        }
    );
    assert!(s.find(None, &b.to_string(), false).unwrap().is_none());
    assert!(s.find(None, &b.to_string(), true).unwrap().is_some());
    // The merged-away address is free again; merging with an archived record is refused.
    assert!(create(&mut s, &[("email", "b@example.com")]).is_ok());
    assert!(matches!(
        s.merge(a, b, Utc::now()),
        Err(WriteError::NotFound(_))
    ));
    assert!(matches!(
        s.merge(a, a, Utc::now()),
        Err(WriteError::NotFound(_))
    ));
}

#[test]
fn an_erased_contact_is_gone_for_good() {
    let mut s = store();
    let id = create(&mut s, &[("email", "gdpr@example.com")])
        .unwrap()
        .contact
        .id;
    let change = s.erase(id, Utc::now()).unwrap();
    assert_eq!(change.kind, ChangeKind::PrivacyDeleted);
    assert!(s.find(None, &id.to_string(), false).unwrap().is_none());
    assert!(s.find(None, &id.to_string(), true).unwrap().is_none());
    assert!(s.all().all(|c| c.id != id));
    assert!(s.erase(id, Utc::now()).is_none());
}
