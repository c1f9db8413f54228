//! Webhook notifications of timeouts, halts and failures: a JSON POST, retried with backoff
//! in the background; a failure to notify is logged and counted, never blocks the agent.

use serde_json::Value;
use std::time::Duration;

/// Attempts per notification.
const ATTEMPTS: u32 = 4;

/// Where an agent's notifications go.
#[derive(Clone)]
pub struct Webhook {
    url: String,
    client: reqwest::Client,
}

impl Webhook {
    /// A webhook at `url` (the binary reads it from the environment).
    pub fn new(url: String) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Self { url, client }
    }

    /// Sends `payload` in the background.
    pub(crate) fn notify(&self, payload: Value) {
        let hook = self.clone();
        tokio::spawn(async move {
            for attempt in 1..=ATTEMPTS {
                match hook.client.post(&hook.url).json(&payload).send().await {
                    Ok(r) if r.status().is_success() => {
                        metrics::counter!("warden_agent_notifications_total", "result" => "sent")
                            .increment(1);
                        return;
                    }
                    Ok(r) => {
                        tracing::warn!(
                            status = r.status().as_u16(),
                            attempt,
                            "webhook refused a notification"
                        );
                    }
                    Err(e) => {
                        tracing::warn!(error = %e.without_url(), attempt, "webhook unreachable");
                    }
                }
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt))).await;
            }
            metrics::counter!("warden_agent_notifications_total", "result" => "failed")
                .increment(1);
        });
    }
}
