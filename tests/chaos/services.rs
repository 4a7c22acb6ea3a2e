//! Restarting the shared services the way an operator would (a clean stop), and crashing them
//! as a failed host would (RabbitMQ's node killed with SIGKILL, Postgres stopped in
//! `immediate` mode: no checkpoint, crash recovery at the next start).

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

/// Stops the RabbitMQ node (cleanly, or with SIGKILL), waits `down`, starts it again and
/// waits until it serves AMQP.
pub async fn restart_rabbitmq(down: Duration, crash: bool) -> anyhow::Result<()> {
    if crash {
        let out = Command::new("rabbitmqctl")
            .args(["-q", "eval", "os:getpid()."])
            .output()
            .await
            .context("asking RabbitMQ for its process id")?;
        let pid = String::from_utf8_lossy(&out.stdout)
            .trim()
            .trim_matches('"')
            .to_owned();
        ensure!(pid.parse::<u32>().is_ok(), "RabbitMQ's process id: {pid:?}");
        run("kill", &["-9", &pid]).await?;
        while port_open(5672) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    } else {
        run("rabbitmqctl", &["-q", "shutdown"]).await?;
    }
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

/// Restarts the newest Postgres cluster: `fast` (open transactions roll back, a checkpoint is
/// written) or, to crash it, `immediate` (every server process is killed; the next start
/// replays the write-ahead log).
pub async fn restart_postgres(crash: bool) -> anyhow::Result<()> {
    let mut versions: Vec<u32> = std::fs::read_dir("/etc/postgresql")?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    versions.sort();
    let version = versions
        .last()
        .context("no Postgres cluster in /etc/postgresql")?
        .to_string();
    let mode = if crash { "immediate" } else { "fast" };
    run(
        "pg_ctlcluster",
        &[
            "--skip-systemctl-redirect",
            "-m",
            mode,
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
        let _ = restart_postgres(false).await;
    }
}
