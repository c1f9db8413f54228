//! Signed approvals. A decision is an Ed25519 signature, by a configured approver, over a
//! canonical message that binds the approval id, the agent id, the tool, the SHA-256 of the
//! call's arguments in RFC 8785 canonical JSON, the decision and the expiry. Change any of
//! them and the signature no longer verifies. Only [`verify_decision`] makes an
//! [`Approved`] proof, and the executor of writes takes nothing else.

use ed25519_dalek::{Signature, SigningKey, VerifyingKey};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Approve or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Run the call exactly as proposed.
    Approve,
    /// Do not run it.
    Deny,
}

impl Decision {
    /// `approve` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approve => "approve",
            Decision::Deny => "deny",
        }
    }

    /// Parses `approve` or `deny`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "approve" => Some(Decision::Approve),
            "deny" => Some(Decision::Deny),
            _ => None,
        }
    }
}

/// RFC 8785 canonical JSON of a call's arguments.
pub fn canonical_json(arguments: &Value) -> String {
    serde_jcs::to_string(arguments).unwrap_or_else(|_| arguments.to_string())
}

/// Hex SHA-256 of the canonical arguments.
pub fn arguments_sha256(arguments: &Value) -> String {
    hex::encode(Sha256::digest(canonical_json(arguments).as_bytes()))
}

