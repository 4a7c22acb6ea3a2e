//! `syncroot`: parse the command line, load configuration, start logging, dispatch.

use anyhow::Context as _;
use clap::Parser as _;
use syncroot::cli::{Cli, Command};
use syncroot::config;
use syncroot::secret::Secret;
use syncroot::{app, shutdown, telemetry};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("syncroot: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("syncroot: {e:#}");
            std::process::ExitCode::FAILURE
        }
    };
    // Once the work is done, a blocking task still running (a DNS look-up of a host whose
    // resolver does not answer, for a connection nobody waits for any more) does not hold the
    // exit, as dropping the runtime would.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Openapi => {
            print!("{}", syncroot::api::openapi_pretty());
            return Ok(());
        }
        Command::Config(args) if args.keys => {
            for name in config::env_names() {
                println!("{name}");
            }
            return Ok(());
        }
        Command::Config(_) => {
            print!(
                "{}",
                config::describe(&config::gather_process(cli.config.as_deref()))
            );
            return Ok(());
        }
        _ => {}
    }
    let layers = config::gather_process(cli.config.as_deref());
    let settings = config::shown(&layers);
    let cfg = layers.parse().map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(role) = production_role(&cli.command) {
        let problems = config::production_problems(&cfg, role);
        anyhow::ensure!(problems.is_empty(), "{}", config::refusal(role, &problems));
    }
    let telemetry = telemetry::start(&cfg.log, &cfg.trace, command_name(&cli.command))?;
    // `syncroot dlq`, `drift` and `backfill` are clients on an operator's terminal, not a process
    // to audit.
    if !matches!(
        cli.command,
        Command::Dlq(_) | Command::Drift(_) | Command::Backfill(_)
    ) {
        config::log_startup(command_name(&cli.command), &settings);
    }
    let result = dispatch(cli.command, cfg).await;
    // Spans still batched are exported before the process exits.
    let _ = tokio::task::spawn_blocking(move || telemetry.shutdown()).await;
    result
}

/// Runs a role or a command that needs the configuration.
async fn dispatch(command: Command, mut cfg: config::Config) -> anyhow::Result<()> {
    match command {
        Command::Migrate => syncroot::store::migrate(&cfg.database).await,
        Command::Api => {
            let stop = shutdown::on_signal();
            let api = app::start_api(&cfg, stop).await?;
            api.task.await.context("API task")
        }
        Command::Forwarder => {
            app::run_worker(&cfg, shutdown::on_signal(), |c, r, s| {
                Ok(vec![app::start_forwarder(c, r, s)?])
            })
            .await
        }
        Command::Delivery => {
            app::run_worker(&cfg, shutdown::on_signal(), app::start_delivery).await
        }
        Command::Webhooks => app::run_worker(&cfg, shutdown::on_signal(), app::start_inbound).await,
        Command::DlqWorker => {
            app::run_worker(&cfg, shutdown::on_signal(), |c, r, s| {
                Ok(vec![app::start_dead_letter_worker(c, r, s)?])
            })
            .await
        }
        Command::Subscriptions => {
            app::run_worker(&cfg, shutdown::on_signal(), |c, ready, s| {
                ready.without_broker();
                Ok(vec![app::start_subscriptions(c, s)?])
            })
            .await
        }
        Command::All => {
            let problems = config::development_problems(&cfg);
            anyhow::ensure!(
                problems.is_empty(),
                "refusing to start `syncroot all`:\n  - {}",
                problems.join("\n  - ")
            );
            announce_development_mode();
            if cfg.api.keys.is_empty() {
                let key = development_key("dev");
                eprintln!(
                    "\nNo SYNCROOT_API_KEYS configured; generated a development key for this run:\n\n    export API_KEY={key}\n\nUse it as: Authorization: Bearer $API_KEY\n"
                );
                cfg.api.keys = vec![Secret::new(key)];
            }
            if cfg.api.admin_keys.is_empty() {
                let key = development_key("dev-admin");
                eprintln!(
                    "No SYNCROOT_ADMIN_KEYS configured; generated a development admin key for this run\n(the /dlq admin API and `syncroot dlq`):\n\n    export SYNCROOT_ADMIN_KEYS={key}\n"
                );
                cfg.api.admin_keys = vec![Secret::new(key)];
            }
            app::run_all(&cfg, shutdown::on_signal()).await
        }
        Command::Dlq(args) => syncroot::cli::dlq::run(&cfg, *args).await,
        Command::Drift(args) => syncroot::cli::drift::run(&cfg, args).await,
        Command::Backfill(args) => syncroot::cli::backfill::run(&cfg, args).await,
        Command::Openapi | Command::Config(_) => Ok(()),
    }
}

/// The command's name: the traces' `syncroot.role` and the start-up audit event's.
fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Api => "api",
        Command::Forwarder => "forwarder",
        Command::Delivery => "delivery",
        Command::Webhooks => "webhooks",
        Command::DlqWorker => "dlq-worker",
        Command::Subscriptions => "subscriptions",
        Command::All => "all",
        Command::Migrate => "migrate",
        Command::Dlq(_) => "dlq",
        Command::Drift(_) => "drift",
        Command::Backfill(_) => "backfill",
        Command::Openapi => "openapi",
        Command::Config(_) => "config",
    }
}

/// The role a command runs in production, if it is one.
fn production_role(command: &Command) -> Option<config::Role> {
    Some(match command {
        Command::Api => config::Role::Api,
        Command::Forwarder => config::Role::Forwarder,
        Command::Delivery => config::Role::Delivery,
        Command::Webhooks => config::Role::Webhooks,
        Command::DlqWorker => config::Role::DeadLetter,
        Command::Subscriptions => config::Role::Subscriptions,
        _ => return None,
    })
}

/// `all` is for a laptop: say so where nobody can miss it, on the terminal and in the log.
fn announce_development_mode() {
    eprintln!(
        "\n*** DEVELOPMENT MODE: `syncroot all` runs everything in one process on loopback, with\n*** generated keys when none are set and whatever CRMs the configuration names (by default\n*** the local sandboxes). Do not use it in production: run the roles (api, forwarder,\n*** delivery, webhooks, dlq-worker, subscriptions), which refuse development settings.\n"
    );
    tracing::warn!("development mode (`syncroot all`): not for production");
}

fn development_key(prefix: &str) -> String {
    use rand::Rng as _;
    let bytes: [u8; 24] = rand::rng().random();
    format!(
        "{prefix}-{}",
        bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
    )
}
