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
    APPLIED, Class, Collector, Described, Executed, Expected, FENCED, MAX_RESULT_BYTES, Opened,
    RawPreview, ReadError, Recorded, WriteContext, check_rows, db_error, idempotency_table,
    key_assigned, no_primary_key, now_millis, row_ids,
};
use crate::sql::{ValidatedWrite, WriteKind};
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
            // A transaction is opened with `START TRANSACTION`, and a future dropped before
            // its ROLLBACK (a client that went away during a preview) would hand the next
            // user an open transaction, which its own `START TRANSACTION` commits: a write
            // nobody approved. Every connection coming back is rolled back first (a no-op
            // after COMMIT or ROLLBACK); if that fails, it is closed.
            .after_release(|conn, _| {
                Box::pin(
                    async move { Ok(sqlx::query("ROLLBACK").execute(&mut *conn).await.is_ok()) },
                )
            })
            .connect_lazy_with(write_options)
    });
    Ok((read, write))
}

/// A MySQL/MariaDB error by its error number and SQLSTATE, with the name of the key or
/// constraint it names; never the rest of its message (`Duplicate entry 'Margaret
/// Hamilton-2' for key 'uq'`, `Incorrect integer value: '…'`, a trigger's `SIGNAL` text).
pub(crate) fn describe(e: &sqlx::mysql::MySqlDatabaseError) -> Described {
    let number = e.number();
    let message = e.message();
    let code = match e.code() {
        Some(state) => format!("SQLSTATE {state}, error {number}"),
        None => format!("error {number}"),
    };
    let class = match number {
        // ER_DUP_KEY, ER_DUP_ENTRY, ER_DUP_UNIQUE, ER_DUP_ENTRY_WITH_KEY_NAME,
        // ER_DUP_UNKNOWN_IN_INDEX.
        1022 | 1062 | 1169 | 1586 | 1859 => Class::Unique,
        // ER_NO_REFERENCED_ROW(_2), ER_ROW_IS_REFERENCED(_2).
        1216 | 1217 | 1451 | 1452 => Class::ForeignKey,
        // ER_BAD_NULL_ERROR, ER_NO_DEFAULT_FOR_FIELD.
        1048 | 1364 => Class::NotNull,
        // MySQL's ER_CHECK_CONSTRAINT_VIOLATED; MariaDB's ER_CONSTRAINT_FAILED (MySQL uses
        // 4025 for something else, under another SQLSTATE).
        3819 => Class::Check,
        4025 if e.code() == Some("23000") => Class::Check,
        // ER_WARN_DATA_OUT_OF_RANGE, ER_DATA_TOO_LONG, ER_DATA_OUT_OF_RANGE.
        1264 | 1406 | 1690 => Class::OutOfRange,
        // Truncated/incorrect values, data truncated.
        1265 | 1292 | 1366 | 1367 => Class::InvalidValue,
        1365 => Class::DivisionByZero,
        1242 => Class::Cardinality,
        1213 => Class::Deadlock,
        1205 => Class::LockTimeout,
        // MariaDB's max_statement_time, MySQL's max_execution_time, a query interrupted.
        1969 | 3024 | 1317 => Class::StatementTimeout,
        // Table, column, database, routine and global privileges.
        1044 | 1142 | 1143 | 1227 | 1370 => Class::PermissionDenied,
        1045 | 1698 => Class::Login,
        // ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION, --read-only, a read-only table.
        1792 | 1290 | 1036 => Class::ReadOnly,
        1064 | 1149 => Class::Syntax,
        1146 => Class::UndefinedTable,
        1054 => Class::UndefinedColumn,
        1305 | 1630 => Class::UndefinedFunction,
        // ER_SIGNAL_EXCEPTION and friends: a trigger's or procedure's SIGNAL, whatever
        // SQLSTATE it chose.
        1642..=1644 => Class::Raised,
        _ => super::sqlstate_class(e.code().unwrap_or_default()),
    };
    let mut d = Described::new(class, code);
    d.constraint = match number {
        // `… for key 'uq'` comes last, after the entry (which a value may make look like
        // anything): only what follows its last occurrence, and only a name.
        1062 | 1586 => message
            .rfind(" for key '")
            .map(|i| &message[i + " for key '".len()..])
            .and_then(|rest| rest.strip_suffix('\''))
            .filter(|name| !name.contains('\''))
            .map(str::to_owned),
        // `… a foreign key constraint fails (`db`.`t`, CONSTRAINT `fk` FOREIGN KEY …)`: no
        // values in it.
        1451 | 1452 => between(message, "CONSTRAINT `", "`"),
        // MariaDB: `CONSTRAINT `c` failed for `db`.`t``.
        4025 => between(message, "CONSTRAINT `", "`"),
        // MySQL: `Check constraint 'c' is violated.`
        3819 => between(message, "constraint '", "'"),
        _ => None,
    }
    .filter(|name| !name.is_empty());
    d
}

