//! SQLite: runs in Warden's own process, so its limits are Warden's memory. Every connection
//! caps the size of one value ([`SQLITE_MAX_VALUE_BYTES`]: `printf('%.*c', 900000000, 'x')`
//! fails instead of allocating a gigabyte) and the columns of a result (so one row stays under
//! 64 MiB), the statement text, and attaching databases; a
//! progress handler stops any statement at its timeout (previews and approved writes too, so a
//! proposal cannot hold the write lock past it); rows are streamed and cut while fetching.

use super::{
    APPLIED, Class, Collector, Described, Executed, Expected, FENCED, Opened, RawPreview,
    ReadError, Recorded, WriteContext, db_error, idempotency_table, key_assigned, no_primary_key,
    now_millis, preview_columns, row_ids,
};
use crate::sql::{ValidatedWrite, WriteKind};
use futures_util::TryStreamExt;
use serde_json::{Map, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePoolOptions};
use sqlx::{Column, Connection, Row, TypeInfo, ValueRef};
use std::path::Path;
use std::time::{Duration, Instant};

/// Sets the per-connection limits. The one `unsafe` block of the project: sqlx exposes the raw
/// handle but not `sqlite3_limit`.
async fn limit(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let raw = handle.as_raw_handle().as_ptr();
    #[allow(unsafe_code)]
    // SAFETY: `raw` is the open connection's handle, held locked by `handle` for the duration
    // of the calls; `sqlite3_limit` only reads and sets integers on it.
    unsafe {
        use libsqlite3_sys as ffi;
        ffi::sqlite3_limit(raw, ffi::SQLITE_LIMIT_LENGTH, super::SQLITE_MAX_VALUE_BYTES);
        ffi::sqlite3_limit(raw, ffi::SQLITE_LIMIT_SQL_LENGTH, 1 << 20);
        ffi::sqlite3_limit(raw, ffi::SQLITE_LIMIT_ATTACHED, 0);
        ffi::sqlite3_limit(raw, ffi::SQLITE_LIMIT_COMPOUND_SELECT, 64);
        ffi::sqlite3_limit(raw, ffi::SQLITE_LIMIT_COLUMN, super::SQLITE_MAX_COLUMNS);
    }
    Ok(())
}

