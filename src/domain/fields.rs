//! The unified contact's writable fields and their rules, in one table.
//!
//! The same table drives request validation (here) and the OpenAPI schema (in `api::schema`),
//! so the spec can never promise a rule the server does not enforce, or the reverse.

use serde_json::Value;

use super::email::{EMAIL_MAX_LEN, EMAIL_PATTERN, Email};

/// A writable field of the unified contact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Email,
    FirstName,
    LastName,
    Phone,
    Company,
    JobTitle,
}

/// What values a field takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldKind {
    /// Required; see [`Email::parse`].
    Email,
    /// Free text without control or invisible formatting characters.
    Text,
    /// Digits with optional leading `+` and the separators ` ().-`.
    Phone,
}

/// One row of the field table.
#[derive(Debug)]
pub struct FieldSpec {
    pub field: Field,
    /// The JSON member name.
    pub name: &'static str,
    pub kind: FieldKind,
    /// Maximum length in characters (Unicode scalar values, as JSON Schema counts).
    pub max_len: usize,
    pub description: &'static str,
    pub example: &'static str,
}

/// Text fields: one or more characters, none of them a control character (C0, DEL, C1) or an
/// invisible formatting character ([`is_invisible_format`]). Must match [`forbidden_in_text`].
pub const TEXT_PATTERN: &str = r"^[^\u0000-\u001F\u007F-\u009F\u00AD\u061C\u180E\u200B-\u200F\u2028-\u202E\u2060-\u2064\u2066-\u2069\uFEFF]+$";
/// Phone numbers: at least one digit; `+` only in front.
pub const PHONE_PATTERN: &str = r"^\+?[0-9 ().-]*[0-9][0-9 ().-]*$";

/// The field table. Lengths follow the tightest CRM limit so that a contact SyncRoot accepts
/// is one both CRMs accept (Salesforce: FirstName 40, LastName 80, Title 128, Phone 40).
pub const FIELDS: [FieldSpec; 6] = [
    FieldSpec {
        field: Field::Email,
        name: "email",
        kind: FieldKind::Email,
        max_len: EMAIL_MAX_LEN,
        description: "Primary e-mail address; unique among live contacts; stored lower-cased.",
        example: "ada@example.com",
    },
    FieldSpec {
        field: Field::FirstName,
        name: "first_name",
        kind: FieldKind::Text,
        max_len: 40,
        description: "Given name.",
        example: "Ada",
    },
    FieldSpec {
        field: Field::LastName,
        name: "last_name",
        kind: FieldKind::Text,
        max_len: 80,
        description: "Family name.",
        example: "Lovelace",
    },
    FieldSpec {
        field: Field::Phone,
        name: "phone",
        kind: FieldKind::Phone,
        max_len: 40,
        description: "Business phone number: digits, an optional leading '+', and the separators space ( ) . -",
        example: "+44 20 7946 0000",
    },
    FieldSpec {
        field: Field::Company,
        name: "company",
        kind: FieldKind::Text,
        max_len: 255,
        description: "Company name (free text).",
        example: "Analytical Engines Ltd",
    },
    FieldSpec {
        field: Field::JobTitle,
        name: "job_title",
        kind: FieldKind::Text,
        max_len: 128,
        description: "Job title.",
        example: "Engineer",
    },
];

/// Members a client may see but never write.
pub const READ_ONLY: [&str; 5] = ["id", "version", "created_at", "updated_at", "sync"];

impl FieldKind {
    /// The regular expression published for this kind in the spec.
    pub fn pattern(self) -> &'static str {
        match self {
            FieldKind::Email => EMAIL_PATTERN,
            FieldKind::Text => TEXT_PATTERN,
            FieldKind::Phone => PHONE_PATTERN,
        }
    }
}

impl Field {
    pub fn spec(self) -> &'static FieldSpec {
        // The table lists every variant exactly once, in declaration order.
        &FIELDS[self as usize]
    }

    fn by_name(name: &str) -> Option<Field> {
        FIELDS.iter().find(|s| s.name == name).map(|s| s.field)
    }
}

