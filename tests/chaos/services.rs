//! Restarting the shared services the way an operator (or a crashed host) would.

use std::time::Duration;

use anyhow::{Context, ensure};
use tokio::process::Command;

async fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .output()
        .await
        .with_context(|| format!("running {program}"))?;
    ensure!(
        out.status.success(),
        "{program} {}: {}\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// Stops the RabbitMQ node, waits `down`, starts it again and waits until it serves AMQP.
pub async fn restart_rabbitmq(down: Duration) -> anyhow::Result<()> {
    run("rabbitmqctl", &["-q", "shutdown"]).await?;
    tokio::time::sleep(down).await;
    run("rabbitmq-server", &["-detached"]).await?;
    for _ in 0..240 {
        if port_open(5672) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    run("rabbitmqctl", &["-q", "await_startup"]).await
}

/// Restarts the newest Postgres cluster (fast shutdown: open transactions roll back).
pub async fn restart_postgres() -> anyhow::Result<()> {
    let mut versions: Vec<u32> = std::fs::read_dir("/etc/postgresql")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort();
    let version = versions
        .last()
        .context("no Postgres cluster in /etc/postgresql")?
        .to_string();
    run(
        "pg_ctlcluster",
        &[
            "--skip-systemctl-redirect",
            "-m",
            "fast",
            &version,
            "main",
            "restart",
        ],
    )
    .await
}

/// Makes sure both services are up (after a failed restart), as `scripts/services.sh` does.
pub async fn ensure_up() {
    if !port_open(5672) {
        let _ = run("rabbitmq-server", &["-detached"]).await;
        let _ = run("rabbitmqctl", &["-q", "await_startup"]).await;
    }
    if !port_open(5432) {
        let _ = restart_postgres().await;
    }
}
