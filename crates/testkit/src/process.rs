//! Runs the real `warden` binary for end-to-end tests: a fresh data directory, a config file,
//! a free port; waits until `/healthz` answers; kills the process when dropped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A running `warden serve`.
pub struct WardenProcess {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The data directory (keys, usage).
    pub data_dir: PathBuf,
    bin: PathBuf,
    log: PathBuf,
    /// The environment and config file `serve` got; `cli` passes the same.
    env: Vec<(String, String)>,
    config: Option<PathBuf>,
    _dir: Option<tempfile_dir::Dir>,
}

mod tempfile_dir {
    /// A temporary directory removed on drop (std only, to keep the kit lean).
    pub struct Dir(pub std::path::PathBuf);
    impl Dir {
        /// The path, no longer removed on drop (a restarted process takes it over).
        pub fn keep(mut self) -> std::path::PathBuf {
            std::mem::take(&mut self.0)
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            if !self.0.as_os_str().is_empty() {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}

impl WardenProcess {
    /// A fresh, unique temporary directory.
    pub fn temp_dir() -> PathBuf {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "warden-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    /// Starts `bin serve --config <file with config_toml>` on a free port, with `env` added
    /// to a cleared environment (so the developer's own `OPENAI_API_KEY` never leaks in).
    pub fn start(bin: &Path, config_toml: &str, env: &[(&str, &str)]) -> Self {
        Self::start_in(bin, Self::temp_dir(), Some(config_toml), env)
    }

    /// Starts `bin serve` in `dir` (removed on drop), with a config file written from
    /// `config_toml`, or on the embedded defaults when it is `None`.
    pub fn start_in(
        bin: &Path,
        dir: PathBuf,
        config_toml: Option<&str>,
        env: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let data_dir = dir.join("data");
        let log = dir.join("warden.log");
        let mut cmd = Self::command(bin, &data_dir, env);
        cmd.current_dir(&dir).arg("serve");
        let mut config = None;
        if let Some(text) = config_toml {
            let path = dir.join("warden.toml");
            std::fs::write(&path, text).expect("write config");
            cmd.arg("--config").arg(&path);
            config = Some(path);
        }
        let child = cmd
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::from(std::fs::File::create(&log).expect("log")))
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(&log)
                    .expect("log"),
            ))
            .spawn()
            .expect("spawn warden");
        let mut w = Self {
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            data_dir,
            bin: bin.to_owned(),
            log,
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            config,
            _dir: Some(tempfile_dir::Dir(dir)),
        };
        w.wait_ready();
        w
    }

    /// Starts `serve` again in the same directory with the same configuration and
    /// environment, once this process has exited (after `signal("KILL")` and `wait_exit`).
    pub fn restart(mut self) -> Self {
        let dir = self
            ._dir
            .take()
            .map(tempfile_dir::Dir::keep)
            .expect("a process started by WardenProcess owns its directory");
        let config = self
            .config
            .as_ref()
            .map(|p| std::fs::read_to_string(p).expect("config file"));
        let env: Vec<(String, String)> = std::mem::take(&mut self.env);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let bin = self.bin.clone();
        drop(self);
        Self::start_in(&bin, dir, config.as_deref(), &env)
    }

    /// The running `warden serve`'s process id (for memory and signal checks).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn command(bin: &Path, data_dir: &Path, env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("WARDEN_DATA_DIR", data_dir)
            .env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = self.url.trim_start_matches("http://").to_owned();
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("warden exited early with {status}:\n{}", self.logs());
            }
            if let Ok(mut s) = std::net::TcpStream::connect(&addr) {
                let _ = s.write_all(b"GET /healthz HTTP/1.0\r\n\r\n");
                let mut buf = String::new();
                use std::io::Read;
                let _ = s.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("warden did not become ready:\n{}", self.logs());
    }

    /// Runs another `warden` command (e.g. `keys create`) with the same data directory,
    /// config file and environment as `serve`, and returns (exit code, stdout, stderr).
    pub fn cli(&self, args: &[&str]) -> (i32, String, String) {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let mut cmd = Self::command(&self.bin, &self.data_dir, &env);
        if let Some(config) = &self.config {
            cmd.env("WARDEN_CONFIG", config);
        }
        let out = cmd.args(args).output().expect("run warden");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Creates a key and returns its plain value.
    pub fn create_key(&self, name: &str, extra: &[&str]) -> String {
        // Test keys drive every agent definition unless the test says otherwise.
        let mut extra = extra.to_vec();
        if !extra.contains(&"--agents") {
            extra.extend(["--agents", "*"]);
        }
        self.create_key_exactly(name, &extra)
    }

    /// Like [`Self::create_key`], with exactly the options `extra` (nothing added).
    pub fn create_key_exactly(&self, name: &str, extra: &[&str]) -> String {
        let mut args = vec!["keys", "create", "--name", name];
        args.extend_from_slice(extra);
        let (code, out, err) = self.cli(&args);
        assert_eq!(code, 0, "keys create failed: {err}");
        out.lines()
            .find_map(|l| l.split_whitespace().find(|w| w.starts_with("wdn_")))
            .unwrap_or_else(|| panic!("no key in output: {out}"))
            .to_owned()
    }

    /// Everything the process logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal (e.g. "HUP", "TERM") to the process.
    pub fn signal(&self, sig: &str) {
        if let Some(child) = &self.child {
            let status = Command::new("kill")
                .args([&format!("-{sig}"), &child.id().to_string()])
                .status()
                .expect("kill");
            assert!(status.success());
        }
    }

    /// Waits for the process to exit and returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// Runs `bin args…` with a cleared environment and `WARDEN_DATA_DIR=data_dir`.
pub fn run_cli(bin: &Path, data_dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = WardenProcess::command(bin, data_dir, &[])
        .args(args)
        .output()
        .expect("run warden");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl Drop for WardenProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
