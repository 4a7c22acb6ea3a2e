//! Parsing the two-way sync settings: webhook receivers (secrets, public URL, signature
//! schemes, replay window), echo hints and the conflict policy.

use std::collections::BTreeMap;
use std::time::Duration;

use super::parse::Parser;
use super::{InboundConfig, Secret};
use crate::domain::Origin;
use crate::domain::fields::{FIELDS, Field};
use crate::domain::inbound::{DeletePolicy, PrivacyPolicy};
use crate::domain::merge::Policy;

impl Parser<'_> {
    pub(super) fn inbound(&mut self) -> InboundConfig {
        let public_url = if self.raw("webhook_public_url").trim().is_empty() {
            None
        } else {
            Some(self.base_url("webhook_public_url"))
        };
        let schemes = self.raw("hubspot_webhook_signatures").to_owned();
        let (mut allow_v1, mut allow_v2) = (false, false);
        for s in schemes.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match s {
                "v3" => {}
                "v2" => allow_v2 = true,
                "v1" => allow_v1 = true,
                other => self.fail(
                    "hubspot_webhook_signatures",
                    format!("'{other}' is not a HubSpot signature version (v1, v2, v3)"),
                ),
            }
        }
        InboundConfig {
            public_url,
            hubspot_secrets: self.secret_list("hubspot_webhook_secrets"),
            hubspot_allow_v1: allow_v1,
            hubspot_allow_v2: allow_v2,
            hubspot_app_id: self.raw("hubspot_app_id").trim().to_owned(),
            salesforce_secrets: self.secret_list("salesforce_webhook_secrets"),
            salesforce_integration_user: self
                .raw("salesforce_integration_user_id")
                .trim()
                .to_owned(),
            salesforce_org_id: self.org_id(),
            salesforce_outbound_token: self.outbound_token(),
            window: Duration::from_secs(self.ranged("webhook_window_secs", 10, 3600)),
            policy: Policy {
                owners: self.owners(),
                tie_break: self.tie_break(),
            },
            deletes: self.deletes(),
            privacy_deletions: self.privacy_deletions(),
            poll_interval: match self.ranged::<u64>("poll_interval_secs", 0, 86_400) {
                0 => None,
                secs => Some(Duration::from_secs(secs)),
            },
        }
    }

    /// Empty, or a Salesforce Organization Id.
    fn org_id(&mut self) -> String {
        let id = self.raw("salesforce_org_id").trim().to_owned();
        let valid = matches!(id.len(), 15 | 18)
            && id.starts_with("00D")
            && id.bytes().all(|b| b.is_ascii_alphanumeric());
        if !id.is_empty() && !valid {
            self.fail(
                "salesforce_org_id",
                "must be an Organization Id: 00D followed by 12 or 15 letters and digits".into(),
            );
        }
        id
    }

    /// A path segment long enough not to be guessed, in characters that need no escaping.
    fn outbound_token(&mut self) -> Option<Secret> {
        let token = self.raw("salesforce_outbound_token").trim().to_owned();
        if token.is_empty() {
            return None;
        }
        let valid = token.len() >= 16
            && token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            // The value is secret: the problem never repeats it.
            self.fail(
                "salesforce_outbound_token",
                "must be at least 16 letters, digits, - or _".into(),
            );
        }
        Some(Secret::new(token))
    }

    fn deletes(&mut self) -> DeletePolicy {
        match self.raw("inbound_deletes").trim() {
            "ignore" => DeletePolicy::Ignore,
            "mark" => DeletePolicy::Mark,
            "propagate" => DeletePolicy::Propagate,
            other => {
                let other = other.to_owned();
                self.fail(
                    "inbound_deletes",
                    format!("'{other}' is not mark, propagate or ignore"),
                );
                DeletePolicy::default()
            }
        }
    }

    fn privacy_deletions(&mut self) -> PrivacyPolicy {
        match self.raw("inbound_privacy_deletions").trim() {
            "erase" => PrivacyPolicy::Erase,
            "delete" => PrivacyPolicy::Delete,
            other => {
                let other = other.to_owned();
                self.fail(
                    "inbound_privacy_deletions",
                    format!("'{other}' is not erase or delete"),
                );
                PrivacyPolicy::default()
            }
        }
    }

    /// Comma-separated secrets; blanks are skipped (an empty list refuses every request).
    fn secret_list(&mut self, name: &str) -> Vec<Secret> {
        self.raw(name)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Secret::new)
            .collect()
    }

    /// `field=origin` pairs: the origin always wins that field.
    fn owners(&mut self) -> BTreeMap<Field, Origin> {
        let raw = self.raw("conflict_owners").to_owned();
        let mut owners = BTreeMap::new();
        for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, origin)) = pair.split_once('=') else {
                self.fail("conflict_owners", format!("'{pair}' is not field=owner"));
                continue;
            };
            let field = FIELDS
                .iter()
                .find(|s| s.name == name.trim())
                .map(|s| s.field);
            match (field, origin.trim().parse::<Origin>()) {
                (Some(f), Ok(o)) => {
                    owners.insert(f, o);
                }
                (None, _) => self.fail(
                    "conflict_owners",
                    format!("'{}' is not a contact field", name.trim()),
                ),
                (_, Err(e)) => self.fail("conflict_owners", e),
            }
        }
        owners
    }

    /// Every origin once, first wins a tie.
    fn tie_break(&mut self) -> Vec<Origin> {
        let raw = self.raw("conflict_tie_break").to_owned();
        let mut order = Vec::new();
        for name in raw.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name.parse::<Origin>() {
                Ok(o) if !order.contains(&o) => order.push(o),
                Ok(o) => self.fail("conflict_tie_break", format!("'{o}' is listed twice")),
                Err(e) => self.fail("conflict_tie_break", e),
            }
        }
        if order.len() != 3 {
            self.fail(
                "conflict_tie_break",
                "must list api, hubspot and salesforce, each once".into(),
            );
        }
        order
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Layers;

    fn parse(pairs: &[(&str, &str)]) -> Result<crate::config::Config, String> {
        let env = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Layers::gather(None, env.collect::<Vec<_>>())
            .parse()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_outbound_message_receiver_is_off_by_default() {
        let cfg = parse(&[]).unwrap();
        assert!(cfg.inbound.salesforce_org_id.is_empty());
        assert!(cfg.inbound.salesforce_outbound_token.is_none());
    }

    #[test]
    fn org_id_and_token_are_checked_and_the_token_is_never_repeated() {
        let cfg = parse(&[
            ("SYNCROOT_SALESFORCE_ORG_ID", "00D5e000000KQ2eEAG"),
            (
                "SYNCROOT_SALESFORCE_OUTBOUND_TOKEN",
                "Tok_0123456789-abcdef",
            ),
        ])
        .unwrap();
        assert_eq!(cfg.inbound.salesforce_org_id, "00D5e000000KQ2eEAG");
        assert!(!format!("{cfg:?}").contains("Tok_0123456789-abcdef"));
        for (org, token) in [
            ("001000000000001", "short"),
            ("00D5e000000KQ2e!", "has/slash-0123456789"),
        ] {
            let errs = parse(&[
                ("SYNCROOT_SALESFORCE_ORG_ID", org),
                ("SYNCROOT_SALESFORCE_OUTBOUND_TOKEN", token),
            ])
            .unwrap_err();
            assert!(errs.contains("SYNCROOT_SALESFORCE_ORG_ID"), "{errs}");
            assert!(
                errs.contains("SYNCROOT_SALESFORCE_OUTBOUND_TOKEN"),
                "{errs}"
            );
            assert!(!errs.contains(token), "{errs}");
        }
    }
}