/// One problem with one member of a request body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// JSON Pointer (RFC 6901) to the offending member; empty for the whole document.
    pub pointer: String,
    pub message: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            message: message.into(),
        }
    }
}

/// A validated value for one field: `None` clears an optional field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldValue {
    Email(Email),
    Text(Option<String>),
}

/// Validates every member of a JSON object, reporting each problem rather than the first.
///
/// `nullable_email` is false for documents (create, replace) and for patches alike: a contact
/// cannot exist without an address. Unknown and read-only members are errors, so that a typo
/// never silently drops data.
pub fn validate_members(doc: &Value) -> Result<Vec<(Field, FieldValue)>, Vec<FieldError>> {
    let Some(map) = doc.as_object() else {
        return Err(vec![FieldError::new("", "the body must be a JSON object")]);
    };
    let mut errors = Vec::new();
    let mut values = Vec::new();
    for (name, value) in map {
        let pointer = format!("/{}", escape_pointer(name));
        let Some(field) = Field::by_name(name) else {
            let msg = if READ_ONLY.contains(&name.as_str()) {
                format!("'{name}' is set by the server and cannot be written")
            } else {
                format!(
                    "unknown field '{name}'; writable fields are {}",
                    writable_names()
                )
            };
            errors.push(FieldError::new(pointer, msg));
            continue;
        };
        match validate_value(field.spec(), value) {
            Ok(v) => values.push((field, v)),
            Err(msg) => errors.push(FieldError::new(pointer, msg)),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

fn validate_value(spec: &FieldSpec, value: &Value) -> Result<FieldValue, String> {
    let s = match value {
        Value::Null if spec.kind == FieldKind::Email => {
            return Err("is required and cannot be null".into());
        }
        Value::Null => return Ok(FieldValue::Text(None)),
        Value::String(s) => s,
        other => return Err(format!("must be a string, not {}", json_type(other))),
    };
    if spec.kind == FieldKind::Email {
        return Email::parse(s)
            .map(FieldValue::Email)
            .map_err(|e| e.to_string());
    }
    let len = s.chars().count();
    if len == 0 {
        return Err("must not be empty; use null to clear the field".into());
    }
    if len > spec.max_len {
        return Err(format!(
            "must be at most {} characters (got {len})",
            spec.max_len
        ));
    }
    if let Some((at, c)) = s.chars().enumerate().find(|(_, c)| forbidden_in_text(*c)) {
        return Err(format!(
            "must not contain control or invisible formatting characters such as bidi overrides or zero-width spaces (U+{:04X} at character {})",
            c as u32,
            at + 1
        ));
    }
    if spec.kind == FieldKind::Phone && !is_phone(s) {
        return Err("must be a phone number: digits, an optional leading '+', and the separators space ( ) . -".into());
    }
    Ok(FieldValue::Text(Some(s.clone())))
}

/// Characters no text field takes: controls (C0, DEL, C1), which break CSV exports, logs and
/// CRM UIs, and invisible formatting characters, which make two names that look the same
/// differ, or reorder what a reader sees (CVE-2021-42574, "Trojan Source").
pub fn forbidden_in_text(c: char) -> bool {
    c.is_control() || is_invisible_format(c)
}

/// Bidirectional marks, embeddings, overrides and isolates; zero-width space, joiners and word
/// joiner; invisible operators; the byte-order mark; the soft hyphen; the Mongolian vowel
/// separator; line and paragraph separators.
pub fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}'
        | '\u{FEFF}')
}

fn is_phone(s: &str) -> bool {
    let rest = s.strip_prefix('+').unwrap_or(s);
    rest.chars().any(|c| c.is_ascii_digit())
        && rest
            .chars()
            .all(|c| c.is_ascii_digit() || " ().-".contains(c))
}

