//! PostgreSQL: reads in a `READ ONLY` transaction, every transaction with a local
//! `statement_timeout` (lock waits included). Unqualified names resolve through the
//! connection's `search_path`, as the policy's unqualified names do. Each row is turned into JSON and cut to
//! `MAX_RESULT_BYTES + 1` bytes on the server, and rows are streamed, so one `repeat()` cannot
//! fill Warden's memory.

use super::{
    APPLIED, Collector, Described, Executed, Expected, FENCED, MAX_RESULT_BYTES, Opened,
    RawPreview, ReadError, Recorded, WriteContext, db_error, idempotency_table, key_assigned,
    no_primary_key, now_millis, preview_columns, row_ids,
};
use crate::sql::{ValidatedWrite, WriteKind};
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

/// A PostgreSQL error by its SQLSTATE, with the constraint and table it names; never its
/// message, detail or hint (`Key (guest, slot)=(…, 2) already exists`, `invalid input syntax
/// for type integer: "…"`, a trigger's `RAISE` text).
pub(crate) fn describe(e: &sqlx::postgres::PgDatabaseError) -> Described {
    let code = e.code();
    let class = super::sqlstate_class(code);
    let mut d = Described::new(class, format!("SQLSTATE {code}"));
    // Only an integrity error names a constraint and a table of its own; a trigger's `RAISE
    // … USING TABLE` is not shown.
    if class.constraint_kind().is_some() {
        d.constraint = e.constraint().map(str::to_owned);
        d.table = e.table().map(str::to_owned);
    }
    d
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
fn regclass(write: &ValidatedWrite) -> String {
    write
        .table_name
        .iter()
        .map(|p| write.quote(p))
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
    .bind(regclass(ctx.write))
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
    .bind(regclass(ctx.write))
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
    .bind(regclass(ctx.write))
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
    prepare_table(pool, ctx.timeout)
        .await
        .map_err(|e| timeout_or(e, ctx.timeout))?;
    let mut tx = begin(pool, ctx.timeout, false).await?;
    // The key first: a settlement now waits for this transaction, and a fence or a run that
    // recorded the key before stops this one here.
    if let Some(seen) = claim(&mut tx, idempotency_key, APPLIED)
        .await
        .map_err(|e| timeout_or(e, ctx.timeout))?
    {
        return seen.replay(expected);
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
        "UPDATE {} SET rows_affected = $2 WHERE key = $1",
        idempotency_table()
    )))
    .bind(idempotency_key)
    .bind(rows as i64)
    .execute(&mut *tx)
    .await
    .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(Executed {
        rows_affected: rows,
        already_applied: false,
    })
}

/// Makes the idempotency table, or adds the columns an older version did not make (see
/// `IDEMPOTENCY_TABLE`), under the timeout (lock waits included). Created on first use; a role
/// without CREATE on the schema may have it made beforehand, and must own it to migrate it.
async fn prepare_table(pool: &sqlx::PgPool, timeout: Duration) -> Result<(), sqlx::Error> {
    let table = idempotency_table();
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(table)
        .fetch_one(pool)
        .await?;
    if exists.is_none() {
        sqlx::query(sqlx::AssertSqlSafe(super::create_idempotency_table(
            "key TEXT",
        )))
        .execute(pool)
        .await?;
    }
    let present: Vec<String> = sqlx::query_scalar(
        "SELECT attname::text FROM pg_attribute \
         WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped",
    )
    .bind(table)
    .fetch_all(pool)
    .await?;
    let missing = super::missing_columns(&present);
    if missing.is_empty() {
        return Ok(());
    }
    let adds: Vec<String> = missing
        .iter()
        .map(|d| format!("ADD COLUMN IF NOT EXISTS {d}"))
        .collect();
    let mut tx = pool.begin().await?;
    set_timeouts(&mut tx, timeout).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE {table} {}",
        adds.join(", ")
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// `statement_timeout` and `lock_timeout` for the rest of the transaction.
async fn set_timeouts(conn: &mut PgConnection, timeout: Duration) -> Result<(), sqlx::Error> {
    let ms = timeout.as_millis().max(1);
    for setting in ["statement_timeout", "lock_timeout"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("SET LOCAL {setting} = {ms}")))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Records the key with `outcome` unless a row holds it, waiting for a transaction that holds
/// it uncommitted to end; what was recorded before (`None`: recorded now).
async fn claim(
    conn: &mut PgConnection,
    idempotency_key: &str,
    outcome: &str,
) -> Result<Option<Recorded>, sqlx::Error> {
    let table = idempotency_table();
    let done = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {table} (key, applied_at, outcome, rows_affected) VALUES ($1, $2, $3, NULL) \
         ON CONFLICT (key) DO NOTHING"
    )))
    .bind(idempotency_key)
    .bind(now_millis())
    .bind(outcome)
    .execute(&mut *conn)
    .await?;
    if done.rows_affected() == 1 {
        return Ok(None);
    }
    // The row that conflicted is committed: a new statement sees it (read committed). A
    // snapshot older than it (repeatable read) would not, and no decision is taken on that.
    match recorded(&mut *conn, idempotency_key).await? {
        Some(r) => Ok(Some(r)),
        None => Err(sqlx::Error::Protocol(super::KEY_NOT_VISIBLE.into())),
    }
}

