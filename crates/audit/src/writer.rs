//! The write-ahead audit file. Callers hand an event to [`AuditLog::append`] and get its
//! sequence number back only once the record is written (and, with `fsync = "always"`, on
//! disk): the request path waits for that before it answers. Events that arrive together are
//! written and synced together (group commit). Segments rotate by size and age; a closed
//! segment gets a signed manifest and waits in `closed/` for the shipper.
//!
//! A timer in the same loop signs a [`Checkpoint`] of the chain head into `checkpoints/` at
//! least every `checkpoint_interval` while the head moves (never per record), and each close
//! signs one of the segment's last record, which its manifest names. Only the newest checkpoint
//! inside the open segment is kept; the closing ones wait for the shipper with their segments.
//!
//! If the disk refuses a write, the writer stops accepting events (fail closed): every later
//! `append` fails, and callers refuse the work they were about to do.

use crate::Error;
use crate::checkpoint::{Checkpoint, checkpoint_name, checkpoint_seq};
use crate::record::{Event, GENESIS, Record};
use crate::segment::{Manifest, manifest_name, segment_name};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};

/// When records are synced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// After every group of records, before they are acknowledged (durable).
    Always,
    /// Left to the operating system (faster; a power cut can lose acknowledged records).
    Never,
}

/// Writer settings.
pub struct Options {
    /// Folder for `open/`, `closed/` and `chain-head.json`.
    pub dir: PathBuf,
    /// Stamped on every record.
    pub deployment: String,
    /// Sync policy.
    pub fsync: Fsync,
    /// Close a segment once it is this large.
    pub max_segment_bytes: u64,
    /// Close a non-empty segment once it is this old.
    pub max_segment_age: Duration,
    /// Sign a checkpoint of the chain head at least this often while it moves (must be > 0).
    pub checkpoint_interval: Duration,
    /// Signs manifests and checkpoints.
    pub key: SigningKey,
}

type Pending = (Event, oneshot::Sender<Result<u64, Error>>);

/// Appends events. Cheap to clone.
#[derive(Clone)]
pub struct AuditLog {
    tx: mpsc::Sender<Pending>,
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl AuditLog {
    /// Appends an event; returns its sequence number once it is durable per the fsync policy.
    pub async fn append(&self, event: Event) -> Result<u64, Error> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send((event, ack))
            .await
            .map_err(|_| Error::Closed)?;
        done.await.map_err(|_| Error::Closed)?
    }

    /// Whether the writer is known to refuse every event (it failed, or stopped): callers
    /// refuse work up front instead of doing it and then finding it cannot be recorded.
    pub fn is_failing(&self) -> bool {
        self.tx.is_closed() || self.failing.load(std::sync::atomic::Ordering::Acquire)
    }
}

/// Where the chain ends, kept across restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Head {
    last_seq: u64,
    last_hash: String,
}

struct OpenSegment {
    name: String,
    file: std::fs::File,
    first: Record,
    last: Record,
    bytes: u64,
    opened: Instant,
}

/// The background writer.
pub struct Writer {
    options: Options,
    head: Head,
    /// Sequence number of the newest checkpoint written (never two for one seq).
    checkpointed: u64,
    open: Option<OpenSegment>,
    failed: Option<String>,
    /// Set with `failed`, for the handles' [`AuditLog::is_failing`].
    failing: std::sync::Arc<std::sync::atomic::AtomicBool>,
    rx: mpsc::Receiver<Pending>,
}

