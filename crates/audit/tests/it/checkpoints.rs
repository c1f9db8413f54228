//! The anchored tail: every shipped segment needs its signed manifest, signed checkpoints of the
//! chain head must be reached by the chain, and what an attacker with write access to the store
//! can still do (roll back to an older consistent point) shows as a stale proven-complete time.

use super::{Env, call, env, open, open_with, public, rewrite, segments, write_and_ship};
use std::path::{Path, PathBuf};
use std::time::Duration;
use warden_audit::{
    CHECKPOINTS, Checkpoint, Event, PREFIX, Record, Shipper, checkpoint_name, manifest_name, verify,
};

fn checkpoints(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|x| x == "json"));
    v.sort();
    v
}

fn shipped_checkpoints(e: &Env) -> Vec<PathBuf> {
    checkpoints(&e.store_dir.join(CHECKPOINTS))
}

fn manifest_of(segment: &Path) -> PathBuf {
    segment.with_file_name(manifest_name(
        segment.file_name().unwrap().to_str().unwrap(),
    ))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

async fn report(e: &Env) -> warden_audit::Report {
    verify(e.store.as_ref(), None, &public(e)).await.unwrap()
}

async fn local_report(e: &Env) -> warden_audit::Report {
    verify(e.store.as_ref(), Some(&e.data.join("audit")), &public(e))
        .await
        .unwrap()
}

/// Rewrites a segment as an attacker without the key can: records from line `from` on get
/// another status, and every `prev_hash` is recomputed so that the chain itself is intact.
fn rewrite_with_chain_recomputed(path: &Path, from: usize) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut records: Vec<Record> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut prev = records[0].prev_hash.clone();
    for (i, r) in records.iter_mut().enumerate() {
        if i >= from
            && let Event::ModelCall(c) = &mut r.event
        {
            c.status = 500;
        }
        r.prev_hash = prev.clone();
        prev = r.hash();
    }
    let mut out = Vec::new();
    for r in &records {
        out.extend(r.canonical());
        out.push(b'\n');
    }
    std::fs::write(path, out).unwrap();
}

#[tokio::test]
async fn a_clean_log_verifies_and_reports_the_time_it_is_proven_complete_up_to() {
    let e = env();
    let start = now_ms();
    write_and_ship(&e, 60, 4096).await;
    let r = report(&e).await;
    assert_eq!(r.problem, None, "{r:?}");
    let proven = r.proven.expect("a checkpoint");
    assert_eq!(proven.seq, 60, "the closing checkpoint of the last segment");
    assert!((start..=now_ms()).contains(&proven.time_ms), "{proven:?}");
    assert_eq!(r.stale(Duration::from_secs(60), now_ms()), None);
    // One closing checkpoint per shipped segment, none left locally.
    assert_eq!(shipped_checkpoints(&e).len(), segments(&e).len());
    assert!(checkpoints(&e.data.join("audit/checkpoints")).is_empty());
}

#[tokio::test]
async fn rewriting_the_last_shipped_segment_and_dropping_its_manifest_fails_naming_it() {
    let e = env();
    write_and_ship(&e, 60, 4096).await;
    let last = segments(&e).pop().unwrap();
    rewrite_with_chain_recomputed(&last, 1);
    std::fs::remove_file(manifest_of(&last)).unwrap();
    let p = report(&e).await.problem.expect("detected");
    let name = last.file_name().unwrap().to_str().unwrap();
    assert!(
        p.contains(name) && p.contains("shipped segment without a manifest"),
        "{p}"
    );
    // Dropping its checkpoint too changes nothing: the segment is still unsigned.
    std::fs::remove_file(shipped_checkpoints(&e).pop().unwrap()).unwrap();
    let p = report(&e).await.problem.expect("detected");
    assert!(p.contains(name), "{p}");
}

#[tokio::test]
async fn removing_the_last_segment_and_its_manifest_fails() {
    let e = env();
    write_and_ship(&e, 60, 4096).await;
    let last = segments(&e).pop().unwrap();
    std::fs::remove_file(manifest_of(&last)).unwrap();
    std::fs::remove_file(&last).unwrap();
    let p = report(&e).await.problem.expect("detected");
    assert!(
        p.contains("checkpoint 60") && p.contains("beyond the end of the chain"),
        "{p}"
    );
}

#[tokio::test]
async fn removing_the_newest_checkpoint_fails_because_the_last_manifest_names_it() {
    let e = env();
    write_and_ship(&e, 60, 4096).await;
    let newest = shipped_checkpoints(&e).pop().unwrap();
    assert!(newest.ends_with(checkpoint_name(60)), "{newest:?}");
    std::fs::remove_file(&newest).unwrap();
    let p = report(&e).await.problem.expect("detected");
    assert!(p.contains("names checkpoint 60, which is missing"), "{p}");
}

