//! Who may drive which agent (issue 13, point 1), through `warden serve`: a key drives only
//! the agent definitions it was given (none by default), on models it may use, up to its
//! agent cap; agent names are opaque ids; an agent belongs to the key that created it (and
//! to that key's rotations); admin keys act on any.

use crate::{KEYS_ENV, bin, two_provider_config};
use serde_json::{Value, json};
use warden_testkit::{MockUpstream, Reply, WardenProcess};

struct Access {
    a: MockUpstream,
    _b: MockUpstream,
    warden: WardenProcess,
    http: reqwest::Client,
}

/// Two definitions: `analyst` on model `fast`, `support` on model `other`; no tools.
async fn start(extra: &str) -> Access {
    let a = MockUpstream::start().await;
    let b = MockUpstream::start().await;
    let config = format!(
        r#"
[server]
key_cache_ttl = "0s"
{extra}
[models.other]
targets = [{{ provider = "primary", model = "big-a" }}]
[agents.analyst]
system_prompt = "You answer questions."
model = "fast"
[agents.support]
system_prompt = "You help customers."
model = "other"
"#
    );
    let warden = WardenProcess::start(&bin(), &two_provider_config(&a, &b, &config), &KEYS_ENV);
    Access {
        a,
        _b: b,
        warden,
        http: reqwest::Client::new(),
    }
}

impl Access {
    /// `POST /v1/agents/{path}/messages` with `key`: (status, body).
    async fn message(&self, key: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/v1/agents/{path}/messages", self.warden.url))
            .bearer_auth(key)
            .json(&json!({"content": "hello"}))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    async fn get(&self, key: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}/v1/agents/{path}", self.warden.url))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// Queues `n` plain answers on the mock model.
    fn answers(&self, n: usize) {
        self.a
            .push((0..n).map(|i| Reply::Text(format!("answer {i}"))));
    }
}

#[tokio::test]
async fn a_key_drives_only_the_agents_it_was_given() {
    let s = start("").await;
    // A new key is given no agents: refused before anything is created or spent, with the
    // same answer whether the definition exists or not (no enumeration).
    let bare = s.warden.create_key_exactly("bare", &[]);
    let (status, body) = s.message(&bare, "analyst/a1").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "agent_not_allowed");
    let (status, body) = s.message(&bare, "no-such-definition/a1").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "agent_not_allowed");
    // Streaming too: the refusal keeps its status (not a 200 stream with an error event).
    let r = s
        .http
        .post(format!("{}/v1/agents/analyst/a1/messages", s.warden.url))
        .bearer_auth(&bare)
        .json(&json!({"content": "hello", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "agent_not_allowed");
    assert_eq!(s.a.hits(), 0, "nothing reached the model");

    // A key given `analyst` drives analysts, not support agents.
    let analyst = s
        .warden
        .create_key_exactly("analyst-only", &["--agents", "analyst"]);
    s.answers(1);
    let (status, body) = s.message(&analyst, "analyst/a1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["answer"], "answer 0");
    let (status, body) = s.message(&analyst, "support/s1").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("agent_not_allowed"))
    );
    // With `*`, an unknown definition is a plain 404.
    let all = s.warden.create_key_exactly("all", &["--agents", "*"]);
    let (status, _) = s.message(&all, "no-such-definition/a1").await;
    assert_eq!(status, 404);

    // A name not among the configured definitions is refused by the CLI, naming them.
    let (code, _, err) = s
        .warden
        .cli(&["keys", "create", "--name", "typo", "--agents", "analsyt"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("analsyt") && err.contains("analyst, support"),
        "{err}"
    );

    // Taking the grant away refuses the key's own agent too (state, history, messages).
    let (code, _, err) = s
        .warden
        .cli(&["keys", "update", "analyst-only", "--agents", "support"]);
    assert_eq!(code, 0, "{err}");
    let (status, body) = s.get(&analyst, "analyst/a1").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("agent_not_allowed"))
    );
    let (status, _) = s.get(&analyst, "analyst/a1/history").await;
    assert_eq!(status, 403);
    // The grant change is in the audit trail's key events (`warden keys list` shows it).
    let (_, out, _) = s.warden.cli(&["keys", "list", "--json"]);
    let keys: Value = serde_json::from_str(&out).unwrap();
    let k = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "analyst-only")
        .unwrap();
    assert_eq!(k["agents"], json!(["support"]));
}

