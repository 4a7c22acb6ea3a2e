//! Production roles refuse development settings, naming each; `syncroot all` is a development
//! mode on loopback only. Runs the real binary with only the environment given.

use std::process::Output;

const BIN: &str = env!("CARGO_BIN_EXE_syncroot");
const KEY: &str = "prod-key-0123456789abcdef";

/// Safe settings for every check; each test replaces what it is about.
fn safe() -> Vec<(&'static str, String)> {
    vec![
        ("SYNCROOT_API_LISTEN", "127.0.0.1:0".into()),
        ("SYNCROOT_API_KEYS", KEY.into()),
        (
            "SYNCROOT_DATABASE_URL",
            "postgres://sync:pw@db.invalid:5432/syncroot?sslmode=verify-full&sslrootcert=/ca.pem"
                .into(),
        ),
        (
            "SYNCROOT_AMQP_URL",
            "amqp://sync:pw@rabbit.invalid:5672/%2f".into(),
        ),
        ("SYNCROOT_HUBSPOT_BASE_URL", "https://api.hubapi.com".into()),
        ("SYNCROOT_HUBSPOT_TOKEN", "pat-na1-real".into()),
        (
            "SYNCROOT_SALESFORCE_LOGIN_URL",
            "https://example.my.salesforce.com".into(),
        ),
        ("SYNCROOT_SALESFORCE_CLIENT_ID", "real-client-id".into()),
        ("SYNCROOT_SALESFORCE_CLIENT_SECRET", "real-secret".into()),
    ]
}

/// Runs `syncroot <role>` with `env` only, expecting it to refuse; returns its stderr.
fn refused(role: &str, env: &[(&str, String)]) -> String {
    let Output { status, stderr, .. } = std::process::Command::new(BIN)
        .arg(role)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .expect("syncroot runs");
    let text = String::from_utf8_lossy(&stderr).into_owned();
    assert!(!status.success(), "{role} started: {text}");
    text
}

fn with(
    mut env: Vec<(&'static str, String)>,
    key: &'static str,
    value: &str,
) -> Vec<(&'static str, String)> {
    env.retain(|(k, _)| *k != key);
    env.push((key, value.into()));
    env
}

#[test]
fn a_production_role_refuses_each_development_default_naming_it() {
    let cases: &[(&str, &str, &str, &str)] = &[
        ("api", "SYNCROOT_API_KEYS", "", "SYNCROOT_API_KEYS"),
        (
            "forwarder",
            "SYNCROOT_AMQP_URL",
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            "SYNCROOT_AMQP_URL: RabbitMQ's development default credential guest:guest",
        ),
        (
            "dlq-worker",
            "SYNCROOT_AMQP_URL",
            "amqp://127.0.0.1:5672/%2f",
            "SYNCROOT_AMQP_URL",
        ),
        (
            "api",
            "SYNCROOT_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/syncroot",
            "SYNCROOT_DATABASE_URL: Postgres URL without a password",
        ),
        (
            "subscriptions",
            "SYNCROOT_DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/syncroot",
            "SYNCROOT_DATABASE_URL: Postgres URL without a password",
        ),
        (
            "delivery",
            "SYNCROOT_HUBSPOT_TOKEN",
            "pat-na1-sandbox-token",
            "SYNCROOT_HUBSPOT_TOKEN: the sandbox's token",
        ),
        (
            "webhooks",
            "SYNCROOT_HUBSPOT_BASE_URL",
            "http://127.0.0.1:8091",
            "SYNCROOT_HUBSPOT_BASE_URL: a loopback address",
        ),
        (
            "delivery",
            "SYNCROOT_SALESFORCE_LOGIN_URL",
            "http://localhost:8092",
            "SYNCROOT_SALESFORCE_LOGIN_URL: a loopback address",
        ),
        (
            "delivery",
            "SYNCROOT_SALESFORCE_CLIENT_ID",
            "sandbox-sf-client-id",
            "SYNCROOT_SALESFORCE_CLIENT_ID: the sandbox's client id",
        ),
        (
            "webhooks",
            "SYNCROOT_SALESFORCE_CLIENT_SECRET",
            "sandbox-sf-client-secret",
            "SYNCROOT_SALESFORCE_CLIENT_SECRET: the sandbox's client secret",
        ),
    ];
    for (role, key, value, needle) in cases {
        let text = refused(role, &with(safe(), key, value));
        assert!(
            text.contains("production mode (1 problem(s))"),
            "{role} {key}: {text}"
        );
        assert!(text.contains(needle), "{role} {key}: {text}");
    }
}

#[test]
fn the_built_in_defaults_are_refused_all_at_once_and_secrets_are_not_echoed() {
    let text = refused("delivery", &[]);
    for needle in [
        "SYNCROOT_AMQP_URL",
        "SYNCROOT_DATABASE_URL",
        "SYNCROOT_HUBSPOT_BASE_URL",
        "SYNCROOT_HUBSPOT_TOKEN",
        "SYNCROOT_SALESFORCE_LOGIN_URL",
        "SYNCROOT_SALESFORCE_CLIENT_ID",
        "SYNCROOT_SALESFORCE_CLIENT_SECRET",
    ] {
        assert!(text.contains(needle), "{needle}: {text}");
    }
    for secret in [
        "pat-na1-sandbox-token",
        "sandbox-sf-client-secret",
        "guest:guest@",
    ] {
        assert!(!text.contains(secret), "{secret} echoed: {text}");
    }
}

#[test]
fn each_opt_out_lifts_only_its_own_refusal() {
    let mut env = vec![
        ("SYNCROOT_ALLOW_INSECURE_BROKER", "true".to_owned()),
        ("SYNCROOT_ALLOW_INSECURE_DATABASE", "true".to_owned()),
    ];
    // Everything else at its default: only the sandbox CRM settings are left to refuse.
    let text = refused("delivery", &env);
    assert!(!text.contains("SYNCROOT_AMQP_URL"), "{text}");
    assert!(!text.contains("SYNCROOT_DATABASE_URL"), "{text}");
    assert!(text.contains("SYNCROOT_HUBSPOT_TOKEN"), "{text}");
    env.push(("SYNCROOT_ALLOW_INSECURE_CRMS", "true".to_owned()));
    // The api role needs no CRM settings, but keys, which no opt-out replaces.
    let text = refused("api", &env);
    assert!(text.contains("production mode (1 problem(s))"), "{text}");
    assert!(text.contains("SYNCROOT_API_KEYS"), "{text}");
}

#[test]
fn the_development_mode_binds_to_loopback_only() {
    let text = refused("all", &[("SYNCROOT_API_LISTEN", "0.0.0.0:0".into())]);
    assert!(
        text.contains("SYNCROOT_API_LISTEN: 0.0.0.0:0 is not a loopback address"),
        "{text}"
    );
}
