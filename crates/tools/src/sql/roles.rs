//! What the `sql_query` connection may do, checked against the database's own catalog.
//!
//! Defence in depth: the read policy (`validate`) lets only allow-listed `SELECT`s through,
//! and reads run in read-only transactions, but the role behind the connection is the last
//! wall. [`check_postgres`] and [`check_mysql`] list every power a read-only tool connection
//! should not hold (superuser, write privileges, reads outside the allow-list, file, program
//! and server-admin powers), so Warden can warn loudly at start-up and on each new
//! connection, or refuse with `strict_roles = true`.
//!
//! The roles counted are every one the connection could act as, not only the current one: on
//! PostgreSQL every role the session user is a member of (`pg_has_role(.., 'MEMBER')`, so
//! `NOINHERIT` memberships too, since `SET ROLE` reaches them); on MySQL/MariaDB the user's
//! own grants, its enabled roles and `PUBLIC`, plus a finding naming any granted role whose
//! privileges this check could not see (see [`check_mysql`]).
//!
//! Every statement here is Warden's own `&'static str` catalog query; every value is bound.
//! A finding's detail names roles, privileges and tables, never a password or a URL.

use sqlx::{MySqlConnection, PgConnection, Row};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// `what` of a [`RoleFinding`]: the connection is, or may become, a superuser (PostgreSQL
/// `rolsuper`; MySQL `SUPER` or `ALL PRIVILEGES` on `*.*`). Reported alone: every other
/// check is moot.
pub const SUPERUSER: &str = "superuser";
/// `what`: the connection may change data (`INSERT`/`UPDATE`/`DELETE`/`TRUNCATE`, and on
/// MySQL DDL such as `CREATE`/`DROP`/`ALTER`) on some table, allow-listed or not.
pub const CAN_WRITE: &str = "can_write";
/// `what`: the connection may `SELECT` from tables outside the allow-list.
pub const READS_OUTSIDE_ALLOW_LIST: &str = "reads_outside_allow_list";
/// `what`: the connection may read or write files on the database server
/// (`pg_read_server_files`/`pg_write_server_files`; MySQL `FILE`).
pub const FILE_ACCESS: &str = "file_access";
/// `what`: the connection may run programs on the database server
/// (`pg_execute_server_program`: `COPY … FROM PROGRAM`).
pub const PROGRAM_EXECUTION: &str = "program_execution";
/// `what`: the connection holds server-administration powers: seeing or signalling other
/// sessions, replication, shutdown, server settings (`pg_monitor`, `pg_signal_backend`, …;
/// MySQL `PROCESS`, `SHUTDOWN`, `RELOAD`, `… ADMIN`, …).
pub const SERVER_ADMIN: &str = "server_admin";
/// `what`: the connection may create roles or users (`CREATEROLE`; MySQL `CREATE USER`).
pub const CREATE_ROLE: &str = "create_role";
/// `what`: the connection may create databases (PostgreSQL `CREATEDB`).
pub const CREATE_DB: &str = "create_db";
/// `what`: the connection bypasses row-level security (PostgreSQL `BYPASSRLS`).
pub const BYPASS_RLS: &str = "bypass_rls";
/// `what`: the connection may grant its privileges on (MySQL `GRANT OPTION`).
pub const GRANT_OPTION: &str = "grant_option";
/// `what`: a role is granted to the MySQL/MariaDB user whose privileges this check could not
/// see (not enabled on this connection, which could still `SET ROLE` to it).
pub const UNCHECKED_ROLE: &str = "unchecked_role";
/// `what`: a `SHOW GRANTS` line this check could not read (shown with quoted strings
/// redacted), so its privileges were not counted.
pub const UNRECOGNISED_GRANT: &str = "unrecognised_grant";

/// Names listed in one finding at most; the rest are counted.
const MAX_NAMES: usize = 20;

/// One thing the connection may do that a read-only tool connection should not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleFinding {
    /// Stable kind, one of this module's constants: [`SUPERUSER`], [`CAN_WRITE`],
    /// [`READS_OUTSIDE_ALLOW_LIST`], [`FILE_ACCESS`], [`PROGRAM_EXECUTION`],
    /// [`SERVER_ADMIN`], [`CREATE_ROLE`], [`CREATE_DB`], [`BYPASS_RLS`], [`GRANT_OPTION`],
    /// [`UNCHECKED_ROLE`], [`UNRECOGNISED_GRANT`].
    pub what: &'static str,
    /// What exactly: the roles, privileges and tables (at most 20 names, then a count).
    /// Never a password or a URL.
    pub detail: String,
}

impl fmt::Display for RoleFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.what, self.detail)
    }
}

fn finding(what: &'static str, detail: String) -> RoleFinding {
    RoleFinding { what, detail }
}

/// "a, b, c and 3 more".
fn names<I: IntoIterator<Item = String>>(items: I) -> String {
    names_joined(items, ", ")
}

