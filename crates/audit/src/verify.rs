//! Verification: reads every checkpoint, segment and manifest (from the object store and,
//! optionally, the local folders not shipped yet), and checks that the chain is whole — every
//! shipped segment has its manifest, signed by the trusted key and matching its file; sequence
//! numbers run without gaps; each record's `prev_hash` is the hash of the one before; and the
//! chain reaches every signed checkpoint with the same hash. It reports the first broken link
//! and the newest checkpoint reached: the time up to which the log is proven complete.
//!
//! Only the writer's local tail (`open/`, or a `closed/` segment a crash left without its
//! manifest) may be unsigned, and only as the chain's last segment; its records are covered by
//! the local checkpoints made while it was open.

use crate::Error;
use crate::checkpoint::{CHECKPOINTS, Checkpoint, checkpoint_name, checkpoint_seq};
use crate::record::{GENESIS, Record};
use crate::segment::{Manifest, RETENTION, Retention};
use crate::shipper::PREFIX;
use ed25519_dalek::VerifyingKey;
use futures_util::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Segments read.
    pub segments: usize,
    /// Records checked.
    pub records: u64,
    /// Last sequence number reached.
    pub last_seq: u64,
    /// The newest signed checkpoint the chain reached; `None` if there is none (an empty log,
    /// or one written before checkpoints existed).
    pub proven: Option<Proven>,
    /// The first problem found, if any.
    pub problem: Option<String>,
}

/// A checkpoint the chain reached: every record up to `seq` is present and unchanged, as
/// signed at `time_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proven {
    /// Sequence number of the checkpoint.
    pub seq: u64,
    /// When it was signed (unix ms): the log is proven complete up to this time.
    pub time_ms: u64,
}

impl Report {
    /// Why the log is stale at `now_ms`: no checkpoint, or the newest one is older than
    /// `max_age` (what is left after the newest objects were deleted looks like this).
    pub fn stale(&self, max_age: Duration, now_ms: u64) -> Option<String> {
        let Some(p) = self.proven else {
            return Some("no signed checkpoint: completeness is not proven".into());
        };
        let age = Duration::from_millis(now_ms.saturating_sub(p.time_ms));
        (age > max_age).then(|| {
            format!(
                "the newest checkpoint (seq {}) is {} s old, more than the maximum {} s: the \
                 log stopped, or its newest objects were deleted",
                p.seq,
                age.as_secs(),
                max_age.as_secs()
            )
        })
    }
}

/// Where a segment was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The writer's `open/` folder.
    Open,
    /// The writer's `closed/` folder, waiting for the shipper.
    Closed,
    /// The object store.
    Store,
}

/// One segment's bytes and (for closed segments) its manifest.
struct Segment {
    name: String,
    bytes: Vec<u8>,
    manifest: Option<Vec<u8>>,
    origin: Origin,
}

/// Checkpoints by sequence number.
type Checkpoints = BTreeMap<u64, Checkpoint>;

/// Files read, as (name, bytes).
type Files = Vec<(String, Vec<u8>)>;

/// Reads every segment, in order, with manifests; the second value names a manifest whose
/// segment is missing. Local folders are read before the store, `open/` before `closed/`, so
/// a segment the writer and shipper move meanwhile is seen at least once (the later, more
/// complete copy wins).
async fn load(
    store: &dyn ObjectStore,
    local: Option<&Path>,
) -> Result<(BTreeMap<String, Segment>, Option<String>), Error> {
    let mut segments: BTreeMap<String, Segment> = BTreeMap::new();
    let mut manifests = BTreeMap::new();
    let mut add = |name: String, bytes: Vec<u8>, origin: Origin| {
        if let Some(seg) = name.strip_suffix(".manifest.json") {
            manifests.insert(format!("{seg}.jsonl"), bytes);
        } else if name.ends_with(".jsonl") {
            let segment = Segment {
                name: name.clone(),
                bytes,
                manifest: None,
                origin,
            };
            segments.insert(name, segment);
        }
    };
    if let Some(dir) = local {
        for (sub, origin) in [("open", Origin::Open), ("closed", Origin::Closed)] {
            for (name, bytes) in read_local(&dir.join(sub))? {
                add(name, bytes, origin);
            }
        }
    }
    for (name, bytes) in read_store(store, PREFIX).await? {
        add(name, bytes, Origin::Store);
    }
    for (name, m) in manifests {
        match segments.get_mut(&name) {
            Some(seg) => seg.manifest = Some(m),
            None => {
                let problem = format!("{name}: manifest present but the segment is missing");
                return Ok((segments, Some(problem)));
            }
        }
    }
    Ok((segments, None))
}

