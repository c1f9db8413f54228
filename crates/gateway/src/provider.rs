//! One OpenAI-compatible upstream: its base URL, headers, timeout and API key. A key read from
//! a file is swapped in place when the file changes (or on SIGHUP, via
//! [`crate::Gateway::reload_keys`]); requests already sent keep the key they read.

use http::{HeaderMap, HeaderName, HeaderValue};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};
use warden_config::ProviderConfig;
use warden_core::Secret;

/// Where the key comes from, resolved by the binary.
#[derive(Debug, Clone)]
pub enum KeySpec {
    /// No key is sent.
    None,
    /// A fixed key (from the environment).
    Static(Secret),
    /// A file holding the key, re-read when it changes.
    File(PathBuf),
}

/// What is known of a key file, to tell when it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    len: u64,
}

struct FileKey {
    path: PathBuf,
    stamp: Option<FileStamp>,
}

/// A configured provider.
pub struct Provider {
    /// Name from the config.
    pub name: String,
    /// Endpoint URLs parsed once (URL parsing showed up in the hot path's profile).
    urls: Urls,
    pub(crate) timeout: Duration,
    pub(crate) headers: HeaderMap,
    key: RwLock<Option<Arc<Secret>>>,
    file: Option<std::sync::Mutex<FileKey>>,
}

/// Which endpoint URL to use.
#[derive(Debug, Clone, Copy)]
pub(crate) enum UrlFor {
    Chat,
    Embeddings,
    Models,
}

struct Urls {
    chat: reqwest::Url,
    embeddings: reqwest::Url,
    models: reqwest::Url,
}

impl Urls {
    fn parse(base: &str) -> Option<Self> {
        let at = |path: &str| reqwest::Url::parse(&format!("{base}{path}")).ok();
        Some(Self {
            chat: at("/chat/completions")?,
            embeddings: at("/embeddings")?,
            models: at("/models")?,
        })
    }
}

/// Why a provider could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The key file could not be read.
    #[error("providers.{provider}.api_key_file: cannot read {path}: {reason}")]
    KeyFile {
        /// Provider name.
        provider: String,
        /// The file.
        path: String,
        /// The OS error.
        reason: String,
    },
    /// The base URL does not parse.
    #[error("providers.{provider}.base_url: not a valid URL")]
    BaseUrl {
        /// Provider name.
        provider: String,
    },
    /// A configured header is not a valid HTTP header.
    #[error("providers.{provider}.headers: `{name}` is not a valid header")]
    Header {
        /// Provider name.
        provider: String,
        /// Header name.
        name: String,
    },
}

impl Provider {
    /// Builds a provider, reading its key file now so a bad path stops start-up.
    pub fn new(name: &str, config: &ProviderConfig, key: KeySpec) -> Result<Self, SetupError> {
        let mut headers = HeaderMap::new();
        for (k, v) in &config.headers {
            let header_error = || SetupError::Header {
                provider: name.into(),
                name: k.clone(),
            };
            let hn = HeaderName::from_bytes(k.as_bytes()).map_err(|_| header_error())?;
            let hv = HeaderValue::from_str(v).map_err(|_| header_error())?;
            headers.insert(hn, hv);
        }
        let provider = Self {
            name: name.to_owned(),
            urls: Urls::parse(&config.base_url).ok_or_else(|| SetupError::BaseUrl {
                provider: name.into(),
            })?,
            timeout: config.timeout,
            headers,
            key: RwLock::new(match &key {
                KeySpec::Static(s) => Some(Arc::new(s.clone())),
                _ => None,
            }),
            file: match key {
                KeySpec::File(path) => Some(std::sync::Mutex::new(FileKey { path, stamp: None })),
                _ => None,
            },
        };
        if let Some(file) = &provider.file {
            let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
            let (secret, stamp) =
                read_key_file(&file.path).map_err(|reason| SetupError::KeyFile {
                    provider: name.into(),
                    path: file.path.display().to_string(),
                    reason,
                })?;
            file.stamp = Some(stamp);
            *provider.key.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(secret));
        }
        Ok(provider)
    }

    /// The key to send now.
    pub(crate) fn key(&self) -> Option<Arc<Secret>> {
        self.key.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Re-reads the key file if it changed (or always, when `force`). A failed read keeps the
    /// current key: a half-written or briefly missing file must not break traffic. Returns
    /// true if the key was replaced.
    pub(crate) fn reload_key(&self, force: bool) -> bool {
        let Some(file) = &self.file else { return false };
        let mut file = file.lock().unwrap_or_else(|p| p.into_inner());
        let stamp = std::fs::metadata(&file.path).ok().map(|m| FileStamp {
            modified: m.modified().ok(),
            len: m.len(),
        });
        if !force && stamp.is_some() && stamp == file.stamp {
            return false;
        }
        match read_key_file(&file.path) {
            Ok((secret, stamp)) => {
                file.stamp = Some(stamp);
                let mut key = self.key.write().unwrap_or_else(|p| p.into_inner());
                let changed = key.as_deref() != Some(&secret);
                *key = Some(Arc::new(secret));
                if changed {
                    tracing::info!(provider = %self.name, "provider key reloaded from file");
                }
                changed
            }
            Err(reason) => {
                tracing::warn!(provider = %self.name, path = %file.path.display(), %reason,
                    "provider key file unreadable; keeping the current key");
                false
            }
        }
    }

    /// The full URL of an endpoint path such as `/chat/completions`.
    pub(crate) fn url(&self, endpoint: UrlFor) -> reqwest::Url {
        match endpoint {
            UrlFor::Chat => self.urls.chat.clone(),
            UrlFor::Embeddings => self.urls.embeddings.clone(),
            UrlFor::Models => self.urls.models.clone(),
        }
    }
}

fn read_key_file(path: &std::path::Path) -> Result<(Secret, FileStamp), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let key = text.trim();
    if key.is_empty() {
        return Err("the file is empty".into());
    }
    if key.contains(['\n', '\r']) || HeaderValue::from_str(&format!("Bearer {key}")).is_err() {
        return Err("the file must hold one key on one line".into());
    }
    Ok((
        Secret::new(key),
        FileStamp {
            modified: meta.modified().ok(),
            len: meta.len(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ProviderConfig {
        ProviderConfig {
            base_url: "http://x/v1".into(),
            key: warden_config::KeySource::None,
            timeout: Duration::from_secs(1),
            headers: Default::default(),
        }
    }

    #[test]
    fn key_file_is_reloaded_when_it_changes_and_kept_when_it_breaks() {
        let dir = std::env::temp_dir().join(format!("warden-keyfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, "sk-one\n").unwrap();
        let p = Provider::new("p", &config(), KeySpec::File(path.clone())).unwrap();
        assert_eq!(p.key().unwrap().expose(), "sk-one");
        assert!(!p.reload_key(false), "unchanged file is not re-read");
        std::fs::write(&path, "sk-two-longer\n").unwrap();
        assert!(p.reload_key(false));
        assert_eq!(p.key().unwrap().expose(), "sk-two-longer");
        std::fs::write(&path, "").unwrap();
        assert!(!p.reload_key(true));
        assert_eq!(p.key().unwrap().expose(), "sk-two-longer");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_key_file_fails_setup_naming_the_field() {
        let e = Provider::new("p", &config(), KeySpec::File("/nonexistent/key".into()))
            .err()
            .unwrap();
        assert!(
            e.to_string().starts_with("providers.p.api_key_file:"),
            "{e}"
        );
    }
}
