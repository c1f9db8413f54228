//! Ships closed segments to object storage (a local folder by default; any S3-compatible
//! bucket through `object_store`). Objects are written with `PutMode::Create`, never
//! overwritten; the local copy is deleted only once segment and manifest are stored. While the
//! store is down, segments wait on disk and shipping is retried with backoff.

use crate::Error;
use crate::segment::{Manifest, RETENTION, Retention, manifest_name};
use ed25519_dalek::SigningKey;
use futures_util::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Object names live under this prefix.
pub const PREFIX: &str = "segments";

/// The background shipper.
pub struct Shipper {
    closed: PathBuf,
    store: Arc<dyn ObjectStore>,
}

impl Shipper {
    /// Ships from `audit_dir/closed` to `store`.
    pub fn new(audit_dir: &std::path::Path, store: Arc<dyn ObjectStore>) -> Self {
        Self {
            closed: audit_dir.join("closed"),
            store,
        }
    }

    /// Ships every closed segment now; returns how many were shipped.
    pub async fn ship_pending(&self) -> Result<usize, Error> {
        let mut manifests: Vec<String> = Vec::new();
        let mut dir = tokio::fs::read_dir(&self.closed).await.map_err(io)?;
        while let Some(entry) = dir.next_entry().await.map_err(io)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".manifest.json") {
                manifests.push(name);
            }
        }
        manifests.sort();
        let mut shipped = 0;
        for manifest in manifests {
            let segment = manifest.trim_end_matches(".manifest.json").to_owned() + ".jsonl";
            debug_assert_eq!(manifest_name(&segment), manifest);
            for name in [&segment, &manifest] {
                let bytes = tokio::fs::read(self.closed.join(name)).await.map_err(io)?;
                self.put_once(name, bytes).await?;
            }
            tokio::fs::remove_file(self.closed.join(&manifest))
                .await
                .map_err(io)?;
            tokio::fs::remove_file(self.closed.join(&segment))
                .await
                .map_err(io)?;
            shipped += 1;
        }
        Ok(shipped)
    }

    /// Stores an object unless an identical one is already there (a retry after a crash).
    async fn put_once(&self, name: &str, bytes: Vec<u8>) -> Result<(), Error> {
        let path = ObjectPath::from(format!("{PREFIX}/{name}"));
        let options = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&path, PutPayload::from(bytes.clone()), options)
            .await
        {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let existing = self
                    .store
                    .get(&path)
                    .await
                    .map_err(store)?
                    .bytes()
                    .await
                    .map_err(store)?;
                if existing.as_ref() == bytes.as_slice() {
                    Ok(())
                } else {
                    Err(Error::Invalid(format!(
                        "{path} already exists with other content; not overwritten"
                    )))
                }
            }
            Err(e) => Err(store(e)),
        }
    }

    /// Deletes shipped segments whose last record is older than `before_ms`, oldest first and
    /// only as an unbroken run from the start of the chain, after writing a signed retention
    /// marker that says where the chain now starts. Returns how many segments were deleted.
    pub async fn apply_retention(&self, key: &SigningKey, before_ms: u64) -> Result<usize, Error> {
        let prefix = ObjectPath::from(PREFIX);
        let metas: Vec<_> = self
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(store)?;
        let mut manifests = Vec::new();
        for meta in metas {
            if meta
                .location
                .filename()
                .is_some_and(|n| n.ends_with(".manifest.json"))
            {
                let bytes = self
                    .store
                    .get(&meta.location)
                    .await
                    .map_err(store)?
                    .bytes()
                    .await
                    .map_err(store)?;
                let m: Manifest = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::Invalid(format!("{}: {e}", meta.location)))?;
                manifests.push(m);
            }
        }
        manifests.sort_by_key(|m| m.first_seq);
        let expired: Vec<&Manifest> = manifests
            .iter()
            .take_while(|m| m.last_time_ms < before_ms)
            .collect();
        let Some(last) = expired.last() else {
            return Ok(0);
        };
        let now = warden_core::time::unix_millis();
        let marker = Retention::sign(key, last.last_seq + 1, &last.last_hash, now);
        let bytes =
            serde_json::to_vec_pretty(&marker).map_err(|e| Error::Invalid(e.to_string()))?;
        // The marker first: a crash between the two steps leaves extra old segments, not a gap.
        let marker_path = ObjectPath::from(format!("{PREFIX}/{RETENTION}"));
        self.store
            .put(&marker_path, PutPayload::from(bytes))
            .await
            .map_err(store)?;
        for m in &expired {
            for name in [m.segment.clone(), manifest_name(&m.segment)] {
                self.store
                    .delete(&ObjectPath::from(format!("{PREFIX}/{name}")))
                    .await
                    .map_err(store)?;
            }
        }
        tracing::info!(
            segments = expired.len(),
            from_seq = last.last_seq + 1,
            "audit retention applied"
        );
        Ok(expired.len())
    }

    /// Ships every `interval` until `stop` resolves, then once more. With `retention`, also
    /// deletes shipped segments older than its duration after each round.
    pub async fn run(self, interval: Duration, stop: impl Future<Output = ()>) {
        self.run_with_retention(interval, None, stop).await;
    }

    /// [`Shipper::run`], with an optional retention period and the key that signs its marker.
    pub async fn run_with_retention(
        self,
        interval: Duration,
        retention: Option<(SigningKey, Duration)>,
        stop: impl Future<Output = ()>,
    ) {
        let mut stop = std::pin::pin!(stop);
        let mut delay = interval;
        loop {
            match self.ship_pending().await {
                Ok(_) => {
                    delay = interval;
                    if let Some((key, keep)) = &retention {
                        let now = warden_core::time::unix_millis();
                        let before = now.saturating_sub(keep.as_millis() as u64);
                        if let Err(e) = self.apply_retention(key, before).await {
                            tracing::warn!(error = %e, "audit retention failed; will retry");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "audit shipping failed; segments wait on disk");
                    delay = (delay * 2).min(Duration::from_secs(60));
                }
            }
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = &mut stop => break,
            }
        }
        if let Err(e) = self.ship_pending().await {
            tracing::warn!(error = %e, "final audit shipping failed; segments stay on disk for next start");
        }
    }
}

fn io(e: std::io::Error) -> Error {
    Error::Io(e.to_string())
}

fn store(e: object_store::Error) -> Error {
    Error::Store(e.to_string())
}