impl Writer {
    /// Opens the log in `options.dir`, recovering the chain's end: an open segment is checked
    /// and a torn last line (a crash mid-write, never acknowledged) is cut off; a closed
    /// segment without its manifest (a crash while closing) is reopened.
    pub fn open(options: Options) -> Result<(Self, AuditLog), Error> {
        for sub in ["open", "closed", "checkpoints"] {
            std::fs::create_dir_all(options.dir.join(sub)).map_err(io)?;
        }
        reopen_unsigned(&options.dir)?;
        let mut head = read_head(&options.dir)?;
        // Every checkpoint already shipped is at or before the closed head.
        let checkpointed = list(&options.dir.join("checkpoints"), ".json")?
            .iter()
            .filter_map(|n| checkpoint_seq(n))
            .fold(head.last_seq, u64::max);
        let mut open = None;
        let mut names: Vec<String> = list(&options.dir.join("open"), ".jsonl")?;
        names.sort();
        for name in names {
            let path = options.dir.join("open").join(&name);
            match recover(&path, &head)? {
                Some(seg) => {
                    head = Head {
                        last_seq: seg.last.seq,
                        last_hash: seg.last.hash(),
                    };
                    open = Some(seg);
                }
                None => std::fs::remove_file(&path).map_err(io)?,
            }
        }
        if checkpointed > head.last_seq {
            // Only lost records (a restored backup, a disk that lied) leave a signed head behind.
            return Err(Error::Invalid(format!(
                "checkpoint {checkpointed} is ahead of the recovered chain (seq {}): records it \
                 covers are lost; refusing to write over them",
                head.last_seq
            )));
        }
        let (tx, rx) = mpsc::channel(16 * 1024);
        let failing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        Ok((
            Self {
                options,
                head,
                checkpointed,
                open,
                failed: None,
                failing: failing.clone(),
                rx,
            },
            AuditLog { tx, failing },
        ))
    }