/// Like [`names`], joined with `sep` (`"; "` where each item is itself a list).
fn names_joined<I: IntoIterator<Item = String>>(items: I, sep: &str) -> String {
    let all: Vec<String> = items.into_iter().collect();
    let mut shown = all
        .iter()
        .take(MAX_NAMES)
        .cloned()
        .collect::<Vec<_>>()
        .join(sep);
    if all.len() > MAX_NAMES {
        shown.push_str(&format!(" and {} more", all.len() - MAX_NAMES));
    }
    shown
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

/// Every role the session user may act as (itself, and its direct or indirect memberships),
/// with the attributes a read connection must not have.
const PG_ROLES: &str = "SELECT r.rolname::text, r.rolname = session_user, r.rolsuper, \
       r.rolcreaterole, r.rolcreatedb, r.rolbypassrls \
     FROM pg_catalog.pg_roles r \
     WHERE pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER') \
     ORDER BY 1";

/// Which of the predefined roles in `$1` the session user is a member of (the names are
/// matched against `pg_roles`, so roles an older server lacks are simply absent).
const PG_PREDEFINED: &str = "SELECT r.rolname::text FROM pg_catalog.pg_roles r \
     WHERE r.rolname = ANY($1) AND pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER') \
     ORDER BY 1";

/// The schema and name each unqualified allowed name in `$1` resolves to on this connection
/// (its `search_path`), as the validator's unqualified names do when they run.
const PG_RESOLVE: &str = "SELECT n.nspname::text, c.relname::text \
     FROM unnest($1::text[]) AS a(name) \
     JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(pg_catalog.quote_ident(a.name)) \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace";

/// Every table, view, materialized view, partitioned and foreign table outside the system
/// schemas, with whether any role the session may act as can read it (any column) and which
/// writes it may make (schema `USAGE` required, as the server requires it).
const PG_RELATIONS: &str = "WITH reach AS ( \
       SELECT r.oid FROM pg_catalog.pg_roles r \
       WHERE pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER') \
     ) \
     SELECT n.nspname::text, c.relname::text, \
       EXISTS (SELECT 1 FROM reach \
         WHERE pg_catalog.has_schema_privilege(reach.oid, n.oid, 'USAGE') \
           AND pg_catalog.has_any_column_privilege(reach.oid, c.oid, 'SELECT')), \
       ARRAY(SELECT w.p FROM unnest(ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE']) AS w(p) \
         WHERE c.relkind <> 'm' AND EXISTS (SELECT 1 FROM reach \
           WHERE pg_catalog.has_schema_privilege(reach.oid, n.oid, 'USAGE') \
             AND CASE WHEN w.p IN ('INSERT', 'UPDATE') \
               THEN pg_catalog.has_any_column_privilege(reach.oid, c.oid, w.p) \
               ELSE pg_catalog.has_table_privilege(reach.oid, c.oid, w.p) END)) \
     FROM pg_catalog.pg_class c \
     JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') \
       AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema' \
     ORDER BY 1, 2";

/// The predefined roles a read connection must not be a member of, and what each gives.
const PG_PREDEFINED_ROLES: &[(&str, &str)] = &[
    ("pg_read_server_files", FILE_ACCESS),
    ("pg_write_server_files", FILE_ACCESS),
    ("pg_execute_server_program", PROGRAM_EXECUTION),
    ("pg_read_all_data", READS_OUTSIDE_ALLOW_LIST),
    ("pg_write_all_data", CAN_WRITE),
    ("pg_monitor", SERVER_ADMIN),
    ("pg_read_all_settings", SERVER_ADMIN),
    ("pg_read_all_stats", SERVER_ADMIN),
    ("pg_stat_scan_tables", SERVER_ADMIN),
    ("pg_signal_backend", SERVER_ADMIN),
    ("pg_checkpoint", SERVER_ADMIN),
    ("pg_create_subscription", SERVER_ADMIN),
    ("pg_use_reserved_connections", SERVER_ADMIN),
];

/// Checks what a PostgreSQL connection may do beyond reading the allow-listed tables.
///
/// `allowed` holds the allow-listed tables, lower case, `table` or `schema.table`. An
/// unqualified name covers `public.table` (as the validator takes `public.t` for `t`) and the
/// table the name resolves to through this connection's `search_path`. Catalog names are
/// compared lower-cased, as the validator lower-cases the names it reads.
///
/// Counted for the session user and every role it is a member of, directly or indirectly:
/// `rolsuper` (reported alone), `rolcreaterole`, `rolcreatedb`, `rolbypassrls`; membership
/// in the predefined file, program, read-all/write-all and monitoring roles; `INSERT`,
/// `UPDATE`, `DELETE` or `TRUNCATE` on any table outside the system schemas (allow-listed
/// or not: a read connection should write nowhere); `SELECT` on any column of a table, view
/// or materialized view outside the system schemas and the allow-list. `EXECUTE` on
/// functions is not checked.
pub async fn check_postgres(
    conn: &mut PgConnection,
    allowed: &BTreeSet<String>,
) -> Result<Vec<RoleFinding>, sqlx::Error> {
    let mut findings = Vec::new();

    let roles: Vec<(String, bool, bool, bool, bool, bool)> =
        sqlx::query_as(PG_ROLES).fetch_all(&mut *conn).await?;
    let who = |name: &str, is_self: bool| {
        if is_self {
            format!("the connection's role `{name}`")
        } else {
            format!("role `{name}` (the connection may SET ROLE to it)")
        }
    };
    let supers: Vec<String> = roles
        .iter()
        .filter(|r| r.2)
        .map(|r| who(&r.0, r.1))
        .collect();
    if !supers.is_empty() {
        return Ok(vec![finding(
            SUPERUSER,
            format!(
                "{} is a superuser: it may read and write every table, read server files and run programs",
                names(supers)
            ),
        )]);
    }
    for (what, attribute, has) in [
        (CREATE_ROLE, "CREATEROLE", 3),
        (CREATE_DB, "CREATEDB", 4),
        (BYPASS_RLS, "BYPASSRLS", 5),
    ] {
        let holders: Vec<String> = roles
            .iter()
            .filter(|r| match has {
                3 => r.3,
                4 => r.4,
                _ => r.5,
            })
            .map(|r| who(&r.0, r.1))
            .collect();
        if !holders.is_empty() {
            findings.push(finding(what, format!("{} has {attribute}", names(holders))));
        }
    }

    let predefined: Vec<&str> = PG_PREDEFINED_ROLES.iter().map(|(n, _)| *n).collect();
    let member_of: Vec<String> = sqlx::query_scalar(PG_PREDEFINED)
        .bind(&predefined)
        .fetch_all(&mut *conn)
        .await?;
    let mut by_kind: BTreeMap<&'static str, Vec<String>> = BTreeMap::new();
    for role in &member_of {
        if let Some((_, what)) = PG_PREDEFINED_ROLES.iter().find(|(n, _)| n == role) {
            by_kind.entry(what).or_default().push(format!("`{role}`"));
        }
    }

    let mut covered: BTreeSet<(String, String)> = BTreeSet::new();
    let mut unqualified = Vec::new();
    for name in allowed {
        match name.split_once('.') {
            Some((schema, table)) => {
                covered.insert((schema.to_string(), table.to_string()));
            }
            None => {
                covered.insert(("public".to_string(), name.clone()));
                unqualified.push(name.clone());
            }
        }
    }
    let resolved: Vec<(String, String)> = sqlx::query_as(PG_RESOLVE)
        .bind(&unqualified)
        .fetch_all(&mut *conn)
        .await?;
    for (schema, table) in resolved {
        covered.insert((schema.to_lowercase(), table.to_lowercase()));
    }

    let relations: Vec<(String, String, bool, Vec<String>)> =
        sqlx::query_as(PG_RELATIONS).fetch_all(&mut *conn).await?;
    let mut writes = Vec::new();
    let mut reads = Vec::new();
    for (schema, table, readable, privileges) in relations {
        let name = format!("{schema}.{table}");
        if !privileges.is_empty() {
            writes.push(format!("{} on {name}", privileges.join(", ")));
        }
        if readable && !covered.contains(&(schema.to_lowercase(), table.to_lowercase())) {
            reads.push(name);
        }
    }

    let member = |roles: &[String]| {
        format!(
            "member of {} (directly, inherited or by SET ROLE)",
            roles.join(", ")
        )
    };
    let mut write_detail = Vec::new();
    if let Some(r) = by_kind.remove(CAN_WRITE) {
        write_detail.push(format!("{}: writes every table", member(&r)));
    }
    if !writes.is_empty() {
        write_detail.push(names_joined(writes, "; "));
    }
    if !write_detail.is_empty() {
        findings.push(finding(CAN_WRITE, write_detail.join("; ")));
    }
    let mut read_detail = Vec::new();
    if let Some(r) = by_kind.remove(READS_OUTSIDE_ALLOW_LIST) {
        read_detail.push(format!("{}: reads every table", member(&r)));
    }
    if !reads.is_empty() {
        read_detail.push(format!("SELECT on {}", names(reads)));
    }
    if !read_detail.is_empty() {
        findings.push(finding(READS_OUTSIDE_ALLOW_LIST, read_detail.join("; ")));
    }
    for (what, roles) in by_kind {
        findings.push(finding(what, member(&roles)));
    }
    Ok(findings)
}

// ---------------------------------------------------------------------------------------------
// MySQL and MariaDB
// ---------------------------------------------------------------------------------------------

const MY_WHO: &str = "SELECT CURRENT_USER(), DATABASE()";
const MY_USER_PRIVILEGES: &str = "SELECT PRIVILEGE_TYPE, IS_GRANTABLE \
     FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ?";
const MY_SCHEMA_PRIVILEGES: &str = "SELECT TABLE_SCHEMA, PRIVILEGE_TYPE, IS_GRANTABLE \
     FROM information_schema.SCHEMA_PRIVILEGES WHERE GRANTEE = ?";
const MY_TABLE_PRIVILEGES: &str = "SELECT TABLE_SCHEMA, TABLE_NAME, PRIVILEGE_TYPE, IS_GRANTABLE \
     FROM information_schema.TABLE_PRIVILEGES WHERE GRANTEE = ?";
const MY_COLUMN_PRIVILEGES: &str = "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, PRIVILEGE_TYPE, \
       IS_GRANTABLE \
     FROM information_schema.COLUMN_PRIVILEGES WHERE GRANTEE = ?";
const MY_SHOW_GRANTS: &str = "SHOW GRANTS";
const MY_APPLICABLE_ROLES: &str = "SELECT ROLE_NAME FROM information_schema.APPLICABLE_ROLES";
/// The tables this connection sees: for an account without global privileges, exactly those
/// it holds some privilege on.
const MY_TABLES: &str = "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES \
     WHERE TABLE_SCHEMA <> 'information_schema'";

/// Where a MySQL privilege applies.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    /// `*.*`.
    Global,
    /// `` `db`.* ``: the name is a `LIKE` pattern (`%`, `_`, `\` escapes), as the server
    /// treats database-level grants.
    Db(String),
    /// `` `db`.`table` ``, optionally one column of it.
    Table(String, String, Option<String>),
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Level::Global => write!(f, "*.*"),
            Level::Db(db) => write!(f, "{db}.*"),
            Level::Table(db, t, None) => write!(f, "{db}.{t}"),
            Level::Table(db, t, Some(c)) => write!(f, "{db}.{t} (column {c})"),
        }
    }
}

