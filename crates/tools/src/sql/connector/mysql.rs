//! MySQL and MariaDB. Every connection gets a fixed `sql_mode` (`NO_BACKSLASH_ESCAPES`, so a
//! string prints and parses the same on both sides; `PIPES_AS_CONCAT`, as the parser reads
//! `||`; never `ANSI_QUOTES`), the statement timeout (`max_statement_time` on MariaDB,
//! `max_execution_time` on MySQL, and the lock-wait timeouts), and a bounded `GROUP_CONCAT`.
//! Read connections are `READ ONLY` sessions and each read runs in `START TRANSACTION READ
//! ONLY`. Each row is turned into JSON and cut on the server (`JSON_OBJECT`), then streamed.
//!
//! MySQL has no `UPDATE … RETURNING`: a write locks its target rows (`SELECT … FOR UPDATE`),
//! compares their keys with the preview's, then runs; its affected-row count (the client asks
//! for found rows) must equal theirs.

use super::{
    Collector, Executed, Expected, MAX_RESULT_BYTES, Opened, RawPreview, ReadError, WriteContext,
    check_rows, db_error, idempotency_table, key_assigned, no_primary_key, now_millis, row_ids,
};
use crate::sql::WriteKind;
use futures_util::TryStreamExt;
use serde_json::Value;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlPoolOptions};
use sqlx::{Column, Executor, Statement};
use std::str::FromStr;
use std::time::Duration;

/// Session settings every tool connection gets.
async fn configure(
    conn: &mut MySqlConnection,
    timeout: Duration,
    read_only: bool,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SET SESSION sql_mode = 'PIPES_AS_CONCAT,NO_BACKSLASH_ESCAPES,NO_ENGINE_SUBSTITUTION,STRICT_ALL_TABLES'",
    )
    .execute(&mut *conn)
    .await?;
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut *conn)
        .await?;
    let secs = timeout.as_secs_f64().max(0.001);
    let limit = if version.to_ascii_lowercase().contains("mariadb") {
        format!("SET SESSION max_statement_time = {secs:.3}")
    } else {
        format!(
            "SET SESSION max_execution_time = {}",
            timeout.as_millis().max(1)
        )
    };
    sqlx::query(sqlx::AssertSqlSafe(limit))
        .execute(&mut *conn)
        .await?;
    let wait = timeout.as_secs().max(1);
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SET SESSION innodb_lock_wait_timeout = {wait}, lock_wait_timeout = {wait}, group_concat_max_len = {MAX_RESULT_BYTES}"
    )))
    .execute(&mut *conn)
    .await?;
    if read_only {
        sqlx::query("SET SESSION TRANSACTION READ ONLY")
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

pub(crate) fn open(
    o: &Opened<'_>,
    url: &str,
    url_env: &str,
    writable: bool,
) -> Result<(sqlx::MySqlPool, Option<sqlx::MySqlPool>), String> {
    let name = o.name.to_owned();
    let options = MySqlConnectOptions::from_str(url)
        .map_err(|_| format!("databases.{name}: the URL in {url_env} is not valid"))?;
    let timeout = o.config.statement_timeout;
    let allowed = o.allowed.clone();
    let strict = o.config.strict_roles;
    let shared = o.shared_role();
    let read_name = name.clone();
    let read = MySqlPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(5))
        .after_connect(move |conn, _| {
            let allowed = allowed.clone();
            let name = read_name.clone();
            Box::pin(async move {
                configure(conn, timeout, true).await?;
                let findings = crate::sql::roles::check_mysql(conn, &allowed).await?;
                super::report_roles(&name, &findings, strict, shared)
            })
        })
        .connect_lazy_with(options.clone());
    let write_options = match o.write_url {
        Some(w) => MySqlConnectOptions::from_str(w)
            .map_err(|_| format!("databases.{}: the write URL is not valid", o.name))?,
        None => options.clone(),
    };
    let write = writable.then(|| {
        MySqlPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move { configure(conn, timeout, false).await })
            })
            .connect_lazy_with(write_options)
    });
    Ok((read, write))
}

fn timeout_or(e: sqlx::Error, timeout: Duration) -> ReadError {
    match &e {
        // MariaDB 1969 (max_statement_time), MySQL 3024 (max_execution_time), 1205 (lock wait).
        sqlx::Error::Database(d)
            if matches!(d.code().as_deref(), Some("HY000") | Some("70100"))
                && (d.message().contains("max_statement_time")
                    || d.message().contains("maximum statement execution time")
                    || d.message().contains("interrupted")) =>
        {
            ReadError::Timeout(timeout)
        }
        sqlx::Error::Database(d) if d.message().contains("Lock wait timeout") => {
            ReadError::Timeout(timeout)
        }
        _ => db_error(e),
    }
}

