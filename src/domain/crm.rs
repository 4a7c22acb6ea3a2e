//! `Crm`: the CRMs SyncRoot delivers to.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Crm {
    Hubspot,
    Salesforce,
}

impl Crm {
    pub const ALL: [Crm; 2] = [Crm::Hubspot, Crm::Salesforce];

    /// The lower-case name used in configuration, queue names, the links table and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Crm::Hubspot => "hubspot",
            Crm::Salesforce => "salesforce",
        }
    }
}

impl fmt::Display for Crm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Crm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Crm::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| format!("unknown CRM '{s}' (known: hubspot, salesforce)"))
    }
}