pub(crate) async fn open(
    o: &Opened<'_>,
    path: &Path,
    writable: bool,
) -> Result<(sqlx::SqlitePool, Option<sqlx::SqlitePool>), String> {
    let name = o.name;
    if !path.exists() {
        return Err(format!(
            "databases.{name}: {} does not exist",
            path.display()
        ));
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .pragma("query_only", "ON");
    let read = SqlitePoolOptions::new()
        .max_connections(4)
        .after_connect(|conn, _| Box::pin(async move { limit(conn).await }))
        .connect_with(options)
        .await
        .map_err(|e| format!("databases.{name}: cannot open {}: {e}", path.display()))?;
    let write = if writable {
        let rw = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(o.config.statement_timeout);
        Some(
            SqlitePoolOptions::new()
                .max_connections(1)
                .after_connect(|conn, _| Box::pin(async move { limit(conn).await }))
                .connect_with(rw)
                .await
                .map_err(|e| {
                    format!(
                        "databases.{name}: cannot open {} for writes: {e}",
                        path.display()
                    )
                })?,
        )
    } else {
        None
    };
    Ok((read, write))
}

/// The name of an SQLite (extended) result code, or its primary code's name and the number.
fn code_name(code: i32) -> String {
    let extended = match code {
        257 => "SQLITE_ERROR_MISSING_COLLSEQ",
        513 => "SQLITE_ERROR_RETRY",
        769 => "SQLITE_ERROR_SNAPSHOT",
        261 => "SQLITE_BUSY_RECOVERY",
        517 => "SQLITE_BUSY_SNAPSHOT",
        773 => "SQLITE_BUSY_TIMEOUT",
        262 => "SQLITE_LOCKED_SHAREDCACHE",
        518 => "SQLITE_LOCKED_VTAB",
        264 => "SQLITE_READONLY_RECOVERY",
        520 => "SQLITE_READONLY_CANTLOCK",
        776 => "SQLITE_READONLY_ROLLBACK",
        1032 => "SQLITE_READONLY_DBMOVED",
        1288 => "SQLITE_READONLY_CANTINIT",
        1544 => "SQLITE_READONLY_DIRECTORY",
        516 => "SQLITE_ABORT_ROLLBACK",
        275 => "SQLITE_CONSTRAINT_CHECK",
        531 => "SQLITE_CONSTRAINT_COMMITHOOK",
        787 => "SQLITE_CONSTRAINT_FOREIGNKEY",
        1043 => "SQLITE_CONSTRAINT_FUNCTION",
        1299 => "SQLITE_CONSTRAINT_NOTNULL",
        1555 => "SQLITE_CONSTRAINT_PRIMARYKEY",
        1811 => "SQLITE_CONSTRAINT_TRIGGER",
        2067 => "SQLITE_CONSTRAINT_UNIQUE",
        2323 => "SQLITE_CONSTRAINT_VTAB",
        2579 => "SQLITE_CONSTRAINT_ROWID",
        2835 => "SQLITE_CONSTRAINT_PINNED",
        3091 => "SQLITE_CONSTRAINT_DATATYPE",
        279 => "SQLITE_AUTH_USER",
        _ => "",
    };
    if !extended.is_empty() {
        return extended.to_owned();
    }
    let primary = match code & 0xff {
        1 => "SQLITE_ERROR",
        2 => "SQLITE_INTERNAL",
        3 => "SQLITE_PERM",
        4 => "SQLITE_ABORT",
        5 => "SQLITE_BUSY",
        6 => "SQLITE_LOCKED",
        7 => "SQLITE_NOMEM",
        8 => "SQLITE_READONLY",
        9 => "SQLITE_INTERRUPT",
        10 => "SQLITE_IOERR",
        11 => "SQLITE_CORRUPT",
        12 => "SQLITE_NOTFOUND",
        13 => "SQLITE_FULL",
        14 => "SQLITE_CANTOPEN",
        15 => "SQLITE_PROTOCOL",
        16 => "SQLITE_EMPTY",
        17 => "SQLITE_SCHEMA",
        18 => "SQLITE_TOOBIG",
        19 => "SQLITE_CONSTRAINT",
        20 => "SQLITE_MISMATCH",
        21 => "SQLITE_MISUSE",
        22 => "SQLITE_NOLFS",
        23 => "SQLITE_AUTH",
        24 => "SQLITE_FORMAT",
        25 => "SQLITE_RANGE",
        26 => "SQLITE_NOTADB",
        27 => "SQLITE_NOTICE",
        28 => "SQLITE_WARNING",
        _ => "SQLite result code",
    };
    if code > 0xff || primary.starts_with("SQLite") {
        format!("{primary}, code {code}")
    } else {
        primary.to_owned()
    }
}

/// An SQLite error by its extended result code; of its message only what names the table, the
/// columns of a unique key or a named CHECK constraint (SQLite's constraint messages hold
/// names, never values; a trigger's `RAISE` text, which may, is not shown).
pub(crate) fn describe(e: &sqlx::sqlite::SqliteError) -> Described {
    use sqlx::error::DatabaseError;
    let code: i32 = e
        .code()
        .and_then(|c| c.parse().ok())
        .unwrap_or(libsqlite3_sys::SQLITE_ERROR);
    let message = DatabaseError::message(e);
    let lower = message.to_ascii_lowercase();
    let class = match code {
        2067 | 1555 | 2579 => Class::Unique,
        787 => Class::ForeignKey,
        1299 => Class::NotNull,
        275 => Class::Check,
        1811 => Class::Raised,
        3091 => Class::InvalidValue,
        c => match c & 0xff {
            19 => Class::Integrity,
            5 | 6 => Class::LockTimeout,
            9 => Class::StatementTimeout,
            8 => Class::ReadOnly,
            3 | 23 => Class::PermissionDenied,
            18 => Class::TooBig,
            20 => Class::InvalidValue,
            25 => Class::OutOfRange,
            1 if lower.starts_with("no such table") => Class::UndefinedTable,
            1 if lower.starts_with("no such column") => Class::UndefinedColumn,
            1 if lower.starts_with("no such function")
                || lower.starts_with("wrong number of arguments") =>
            {
                Class::UndefinedFunction
            }
            1 if lower.contains("syntax error")
                || lower.starts_with("unrecognized token")
                || lower.starts_with("incomplete input") =>
            {
                Class::Syntax
            }
            1 if lower.contains("integer overflow") => Class::OutOfRange,
            1 if lower.starts_with("too many") => Class::Limit,
            _ => Class::Other,
        },
    };
    let mut d = Described::new(class, code_name(code));
    // `UNIQUE constraint failed: t.a, t.b`, `… failed: index 'i'`, `NOT NULL constraint failed:
    // t.a`, `CHECK constraint failed: name` (or the check's expression, unnamed).
    let detail = message
        .split_once(" constraint failed: ")
        .map(|(_, rest)| rest)
        .filter(|_| class.constraint_kind().is_some());
    if let Some(detail) = detail {
        if let Some(index) = detail
            .strip_prefix("index '")
            .and_then(|r| r.strip_suffix('\''))
        {
            d.constraint = Some(index.to_owned());
        } else if class == Class::Check {
            d.constraint = Some(detail.to_owned()).filter(|n| {
                n.chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '$')
            });
        } else {
            let parts: Option<Vec<(&str, &str)>> =
                detail.split(", ").map(|p| p.rsplit_once('.')).collect();
            if let Some(parts) = parts
                && let Some((table, _)) = parts.first()
                && parts.iter().all(|(t, _)| t == table)
            {
                d.table = Some((*table).to_owned());
                if class == Class::Unique {
                    d.columns = parts.iter().map(|(_, c)| (*c).to_owned()).collect();
                }
            }
        }
    }
    d
}