/// `'text'` with quotes doubled (the session has `NO_BACKSLASH_ESCAPES`).
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// `` `name` `` with backticks doubled.
fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `LEFT(JSON_OBJECT('a', q.`a`, …), n)` over `columns` of relation `q` (empty `q`: none).
fn json_projection(columns: &[String], qualifier: &str) -> String {
    let pairs: Vec<String> = columns
        .iter()
        .map(|c| {
            let col = if qualifier.is_empty() {
                ident(c)
            } else {
                format!("{qualifier}.{}", ident(c))
            };
            format!("{}, {col}", literal(c))
        })
        .collect();
    // As text whatever the values: binary ones would make the JSON binary too.
    format!(
        "CONVERT(LEFT(JSON_OBJECT({}), {}) USING utf8mb4)",
        pairs.join(", "),
        MAX_RESULT_BYTES + 1
    )
}

async fn stream(
    conn: &mut MySqlConnection,
    sql: String,
    binds: &[Value],
    mut out: Collector,
    timeout: Duration,
) -> Result<Collector, ReadError> {
    let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
    for b in binds {
        q = match b {
            Value::Number(n) if n.is_i64() => q.bind(n.as_i64()),
            Value::Number(n) if n.is_u64() => q.bind(n.as_u64()),
            Value::Number(n) => q.bind(n.as_f64()),
            Value::String(s) => q.bind(s.clone()),
            other => q.bind(other.to_string()),
        };
    }
    let mut rows = q.fetch(&mut *conn);
    while let Some(text) = rows.try_next().await.map_err(|e| timeout_or(e, timeout))? {
        if !out.push_text(&text) {
            break;
        }
    }
    Ok(out)
}

pub(crate) async fn read(
    pool: &sqlx::MySqlPool,
    sql: &str,
    timeout: Duration,
    max_rows: usize,
) -> Result<Collector, ReadError> {
    let mut conn = pool.acquire().await.map_err(db_error)?;
    sqlx::query("START TRANSACTION READ ONLY")
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    let out = read_in(&mut conn, sql, timeout, max_rows).await;
    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    out
}

async fn read_in(
    conn: &mut MySqlConnection,
    sql: &str,
    timeout: Duration,
    max_rows: usize,
) -> Result<Collector, ReadError> {
    // Validated just before; its columns name the JSON fields.
    let statement = (&mut *conn)
        .prepare(sqlx::SqlSafeStr::into_sql_str(sqlx::AssertSqlSafe(
            sql.to_owned(),
        )))
        .await
        .map_err(|e| timeout_or(e, timeout))?;
    let columns: Vec<String> = statement
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    if super::has_duplicates(columns.iter().map(String::as_str)) {
        return Err(super::duplicate_columns());
    }
    let wrapped = format!(
        "SELECT {} FROM ({sql}) AS q",
        json_projection(&columns, "q")
    );
    stream(conn, wrapped, &[], Collector::new(max_rows), timeout).await
}

/// Every column of a table (lower case); empty if unknown.
pub(crate) async fn columns_of(
    pool: &sqlx::MySqlPool,
    key: &str,
) -> Result<std::collections::BTreeSet<String>, sqlx::Error> {
    let (schema, table) = match key.split_once('.') {
        Some((s, t)) => (Some(s), t),
        None => (None, key),
    };
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(column_name AS CHAR) FROM information_schema.columns \
         WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ?",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(pool)
    .await?;
    if names.is_empty() {
        return Ok(Default::default());
    }
    // `_rowid` names an integer primary key in MySQL and MariaDB.
    Ok(names
        .into_iter()
        .map(|n| n.to_ascii_lowercase())
        .chain(["_rowid".to_owned()])
        .collect())
}

/// `[schema,] table` of the write, for the catalog (`None` schema: the current database).
fn table_parts(ctx: &WriteContext<'_>) -> (Option<String>, String) {
    match ctx.write.table_name.as_slice() {
        [s, t] => (Some(s.clone()), t.clone()),
        [.., t] => (None, t.clone()),
        [] => (None, String::new()),
    }
}

async fn keys(
    conn: &mut MySqlConnection,
    ctx: &WriteContext<'_>,
) -> Result<Vec<String>, ReadError> {
    let (schema, table) = table_parts(ctx);
    let keys: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(column_name AS CHAR) FROM information_schema.key_column_usage \
         WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ? \
         AND constraint_name = 'PRIMARY' ORDER BY ordinal_position",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(keys)
}

