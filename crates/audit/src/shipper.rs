//! Ships closed segments to object storage (a local folder by default; any S3-compatible
//! bucket through `object_store`). Objects are written with `PutMode::Create`, never
//! overwritten; the local copy is deleted only once segment and manifest are stored. While the
//! store is down, segments wait on disk and shipping is retried with backoff.
//!
//! A checkpoint ships only with the segment holding its sequence number, after the segment and
//! before the manifest that names it: a checkpoint in the store is never ahead of the segments
//! there, and a manifest in the store means its segment and checkpoint are there too. The
//! writer's other checkpoints (inside segments now shipped) are superseded and dropped locally.

use crate::Error;
use crate::checkpoint::{CHECKPOINTS, checkpoint_name, checkpoint_seq};
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
    checkpoints: PathBuf,
    store: Arc<dyn ObjectStore>,
}

impl Shipper {
    /// Ships from `audit_dir/closed` (and `audit_dir/checkpoints`) to `store`.
    pub fn new(audit_dir: &std::path::Path, store: Arc<dyn ObjectStore>) -> Self {
        Self {
            closed: audit_dir.join("closed"),
            checkpoints: audit_dir.join("checkpoints"),
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
            self.ship_one(&manifest).await?;
            shipped += 1;
        }
        Ok(shipped)
    }

    /// Ships one closed segment: the segment, its closing checkpoint, then its manifest; then
    /// removes the local copies and the checkpoints it supersedes.
    async fn ship_one(&self, manifest: &str) -> Result<(), Error> {
        let segment = manifest.trim_end_matches(".manifest.json").to_owned() + ".jsonl";
        debug_assert_eq!(manifest_name(&segment), manifest);
        let manifest_bytes = tokio::fs::read(self.closed.join(manifest))
            .await
            .map_err(io)?;
        let m: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| Error::Invalid(format!("{manifest}: {e}")))?;
        let bytes = tokio::fs::read(self.closed.join(&segment))
            .await
            .map_err(io)?;
        self.put_once(&format!("{PREFIX}/{segment}"), bytes).await?;
        if let Some(seq) = m.checkpoint_seq {
            let name = checkpoint_name(seq);
            match tokio::fs::read(self.checkpoints.join(&name)).await {
                Ok(bytes) => {
                    self.put_once(&format!("{CHECKPOINTS}/{name}"), bytes)
                        .await?
                }
                // Shipped by an earlier round that stopped before removing the manifest.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(e)),
            }
        }
        self.put_once(&format!("{PREFIX}/{manifest}"), manifest_bytes)
            .await?;
        self.drop_checkpoints_through(m.last_seq).await?;
        tokio::fs::remove_file(self.closed.join(manifest))
            .await
            .map_err(io)?;
        tokio::fs::remove_file(self.closed.join(&segment))
            .await
            .map_err(io)
    }

    /// Removes local checkpoints up to `last_seq`: shipped, or superseded by one that was.
    async fn drop_checkpoints_through(&self, last_seq: u64) -> Result<(), Error> {
        let mut dir = match tokio::fs::read_dir(&self.checkpoints).await {
            Ok(dir) => dir,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(e)),
        };
        while let Some(entry) = dir.next_entry().await.map_err(io)? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if checkpoint_seq(&name).is_some_and(|seq| seq <= last_seq) {
                tokio::fs::remove_file(entry.path()).await.map_err(io)?;
            }
        }
        Ok(())
    }

    /// Stores an object (`path` under the store's root) unless an identical one is already
    /// there (a retry after a crash).
    async fn put_once(&self, path: &str, bytes: Vec<u8>) -> Result<(), Error> {
        let path = ObjectPath::from(path);
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
            let mut names = vec![
                format!("{PREFIX}/{}", m.segment),
                format!("{PREFIX}/{}", manifest_name(&m.segment)),
            ];
            names.extend(
                m.checkpoint_seq
                    .map(|seq| format!("{CHECKPOINTS}/{}", checkpoint_name(seq))),
            );
            for name in names {
                match self.store.delete(&ObjectPath::from(name)).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(store(e)),
                }
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
