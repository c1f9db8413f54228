//! Warden's own audit signing key (Ed25519), kept in the data directory. Segment manifests are
//! signed with it; `warden audit verify` checks them against its public half.

use crate::Error;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::RngCore;
use std::path::Path;

/// Loads `dir/audit.key`, creating it (mode 0600) on first use, and writes `dir/audit.pub`.
pub fn load_or_create(dir: &Path) -> Result<SigningKey, Error> {
    let path = dir.join("audit.key");
    let key = match std::fs::read_to_string(&path) {
        Ok(text) => {
            let bytes = hex::decode(text.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    Error::Key(format!("{} is not a 64-character hex key", path.display()))
                })?;
            SigningKey::from_bytes(&bytes)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            let key = SigningKey::from_bytes(&bytes);
            std::fs::create_dir_all(dir)
                .map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
            write_private(&path, &hex::encode(bytes))?;
            key
        }
        Err(e) => return Err(Error::Io(format!("{}: {e}", path.display()))),
    };
    let public = hex::encode(key.verifying_key().as_bytes());
    std::fs::write(dir.join("audit.pub"), format!("{public}\n"))
        .map_err(|e| Error::Io(format!("audit.pub: {e}")))?;
    Ok(key)
}

/// Reads a public key: 64 hex characters (as in `audit.pub`).
pub fn parse_public(text: &str) -> Result<VerifyingKey, Error> {
    let bytes = hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b).ok())
        .ok_or_else(|| Error::Key("a public key is 64 hex characters".into()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| Error::Key(format!("invalid public key: {e}")))
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::Io(e.to_string()))
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> Result<(), Error> {
    std::fs::write(path, text).map_err(|e| Error::Io(e.to_string()))
}
