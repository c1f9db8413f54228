//! The Redis connection that several Warden nodes share for rate limits, budgets and cached
//! answers. One multiplexed connection that reconnects by itself; every operation has a
//! deadline, so a Redis that hangs fails the request instead of stalling it.

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::Duration;

/// How long one Redis operation may take.
const OP_TIMEOUT: Duration = Duration::from_millis(500);

/// A shared Redis, with the prefix of every key Warden writes.
#[derive(Clone)]
pub struct SharedRedis {
    pub(crate) conn: ConnectionManager,
    pub(crate) prefix: String,
}

impl SharedRedis {
    /// Connects (and checks the server answers). The URL may hold a password: errors never
    /// repeat it.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, String> {
        let client = redis::Client::open(url)
            .map_err(|e| format!("the Redis URL is not valid ({:?})", e.kind()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(2);
        let mut conn = client
            .get_connection_manager_with_config(config)
            .await
            .map_err(|e| format!("cannot connect to Redis: {}", without_url(&e)))?;
        let pong: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("Redis does not answer: {}", without_url(&e)))?;
        if pong != "PONG" {
            return Err("Redis answered PING unexpectedly".into());
        }
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
        })
    }

    /// The full name of a key.
    pub(crate) fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// A Redis error without anything from the URL (the kind and the server's message only).
pub(crate) fn without_url(e: &redis::RedisError) -> String {
    match e.detail() {
        Some(d) => format!("{:?}: {d}", e.kind()),
        None => format!("{:?}", e.kind()),
    }
}