/// Arms a progress handler that interrupts the connection's statements at the deadline.
async fn arm(conn: &mut SqliteConnection, timeout: Duration) -> Result<Instant, ReadError> {
    let deadline = Instant::now() + timeout;
    conn.lock_handle()
        .await
        .map_err(db_error)?
        .set_progress_handler(1000, move || Instant::now() < deadline);
    Ok(deadline)
}

/// Removes the handler; a failure past the deadline is reported as a timeout.
async fn disarm<T>(
    conn: &mut SqliteConnection,
    deadline: Instant,
    timeout: Duration,
    out: Result<T, ReadError>,
) -> Result<T, ReadError> {
    if let Ok(mut h) = conn.lock_handle().await {
        h.remove_progress_handler();
    }
    match out {
        Err(ReadError::Database(_)) if Instant::now() >= deadline => {
            Err(ReadError::Timeout(timeout))
        }
        other => other,
    }
}

/// Streams the rows of `sql` into `out`; with `distinct`, refuses two result columns of one
/// name (they would be merged into one JSON field).
async fn collect(
    conn: &mut SqliteConnection,
    sql: &str,
    mut out: Collector,
    distinct: bool,
) -> Result<Collector, ReadError> {
    // Validated: printed from the checked tree (or built by Warden around it).
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(sql.to_owned())).fetch(&mut *conn);
    let mut first = true;
    while let Some(row) = rows.try_next().await.map_err(db_error)? {
        if first && distinct && super::has_duplicates(row.columns().iter().map(|c| c.name())) {
            return Err(super::duplicate_columns());
        }
        first = false;
        if !out.push(sqlite_row(&row)) {
            break;
        }
    }
    Ok(out)
}

pub(crate) async fn read(
    pool: &sqlx::SqlitePool,
    sql: &str,
    timeout: Duration,
    max_rows: usize,
) -> Result<Collector, ReadError> {
    let mut conn = pool.acquire().await.map_err(db_error)?;
    let deadline = arm(&mut conn, timeout).await?;
    let out = collect(&mut conn, sql, Collector::new(max_rows), true).await;
    disarm(&mut conn, deadline, timeout, out).await
}

