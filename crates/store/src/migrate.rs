//! Schema migrations: numbered SQL files compiled into the binary, applied in order, each in
//! its own transaction and recorded in `_warden_migrations`. Never edit an applied file; add
//! the next number.
//!
//! Ours rather than sqlx's `migrate!` on purpose: that macro needs sqlx's `macros` feature,
//! which builds the database drivers a second time for the proc-macro host (CRATES.md), and
//! every deployment's database already records its versions in `_warden_migrations`, which
//! sqlx's runner would not read. What it would add, an advisory lock across nodes on
//! PostgreSQL, this runner has (`MIGRATION_LOCK`).

use crate::Error;
use sqlx::SqlitePool;

/// Ordered (version, SQL) pairs for SQLite.
const SQLITE: &[(i64, &str)] = &[
    (
        1,
        include_str!("../migrations/sqlite/0001_keys_and_usage.sql"),
    ),
    (2, include_str!("../migrations/sqlite/0002_key_events.sql")),
    (
        3,
        include_str!("../migrations/sqlite/0003_cost_control.sql"),
    ),
    (4, include_str!("../migrations/sqlite/0004_agents.sql")),
    (5, include_str!("../migrations/sqlite/0005_approvals.sql")),
    (6, include_str!("../migrations/sqlite/0006_key_agents.sql")),
    (
        7,
        include_str!("../migrations/sqlite/0007_key_insertion_order.sql"),
    ),
];

/// Brings the database up to the newest schema.
pub(crate) async fn sqlite(pool: &SqlitePool) -> Result<(), Error> {
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS _warden_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )
    .execute(pool)
    .await?;
    let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _warden_migrations")
        .fetch_one(pool)
        .await?;
    let applied = applied.unwrap_or(0);
    if let Some((newest, _)) = SQLITE.last()
        && applied > *newest
    {
        return Err(Error::Unavailable(format!(
            "the database has schema version {applied}, newer than this binary knows ({newest}); upgrade Warden"
        )));
    }
    for (version, sql) in SQLITE.iter().filter(|(v, _)| *v > applied) {
        let mut tx = pool.begin().await?;
        sqlx::raw_sql(*sql).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO _warden_migrations (version, applied_at) VALUES (?, strftime('%s','now'))",
        )
        .bind(version)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(version, "applied store migration");
    }
    Ok(())
}

/// Ordered (version, SQL) pairs for PostgreSQL: the same schema versions as SQLite.
const POSTGRES: &[(i64, &str)] = &[
    (
        1,
        include_str!("../migrations/postgres/0001_keys_and_usage.sql"),
    ),
    (
        2,
        include_str!("../migrations/postgres/0002_key_events.sql"),
    ),
    (
        3,
        include_str!("../migrations/postgres/0003_cost_control.sql"),
    ),
    (4, include_str!("../migrations/postgres/0004_agents.sql")),
    (5, include_str!("../migrations/postgres/0005_approvals.sql")),
    (
        6,
        include_str!("../migrations/postgres/0006_key_agents.sql"),
    ),
    (
        7,
        include_str!("../migrations/postgres/0007_key_insertion_order.sql"),
    ),
];

/// A fixed key for the advisory lock that serialises migrations when several nodes start at
/// once (held for the migration transaction only; nothing else uses advisory locks).
const MIGRATION_LOCK: i64 = 0x5741_5244_454e_0001;

/// Brings a PostgreSQL database (its current schema) up to the newest schema.
pub(crate) async fn postgres(pool: &sqlx::PgPool) -> Result<(), Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(MIGRATION_LOCK)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS _warden_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
    )
    .execute(&mut *tx)
    .await?;
    let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _warden_migrations")
        .fetch_one(&mut *tx)
        .await?;
    let applied = applied.unwrap_or(0);
    if let Some((newest, _)) = POSTGRES.last()
        && applied > *newest
    {
        return Err(Error::Unavailable(format!(
            "the database has schema version {applied}, newer than this binary knows ({newest}); upgrade Warden"
        )));
    }
    for (version, sql) in POSTGRES.iter().filter(|(v, _)| *v > applied) {
        sqlx::raw_sql(*sql).execute(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO _warden_migrations (version, applied_at) VALUES ($1, EXTRACT(EPOCH FROM now())::BIGINT)",
        )
        .bind(version)
        .execute(&mut *tx)
        .await?;
        tracing::info!(version, "applied store migration (postgres)");
    }
    tx.commit().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_backends_know_the_same_schema_versions() {
        let versions = |m: &[(i64, &str)]| m.iter().map(|(v, _)| *v).collect::<Vec<_>>();
        assert_eq!(versions(super::SQLITE), versions(super::POSTGRES));
    }
}