/// What the idempotency table records for the key.
async fn recorded(
    conn: &mut PgConnection,
    idempotency_key: &str,
) -> Result<Option<Recorded>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM {} WHERE key = $1",
        idempotency_table()
    )))
    .bind(idempotency_key)
    // Prepared afresh each time: its columns change when the table is migrated, and a cached
    // statement would still describe the old ones.
    .persistent(false)
    .fetch_optional(&mut *conn)
    .await?;
    row.as_ref().map(Recorded::of).transpose()
}

/// What the idempotency table records for the key, read without waiting for anything.
pub(crate) async fn lookup(
    pool: &sqlx::PgPool,
    idempotency_key: &str,
) -> Result<Option<Recorded>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    recorded(&mut conn, idempotency_key).await
}

/// Whether `e` says the idempotency table does not exist (`undefined_table`).
pub(crate) fn missing_table(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("42P01"))
}

/// The fence of a settlement, in a read-committed transaction whose lock waits and statements
/// end at `wait`: records the key as `fenced` unless a row holds it, after the transaction
/// that holds it uncommitted ended; what was recorded before (`None`: fenced now).
pub(crate) async fn fence(
    pool: &sqlx::PgPool,
    idempotency_key: &str,
    wait: Duration,
) -> Result<Option<Recorded>, ReadError> {
    prepare_table(pool, wait)
        .await
        .map_err(|e| in_progress_or(e, wait))?;
    let mut tx = pool
        .begin_with("BEGIN ISOLATION LEVEL READ COMMITTED")
        .await
        .map_err(db_error)?;
    set_timeouts(&mut tx, wait).await.map_err(db_error)?;
    let seen = claim(&mut tx, idempotency_key, FENCED)
        .await
        .map_err(|e| in_progress_or(e, wait))?;
    tx.commit().await.map_err(db_error)?;
    Ok(seen)
}

/// A lock wait or statement cut at `wait` (`lock_not_available`, `query_canceled`): the
/// transaction holding the key is still running.
fn in_progress_or(e: sqlx::Error, wait: Duration) -> ReadError {
    match &e {
        sqlx::Error::Database(d)
            if matches!(d.code().as_deref(), Some("55P03") | Some("57014")) =>
        {
            ReadError::InProgress(wait)
        }
        _ => db_error(e),
    }
}

/// Which of `keys` (policy keys) name the written table, as the write's connection resolves
/// names (`search_path` included).
pub(crate) async fn same_table(
    pool: &sqlx::PgPool,
    write: &ValidatedWrite,
    keys: &[String],
) -> Result<Vec<String>, ReadError> {
    sqlx::query_scalar(
        "SELECT k FROM unnest($1::text[]) AS k WHERE to_regclass(k) = to_regclass($2)",
    )
    .bind(keys)
    .bind(regclass(write))
    .fetch_all(pool)
    .await
    .map_err(db_error)
}
