//! `syncroot migrate` run several times at once, as a Helm hook Job beside another rollout's
//! can be: every run succeeds and the schema is applied once.

use syncroot_testkit::Installation;

#[tokio::test]
async fn concurrent_migrations_of_a_new_database_all_succeed_and_apply_each_migration_once() {
    // Without the migrator's advisory lock, two runs could both apply the first migration.
    assert!(
        syncroot::store::MIGRATOR.locking,
        "migrations must run under sqlx's advisory lock"
    );
    let install = Installation::for_tests("t");
    let cfg = install.config().expect("test configuration is valid");
    let runs =
        futures_util::future::join_all((0..4).map(|_| syncroot::store::migrate(&cfg.database)))
            .await;
    let applied: Result<Vec<(i64, bool)>, _> = async {
        let db = syncroot::store::connect_lazy(&cfg.database)?;
        sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&db)
            .await
    }
    .await;
    install.cleanup().await;
    for run in runs {
        run.expect("every concurrent run succeeds");
    }
    let applied = applied.expect("the migrations table is readable");
    let expected: Vec<(i64, bool)> = syncroot::store::MIGRATOR
        .iter()
        .map(|m| (m.version, true))
        .collect();
    assert_eq!(applied, expected);
}
