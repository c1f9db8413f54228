//! `warden serve`: wires the store, the gateway and the HTTP server, then runs until SIGTERM
//! or Ctrl-C. On a signal it stops accepting connections, lets in-flight requests finish
//! within `server.shutdown_grace`, and drains the usage writer before exiting.

use crate::cli::{Global, ServeArgs};
use crate::connections::{Connections, serve_connections, stopped};
use crate::settings::{self, Failure};
use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use warden_config::LogFormat;
use warden_gateway::Gateway;
use warden_server::AppState;
use warden_store::{Store, UsageWriter};

/// How often key files are checked for changes.
const KEY_FILE_POLL: Duration = Duration::from_secs(1);
/// After a graceful stop, how long finished streams get to queue their usage rows.
const USAGE_SETTLE: Duration = Duration::from_millis(100);
/// How often writes left `dispatched` are looked for and settled.
const RECONCILE_EVERY: Duration = Duration::from_secs(30);

/// The longest step timeout of any agent definition (a minute without agents).
fn longest_step(config: &warden_config::Config) -> Duration {
    config
        .agents
        .values()
        .map(|d| d.step_timeout * 2)
        .max()
        .unwrap_or(Duration::from_secs(60))
}

/// How long the usage writer may take to drain at shutdown.
const USAGE_DRAIN: Duration = Duration::from_secs(10);

/// Runs the server: opens what it needs, recovers what a crash left, serves until a signal,
/// then shuts down in order (connections, usage rows, the audit log).
pub async fn run(global: &Global, args: ServeArgs) -> Result<(), Failure> {
    let mut config = settings::load(global)?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    init_logging(config.server.log_format);

    let dir = settings::data_dir(global, &config);
    let store: Arc<dyn Store> = settings::open_store(global, &config).await?;
    let shared = connect_redis(&config).await?;
    let gateway = Gateway::new(&config, settings::key_for, store.clone(), shared.as_ref())
        .map_err(Failure::Config)?;
    let gateway = Arc::new(gateway);
    let metrics = install_metrics(&config)?;
    let deployment = settings::deployment(&config);
    let audit = start_audit(global, &config, &dir, &deployment).await?;
    let (usage_writer, usage) = UsageWriter::new(store.clone());
    // Retries at shutdown end before the drain wait does, so the writer can say what it lost.
    let usage_writer = usage_writer.shutdown_grace(USAGE_DRAIN - Duration::from_secs(2));
    let (close_usage, usage_closed) = tokio::sync::oneshot::channel::<()>();
    let usage_task = tokio::spawn(usage_writer.run(async move {
        let _ = usage_closed.await;
    }));
    let recorder = warden_gateway::Recorder::new(
        audit.as_ref().map(|a| a.log.clone()),
        usage,
        config.audit.fail_open,
    );
    let agents = crate::agents_setup::build(
        &config,
        warden_agents::Services {
            gateway: gateway.clone(),
            store: store.clone(),
            recorder: recorder.clone(),
            deployment: deployment.clone(),
            redactor: gateway.redactor(),
        },
    )
    .await?;
    // On SQLite this process is the only node; on PostgreSQL only tasks idle for twice the
    // longest step timeout are another node's leftovers.
    let stale_after = match config.store.backend {
        warden_config::StoreBackend::Sqlite => None,
        warden_config::StoreBackend::Postgres { .. } => Some(longest_step(&config)),
    };
    recover(&agents, stale_after).await;
    let parts = Parts {
        store,
        gateway: gateway.clone(),
        recorder,
        deployment: &deployment,
        metrics,
        agents,
    };
    let state = app_state(&config, parts)?;

    let (stop_tx, stop_rx) = watch::channel(false);
    spawn_background(&config, &state, audit.as_ref(), stale_after, &stop_rx);
    tokio::spawn(signals(gateway.clone(), stop_tx));

    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
    log_serving(&config, &dir, &deployment);
    let graceful = serve_until_stopped(&config, listener, state, stop_rx).await;
    shut_down(graceful, close_usage, usage_task, audit).await;
    Ok(())
}

/// The Redis that several nodes share, if one is configured (its URL from the environment).
async fn connect_redis(
    config: &warden_config::Config,
) -> Result<Option<warden_gateway::SharedRedis>, Failure> {
    let Some(r) = &config.redis else {
        return Ok(None);
    };
    let url = settings::redis_url(r)?;
    let shared = warden_gateway::SharedRedis::connect(url.expose(), &r.key_prefix)
        .await
        .map_err(|e| anyhow::anyhow!("{e} (from {})", r.url_env))?;
    Ok(Some(shared))
}

