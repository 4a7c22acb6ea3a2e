//! Every configuration key: its name, default, whether it is secret, and what it means.
//! `syncroot config` and the README's configuration table are generated from this table.

/// One configuration key.
#[derive(Debug)]
pub struct Key {
    /// Name in the file (`[api] listen` is `api_listen`) and, upper-cased after `SYNCROOT_`,
    /// in the environment.
    pub name: &'static str,
    pub default: &'static str,
    pub secret: bool,
    pub help: &'static str,
}

const fn key(name: &'static str, default: &'static str, help: &'static str) -> Key {
    Key {
        name,
        default,
        secret: false,
        help,
    }
}
const fn secret(name: &'static str, default: &'static str, help: &'static str) -> Key {
    Key {
        name,
        default,
        secret: true,
        help,
    }
}

/// Every key SyncRoot reads.
pub const KEYS: &[Key] = &[
    key(
        "api_listen",
        "127.0.0.1:8080",
        "address the REST API listens on",
    ),
    secret(
        "api_keys",
        "",
        "comma-separated bearer keys that may read and write /contacts (scopes read, write; at least 16 characters each); `all` generates a development key when empty",
    ),
    secret(
        "read_keys",
        "",
        "comma-separated bearer keys that may only read /contacts and /changes (scope read: GET; other methods get 403); at least 16 characters each, distinct from the other lists",
    ),
    secret(
        "admin_keys",
        "",
        "comma-separated bearer keys for the /dlq admin API, /admin/audit, /admin/jobs, `syncroot dlq`, `syncroot drift` and `syncroot backfill` (scope admin, nothing else; at least 16 characters each, distinct from api_keys); `all` generates one when empty",
    ),
    key(
        "api_key_rate_per_sec",
        "500",
        "requests per second each key may make on average, once its burst is spent (per API process); more get 429 with Retry-After, other keys are unaffected",
    ),
    key(
        "api_key_burst",
        "1000",
        "requests each key may make at once above its rate (the size of its token bucket)",
    ),
    key(
        "api_key_max_in_flight",
        "64",
        "requests of one key handled at once (per API process); more get 429 with Retry-After. Below http_max_in_flight, so no single key takes every slot",
    ),
    key(
        "api_max_body_bytes",
        "65536",
        "largest accepted request body, in bytes (larger: 413)",
    ),
    key(
        "api_publish_timeout_ms",
        "5000",
        "how long the API waits for RabbitMQ's publisher confirm before answering 503",
    ),
    key(
        "api_accept_lanes",
        "2",
        "writes accepted side by side: each lane takes every write waiting for it into one transaction and one batch of publisher confirms (group commit), and holds one pooled database connection while it works (two under load: the next batch's transaction is begun while the lane waits for the broker); a contact's writes always share a lane",
    ),
    key(
        "api_accept_batch_max",
        "256",
        "most writes one lane accepts in one transaction",
    ),
    key(
        "api_idempotency_ttl_hours",
        "24",
        "how long an Idempotency-Key is remembered",
    ),
    secret(
        "database_url",
        "postgres://postgres@127.0.0.1:5432/syncroot",
        "Postgres connection URL; one to this machine (127.0.0.1, ::1, localhost) that names no sslmode connects without TLS",
    ),
    key(
        "database_max_connections",
        "32",
        "size of each process's Postgres connection pool",
    ),
    key(
        "database_statement_timeout_ms",
        "30000",
        "Postgres statement_timeout of every pooled connection: a statement running longer is cancelled (0: none). Migrations run without it",
    ),
    key(
        "database_lock_timeout_ms",
        "10000",
        "Postgres lock_timeout of every pooled connection: a statement waiting longer for a lock fails and is retried like other transient errors (0: none); longer than api_publish_timeout_ms, since a write holds its contact's row lock across the publisher confirm",
    ),
    secret(
        "amqp_url",
        "amqp://guest:guest@127.0.0.1:5672/%2f",
        "RabbitMQ (AMQP 0-9-1) connection URL; `amqps://…?cacertfile=<PEM file>` trusts a private CA for the broker's certificate",
    ),
    key(
        "queue_prefix",
        "syncroot",
        "prefix of every exchange and queue name, so several installations can share a broker",
    ),
    key(
        "queue_shards",
        "8",
        "number of contact-change queues; a contact always maps to the same one (changing it reorders in-flight changes)",
    ),
    key(
        "queue_pack_changes",
        "true",
        "send the changes a batch accepts for one queue, and the delivery tasks a forwarder hands on together for one CRM, as one message; set false while forwarders or delivery workers older than packs still run (upgrades)",
    ),
    key(
        "queue_delivery_limit",
        "20",
        "deliveries of one message before RabbitMQ dead-letters it (poison-message backstop)",
    ),
    key(
        "forwarder_prefetch",
        "64",
        "unacknowledged messages per shard a forwarder holds",
    ),
    key(
        "forwarder_concurrency",
        "64",
        "changes a forwarder process applies at once",
    ),
    key(
        "forwarder_linger_ms",
        "5",
        "a change that arrives within this long of the last group of changes is part of a stream: its group waits this long for more before it is applied in one transaction; a change after a quiet spell never waits (0: never wait)",
    ),
    key(
        "shutdown_grace_secs",
        "30",
        "on SIGTERM/SIGINT, how long in-flight work may take before the process exits anyway",
    ),
    key(
        "crms",
        "hubspot,salesforce",
        "CRMs to deliver to, comma-separated (hubspot, salesforce); empty delivers nowhere",
    ),
    key(
        "delivery_batching",
        "true",
        "group writes into the CRMs' batch endpoints (false: one call per contact per CRM)",
    ),
    key(
        "delivery_linger_ms",
        "20",
        "how long a delivery worker waits for the next change before sending a partial batch",
    ),
    key(
        "delivery_linger_max_ms",
        "2000",
        "longest a batch waits for more changes: when changes lately came fast enough to fill a batch within this long, a batch waits until full (at most this long), so steady streams, even uneven ones, go out in full batches and spare the CRMs' quotas; otherwise it waits delivery_linger_ms past its latest change (a lone change waits one linger); below delivery_linger_ms counts as it",
    ),
    key(
        "delivery_concurrency",
        "1",
        "CRM calls a delivery worker makes at once per CRM, each for other contacts (a contact is in one call at a time, so its order holds); all within the CRM's quota. Worth raising when calls are slow",
    ),
    key(
        "address_index_trust_secs",
        "3600",
        "how long what a backfill's complete read of a CRM found at an address (its record, or none) is used to link or create a contact's record there without a matching query; 0: always ask the CRM",
    ),
    key(
        "delivery_prefetch",
        "1000",
        "unacknowledged deliveries a delivery worker holds per CRM (at least a batch)",
    ),
    key(
        "delivery_retry_tiers",
        "1s,5s,30s,2m,10m",
        "waits of the retry tiers (ms, s, m, h): a delivery that failed for a reason time can fix waits in the first tier, then the next; after the last it goes to the dead-letter queue. A CRM's Retry-After picks a longer tier, never beyond the last",
    ),
    key(
        "dlq_retry_min_ms",
        "60000",
        "the dead-letter worker's first wait before sending a delivery that exhausted its tiers through again (doubling, with jitter)",
    ),
    key(
        "dlq_retry_max_ms",
        "1800000",
        "the dead-letter worker's longest wait between rounds",
    ),
    key(
        "dlq_retry_times",
        "6",
        "rounds the dead-letter worker gives a delivery that keeps failing before parking it (0: park at once)",
    ),
    secret(
        "alert_url",
        "",
        "where alerts are POSTed as JSON, Slack incoming-webhook compatible ({\"text\": …}); empty: no alerts",
    ),
    key(
        "alert_interval_secs",
        "300",
        "at most one alert per this many seconds; what happens meanwhile is summed up in the next one",
    ),
    key(
        "subscription_poll_ms",
        "1000",
        "how often the subscriptions role looks for new change-feed entries for subscriptions that are caught up, in ms",
    ),
    key(
        "subscription_timeout_ms",
        "10000",
        "timeout of one delivery to a subscriber (connecting, sending, and its answer), in ms",
    ),
    key(
        "subscription_retry_min_ms",
        "1000",
        "the first wait before a subscription's failed delivery is tried again (doubling, with jitter), in ms",
    ),
    key(
        "subscription_retry_max_ms",
        "600000",
        "the longest wait between a subscription's delivery attempts, in ms",
    ),
    key(
        "subscription_disable_after_secs",
        "432000",
        "a subscription whose deliveries have failed without a success for this long is disabled with a reason (an admin re-enables it; it resumes from its cursor)",
    ),
    key(
        "subscription_concurrency",
        "4",
        "subscriptions one subscriptions process delivers to at once (each one's deliveries stay sequential)",
    ),
    key(
        "subscription_log_retention_hours",
        "168",
        "how long each delivery attempt is kept in a subscription's delivery log",
    ),
    key(
        "webhook_public_url",
        "",
        "URL prefix the CRMs call SyncRoot's webhooks at, as they see it (https://sync.example.com behind an ingress); HubSpot signs the full URL. Empty: http:// and the address the API is bound to",
    ),
    secret(
        "hubspot_webhook_secrets",
        "",
        "comma-separated HubSpot app client secrets webhooks are signed with (two during a rotation); empty refuses every HubSpot webhook",
    ),
    key(
        "hubspot_webhook_signatures",
        "v3",
        "HubSpot signature versions accepted: v3 (timestamped); add v1 or v2 only for apps that send no v3 (no replay protection)",
    ),
    key(
        "hubspot_app_id",
        "",
        "SyncRoot's HubSpot app id: webhook events with changeSource INTEGRATION and this sourceId are SyncRoot's own writes",
    ),
    secret(
        "salesforce_webhook_secrets",
        "",
        "comma-separated secrets of Salesforce's signed change notifications (docs/salesforce-webhooks.md); empty refuses every one",
    ),
    key(
        "salesforce_integration_user_id",
        "",
        "Salesforce user id SyncRoot writes as: change events committed by it are SyncRoot's own writes",
    ),
    key(
        "salesforce_org_id",
        "",
        "Organization Id (00D…, 15 or 18 characters) of the Salesforce org whose Outbound Messages are accepted (docs/salesforce-outbound-messages.md); empty: the Outbound Message receiver is off (404)",
    ),
    secret(
        "salesforce_outbound_token",
        "",
        "secret last path segment of the Outbound Message receiver, /webhooks/salesforce/outbound/{token} (at least 16 letters, digits, - or _); empty: the receiver is /webhooks/salesforce/outbound",
    ),
    key(
        "webhook_window_secs",
        "300",
        "largest difference between a webhook's signed timestamp and the clock, in seconds (older or newer: 401)",
    ),
    key(
        "conflict_owners",
        "",
        "fields one side always wins, as field=owner pairs (owners: api, hubspot, salesforce), e.g. email=api,job_title=hubspot; other fields: last writer wins",
    ),
    key(
        "conflict_tie_break",
        "api,salesforce,hubspot",
        "who wins when two changes to a field carry the same time, first wins",
    ),
    key(
        "inbound_deletes",
        "mark",
        "a record deleted in a CRM: mark (the contact stays and SyncRoot stops writing it to that CRM until the record is restored there; its sync state says detached), propagate (the contact is deleted, and its records in the other CRMs) or ignore (the contact stays; SyncRoot's next write recreates the record)",
    ),
    key(
        "inbound_privacy_deletions",
        "erase",
        "a privacy deletion (GDPR) in a CRM: erase (the contact is deleted with its records in the other CRMs, and its values are removed from SyncRoot's tables and history) or delete (handled like any deletion, by inbound_deletes)",
    ),
    key(
        "poll_interval_secs",
        "300",
        "how often each CRM is asked for records modified since the last poll, to catch changes whose webhooks were lost (0: never)",
    ),
    key(
        "drift_check_interval_secs",
        "0",
        "queue a drift check (POST /admin/jobs kind drift: compare every linked CRM record with what SyncRoot holds) when none was started within this many seconds; run by the webhooks role (0: never)",
    ),
    key(
        "drift_check_repair",
        "false",
        "whether scheduled drift checks repair what they find (each differing record resolved by the conflict policy as a change from its CRM)",
    ),
    key(
        "job_lease_secs",
        "30",
        "how long a runner's claim on an admin job holds without a heartbeat; a job whose runner died is resumed from its checkpoint by another after this",
    ),
    key("crm_timeout_ms", "30000", "timeout of one CRM API call"),
    key(
        "hubspot_base_url",
        "http://127.0.0.1:8091",
        "HubSpot API base URL (https://api.hubapi.com; default: the local sandbox)",
    ),
    secret(
        "hubspot_token",
        "pat-na1-sandbox-token",
        "HubSpot private-app access token",
    ),
    key(
        "hubspot_id_property",
        "email",
        "HubSpot property identifying a contact before it is linked: email or a unique custom property",
    ),
    key(
        "hubspot_field_map",
        "",
        "overrides of the HubSpot field mapping: field=property pairs, '-' leaves a field out (e.g. job_title=jobtitle,company=-)",
    ),
    key(
        "hubspot_rate_limit",
        "100",
        "HubSpot requests per rolling 10 s SyncRoot allows itself (HubSpot's headers can only lower it)",
    ),
    key(
        "salesforce_login_url",
        "http://127.0.0.1:8092",
        "Salesforce My Domain URL where /services/oauth2/token is (default: the local sandbox)",
    ),
    key(
        "salesforce_client_id",
        "sandbox-sf-client-id",
        "Salesforce connected app consumer key (client-credentials flow)",
    ),
    secret(
        "salesforce_client_secret",
        "sandbox-sf-client-secret",
        "Salesforce connected app consumer secret",
    ),
    key(
        "salesforce_api_version",
        "62.0",
        "Salesforce REST API version",
    ),
    key(
        "salesforce_external_id_field",
        "SyncRoot_Id__c",
        "Contact external-id field (unique, External ID) holding SyncRoot's contact id",
    ),
    key(
        "salesforce_field_map",
        "",
        "overrides of the Salesforce field mapping: field=Field pairs, '-' leaves a field out (e.g. company=Company__c)",
    ),
    key(
        "salesforce_last_name_placeholder",
        "[not provided]",
        "LastName sent for contacts without a last name (Salesforce requires one)",
    ),
    key(
        "salesforce_match_by_email",
        "true",
        "link an existing Salesforce Contact with the same e-mail instead of creating a second one (one query per batch of new contacts)",
    ),
    key(
        "salesforce_client_name",
        "syncroot",
        "client name sent in Sforce-Call-Options, so change events name SyncRoot as the writer",
    ),
    key(
        "salesforce_rate_limit_per_second",
        "0",
        "Salesforce requests per second SyncRoot allows itself (0: unlimited; Salesforce limits per day)",
    ),
    key(
        "salesforce_bulk_read_threshold",
        "100000",
        "a full read of Salesforce (a backfill) uses a Bulk API 2.0 query job when the org holds more live Contacts than this, SOQL pages of 2,000 otherwise (0: always Bulk API)",
    ),
    key(
        "salesforce_bulk_read_page_records",
        "10000",
        "records per Bulk API 2.0 results set a full read of Salesforce asks for (maxRecords)",
    ),
    key(
        "health_listen",
        "",
        "where a worker process (forwarder, delivery, webhooks, dlq-worker, subscriptions) serves /healthz, /readyz and /metrics (e.g. 0.0.0.0:9090); empty: none of them",
    ),
    key(
        "http_header_timeout_ms",
        "10000",
        "every listener (API, health probes): a connection must send a complete request head within this many ms of the server waiting for one, also between requests on a kept-alive connection; slower clients are disconnected",
    ),
    key(
        "http_request_timeout_ms",
        "30000",
        "every listener: a request (its body read and its response produced) taking longer is answered 503",
    ),
    key(
        "http_idle_timeout_ms",
        "60000",
        "every listener: a connection with nothing read or written for this many ms is closed (longer than http_request_timeout_ms)",
    ),
    key(
        "http_max_connections",
        "1024",
        "every listener: most connections open at once; beyond it new connections wait to be accepted",
    ),
    key(
        "http_max_in_flight",
        "256",
        "every listener: most requests handled at once; beyond it a request is answered 503 with Retry-After",
    ),
    key(
        "allow_insecure_broker",
        "false",
        "let a production role (api, forwarder, delivery, webhooks, dlq-worker, subscriptions) use RabbitMQ as guest:guest; for local testing only",
    ),
    key(
        "allow_insecure_database",
        "false",
        "let a production role use a Postgres URL without a password; for local testing only",
    ),
    key(
        "allow_plaintext_database",
        "false",
        "let any process reach a Postgres that is not on loopback without TLS (sslmode other than require, verify-ca, verify-full); otherwise refused",
    ),
    key(
        "allow_insecure_crms",
        "false",
        "let the delivery and webhooks roles use the CRM sandboxes' addresses and credentials (loopback URLs, sandbox token and client id/secret), and CRM, webhook and subscription URLs be `http://` to any host (the sandboxes on a Compose network); for local testing only",
    ),
    key(
        "log",
        "info",
        "log filter (tracing EnvFilter syntax, e.g. `info,syncroot=debug`)",
    ),
    key(
        "log_format",
        "text",
        "`text` (for a terminal) or `json` (one object a line, for a log collector; the Helm chart sets it)",
    ),
    key(
        "otlp_endpoint",
        "",
        "OpenTelemetry traces: base URL of an OTLP/HTTP collector (e.g. `http://otel-collector:4318`); spans are POSTed as protobuf to `<url>/v1/traces`. Empty: no traces. Unset or empty, the standard `OTEL_EXPORTER_OTLP_ENDPOINT` is read",
    ),
    key(
        "otlp_service_name",
        "syncroot",
        "`service.name` of the exported spans (each role adds `syncroot.role`). Unset or empty, the standard `OTEL_SERVICE_NAME` is read",
    ),
];

/// Standard variables read as a key when its `SYNCROOT_*` variable is unset or empty: the
/// OpenTelemetry SDK's own names (<https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/>),
/// so a collector's usual wiring works unchanged.
pub const STANDARD_ENV: &[(&str, &str)] = &[
    ("OTEL_EXPORTER_OTLP_ENDPOINT", "otlp_endpoint"),
    ("OTEL_SERVICE_NAME", "otlp_service_name"),
];