/// Every column of a table (lower case), generated and hidden ones (`table_xinfo`) and the
/// implicit row id included; empty if unknown.
pub(crate) async fn columns_of(
    pool: &sqlx::SqlitePool,
    key: &str,
) -> Result<std::collections::BTreeSet<String>, sqlx::Error> {
    let table = key.rsplit('.').next().unwrap_or(key);
    let names: Vec<String> = sqlx::query_scalar("SELECT name FROM pragma_table_xinfo(?1)")
        .bind(table)
        .fetch_all(pool)
        .await?;
    if names.is_empty() {
        return Ok(Default::default());
    }
    Ok(names
        .into_iter()
        .map(|n| n.to_ascii_lowercase())
        .chain(["rowid", "oid", "_rowid_"].map(String::from))
        .collect())
}

/// The primary-key columns of the table, or `rowid` for a rowid table without one.
async fn keys(
    conn: &mut SqliteConnection,
    ctx: &WriteContext<'_>,
) -> Result<Vec<String>, ReadError> {
    let table = ctx.write.table_name.last().cloned().unwrap_or_default();
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT name, pk FROM pragma_table_info(?1) WHERE pk > 0 ORDER BY pk")
            .bind(&table)
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error)?;
    if rows.is_empty() {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1")
                .bind(&table)
                .fetch_optional(&mut *conn)
                .await
                .map_err(db_error)?;
        return match exists {
            Some(_) => Ok(vec!["rowid".to_owned()]),
            None => Err(no_primary_key(&ctx.write.table)),
        };
    }
    Ok(rows.into_iter().map(|(n, _)| n).collect())
}

async fn triggers(
    conn: &mut SqliteConnection,
    ctx: &WriteContext<'_>,
) -> Result<Vec<String>, ReadError> {
    let table = ctx.write.table_name.last().cloned().unwrap_or_default();
    sqlx::query_scalar(
        "SELECT name FROM sqlite_schema WHERE type = 'trigger' AND tbl_name = ?1 ORDER BY name",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)
}

pub(crate) async fn preview(
    pool: &sqlx::SqlitePool,
    ctx: &WriteContext<'_>,
) -> Result<RawPreview, ReadError> {
    let mut conn = pool.acquire().await.map_err(db_error)?;
    let deadline = arm(&mut conn, ctx.timeout).await?;
    let out = preview_in(&mut conn, ctx).await;
    disarm(&mut conn, deadline, ctx.timeout, out).await
}

async fn preview_in(
    conn: &mut SqliteConnection,
    ctx: &WriteContext<'_>,
) -> Result<RawPreview, ReadError> {
    let cap = ctx.max_affected_rows as usize;
    let mut tx = conn.begin().await.map_err(db_error)?;
    let key_columns = keys(&mut tx, ctx).await?;
    key_assigned(ctx, &key_columns)?;
    let columns = preview_columns(ctx.write, &key_columns);
    let (before, ids) = match ctx.write.kind {
        WriteKind::Insert => (Vec::new(), Vec::new()),
        _ => {
            // The target rows' keys first: counted, and the write refused before it runs if
            // there are too many.
            let targets = ctx.write.select_targets(&key_columns, false);
            let found = collect(&mut tx, &targets, Collector::keys(cap + 1), false).await?;
            if found.seen > cap {
                return Err(super::too_many(found.seen as u64, ctx.max_affected_rows));
            }
            let ids = row_ids(&found.rows, &key_columns)?;
            let shown = ctx.write.select_targets(&columns, false);
            let before = collect(&mut tx, &shown, Collector::counting(cap + 1), false).await?;
            (before.rows, ids)
        }
    };
    let after = collect(
        &mut tx,
        &ctx.write.returning(&columns),
        Collector::counting(cap + 1),
        false,
    )
    .await?;
    let triggers = triggers(&mut tx, ctx).await?;
    let cascades = cascades(&mut tx, ctx).await?;
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

/// Tables whose foreign keys act on this one's changes (cascade, set null, set default).
async fn cascades(
    conn: &mut SqliteConnection,
    ctx: &WriteContext<'_>,
) -> Result<Vec<String>, ReadError> {
    let table = ctx.write.table_name.last().cloned().unwrap_or_default();
    sqlx::query_scalar(
        "SELECT DISTINCT m.name FROM sqlite_schema m, pragma_foreign_key_list(m.name) f \
         WHERE m.type = 'table' AND f.\"table\" = ?1 COLLATE NOCASE \
         AND (f.on_delete IN ('CASCADE', 'SET NULL', 'SET DEFAULT') \
              OR f.on_update IN ('CASCADE', 'SET NULL', 'SET DEFAULT')) ORDER BY 1",
    )
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)
}

