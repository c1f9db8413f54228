//! The `[audit]` section: where the tamper-evident log is written, synced and shipped.

use crate::Error;
use crate::raw::RawAudit;
use crate::typed::duration;
use std::path::PathBuf;
use std::time::Duration;

/// Audit log settings.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Whether records are written (default true).
    pub enabled: bool,
    /// Sync each group of records before acknowledging it (default true: durable).
    pub fsync: bool,
    /// Close a segment at this size (default 64 MiB).
    pub max_segment_bytes: u64,
    /// Close a non-empty segment at this age (default 1h).
    pub max_segment_age: Duration,
    /// Folder used as the object store; `None` means `<data dir>/audit-store`.
    pub store_dir: Option<PathBuf>,
    /// How often closed segments are shipped (default 5s).
    pub ship_interval: Duration,
    /// How often, at least, the writer signs a checkpoint of the chain head while it moves
    /// (default 1s; more than zero, at most 1h).
    pub checkpoint_interval: Duration,
    /// Where closed segments are shipped.
    pub store: AuditStore,
    /// Delete shipped segments older than this many days (`None`: keep forever).
    pub retention_days: Option<u32>,
    /// When the log cannot take a record: `false` (default) refuses the request (fail
    /// closed); `true` logs the failure and answers anyway.
    pub fail_open: bool,
}

/// The object store that receives closed audit segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditStore {
    /// A local folder (`store_dir`, default `<data dir>/audit-store`).
    Local,
    /// An S3 bucket or any S3-compatible service. Credentials come from the environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`), never from this file.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix inside the bucket (may be empty).
        prefix: String,
        /// Endpoint for S3-compatible services (MinIO, Ceph…); `None` for AWS.
        endpoint: Option<String>,
        /// Region (default us-east-1).
        region: String,
        /// Allow a plain-HTTP endpoint (test and private networks only).
        allow_http: bool,
    },
}

/// The longest `audit.checkpoint_interval`: what may be lost unseen is bounded by it.
const MAX_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(3600);

pub(crate) fn build(raw: RawAudit) -> Result<AuditConfig, Error> {
    let audit = AuditConfig {
        enabled: raw.enabled.unwrap_or(true),
        fsync: match raw.fsync.as_deref() {
            None | Some("always") => true,
            Some("never") => false,
            Some(other) => {
                return Err(Error::invalid(
                    "audit.fsync",
                    format!("`{other}` is not one of: always, never"),
                ));
            }
        },
        max_segment_bytes: raw.max_segment_bytes.unwrap_or(64 * 1024 * 1024),
        max_segment_age: duration("audit.max_segment_age", &raw.max_segment_age, "1h")?,
        store_dir: raw.store_dir.map(PathBuf::from),
        ship_interval: duration("audit.ship_interval", &raw.ship_interval, "5s")?,
        checkpoint_interval: duration("audit.checkpoint_interval", &raw.checkpoint_interval, "1s")?,
        store: match raw.store.as_deref() {
            None | Some("local") => AuditStore::Local,
            Some("s3") => AuditStore::S3 {
                bucket: raw
                    .s3_bucket
                    .clone()
                    .filter(|b| !b.is_empty())
                    .ok_or_else(|| {
                        Error::invalid("audit.s3_bucket", "is required when audit.store = \"s3\"")
                    })?,
                prefix: raw
                    .s3_prefix
                    .clone()
                    .unwrap_or_default()
                    .trim_matches('/')
                    .to_owned(),
                endpoint: raw.s3_endpoint.clone(),
                region: raw.s3_region.clone().unwrap_or_else(|| "us-east-1".into()),
                allow_http: raw.s3_allow_http.unwrap_or(false),
            },
            Some(other) => {
                return Err(Error::invalid(
                    "audit.store",
                    format!("`{other}` is not one of: local, s3"),
                ));
            }
        },
        retention_days: raw.retention_days,
        fail_open: raw.fail_open.unwrap_or(false),
    };
    if let AuditStore::S3 {
        endpoint: Some(e),
        allow_http: false,
        ..
    } = &audit.store
        && e.starts_with("http://")
    {
        return Err(Error::invalid(
            "audit.s3_endpoint",
            "is plain HTTP; set audit.s3_allow_http = true to allow it",
        ));
    }
    if audit.retention_days == Some(0) {
        return Err(Error::invalid(
            "audit.retention_days",
            "must be at least 1 (or unset to keep forever)",
        ));
    }
    if audit.checkpoint_interval > MAX_CHECKPOINT_INTERVAL {
        return Err(Error::invalid(
            "audit.checkpoint_interval",
            "must be at most 1h",
        ));
    }
    if audit.max_segment_bytes < 1024 {
        return Err(Error::invalid(
            "audit.max_segment_bytes",
            "must be at least 1024",
        ));
    }
    Ok(audit)
}

#[cfg(test)]
mod tests {
    use crate::Config;
    use std::time::Duration;

    fn error_of(text: &str) -> String {
        Config::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn checkpoint_interval_defaults_to_one_second_and_is_bounded() {
        let defaults = Config::default();
        assert_eq!(defaults.audit.checkpoint_interval, Duration::from_secs(1));
        let c = Config::from_toml("[audit]\ncheckpoint_interval = \"250ms\"\n").unwrap();
        assert_eq!(c.audit.checkpoint_interval, Duration::from_millis(250));
        let example = Config::from_toml(include_str!("../../../warden.example.toml")).unwrap();
        assert_eq!(
            example.audit.checkpoint_interval,
            defaults.audit.checkpoint_interval
        );
        for bad in ["0s", "2h", "soon"] {
            let e = error_of(&format!("[audit]\ncheckpoint_interval = \"{bad}\"\n"));
            assert!(e.starts_with("audit.checkpoint_interval:"), "{bad}: {e}");
        }
    }
}
