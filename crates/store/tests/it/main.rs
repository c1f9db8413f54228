//! Integration tests of the SQLite store against a real database file.

mod keys;
mod usage;

use warden_store::{NewKeyRecord, SqliteStore};

async fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open_dir(dir.path()).await.expect("open store");
    (dir, store)
}

fn key(id: &str, name: &str, hash_byte: u8) -> NewKeyRecord {
    NewKeyRecord {
        id: id.into(),
        name: name.into(),
        hash: [hash_byte; 32],
        prefix: "wdn_00000000".into(),
        models: None,
        created_at: 1_000,
        expires_at: None,
        admin: false,
    }
}
