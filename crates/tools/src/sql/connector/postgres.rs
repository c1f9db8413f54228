//! PostgreSQL: reads in a `READ ONLY` transaction, every transaction with a local
//! `statement_timeout` (lock waits included). Unqualified names resolve through the
//! connection's `search_path`, as the policy's unqualified names do. Each row is turned into JSON and cut to
//! `MAX_RESULT_BYTES + 1` bytes on the server, and rows are streamed, so one `repeat()` cannot
//! fill Warden's memory.

use super::{
    Collector, Executed, Expected, MAX_RESULT_BYTES, Opened, RawPreview, ReadError, WriteContext,
    db_error, idempotency_table, key_assigned, no_primary_key, now_millis, preview_columns,
    row_ids,
};
use crate::sql::WriteKind;
use futures_util::TryStreamExt;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions};
use sqlx::{Column, Executor, Statement};
use std::str::FromStr;
use std::time::Duration;

pub(crate) fn open(
    o: &Opened<'_>,
    url: &str,
    url_env: &str,
    writable: bool,
) -> Result<(sqlx::PgPool, Option<sqlx::PgPool>), String> {
    let name = o.name.to_owned();
    let options = PgConnectOptions::from_str(url)
        .map_err(|_| format!("databases.{name}: the URL in {url_env} is not valid"))?
        .application_name("warden-sql");
    let allowed = o.allowed.clone();
    let strict = o.config.strict_roles;
    let shared = o.shared_role();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(move |conn, _| {
            let allowed = allowed.clone();
            let name = name.clone();
            Box::pin(async move {
                let findings = crate::sql::roles::check_postgres(conn, &allowed).await?;
                super::report_roles(&name, &findings, strict, shared)
            })
        })
        .connect_lazy_with(options);
    // Writes use their own role's URL if given, else the read pool; each write runs in its
    // own transaction.
    let write = match (writable, o.write_url) {
        (false, _) => None,
        (true, None) => Some(pool.clone()),
        (true, Some(w)) => {
            let options = PgConnectOptions::from_str(w)
                .map_err(|_| format!("databases.{}: the write URL is not valid", o.name))?
                .application_name("warden-sql-write");
            Some(
                PgPoolOptions::new()
                    .max_connections(2)
                    .acquire_timeout(Duration::from_secs(5))
                    .connect_lazy_with(options),
            )
        }
    };
    Ok((pool, write))
}

/// Starts a transaction with the timeout.
async fn begin(
    pool: &sqlx::PgPool,
    timeout: Duration,
    read_only: bool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, ReadError> {
    let mut tx = if read_only {
        pool.begin_with("BEGIN READ ONLY").await
    } else {
        pool.begin().await
    }
    .map_err(db_error)?;
    let ms = timeout.as_millis().max(1);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SET LOCAL statement_timeout = {ms}"
    )))
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    Ok(tx)
}

fn timeout_or(e: sqlx::Error, timeout: Duration) -> ReadError {
    match &e {
        sqlx::Error::Database(d) if d.code().as_deref() == Some("57014") => {
            ReadError::Timeout(timeout)
        }
        _ => db_error(e),
    }
}

/// Streams the rows of `sql` (a query, or a write with `RETURNING`) as JSON, each cut on the
/// server.
async fn collect(
    conn: &mut PgConnection,
    sql: &str,
    mut out: Collector,
    timeout: Duration,
) -> Result<Collector, ReadError> {
    // Validated (or built by Warden around a validated statement); a data-modifying statement
    // cannot be a subquery, so it goes in a CTE.
    let wrapped = format!(
        "WITH q AS ({sql}) SELECT left(to_jsonb(q)::text, {}) FROM q",
        MAX_RESULT_BYTES + 1
    );
    let mut rows = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(wrapped)).fetch(&mut *conn);
    while let Some(text) = rows.try_next().await.map_err(|e| timeout_or(e, timeout))? {
        if !out.push_text(&text) {
            break;
        }
    }
    Ok(out)
}

pub(crate) async fn read(
    pool: &sqlx::PgPool,
    sql: &str,
    timeout: Duration,
    max_rows: usize,
) -> Result<Collector, ReadError> {
    let mut tx = begin(pool, timeout, true).await?;
    let out = read_in(&mut tx, sql, max_rows, timeout).await;
    let _ = tx.rollback().await;
    out
}

async fn read_in(
    conn: &mut PgConnection,
    sql: &str,
    max_rows: usize,
    timeout: Duration,
) -> Result<Collector, ReadError> {
    // Two result columns of one name would be merged by `to_jsonb`: refused instead.
    let statement = (&mut *conn)
        .prepare(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(
            sql.to_owned(),
        )))
        .await
        .map_err(|e| timeout_or(e, timeout))?;
    if super::has_duplicates(statement.columns().iter().map(|c| c.name())) {
        return Err(super::duplicate_columns());
    }
    collect(conn, sql, Collector::new(max_rows), timeout).await
}

/// Every column of a table (as the catalog stores them), system columns included; empty if
/// unknown.
pub(crate) async fn columns_of(
    pool: &sqlx::PgPool,
    key: &str,
) -> Result<std::collections::BTreeSet<String>, sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT attname::text FROM pg_attribute WHERE attrelid = to_regclass($1) AND NOT attisdropped",
    )
    .bind(key)
    .fetch_all(pool)
    .await?;
    Ok(names.into_iter().collect())
}