/// One privilege held at one level, and through what (`None`: the user's own grant).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct MyGrant {
    level: Level,
    /// Upper case, words separated by one space: `SELECT`, `ALL PRIVILEGES`, `CREATE USER`.
    privilege: String,
    grantable: bool,
    via: Option<String>,
}

/// `DELETE, INSERT on shop.orders (via role `r`)`: one entry per level and source.
fn describe<'a, I: IntoIterator<Item = &'a MyGrant>>(grants: I) -> Vec<String> {
    let mut by_level: BTreeMap<(&Level, &Option<String>), Vec<&str>> = BTreeMap::new();
    for g in grants {
        let privileges = by_level.entry((&g.level, &g.via)).or_default();
        if !privileges.contains(&g.privilege.as_str()) {
            privileges.push(&g.privilege);
        }
    }
    by_level
        .into_iter()
        .map(|((level, via), privileges)| match via {
            None => format!("{} on {level}", privileges.join(", ")),
            Some(via) => format!("{} on {level} (via {via})", privileges.join(", ")),
        })
        .collect()
}

fn is_all(p: &str) -> bool {
    p == "ALL" || p == "ALL PRIVILEGES"
}

fn is_read(p: &str) -> bool {
    p == "SELECT" || is_all(p)
}

/// Privileges that change data or schema (temporary tables and `LOCK TABLES` excepted).
fn is_write(p: &str) -> bool {
    is_all(p)
        || matches!(
            p,
            "INSERT"
                | "UPDATE"
                | "DELETE"
                | "CREATE"
                | "DROP"
                | "ALTER"
                | "INDEX"
                | "TRIGGER"
                | "CREATE VIEW"
                | "CREATE ROUTINE"
                | "ALTER ROUTINE"
                | "EVENT"
                | "DELETE HISTORY"
        )
}

