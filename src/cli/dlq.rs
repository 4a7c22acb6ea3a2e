//! `syncroot dlq`: a client of the admin API (`/dlq`) of a running SyncRoot, over HTTP.
//!
//! It goes through the API rather than the database so that it works from anywhere the API is
//! reachable, needs only an admin key, and replays exactly as the API does. Output is a table
//! for people and, with `--json`, the API's JSON for scripts.

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;

use super::dlq_client::Client;
use super::dlq_render;
use crate::config::Config;

#[derive(Debug, Args)]
pub struct DlqArgs {
    /// Base URL of the SyncRoot API [default: http://<api_listen>].
    #[arg(long, global = true, value_name = "URL")]
    pub url: Option<String>,
    /// Admin key [default: the first of admin_keys (SYNCROOT_ADMIN_KEYS)].
    #[arg(long, global = true, value_name = "KEY")]
    pub key: Option<String>,
    #[command(subcommand)]
    pub command: DlqCommand,
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List entries, oldest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// Entries per page (1-500; the API's default is 100).
        #[arg(long)]
        limit: Option<u16>,
        /// Follow the pages to the end instead of stopping after the first.
        #[arg(long)]
        all_pages: bool,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one entry with its error history (and a kept message's body).
    Show {
        /// Entry id.
        id: String,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send entries through the normal delivery path again: one by id, those matching the
    /// filters, or every one with --all.
    Replay(Selection),
    /// Delete entries without sending them: one by id, those matching the filters, or every
    /// one with --all.
    Discard(Selection),
}

/// Which entries a replay or discard applies to.
#[derive(Debug, Args)]
pub struct Selection {
    /// Entry id.
    pub id: Option<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Every entry (required when neither an id nor a filter is given).
    #[arg(long)]
    pub all: bool,
}

/// Filters; they combine with AND.
#[derive(Debug, Args, Default)]
pub struct FilterArgs {
    /// Only entries of this CRM.
    #[arg(long, value_parser = ["hubspot", "salesforce"])]
    pub crm: Option<String>,
    /// Only entries whose last error has this code.
    #[arg(long, value_name = "CODE")]
    pub error_code: Option<String>,
    /// Only entries with this status.
    #[arg(long, value_parser = ["retrying", "replayed", "parked"])]
    pub status: Option<String>,
    /// Only entries of this contact.
    #[arg(long, value_name = "UUID")]
    pub contact: Option<String>,
    /// Only entries that last failed at or after this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only entries that last failed before this time (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
}

impl FilterArgs {
    /// The filters as API query parameters.
    fn pairs(&self) -> Vec<(&'static str, String)> {
        [
            ("crm", &self.crm),
            ("error_code", &self.error_code),
            ("status", &self.status),
            ("contact_id", &self.contact),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k, v)))
        .collect()
    }
}

/// Runs one `syncroot dlq` command.
pub async fn run(cfg: &Config, args: DlqArgs) -> anyhow::Result<()> {
    let client = Client::new(cfg, args.url, args.key)?;
    match args.command {
        DlqCommand::List {
            filter,
            limit,
            all_pages,
            json,
        } => list(&client, &filter, limit, all_pages, json).await,
        DlqCommand::Show { id, json } => {
            let entry = client
                .call(Method::GET, &format!("/dlq/{}", entry_id(&id)?), &[])
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&entry)?);
            } else {
                print!("{}", dlq_render::entry(&entry));
            }
            Ok(())
        }
        DlqCommand::Replay(sel) => {
            let (path, query) = match target(&sel)? {
                Some(id) => (format!("/dlq/{id}/replay"), Vec::new()),
                None => ("/dlq/replay".to_owned(), sel.filter.pairs()),
            };
            let out = client.call(Method::POST, &path, &query).await?;
            println!("replayed {}", count(&out["replayed"]));
            if out["skipped"].as_u64().is_some_and(|n| n > 0) {
                println!(
                    "left {} as they were: they cannot be sent anywhere (discard them, or fix the cause and replay again)",
                    count(&out["skipped"])
                );
            }
            Ok(())
        }
        DlqCommand::Discard(sel) => match target(&sel)? {
            Some(id) => {
                client
                    .call(Method::DELETE, &format!("/dlq/{id}"), &[])
                    .await?;
                println!("discarded {id}");
                Ok(())
            }
            None => {
                let mut query = sel.filter.pairs();
                if sel.all {
                    query.push(("all", "true".into()));
                }
                let out = client.call(Method::POST, "/dlq/discard", &query).await?;
                println!("discarded {}", count(&out["discarded"]));
                Ok(())
            }
        },
    }
}

async fn list(
    client: &Client,
    filter: &FilterArgs,
    limit: Option<u16>,
    all_pages: bool,
    json: bool,
) -> anyhow::Result<()> {
    let mut query = filter.pairs();
    if let Some(n) = limit {
        query.push(("limit", n.to_string()));
    }
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let next = loop {
        let mut q = query.clone();
        if let Some(c) = &cursor {
            q.push(("cursor", c.clone()));
        }
        let mut page = client.call(Method::GET, "/dlq", &q).await?;
        if let Some(Value::Array(page_items)) = page.get_mut("items").map(Value::take) {
            items.extend(page_items);
        }
        let next = page["next_cursor"].as_str().map(str::to_owned);
        match next {
            Some(c) if all_pages => cursor = Some(c),
            other => break other,
        }
    };
    if json {
        let page = serde_json::json!({ "items": items, "next_cursor": next });
        println!("{}", serde_json::to_string_pretty(&page)?);
    } else {
        print!("{}", dlq_render::table(&items));
        if next.is_some() {
            eprintln!("(more entries: add --all-pages, or narrow the filters)");
        }
    }
    Ok(())
}

/// The id a replay or discard names, or `None` for a bulk one; refuses an empty selection.
fn target(sel: &Selection) -> anyhow::Result<Option<String>> {
    let filtered = !sel.filter.pairs().is_empty();
    match &sel.id {
        Some(_) if filtered || sel.all => {
            bail!("give either an entry id or filters/--all, not both")
        }
        Some(id) => Ok(Some(entry_id(id)?)),
        None if !filtered && !sel.all => {
            bail!("give an entry id, at least one filter, or --all for every entry")
        }
        None => Ok(None),
    }
}

/// An entry id is a UUID; checking here keeps anything else out of the request path.
fn entry_id(id: &str) -> anyhow::Result<String> {
    uuid::Uuid::parse_str(id.trim())
        .map(|u| u.to_string())
        .with_context(|| format!("'{id}' is not an entry id (a UUID)"))
}

fn count(v: &Value) -> String {
    match v.as_u64() {
        Some(1) => "1 entry".into(),
        Some(n) => format!("{n} entries"),
        None => "an unknown number of entries".into(),
    }
}