    /// Stops accepting events (fail closed) and tells the handles.
    fn fail(&mut self, why: String) {
        self.failed = Some(why);
        self.failing
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The last sequence number written.
    pub fn last_seq(&self) -> u64 {
        self.head.last_seq
    }

    /// Runs until every [`AuditLog`] handle is dropped, or until `stop` resolves (then no new
    /// event is accepted and the queued ones are written); finally closes the open segment so
    /// that it can be shipped.
    pub async fn run(mut self, stop: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut checkpoint = tokio::time::interval(self.options.checkpoint_interval);
        checkpoint.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(1024);
        let mut stop = std::pin::pin!(stop);
        let mut stopping = false;
        loop {
            tokio::select! {
                n = self.rx.recv_many(&mut batch, 1024) => {
                    if n == 0 {
                        break;
                    }
                    self.write(std::mem::take(&mut batch)).await;
                }
                () = &mut stop, if !stopping => {
                    stopping = true;
                    self.rx.close();
                }
                _ = tick.tick() => {}
                _ = checkpoint.tick() => self.checkpoint().await,
            }
            if self.rotation_due() {
                self.close_segment().await;
            }
        }
        self.close_segment().await;
    }

    fn rotation_due(&self) -> bool {
        self.open.as_ref().is_some_and(|s| {
            s.bytes >= self.options.max_segment_bytes
                || s.opened.elapsed() >= self.options.max_segment_age
        })
    }

    async fn write(&mut self, batch: Vec<Pending>) {
        if let Some(reason) = &self.failed {
            for (_, ack) in batch {
                let _ = ack.send(Err(Error::Failed(reason.clone())));
            }
            return;
        }
        let now = warden_core::time::unix_millis();
        let mut lines = Vec::new();
        let mut records = Vec::with_capacity(batch.len());
        let mut head = self.head.clone();
        for (event, _) in &batch {
            let record = Record {
                seq: head.last_seq + 1,
                time_ms: now,
                deployment: self.options.deployment.clone(),
                prev_hash: head.last_hash.clone(),
                event: event.clone(),
            };
            let bytes = record.canonical();
            head = Head {
                last_seq: record.seq,
                last_hash: hex::encode(sha(&bytes)),
            };
            lines.extend_from_slice(&bytes);
            lines.push(b'\n');
            records.push(record);
        }
        let (first, last) = (records[0].clone(), records[records.len() - 1].clone());
        let open = self.open.take();
        let dir = self.options.dir.clone();
        let fsync = self.options.fsync;
        let result = tokio::task::spawn_blocking(move || {
            let mut seg = match open {
                Some(seg) => seg,
                None => new_segment(&dir, first.clone())?,
            };
            seg.file.write_all(&lines).map_err(io)?;
            if fsync == Fsync::Always {
                seg.file.sync_data().map_err(io)?;
            }
            seg.bytes += lines.len() as u64;
            seg.last = last;
            Ok::<_, Error>(seg)
        })
        .await
        .map_err(|e| Error::Io(e.to_string()))
        .and_then(|r| r);
        match result {
            Ok(seg) => {
                self.open = Some(seg);
                self.head = head;
                for ((_, ack), r) in batch.into_iter().zip(&records) {
                    let _ = ack.send(Ok(r.seq));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "audit write failed; refusing further events (fail closed)");
                self.fail(e.to_string());
                for (_, ack) in batch {
                    let _ = ack.send(Err(Error::Failed(e.to_string())));
                }
            }
        }
    }

    /// Signs a checkpoint of the head if it moved since the last one (the timer's work).
    async fn checkpoint(&mut self) {
        if self.failed.is_some() || self.head.last_seq <= self.checkpointed {
            return;
        }
        let signer = self.signer();
        let open = self.open.take();
        let sync = self.options.fsync == Fsync::Never;
        let result = tokio::task::spawn_blocking(move || {
            if let Some(seg) = &open
                && sync
            {
                // The records a checkpoint covers are on disk before it is.
                seg.file.sync_data().map_err(io)?;
            }
            let inside = open.as_ref().map_or(u64::MAX, |s| s.first.seq);
            signer.write(inside)?;
            Ok::<_, Error>(open)
        })
        .await
        .map_err(|e| Error::Io(e.to_string()))
        .and_then(|r| r);
        match result {
            Ok(open) => {
                self.open = open;
                self.checkpointed = self.head.last_seq;
            }
            Err(e) => {
                tracing::error!(error = %e, "writing an audit checkpoint failed; refusing further events");
                self.fail(e.to_string());
            }
        }
    }

    /// What a blocking task needs to sign and write a checkpoint of the current head.
    fn signer(&self) -> CheckpointSigner {
        CheckpointSigner {
            dir: self.options.dir.join("checkpoints"),
            key: self.options.key.clone(),
            deployment: self.options.deployment.clone(),
            head: self.head.clone(),
            previous: self.checkpointed,
        }
    }

    /// Closes the open segment: closing checkpoint, move to `closed/`, new chain head, signed
    /// manifest naming the checkpoint.
    async fn close_segment(&mut self) {
        let Some(seg) = self.open.take() else { return };
        if self.failed.is_some() {
            // Leave it in open/: the next start recovers it.
            return;
        }
        let dir = self.options.dir.clone();
        let signer = self.signer();
        let name = seg.name.clone();
        let result = tokio::task::spawn_blocking(move || close(&dir, signer, seg))
            .await
            .map_err(|e| Error::Io(e.to_string()))
            .and_then(|r| r);
        match result {
            Ok(()) => self.checkpointed = self.checkpointed.max(self.head.last_seq),
            Err(e) => {
                tracing::error!(segment = %name, error = %e, "closing an audit segment failed; refusing further events");
                self.fail(e.to_string());
            }
        }
    }
}

/// Signs and writes one checkpoint (in a blocking task).
struct CheckpointSigner {
    dir: PathBuf,
    key: SigningKey,
    deployment: String,
    head: Head,
    previous: u64,
}

impl CheckpointSigner {
    /// Writes the checkpoint of the head, then drops the previous one if it lay inside the
    /// open segment (from `open_first` on): the new one proves everything it did.
    fn write(&self, open_first: u64) -> Result<(), Error> {
        let now = warden_core::time::unix_millis();
        let c = Checkpoint::sign(
            &self.key,
            self.head.last_seq,
            &self.head.last_hash,
            now,
            &self.deployment,
        );
        let bytes = serde_json::to_vec_pretty(&c).map_err(|e| Error::Io(e.to_string()))?;
        write_atomic(&self.dir.join(checkpoint_name(c.seq)), &bytes)?;
        if self.previous >= open_first && self.previous < c.seq {
            match std::fs::remove_file(self.dir.join(checkpoint_name(self.previous))) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
                _ => {}
            }
        }
        Ok(())
    }
}

fn sha(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn io(e: std::io::Error) -> Error {
    Error::Io(e.to_string())
}

fn list(dir: &Path, suffix: &str) -> Result<Vec<String>, Error> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let name = entry
            .map_err(io)?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(suffix) {
            out.push(name);
        }
    }
    Ok(out)
}

