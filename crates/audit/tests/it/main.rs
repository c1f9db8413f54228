//! Audit log tests on real files: writing, rotation, shipping to a local object store,
//! verification, and tampering of every kind being detected.

#![allow(clippy::unwrap_used)] // test helpers fail by panicking

mod checkpoints;

use object_store::local::LocalFileSystem;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use warden_audit::{AuditLog, Event, Fsync, ModelCall, Options, PREFIX, Shipper, Writer, verify};

struct Env {
    _tmp: tempfile::TempDir,
    data: PathBuf,
    store_dir: PathBuf,
    store: Arc<LocalFileSystem>,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let store_dir = tmp.path().join("store");
    std::fs::create_dir_all(&store_dir).unwrap();
    let store = Arc::new(LocalFileSystem::new_with_prefix(&store_dir).unwrap());
    Env {
        _tmp: tmp,
        data,
        store_dir,
        store,
    }
}

fn open(dir: &Path, max_bytes: u64) -> (Writer, AuditLog) {
    open_with(dir, max_bytes, Duration::from_secs(1))
}

/// [`open`] with a checkpoint interval.
fn open_with(dir: &Path, max_bytes: u64, checkpoint_interval: Duration) -> (Writer, AuditLog) {
    let key = warden_audit::load_or_create_key(dir).unwrap();
    Writer::open(Options {
        dir: dir.join("audit"),
        deployment: "test-1".into(),
        fsync: Fsync::Always,
        max_segment_bytes: max_bytes,
        max_segment_age: Duration::from_secs(3600),
        checkpoint_interval,
        key,
    })
    .unwrap()
}

fn call(i: u64) -> Event {
    Event::ModelCall(Box::new(ModelCall {
        request_id: format!("req_{i}"),
        key_id: "key_1".into(),
        key_name: "ci".into(),
        endpoint: "chat.completions".into(),
        model: "fast".into(),
        provider: Some("p".into()),
        upstream_model: Some("m".into()),
        status: 200,
        prompt_tokens: Some(10),
        completion_tokens: Some(2),
        redactions: [("EMAIL".to_owned(), 1)].into(),
        attempts: 1,
        stream: false,
        latency_ms: 3,
        user: None,
        session: None,
        cache: None,
        refusal: None,
        cost_usd: None,
        downgraded_from: None,
        client_request_id: None,
    }))
}

/// Writes `n` events, closes the log (segments of ~`max_bytes`), ships them all.
async fn write_and_ship(e: &Env, n: u64, max_bytes: u64) {
    let (writer, log) = open(&e.data, max_bytes);
    let task = tokio::spawn(writer.run(std::future::pending()));
    for i in 1..=n {
        assert_eq!(log.append(call(i)).await.unwrap(), i);
    }
    drop(log);
    task.await.unwrap();
    let shipped = Shipper::new(&e.data.join("audit"), e.store.clone())
        .ship_pending()
        .await
        .unwrap();
    assert!(shipped >= 1);
}

fn public(e: &Env) -> ed25519_dalek::VerifyingKey {
    warden_audit::parse_public(&std::fs::read_to_string(e.data.join("audit.pub")).unwrap()).unwrap()
}

fn segments(e: &Env) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(e.store_dir.join(PREFIX))
        .unwrap()
        .map(|d| d.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    v.sort();
    v
}

async fn problem(e: &Env) -> Option<String> {
    verify(e.store.as_ref(), None, &public(e))
        .await
        .unwrap()
        .problem
}

#[tokio::test]
async fn a_clean_log_verifies_across_segments() {
    let e = env();
    write_and_ship(&e, 200, 4096).await;
    let report = verify(e.store.as_ref(), None, &public(&e)).await.unwrap();
    assert_eq!(report.problem, None);
    assert_eq!((report.records, report.last_seq), (200, 200));
    assert!(report.segments > 3, "rotated by size: {}", report.segments);
    // Local copies are gone once shipped.
    assert_eq!(
        std::fs::read_dir(e.data.join("audit/closed"))
            .unwrap()
            .count(),
        0
    );
}

fn rewrite(path: &Path, f: impl FnOnce(&mut Vec<String>)) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    f(&mut lines);
    std::fs::write(path, lines.join("\n") + "\n").unwrap();
}