/// Global privileges that administer the server rather than read data.
fn is_server_admin(p: &str) -> bool {
    matches!(
        p,
        "PROCESS" | "SHUTDOWN" | "RELOAD" | "SET USER" | "CREATE TABLESPACE" | "SYSTEM_USER"
    ) || p.contains("ADMIN")
        || p.contains("MONITOR")
        || p.starts_with("REPLICATION")
        || p.starts_with("BINLOG")
}

/// Checks what a MySQL or MariaDB connection may do beyond reading the allow-listed tables.
///
/// `allowed` holds the allow-listed tables, lower case, `table` or `schema.table`; an
/// unqualified name means the connection's current database (`DATABASE()`). Names are
/// compared lower-cased.
///
/// The privileges counted are the union of two sources:
/// - `information_schema.USER_PRIVILEGES`, `SCHEMA_PRIVILEGES`, `TABLE_PRIVILEGES` and
///   `COLUMN_PRIVILEGES` rows whose `GRANTEE` is `CURRENT_USER()` (written `'user'@'host'`):
///   the user's own grants, structured;
/// - `SHOW GRANTS`, parsed: on MariaDB it alone also lists the grants of the enabled roles
///   (recursively) and of `PUBLIC`, which `information_schema` does not show the user.
///
/// A role in `information_schema.APPLICABLE_ROLES` that no `SHOW GRANTS` line speaks for
/// (granted but not enabled: the connection could `SET ROLE` to it) is reported as
/// [`UNCHECKED_ROLE`]; a line that cannot be parsed, as [`UNRECOGNISED_GRANT`].
///
/// Reported: `SUPER` or `ALL` on `*.*` (alone, as [`SUPERUSER`]); `FILE`; `PROCESS`,
/// `SHUTDOWN`, `RELOAD` and the admin/monitor/replication/binlog privileges; `CREATE USER`;
/// any grant option; any write privilege at any level; `SELECT` on `*.*`, or through a
/// database- or table-level grant on a table outside the allow-list. Routine (`EXECUTE`) and
/// `PROXY` grants are not checked.
pub async fn check_mysql(
    conn: &mut MySqlConnection,
    allowed: &BTreeSet<String>,
) -> Result<Vec<RoleFinding>, sqlx::Error> {
    let (current_user, database): (String, Option<String>) =
        sqlx::query_as(MY_WHO).fetch_one(&mut *conn).await?;
    let grantee = information_schema_grantee(&current_user);
    let mut grants: BTreeSet<MyGrant> = BTreeSet::new();
    let yes = |g: &str| g.eq_ignore_ascii_case("YES");

    let rows: Vec<(String, String)> = sqlx::query_as(MY_USER_PRIVILEGES)
        .bind(&grantee)
        .fetch_all(&mut *conn)
        .await?;
    for (privilege, grantable) in rows {
        grants.insert(MyGrant {
            level: Level::Global,
            privilege: normalise(&privilege),
            grantable: yes(&grantable),
            via: None,
        });
    }
    let rows: Vec<(String, String, String)> = sqlx::query_as(MY_SCHEMA_PRIVILEGES)
        .bind(&grantee)
        .fetch_all(&mut *conn)
        .await?;
    for (db, privilege, grantable) in rows {
        grants.insert(MyGrant {
            level: Level::Db(db),
            privilege: normalise(&privilege),
            grantable: yes(&grantable),
            via: None,
        });
    }
    let rows: Vec<(String, String, String, String)> = sqlx::query_as(MY_TABLE_PRIVILEGES)
        .bind(&grantee)
        .fetch_all(&mut *conn)
        .await?;
    for (db, table, privilege, grantable) in rows {
        grants.insert(MyGrant {
            level: Level::Table(db, table, None),
            privilege: normalise(&privilege),
            grantable: yes(&grantable),
            via: None,
        });
    }
    let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(MY_COLUMN_PRIVILEGES)
        .bind(&grantee)
        .fetch_all(&mut *conn)
        .await?;
    for (db, table, column, privilege, grantable) in rows {
        grants.insert(MyGrant {
            level: Level::Table(db, table, Some(column)),
            privilege: normalise(&privilege),
            grantable: yes(&grantable),
            via: None,
        });
    }

    let (user, host) = split_account(&current_user);
    let mut findings = Vec::new();
    let mut seen_grantees: BTreeSet<String> = BTreeSet::new();
    let mut unrecognised = Vec::new();
    let lines = sqlx::query(MY_SHOW_GRANTS).fetch_all(&mut *conn).await?;
    for row in lines {
        let line: String = row.try_get(0)?;
        match parse_grant(&line, database.as_deref()) {
            Ok(Parsed::Privileges {
                privileges,
                level,
                grantee,
                grantable,
            }) => {
                let via = match &grantee {
                    Grantee::Public => Some("PUBLIC".to_string()),
                    Grantee::Account(name, h) if name == user && h.as_deref() == Some(host) => None,
                    Grantee::Account(name, _) => Some(format!("role `{name}`")),
                };
                if let Grantee::Account(name, _) = &grantee {
                    seen_grantees.insert(name.clone());
                }
                for (privilege, columns) in privileges {
                    let levels = if columns.is_empty() {
                        vec![level.clone()]
                    } else {
                        match &level {
                            Level::Table(db, t, _) => columns
                                .into_iter()
                                .map(|c| Level::Table(db.clone(), t.clone(), Some(c)))
                                .collect(),
                            other => vec![other.clone()],
                        }
                    };
                    for level in levels {
                        grants.insert(MyGrant {
                            level,
                            privilege: privilege.clone(),
                            grantable,
                            via: via.clone(),
                        });
                    }
                }
            }
            Ok(Parsed::Ignored) => {}
            Err(()) => unrecognised.push(redact(&line)),
        }
    }

    // Superuser first, alone.
    let supers =
        describe(grants.iter().filter(|g| {
            g.level == Level::Global && (g.privilege == "SUPER" || is_all(&g.privilege))
        }));
    if !supers.is_empty() {
        return Ok(vec![finding(
            SUPERUSER,
            format!(
                "`{current_user}` holds {}: it may read and write every table and administer the server",
                names_joined(supers, "; ")
            ),
        )]);
    }

    let global = |pred: &dyn Fn(&str) -> bool| -> Vec<String> {
        describe(
            grants
                .iter()
                .filter(|g| g.level == Level::Global && pred(&g.privilege)),
        )
    };
    let file = global(&|p| p == "FILE");
    if !file.is_empty() {
        findings.push(finding(
            FILE_ACCESS,
            format!(
                "{}: LOAD DATA INFILE, LOAD_FILE() and SELECT … INTO OUTFILE reach the server's files",
                names_joined(file, "; ")
            ),
        ));
    }
    let admin = global(&is_server_admin);
    if !admin.is_empty() {
        findings.push(finding(SERVER_ADMIN, names_joined(admin, "; ")));
    }
    let create_user = global(&|p| matches!(p, "CREATE USER" | "CREATE ROLE" | "DROP ROLE"));
    if !create_user.is_empty() {
        findings.push(finding(CREATE_ROLE, names_joined(create_user, "; ")));
    }
    let grant_option: BTreeSet<String> = grants
        .iter()
        .filter(|g| g.grantable || g.privilege == "GRANT OPTION")
        .map(|g| match &g.via {
            None => format!("GRANT OPTION on {}", g.level),
            Some(via) => format!("GRANT OPTION on {} (via {via})", g.level),
        })
        .collect();
    if !grant_option.is_empty() {
        findings.push(finding(GRANT_OPTION, names_joined(grant_option, "; ")));
    }
    let writes = describe(grants.iter().filter(|g| is_write(&g.privilege)));
    if !writes.is_empty() {
        findings.push(finding(CAN_WRITE, names_joined(writes, "; ")));
    }

    // Reads outside the allow-list.
    let current_db = database.as_deref().map(str::to_lowercase);
    let is_allowed = |db: &str, table: &str| {
        let (db, table) = (db.to_lowercase(), table.to_lowercase());
        allowed.contains(&format!("{db}.{table}"))
            || (current_db.as_deref() == Some(db.as_str()) && allowed.contains(&table))
    };
    let mut read_detail = Vec::new();
    let global_read = global(&is_read);
    if !global_read.is_empty() {
        read_detail.push(format!("{} (every table)", names_joined(global_read, "; ")));
    }
    let mut outside: BTreeSet<String> = BTreeSet::new();
    for g in grants.iter().filter(|g| is_read(&g.privilege)) {
        if let Level::Table(db, table, _) = &g.level
            && !is_allowed(db, table)
        {
            outside.insert(format!("{db}.{table}"));
        }
    }
    let patterns: Vec<&str> = grants
        .iter()
        .filter(|g| is_read(&g.privilege))
        .filter_map(|g| match &g.level {
            Level::Db(p) => Some(p.as_str()),
            _ => None,
        })
        .collect();
    if !patterns.is_empty() || !read_detail.is_empty() {
        let tables: Vec<(String, String)> = sqlx::query_as(MY_TABLES).fetch_all(&mut *conn).await?;
        for (db, table) in tables {
            let by_db = patterns.iter().any(|p| like(p, &db));
            if (by_db || !read_detail.is_empty()) && !is_allowed(&db, &table) {
                outside.insert(format!("{db}.{table}"));
            }
        }
    }
    if !outside.is_empty() {
        read_detail.push(format!("SELECT on {}", names(outside)));
    }
    if !read_detail.is_empty() {
        findings.push(finding(READS_OUTSIDE_ALLOW_LIST, read_detail.join("; ")));
    }

    // Granted roles whose grants no SHOW GRANTS line showed.
    let applicable: Vec<Option<String>> = sqlx::query_scalar(MY_APPLICABLE_ROLES)
        .fetch_all(&mut *conn)
        .await?;
    let unchecked: BTreeSet<String> = applicable
        .into_iter()
        .flatten()
        .filter(|r| !seen_grantees.contains(r))
        .map(|r| format!("`{r}`"))
        .collect();
    if !unchecked.is_empty() {
        findings.push(finding(
            UNCHECKED_ROLE,
            format!(
                "{} granted to `{current_user}` but not enabled, so its privileges were not checked; the connection could SET ROLE to it: revoke it, or make it the default role so it is checked",
                names(unchecked)
            ),
        ));
    }
    if !unrecognised.is_empty() {
        findings.push(finding(
            UNRECOGNISED_GRANT,
            names_joined(unrecognised, "; "),
        ));
    }
    Ok(findings)
}