/// Escapes a member name for use in a JSON Pointer (RFC 6901 §3).
pub fn escape_pointer(name: &str) -> String {
    name.replace('~', "~0").replace('/', "~1")
}

pub fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn writable_names() -> String {
    FIELDS.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_table_is_in_declaration_order() {
        for (i, spec) in FIELDS.iter().enumerate() {
            assert_eq!(spec.field as usize, i);
        }
    }

    #[test]
    fn every_bad_member_is_reported_with_its_pointer() {
        let errs = validate_members(&json!({
            "email": "nope", "first_name": 7, "phone": "call me", "id": "x", "nickname": "Ada",
            "company": "", "job_title": "x".repeat(129)
        }))
        .unwrap_err();
        let pointers: Vec<_> = errs.iter().map(|e| e.pointer.as_str()).collect();
        for p in [
            "/email",
            "/first_name",
            "/phone",
            "/id",
            "/nickname",
            "/company",
            "/job_title",
        ] {
            assert!(pointers.contains(&p), "{p} missing from {errs:?}");
        }
        assert!(errs.iter().any(|e| e.message.contains("set by the server")));
    }

    #[test]
    fn null_clears_optional_fields_but_not_email() {
        let ok = validate_members(&json!({"phone": null})).unwrap();
        assert_eq!(ok, vec![(Field::Phone, FieldValue::Text(None))]);
        let err = validate_members(&json!({"email": null})).unwrap_err();
        assert_eq!(err[0].pointer, "/email");
    }

    #[test]
    fn phone_numbers_need_a_digit_and_a_leading_plus_only() {
        assert!(is_phone("+44 (20) 7946-0000"));
        assert!(is_phone("555.0100"));
        assert!(!is_phone("+"));
        assert!(!is_phone("12+34"));
        assert!(!is_phone("ext 12"));
    }

    #[test]
    fn control_and_invisible_formatting_characters_are_refused_naming_the_field() {
        for bad in [
            "Ada\u{202E}ecalevol",
            "Ada\u{200B}",
            "\u{FEFF}Ada",
            "A\u{2066}da\u{2069}",
            "Ada\u{0085}",
            "Ada\tLovelace",
            "Ad\u{00AD}a",
        ] {
            let errs = validate_members(&json!({ "first_name": bad })).unwrap_err();
            assert_eq!(errs.len(), 1, "{bad:?}");
            assert_eq!(errs[0].pointer, "/first_name");
            assert!(
                errs[0].message.contains("invisible formatting characters"),
                "{bad:?}: {}",
                errs[0].message
            );
        }
        for fine in ["Zoë", "José-María", "李小龙", "O'Brien", "Ægir Þór", "محمد"] {
            assert!(
                validate_members(&json!({ "last_name": fine })).is_ok(),
                "{fine}"
            );
        }
    }

    #[test]
    fn the_published_pattern_lists_the_refused_characters() {
        // Every character refused is inside one of the pattern's excluded ranges.
        let class = TEXT_PATTERN
            .trim_start_matches("^[^")
            .trim_end_matches("]+$");
        let mut ranges = Vec::new();
        let mut rest = class;
        while let Some(r) = rest.strip_prefix("\\u") {
            let lo = u32::from_str_radix(&r[..4], 16).unwrap();
            rest = &r[4..];
            let hi = match rest.strip_prefix("-\\u") {
                Some(r2) => {
                    rest = &r2[4..];
                    u32::from_str_radix(&r2[..4], 16).unwrap()
                }
                None => lo,
            };
            ranges.push(lo..=hi);
        }
        assert!(rest.is_empty(), "unparsed: {rest}");
        for cp in 0..=0xFFFF_u32 {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            let in_pattern = ranges.iter().any(|r| r.contains(&cp));
            assert_eq!(forbidden_in_text(c), in_pattern, "U+{cp:04X}");
        }
    }

    #[test]
    fn pointers_escape_special_characters() {
        assert_eq!(escape_pointer("a/b~c"), "a~1b~0c");
    }
}