/// The Prometheus recorder behind `/metrics`, unless `server.metrics = false`.
fn install_metrics(
    config: &warden_config::Config,
) -> Result<Option<metrics_exporter_prometheus::PrometheusHandle>, Failure> {
    Ok(if config.server.metrics {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("duration_seconds".into()),
                &[
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                ],
            )
            .context("metrics buckets")?
            .build_recorder();
        let handle = recorder.handle();
        metrics::set_global_recorder(recorder).context("install the metrics recorder")?;
        Some(handle)
    } else {
        None
    })
}

/// The audit log's writer and shipper, with this start recorded (and the SHA-256 of the
/// config file), unless `audit.enabled = false`.
async fn start_audit(
    global: &Global,
    config: &warden_config::Config,
    dir: &std::path::Path,
    deployment: &str,
) -> Result<Option<crate::audit_cmd::Running>, Failure> {
    Ok(if config.audit.enabled {
        let running = crate::audit_cmd::start(config, dir, deployment)?;
        let config_sha256 = global
            .config
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .map(|b| {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(b))
            });
        running
            .log
            .append(warden_audit::Event::Started { config_sha256 })
            .await
            .context("the audit log refused the start record")?;
        Some(running)
    } else {
        tracing::warn!("audit.enabled = false: requests are not recorded in the audit log");
        None
    })
}

/// What a crash left: tasks left running are marked interrupted (resumable), writes left
/// `dispatched` are settled by asking their targets (an SQL write by its idempotency key),
/// and agents whose approvals were decided while Warden was stopped go on. Failures are
/// logged: the reconciler tries again later.
async fn recover(agents: &warden_agents::Agents, stale_after: Option<Duration>) {
    match agents.recover_interrupted(stale_after).await {
        Ok(0) => {}
        Ok(n) => tracing::warn!(
            agents = n,
            "tasks interrupted by a restart are marked resumable"
        ),
        Err(e) => tracing::error!(error = %e, "could not mark interrupted agent tasks"),
    }
    // Writes a crash left `dispatched` are settled by asking their targets (an SQL write by
    // its idempotency key) before anything else runs; then every RECONCILE_EVERY.
    let settle_after = stale_after.unwrap_or(Duration::ZERO);
    match agents.reconcile(settle_after).await {
        Ok(s) if s.is_empty() => {}
        Ok(s) => tracing::warn!(
            writes = s.len(),
            "writes interrupted by a restart were settled"
        ),
        Err(e) => tracing::error!(error = %e, "could not settle interrupted writes yet"),
    }
    match agents.continue_decided().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            agents = n,
            "agents continue after decisions made while stopped"
        ),
        Err(e) => tracing::error!(error = %e, "could not continue agents after decisions"),
    }
}

/// What the HTTP handlers share, made from the parts `run` opened.
struct Parts<'a> {
    store: Arc<dyn Store>,
    gateway: Arc<Gateway>,
    recorder: warden_gateway::Recorder,
    deployment: &'a str,
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    agents: warden_agents::Agents,
}

/// The handlers' shared state.
fn app_state(config: &warden_config::Config, parts: Parts<'_>) -> Result<Arc<AppState>, Failure> {
    let Parts {
        store,
        gateway,
        recorder,
        deployment,
        metrics,
        agents,
    } = parts;
    Ok(Arc::new(AppState {
        store,
        gateway,
        recorder,
        deployment: deployment
            .parse()
            .context("deployment is not a valid header value")?,
        max_body_bytes: config.server.max_body_bytes,
        body_read_timeout: config.server.body_read_timeout,
        min_body_rate: config.server.min_body_rate,
        keys: warden_server::KeyCache::new(config.server.key_cache_ttl),
        metrics,
        agents: Some(agents),
        models: config
            .models
            .iter()
            .flat_map(|m| std::iter::once(&m.name).chain(&m.aliases))
            .cloned()
            .collect(),
    }))
}

/// The tasks that run beside the server until `stop`: the key events' copier into the
/// audit log, the provider key file watcher, and the reconciler of dispatched writes.
fn spawn_background(
    config: &warden_config::Config,
    state: &Arc<AppState>,
    audit: Option<&crate::audit_cmd::Running>,
    stale_after: Option<Duration>,
    stop_rx: &watch::Receiver<bool>,
) {
    if let Some(audit) = audit {
        let copier = crate::audit_cmd::copy_key_events(
            state.store.clone(),
            audit.log.clone(),
            stop_rx.clone(),
        );
        tokio::spawn(copier);
    }
    tokio::spawn(watch_key_files(state.gateway.clone(), stop_rx.clone()));
    if let Some(agents) = &state.agents {
        let mut stop = stop_rx.clone();
        // A write is settled by the reconciler only when it has been dispatched for longer
        // than any step may take (so a write still running elsewhere is left alone).
        let min_age = stale_after.unwrap_or(longest_step(config));
        tokio::spawn(
            agents
                .clone()
                .run_reconciler(RECONCILE_EVERY, min_age, async move {
                    let () = stopped(&mut stop).await;
                }),
        );
    }
}

