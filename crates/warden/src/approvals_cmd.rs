//! `warden approvers keygen`, `warden approvals list|show`, `warden approve`, `warden deny`.
//! Decisions are signed here, on the approver's machine, with the approver's private key;
//! the server only ever sees the signature. Before signing, the arguments' hash is
//! recomputed from the arguments shown, so the server cannot get a different call signed.

use crate::cli::{ApprovalsCommand, Remote};
use crate::settings::Failure;
use anyhow::Context;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use warden_tools::approval::{Decision, DecisionMessage, arguments_sha256, parse_private_key};

/// `warden approvers keygen NAME`: writes NAME.key (private, mode 0600) and NAME.pub.
pub fn keygen(name: &str, dir: &Path) -> Result<(), Failure> {
    let (private, public, public_hex) = write_keypair(name, dir)?;
    println!("{public_hex}");
    eprintln!(
        "wrote {} (private, mode 0600: keep it with the approver) and {}.\nAdd to warden.toml:\n\n[approvers.{name}]\npublic_key = \"{public_hex}\"\ntools = [\"sql_execute\"]",
        private.display(),
        public.display()
    );
    Ok(())
}

/// Writes a new key pair; returns the private and public key files and the public key (hex).
pub fn write_keypair(name: &str, dir: &Path) -> Result<(PathBuf, PathBuf, String), Failure> {
    use rand::RngCore;
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Failure::Config(
            "NAME: letters, digits, `-` and `_` only".into(),
        ));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    let private = dir.join(format!("{name}.key"));
    let public = dir.join(format!("{name}.pub"));
    if private.exists() {
        return Err(Failure::Config(format!(
            "{} exists already; keep it, or remove it first",
            private.display()
        )));
    }
    let mut seed = [0u8; 32];
    rand::rng().fill_bytes(&mut seed);
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let public_hex = hex::encode(key.verifying_key().as_bytes());
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&private)
            .with_context(|| format!("write {}", private.display()))?;
        writeln!(f, "{}", hex::encode(seed)).context("write the private key")?;
    }
    std::fs::write(&public, format!("{public_hex}\n")).context("write the public key")?;
    Ok((private, public, public_hex))
}

fn api_key(remote: &Remote) -> Result<String, Failure> {
    remote
        .api_key
        .clone()
        .or_else(|| std::env::var("WARDEN_API_KEY").ok())
        .filter(|k| !k.trim().is_empty())
        .ok_or_else(|| {
            Failure::Config("an admin key is needed: --api-key or WARDEN_API_KEY".into())
        })
}

async fn call(
    remote: &Remote,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, Failure> {
    let key = api_key(remote)?;
    let url = format!("{}{path}", remote.url.trim_end_matches('/'));
    let mut req = reqwest::Client::new()
        .request(method, &url)
        .bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .with_context(|| format!("cannot reach Warden at {}", remote.url))?;
    let status = resp.status();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let message = v["error"]["message"].as_str().unwrap_or("no message");
        let code = v["error"]["code"].as_str().unwrap_or("?");
        return Err(Failure::Runtime(anyhow::anyhow!(
            "{status} {code}: {message}"
        )));
    }
    Ok(v)
}

fn summary(a: &Value) -> String {
    format!(
        "{}  {:<17} {:<14} {:<22} {}",
        a["id"].as_str().unwrap_or("?"),
        a["state"].as_str().unwrap_or("?"),
        a["tool"].as_str().unwrap_or("?"),
        a["agent"].as_str().unwrap_or("?"),
        a["preview"]["statement"].as_str().unwrap_or_default()
    )
}

/// Runs an approvals command.
pub async fn run(command: ApprovalsCommand) -> Result<(), Failure> {
    match command {
        ApprovalsCommand::List {
            remote,
            state,
            json: as_json,
        } => {
            let query = match &state {
                Some(s) => format!("/v1/approvals?state={s}"),
                None => "/v1/approvals".into(),
            };
            let v = call(&remote, reqwest::Method::GET, &query, None).await?;
            if as_json {
                println!("{}", v["data"]);
            } else {
                for a in v["data"].as_array().into_iter().flatten() {
                    println!("{}", summary(a));
                }
            }
        }
        ApprovalsCommand::Resolve {
            remote,
            id,
            outcome,
            note,
            approver,
            key_file,
        } => resolve(remote, id, outcome, note, approver, key_file).await?,
        ApprovalsCommand::Show { remote, id, live } => {
            let path = if live {
                format!("/v1/approvals/{id}/preview")
            } else {
                format!("/v1/approvals/{id}")
            };
            let v = call(&remote, reqwest::Method::GET, &path, None).await?;
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }
    }
    Ok(())
}