#[tokio::test]
async fn deleting_the_newest_segment_manifest_and_checkpoint_together_shows_as_stale_with_max_age()
{
    // Without object lock an attacker can roll the store back to an older consistent point;
    // what gives it away is the proven-complete time.
    let e = env();
    let (writer, log) = open(&e.data, 1 << 20);
    let task = tokio::spawn(writer.run(std::future::pending()));
    for i in 1..=5 {
        log.append(call(i)).await.unwrap();
    }
    drop(log);
    task.await.unwrap();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (writer, log) = open(&e.data, 1 << 20);
    let task = tokio::spawn(writer.run(std::future::pending()));
    for i in 6..=10 {
        log.append(call(i)).await.unwrap();
    }
    drop(log);
    task.await.unwrap();
    Shipper::new(&e.data.join("audit"), e.store.clone())
        .ship_pending()
        .await
        .unwrap();
    let fresh = report(&e).await;
    let newest = fresh.proven.unwrap();
    assert_eq!((fresh.problem.as_deref(), newest.seq), (None, 10));
    let now = newest.time_ms + 100;
    let max_age = Duration::from_millis(500);
    assert_eq!(fresh.stale(max_age, now), None);

    let last = segments(&e).pop().unwrap();
    std::fs::remove_file(manifest_of(&last)).unwrap();
    std::fs::remove_file(&last).unwrap();
    std::fs::remove_file(shipped_checkpoints(&e).pop().unwrap()).unwrap();
    let rolled_back = report(&e).await;
    assert_eq!(
        rolled_back.problem, None,
        "consistent, so verify alone passes"
    );
    let older = rolled_back.proven.unwrap();
    assert_eq!(older.seq, 5);
    assert!(
        newest.time_ms - older.time_ms >= 1000,
        "{older:?} {newest:?}"
    );
    let stale = rolled_back.stale(max_age, now).expect("stale");
    assert!(stale.contains("seq 5"), "{stale}");
}