/// The table's name as written, quoted, for the catalog (`regclass` resolves it as the
/// statement does).
fn regclass(ctx: &WriteContext<'_>) -> String {
    ctx.write
        .table_name
        .iter()
        .map(|p| ctx.write.quote(p))
        .collect::<Vec<_>>()
        .join(".")
}

async fn keys(conn: &mut PgConnection, ctx: &WriteContext<'_>) -> Result<Vec<String>, ReadError> {
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT a.attname::text FROM pg_index i \
         JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
         WHERE i.indrelid = $1::regclass AND i.indisprimary \
         ORDER BY array_position(i.indkey::int2[], a.attnum)",
    )
    .bind(regclass(ctx))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    if keys.is_empty() {
        return Err(no_primary_key(&ctx.write.table));
    }
    Ok(keys)
}

async fn triggers(
    conn: &mut PgConnection,
    ctx: &WriteContext<'_>,
) -> Result<Vec<String>, ReadError> {
    sqlx::query_scalar(
        "SELECT tgname::text FROM pg_trigger WHERE tgrelid = $1::regclass AND NOT tgisinternal ORDER BY 1",
    )
    .bind(regclass(ctx))
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)
}

pub(crate) async fn preview(
    pool: &sqlx::PgPool,
    ctx: &WriteContext<'_>,
) -> Result<RawPreview, ReadError> {
    let cap = ctx.max_affected_rows as usize;
    let mut tx = begin(pool, ctx.timeout, false).await?;
    let key_columns = match ctx.write.kind {
        WriteKind::Insert => keys(&mut tx, ctx).await.unwrap_or_default(),
        _ => keys(&mut tx, ctx).await?,
    };
    key_assigned(ctx, &key_columns)?;
    let columns = preview_columns(ctx.write, &key_columns);
    let (before, ids) = match ctx.write.kind {
        WriteKind::Insert => (Vec::new(), Vec::new()),
        _ => {
            // The target rows' keys first: counted, and the write refused before it runs if
            // there are too many.
            let targets = ctx.write.select_targets(&key_columns, false);
            let found = collect(&mut tx, &targets, Collector::keys(cap + 1), ctx.timeout).await?;
            if found.seen > cap {
                return Err(super::too_many(found.seen as u64, ctx.max_affected_rows));
            }
            let ids = row_ids(&found.rows, &key_columns)?;
            let shown = ctx.write.select_targets(&columns, false);
            let before =
                collect(&mut tx, &shown, Collector::counting(cap + 1), ctx.timeout).await?;
            (before.rows, ids)
        }
    };
    let after = collect(
        &mut tx,
        &ctx.write.returning(&columns),
        Collector::counting(cap + 1),
        ctx.timeout,
    )
    .await?;
    let triggers = triggers(&mut tx, ctx).await?;
    let cascades: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT conrelid::regclass::text FROM pg_constraint \
         WHERE confrelid = $1::regclass AND contype = 'f' \
         AND (confdeltype IN ('c', 'n', 'd') OR confupdtype IN ('c', 'n', 'd')) ORDER BY 1",
    )
    .bind(regclass(ctx))
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?;
    tx.rollback().await.map_err(db_error)?;
    Ok(RawPreview {
        rows_affected: after.seen as u64,
        row_ids: ids,
        before,
        after: after.rows,
        key_columns,
        triggers,
        cascades,
    })
}

pub(crate) async fn execute(
    pool: &sqlx::PgPool,
    ctx: &WriteContext<'_>,
    idempotency_key: &str,
    expected: &Expected,
) -> Result<Executed, ReadError> {
    let table = idempotency_table();
    // Created on first use; a role without CREATE on the schema may have it made beforehand.
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(table)
        .fetch_one(pool)
        .await
        .map_err(db_error)?;
    if exists.is_none() {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)"
        )))
        .execute(pool)
        .await
        .map_err(db_error)?;
    }
    let mut tx = begin(pool, ctx.timeout, false).await?;
    let seen: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT applied_at FROM {table} WHERE key = $1"
    )))
    .bind(idempotency_key)
    .fetch_optional(&mut *tx)
    .await
    .map_err(db_error)?;
    if seen.is_some() {
        return Ok(Executed {
            rows_affected: expected.rows_affected,
            already_applied: true,
        });
    }
    let key_columns = match ctx.write.kind {
        WriteKind::Insert => keys(&mut tx, ctx).await.unwrap_or_default(),
        _ => keys(&mut tx, ctx).await?,
    };
    key_assigned(ctx, &key_columns)?;
    // Validated, and approved by a verified signature over exactly these arguments;
    // `RETURNING` the keys of the rows it changed, checked before commit.
    let returning: Vec<String> = if key_columns.is_empty() {
        vec!["*".into()]
    } else {
        key_columns.clone()
    };
    let changed = collect(
        &mut tx,
        &ctx.write.returning(&returning),
        Collector::keys(ctx.max_affected_rows as usize + 1),
        ctx.timeout,
    )
    .await?;
    let rows = super::check_returned(ctx, expected, &changed, &key_columns)?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {table} (key, applied_at) VALUES ($1, $2)"
    )))
    .bind(idempotency_key)
    .bind(now_millis())
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(Executed {
        rows_affected: rows,
        already_applied: false,
    })
}

pub(crate) async fn was_applied(
    pool: &sqlx::PgPool,
    idempotency_key: &str,
) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {} WHERE key = $1",
        idempotency_table()
    )))
    .bind(idempotency_key)
    .fetch_one(pool)
    .await?;
    Ok(n > 0)
}