pub(crate) async fn execute(
    pool: &sqlx::SqlitePool,
    ctx: &WriteContext<'_>,
    idempotency_key: &str,
    expected: &Expected,
) -> Result<Executed, ReadError> {
    let mut conn = pool.acquire().await.map_err(db_error)?;
    let deadline = arm(&mut conn, ctx.timeout).await?;
    let out = execute_in(&mut conn, ctx, idempotency_key, expected).await;
    disarm(&mut conn, deadline, ctx.timeout, out).await
}

async fn execute_in(
    conn: &mut SqliteConnection,
    ctx: &WriteContext<'_>,
    idempotency_key: &str,
    expected: &Expected,
) -> Result<Executed, ReadError> {
    prepare_table(conn).await.map_err(db_error)?;
    // IMMEDIATE: the write lock first, so nothing changes between the check and the write, and
    // a settlement waits for this transaction to end.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
    if let Some(seen) = recorded(&mut tx, idempotency_key).await.map_err(db_error)? {
        return seen.replay(expected);
    }
    let key_columns = keys(&mut tx, ctx).await?;
    key_assigned(ctx, &key_columns)?;
    // Validated, and approved by a verified signature over exactly these arguments;
    // `RETURNING` the keys of the rows it changed, checked before commit.
    let changed = collect(
        &mut tx,
        &ctx.write.returning(&key_columns),
        Collector::keys(ctx.max_affected_rows as usize + 1),
        false,
    )
    .await?;
    let rows = super::check_returned(ctx, expected, &changed, &key_columns)?;
    record(&mut tx, idempotency_key, APPLIED, Some(rows as i64))
        .await
        .map_err(db_error)?;
    tx.commit().await.map_err(db_error)?;
    Ok(Executed {
        rows_affected: rows,
        already_applied: false,
    })
}

/// Makes the idempotency table, or adds the columns an older version did not make (see
/// `IDEMPOTENCY_TABLE`).
async fn prepare_table(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let table = idempotency_table();
    sqlx::query(sqlx::AssertSqlSafe(super::create_idempotency_table(
        "key TEXT",
    )))
    .execute(&mut *conn)
    .await?;
    for definition in super::missing_columns(&table_columns(conn).await?) {
        let added = sqlx::query(sqlx::AssertSqlSafe(format!(
            "ALTER TABLE {table} ADD COLUMN {definition}"
        )))
        .execute(&mut *conn)
        .await;
        // Another process may have added it first: an error only if it is still missing.
        if let Err(e) = added
            && super::missing_columns(&table_columns(conn).await?).contains(&definition)
        {
            return Err(e);
        }
    }
    Ok(())
}

async fn table_columns(conn: &mut SqliteConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM pragma_table_info(?1)")
        .bind(idempotency_table())
        .fetch_all(&mut *conn)
        .await
}

/// What the idempotency table records for the key.
async fn recorded(
    conn: &mut SqliteConnection,
    idempotency_key: &str,
) -> Result<Option<Recorded>, sqlx::Error> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM {} WHERE key = ?1",
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

/// Records the key with its outcome.
async fn record(
    conn: &mut SqliteConnection,
    idempotency_key: &str,
    outcome: &str,
    rows_affected: Option<i64>,
) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {} (key, applied_at, outcome, rows_affected) VALUES (?1, ?2, ?3, ?4)",
        idempotency_table()
    )))
    .bind(idempotency_key)
    .bind(now_millis())
    .bind(outcome)
    .bind(rows_affected)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What the idempotency table records for the key, read without waiting for anything.
