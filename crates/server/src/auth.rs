//! Virtual-key authentication: `Authorization: Bearer wdn_…`. The key is hashed and looked up;
//! unknown, revoked and expired keys all get the same 401, so a caller learns nothing about
//! which keys exist. The presented key is never logged.

use crate::{ApiError, AppState};
use axum::extract::FromRequestParts;
use http::request::Parts;
use std::sync::Arc;
use warden_core::ErrorCode;
use warden_store::{KeyRecord, KeyStatus};

/// The authenticated key of a request.
pub struct AuthedKey(pub KeyRecord);

impl FromRequestParts<Arc<AppState>> for AuthedKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let Some(header) = parts.headers.get(http::header::AUTHORIZATION) else {
            return Err(ApiError::new(
                ErrorCode::MissingApiKey,
                "missing API key: send `Authorization: Bearer <your Warden key>`",
            ));
        };
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                h.strip_prefix("Bearer ")
                    .or_else(|| h.strip_prefix("bearer "))
            })
            .map(str::trim)
            .unwrap_or("");
        let invalid = || {
            ApiError::new(
                ErrorCode::InvalidApiKey,
                "invalid, revoked or expired API key",
            )
        };
        if !warden_core::keys::looks_valid(token) {
            return Err(invalid());
        }
        let hash = warden_core::keys::hash(token);
        // Known and unknown hashes are both cached for a short while, so a repeated unknown
        // key costs about what a revoked one does (timing tells nothing about which exist).
        let record = match state.keys.get(&hash) {
            Some(record) => record,
            None if state.keys.is_unknown(&hash) => return Err(invalid()),
            None => {
                let found = state.store.key_by_hash(&hash).await.map_err(|e| {
                    tracing::error!(error = %e, "key lookup failed");
                    ApiError::new(
                        ErrorCode::StoreUnavailable,
                        "the key store is unavailable; retry later",
                    )
                })?;
                let Some(record) = found else {
                    state.keys.put_unknown(hash);
                    return Err(invalid());
                };
                state.keys.put(hash, record.clone());
                record
            }
        };
        match record.status(warden_core::time::unix_secs()) {
            KeyStatus::Active | KeyStatus::Grace => Ok(Self(record)),
            KeyStatus::Expired | KeyStatus::Revoked => Err(invalid()),
        }
    }
}

/// An authenticated key that holds the admin right (`warden keys create NAME --admin`).
pub struct AdminKey(pub KeyRecord);

impl FromRequestParts<Arc<AppState>> for AdminKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let AuthedKey(key) = AuthedKey::from_request_parts(parts, state).await?;
        if !key.admin {
            return Err(ApiError::new(
                ErrorCode::AdminRequired,
                "this route needs an admin key (warden keys create NAME --admin)",
            ));
        }
        Ok(Self(key))
    }
}