/// `user@host` (as `CURRENT_USER()` returns it; the host holds no `@`) → `('user', 'host')`.
fn split_account(account: &str) -> (&str, &str) {
    account.rsplit_once('@').unwrap_or((account, ""))
}

/// `user@host` → `'user'@'host'`, the form of `information_schema`'s `GRANTEE` column (which
/// does not escape quotes inside the names).
fn information_schema_grantee(account: &str) -> String {
    let (user, host) = split_account(account);
    format!("'{user}'@'{host}'")
}

/// Upper case, single spaces: `Create  user` → `CREATE USER`.
fn normalise(privilege: &str) -> String {
    privilege
        .split_whitespace()
        .map(str::to_uppercase)
        .collect::<Vec<_>>()
        .join(" ")
}

/// SQL `LIKE` with `\` escapes, case-insensitive (as database names are matched on servers
/// with `lower_case_table_names`; the stricter reading is the safer one here).
fn like(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('%', rest)) => (0..=n.len()).any(|i| go(rest, &n[i..])),
            Some(('_', rest)) => !n.is_empty() && go(rest, &n[1..]),
            Some(('\\', rest)) if !rest.is_empty() => {
                n.first() == Some(&rest[0]) && go(&rest[1..], &n[1..])
            }
            Some((c, rest)) => n.first() == Some(c) && go(rest, &n[1..]),
        }
    }
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let n: Vec<char> = name.to_lowercase().chars().collect();
    go(&p, &n)
}

