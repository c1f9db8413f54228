//! The audit log end to end: every request recorded, shipped at shutdown, verified by
//! `warden audit verify`, tampering detected, and a failing log refusing work.

use crate::{Setup, chat_body, error_code};
use serde_json::json;
use std::time::Duration;

fn segments(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir.join("audit-store/segments"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_is_recorded_shipped_and_verifiable() {
    let mut s = Setup::start().await;
    let first = s
        .http
        .post(s.url("/v1/chat/completions"))
        .bearer_auth(&s.key)
        .header("x-request-id", "client-audit-7")
        .json(&chat_body("fast"))
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let first_id = first.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body = json!({"model": "fast", "messages": [{"role": "user", "content": "mail jane.doe@example.com"}]});
    assert_eq!(s.post("/v1/chat/completions", body).await.status(), 200);
    let _ = s.stream(chat_body("fast")).await;
    assert_eq!(
        s.post("/v1/chat/completions", json!({"model": "fast"}))
            .await
            .status(),
        400
    );
    // Key changes made with the CLI are copied into the log within a second.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    s.warden.signal("TERM");
    let code = tokio::task::block_in_place(|| s.warden.wait_exit(Duration::from_secs(10)));
    assert_eq!(code, Some(0), "{}", s.warden.logs());

    let (code, out, err) = s.warden.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    // Started, the key's creation, 4 requests.
    assert!(out.contains("ok: 6 records"), "{out}");
    let text: String = segments(&s.warden.data_dir)
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(
        text.contains("\"kind\":\"model_call\"") && text.contains("\"status\":400"),
        "{text}"
    );
    assert!(text.contains("\"redactions\":{\"EMAIL\":1}"), "{text}");
    // The client's own id is kept apart from Warden's, in the same record.
    let line = text
        .lines()
        .find(|l| l.contains(&first_id))
        .expect("the first request's record");
    assert!(
        line.contains("\"client_request_id\":\"client-audit-7\""),
        "{line}"
    );
    assert!(text.contains("\"deployment\":\"test-deploy-1\""));
    assert!(
        text.contains("\"kind\":\"key_change\",\"action\":\"created\",\"key_name\":\"test\""),
        "{text}"
    );
    assert!(!text.contains("jane.doe"), "no content in the audit log");

    // Search by request id, key, and time.
    let (code, out, _) = s
        .warden
        .cli(&["audit", "search", "--request-id", &first_id]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(out.contains(&first_id));
    let (_, out, _) = s.warden.cli(&["audit", "search", "--key", "test"]);
    assert_eq!(out.lines().count(), 4, "{out}");
    let (_, out, err) = s.warden.cli(&["audit", "search", "--from", "2999-01-01"]);
    assert_eq!(out.lines().count(), 0, "{out}");
    assert!(err.contains("0 matching"), "{err}");
    let (code, _, err) = s.warden.cli(&["audit", "search", "--from", "yesterday"]);
    assert_eq!(code, 2);
    assert!(err.contains("--from"), "{err}");

    // Tampering with a shipped record is caught, with a non-zero exit.
    let seg = &segments(&s.warden.data_dir)[0];
    let edited = std::fs::read_to_string(seg)
        .unwrap()
        .replace("\"status\":400", "\"status\":200");
    std::fs::write(seg, edited).unwrap();
    let (code, out, _) = s.warden.cli(&["audit", "verify"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("BROKEN") && out.contains("does not match its signed manifest"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_audit_log_cannot_write_requests_are_refused() {
    let s = Setup::start_with("[audit]\nmax_segment_age = \"200ms\"\n").await;
    assert_eq!(s.chat("fast").await.status(), 200);
    // Let the small segment close, then make a new one impossible.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let open_dir = s.warden.data_dir.join("audit/open");
    std::fs::remove_dir_all(&open_dir).unwrap();
    std::fs::write(&open_dir, b"not a directory").unwrap();
    // Whatever segment is open now cannot be closed either: give the rotation a moment.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let (code, body) = error_code(s.chat("fast").await, 503).await;
    assert_eq!(code, "audit_unavailable", "{body}");
    // Once the log is known to fail, nothing more goes to the provider.
    let hits = s.a.hits();
    let (code, _) = error_code(s.chat("fast").await, 503).await;
    assert_eq!(code, "audit_unavailable");
    let mut stream = crate::chat_body("fast");
    stream["stream"] = serde_json::json!(true);
    assert_eq!(s.post("/v1/chat/completions", stream).await.status(), 503);
    assert_eq!(s.a.hits(), hits, "no provider call while the log fails");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fail_open_a_failing_audit_log_does_not_stop_answers() {
    let s = Setup::start_with("[audit]\nmax_segment_age = \"200ms\"\nfail_open = true\n").await;
    assert_eq!(s.chat("fast").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let open_dir = s.warden.data_dir.join("audit/open");
    std::fs::remove_dir_all(&open_dir).unwrap();
    std::fs::write(&open_dir, b"not a directory").unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(s.chat("fast").await.status(), 200);
    let logs = s.warden.logs();
    assert!(
        logs.contains("audit record failed; answering anyway (audit.fail_open)"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_acknowledged_record() {
    use crate::{KEYS_ENV, bin, two_provider_config};
    use warden_testkit::{MockUpstream, WardenProcess};
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let dir = WardenProcess::temp_dir();
    let config = two_provider_config(&a, &b, "");
    let mut first = WardenProcess::start_in(&bin(), dir.clone(), Some(&config), &KEYS_ENV);
    let key = first.create_key("load", &[]);
    let url = format!("{}/v1/chat/completions", first.url);
    let http = reqwest::Client::new();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (http, url, key) = (http.clone(), url.clone(), key.clone());
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for _ in 0..400 {
                let Ok(r) = http
                    .post(&url)
                    .bearer_auth(&key)
                    .json(&chat_body("fast"))
                    .send()
                    .await
                else {
                    break;
                };
                if r.status() == 200 {
                    acknowledged.push(r.headers()["x-request-id"].to_str().unwrap().to_owned());
                }
            }
            acknowledged
        }));
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    first.signal("KILL");
    let mut acknowledged = Vec::new();
    for t in tasks {
        acknowledged.extend(t.await.unwrap());
    }
    assert!(
        acknowledged.len() > 20,
        "the load ran: {}",
        acknowledged.len()
    );
    tokio::task::block_in_place(|| first.wait_exit(Duration::from_secs(5)));

    // Restart on the same data: the open segment is recovered, then shut down cleanly.
    let mut second = WardenProcess::start_in(&bin(), dir.clone(), Some(&config), &KEYS_ENV);
    second.signal("TERM");
    assert_eq!(
        tokio::task::block_in_place(|| second.wait_exit(Duration::from_secs(10))),
        Some(0)
    );
    let (code, out, err) = second.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    let text: String = segments(&second.data_dir)
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let missing: Vec<&String> = acknowledged
        .iter()
        .filter(|id| !text.contains(&format!("\"request_id\":\"{id}\"")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged requests have no audit record",
        missing.len(),
        acknowledged.len()
    );
}

/// A moto S3 server on loopback, killed when dropped.
struct Moto(std::process::Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto(server: &std::ffi::OsStr, port: u16) -> Moto {
    let moto = Moto(
        std::process::Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start moto_server"),
    );
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return moto;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("moto did not start"); // `moto` is dropped: killed and waited for
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segments_wait_while_s3_is_down_then_ship_and_verify_from_s3() {
    let Some(moto) = std::env::var_os("WARDEN_TEST_MOTO_SERVER") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "WARDEN_TEST_MOTO_SERVER must be set in CI (see .ci/run)"
        );
        eprintln!(
            "\n*** SKIPPED the S3 audit test: set WARDEN_TEST_MOTO_SERVER to moto_server (see .ci/run) ***\n"
        );
        return;
    };
    let port = warden_testkit::free_port();
    let extra = format!(
        "[audit]\nstore = \"s3\"\ns3_bucket = \"audit\"\ns3_prefix = \"prod/eu\"\n\
         s3_endpoint = \"http://127.0.0.1:{port}\"\ns3_allow_http = true\n\
         max_segment_age = \"200ms\"\nship_interval = \"200ms\"\n"
    );
    let a = warden_testkit::MockUpstream::start().await;
    let b = warden_testkit::MockUpstream::start().await;
    let mut env = crate::KEYS_ENV.to_vec();
    env.extend([
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
    ]);
    let mut w = warden_testkit::WardenProcess::start(
        &crate::bin(),
        &crate::two_provider_config(&a, &b, &extra),
        &env,
    );
    let key = w.create_key("s3", &[]);
    let http = reqwest::Client::new();
    for _ in 0..3 {
        let r = http
            .post(format!("{}/v1/chat/completions", w.url))
            .bearer_auth(&key)
            .json(&chat_body("fast"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "answers do not wait for the object store");
    }
    // The store is down: closed segments wait on disk.
    let closed = w.data_dir.join("audit/closed");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        std::fs::read_dir(&closed).unwrap().count() > 0,
        "segments wait locally"
    );

    // The store comes up (with its bucket): the shipper catches up.
    let _moto = tokio::task::block_in_place(|| start_moto(&moto, port));
    let created = http
        .put(format!("http://127.0.0.1:{port}/audit"))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());
    let mut waited = 0;
    while std::fs::read_dir(&closed).unwrap().count() > 0 {
        assert!(waited < 150, "segments were not shipped:\n{}", w.logs());
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited += 1;
    }
    w.signal("TERM");
    assert_eq!(
        tokio::task::block_in_place(|| w.wait_exit(Duration::from_secs(10))),
        Some(0)
    );
    let (code, out, err) = w.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    // Started, 3 requests, and (copied within a second) the key's creation.
    assert!(
        out.contains("ok: 5 records") || out.contains("ok: 4 records"),
        "{out}"
    );
    // The objects are in the bucket under the prefix.
    let listing = http
        .get(format!(
            "http://127.0.0.1:{port}/audit?list-type=2&prefix=prod/eu/segments/"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        listing.contains("prod/eu/segments/seg-00000000000000000001.jsonl"),
        "{listing}"
    );
    assert!(listing.contains(".manifest.json"), "{listing}");
    // Each segment's closing checkpoint is its own object beside them.
    let listing = http
        .get(format!(
            "http://127.0.0.1:{port}/audit?list-type=2&prefix=prod/eu/checkpoints/"
        ))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listing.contains("prod/eu/checkpoints/0000"), "{listing}");
}

/// A shipped log of several segments: Warden with small segments and fast checkpoints, two
/// requests a segment apart, then a clean stop (the last segment closed and shipped).
async fn shipped_log() -> Setup {
    let mut s = Setup::start_with(
        "[audit]\nmax_segment_age = \"200ms\"\nship_interval = \"200ms\"\ncheckpoint_interval = \"100ms\"\n",
    )
    .await;
    assert_eq!(s.chat("fast").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(s.chat("fast").await.status(), 200);
    s.warden.signal("TERM");
    let code = tokio::task::block_in_place(|| s.warden.wait_exit(Duration::from_secs(10)));
    assert_eq!(code, Some(0), "{}", s.warden.logs());
    assert!(segments(&s.warden.data_dir).len() >= 2);
    s
}

fn checkpoints(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.retain(|p: &std::path::PathBuf| p.extension().is_some_and(|x| x == "json"));
    v.sort();
    v
}

fn manifest_of(segment: &std::path::Path) -> std::path::PathBuf {
    segment.with_file_name(warden_audit::manifest_name(
        segment.file_name().unwrap().to_str().unwrap(),
    ))
}

/// `warden audit verify` must fail; returns its output.
fn verify_fails(s: &Setup) -> String {
    let (code, out, err) = s.warden.cli(&["audit", "verify"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("BROKEN"), "{out}");
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_log_verifies_and_reports_the_time_it_is_proven_complete_up_to() {
    let mut s = Setup::start_with("[audit]\ncheckpoint_interval = \"100ms\"\n").await;
    assert_eq!(s.chat("fast").await.status(), 200);
    tokio::time::sleep(Duration::from_millis(400)).await;
    // While it runs: the open segment is covered by a local checkpoint (the newest one only;
    // two for a moment while it is replaced), nothing is shipped.
    let local = s.warden.data_dir.join("audit/checkpoints");
    let now = checkpoints(&local);
    assert!((1..=2).contains(&now.len()), "{now:?}");
    assert!(checkpoints(&s.warden.data_dir.join("audit-store/checkpoints")).is_empty());
    let (code, out, err) = s.warden.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("proven complete up to 20"), "{out}");

    s.warden.signal("TERM");
    let code = tokio::task::block_in_place(|| s.warden.wait_exit(Duration::from_secs(10)));
    assert_eq!(code, Some(0), "{}", s.warden.logs());
    let (code, out, err) = s.warden.cli(&["audit", "verify"]);
    assert_eq!(code, 0, "{out}{err}");
    let last = out
        .split("chain intact up to seq ")
        .nth(1)
        .and_then(|t| t.split(';').next())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        out.contains("proven complete up to 20")
            && out.contains(&format!("(signed checkpoint at seq {last})")),
        "{out}"
    );
    // Shipped beside the segments: the closing checkpoint, none left locally.
    let shipped = checkpoints(&s.warden.data_dir.join("audit-store/checkpoints"));
    assert!(
        shipped
            .last()
            .is_some_and(|p| p.ends_with(warden_audit::checkpoint_name(last.parse().unwrap()))),
        "{shipped:?}"
    );
    assert!(checkpoints(&local).is_empty());
    // A stopped log grows stale: `--max-age` tells a log that stopped (or lost its newest
    // objects) from one that is current.
    let (code, out, err) = s.warden.cli(&["audit", "verify", "--max-age", "1h"]);
    assert_eq!(code, 0, "{out}{err}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (code, out, err) = s.warden.cli(&["audit", "verify", "--max-age", "1s"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(format!("{out}{err}").contains("STALE"), "{out}{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewriting_the_last_shipped_segment_and_dropping_its_manifest_fails_verification() {
    let s = shipped_log().await;
    let last = segments(&s.warden.data_dir).pop().unwrap();
    // The records changed and the chain recomputed, as anyone without the key can.
    let mut records: Vec<warden_audit::Record> = std::fs::read_to_string(&last)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut prev = records[0].prev_hash.clone();
    for r in &mut records {
        if let warden_audit::Event::ModelCall(c) = &mut r.event {
            c.status = 500;
        }
        r.prev_hash = prev.clone();
        prev = r.hash();
    }
    let text: Vec<u8> = records
        .iter()
        .flat_map(|r| [r.canonical(), b"\n".to_vec()].concat())
        .collect();
    std::fs::write(&last, text).unwrap();
    std::fs::remove_file(manifest_of(&last)).unwrap();
    let out = verify_fails(&s);
    let name = last.file_name().unwrap().to_str().unwrap();
    assert!(
        out.contains(name) && out.contains("shipped segment without a manifest"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_last_segment_and_its_manifest_fails_verification() {
    let s = shipped_log().await;
    let last = segments(&s.warden.data_dir).pop().unwrap();
    std::fs::remove_file(manifest_of(&last)).unwrap();
    std::fs::remove_file(&last).unwrap();
    let out = verify_fails(&s);
    assert!(out.contains("beyond the end of the chain"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_the_newest_checkpoint_fails_verification() {
    let s = shipped_log().await;
    let newest = checkpoints(&s.warden.data_dir.join("audit-store/checkpoints"))
        .pop()
        .unwrap();
    std::fs::remove_file(&newest).unwrap();
    let out = verify_fails(&s);
    assert!(
        out.contains("names checkpoint") && out.contains("which is missing"),
        "{out}"
    );
}
