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

/// Runs the server.
pub async fn run(global: &Global, args: ServeArgs) -> Result<(), Failure> {
    let mut config = settings::load(global)?;
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    init_logging(config.server.log_format);

    let dir = settings::data_dir(global, &config);
    let store: Arc<dyn Store> = settings::open_store(global, &config).await?;
    let shared = match &config.redis {
        None => None,
        Some(r) => {
            let url = settings::redis_url(r)?;
            let shared = warden_gateway::SharedRedis::connect(url.expose(), &r.key_prefix)
                .await
                .map_err(|e| anyhow::anyhow!("{e} (from {})", r.url_env))?;
            Some(shared)
        }
    };
    let gateway = Gateway::new(&config, settings::key_for, store.clone(), shared.as_ref())
        .map_err(Failure::Config)?;
    let gateway = Arc::new(gateway);

    let metrics = if config.server.metrics {
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
    };

    let deployment = settings::deployment(&config);
    let audit = if config.audit.enabled {
        let running = crate::audit_cmd::start(&config, &dir, &deployment)?;
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
    };
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
    // Tasks a crash left running are marked interrupted (resumable). On SQLite this process
    // is the only node; on PostgreSQL only tasks idle for twice the longest step timeout.
    let stale_after = match config.store.backend {
        warden_config::StoreBackend::Sqlite => None,
        warden_config::StoreBackend::Postgres { .. } => Some(longest_step(&config)),
    };
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
    let state = Arc::new(AppState {
        store,
        gateway: gateway.clone(),
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
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    if let Some(audit) = &audit {
        let copier = crate::audit_cmd::copy_key_events(
            state.store.clone(),
            audit.log.clone(),
            stop_rx.clone(),
        );
        tokio::spawn(copier);
    }
    tokio::spawn(watch_key_files(gateway.clone(), stop_rx.clone()));
    if let Some(agents) = &state.agents {
        let mut stop = stop_rx.clone();
        // A write is settled by the reconciler only when it has been dispatched for longer
        // than any step may take (so a write still running elsewhere is left alone).
        let min_age = stale_after.unwrap_or(longest_step(&config));
        tokio::spawn(
            agents
                .clone()
                .run_reconciler(RECONCILE_EVERY, min_age, async move {
                    let () = stopped(&mut stop).await;
                }),
        );
    }
    tokio::spawn(signals(gateway.clone(), stop_tx));

    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.server.listen))?;
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

    let app = warden_server::router(state);
    let server = serve_connections(
        listener,
        app,
        Connections::new(&config.server),
        stop_rx.clone(),
    );
    let grace = config.server.shutdown_grace;
    let mut deadline = stop_rx;
    let graceful = tokio::select! {
        () = server => true,
        () = async move {
            let _ = deadline.wait_for(|stop| *stop).await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!(?grace, "grace period over; cutting off in-flight requests");
            false
        }
    };

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
    Ok(())
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
