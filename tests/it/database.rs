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
