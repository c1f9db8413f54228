//! The `Tool` trait and the catalog an agent's tools come from. Whether a call is a read or a
//! write is decided here, by configuration, never by the model or the tool's own hints; a
//! tool this catalog does not know is a write (fail closed).

use crate::sql::{CompanyDatabase, ReadError};
use async_trait::async_trait;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Read or write: reads run after validation, writes only after a human's approval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// Changes nothing.
    Read,
    /// May change something: waits for approval.
    Write,
}

impl Classification {
    /// `read` or `write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Read => "read",
            Classification::Write => "write",
        }
    }
}

/// Why a tool call gave no result. Every variant goes back to the model as a tool error it
/// can act on; none carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The arguments are not what the tool takes.
    #[error("bad arguments: {0}")]
    BadArguments(String),
    /// A policy refused the call; `rule` names the rule broken.
    #[error("refused ({rule}): {message}")]
    Refused {
        /// The rule's stable name.
        rule: String,
        /// What to change.
        message: String,
    },
    /// The call ran past its deadline and was cancelled.
    #[error("timed out: {0}")]
    Timeout(String),
    /// The tool failed.
    #[error("failed: {0}")]
    Failed(String),
}

/// How a dispatched write ended, found out after the fact (a crash left it `outcome_unknown`):
/// see [`WriteTool::settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// It was applied.
    Applied {
        /// Rows it changed, as the write recorded them (0 when a Warden older than the record
        /// of counts applied it).
        rows_affected: u64,
    },
    /// It was not applied, and never will be: the target was fenced against it, so the call,
    /// still running or retried, cannot take effect.
    NotApplied,
    /// The tool cannot tell (an HTTP call): a human must find out.
    Unknown,
}

/// A tool an agent may call.
#[async_trait]
pub trait Tool: Send + Sync {
    /// Its name, as the model calls it.
    fn name(&self) -> &str;
    /// What it does, for the model.
    fn description(&self) -> String;
    /// JSON schema of its arguments.
    fn parameters(&self) -> Value;
    /// Runs it. The caller bounds the time with the step's deadline.
    async fn call(&self, arguments: &Value) -> Result<Value, ToolError>;
}

/// A tool that changes things: proposed first (validated, previewed), run only with an
/// [`Approved`](crate::approval::Approved) proof of a human's signed decision.
#[async_trait]
pub trait WriteTool: Send + Sync {
    /// Validates the call and previews what it would change.
    async fn propose(&self, arguments: &Value) -> Result<Proposal, ToolError>;
    /// Runs the approved call once; `idempotency_key` lets the target recognise a retry;
    /// `preview` is what [`WriteTool::propose`] showed the approver, which the call must match.
    async fn execute(
        &self,
        approved: &crate::approval::Approved<Value>,
        idempotency_key: &str,
        preview: &Value,
    ) -> Result<Value, ToolError>;
    /// Settles whether the call with these arguments and `idempotency_key`, dispatched but
    /// interrupted, was applied: definitively ([`Settlement::NotApplied`] means it can never
    /// take effect later), or [`Settlement::Unknown`] from a tool that cannot tell. An error
    /// decides nothing (a write still in progress is [`ToolError::Timeout`]): try again later.
    async fn settle(
        &self,
        arguments: &Value,
        idempotency_key: &str,
    ) -> Result<Settlement, ToolError>;
}

/// The database a SQL tool call names (or the only one there is) and its statement.
fn target<'d>(
    databases: &'d BTreeMap<String, Arc<CompanyDatabase>>,
    arguments: &Value,
) -> Result<(&'d Arc<CompanyDatabase>, String), ToolError> {
    let sql = arguments
        .get("sql")
        .and_then(Value::as_str)
        .ok_or_else(|| ToolError::BadArguments("`sql` (a string) is required".into()))?;
    let db = match arguments.get("database").and_then(Value::as_str) {
        Some(name) => databases.get(name).ok_or_else(|| {
            let known: Vec<&str> = databases.keys().map(String::as_str).collect();
            ToolError::BadArguments(format!(
                "unknown database `{name}` for this tool (known: {})",
                known.join(", ")
            ))
        })?,
        None if databases.len() == 1 => databases
            .values()
            .next()
            .ok_or_else(|| ToolError::BadArguments("`database` is required".into()))?,
        None => return Err(ToolError::BadArguments("`database` is required".into())),
    };
    Ok((db, sql.to_owned()))
}