#[tokio::test]
async fn model_restrictions_apply_to_the_agents_model() {
    let s = start("").await;
    // Given both definitions, but only the model `fast` (by its alias, as keys name models).
    let key = s.warden.create_key_exactly(
        "quick-only",
        &["--agents", "analyst,support", "--models", "fast"],
    );
    s.answers(1);
    let (status, body) = s.message(&key, "analyst/a1").await;
    assert_eq!(status, 200, "{body}");
    let before = s.a.hits();
    let (status, body) = s.message(&key, "support/s1").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("model_not_allowed"))
    );
    assert!(body["error"]["message"].as_str().unwrap().contains("other"));
    assert_eq!(
        s.a.hits(),
        before,
        "the support agent's model was never called"
    );
}

#[tokio::test]
async fn a_key_owns_at_most_its_cap_of_agents() {
    let s = start("max_agents_per_key = 2").await;
    let key = s.warden.create_key_exactly("capped", &["--agents", "*"]);
    s.answers(4);
    assert_eq!(s.message(&key, "analyst/one").await.0, 200);
    assert_eq!(s.message(&key, "analyst/two").await.0, 200);
    let (status, body) = s.message(&key, "analyst/three").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "agent_limit_reached");
    // The existing ones still work, and the refused one was not created.
    assert_eq!(s.message(&key, "analyst/one").await.0, 200);
    let admin = s.warden.create_key_exactly("ops", &["--admin"]);
    assert_eq!(s.get(&admin, "analyst/three").await.0, 404);
    // A key's own cap overrides the server's.
    let roomy = s
        .warden
        .create_key_exactly("roomy", &["--agents", "*", "--max-agents", "3"]);
    s.answers(3);
    for name in ["r1", "r2", "r3"] {
        assert_eq!(s.message(&roomy, &format!("analyst/{name}")).await.0, 200);
    }
    let (status, _) = s.message(&roomy, "analyst/r4").await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn agent_names_are_opaque_ids() {
    let s = start("").await;
    let key = s.warden.create_key_exactly("names", &["--agents", "*"]);
    for bad in [
        "jane.doe%40corp.example",
        "jane%40corp",
        "415-555-0132",
        "123-45-6789",
        // Glued to a prefix the way ids are written (found by a red-team session).
        "cust_4111111111111111",
        "x4111111111111111",
        "4111_1111_1111_1111",
        "tel_415-555-0132",
        "tel415-555-0132",
        "a123-45-6789",
        "DE89370400440532013000x",
        &"x".repeat(65),
    ] {
        let (status, body) = s.message(&key, &format!("analyst/{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("opaque id"),
            "{body}"
        );
    }
    assert_eq!(s.a.hits(), 0);
    // Opaque ids stay usable: ticket numbers, UUIDs, user ids.
    s.answers(3);
    for good in [
        "ticket-4711_b",
        "550e8400-e29b-41d4-a716-446655440000",
        "u_8f3a2c",
    ] {
        let (status, body) = s.message(&key, &format!("analyst/{good}")).await;
        assert_eq!(status, 200, "{good}: {body}");
    }
}

#[tokio::test]
async fn an_agent_belongs_to_its_key_and_its_rotations_and_admins_act_on_any() {
    let s = start("").await;
    let owner = s
        .warden
        .create_key_exactly("owner", &["--agents", "analyst"]);
    let other = s
        .warden
        .create_key_exactly("other", &["--agents", "analyst"]);
    s.answers(3);
    assert_eq!(s.message(&owner, "analyst/mine").await.0, 200);
    let (status, body) = s.message(&other, "analyst/mine").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("agent_forbidden"))
    );
    for (route, body) in [
        ("messages", json!({"content": "mine now", "stream": true})),
        ("resume", json!({"stream": true})),
    ] {
        let r = s
            .http
            .post(format!("{}/v1/agents/analyst/mine/{route}", s.warden.url))
            .bearer_auth(&other)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{route}");
    }

    // A rotation keeps the agent (and the grants): the new key drives it.
    let (code, out, err) = s.warden.cli(&["keys", "rotate", "owner", "--grace", "0s"]);
    assert_eq!(code, 0, "{err}");
    let rotated = out.trim().to_owned();
    assert_eq!(s.message(&rotated, "analyst/mine").await.0, 200);
    let (status, _) = s.message(&owner, "analyst/mine").await;
    assert_eq!(status, 401, "the old key ended with the rotation");

    // An admin key reaches any agent of any definition, without a grant.
    let admin = s.warden.create_key_exactly("ops", &["--admin"]);
    let (status, body) = s.get(&admin, "analyst/mine").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.message(&admin, "analyst/mine").await.0, 200);
}