/// The text between the first `open` and the next `close`.
fn between(message: &str, open: &str, close: &str) -> Option<String> {
    let start = message.find(open)? + open.len();
    let len = message[start..].find(close)?;
    Some(message[start..start + len].to_owned())
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
fn table_parts(write: &ValidatedWrite) -> (Option<String>, String) {
    match write.table_name.as_slice() {
        [s, t] => (Some(s.clone()), t.clone()),
        [.., t] => (None, t.clone()),
        [] => (None, String::new()),
    }
}

async fn keys(
    conn: &mut MySqlConnection,
    ctx: &WriteContext<'_>,
) -> Result<Vec<String>, ReadError> {
    let (schema, table) = table_parts(ctx.write);
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
    let (schema, table) = table_parts(ctx.write);
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
    let (schema, table) = table_parts(ctx.write);
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
    let (schema, table) = table_parts(ctx.write);
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
    prepare_table(&mut conn)
        .await
        .map_err(|e| timeout_or(e, ctx.timeout))?;
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
    // The key first: a settlement now waits for this transaction, and a fence or a run that
    // recorded the key before stops this one here.
    if let Some(seen) = claim(conn, idempotency_key, APPLIED)
        .await
        .map_err(|e| timeout_or(e, ctx.timeout))?
    {
        return seen.replay(expected);
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
        "UPDATE {} SET rows_affected = ? WHERE `key` = ?",
        idempotency_table()
    )))
    .bind(rows as i64)
    .bind(idempotency_key)
    .execute(&mut *conn)
    .await
    .map_err(db_error)?;
    Ok(Executed {
        rows_affected: rows,
        already_applied: false,
    })
}

/// Makes the idempotency table, or adds the columns an older version did not make (see
/// `IDEMPOTENCY_TABLE`); DDL, so outside any transaction (the session's `lock_wait_timeout`
/// bounds its wait for the table).
async fn prepare_table(conn: &mut MySqlConnection) -> Result<(), sqlx::Error> {
    let table = idempotency_table();
    sqlx::query(sqlx::AssertSqlSafe(super::create_idempotency_table(
        "`key` VARCHAR(191)",
    )))
    .execute(&mut *conn)
    .await?;
    let missing = super::missing_columns(&table_columns(conn).await?);
    if missing.is_empty() {
        return Ok(());
    }
    let adds: Vec<String> = missing.iter().map(|d| format!("ADD COLUMN {d}")).collect();
    let added = sqlx::query(sqlx::AssertSqlSafe(format!(
        "ALTER TABLE {table} {}",
        adds.join(", ")
    )))
    .execute(&mut *conn)
    .await;
    // Another connection may have added them first: an error only if some are still missing.
    match added {
        Err(e) if !super::missing_columns(&table_columns(conn).await?).is_empty() => Err(e),
        _ => Ok(()),
    }
}

async fn table_columns(conn: &mut MySqlConnection) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT CAST(column_name AS CHAR) FROM information_schema.columns \
         WHERE table_schema = DATABASE() AND table_name = ?",
    )
    .bind(idempotency_table())
    .fetch_all(&mut *conn)
    .await
}