fn read_head(dir: &Path) -> Result<Head, Error> {
    match std::fs::read(dir.join("chain-head.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| Error::Invalid(format!("chain-head.json: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Head {
            last_seq: 0,
            last_hash: GENESIS.into(),
        }),
        Err(e) => Err(io(e)),
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

fn new_segment(dir: &Path, first: Record) -> Result<OpenSegment, Error> {
    let name = segment_name(first.seq);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("open").join(&name))
        .map_err(io)?;
    Ok(OpenSegment {
        name,
        file,
        last: first.clone(),
        first,
        bytes: 0,
        opened: Instant::now(),
    })
}

/// Reads an open segment left by a previous run; keeps its valid prefix.
fn recover(path: &Path, head: &Head) -> Result<Option<OpenSegment>, Error> {
    let bytes = std::fs::read(path).map_err(io)?;
    let mut good = 0usize;
    let mut records: Vec<Record> = Vec::new();
    let mut prev = head.last_hash.clone();
    for line in bytes.split_inclusive(|b| *b == b'\n') {
        if !line.ends_with(b"\n") {
            break; // torn write: never acknowledged
        }
        let Ok(record) = serde_json::from_slice::<Record>(&line[..line.len() - 1]) else {
            break;
        };
        if records.is_empty() {
            prev = record.prev_hash.clone();
        }
        if record.prev_hash != prev {
            return Err(Error::Invalid(format!(
                "{}: broken chain at seq {}",
                path.display(),
                record.seq
            )));
        }
        prev = record.hash();
        good += line.len();
        records.push(record);
    }
    if good < bytes.len() {
        tracing::warn!(path = %path.display(), dropped = bytes.len() - good, "audit: cut a torn last line");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(io)?;
        f.set_len(good as u64)
            .and_then(|()| f.sync_all())
            .map_err(io)?;
    }
    let (Some(first), Some(last)) = (records.first().cloned(), records.last().cloned()) else {
        return Ok(None);
    };
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(io)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(Some(OpenSegment {
        name,
        file,
        first,
        last,
        bytes: good as u64,
        opened: Instant::now(),
    }))
}

/// Moves segments left in `closed/` without a manifest (a crash while closing) back to
/// `open/`, where recovery picks them up and a later close signs them.
fn reopen_unsigned(dir: &Path) -> Result<(), Error> {
    let closed = dir.join("closed");
    for name in list(&closed, ".jsonl")? {
        if closed.join(manifest_name(&name)).exists() {
            continue;
        }
        tracing::warn!(segment = %name, "audit: reopening a segment closed without its manifest");
        std::fs::rename(closed.join(&name), dir.join("open").join(&name)).map_err(io)?;
    }
    Ok(())
}

/// Closes a segment. The order makes every crash recoverable: the closing checkpoint (if the
/// head moved since the last one), then the segment into `closed/`, then the chain head, and
/// last the manifest: a manifest in `closed/` means segment, checkpoint and head are complete.
fn close(dir: &Path, signer: CheckpointSigner, seg: OpenSegment) -> Result<(), Error> {
    seg.file.sync_all().map_err(io)?;
    if signer.head.last_seq > signer.previous {
        signer.write(seg.first.seq)?;
    }
    let checkpoint = dir.join("checkpoints").join(checkpoint_name(seg.last.seq));
    let checkpoint_seq = checkpoint.exists().then_some(seg.last.seq);
    let open_path = dir.join("open").join(&seg.name);
    let bytes = std::fs::read(&open_path).map_err(io)?;
    let manifest = Manifest::sign(
        &signer.key,
        &seg.name,
        &seg.first,
        &seg.last,
        &bytes,
        checkpoint_seq,
    );
    let manifest_bytes =
        serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Io(e.to_string()))?;
    std::fs::rename(&open_path, dir.join("closed").join(&seg.name)).map_err(io)?;
    let head_bytes = serde_json::to_vec(&signer.head).map_err(|e| Error::Io(e.to_string()))?;
    write_atomic(&dir.join("chain-head.json"), &head_bytes)?;
    write_atomic(
        &dir.join("closed").join(manifest_name(&seg.name)),
        &manifest_bytes,
    )
}