/// The largest integer magnitude that survives RFC 8785's IEEE-754 doubles exactly (2^53).
pub const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// Checks that canonical JSON carries every number of `arguments` exactly, so that the bytes
/// hashed, shown, signed and run are one: RFC 8785 writes numbers as IEEE-754 doubles, and an
/// integer beyond 2^53 (`9007199254740993`) would be signed as another (`…992`). Returns the
/// JSON pointer of the first number that would change. Write arguments with such a number are
/// refused; a model can send it as a string.
pub fn inexact_number(arguments: &Value) -> Option<String> {
    fn walk(v: &Value, path: &mut String) -> bool {
        match v {
            Value::Number(n) => {
                let exact = if let Some(u) = n.as_u64() {
                    u <= MAX_EXACT_INTEGER
                } else if let Some(i) = n.as_i64() {
                    i.unsigned_abs() <= MAX_EXACT_INTEGER
                } else {
                    // A float: held as the double that is signed and run, but from 2^53 on a
                    // double no longer holds every integer, so `9007199254740993.0` would be
                    // signed and run as `…992`: refused like the integer.
                    n.as_f64()
                        .is_some_and(|f| f.is_finite() && f.abs() < MAX_EXACT_INTEGER as f64)
                };
                !exact
            }
            Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("/{i}"));
                let found = walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            Value::Object(map) => map.iter().any(|(k, item)| {
                let len = path.len();
                path.push('/');
                path.push_str(&k.replace('~', "~0").replace('/', "~1"));
                let found = walk(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = String::new();
    walk(arguments, &mut path).then_some(path)
}

/// What an approver signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionMessage {
    /// The approval request.
    pub approval_id: String,
    /// The agent that asked.
    pub agent_id: String,
    /// The tool.
    pub tool: String,
    /// SHA-256 of the canonical arguments (hex).
    pub arguments_sha256: String,
    /// Approve or deny.
    pub decision: Decision,
    /// The request's expiry, unix milliseconds.
    pub expires_at_ms: i64,
}

impl DecisionMessage {
    /// The exact bytes signed: a versioned, line-separated message (no field can contain a
    /// newline: ids and tool names are checked, the hash is hex).
    pub fn bytes(&self) -> Vec<u8> {
        format!(
            "warden-approval-v1\napproval:{}\nagent:{}\ntool:{}\narguments-sha256:{}\ndecision:{}\nexpires-at-ms:{}\n",
            self.approval_id,
            self.agent_id,
            self.tool,
            self.arguments_sha256,
            self.decision.as_str(),
            self.expires_at_ms
        )
        .into_bytes()
    }

    /// Signs with an approver's private key; returns the hex signature.
    pub fn sign(&self, key: &SigningKey) -> String {
        use ed25519_dalek::Signer;
        hex::encode(key.sign(&self.bytes()).to_bytes())
    }
}

/// What an approver signs to settle a write whose outcome a crash left unknown: the same
/// binding as a decision (id, agent, tool, arguments' hash) plus the outcome and the SHA-256 of
/// the note, so neither can be changed after signing. A transport key alone settles nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolutionMessage {
    /// The approval request.
    pub approval_id: String,
    /// The agent that asked.
    pub agent_id: String,
    /// The tool.
    pub tool: String,
    /// SHA-256 of the canonical arguments (hex).
    pub arguments_sha256: String,
    /// Whether the write took effect (`succeeded`) or not (`failed`).
    pub succeeded: bool,
    /// The approver's note.
    pub note: String,
}

impl ResolutionMessage {
    /// The exact bytes signed (versioned, line-separated; the note enters as its hash).
    pub fn bytes(&self) -> Vec<u8> {
        format!(
            "warden-resolution-v1\napproval:{}\nagent:{}\ntool:{}\narguments-sha256:{}\noutcome:{}\nnote-sha256:{}\n",
            self.approval_id,
            self.agent_id,
            self.tool,
            self.arguments_sha256,
            if self.succeeded { "succeeded" } else { "failed" },
            hex::encode(Sha256::digest(self.note.as_bytes())),
        )
        .into_bytes()
    }

    /// Signs with an approver's private key; returns the hex signature.
    pub fn sign(&self, key: &SigningKey) -> String {
        use ed25519_dalek::Signer;
        hex::encode(key.sign(&self.bytes()).to_bytes())
    }
}

/// Checks a resolution: the approver exists, may decide on the tool, and signed `message`.
pub fn verify_resolution(
    approvers: &BTreeMap<String, Approver>,
    approver: &str,
    message: &ResolutionMessage,
    signature_hex: &str,
) -> Result<(), DecisionError> {
    let a = approver_for(approvers, approver, &message.tool)?;
    check_signature(a, &message.bytes(), signature_hex)
}

fn approver_for<'a>(
    approvers: &'a BTreeMap<String, Approver>,
    approver: &str,
    tool: &str,
) -> Result<&'a Approver, DecisionError> {
    let a = approvers
        .get(approver)
        .ok_or_else(|| DecisionError::UnknownApprover(approver.to_owned()))?;
    if !a.tools.iter().any(|t| t == tool) {
        return Err(DecisionError::NotAllowed {
            approver: approver.to_owned(),
            tool: tool.to_owned(),
        });
    }
    Ok(a)
}

fn check_signature(a: &Approver, bytes: &[u8], signature_hex: &str) -> Result<(), DecisionError> {
    let sig = hex::decode(signature_hex.trim()).map_err(|_| DecisionError::BadSignature)?;
    let arr: [u8; 64] = sig.try_into().map_err(|_| DecisionError::BadSignature)?;
    a.key
        .verify_strict(bytes, &Signature::from_bytes(&arr))
        .map_err(|_| DecisionError::BadSignature)
}

/// A configured approver.
#[derive(Debug, Clone)]
pub struct Approver {
    /// Its public key.
    pub key: VerifyingKey,
    /// Tools it may approve.
    pub tools: Vec<String>,
}

/// Why a decision was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    /// No approver by that name.
    #[error("unknown approver `{0}`")]
    UnknownApprover(String),
    /// The approver may not approve this tool.
    #[error("approver `{approver}` may not decide on `{tool}`")]
    NotAllowed {
        /// Approver.
        approver: String,
        /// Tool.
        tool: String,
    },
    /// The signature is malformed or does not verify over this request's message.
    #[error(
        "the signature does not match this approval request (id, agent, tool, arguments, decision and expiry)"
    )]
    BadSignature,
    /// The request has expired.
    #[error("the approval request expired")]
    Expired,
}

