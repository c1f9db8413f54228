//! The audit log's wiring: opening the writer and the shipper for `serve`, and
//! `warden audit verify`.

use crate::settings::{self, Failure};
use anyhow::Context;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::prefix::PrefixStore;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use warden_audit::{AuditLog, Fsync, Options, Shipper, Writer};
use warden_config::{AuditStore, Config};

/// Where shipped segments go: `audit.store_dir`, else `<data dir>/audit-store`.
pub fn store_dir(config: &Config, data_dir: &Path) -> PathBuf {
    config
        .audit
        .store_dir
        .clone()
        .unwrap_or_else(|| data_dir.join("audit-store"))
}

/// The object store for shipped segments: a local folder, or an S3(-compatible) bucket with
/// credentials from the environment.
pub fn open_store(config: &Config, data_dir: &Path) -> anyhow::Result<Arc<dyn ObjectStore>> {
    match &config.audit.store {
        AuditStore::Local => {
            let dir = store_dir(config, data_dir);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            let fs = LocalFileSystem::new_with_prefix(&dir)
                .with_context(|| format!("cannot open {}", dir.display()))?;
            Ok(Arc::new(fs))
        }
        AuditStore::S3 {
            bucket,
            prefix,
            endpoint,
            region,
            allow_http,
        } => {
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_region(region)
                .with_allow_http(*allow_http);
            if let Some(endpoint) = endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_virtual_hosted_style_request(false);
            }
            let s3 = builder
                .build()
                .context("audit.store = \"s3\": cannot configure the bucket")?;
            if prefix.is_empty() {
                Ok(Arc::new(s3))
            } else {
                Ok(Arc::new(PrefixStore::new(s3, prefix.as_str())))
            }
        }
    }
}

/// The running parts of the audit log.
pub struct Running {
    /// Appends records.
    pub log: AuditLog,
    /// Stops the writer: queued records are written and the segment closed.
    pub stop_writer: tokio::sync::oneshot::Sender<()>,
    /// The writer task.
    pub writer: tokio::task::JoinHandle<()>,
    /// Stops the shipper (after one last shipping round).
    pub stop_shipper: tokio::sync::oneshot::Sender<()>,
    /// The shipper task.
    pub shipper: tokio::task::JoinHandle<()>,
}

/// Opens the writer (recovering a previous run's open segment) and starts the shipper.
pub fn start(config: &Config, data_dir: &Path, deployment: &str) -> anyhow::Result<Running> {
    let key = warden_audit::load_or_create_key(data_dir).context("audit signing key")?;
    let audit_dir = data_dir.join("audit");
    let retention = config.audit.retention_days.map(|days| {
        (
            key.clone(),
            std::time::Duration::from_secs(u64::from(days) * 86_400),
        )
    });
    let (writer, log) = Writer::open(Options {
        dir: audit_dir.clone(),
        deployment: deployment.to_owned(),
        fsync: if config.audit.fsync {
            Fsync::Always
        } else {
            Fsync::Never
        },
        max_segment_bytes: config.audit.max_segment_bytes,
        max_segment_age: config.audit.max_segment_age,
        checkpoint_interval: config.audit.checkpoint_interval,
        key,
    })
    .context("cannot open the audit log")?;
    let store = open_store(config, data_dir)?;
    let (stop_writer, writer_stopped) = tokio::sync::oneshot::channel::<()>();
    let writer = tokio::spawn(writer.run(async move {
        let _ = writer_stopped.await;
    }));
    let (stop_shipper, stopped) = tokio::sync::oneshot::channel::<()>();
    let shipper = Shipper::new(&audit_dir, store);
    let interval = config.audit.ship_interval;
    let shipper = tokio::spawn(shipper.run_with_retention(interval, retention, async move {
        let _ = stopped.await;
    }));
    Ok(Running {
        log,
        stop_writer,
        writer,
        stop_shipper,
        shipper,
    })
}