/// Every file of a local folder (none if it does not exist), as (name, bytes).
fn read_local(dir: &Path) -> Result<Files, Error> {
    Ok(read_local_once(dir)?.0)
}

/// [`read_local`], and whether a listed file was gone when read: moved on (closed or shipped,
/// read again from its next place), or a checkpoint superseded by a newer one.
fn read_local_once(dir: &Path) -> Result<(Files, bool), Error> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok((Vec::new(), false));
    };
    let mut out = Vec::new();
    let mut vanished = false;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        match std::fs::read(entry.path()) {
            Ok(bytes) => out.push((name, bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => vanished = true,
            Err(e) => return Err(Error::Io(format!("{}: {e}", entry.path().display()))),
        }
    }
    Ok((out, vanished))
}

/// The local checkpoints. The writer replaces the newest one inside the open segment as the
/// head moves, so a listing that lost a file to it is read again (a few times at most).
fn read_local_checkpoints(dir: &Path) -> Result<Files, Error> {
    let mut files = Vec::new();
    for _ in 0..5 {
        let (read, vanished) = read_local_once(dir)?;
        files = read;
        if !vanished {
            break;
        }
    }
    Ok(files)
}

/// Every object under `prefix/` in the store, as (file name, bytes).
async fn read_store(store: &dyn ObjectStore, prefix: &str) -> Result<Files, Error> {
    let prefix = object_store::path::Path::from(prefix);
    let metas: Vec<_> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(store_error)?;
    let mut out = Vec::new();
    for meta in metas {
        let Some(name) = meta.location.filename().map(str::to_owned) else {
            continue;
        };
        if let Some(bytes) = get(store, &meta.location).await? {
            out.push((name, bytes));
        }
    }
    Ok(out)
}

/// One object's bytes, `None` if it is not there.
async fn get(
    store: &dyn ObjectStore,
    path: &object_store::path::Path,
) -> Result<Option<Vec<u8>>, Error> {
    match store.get(path).await {
        Ok(got) => Ok(Some(got.bytes().await.map_err(store_error)?.to_vec())),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(store_error(e)),
    }
}

fn store_error(e: object_store::Error) -> Error {
    Error::Store(e.to_string())
}

/// Reads and checks every checkpoint, local (`checkpoints/`) and shipped. Read before the
/// segments, so that a live writer's newer records cannot be missing from what is read after.
async fn load_checkpoints(
    store: &dyn ObjectStore,
    local: Option<&Path>,
    key: &VerifyingKey,
) -> Result<Result<Checkpoints, String>, Error> {
    let mut files = match local {
        Some(dir) => read_local_checkpoints(&dir.join("checkpoints"))?,
        None => Vec::new(),
    };
    files.extend(read_store(store, CHECKPOINTS).await?);
    let mut out = Checkpoints::new();
    for (name, bytes) in files {
        if checkpoint_seq(&name).is_none() {
            continue; // a temporary file of the writer
        }
        match Checkpoint::parse(&name, &bytes, key) {
            Ok(c) => {
                if let Err(p) = add_checkpoint(&mut out, c) {
                    return Ok(Err(p));
                }
            }
            Err(e) => return Ok(Err(e.to_string())),
        }
    }
    Ok(Ok(out))
}

/// Adds a checkpoint; two validly signed ones for one seq must agree.
fn add_checkpoint(checkpoints: &mut Checkpoints, c: Checkpoint) -> Result<(), String> {
    match checkpoints.get(&c.seq) {
        Some(other) if other.hash != c.hash => Err(format!(
            "two signed checkpoints for seq {} disagree on its hash",
            c.seq
        )),
        _ => {
            checkpoints.insert(c.seq, c);
            Ok(())
        }
    }
}

/// Looks up the checkpoints that manifests name but the first read did not find (made while
/// the verification ran): locally, then in the store.
async fn find_named_checkpoints(
    segments: &BTreeMap<String, Segment>,
    checkpoints: &mut Checkpoints,
    store: &dyn ObjectStore,
    local: Option<&Path>,
    key: &VerifyingKey,
) -> Result<(), Error> {
    let named = segments
        .values()
        .filter_map(|s| s.manifest.as_deref())
        .filter_map(|m| serde_json::from_slice::<Manifest>(m).ok())
        .filter_map(|m| m.checkpoint_seq);
    let missing: Vec<u64> = named.filter(|s| !checkpoints.contains_key(s)).collect();
    for seq in missing {
        let name = checkpoint_name(seq);
        let mut bytes = local.and_then(|d| std::fs::read(d.join("checkpoints").join(&name)).ok());
        if bytes.is_none() {
            let path = object_store::path::Path::from(format!("{CHECKPOINTS}/{name}"));
            bytes = get(store, &path).await?;
        }
        if let Some(c) = bytes.and_then(|b| Checkpoint::parse(&name, &b, key).ok()) {
            checkpoints.insert(seq, c);
        }
    }
    Ok(())
}