#[tokio::test]
async fn checkpoints_are_made_on_a_timer_only_while_the_head_moves_and_never_shipped_ahead() {
    let e = env();
    let (writer, log) = open_with(&e.data, 1 << 20, Duration::from_millis(50));
    let task = tokio::spawn(writer.run(std::future::pending()));
    let local = e.data.join("audit/checkpoints");
    log.append(call(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(checkpoints(&local), [local.join(checkpoint_name(1))]);
    for i in 2..=4 {
        log.append(call(i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The newer one supersedes the older one inside the open segment; none while idle.
    assert_eq!(checkpoints(&local), [local.join(checkpoint_name(4))]);
    let c: Checkpoint =
        serde_json::from_slice(&std::fs::read(local.join(checkpoint_name(4))).unwrap()).unwrap();
    assert_eq!((c.seq, c.deployment.as_str()), (4, "test-1"));

    // Nothing closed: the shipper ships no checkpoint ahead of the shipped segments.
    Shipper::new(&e.data.join("audit"), e.store.clone())
        .ship_pending()
        .await
        .unwrap();
    assert!(shipped_checkpoints(&e).is_empty());
    assert_eq!(report(&e).await.problem, None);
    // Verifying with the local folder reaches it through the open segment.
    let r = local_report(&e).await;
    assert_eq!((r.problem, r.proven.map(|p| p.seq)), (None, Some(4)));
    drop(log);
    task.await.unwrap();
}

#[tokio::test]
async fn rewriting_the_open_segment_with_its_chain_recomputed_fails_against_its_checkpoint() {
    let e = env();
    let (writer, log) = open_with(&e.data, 1 << 20, Duration::from_millis(50));
    let task = tokio::spawn(writer.run(std::future::pending()));
    for i in 1..=10 {
        log.append(call(i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let open_seg = e
        .data
        .join("audit/open")
        .join(warden_audit::segment_name(1));
    rewrite_with_chain_recomputed(&open_seg, 3);
    let p = local_report(&e).await.problem.expect("detected");
    assert!(
        p.contains("seq 10") && p.contains("differs from the signed checkpoint"),
        "{p}"
    );
    drop(log);
    task.abort();
}

#[tokio::test]
async fn removing_a_local_checkpoints_records_fails() {
    // A checkpoint made while the segment was open, then the open segment's last records cut.
    let e = env();
    let (writer, log) = open_with(&e.data, 1 << 20, Duration::from_millis(50));
    let task = tokio::spawn(writer.run(std::future::pending()));
    for i in 1..=10 {
        log.append(call(i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    task.abort();
    let _ = task.await;
    drop(log);
    let open_seg = e
        .data
        .join("audit/open")
        .join(warden_audit::segment_name(1));
    rewrite(&open_seg, |l| l.truncate(7));
    let p = local_report(&e).await.problem.expect("detected");
    assert!(
        p.contains("checkpoint 10") && p.contains("records 8–10 are missing"),
        "{p}"
    );
}

#[tokio::test]
async fn a_checkpoint_signed_by_another_key_is_refused() {
    let e = env();
    write_and_ship(&e, 20, 1 << 20).await;
    let other = warden_audit::load_or_create_key(&e.data.join("other")).unwrap();
    let forged = Checkpoint::sign(&other, 30, warden_audit::GENESIS, now_ms(), "x");
    let path = e.store_dir.join(CHECKPOINTS).join(checkpoint_name(30));
    std::fs::write(&path, serde_json::to_vec(&forged).unwrap()).unwrap();
    let p = report(&e).await.problem.expect("refused");
    assert!(p.contains("checkpoint 30: signed by another key"), "{p}");
}

#[tokio::test]
async fn a_segment_closed_without_its_manifest_is_a_local_tail_and_reopened_at_the_next_start() {
    let e = env();
    let (writer, log) = open(&e.data, 1 << 20);
    let task = tokio::spawn(writer.run(std::future::pending()));
    for i in 1..=5 {
        log.append(call(i)).await.unwrap();
    }
    task.abort();
    let _ = task.await;
    drop(log);
    // A crash between moving the segment to closed/ and writing its manifest.
    let name = warden_audit::segment_name(1);
    let audit = e.data.join("audit");
    std::fs::rename(
        audit.join("open").join(&name),
        audit.join("closed").join(&name),
    )
    .unwrap();
    assert_eq!(
        local_report(&e).await.problem,
        None,
        "an unsigned local tail"
    );
    // Never shipped without its manifest.
    let shipper = Shipper::new(&audit, e.store.clone());
    assert_eq!(shipper.ship_pending().await.unwrap(), 0);

    let (writer, log) = open(&e.data, 1 << 20);
    assert_eq!(writer.last_seq(), 5);
    let task = tokio::spawn(writer.run(std::future::pending()));
    assert_eq!(log.append(call(6)).await.unwrap(), 6);
    drop(log);
    task.await.unwrap();
    shipper.ship_pending().await.unwrap();
    let r = report(&e).await;
    assert_eq!((r.problem, r.records), (None, 6));
    assert_eq!(r.proven.map(|p| p.seq), Some(6));
    assert!(
        std::fs::read_dir(e.store_dir.join(PREFIX))
            .unwrap()
            .any(|f| f.unwrap().file_name() == manifest_name(&name).as_str())
    );
}

#[tokio::test]
async fn retention_deletes_the_checkpoints_of_the_segments_it_deletes() {
    let e = env();
    write_and_ship(&e, 30, 600).await;
    let before = shipped_checkpoints(&e).len();
    let key = warden_audit::load_or_create_key(&e.data).unwrap();
    let shipper = Shipper::new(&e.data.join("audit"), e.store.clone());
    let deleted = shipper.apply_retention(&key, now_ms() + 1).await.unwrap();
    assert_eq!(deleted, before);
    assert!(shipped_checkpoints(&e).is_empty());
    assert_eq!(report(&e).await.problem, None);
}

#[tokio::test]
async fn the_writer_refuses_to_write_over_records_a_checkpoint_covers() {
    let e = env();
    let (writer, log) = open_with(&e.data, 1 << 20, Duration::from_millis(50));
    let task = tokio::spawn(writer.run(std::future::pending()));
    for i in 1..=10 {
        log.append(call(i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    task.abort();
    let _ = task.await;
    drop(log);
    // Records 8–10 lost after they were checkpointed (say, a restored backup of open/).
    let open_seg = e
        .data
        .join("audit/open")
        .join(warden_audit::segment_name(1));
    rewrite(&open_seg, |l| l.truncate(7));
    let key = warden_audit::load_or_create_key(&e.data).unwrap();
    let err = warden_audit::Writer::open(warden_audit::Options {
        dir: e.data.join("audit"),
        deployment: "test-1".into(),
        fsync: warden_audit::Fsync::Always,
        max_segment_bytes: 1 << 20,
        max_segment_age: Duration::from_secs(3600),
        checkpoint_interval: Duration::from_secs(1),
        key,
    })
    .err()
    .expect("refused");
    assert!(err.to_string().contains("checkpoint 10 is ahead"), "{err}");
}