async fn all_columns(
    conn: &mut MySqlConnection,
    ctx: &WriteContext<'_>,
) -> Result<Vec<String>, ReadError> {
    let (schema, table) = table_parts(ctx);
    sqlx::query_scalar(
        "SELECT CAST(column_name AS CHAR) FROM information_schema.columns \
         WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ? ORDER BY ordinal_position",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)
}

async fn triggers(
    conn: &mut MySqlConnection,
    ctx: &WriteContext<'_>,
) -> Result<Vec<String>, ReadError> {
    let (schema, table) = table_parts(ctx);
    sqlx::query_scalar(
        "SELECT CAST(trigger_name AS CHAR) FROM information_schema.triggers \
         WHERE event_object_schema = COALESCE(?, DATABASE()) AND event_object_table = ? ORDER BY 1",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)
}

/// The keys (required for `UPDATE`/`DELETE`) and the columns a preview shows.
async fn columns(
    conn: &mut MySqlConnection,
    ctx: &WriteContext<'_>,
) -> Result<(Vec<String>, Vec<String>), ReadError> {
    let keys = keys(conn, ctx).await?;
    if keys.is_empty() && ctx.write.kind != WriteKind::Insert {
        return Err(no_primary_key(&ctx.write.table));
    }
    key_assigned(ctx, &keys)?;
    let mut shown = keys.clone();
    let rest = match &ctx.write.visible_columns {
        Some(v) => v.iter().cloned().collect(),
        None => all_columns(conn, ctx).await?,
    };
    shown.extend(
        rest.into_iter()
            .filter(|c| !keys.iter().any(|k| k.eq_ignore_ascii_case(c))),
    );
    Ok((keys, shown))
}

/// `SELECT … FROM table WHERE key = ? … OR …` and its bind values, for rows by their keys.
fn by_keys(
    ctx: &WriteContext<'_>,
    projection: &str,
    keys: &[String],
    ids: &[Value],
) -> (String, Vec<Value>) {
    let mut binds = Vec::new();
    let mut conditions = Vec::new();
    for id in ids {
        let values = id.as_array().cloned().unwrap_or_default();
        let parts: Vec<String> = keys.iter().map(|k| format!("{} = ?", ident(k))).collect();
        binds.extend(values);
        conditions.push(format!("({})", parts.join(" AND ")));
    }
    let filter = if conditions.is_empty() {
        "FALSE".to_owned()
    } else {
        conditions.join(" OR ")
    };
    (
        format!(
            "SELECT {projection} FROM {} WHERE {filter}",
            ctx.write.target_sql()
        ),
        binds,
    )
}

pub(crate) async fn preview(
    pool: &sqlx::MySqlPool,
    ctx: &WriteContext<'_>,
) -> Result<RawPreview, ReadError> {
    let mut conn = pool.acquire().await.map_err(db_error)?;
    sqlx::query("START TRANSACTION")
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    let out = preview_in(&mut conn, ctx).await;
    let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
    out
}

async fn preview_in(
    conn: &mut MySqlConnection,
    ctx: &WriteContext<'_>,
) -> Result<RawPreview, ReadError> {
    let cap = ctx.max_affected_rows as usize;
    let (keys, shown) = columns(conn, ctx).await?;
    let projection = json_projection(&shown, "");
    let (before, ids) = match ctx.write.kind {
        WriteKind::Insert => (Vec::new(), Vec::new()),
        _ => {
            // The target rows' keys first, locked: counted, and the write refused before it
            // runs if there are too many.
            let found = stream(
                conn,
                ctx.write
                    .select_projection(&json_projection(&keys, ""), true),
                &[],
                Collector::keys(cap + 1),
                ctx.timeout,
            )
            .await?;
            if found.seen > cap {
                return Err(super::too_many(found.seen as u64, ctx.max_affected_rows));
            }
            let ids = row_ids(&found.rows, &keys)?;
            let before = stream(
                conn,
                ctx.write.select_projection(&projection, false),
                &[],
                Collector::counting(cap + 1),
                ctx.timeout,
            )
            .await?;
            (before.rows, ids)
        }
    };
    let mariadb = is_mariadb(conn).await?;
    // Validated; rolled back by the caller. MariaDB returns inserted rows (`RETURNING` comes
    // last in an INSERT); MySQL has no RETURNING: its preview shows the statement's values.
    let (rows_affected, inserted) = if ctx.write.kind == WriteKind::Insert && mariadb {
        let returning = format!("{} RETURNING {projection}", ctx.write.sql);
        let out = stream(
            conn,
            returning,
            &[],
            Collector::counting(cap + 1),
            ctx.timeout,
        )
        .await?;
        (out.seen as u64, out.rows)
    } else {
        let done = sqlx::query(sqlx::AssertSqlSafe(ctx.write.sql.clone()))
            .execute(&mut *conn)
            .await
            .map_err(|e| timeout_or(e, ctx.timeout))?;
        (done.rows_affected(), Vec::new())
    };
    let after = match ctx.write.kind {
        WriteKind::Update => {
            let (sql, binds) = by_keys(ctx, &projection, &keys, &ids);
            stream(conn, sql, &binds, Collector::counting(cap + 1), ctx.timeout)
                .await?
                .rows
        }
        WriteKind::Insert => inserted,
        WriteKind::Delete => Vec::new(),
    };
    let triggers = triggers(conn, ctx).await?;
    let (schema, table) = table_parts(ctx);
    let cascades: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT CAST(table_name AS CHAR) FROM information_schema.referential_constraints \
         WHERE constraint_schema = COALESCE(?, DATABASE()) AND referenced_table_name = ? \
         AND (delete_rule IN ('CASCADE', 'SET NULL', 'SET DEFAULT') \
              OR update_rule IN ('CASCADE', 'SET NULL', 'SET DEFAULT')) ORDER BY 1",
    )
    .bind(schema)
    .bind(table)
    .fetch_all(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(RawPreview {
        rows_affected,
        row_ids: ids,
        before,
        after,
        key_columns: keys,
        triggers,
        cascades,
    })
}

