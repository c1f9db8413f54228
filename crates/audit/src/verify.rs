//! Verification: reads every segment and manifest (from the object store and, optionally, the
//! local folders not shipped yet), and checks that the chain is whole — every manifest signed
//! by the trusted key and matching its file, sequence numbers without gaps, and each record's
//! `prev_hash` equal to the hash of the one before. It reports the first broken link.

use crate::Error;
use crate::record::{GENESIS, Record};
use crate::segment::{Manifest, RETENTION, Retention};
use crate::shipper::PREFIX;
use ed25519_dalek::VerifyingKey;
use futures_util::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use std::collections::BTreeMap;
use std::path::Path;

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Segments read.
    pub segments: usize,
    /// Records checked.
    pub records: u64,
    /// Last sequence number reached.
    pub last_seq: u64,
    /// The first problem found, if any.
    pub problem: Option<String>,
}

/// One segment's bytes and (for closed segments) its manifest.
struct Segment {
    name: String,
    bytes: Vec<u8>,
    manifest: Option<Vec<u8>>,
}

/// Reads every segment (shipped, then local ones not shipped yet), in order, with manifests;
/// the second value names a manifest whose segment is missing.
async fn load(
    store: &dyn ObjectStore,
    local: Option<&Path>,
) -> Result<(BTreeMap<String, Segment>, Option<String>), Error> {
    let mut segments: BTreeMap<String, Segment> = BTreeMap::new();
    let prefix = object_store::path::Path::from(PREFIX);
    let metas: Vec<_> = store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| Error::Store(e.to_string()))?;
    let mut manifests = BTreeMap::new();
    for meta in metas {
        let Some(name) = meta.location.filename().map(str::to_owned) else {
            continue;
        };
        let bytes = store
            .get(&meta.location)
            .await
            .map_err(|e| Error::Store(e.to_string()))?;
        let bytes = bytes
            .bytes()
            .await
            .map_err(|e| Error::Store(e.to_string()))?
            .to_vec();
        if let Some(seg) = name.strip_suffix(".manifest.json") {
            manifests.insert(format!("{seg}.jsonl"), bytes);
        } else if name.ends_with(".jsonl") {
            segments.insert(
                name.clone(),
                Segment {
                    name,
                    bytes,
                    manifest: None,
                },
            );
        }
    }
    if let Some(dir) = local {
        for sub in ["closed", "open"] {
            let Ok(entries) = std::fs::read_dir(dir.join(sub)) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let bytes = std::fs::read(entry.path()).map_err(|e| Error::Io(e.to_string()))?;
                if let Some(seg) = name.strip_suffix(".manifest.json") {
                    manifests.entry(format!("{seg}.jsonl")).or_insert(bytes);
                } else if name.ends_with(".jsonl") {
                    segments.entry(name.clone()).or_insert(Segment {
                        name,
                        bytes,
                        manifest: None,
                    });
                }
            }
        }
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

/// Verifies the store's segments, then `local` (`audit/closed` and `audit/open`) if given.
pub async fn verify(
    store: &dyn ObjectStore,
    local: Option<&Path>,
    key: &VerifyingKey,
) -> Result<Report, Error> {
    verify_window(store, local, key, None, None).await
}

/// Like [`verify`], limited to the segments holding records from `from_ms` (inclusive) to
/// `to_ms` (exclusive). The chain is checked from the first selected segment on, anchored at
/// its first record's `prev_hash` (which its signed manifest covers).
pub async fn verify_window(
    store: &dyn ObjectStore,
    local: Option<&Path>,
    key: &VerifyingKey,
    from_ms: Option<u64>,
    to_ms: Option<u64>,
) -> Result<Report, Error> {
    let (segments, problem) = load(store, local).await?;
    let mut report = Report {
        segments: 0,
        records: 0,
        last_seq: 0,
        problem,
    };
    if report.problem.is_some() {
        return Ok(report);
    }
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
        if let Err(problem) = check_segment(&seg, i + 1 == count, key, &mut prev_hash, &mut report)
        {
            report.problem = Some(problem);
            return Ok(report);
        }
    }
    Ok(report)
}

/// The signed retention marker, if retention has run.
async fn retention(
    store: &dyn ObjectStore,
    key: &VerifyingKey,
) -> Result<Option<Retention>, Error> {
    let path = object_store::path::Path::from(format!("{PREFIX}/{RETENTION}"));
    let bytes = match store.get(&path).await {
        Ok(got) => got.bytes().await.map_err(|e| Error::Store(e.to_string()))?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(Error::Store(e.to_string())),
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

fn check_segment(
    seg: &Segment,
    is_last: bool,
    key: &VerifyingKey,
    prev_hash: &mut String,
    report: &mut Report,
) -> Result<(), String> {
    let manifest = match &seg.manifest {
        Some(bytes) => {
            let m: Manifest = serde_json::from_slice(bytes)
                .map_err(|e| format!("{}: unreadable manifest: {e}", seg.name))?;
            m.verify(key).map_err(|e| e.to_string())?;
            use sha2::Digest;
            if m.file_sha256 != crate::record::hex(&sha2::Sha256::digest(&seg.bytes)) {
                return Err(format!(
                    "{}: the file does not match its signed manifest (edited)",
                    seg.name
                ));
            }
            Some(m)
        }
        None if is_last => None, // the segment still being written
        None => return Err(format!("{}: closed segment without a manifest", seg.name)),
    };
    let mut first = true;
    for (line_no, line) in seg
        .bytes
        .split(|b| *b == b'\n')
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
    {
        let record: Record = serde_json::from_slice(line)
            .map_err(|e| format!("{} line {}: unreadable record: {e}", seg.name, line_no + 1))?;
        let expected_seq = report.last_seq + 1;
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
            return Err(format!("{} line {}: {what}", seg.name, line_no + 1));
        }
        if record.prev_hash != *prev_hash {
            let what = if first {
                "does not continue the previous segment (a segment is missing or altered)"
            } else {
                "does not follow the previous record (edited, removed, reordered or inserted)"
            };
            return Err(format!(
                "{} line {} (seq {}): {what}",
                seg.name,
                line_no + 1,
                record.seq
            ));
        }
        if &record.canonical()[..] != line {
            return Err(format!(
                "{} line {} (seq {}): not in canonical form (edited)",
                seg.name,
                line_no + 1,
                record.seq
            ));
        }
        *prev_hash = record.hash();
        report.last_seq = record.seq;
        report.records += 1;
        first = false;
    }
    if let Some(m) = manifest
        && (m.last_seq != report.last_seq || m.last_hash != *prev_hash)
    {
        return Err(format!(
            "{}: the records do not match the manifest's last record",
            seg.name
        ));
    }
    Ok(())
}