/// Records the key with `outcome` unless a row holds it, waiting for a transaction that holds
/// it uncommitted to end; what was recorded before (`None`: recorded now). A plain `INSERT`
/// whose duplicate-key error is caught, not `INSERT IGNORE`, which would also turn a key cut to
/// the column's length into a warning.
async fn claim(
    conn: &mut MySqlConnection,
    idempotency_key: &str,
    outcome: &str,
) -> Result<Option<Recorded>, sqlx::Error> {
    let inserted = sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {} (`key`, applied_at, outcome, rows_affected) VALUES (?, ?, ?, NULL)",
        idempotency_table()
    )))
    .bind(idempotency_key)
    .bind(now_millis())
    .bind(outcome)
    .execute(&mut *conn)
    .await;
    match inserted {
        Ok(_) => Ok(None),
        // Held by a committed row (only the statement failed; the transaction goes on).
        Err(sqlx::Error::Database(d)) if d.is_unique_violation() => {
            match recorded(conn, idempotency_key, true).await? {
                Some(r) => Ok(Some(r)),
                None => Err(sqlx::Error::Protocol(super::KEY_ROW_MISSING.into())),
            }
        }
        Err(e) => Err(e),
    }
}

/// What the idempotency table records for the key; with `lock`, the latest committed row
/// (a locking read), whatever the transaction's snapshot.
async fn recorded(
    conn: &mut MySqlConnection,
    idempotency_key: &str,
    lock: bool,
) -> Result<Option<Recorded>, sqlx::Error> {
    let lock = if lock { " LOCK IN SHARE MODE" } else { "" };
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT * FROM {} WHERE `key` = ?{lock}",
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
    pool: &sqlx::MySqlPool,
    idempotency_key: &str,
) -> Result<Option<Recorded>, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    recorded(&mut conn, idempotency_key, false).await
}

/// Whether `e` says the idempotency table does not exist (`ER_NO_SUCH_TABLE`, SQLSTATE 42S02).
pub(crate) fn missing_table(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.code().as_deref() == Some("42S02"))
}

/// The fence of a settlement: records the key as `fenced` unless a row holds it, after the
/// transaction that holds it uncommitted ended, waiting at most the session's lock-wait and
/// statement timeouts (the statement timeout); what was recorded before (`None`: fenced now).
pub(crate) async fn fence(
    pool: &sqlx::MySqlPool,
    idempotency_key: &str,
    wait: Duration,
) -> Result<Option<Recorded>, ReadError> {
    // One write connection: a write of this process holding it is still in progress.
    let mut conn = match tokio::time::timeout(wait, pool.acquire()).await {
        Err(_) | Ok(Err(sqlx::Error::PoolTimedOut)) => return Err(ReadError::InProgress(wait)),
        Ok(c) => c.map_err(db_error)?,
    };
    prepare_table(&mut conn)
        .await
        .map_err(|e| in_progress_or(e, wait))?;
    sqlx::query("START TRANSACTION")
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    let out = claim(&mut conn, idempotency_key, FENCED)
        .await
        .map_err(|e| in_progress_or(e, wait));
    let end = if out.is_ok() { "COMMIT" } else { "ROLLBACK" };
    sqlx::query(end)
        .execute(&mut *conn)
        .await
        .map_err(db_error)?;
    out
}

/// A lock wait or statement cut at the timeout: the transaction holding the key is still
/// running.
fn in_progress_or(e: sqlx::Error, wait: Duration) -> ReadError {
    match timeout_or(e, wait) {
        ReadError::Timeout(_) => ReadError::InProgress(wait),
        other => other,
    }
}

/// Which of `keys` (policy keys) name the written table: `db.t` is `t` in the connection's
/// current database (compared ignoring ASCII case, which only finds more of them).
pub(crate) async fn same_table(
    pool: &sqlx::MySqlPool,
    write: &ValidatedWrite,
    keys: &[String],
) -> Result<Vec<String>, ReadError> {
    let current: Option<String> = sqlx::query_scalar("SELECT CAST(DATABASE() AS CHAR)")
        .fetch_one(pool)
        .await
        .map_err(db_error)?;
    let current = current.unwrap_or_default();
    let full = |schema: Option<&str>, table: &str| {
        format!("{}.{table}", schema.unwrap_or(&current)).to_ascii_lowercase()
    };
    let (schema, table) = table_parts(write);
    let target = full(schema.as_deref(), &table);
    Ok(keys
        .iter()
        .filter(|k| match k.split_once('.') {
            Some((s, t)) => full(Some(s), t) == target,
            None => full(None, k) == target,
        })
        .cloned()
        .collect())
}