/// `sql_query`: one validated read against one of the agent's databases.
pub struct SqlQuery {
    databases: BTreeMap<String, Arc<CompanyDatabase>>,
}

impl SqlQuery {
    /// A `sql_query` tool over these databases.
    pub fn new(databases: BTreeMap<String, Arc<CompanyDatabase>>) -> Self {
        Self { databases }
    }
}

#[async_trait]
impl Tool for SqlQuery {
    fn name(&self) -> &str {
        "sql_query"
    }

    fn description(&self) -> String {
        let dbs: Vec<String> = self
            .databases
            .iter()
            .map(|(name, db)| format!("{name} (tables: {})", db.tables().join(", ")))
            .collect();
        format!(
            "Runs one read-only SQL SELECT and returns the rows as JSON. Only these databases \
             and tables may be read: {}. One statement, SELECT only; a LIMIT is applied.",
            dbs.join("; ")
        )
    }

    fn parameters(&self) -> Value {
        let names: Vec<&String> = self.databases.keys().collect();
        json!({
            "type": "object",
            "properties": {
                "database": {"type": "string", "enum": names},
                "sql": {"type": "string", "description": "One SELECT statement."}
            },
            "required": ["database", "sql"],
            "additionalProperties": false
        })
    }

    async fn call(&self, arguments: &Value) -> Result<Value, ToolError> {
        let (db, sql) = target(&self.databases, arguments)?;
        match db.read(&sql).await {
            Ok(rows) => Ok(json!({
                "rows": rows.rows,
                "row_count": rows.rows.len(),
                "truncated": rows.truncated,
                "sql": rows.sql,
            })),
            Err(ReadError::Refused(r)) => Err(ToolError::Refused {
                rule: r.rule.name().into(),
                message: r.message,
            }),
            Err(ReadError::Timeout(t)) => Err(ToolError::Timeout(format!(
                "the statement ran longer than {t:?}; make it cheaper"
            ))),
            Err(e) => Err(SqlExecute::refused(e)),
        }
    }
}

/// An agent's tools, each with the classification configuration gave it.
#[derive(Clone, Default)]
pub struct Catalog {
    tools: BTreeMap<String, (Arc<dyn Tool>, Classification)>,
    writes: BTreeMap<String, Arc<dyn WriteTool>>,
    forced_writes: std::collections::BTreeSet<String>,
}

impl Catalog {
    /// Adds a tool with its classification.
    pub fn add(&mut self, tool: Arc<dyn Tool>, classification: Classification) {
        self.tools
            .insert(tool.name().to_owned(), (tool, classification));
    }

    /// Adds `sql_execute` (a write).
    pub fn add_sql_execute(&mut self, tool: Arc<SqlExecute>) {
        self.writes.insert("sql_execute".into(), tool.clone());
        self.add(tool, Classification::Write);
    }

    /// Adds `http_request` (a read for GET and HEAD, a write otherwise).
    pub fn add_http_request(&mut self, tool: Arc<crate::http::HttpRequest>) {
        self.writes.insert("http_request".into(), tool.clone());
        self.add(tool, Classification::Read);
    }

    /// The write side of a tool, if it has one.
    pub fn write_tool(&self, name: &str) -> Option<Arc<dyn WriteTool>> {
        self.writes.get(name).cloned()
    }

    /// Declares a tool a write whatever its calls look like (configuration may tighten a
    /// classification, never loosen it).
    pub fn force_write(&mut self, name: &str) {
        self.forced_writes.insert(name.to_owned());
    }

    /// How a call to `name` with these arguments is classified: by configuration, and for
    /// `http_request` by its method (GET and HEAD read, anything else writes); an unknown
    /// tool is a write.
    pub fn classify_call(&self, name: &str, arguments: &Value) -> Classification {
        if self.forced_writes.contains(name) {
            return Classification::Write;
        }
        if name == "http_request" && self.tools.contains_key(name) {
            return if crate::http::HttpRequest::is_write(arguments) {
                Classification::Write
            } else {
                Classification::Read
            };
        }
        self.classify(name)
    }

