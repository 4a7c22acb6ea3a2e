//! The Postgres pool's guards: nothing waits forever on a pooled connection.

use std::time::Duration;

use syncroot::config::DatabaseConfig;
use syncroot::secret::Secret;
use syncroot_testkit::PG_ADMIN;

fn pool(statement_ms: u64, lock_ms: u64) -> sqlx::PgPool {
    syncroot::store::connect_lazy(&DatabaseConfig {
        url: Secret::new(PG_ADMIN),
        max_connections: 2,
        statement_timeout: Some(Duration::from_millis(statement_ms)),
        lock_timeout: Some(Duration::from_millis(lock_ms)),
    })
    .unwrap()
}

#[tokio::test]
async fn pooled_connections_carry_the_statement_and_lock_timeouts() {
    let db = pool(300, 200);
    let shown: (String, String) = sqlx::query_as(
        "SELECT current_setting('statement_timeout'), current_setting('lock_timeout')",
    )
    .fetch_one(&db)
    .await
    .expect("Postgres must be running on 127.0.0.1:5432 (make services)");
    assert_eq!(shown, ("300ms".to_owned(), "200ms".to_owned()));
    let slow = sqlx::query("SELECT pg_sleep(5)").execute(&db).await;
    let err = slow.expect_err("a statement over the timeout is cancelled");
    assert!(err.to_string().contains("statement timeout"), "{err}");

    // A lock held elsewhere: the wait for it ends at lock_timeout.
    let key: i64 = rand::random::<i64>();
    let holder = pool(0, 0);
    let mut held = holder.begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
        .execute(&mut *held)
        .await
        .unwrap();
    let waited = sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(key)
        .execute(&db)
        .await;
    let err = waited.expect_err("a lock wait over the timeout fails");
    assert!(err.to_string().contains("lock timeout"), "{err}");
    held.rollback().await.unwrap();
}

/// A Postgres that only accepts TLS, started for one test: its own data directory in a
/// temporary directory, a free port, a certificate for `localhost` signed by a CA made here
/// (with the openssl CLI).
struct TlsPostgres {
    dir: std::path::PathBuf,
    port: u16,
}

/// Runs a bash script in `dir`, failing the test with its stderr if it fails.
fn sh(dir: &std::path::Path, script: &str) {
    let out = std::process::Command::new("bash")
        .args(["-ceu", script])
        .current_dir(dir)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "{script}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// initdb and postgres refuse to run as root: as root, run them as the postgres user.
fn as_postgres() -> &'static str {
    let root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if root { "runuser -u postgres --" } else { "" }
}

const PG_PATH: &str = "PATH=$PATH:$(ls -d /usr/lib/postgresql/*/bin | tail -1)";

impl TlsPostgres {
    fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("syncroot-pgtls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        // Two CAs: the server's, and a wrong one for the client to fail with.
        sh(
            &dir,
            "for ca in ca wrong-ca; do
               openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj \"/CN=SyncRoot test $ca\" \
                 -keyout $ca.key -out $ca.pem 2>/dev/null
             done
             openssl req -newkey rsa:2048 -nodes -subj /CN=localhost -keyout server.key \
               -out server.csr 2>/dev/null
             printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext
             openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
               -days 1 -extfile san.ext -out server.pem 2>/dev/null
             chmod 600 server.key",
        );
        let port = syncroot_testkit::free_port().unwrap();
        let (pg, d) = (as_postgres(), dir.display());
        let conf = format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{d}'\n\
             ssl = on\nssl_cert_file = '{d}/server.pem'\nssl_key_file = '{d}/server.key'\n"
        );
        std::fs::write(dir.join("extra.conf"), conf).unwrap();
        sh(
            &dir,
            &format!(
                "{PG_PATH}
                 if [ -n \"{pg}\" ]; then chown -R postgres: .; fi
                 {pg} initdb -A trust -U postgres -D {d}/data >/dev/null
                 cat extra.conf >> {d}/data/postgresql.conf
                 echo 'hostssl all all 127.0.0.1/32 trust' > {d}/data/pg_hba.conf
                 {pg} pg_ctl -D {d}/data -l {d}/log -w -t 30 start >/dev/null"
            ),
        );
        Self { dir, port }
    }

    fn url(&self, query: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/postgres?{query}",
            self.port
        )
    }
}

impl Drop for TlsPostgres {
    fn drop(&mut self) {
        let (pg, d) = (as_postgres(), self.dir.display());
        let _ = std::process::Command::new("bash")
            .args([
                "-c",
                &format!("{PG_PATH}; {pg} pg_ctl -D {d}/data -m immediate stop"),
            ])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn select_one(url: &str) -> Result<i32, sqlx::Error> {
    let db = syncroot::store::connect_lazy(&DatabaseConfig {
        url: Secret::new(url),
        max_connections: 2,
        statement_timeout: None,
        lock_timeout: None,
    })?;
    let one = sqlx::query_scalar("SELECT 1").fetch_one(&db).await;
    db.close().await;
    one
}

#[tokio::test]
async fn a_tls_only_postgres_is_reached_with_verify_full_and_refused_with_a_wrong_ca() {
    let pg = TlsPostgres::start();
    let ca = pg.dir.join("ca.pem");
    let wrong = pg.dir.join("wrong-ca.pem");
    let verified =
        select_one(&pg.url(&format!("sslmode=verify-full&sslrootcert={}", ca.display()))).await;
    assert_eq!(verified.expect("verify-full with the right CA connects"), 1);

    let err = select_one(&pg.url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        wrong.display()
    )))
    .await
    .expect_err("a certificate from another CA is refused");
    let text = err.to_string().to_ascii_lowercase();
    assert!(
        text.contains("certificate") || text.contains("tls"),
        "{err}"
    );

    // The server takes TLS only: without it there is no way in.
    select_one(&pg.url("sslmode=disable"))
        .await
        .expect_err("cleartext is refused by the server");
}

/// Whether the pool's connection to `url` uses TLS, as the server sees it.
async fn uses_tls(url: &str) -> bool {
    let db = syncroot::store::connect_lazy(&DatabaseConfig {
        url: Secret::new(url),
        max_connections: 1,
        statement_timeout: None,
        lock_timeout: None,
    })
    .unwrap();
    sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&db)
        .await
        .unwrap()
}

/// A Postgres on this machine is reached without TLS unless the URL asks for it (TLS protects
/// nothing on loopback and, with this sqlx, stalls large statements); a mode the URL names is
/// obeyed.
#[tokio::test]
async fn loopback_connections_use_tls_only_when_the_url_asks() {
    assert!(
        PG_ADMIN.contains("127.0.0.1") && !PG_ADMIN.contains('?'),
        "{PG_ADMIN}"
    );
    assert!(!uses_tls(PG_ADMIN).await, "loopback, no mode named");
    let admin = syncroot::store::connect_lazy(&DatabaseConfig {
        url: Secret::new(PG_ADMIN),
        max_connections: 1,
        statement_timeout: None,
        lock_timeout: None,
    })
    .unwrap();
    let ssl: String = sqlx::query_scalar("SHOW ssl")
        .fetch_one(&admin)
        .await
        .unwrap();
    if ssl == "on" {
        assert!(uses_tls(&format!("{PG_ADMIN}?sslmode=prefer")).await);
        assert!(uses_tls(&format!("{PG_ADMIN}?sslmode=require")).await);
    }
    assert!(!uses_tls(&format!("{PG_ADMIN}?sslmode=disable")).await);
}