/// Proof that a call was approved by a valid signature: only [`verify_decision`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approved<T> {
    call: T,
    /// The approver who signed.
    pub approver: String,
    /// The signature (hex).
    pub signature: String,
}

impl<T> Approved<T> {
    /// The approved call.
    pub fn call(&self) -> &T {
        &self.call
    }

    /// The same approval for the call's validated form (the executor re-validates the
    /// approved arguments and runs the result).
    pub(crate) fn rebind<V>(&self, call: V) -> Approved<V> {
        Approved {
            call,
            approver: self.approver.clone(),
            signature: self.signature.clone(),
        }
    }
}

/// Parses a hex Ed25519 public key.
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes = hex::decode(text.trim()).map_err(|_| "not hex")?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "an Ed25519 public key is 32 bytes (64 hex digits)".to_owned())?;
    VerifyingKey::from_bytes(&arr).map_err(|e| format!("invalid public key: {e}"))
}

/// Parses a hex Ed25519 private key (32 bytes).
pub fn parse_private_key(text: &str) -> Result<SigningKey, String> {
    let bytes = hex::decode(text.trim()).map_err(|_| "not hex")?;
    let arr: [u8; 32] = bytes
        .try_into()
        .map_err(|_| "an Ed25519 private key is 32 bytes (64 hex digits)".to_owned())?;
    Ok(SigningKey::from_bytes(&arr))
}