    /// The tool of this name and its classification; an unknown name is `None` (and the
    /// caller treats the call as an unknown write).
    pub fn get(&self, name: &str) -> Option<(Arc<dyn Tool>, Classification)> {
        self.tools.get(name).cloned()
    }

    /// How a call to `name` is classified: configured tools by their configuration, unknown
    /// ones as writes.
    pub fn classify(&self, name: &str) -> Classification {
        self.tools
            .get(name)
            .map_or(Classification::Write, |(_, c)| *c)
    }

    /// The OpenAI `tools` array offered to the model.
    pub fn openai_tools(&self) -> Vec<Value> {
        self.tools
            .values()
            .map(|(t, _)| {
                json!({"type": "function", "function": {
                    "name": t.name(), "description": t.description(), "parameters": t.parameters()
                }})
            })
            .collect()
    }

    /// Whether the catalog is empty.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_tools_are_writes_and_configuration_only_tightens() {
        let mut c = Catalog::default();
        assert_eq!(c.classify("delete_everything"), Classification::Write);
        assert!(c.get("delete_everything").is_none());
        let http = crate::http::HttpRequest::new(crate::http::HttpPolicy {
            allowed_hosts: Default::default(),
            allow_private: Default::default(),
            max_response_bytes: 1,
            timeout: std::time::Duration::from_secs(1),
            proxy: None,
        });
        c.add_http_request(Arc::new(http));
        let get = json!({"method": "GET", "url": "http://x/"});
        let post = json!({"method": "POST", "url": "http://x/"});
        assert_eq!(c.classify_call("http_request", &get), Classification::Read);
        assert_eq!(
            c.classify_call("http_request", &post),
            Classification::Write
        );
        c.force_write("http_request");
        assert_eq!(c.classify_call("http_request", &get), Classification::Write);
    }
}

/// `sql_execute`: one INSERT, UPDATE or DELETE on a writable table. A write: it never runs
/// from [`Tool::call`]; it is proposed (validated and previewed), and runs only through
/// [`SqlExecute::execute`] with an [`Approved`](crate::approval::Approved) proof.
pub struct SqlExecute {
    databases: BTreeMap<String, Arc<CompanyDatabase>>,
}

/// A validated, previewed write waiting for approval.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    /// What would change (JSON: the statement, the row count, rows before and after).
    pub preview: Value,
    /// Rows it would change.
    pub rows_affected: u64,
}

impl SqlExecute {
    /// A `sql_execute` tool over the writable ones of these databases.
    pub fn new(databases: BTreeMap<String, Arc<CompanyDatabase>>) -> Self {
        Self {
            databases: databases
                .into_iter()
                .filter(|(_, d)| d.writable())
                .collect(),
        }
    }

    fn target(&self, arguments: &Value) -> Result<(&Arc<CompanyDatabase>, String), ToolError> {
        target(&self.databases, arguments)
    }

    fn refused(e: ReadError) -> ToolError {
        match e {
            ReadError::Refused(r) => ToolError::Refused {
                rule: r.rule.name().into(),
                message: r.message,
            },
            ReadError::Timeout(t) => ToolError::Timeout(format!("{t:?}")),
            ReadError::Database(m) => ToolError::Failed(m),
            e @ ReadError::InProgress(_) => ToolError::Timeout(e.to_string()),
            e @ ReadError::SettledNotApplied => ToolError::Refused {
                rule: "settled_not_applied".into(),
                message: e.to_string(),
            },
        }
    }