/// A `SHOW GRANTS` line with every single-quoted string (password hashes, authentication
/// strings) replaced by `'…'`.
fn redact(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            out.push_str("'…'");
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        chars.next();
                    }
                    '\'' if chars.peek() == Some(&'\'') => {
                        chars.next();
                    }
                    '\'' => break,
                    _ => {}
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    /// An unquoted word: a keyword or privilege word.
    Word(String),
    /// A `` `quoted` `` (or `"quoted"`, with `ANSI_QUOTES`) identifier.
    Ident(String),
    /// A `'string'`.
    Str(String),
    Sym(char),
}

impl Tok {
    fn is_word(&self, w: &str) -> bool {
        matches!(self, Tok::Word(x) if x.eq_ignore_ascii_case(w))
    }
}

fn tokenize(line: &str) -> Result<Vec<Tok>, ()> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '`' || c == '"' || c == '\'' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    None => return Err(()),
                    Some('\\') if c == '\'' => s.push(chars.next().ok_or(())?),
                    Some(x) if x == c => {
                        if chars.peek() == Some(&c) {
                            chars.next();
                            s.push(c);
                        } else {
                            break;
                        }
                    }
                    Some(x) => s.push(x),
                }
            }
            out.push(if c == '\'' {
                Tok::Str(s)
            } else {
                Tok::Ident(s)
            });
        } else if c.is_alphanumeric() || c == '_' || c == '$' {
            let mut s = String::new();
            while let Some(&x) = chars.peek() {
                if x.is_alphanumeric() || x == '_' || x == '$' {
                    s.push(x);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(Tok::Word(s));
        } else {
            chars.next();
            out.push(Tok::Sym(c));
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Grantee {
    Public,
    /// A user (`Some(host)`) or a MariaDB role (no host).
    Account(String, Option<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Parsed {
    /// `GRANT privileges ON level TO grantee …`; each privilege with its columns, if any.
    Privileges {
        privileges: Vec<(String, Vec<String>)>,
        level: Level,
        grantee: Grantee,
        grantable: bool,
    },
    /// A role grant (`GRANT role TO …`: `APPLICABLE_ROLES` covers it), a routine grant,
    /// `PROXY`, or `SET DEFAULT ROLE`.
    Ignored,
}

fn name_tok(t: Option<&Tok>) -> Option<String> {
    match t {
        Some(Tok::Ident(s)) | Some(Tok::Str(s)) | Some(Tok::Word(s)) => Some(s.clone()),
        _ => None,
    }
}

/// Parses one `SHOW GRANTS` line. `database` resolves a level written without a database.
fn parse_grant(line: &str, database: Option<&str>) -> Result<Parsed, ()> {
    let toks = tokenize(line)?;
    // MariaDB lists the user's default role as `SET DEFAULT ROLE `r` FOR `u`@`h``.
    if let [set, default, role, ..] = toks.as_slice()
        && set.is_word("SET")
        && default.is_word("DEFAULT")
        && role.is_word("ROLE")
    {
        return Ok(Parsed::Ignored);
    }
    if !toks.first().is_some_and(|t| t.is_word("GRANT")) {
        return Err(());
    }
    // The privilege list runs to the first ON or TO outside parentheses.
    let mut depth = 0usize;
    let mut i = 1;
    while i < toks.len() {
        match &toks[i] {
            Tok::Sym('(') => depth += 1,
            Tok::Sym(')') => depth = depth.checked_sub(1).ok_or(())?,
            t if depth == 0 && (t.is_word("ON") || t.is_word("TO")) => break,
            _ => {}
        }
        i += 1;
    }
    let head = toks.get(i).ok_or(())?;
    if head.is_word("TO") {
        return Ok(Parsed::Ignored);
    }
    let privileges = parse_privileges(&toks[1..i])?;
    if privileges.iter().any(|(p, _)| p == "PROXY") {
        return Ok(Parsed::Ignored);
    }
    let mut j = i + 1;
    if toks.get(j).is_some_and(|t| t.is_word("TABLE")) {
        j += 1;
    } else if toks
        .get(j)
        .is_some_and(|t| t.is_word("PROCEDURE") || t.is_word("FUNCTION") || t.is_word("PACKAGE"))
    {
        return Ok(Parsed::Ignored);
    }
    let to = (j..toks.len()).find(|&k| toks[k].is_word("TO")).ok_or(())?;
    let level = match &toks[j..to] {
        [Tok::Sym('*'), Tok::Sym('.'), Tok::Sym('*')] => Level::Global,
        [db, Tok::Sym('.'), Tok::Sym('*')] => Level::Db(name_tok(Some(db)).ok_or(())?),
        [db, Tok::Sym('.'), table] => Level::Table(
            name_tok(Some(db)).ok_or(())?,
            name_tok(Some(table)).ok_or(())?,
            None,
        ),
        [Tok::Sym('*')] => Level::Db(database.ok_or(())?.to_string()),
        [table] => Level::Table(
            database.ok_or(())?.to_string(),
            name_tok(Some(table)).ok_or(())?,
            None,
        ),
        _ => return Err(()),
    };
    let rest = &toks[to + 1..];
    let (grantee, after) = match rest {
        [t, tail @ ..] if t.is_word("PUBLIC") => (Grantee::Public, tail),
        [
            name @ (Tok::Ident(_) | Tok::Str(_)),
            Tok::Sym('@'),
            host,
            tail @ ..,
        ] => (
            Grantee::Account(
                name_tok(Some(name)).ok_or(())?,
                Some(name_tok(Some(host)).ok_or(())?),
            ),
            tail,
        ),
        [name @ (Tok::Ident(_) | Tok::Str(_)), tail @ ..] => (
            Grantee::Account(name_tok(Some(name)).ok_or(())?, None),
            tail,
        ),
        _ => return Err(()),
    };
    let grantable = after
        .windows(3)
        .any(|w| w[0].is_word("WITH") && w[1].is_word("GRANT") && w[2].is_word("OPTION"));
    Ok(Parsed::Privileges {
        privileges,
        level,
        grantee,
        grantable,
    })
}

/// `SELECT, UPDATE (`a`, `b`), CREATE TEMPORARY TABLES` → privileges with their columns.
fn parse_privileges(toks: &[Tok]) -> Result<Vec<(String, Vec<String>)>, ()> {
    // Split at the commas outside a column list.
    let mut parts: Vec<&[Tok]> = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (k, t) in toks.iter().enumerate() {
        match t {
            Tok::Sym('(') => depth += 1,
            Tok::Sym(')') => depth = depth.checked_sub(1).ok_or(())?,
            Tok::Sym(',') if depth == 0 => {
                parts.push(&toks[start..k]);
                start = k + 1;
            }
            _ => {}
        }
    }
    parts.push(&toks[start..]);
    let mut out = Vec::new();
    for part in parts {
        let mut words = Vec::new();
        let mut k = 0;
        while let Some(Tok::Word(w)) = part.get(k) {
            words.push(w.to_uppercase());
            k += 1;
        }
        let mut columns = Vec::new();
        if part.get(k) == Some(&Tok::Sym('(')) {
            k += 1;
            loop {
                match part.get(k) {
                    Some(t @ (Tok::Ident(_) | Tok::Word(_))) => {
                        columns.push(name_tok(Some(t)).ok_or(())?)
                    }
                    _ => return Err(()),
                }
                k += 1;
                match part.get(k) {
                    Some(Tok::Sym(',')) => k += 1,
                    Some(Tok::Sym(')')) => {
                        k += 1;
                        break;
                    }
                    _ => return Err(()),
                }
            }
        }
        if words.is_empty() || k != part.len() {
            return Err(());
        }
        out.push((words.join(" "), columns));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn privileges(line: &str) -> (Vec<(String, Vec<String>)>, Level, Grantee, bool) {
        match parse_grant(line, Some("shop")) {
            Ok(Parsed::Privileges {
                privileges,
                level,
                grantee,
                grantable,
            }) => (privileges, level, grantee, grantable),
            other => panic!("{line}: {other:?}"),
        }
    }

    #[test]
    fn parses_mariadb_show_grants_lines() {
        let (p, l, g, o) = privileges(
            "GRANT USAGE ON *.* TO `zu`@`%` IDENTIFIED BY PASSWORD '*2B602296A79E0A8784ACC5C88D92E46588CCA3C3'",
        );
        assert_eq!(p, vec![("USAGE".to_string(), vec![])]);
        assert_eq!(l, Level::Global);
        assert_eq!(g, Grantee::Account("zu".into(), Some("%".into())));
        assert!(!o);

        let (p, l, _, _) =
            privileges("GRANT SELECT, UPDATE (`v`, `w``x`) ON `zexp`.`a` TO `zu`@`%`");
        assert_eq!(
            p,
            vec![
                ("SELECT".to_string(), vec![]),
                (
                    "UPDATE".to_string(),
                    vec!["v".to_string(), "w`x".to_string()]
                )
            ]
        );
        assert_eq!(l, Level::Table("zexp".into(), "a".into(), None));

        let (p, l, g, o) = privileges(
            "GRANT SELECT, CREATE TEMPORARY TABLES, LOCK TABLES ON `zex%`.* TO `zr2` WITH GRANT OPTION",
        );
        assert_eq!(p.len(), 3);
        assert_eq!(p[1].0, "CREATE TEMPORARY TABLES");
        assert_eq!(l, Level::Db("zex%".into()));
        assert_eq!(g, Grantee::Account("zr2".into(), None));
        assert!(o);

        let (_, l, g, _) = privileges("GRANT SELECT ON `zexp`.`c` TO PUBLIC");
        assert_eq!(l, Level::Table("zexp".into(), "c".into(), None));
        assert_eq!(g, Grantee::Public);

        let (p, _, g, o) = privileges(
            "GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` IDENTIFIED VIA mysql_native_password USING 'invalid' OR unix_socket WITH GRANT OPTION",
        );
        assert_eq!(p, vec![("ALL PRIVILEGES".to_string(), vec![])]);
        assert_eq!(g, Grantee::Account("root".into(), Some("localhost".into())));
        assert!(o);

        let (_, _, g, _) = privileges("GRANT SELECT ON `a`.`b` TO `o'k@x`@`%`");
        assert_eq!(g, Grantee::Account("o'k@x".into(), Some("%".into())));

        for ignored in [
            "GRANT `zr` TO `zu`@`%`",
            "GRANT `r1`, `r2` TO `zu`@`%` WITH ADMIN OPTION",
            "GRANT PROXY ON ''@'%' TO 'root'@'localhost' WITH GRANT OPTION",
            "GRANT EXECUTE ON PROCEDURE `shop`.`p` TO `zu`@`%`",
            "GRANT EXECUTE, ALTER ROUTINE ON FUNCTION `shop`.`f` TO `zu`@`%`",
            "SET DEFAULT ROLE `r` FOR `zu`@`%`",
        ] {
            assert_eq!(parse_grant(ignored, None), Ok(Parsed::Ignored), "{ignored}");
        }
        for bad in [
            "REVOKE SELECT ON *.* FROM x",
            "GRANT SELECT ON `a`.`b`",
            "GRANT 'x",
        ] {
            assert_eq!(parse_grant(bad, None), Err(()), "{bad}");
        }
    }

    #[test]
    fn redacts_quoted_strings_and_matches_like_patterns() {
        assert_eq!(
            redact("GRANT USAGE ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '*2B6''0\\'2'"),
            "GRANT USAGE ON *.* TO `u`@`%` IDENTIFIED BY PASSWORD '…'"
        );
        assert!(like("zex%", "zexp"));
        assert!(like("test_db", "testxdb"));
        assert!(!like("test\\_db", "testxdb"));
        assert!(like("test\\_db", "test_db"));
        assert!(like("Shop", "shop"));
        assert!(!like("shop", "shops"));
        assert_eq!(information_schema_grantee("o'k@x@%"), "'o'k@x'@'%'");
        assert_eq!(normalise("create  user"), "CREATE USER");
        assert!(is_server_admin("BINLOG MONITOR") && is_server_admin("CONNECTION ADMIN"));
        assert!(!is_server_admin("SELECT") && is_write("DELETE HISTORY"));
    }

    #[test]
    fn lists_at_most_twenty_names() {
        let many = (0..25).map(|i| format!("t{i}"));
        let shown = names(many);
        assert!(shown.ends_with("t19 and 5 more"), "{shown}");
    }
}
