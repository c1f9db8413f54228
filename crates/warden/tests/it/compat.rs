//! The official OpenAI Python SDK as the client. `.ci/run` installs it (pinned) in a virtual
//! environment and sets `WARDEN_TEST_PYTHON`; without it the test skips loudly, except in CI
//! (`CI` set), where a missing SDK is a failure.

use crate::{FAST_RETRY, bin};
use std::process::Command;
use warden_testkit::{MockUpstream, WardenProcess};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn official_python_sdk_works_against_warden() {
    let Some(python) = std::env::var_os("WARDEN_TEST_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "WARDEN_TEST_PYTHON must be set in CI (see .ci/run)"
        );
        eprintln!(
            "\n*** SKIPPED official_python_sdk_works_against_warden: set WARDEN_TEST_PYTHON to a \
             python with `openai` installed (see .ci/run) ***\n"
        );
        return;
    };
    let mock = MockUpstream::start().await;
    let config = format!(
        "deployment = \"compat-1\"\n{FAST_RETRY}\n[providers.p]\nbase_url = \"{}\"\n\
         [models.fast]\naliases = [\"quick\"]\ntargets = [{{ provider = \"p\", model = \"m\" }}]\n\
         [cache]\nenabled = true\n[limits.users]\nrequests_per_minute = 1\n",
        mock.base_url()
    );
    let w = WardenProcess::start(&bin(), &config, &[]);
    let key = w.create_key("sdk", &[]);
    let limited = w.create_key("sdk-limited", &["--models", "quick"]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/compat/openai_sdk.py");
    let out = tokio::task::block_in_place(|| {
        Command::new(python)
            .arg(script)
            .env("WARDEN_URL", &w.url)
            .env("WARDEN_KEY", &key)
            .env("WARDEN_LIMITED_KEY", &limited)
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .output()
            .expect("run python")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "SDK check failed:\n{stdout}\n{stderr}\nwarden log:\n{}",
        w.logs()
    );
    assert!(stdout.contains("ok   not found"), "{stdout}");
    assert!(stdout.contains("ok   cached stream replay"), "{stdout}");
    assert!(stdout.contains("ok   rate limit error"), "{stdout}");
}
