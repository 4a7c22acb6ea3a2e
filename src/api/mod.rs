//! The REST API: routes, shared state, and the OpenAPI document generated from the handlers.
//!
//! Every route is registered through `utoipa_axum`, so a route cannot be served without being
//! in the spec. `/contacts` routes sit behind the bearer-key middleware in the contacts area
//! (scope read for GET, write otherwise), `/dlq` (the dead-letter admin API), `/admin/audit`,
//! `/admin/subscriptions` and `/admin/jobs` behind the same middleware in the admin area (scope admin); each key is held to its own
//! limits there. Webhook receivers verify signatures instead; operations routes (health,
//! readiness, `/metrics`, the document) are open. Every request is counted and timed by its
//! route template (`metrics::track`).

pub mod accept;
pub mod audit;
pub mod auth;
pub mod changes;
pub mod contacts;
pub mod dlq;
pub mod docs;
pub mod extract;
pub mod health;
pub mod history;
pub mod jobs;
pub mod limits;
pub mod observe;
pub mod outbound_message;
pub mod problem;
pub mod schema;
pub mod subscriptions;
pub mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use sqlx::PgPool;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi as Spec, ServerBuilder};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::queue::publisher::Publisher;
use auth::{Area, Grant, Keys};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub db: PgPool,
    pub publisher: Publisher,
    /// Accepts writes in groups (`intake::group`).
    pub accept: crate::intake::group::GroupCommit<accept::Accept>,
    pub max_body_bytes: usize,
    pub idempotency_ttl: Duration,
    /// The enabled CRMs, each shown in a contact's `sync` section.
    pub crms: Vec<crate::domain::Crm>,
    /// The rendered OpenAPI document, served at `/openapi.json`.
    pub spec: Arc<String>,
    /// Webhook receivers' settings.
    pub inbound: Arc<crate::config::InboundConfig>,
    /// The `client=` name SyncRoot writes to Salesforce with (its change events' origin).
    pub salesforce_client_name: String,
    /// Subscription URLs may be `http://` to any host (`allow_insecure_crms`).
    pub allow_insecure_urls: bool,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "SyncRoot",
        description = "Keeps contacts consistent between your application, Salesforce and HubSpot. \
                       Writes are queued and answered with 202 once durably accepted; errors are \
                       application/problem+json (RFC 9457).",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "contacts", description = "Create, read, update and delete contacts"),
        (name = "dead-letters", description = "The dead-letter queue: what could not be delivered, to inspect, replay or discard (admin key)"),
        (name = "admin", description = "Push subscriptions to the change feed, admin jobs (the drift check), and the admin audit log: every replay, discard, subscription change and job, by whom (admin key)"),
        (name = "webhooks", description = "Change notifications from the CRMs, verified by the CRM's signature, or for Salesforce Outbound Messages by org id and secret path (no API key)"),
        (name = "operations", description = "Health, readiness and this document")
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, spec: &mut Spec) {
        let components = spec.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some(
            "A key from SYNCROOT_API_KEYS (scopes read and write) or SYNCROOT_READ_KEYS (scope \
             read only). Each operation names the scope it needs; a key without it gets 403. \
             Each key has its own rate and in-flight limits (429 with Retry-After)."
                .into(),
        );
        components.add_security_scheme(Area::Contacts.scheme(), SecurityScheme::Http(http));
        let mut admin = Http::new(HttpAuthScheme::Bearer);
        admin.description = Some(
            "An admin key from SYNCROOT_ADMIN_KEYS (scope admin: /dlq and /admin/… only)".into(),
        );
        components.add_security_scheme(Area::Admin.scheme(), SecurityScheme::Http(admin));
        spec.servers = Some(vec![ServerBuilder::new().url("/").build()]);
    }
}

