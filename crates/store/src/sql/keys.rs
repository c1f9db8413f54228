//! Virtual keys and the outbox of their change events. Each change and its event are written in
//! one transaction, so the audit log never misses a change that happened.

use super::rows::{self, KEY_COLUMNS};
use super::{SqlStore, is_unique_violation, with_pool};
use crate::records::{KeyEvent, KeyRecord, NewKeyRecord};
use crate::{Error, KeyEventOutbox, KeyStore};
use async_trait::async_trait;

/// Records a key change (`action` on the key `$name`, `$id` or empty for all of that name) in
/// the transaction `$tx`.
macro_rules! key_event {
    ($tx:expr, $action:expr, $name:expr, $id:expr) => {
        sqlx::query(
            "INSERT INTO key_events (at_ms, action, key_name, key_id) VALUES ($1, $2, $3, $4)",
        )
        .bind(warden_core::time::unix_millis() as i64)
        .bind($action)
        .bind($name)
        .bind($id)
        .execute(&mut *$tx)
        .await
    };
}

/// Inserts `$key` in the transaction `$tx`; a current key of the same name is
/// [`Error::NameTaken`].
macro_rules! insert_key {
    ($tx:expr, $key:expr) => {{
        let key: &NewKeyRecord = $key;
        sqlx::query(
            "INSERT INTO virtual_keys (id, name, key_hash, prefix, models, created_at, expires_at,
                admin, agents, max_agents, lineage_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&key.id)
        .bind(&key.name)
        .bind(&key.hash[..])
        .bind(&key.prefix)
        .bind(models_json(key))
        .bind(key.created_at)
        .bind(key.expires_at)
        .bind(key.admin)
        .bind(json_list(&key.agents))
        .bind(key.max_agents)
        .bind(&key.lineage_id)
        .execute(&mut *$tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                Error::NameTaken(key.name.clone())
            } else {
                e.into()
            }
        })
    }};
}

/// Ends a change to the keys named `$name` that touched `$rows` rows, in the transaction
/// `$tx`: none is [`Error::NoSuchKey`] (rolled back); else the change is recorded as an
/// `$action` key event and committed. Gives the rows changed.
macro_rules! commit_key_change {
    ($tx:expr, $rows:expr, $action:expr, $name:expr) => {{
        let (mut tx, rows, name): (_, u64, &str) = ($tx, $rows, $name);
        if rows == 0 {
            return Err(Error::NoSuchKey(name.to_owned()));
        }
        key_event!(tx, $action, name, "")?;
        tx.commit().await?;
        Ok(rows)
    }};
}

fn json_list(items: &[String]) -> String {
    serde_json::Value::from(items.to_vec()).to_string()
}

fn models_json(key: &NewKeyRecord) -> Option<String> {
    key.models.as_deref().map(json_list)
}

#[async_trait]
impl KeyStore for SqlStore {
    async fn insert_key(&self, key: &NewKeyRecord) -> Result<(), Error> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            insert_key!(tx, key)?;
            key_event!(tx, "created", &key.name, &key.id)?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn key_by_hash(&self, hash: &[u8; 32]) -> Result<Option<KeyRecord>, Error> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM virtual_keys WHERE key_hash = $1");
        with_pool!(self, |pool| {
            let row = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(&hash[..])
                .fetch_optional(pool)
                .await?;
            row.as_ref().map(rows::key).transpose()
        })
    }

    async fn list_keys(&self) -> Result<Vec<KeyRecord>, Error> {
        // Newest first; keys of the same second in the order they were inserted.
        let sql = format!(
            "SELECT {KEY_COLUMNS} FROM virtual_keys ORDER BY created_at DESC, {} DESC",
            self.dialect().key_insertion_order()
        );
        with_pool!(self, |pool| {
            let found = sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(pool)
                .await?;
            found.iter().map(rows::key).collect()
        })
    }

    async fn revoke_keys(&self, name: &str, now: i64) -> Result<u64, Error> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let done = sqlx::query(
                "UPDATE virtual_keys SET revoked_at = $1
                 WHERE name = $2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1)",
            )
            .bind(now)
            .bind(name)
            .execute(&mut *tx)
            .await?;
            commit_key_change!(tx, done.rows_affected(), "revoked", name)
        })
    }

    async fn rotate_key(&self, new: &NewKeyRecord, old_valid_until: i64) -> Result<(), Error> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            // The new key continues the old one's lineage, which owns its agents.
            let lineage: Option<String> = sqlx::query_scalar(
                "SELECT lineage_id FROM virtual_keys
                 WHERE name = $1 AND revoked_at IS NULL AND replaced_by IS NULL",
            )
            .bind(&new.name)
            .fetch_optional(&mut *tx)
            .await?
            .flatten();
            let new = &NewKeyRecord {
                lineage_id: lineage.unwrap_or_else(|| new.lineage_id.clone()),
                ..new.clone()
            };
            let old = sqlx::query(
                "UPDATE virtual_keys
                 SET replaced_by = $1,
                     expires_at = CASE WHEN expires_at IS NULL OR expires_at > $2 THEN $2 ELSE expires_at END
                 WHERE name = $3 AND revoked_at IS NULL AND replaced_by IS NULL",
            )
            .bind(&new.id)
            .bind(old_valid_until)
            .bind(&new.name)
            .execute(&mut *tx)
            .await?;
            if old.rows_affected() == 0 {
                return Err(Error::NoSuchKey(new.name.clone()));
            }
            insert_key!(tx, new)?;
            key_event!(tx, "rotated", &new.name, &new.id)?;
            tx.commit().await?;
            Ok(())
        })
    }

    async fn update_key_agents(
        &self,
        name: &str,
        agents: &[String],
        max_agents: Option<i64>,
    ) -> Result<u64, Error> {
        with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let done = sqlx::query(
                "UPDATE virtual_keys SET agents = $1, max_agents = $2
                 WHERE name = $3 AND revoked_at IS NULL",
            )
            .bind(json_list(agents))
            .bind(max_agents)
            .bind(name)
            .execute(&mut *tx)
            .await?;
            commit_key_change!(tx, done.rows_affected(), "updated", name)
        })
    }
}

#[async_trait]
impl KeyEventOutbox for SqlStore {
    async fn pending_key_events(&self) -> Result<Vec<KeyEvent>, Error> {
        with_pool!(self, |pool| {
            let found = sqlx::query(
                "SELECT id, at_ms, action, key_name, key_id FROM key_events
                 WHERE audited = FALSE ORDER BY id LIMIT 1000",
            )
            .fetch_all(pool)
            .await?;
            found.iter().map(rows::key_event).collect()
        })
    }

    async fn mark_key_events_audited(&self, up_to_id: i64) -> Result<(), Error> {
        with_pool!(self, |pool| {
            sqlx::query("UPDATE key_events SET audited = TRUE WHERE audited = FALSE AND id <= $1")
                .bind(up_to_id)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