pub(crate) async fn lookup(
    pool: &sqlx::SqlitePool,
    idempotency_key: &str,
) -> Result<Option<Recorded>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    recorded(&mut conn, idempotency_key).await
}

/// Whether `e` says the idempotency table does not exist.
pub(crate) fn missing_table(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.message().starts_with("no such table"))
}

/// The fence of a settlement: under the write lock (`BEGIN IMMEDIATE`, which waits the busy
/// timeout, the statement timeout, for a write still holding it), records the key as
/// `fenced` unless it is recorded; what was recorded before (`None`: fenced now).
pub(crate) async fn fence(
    pool: &sqlx::SqlitePool,
    idempotency_key: &str,
    wait: Duration,
) -> Result<Option<Recorded>, ReadError> {
    // One write connection: a write of this process holding it is still in progress.
    let mut conn = tokio::time::timeout(wait, pool.acquire())
        .await
        .map_err(|_| ReadError::InProgress(wait))?
        .map_err(db_error)?;
    let deadline = arm(&mut conn, wait).await?;
    let out = fence_in(&mut conn, idempotency_key)
        .await
        .map_err(|e| in_progress_or(e, wait));
    disarm(&mut conn, deadline, wait, out).await
}

async fn fence_in(
    conn: &mut SqliteConnection,
    idempotency_key: &str,
) -> Result<Option<Recorded>, sqlx::Error> {
    prepare_table(conn).await?;
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await?;
    let seen = recorded(&mut tx, idempotency_key).await?;
    if seen.is_none() {
        record(&mut tx, idempotency_key, FENCED, None).await?;
    }
    tx.commit().await?;
    Ok(seen)
}

/// A busy or locked database (another connection holds the write lock past the wait) is a
/// write still in progress.
fn in_progress_or(e: sqlx::Error, wait: Duration) -> ReadError {
    match &e {
        sqlx::Error::Database(d)
            if d.code()
                .and_then(|c| c.parse::<i32>().ok())
                .is_some_and(|c| matches!(c & 0xff, 5 | 6)) =>
        {
            ReadError::InProgress(wait)
        }
        _ => db_error(e),
    }
}

/// Which of `keys` (policy keys) name the written table: SQLite's `main.t` is `t` (the tools
/// make no temporary tables and attach nothing), and names ignore ASCII case.
pub(crate) fn same_table(write: &ValidatedWrite, keys: &[String]) -> Vec<String> {
    fn plain(name: &str) -> String {
        let lower = name.to_ascii_lowercase();
        match lower.strip_prefix("main.") {
            Some(t) => t.to_owned(),
            None => lower,
        }
    }
    let target = plain(&write.table_name.join("."));
    keys.iter()
        .filter(|k| plain(k) == target)
        .cloned()
        .collect()
}

/// A SQLite row as a JSON object, by each value's storage class.
fn sqlite_row(row: &sqlx::sqlite::SqliteRow) -> Value {
    let mut out = Map::new();
    for (i, col) in row.columns().iter().enumerate() {
        let class = row
            .try_get_raw(i)
            .map(|v| {
                if v.is_null() {
                    "NULL".to_owned()
                } else {
                    v.type_info().name().to_owned()
                }
            })
            .unwrap_or_else(|_| "NULL".into());
        let value = match class.as_str() {
            "NULL" => Value::Null,
            "INTEGER" | "BOOLEAN" => row
                .try_get::<i64, _>(i)
                .map(Value::from)
                .unwrap_or(Value::Null),
            "REAL" => row
                .try_get::<f64, _>(i)
                .map(Value::from)
                .unwrap_or(Value::Null),
            "BLOB" => row
                .try_get::<Vec<u8>, _>(i)
                .map(|b| Value::from(format!("<{} bytes>", b.len())))
                .unwrap_or(Value::Null),
            _ => row
                .try_get::<String, _>(i)
                .map(Value::from)
                .unwrap_or(Value::Null),
        };
        out.insert(col.name().to_owned(), value);
    }
    Value::Object(out)
}