    /// Validates the write and computes its preview (in a transaction that is rolled back).
    async fn propose_sql(&self, arguments: &Value) -> Result<Proposal, ToolError> {
        let (db, sql) = self.target(arguments)?;
        let write = db.validate_write(&sql).map_err(Self::refused)?;
        let p = db.preview(&write).await.map_err(Self::refused)?;
        let mut preview = json!({
            "database": db.name, "statement": p.sql, "kind": write.kind.as_str(),
            "table": write.table, "rows_affected": p.rows_affected,
            "before": p.before, "after": p.after,
            "key_columns": p.key_columns, "row_ids_sha256": p.row_ids_sha256,
        });
        if !p.row_ids.is_empty() {
            preview["row_ids"] = json!(p.row_ids);
        }
        if !p.triggers.is_empty() {
            preview["triggers"] = json!(p.triggers);
        }
        if !p.cascades.is_empty() {
            preview["cascades"] = json!(p.cascades);
        }
        if !p.triggers.is_empty() || !p.cascades.is_empty() {
            preview["note"] = json!(
                "triggers on this table and foreign keys that cascade from it run too: other rows may change"
            );
        }
        Ok(Proposal {
            rows_affected: p.rows_affected,
            preview,
        })
    }

    /// Runs an approved write once, only if it changes exactly the rows of its preview (see
    /// [`CompanyDatabase::execute`]).
    async fn execute_sql(
        &self,
        approved: &crate::approval::Approved<Value>,
        idempotency_key: &str,
        preview: &Value,
    ) -> Result<Value, ToolError> {
        let (db, sql) = self.target(approved.call())?;
        let write = db.validate_write(&sql).map_err(Self::refused)?;
        let proof = approved.rebind(write);
        let expected = crate::sql::Expected {
            rows_affected: preview["rows_affected"].as_u64().unwrap_or(0),
            row_ids_sha256: preview["row_ids_sha256"].as_str().map(str::to_owned),
        };
        let done = db
            .execute(&proof, idempotency_key, &expected)
            .await
            .map_err(Self::refused)?;
        Ok(json!({"rows_affected": done.rows_affected, "already_applied": done.already_applied}))
    }

    /// Whether the write with this idempotency key was applied.
    pub async fn was_applied(
        &self,
        arguments: &Value,
        idempotency_key: &str,
    ) -> Result<bool, ToolError> {
        let (db, _) = self.target(arguments)?;
        db.was_applied(idempotency_key).await.map_err(Self::refused)
    }

    /// Settles for good whether the write with these arguments and idempotency key was applied
    /// (see [`CompanyDatabase::settle`]): never [`Settlement::Unknown`].
    pub async fn settle(
        &self,
        arguments: &Value,
        idempotency_key: &str,
    ) -> Result<Settlement, ToolError> {
        let (db, _) = self.target(arguments)?;
        db.settle(idempotency_key).await.map_err(Self::refused)
    }
}

#[async_trait]
impl WriteTool for SqlExecute {
    async fn propose(&self, arguments: &Value) -> Result<Proposal, ToolError> {
        self.propose_sql(arguments).await
    }

    async fn execute(
        &self,
        approved: &crate::approval::Approved<Value>,
        idempotency_key: &str,
        preview: &Value,
    ) -> Result<Value, ToolError> {
        self.execute_sql(approved, idempotency_key, preview).await
    }

    async fn settle(
        &self,
        arguments: &Value,
        idempotency_key: &str,
    ) -> Result<Settlement, ToolError> {
        SqlExecute::settle(self, arguments, idempotency_key).await
    }
}

#[async_trait]
impl Tool for SqlExecute {
    fn name(&self) -> &str {
        "sql_execute"
    }

    fn description(&self) -> String {
        let dbs: Vec<&String> = self.databases.keys().collect();
        format!(
            "Proposes one INSERT, UPDATE or DELETE (with a WHERE clause) on a writable table of: {}. \
             It does not run at once: a human sees what would change and approves or denies it; \
             you get the result, or the denial and its reason.",
            dbs.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    }

    fn parameters(&self) -> Value {
        let names: Vec<&String> = self.databases.keys().collect();
        json!({
            "type": "object",
            "properties": {
                "database": {"type": "string", "enum": names},
                "sql": {"type": "string", "description": "One INSERT, UPDATE or DELETE."}
            },
            "required": ["database", "sql"],
            "additionalProperties": false
        })
    }

    async fn call(&self, _arguments: &Value) -> Result<Value, ToolError> {
        Err(ToolError::Refused {
            rule: "approval_required".into(),
            message: "sql_execute runs only with a human's signed approval".into(),
        })
    }
}