async fn is_mariadb(conn: &mut MySqlConnection) -> Result<bool, ReadError> {
    let version: String = sqlx::query_scalar("SELECT VERSION()")
        .fetch_one(&mut *conn)
        .await
        .map_err(db_error)?;
    Ok(version.to_ascii_lowercase().contains("mariadb"))
}

pub(crate) async fn execute(
    pool: &sqlx::MySqlPool,
    ctx: &WriteContext<'_>,
    idempotency_key: &str,
    expected: &Expected,
) -> Result<Executed, ReadError> {
    let mut conn = pool.acquire().await.map_err(db_error)?;
    // DDL commits implicitly in MySQL: before the transaction.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE IF NOT EXISTS {} (`key` VARCHAR(191) PRIMARY KEY, applied_at BIGINT NOT NULL)",
        idempotency_table()
    )))
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    sqlx::query("START TRANSACTION")
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    let out = execute_in(&mut conn, ctx, idempotency_key, expected).await;
    let end = if matches!(
        out,
        Ok(Executed {
            already_applied: false,
            ..
        })
    ) {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    sqlx::query(end)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    out
}

async fn execute_in(
    conn: &mut MySqlConnection,
    ctx: &WriteContext<'_>,
    idempotency_key: &str,
    expected: &Expected,
) -> Result<Executed, ReadError> {
    let table = idempotency_table();
    let seen: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT applied_at FROM {table} WHERE `key` = ?"
    )))
    .bind(idempotency_key)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_error)?;
    if seen.is_some() {
        return Ok(Executed {
            rows_affected: expected.rows_affected,
            already_applied: true,
        });
    }
    let keys = keys(conn, ctx).await?;
    if keys.is_empty() && ctx.write.kind != WriteKind::Insert {
        return Err(no_primary_key(&ctx.write.table));
    }
    key_assigned(ctx, &keys)?;
    let locked = match ctx.write.kind {
        WriteKind::Insert => None,
        _ => {
            let found = stream(
                conn,
                ctx.write
                    .select_projection(&json_projection(&keys, ""), true),
                &[],
                Collector::keys(ctx.max_affected_rows as usize + 1),
                ctx.timeout,
            )
            .await?;
            let ids = row_ids(&found.rows, &keys)?;
            check_rows(ctx, expected, Some(&ids), found.seen as u64)?;
            Some(ids.len() as u64)
        }
    };
    // Validated, and approved by a verified signature over exactly these arguments; its
    // target rows are locked and match the preview's.
    let done = sqlx::query(sqlx::AssertSqlSafe(ctx.write.sql.clone()))
        .execute(&mut *conn)
        .await
        .map_err(|e| timeout_or(e, ctx.timeout))?;
    let rows = done.rows_affected();
    match locked {
        Some(n) if n != rows => {
            return Err(super::changed_since_preview(&format!(
                "{rows} rows changed, {n} were locked"
            )));
        }
        None => check_rows(ctx, expected, None, rows)?,
        _ => {}
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {table} (`key`, applied_at) VALUES (?, ?)"
    )))
    .bind(idempotency_key)
    .bind(now_millis())
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(Executed {
        rows_affected: rows,
        already_applied: false,
    })
}

pub(crate) async fn was_applied(
    pool: &sqlx::MySqlPool,
    idempotency_key: &str,
) -> Result<bool, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {} WHERE `key` = ?",
        idempotency_table()
    )))
    .bind(idempotency_key)
    .fetch_one(pool)
    .await?;
    Ok(n > 0)
}