fn read_key(key_file: &std::path::Path) -> Result<ed25519_dalek::SigningKey, Failure> {
    let text = std::fs::read_to_string(key_file)
        .with_context(|| format!("cannot read the private key {}", key_file.display()))?;
    parse_private_key(&text).map_err(|e| Failure::Config(format!("{}: {e}", key_file.display())))
}

/// `warden approvals resolve`: fetch, sign the resolution locally, submit.
async fn resolve(
    remote: Remote,
    id: String,
    outcome: String,
    note: String,
    approver: String,
    key_file: PathBuf,
) -> Result<(), Failure> {
    let key = read_key(&key_file)?;
    let succeeded = match outcome.as_str() {
        "succeeded" => true,
        "failed" => false,
        other => {
            return Err(Failure::Config(format!(
                "--outcome must be succeeded or failed, not `{other}`"
            )));
        }
    };
    let a = call(
        &remote,
        reqwest::Method::GET,
        &format!("/v1/approvals/{id}"),
        None,
    )
    .await?;
    let message = warden_tools::approval::ResolutionMessage {
        approval_id: id.clone(),
        agent_id: a["agent"].as_str().unwrap_or_default().to_owned(),
        tool: a["tool"].as_str().unwrap_or_default().to_owned(),
        arguments_sha256: a["arguments_sha256"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        succeeded,
        note: note.clone(),
    };
    let body = json!({"approver": approver, "outcome": outcome, "note": note,
                      "signature": message.sign(&key)});
    let v = call(
        &remote,
        reqwest::Method::POST,
        &format!("/v1/approvals/{id}/resolve"),
        Some(body),
    )
    .await?;
    println!("{}", v["state"].as_str().unwrap_or("?"));
    Ok(())
}

/// `warden approve` / `warden deny`: fetch, check, sign locally, submit.
pub async fn decide(
    remote: Remote,
    id: String,
    approver: String,
    key_file: PathBuf,
    decision: Decision,
    comment: Option<String>,
) -> Result<(), Failure> {
    let key = read_key(&key_file)?;
    let a = call(
        &remote,
        reqwest::Method::GET,
        &format!("/v1/approvals/{id}"),
        None,
    )
    .await?;
    if a["state"] != "awaiting_approval" {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "approval {id} is {}, not waiting for a decision",
            a["state"].as_str().unwrap_or("?")
        )));
    }
    // What is signed is computed here from the arguments shown, not taken from the server.
    let arguments: Value =
        serde_json::from_str(a["arguments_canonical"].as_str().unwrap_or("null")).map_err(|e| {
            Failure::Runtime(anyhow::anyhow!(
                "the approval's arguments are not JSON: {e}"
            ))
        })?;
    let hash = arguments_sha256(&arguments);
    if a["arguments_sha256"].as_str() != Some(hash.as_str()) {
        return Err(Failure::Runtime(anyhow::anyhow!(
            "the server's arguments hash does not match the arguments it shows; not signing"
        )));
    }
    let message = DecisionMessage {
        approval_id: id.clone(),
        agent_id: a["agent"].as_str().unwrap_or_default().to_owned(),
        tool: a["tool"].as_str().unwrap_or_default().to_owned(),
        arguments_sha256: hash,
        decision,
        expires_at_ms: a["expires_at_ms"].as_i64().unwrap_or(0),
    };
    eprintln!(
        "{} {}: agent {}, {} on {}: {}\n  rows that would change: {}",
        decision.as_str(),
        id,
        message.agent_id,
        message.tool,
        a["preview"]["database"].as_str().unwrap_or("?"),
        a["preview"]["statement"].as_str().unwrap_or("?"),
        a["preview"]["rows_affected"]
    );
    let body = json!({
        "approver": approver,
        "decision": decision.as_str(),
        "comment": comment,
        "signature": message.sign(&key),
    });
    let v = call(
        &remote,
        reqwest::Method::POST,
        &format!("/v1/approvals/{id}/decision"),
        Some(body),
    )
    .await?;
    println!("{}", v["state"].as_str().unwrap_or("?"));
    Ok(())
}