/// `warden audit verify`: checks the shipped segments and checkpoints and the local ones not
/// shipped yet, and prints the time up to which the log is proven complete; with `max_age`
/// (`--max-age`, e.g. `10m`) also fails when the newest signed checkpoint is older than that:
/// a stopped log, or one whose newest objects were deleted.
pub async fn verify(
    global: &crate::cli::Global,
    public_key: Option<String>,
    from: Option<String>,
    to: Option<String>,
    max_age: Option<String>,
) -> Result<(), Failure> {
    let max_age = max_age
        .as_deref()
        .map(warden_config::parse_duration)
        .transpose()
        .map_err(|m| Failure::Config(format!("--max-age: {m}")))?;
    let config = settings::load(global)?;
    let data_dir = settings::data_dir(global, &config);
    let key_text = match public_key {
        Some(k) if Path::new(&k).exists() => std::fs::read_to_string(&k)
            .map_err(|e| Failure::Config(format!("--public-key: {e}")))?,
        Some(k) => k,
        None => std::fs::read_to_string(data_dir.join("audit.pub")).map_err(|e| {
            Failure::Config(format!(
                "no audit.pub in {} ({e}); pass --public-key",
                data_dir.display()
            ))
        })?,
    };
    let key = warden_audit::parse_public(&key_text)
        .map_err(|e| Failure::Config(format!("--public-key: {e}")))?;
    let store = open_store(&config, &data_dir)?;
    let (from, to) = (time_bound("--from", &from)?, time_bound("--to", &to)?);
    let report = warden_audit::verify_window(
        store.as_ref(),
        Some(&data_dir.join("audit")),
        &key,
        from,
        to,
    )
    .await
    .context("verification could not run")?;
    if let Some(problem) = &report.problem {
        println!(
            "BROKEN after {} good records (seq {}): {problem}",
            report.records, report.last_seq
        );
        return Err(Failure::Runtime(anyhow::anyhow!(
            "the audit log failed verification"
        )));
    }
    println!(
        "ok: {} records in {} segments, chain intact up to seq {}; {}",
        report.records,
        report.segments,
        report.last_seq,
        proven_text(&report)
    );
    let now = warden_core::time::unix_millis();
    if let Some(why) = max_age.and_then(|age| report.stale(age, now)) {
        println!("STALE: {why}");
        return Err(Failure::Runtime(anyhow::anyhow!(
            "the audit log is not proven complete within --max-age"
        )));
    }
    Ok(())
}

/// "proven complete up to <time> (checkpoint at seq N)", and how many records come after it.
fn proven_text(report: &warden_audit::Report) -> String {
    let Some(p) = report.proven else {
        return "no signed checkpoint: completeness is not proven".into();
    };
    let time = warden_core::time::iso8601((p.time_ms / 1000) as i64);
    let after = report.last_seq.saturating_sub(p.seq);
    let mut text = format!(
        "proven complete up to {time} (signed checkpoint at seq {})",
        p.seq
    );
    if after > 0 {
        text.push_str(&format!(
            "; the {after} record(s) after it are covered by the hash chain only"
        ));
    }
    text
}

/// What `warden audit search` keeps.
pub struct Filter {
    /// `--from`.
    pub from: Option<String>,
    /// `--to`.
    pub to: Option<String>,
    /// `--key` (name or id).
    pub key: Option<String>,
    /// `--request-id`.
    pub request_id: Option<String>,
    /// `--limit`.
    pub limit: usize,
}

/// `warden audit search`: matching records as JSON lines, oldest first.
pub async fn search(global: &crate::cli::Global, filter: Filter) -> Result<(), Failure> {
    let config = settings::load(global)?;
    let data_dir = settings::data_dir(global, &config);
    let (from, to) = (
        time_bound("--from", &filter.from)?,
        time_bound("--to", &filter.to)?,
    );
    let store = open_store(&config, &data_dir)?;
    let records = warden_audit::records(store.as_ref(), Some(&data_dir.join("audit")))
        .await
        .context("cannot read the audit log")?;
    let matching: Vec<_> = records
        .into_iter()
        .filter(|r| from.is_none_or(|f| r.time_ms >= f) && to.is_none_or(|t| r.time_ms < t))
        .filter(|r| match (&r.event, &filter.key, &filter.request_id) {
            (_, None, None) => true,
            (warden_audit::Event::ModelCall(c), key, id) => {
                key.as_ref()
                    .is_none_or(|k| *k == c.key_name || *k == c.key_id)
                    && id.as_ref().is_none_or(|i| *i == c.request_id)
            }
            _ => false,
        })
        .collect();
    let skip = matching.len().saturating_sub(filter.limit);
    for r in &matching[skip..] {
        println!("{}", serde_json::to_string(r).context("encode")?);
    }
    eprintln!(
        "{} matching record(s){}",
        matching.len(),
        if skip > 0 {
            format!(", showing the last {}", filter.limit)
        } else {
            String::new()
        }
    );
    Ok(())
}

/// A `--from`/`--to` argument as unix milliseconds.
fn time_bound(field: &str, value: &Option<String>) -> Result<Option<u64>, Failure> {
    value
        .as_deref()
        .map(|t| warden_core::time::parse_time(t).map(|s| s.max(0) as u64 * 1000))
        .transpose()
        .map_err(|m| Failure::Config(format!("{field}: {m}")))
}

/// Copies key changes made by `warden keys …` (recorded in the store, in the same transaction
/// as the change) into the audit log, once a second until `stop` turns true.
pub async fn copy_key_events(
    store: Arc<dyn warden_store::KeyEventOutbox>,
    log: AuditLog,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let events = match store.pending_key_events().await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read key events");
                continue;
            }
        };
        let mut done = None;
        for e in events {
            let event = warden_audit::Event::KeyChange {
                action: e.action,
                key_name: e.key_name,
                key_id: e.key_id,
                changed_at_ms: e.at_ms.max(0) as u64,
            };
            if let Err(err) = log.append(event).await {
                tracing::error!(error = %err, "cannot record a key change in the audit log");
                break;
            }
            done = Some(e.id);
        }
        if let Some(id) = done
            && let Err(e) = store.mark_key_events_audited(id).await
        {
            tracing::warn!(error = %e, "cannot mark key events as audited; they may be recorded twice");
        }
    }
}