#[tokio::test]
async fn edited_records_are_detected() {
    let e = env();
    write_and_ship(&e, 50, 4096).await;
    rewrite(&segments(&e)[1], |l| {
        l[2] = l[2].replace("\"status\":200", "\"status\":500")
    });
    let p = problem(&e).await.unwrap();
    assert!(p.contains("does not match its signed manifest"), "{p}");
}

#[tokio::test]
async fn removed_reordered_and_inserted_records_are_detected() {
    for (name, change) in [
        (
            "remove",
            Box::new(|l: &mut Vec<String>| {
                l.remove(3);
            }) as Box<dyn Fn(&mut Vec<String>)>,
        ),
        ("reorder", Box::new(|l: &mut Vec<String>| l.swap(2, 3))),
        (
            "insert",
            Box::new(|l: &mut Vec<String>| {
                let x = l[1].clone();
                l.insert(2, x);
            }),
        ),
    ] {
        let e = env();
        write_and_ship(&e, 50, 1 << 20).await; // one segment
        // Re-sign nothing: an attacker without the key can change the file only.
        rewrite(&segments(&e)[0], change);
        let p = problem(&e)
            .await
            .unwrap_or_else(|| panic!("{name} not detected"));
        assert!(p.contains("manifest"), "{name}: {p}");
    }
}

#[tokio::test]
async fn chain_breaks_are_found_even_without_manifests() {
    // Verifying the open (unsigned) segment relies on the hash chain alone.
    let e = env();
    let (writer, log) = open(&e.data, 1 << 20);
    let task = tokio::spawn(writer.run(std::future::pending()));
    for i in 1..=10 {
        log.append(call(i)).await.unwrap();
    }
    let open_seg = e
        .data
        .join("audit/open")
        .join(warden_audit::segment_name(1));
    rewrite(&open_seg, |l| l.swap(4, 5));
    let report = verify(e.store.as_ref(), Some(&e.data.join("audit")), &public(&e))
        .await
        .unwrap();
    let p = report.problem.unwrap();
    assert!(
        p.contains("line 5") && p.contains("record 5 is missing or out of order"),
        "{p}"
    );
    drop(log);
    task.abort();
}

#[tokio::test]
async fn a_missing_segment_is_detected() {
    let e = env();
    write_and_ship(&e, 100, 4096).await;
    let victim = segments(&e)[1].clone();
    std::fs::remove_file(&victim).unwrap();
    std::fs::remove_file(victim.with_file_name(warden_audit::manifest_name(
        victim.file_name().unwrap().to_str().unwrap(),
    )))
    .unwrap();
    let p = problem(&e).await.unwrap();
    assert!(p.contains("are missing"), "{p}");
    assert!(p.contains("does not") || p.contains("missing"), "{p}");
}

#[tokio::test]
async fn another_key_is_refused() {
    let e = env();
    write_and_ship(&e, 5, 1 << 20).await;
    let other = warden_audit::load_or_create_key(&e.data.join("other")).unwrap();
    let report = verify(e.store.as_ref(), None, &other.verifying_key())
        .await
        .unwrap();
    assert!(report.problem.unwrap().contains("signed by another key"));
}

#[tokio::test]
async fn a_restart_continues_the_chain_and_cuts_a_torn_line() {
    let e = env();
    let (writer, log) = open(&e.data, 1 << 20);
    let task = tokio::spawn(writer.run(std::future::pending()));
    for i in 1..=5 {
        log.append(call(i)).await.unwrap();
    }
    // Simulate a crash: the task is aborted (no close), and a half-written line is left.
    task.abort();
    let _ = task.await;
    drop(log);
    let seg = e
        .data
        .join("audit/open")
        .join(warden_audit::segment_name(1));
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, b"{\"seq\":6,\"time_ms\":1,\"depl").unwrap();
    let (writer, log) = open(&e.data, 1 << 20);
    assert_eq!(writer.last_seq(), 5);
    let task = tokio::spawn(writer.run(std::future::pending()));
    assert_eq!(log.append(call(6)).await.unwrap(), 6);
    drop(log);
    task.await.unwrap();
    Shipper::new(&e.data.join("audit"), e.store.clone())
        .ship_pending()
        .await
        .unwrap();
    let report = verify(e.store.as_ref(), None, &public(&e)).await.unwrap();
    assert_eq!((report.problem, report.records), (None, 6));
}