/// The "serving" line, with what is configured (never a secret).
fn log_serving(config: &warden_config::Config, dir: &std::path::Path, deployment: &str) {
    let providers: Vec<&str> = config.providers.keys().map(String::as_str).collect();
    tracing::info!(
        listen = %config.server.listen,
        data_dir = %dir.display(),
        deployment = %deployment,
        providers = ?providers,
        models = config.models.len(),
        default_provider = config.default_provider.as_deref().unwrap_or("none"),
        "warden is serving"
    );
    if providers.is_empty() {
        tracing::warn!(
            "no provider is configured: set OPENAI_API_KEY (and OPENAI_BASE_URL) or use --config"
        );
    }
}

/// Serves connections until `stop` and then for at most `server.shutdown_grace`; whether
/// every connection finished within it.
async fn serve_until_stopped(
    config: &warden_config::Config,
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    stop_rx: watch::Receiver<bool>,
) -> bool {
    let app = warden_server::router(state);
    let server = serve_connections(
        listener,
        app,
        Connections::new(&config.server),
        stop_rx.clone(),
    );
    let grace = config.server.shutdown_grace;
    let mut deadline = stop_rx;
    tokio::select! {
        () = server => true,
        () = async move {
            let _ = deadline.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "grace period over; cutting off in-flight requests");
            false
        }
    }
}

/// After serving: usage rows flushed (after a graceful stop, finished streams first queue
/// theirs), then the audit log closed and shipped, each wait bounded.
async fn shut_down(
    graceful: bool,
    close_usage: tokio::sync::oneshot::Sender<()>,
    usage_task: tokio::task::JoinHandle<()>,
    audit: Option<crate::audit_cmd::Running>,
) {
    // Every connection is closed when the server finishes gracefully; give the tasks that
    // record finished streams a moment to queue their rows, then flush and stop the writer.
    // After a cut-off, requests still running are abandoned with the runtime.
    if graceful {
        tokio::time::sleep(USAGE_SETTLE).await;
    }
    let _ = close_usage.send(());
    match tokio::time::timeout(USAGE_DRAIN, usage_task).await {
        Ok(_) => tracing::info!("usage rows flushed"),
        Err(_) => tracing::error!("usage writer did not drain in time; some rows may be lost"),
    }
    if let Some(audit) = audit {
        // Queued records are written and the segment closed; requests cut off after the
        // grace period can no longer add any (they fail, and so does their answer).
        drop(audit.log);
        let _ = audit.stop_writer.send(());
        if tokio::time::timeout(USAGE_DRAIN, audit.writer)
            .await
            .is_err()
        {
            tracing::warn!("audit segment left open; it is recovered at the next start");
        }
        let _ = audit.stop_shipper.send(());
        let _ = tokio::time::timeout(USAGE_DRAIN, audit.shipper).await;
        tracing::info!("audit log closed and shipped");
    }
}

/// SIGTERM or Ctrl-C stop the server; SIGHUP re-reads provider key files.
async fn signals(gateway: Arc<Gateway>, stop: watch::Sender<bool>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading provider key files");
                let g = gateway.clone();
                // File reads are blocking I/O: keep them off the async workers.
                let _ = tokio::task::spawn_blocking(move || g.reload_keys(true)).await;
            }
        }
    }
    let _ = stop.send(true);
}

/// Polls provider key files so a rotated key is picked up without a signal.
async fn watch_key_files(gateway: Arc<Gateway>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(KEY_FILE_POLL);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let g = gateway.clone();
                // File reads are blocking I/O: keep them off the async workers.
                let _ = tokio::task::spawn_blocking(move || g.reload_keys(false)).await;
            }
            _ = stop.changed() => return,
        }
    }
}

fn init_logging(format: LogFormat) {
    let (filter, names_sql) = crate::log_filter();
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    if names_sql {
        tracing::warn!(
            "RUST_LOG names sqlx or sqlparser: their logs may include query text (SQL and the values in it)"
        );
    }
}