/// Checks a decision: the approver exists and may decide on the tool, the request has not
/// expired at `now_ms`, and the signature verifies (strictly) over `message`. With
/// `Decision::Approve`, returns the proof the executor requires.
pub fn verify_decision<T>(
    approvers: &BTreeMap<String, Approver>,
    approver: &str,
    message: &DecisionMessage,
    signature_hex: &str,
    now_ms: i64,
    call: T,
) -> Result<Approved<T>, DecisionError> {
    let a = approver_for(approvers, approver, &message.tool)?;
    if now_ms >= message.expires_at_ms {
        return Err(DecisionError::Expired);
    }
    check_signature(a, &message.bytes(), signature_hex)?;
    Ok(Approved {
        call,
        approver: approver.to_owned(),
        signature: signature_hex.trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn setup() -> (SigningKey, BTreeMap<String, Approver>, DecisionMessage) {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut approvers = BTreeMap::new();
        approvers.insert(
            "alice".to_string(),
            Approver {
                key: key.verifying_key(),
                tools: vec!["sql_execute".into()],
            },
        );
        let message = DecisionMessage {
            approval_id: "apr_1".into(),
            agent_id: "ops/x".into(),
            tool: "sql_execute".into(),
            arguments_sha256: arguments_sha256(
                &json!({"sql": "UPDATE orders SET s = 1 WHERE id = 452", "database": "shop"}),
            ),
            decision: Decision::Approve,
            expires_at_ms: 10_000,
        };
        (key, approvers, message)
    }

    #[test]
    fn canonical_json_ignores_key_order_and_whitespace() {
        assert_eq!(
            arguments_sha256(&json!({"b": 1, "a": [1, 2]})),
            arguments_sha256(&serde_json::from_str::<Value>("{ \"a\": [1,2], \"b\": 1 }").unwrap())
        );
        assert_eq!(
            canonical_json(&json!({"b": 1.0, "a": "x"})),
            r#"{"a":"x","b":1}"#
        );
    }

    #[test]
    fn a_signature_binds_every_field() {
        let (key, approvers, message) = setup();
        let sig = message.sign(&key);
        assert!(verify_decision(&approvers, "alice", &message, &sig, 5, ()).is_ok());
        let changes: Vec<DecisionMessage> = vec![
            DecisionMessage {
                approval_id: "apr_2".into(),
                ..message.clone()
            },
            DecisionMessage {
                agent_id: "ops/y".into(),
                ..message.clone()
            },
            DecisionMessage {
                arguments_sha256: arguments_sha256(
                    &json!({"sql": "DELETE FROM orders WHERE id = 1"}),
                ),
                ..message.clone()
            },
            DecisionMessage {
                decision: Decision::Deny,
                ..message.clone()
            },
            DecisionMessage {
                expires_at_ms: 20_000,
                ..message.clone()
            },
        ];
        for changed in changes {
            assert_eq!(
                verify_decision(&approvers, "alice", &changed, &sig, 5, ()).unwrap_err(),
                DecisionError::BadSignature,
                "{changed:?}"
            );
        }
    }

    #[test]
    fn approvers_rights_and_expiry_are_checked() {
        let (key, mut approvers, message) = setup();
        let sig = message.sign(&key);
        assert!(matches!(
            verify_decision(&approvers, "mallory", &message, &sig, 5, ()),
            Err(DecisionError::UnknownApprover(_))
        ));
        assert_eq!(
            verify_decision(&approvers, "alice", &message, &sig, 10_000, ()).unwrap_err(),
            DecisionError::Expired
        );
        let other = SigningKey::from_bytes(&[9; 32]);
        assert_eq!(
            verify_decision(&approvers, "alice", &message, &message.sign(&other), 5, ())
                .unwrap_err(),
            DecisionError::BadSignature
        );
        approvers.get_mut("alice").unwrap().tools = vec!["http_request".into()];
        assert!(matches!(
            verify_decision(&approvers, "alice", &message, &sig, 5, ()),
            Err(DecisionError::NotAllowed { .. })
        ));
    }

    #[test]
    fn integers_beyond_two_to_the_53_are_found_and_others_pass() {
        // Two argument sets that RFC 8785 would sign alike.
        let a: Value = serde_json::from_str(r#"{"order_id": 9007199254740993}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"order_id": 9007199254740992}"#).unwrap();
        assert_eq!(arguments_sha256(&a), arguments_sha256(&b));
        assert_eq!(inexact_number(&a).as_deref(), Some("/order_id"));
        assert_eq!(inexact_number(&b), None);
        let deep: Value =
            serde_json::from_str(r#"{"x": [1, {"a/b": -9007199254740993}]}"#).unwrap();
        assert_eq!(inexact_number(&deep).as_deref(), Some("/x/1/a~1b"));
        let fine = json!({"n": 9007199254740992u64, "m": -9007199254740992i64, "f": 0.1, "s": "9007199254740993"});
        assert_eq!(inexact_number(&fine), None);
        for text in [
            r#"{"n": 9007199254740993.0}"#,
            r#"{"n": 9.007199254740993e15}"#,
            r#"{"n": -1e300}"#,
        ] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(inexact_number(&v).as_deref(), Some("/n"), "{text}");
        }
    }

    #[test]
    fn a_resolution_binds_its_outcome_and_note() {
        let (key, approvers, m) = setup();
        let r = ResolutionMessage {
            approval_id: m.approval_id.clone(),
            agent_id: m.agent_id.clone(),
            tool: m.tool.clone(),
            arguments_sha256: m.arguments_sha256.clone(),
            succeeded: true,
            note: "checked the table: row 452 is cancelled".into(),
        };
        let sig = r.sign(&key);
        assert_eq!(verify_resolution(&approvers, "alice", &r, &sig), Ok(()));
        let flipped = ResolutionMessage {
            succeeded: false,
            ..r.clone()
        };
        assert_eq!(
            verify_resolution(&approvers, "alice", &flipped, &sig),
            Err(DecisionError::BadSignature)
        );
        let renoted = ResolutionMessage {
            note: "other".into(),
            ..r.clone()
        };
        assert_eq!(
            verify_resolution(&approvers, "alice", &renoted, &sig),
            Err(DecisionError::BadSignature)
        );
        // A decision's signature is not a resolution's.
        assert_eq!(
            verify_resolution(&approvers, "alice", &r, &m.sign(&key)),
            Err(DecisionError::BadSignature)
        );
    }
}