#[tokio::test]
async fn when_the_disk_refuses_writes_the_log_fails_closed() {
    let e = env();
    let (writer, log) = open(&e.data, 200); // every event closes its segment
    let task = tokio::spawn(writer.run(std::future::pending()));
    log.append(call(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await; // rotation tick
    // Make new segments impossible: `open/` becomes a file.
    let open_dir = e.data.join("audit/open");
    std::fs::remove_dir_all(&open_dir).unwrap();
    std::fs::write(&open_dir, b"not a directory").unwrap();
    assert!(log.append(call(2)).await.is_err());
    std::fs::remove_file(&open_dir).unwrap();
    std::fs::create_dir(&open_dir).unwrap();
    let err = log.append(call(3)).await.unwrap_err();
    assert!(err.to_string().contains("work is refused"), "{err}");
    drop(log);
    task.abort();
}

#[tokio::test]
async fn a_time_window_verifies_from_its_first_segment_on() {
    let e = env();
    let (writer, log) = open(&e.data, 600); // about one record per segment
    let task = tokio::spawn(writer.run(std::future::pending()));
    for i in 1..=5 {
        log.append(call(i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1100)).await; // rotation tick closes the last one
    let from = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(20)).await;
    for i in 6..=10 {
        log.append(call(i)).await.unwrap();
    }
    drop(log);
    task.await.unwrap();
    Shipper::new(&e.data.join("audit"), e.store.clone())
        .ship_pending()
        .await
        .unwrap();
    // Damage an early segment: the whole log fails, the window after it passes.
    rewrite(&segments(&e)[0], |l| {
        l[0] = l[0].replace("\"status\":200", "\"status\":201")
    });
    assert!(problem(&e).await.is_some());
    let report = warden_audit::verify_window(e.store.as_ref(), None, &public(&e), Some(from), None)
        .await
        .unwrap();
    assert_eq!(report.problem, None);
    // Whole segments are checked: the one holding record 5 (written before `from`) too.
    assert_eq!(report.last_seq, 10);
    assert!((5..=6).contains(&report.records), "{report:?}");
}

#[tokio::test]
async fn retention_deletes_old_segments_and_verification_starts_at_its_signed_marker() {
    let e = env();
    let (writer, log) = open(&e.data, 600);
    let task = tokio::spawn(writer.run(std::future::pending()));
    for i in 1..=6 {
        log.append(call(i)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let cutoff = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    tokio::time::sleep(Duration::from_millis(30)).await;
    for i in 7..=12 {
        log.append(call(i)).await.unwrap();
    }
    drop(log);
    task.await.unwrap();
    let shipper = Shipper::new(&e.data.join("audit"), e.store.clone());
    shipper.ship_pending().await.unwrap();
    let before = segments(&e).len();
    let key = warden_audit::load_or_create_key(&e.data).unwrap();
    let deleted = shipper.apply_retention(&key, cutoff).await.unwrap();
    assert!(deleted >= 2, "old segments deleted: {deleted}");
    assert_eq!(segments(&e).len(), before - deleted);
    let report = verify(e.store.as_ref(), None, &public(&e)).await.unwrap();
    assert_eq!(report.problem, None, "{report:?}");
    assert_eq!(report.last_seq, 12);
    assert!(report.records < 12);
    // Deleting one more old segment by hand leaves a gap the marker does not cover.
    let victim = segments(&e)[0].clone();
    std::fs::remove_file(&victim).unwrap();
    let manifest = victim.with_file_name(warden_audit::manifest_name(
        victim.file_name().unwrap().to_str().unwrap(),
    ));
    std::fs::remove_file(manifest).unwrap();
    assert!(problem(&e).await.unwrap().contains("missing"));
}

#[tokio::test]
async fn a_forged_retention_marker_is_refused() {
    let e = env();
    write_and_ship(&e, 20, 600).await;
    let other = warden_audit::load_or_create_key(&e.data.join("other")).unwrap();
    let forged = warden_audit::Retention::sign(&other, 5, warden_audit::GENESIS, 0);
    let path = e.store_dir.join(PREFIX).join(warden_audit::RETENTION);
    std::fs::write(&path, serde_json::to_vec(&forged).unwrap()).unwrap();
    assert!(problem(&e).await.unwrap().contains("retention marker"));
}