fn routes(keys: Arc<Keys>) -> (Router<AppState>, Spec) {
    let gate =
        |area| axum::middleware::from_fn_with_state((keys.clone(), area), auth::require_scope);
    let contacts = OpenApiRouter::new()
        .routes(routes!(contacts::create, contacts::list))
        .routes(routes!(
            contacts::get,
            contacts::replace,
            contacts::patch,
            contacts::delete
        ))
        .routes(routes!(history::history))
        .routes(routes!(changes::changes))
        .route_layer(gate(Area::Contacts));
    let admin = OpenApiRouter::new()
        .routes(routes!(dlq::list))
        .routes(routes!(dlq::get, dlq::discard_one))
        .routes(routes!(dlq::replay_one))
        .routes(routes!(dlq::replay_matching))
        .routes(routes!(dlq::discard_matching))
        .routes(routes!(audit::list))
        .routes(routes!(subscriptions::create, subscriptions::list))
        .routes(routes!(
            subscriptions::get,
            subscriptions::update,
            subscriptions::delete
        ))
        .routes(routes!(subscriptions::rotate_secret))
        .routes(routes!(subscriptions::replay))
        .routes(routes!(subscriptions::deliveries))
        .routes(routes!(jobs::create, jobs::list))
        .routes(routes!(jobs::get))
        .routes(routes!(jobs::cancel))
        .route_layer(gate(Area::Admin));
    let receivers = OpenApiRouter::new()
        .routes(routes!(webhooks::hubspot))
        .routes(routes!(webhooks::salesforce))
        .routes(routes!(outbound_message::receive))
        .routes(routes!(outbound_message::receive_with_token));
    let operations = OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(health::openapi_json))
        .routes(routes!(docs::docs));
    let (router, mut spec) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(contacts)
        .merge(admin)
        .merge(receivers)
        .merge(operations)
        .split_for_parts();
    schema::state_scopes(&mut spec);
    (router, spec)
}

/// The OpenAPI document, as committed in `openapi/openapi.json`.
pub fn openapi() -> Spec {
    routes(Arc::new(Keys::none())).1
}

/// Renders the document the way it is committed (pretty JSON, trailing newline).
pub fn openapi_pretty() -> String {
    let mut s = openapi().to_pretty_json().unwrap_or_default();
    s.push('\n');
    s
}

/// The complete application router.
pub fn router(db: PgPool, publisher: Publisher, config: &crate::config::Config) -> Router {
    let cfg = &config.api;
    let crms = &config.delivery.crms;
    if cfg.admin_keys.is_empty() {
        tracing::info!(
            "no admin keys configured (SYNCROOT_ADMIN_KEYS): /dlq refuses every request"
        );
    }
    let keys = Keys::new(&cfg.read_keys, &cfg.keys, &cfg.admin_keys, cfg.key_limits);
    // What an operator matches the key ids of the audit log and its events against.
    tracing::info!(
        target: "audit", event = "keys", read = ?keys.ids(Grant::ReadOnly),
        read_write = ?keys.ids(Grant::ReadWrite), admin = ?keys.ids(Grant::Admin),
        rate_per_sec = cfg.key_limits.rate_per_sec, burst = cfg.key_limits.burst,
        max_in_flight = cfg.key_limits.max_in_flight, "API keys by id and their limits"
    );
    let (routes, spec) = routes(Arc::new(keys));
    let state = AppState {
        accept: crate::intake::group::GroupCommit::start(db.clone(), publisher.clone(), cfg.accept),
        db,
        publisher,
        max_body_bytes: cfg.max_body_bytes,
        idempotency_ttl: cfg.idempotency_ttl,
        crms: crms.to_vec(),
        spec: Arc::new(spec.to_pretty_json().unwrap_or_default()),
        inbound: Arc::new(config.inbound.clone()),
        salesforce_client_name: config.delivery.salesforce.client_name.clone(),
        allow_insecure_urls: config.insecure.crms,
    };
    routes
        .fallback(problem::not_found)
        .method_not_allowed_fallback(problem::method_not_allowed)
        .layer(axum::middleware::from_fn(crate::metrics::track))
        .layer(axum::middleware::from_fn(observe::observe))
        .with_state(state)
}
