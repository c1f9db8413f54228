use crate::{FAST_RETRY, Setup, bin, chat_body};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use warden_testkit::{MockUpstream, Reply, WardenProcess, free_port};

fn serve_with_config(text: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = WardenProcess::temp_dir();
    let path = dir.join("bad.toml");
    std::fs::write(&path, text).unwrap();
    let mut cmd = Command::new(bin());
    cmd.env_clear().env("WARDEN_DATA_DIR", dir.join("data"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--config",
        ])
        .arg(&path)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_bad_config_file_stops_start_up_naming_the_field() {
    let (code, err) = serve_with_config("[server]\nlisten = \"nowhere\"\n", &[]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("server.listen"), "{err}");

    let (code, err) = serve_with_config("[retry]\nattemps = 3\n", &[]);
    assert_eq!(code, 2);
    assert!(err.contains("attemps"), "{err}");

    let (code, err) = serve_with_config(
        "[models.m]\ntargets = [{ provider = \"ghost\", model = \"x\" }]\n",
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("models.m.targets[0].provider"), "{err}");

    let (code, err) = serve_with_config(
        "[providers.p]\nbase_url = \"http://127.0.0.1:1/v1\"\napi_key_env = \"NOT_SET_ANYWHERE\"\n",
        &[],
    );
    assert_eq!(code, 2);
    assert!(
        err.contains("providers.p.api_key_env") && err.contains("NOT_SET_ANYWHERE"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_defaults_route_any_model_to_openai_base_url() {
    let mock = MockUpstream::start().await;
    let dir = WardenProcess::temp_dir();
    let base = mock.base_url();
    let w = WardenProcess::start_in(
        &bin(),
        dir.clone(),
        None,
        &[
            ("OPENAI_API_KEY", "sk-env-key"),
            ("OPENAI_BASE_URL", base.as_str()),
        ],
    );
    let key = w.create_key("k", &[]);
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", w.url))
        .bearer_auth(&key)
        .json(&chat_body("gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        mock.requests()[0].headers["authorization"],
        "Bearer sk-env-key"
    );
    assert_eq!(mock.requests()[0].body["model"], "gpt-4o-mini");
    assert!(w.data_dir.join("warden.db").exists());
    // Without WARDEN_DATA_DIR the store is ./warden-data.
    let out = Command::new(bin())
        .env_clear()
        .current_dir(&dir)
        .args(["keys", "list"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(dir.join("warden-data/warden.db").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_and_records_them() {
    let mut s = Setup::start().await;
    let slow = Reply::Text("slow answer".into());
    s.a.push([Reply::Delay(Duration::from_millis(800), Box::new(slow))]);
    let in_flight = s.spawn_chat("fast");
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.warden.signal("TERM");
    let resp = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "slow answer");
    let code = tokio::task::block_in_place(|| s.warden.wait_exit(Duration::from_secs(10)));
    assert_eq!(code, Some(0), "{}", s.warden.logs());
    let store = warden_store::SqlStore::open_sqlite_dir(&s.warden.data_dir)
        .await
        .unwrap();
    let rows = warden_store::UsageStore::recent_usage(&store, 10)
        .await
        .unwrap();
    assert_eq!(rows.len(), 1, "the usage row was flushed before exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_key_file_is_reloaded_on_change_and_on_sighup() {
    let mock = MockUpstream::start().await;
    let dir = WardenProcess::temp_dir();
    let key_file = dir.join("provider.key");
    std::fs::write(&key_file, "sk-first\n").unwrap();
    let config = format!(
        "{FAST_RETRY}\n[routing]\ndefault_provider = \"p\"\n[providers.p]\nbase_url = \"{}\"\napi_key_file = \"{}\"\n",
        mock.base_url(),
        key_file.display()
    );
    let w = WardenProcess::start_in(&bin(), dir.clone(), Some(&config), &[]);
    let key = w.create_key("k", &[]);
    let http = reqwest::Client::new();
    let send = || {
        http.post(format!("{}/v1/chat/completions", w.url))
            .bearer_auth(&key)
            .json(&chat_body("m"))
            .send()
    };
    assert_eq!(send().await.unwrap().status(), 200);
    assert_eq!(
        mock.requests()[0].headers["authorization"],
        "Bearer sk-first"
    );

    // Atomic replace, as secret managers do; picked up by polling within ~1s.
    std::fs::write(dir.join("tmp.key"), "sk-second-rotated\n").unwrap();
    std::fs::rename(dir.join("tmp.key"), &key_file).unwrap();
    let mut seen = String::new();
    for _ in 0..40 {
        assert_eq!(send().await.unwrap().status(), 200);
        seen = mock.requests().last().unwrap().headers["authorization"]
            .to_str()
            .unwrap()
            .to_owned();
        if seen == "Bearer sk-second-rotated" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, "Bearer sk-second-rotated");

    // SIGHUP forces a re-read even when size and mtime look unchanged.
    std::fs::write(&key_file, "sk-third-rotated\n").unwrap();
    w.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(send().await.unwrap().status(), 200);
    assert_eq!(
        mock.requests().last().unwrap().headers["authorization"],
        "Bearer sk-third-rotated"
    );

    // A broken file keeps the last good key: traffic does not fail.
    std::fs::write(&key_file, "").unwrap();
    w.signal("HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(send().await.unwrap().status(), 200);
    assert_eq!(
        mock.requests().last().unwrap().headers["authorization"],
        "Bearer sk-third-rotated"
    );
    assert!(!w.logs().contains("sk-third"), "keys never reach the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_grace_bounds_how_long_a_stuck_request_can_hold_the_process() {
    let mut s =
        Setup::start_with("[server]\nshutdown_grace = \"300ms\"\nlog_format = \"json\"\n").await;
    let late = Reply::Text("too late".into());
    s.a.push([Reply::Delay(Duration::from_secs(1), Box::new(late))]);
    let stuck = s.spawn_chat("fast");
    tokio::time::sleep(Duration::from_millis(150)).await;
    let signalled = std::time::Instant::now();
    s.warden.signal("TERM");
    let code = tokio::task::block_in_place(|| s.warden.wait_exit(Duration::from_secs(10)));
    assert_eq!(code, Some(0));
    assert!(
        signalled.elapsed() < Duration::from_millis(900),
        "{:?}",
        signalled.elapsed()
    );
    let outcome = stuck.await.unwrap();
    assert!(
        outcome.is_err(),
        "the stuck request was cut off: {outcome:?}"
    );
    // JSON logs: every line is an object; the grace warning is among them.
    let logs = s.warden.logs();
    assert!(
        logs.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok()),
        "{logs}"
    );
    assert!(logs.contains("grace period over"), "{logs}");
}