/// Every readable record, shipped and local, in chain order (for search; not a verification).
pub async fn records(store: &dyn ObjectStore, local: Option<&Path>) -> Result<Vec<Record>, Error> {
    let (segments, _) = load(store, local).await?;
    let mut out = Vec::new();
    for seg in segments.values() {
        for line in seg.bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if let Ok(r) = serde_json::from_slice::<Record>(line) {
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// Verifies the store's segments and checkpoints, then `local` (`audit/checkpoints`,
/// `audit/closed` and `audit/open`) if given.
pub async fn verify(
    store: &dyn ObjectStore,
    local: Option<&Path>,
    key: &VerifyingKey,
) -> Result<Report, Error> {
    verify_window(store, local, key, None, None).await
}

/// Like [`verify`], limited to the segments holding records from `from_ms` (inclusive) to
/// `to_ms` (exclusive). The chain is checked from the first selected segment on, anchored at
/// its first record's `prev_hash` (which its signed manifest covers); checkpoints are checked
/// where the selected segments hold their seq (and, without `to_ms`, must not lie beyond them).
pub async fn verify_window(
    store: &dyn ObjectStore,
    local: Option<&Path>,
    key: &VerifyingKey,
    from_ms: Option<u64>,
    to_ms: Option<u64>,
) -> Result<Report, Error> {
    let mut report = Report {
        segments: 0,
        records: 0,
        last_seq: 0,
        proven: None,
        problem: None,
    };
    let mut checkpoints = match load_checkpoints(store, local, key).await? {
        Ok(c) => c,
        Err(problem) => {
            report.problem = Some(problem);
            return Ok(report);
        }
    };
    let (segments, problem) = load(store, local).await?;
    if problem.is_some() {
        report.problem = problem;
        return Ok(report);
    }
    find_named_checkpoints(&segments, &mut checkpoints, store, local, key).await?;
    let mut prev_hash = GENESIS.to_owned();
    // After retention the chain starts at the signed marker's sequence number.
    let retained_from = match retention(store, key).await {
        Ok(r) => r,
        Err(e) => {
            report.problem = Some(e.to_string());
            return Ok(report);
        }
    };
    if let Some(r) = &retained_from {
        prev_hash = r.anchor_hash.clone();
        report.last_seq = r.from_seq - 1;
        checkpoints.retain(|seq, _| *seq >= r.from_seq);
    }
    let count = segments.len();
    let mut anchored = from_ms.is_none();
    for (i, seg) in segments.into_values().enumerate() {
        let (first, last) = (
            edge_record(&seg.bytes, true),
            edge_record(&seg.bytes, false),
        );
        if let (Some(r), Some(l)) = (&retained_from, &last)
            && l.seq < r.from_seq
        {
            continue; // expired; left by a retention run that stopped half-way
        }
        let before = from_ms.is_some_and(|f| last.as_ref().is_some_and(|r| r.time_ms < f));
        let after = to_ms.is_some_and(|t| first.as_ref().is_some_and(|r| r.time_ms >= t));
        if before || after {
            continue;
        }
        if !anchored {
            if let Some(first) = &first {
                prev_hash = first.prev_hash.clone();
                report.last_seq = first.seq.saturating_sub(1);
            }
            anchored = true;
        }
        report.segments += 1;
        let mut chain = Chain {
            key,
            checkpoints: &checkpoints,
            prev_hash: &mut prev_hash,
            report: &mut report,
        };
        if let Err(problem) = chain.check_segment(&seg, i + 1 == count) {
            report.problem = Some(problem);
            return Ok(report);
        }
    }
    if to_ms.is_none() {
        report.problem = beyond_the_end(&checkpoints, report.last_seq);
    }
    Ok(report)
}

/// A checkpoint the chain does not reach: records it covers were removed.
fn beyond_the_end(checkpoints: &Checkpoints, last_seq: u64) -> Option<String> {
    let (seq, c) = checkpoints.range(last_seq + 1..).next_back()?;
    Some(format!(
        "checkpoint {seq} (signed at {} ms) is beyond the end of the chain at seq {last_seq}: \
         records {}–{seq} are missing (segments deleted?)",
        c.time_ms,
        last_seq + 1
    ))
}

/// The signed retention marker, if retention has run.
async fn retention(
    store: &dyn ObjectStore,
    key: &VerifyingKey,
) -> Result<Option<Retention>, Error> {
    let path = object_store::path::Path::from(format!("{PREFIX}/{RETENTION}"));
    let Some(bytes) = get(store, &path).await? else {
        return Ok(None);
    };
    let marker: Retention = serde_json::from_slice(&bytes)
        .map_err(|e| Error::Invalid(format!("retention marker: {e}")))?;
    marker.verify(key)?;
    Ok(Some(marker))
}

/// The first or last readable record of a segment's bytes.
fn edge_record(bytes: &[u8], first: bool) -> Option<Record> {
    let mut lines = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty());
    let line = if first {
        lines.next()
    } else {
        lines.next_back()
    }?;
    serde_json::from_slice(line).ok()
}

/// The bytes up to the last newline: a line being written (or torn by a crash) was never
/// acknowledged.
fn complete_lines(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    &bytes[..end]
}

/// The state carried from segment to segment.
struct Chain<'a> {
    key: &'a VerifyingKey,
    checkpoints: &'a Checkpoints,
    prev_hash: &'a mut String,
    report: &'a mut Report,
}

impl Chain<'_> {
    fn check_segment(&mut self, seg: &Segment, is_last: bool) -> Result<(), String> {
        let manifest = self.manifest(seg, is_last)?;
        let bytes = match manifest {
            Some(_) => &seg.bytes[..],
            None => complete_lines(&seg.bytes),
        };
        let mut first = true;
        for (line_no, line) in bytes
            .split(|b| *b == b'\n')
            .enumerate()
            .filter(|(_, l)| !l.is_empty())
        {
            let at = format!("{} line {}", seg.name, line_no + 1);
            self.check_record(&at, line, first)?;
            first = false;
        }
        if let Some(m) = manifest
            && (m.last_seq != self.report.last_seq || m.last_hash != *self.prev_hash)
        {
            return Err(format!(
                "{}: the records do not match the manifest's last record",
                seg.name
            ));
        }
        Ok(())
    }

    /// The segment's checked manifest; `None` only for the writer's local unsigned tail.
    fn manifest(&self, seg: &Segment, is_last: bool) -> Result<Option<Manifest>, String> {
        let Some(bytes) = &seg.manifest else {
            return match seg.origin {
                Origin::Open | Origin::Closed if is_last => Ok(None),
                Origin::Store => Err(format!(
                    "{}: shipped segment without a manifest (deleted or never signed)",
                    seg.name
                )),
                Origin::Open | Origin::Closed => {
                    Err(format!("{}: closed segment without a manifest", seg.name))
                }
            };
        };
        let m: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| format!("{}: unreadable manifest: {e}", seg.name))?;
        m.verify(self.key)
            .map_err(|e| format!("{}: {e}", seg.name))?;
        use sha2::Digest;
        if m.file_sha256 != hex::encode(sha2::Sha256::digest(&seg.bytes)) {
            return Err(format!(
                "{}: the file does not match its signed manifest (edited)",
                seg.name
            ));
        }
        if let Some(seq) = m.checkpoint_seq
            && !self.checkpoints.contains_key(&seq)
        {
            return Err(format!(
                "{}: its manifest names checkpoint {seq}, which is missing (deleted?)",
                seg.name
            ));
        }
        Ok(Some(m))
    }

    /// Checks one record (`line`, at `at`) against the chain and the checkpoints.
    fn check_record(&mut self, at: &str, line: &[u8], first: bool) -> Result<(), String> {
        let record: Record =
            serde_json::from_slice(line).map_err(|e| format!("{at}: unreadable record: {e}"))?;
        let expected_seq = self.report.last_seq + 1;
        if record.seq != expected_seq {
            let what = if record.seq == expected_seq + 1 {
                format!("record {expected_seq} is missing or out of order")
            } else if record.seq > expected_seq {
                format!(
                    "records {expected_seq}–{} are missing or out of order",
                    record.seq - 1
                )
            } else {
                format!("seq {} appears again or out of order", record.seq)
            };
            return Err(format!("{at}: {what}"));
        }
        if record.prev_hash != *self.prev_hash {
            let what = if first {
                "does not continue the previous segment (a segment is missing or altered)"
            } else {
                "does not follow the previous record (edited, removed, reordered or inserted)"
            };
            return Err(format!("{at} (seq {}): {what}", record.seq));
        }
        if record.canonical() != line {
            return Err(format!(
                "{at} (seq {}): not in canonical form (edited)",
                record.seq
            ));
        }
        let hash = record.hash();
        if let Some(c) = self.checkpoints.get(&record.seq) {
            if c.hash != hash {
                return Err(format!(
                    "{at} (seq {}): differs from the signed checkpoint of that seq (rewritten)",
                    record.seq
                ));
            }
            self.report.proven = Some(Proven {
                seq: c.seq,
                time_ms: c.time_ms,
            });
        }
        *self.prev_hash = hash;
        self.report.last_seq = record.seq;
        self.report.records += 1;
        Ok(())
    }
}
