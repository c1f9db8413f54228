//! The OpenAI shapes: which request fields are redacted, blocking, and restoration in whole
//! and streamed answers (content and tool-call arguments).

use serde_json::{Value, json};
use std::collections::HashMap;
use warden_redact::{Action, Detector, Policy, Redactor, Refusal};

fn redactor(policy: Policy, restore: bool) -> Redactor {
    Redactor::new(
        Detector::new(&[]).unwrap(),
        policy,
        HashMap::new(),
        restore,
        true,
    )
}

/// An exchange that has redacted one user message.
fn after_request(r: &Redactor, content: &str) -> warden_redact::Exchange {
    let mut x = r.exchange("k");
    x.chat_request(obj(
        json!({"messages": [{"role": "user", "content": content}]}),
    ))
    .unwrap();
    x
}

fn obj(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().unwrap().clone()
}

#[test]
fn every_content_field_of_a_chat_request_is_masked() {
    let r = redactor(Policy::default(), true);
    let mut x = r.exchange("any");
    let body = obj(json!({
        "model": "m",
        "messages": [
            {"role": "system", "content": "Support agent for jane@example.com"},
            {"role": "user", "name": "jane@example.com", "content": [
                {"type": "text", "text": "My card is 4111 1111 1111 1111"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
            ]},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "lookup", "arguments": "{\"ssn\":\"123-45-6789\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "Found key AKIAIOSFODNN7EXAMPLE"}
        ]
    }));
    let out = Value::Object(x.chat_request(body).unwrap().into_inner());
    let text = out.to_string();
    for secret in [
        "jane@example.com",
        "4111",
        "123-45-6789",
        "AKIAIOSFODNN7EXAMPLE",
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
    assert_eq!(out["messages"][0]["content"], "Support agent for <EMAIL_1>");
    assert_eq!(out["messages"][1]["name"], "<EMAIL_1>");
    assert_eq!(
        out["messages"][1]["content"][0]["text"],
        "My card is <CREDIT_CARD_1>"
    );
    assert_eq!(
        out["messages"][2]["tool_calls"][0]["function"]["arguments"],
        "{\"ssn\":\"<US_SSN_1>\"}"
    );
    assert_eq!(
        out["messages"][3]["content"],
        "Found key <AWS_ACCESS_KEY_1>"
    );
    assert_eq!(
        out["messages"][1]["content"][1]["image_url"]["url"],
        "https://example.com/a.png"
    );
    assert_eq!(
        x.summary().unwrap(),
        "AWS_ACCESS_KEY=1,CREDIT_CARD=1,EMAIL=2,US_SSN=1"
    );
}

#[test]
fn blocked_types_refuse_the_request_naming_types_not_values() {
    let policy = Policy::new(
        Action::Mask,
        HashMap::from([("CREDIT_CARD".into(), Action::Block)]),
    );
    let r = redactor(policy, true);
    let body = obj(
        json!({"model": "m", "messages": [{"role": "user", "content": "card 4111111111111111, mail a@example.com"}]}),
    );
    let Err(Refusal::Blocked(err)) = r.exchange("k").chat_request(body) else {
        panic!("not blocked");
    };
    assert_eq!(err.types, vec!["CREDIT_CARD"]);
    assert!(!err.to_string().contains("4111"));
}

#[test]
fn allowed_types_pass_and_embeddings_inputs_are_masked() {
    let policy = Policy::new(
        Action::Mask,
        HashMap::from([("EMAIL".into(), Action::Allow)]),
    );
    let r = redactor(policy, true);
    let body = obj(json!({"model": "e", "input": ["a@example.com", "call +1 415 555 0132"]}));
    let out = r
        .exchange("k")
        .embeddings_request(body)
        .unwrap()
        .into_inner();
    assert_eq!(out["input"], json!(["a@example.com", "call <PHONE_1>"]));
}

#[test]
fn whole_answers_are_restored_and_new_secrets_masked() {
    let r = redactor(Policy::default(), true);
    let mut x = r.exchange("k");
    let body = obj(
        json!({"model": "m", "messages": [{"role": "user", "content": "email jane@example.com"}]}),
    );
    x.chat_request(body).unwrap();
    let answer = json!({"choices": [{"index": 0, "message": {"role": "assistant",
        "content": "Sent to <EMAIL_1>. Use key ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R.",
        "tool_calls": [{"id": "t", "type": "function", "function": {"name": "send", "arguments": "{\"to\":\"<EMAIL_1>\"}"}}]}}]});
    let out: Value =
        serde_json::from_slice(&x.chat_answer(answer.to_string().as_bytes()).unwrap()).unwrap();
    assert_eq!(
        out["choices"][0]["message"]["content"],
        "Sent to jane@example.com. Use key <GITHUB_TOKEN_1>."
    );
    assert_eq!(
        out["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{\"to\":\"jane@example.com\"}"
    );
    assert_eq!(x.summary().unwrap(), "EMAIL=1,GITHUB_TOKEN=1");
}

#[test]
fn restoration_can_be_switched_off() {
    let r = redactor(Policy::default(), false);
    let mut x = after_request(&r, "jane@example.com");
    let answer = json!({"choices": [{"index": 0, "message": {"content": "Hi <EMAIL_1>"}}]});
    assert_eq!(
        x.chat_answer(answer.to_string().as_bytes()),
        None,
        "nothing to change"
    );
}

#[test]
fn streamed_placeholders_split_across_chunks_are_restored() {
    let r = redactor(Policy::default(), true);
    let mut x = after_request(&r, "mail jane@example.com");
    let pieces = ["Hello ", "<EM", "AIL_", "1>", ", how", " are you?"];
    let mut out = String::new();
    for (i, p) in pieces.iter().enumerate() {
        let finish = if i == pieces.len() - 1 {
            json!("stop")
        } else {
            Value::Null
        };
        let chunk =
            json!({"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": finish}]});
        let data = chunk.to_string();
        let sent = x
            .chat_chunk(data.as_bytes())
            .map(|b| String::from_utf8(b).unwrap())
            .unwrap_or(data);
        let v: Value = serde_json::from_str(&sent).unwrap();
        let piece = v["choices"][0]["delta"]["content"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            !piece.contains('<'),
            "a partial placeholder was sent: {piece:?}"
        );
        out.push_str(&piece);
    }
    assert_eq!(out, "Hello jane@example.com, how are you?");
    assert_eq!(x.chat_stream_end(), None);
}

#[test]
fn streamed_tool_arguments_are_restored_and_flushed_at_the_end() {
    let r = redactor(Policy::default(), true);
    let mut x = after_request(&r, "card 4111 1111 1111 1111");
    let mut args = String::new();
    for piece in ["{\"card\":\"<CRED", "IT_CARD_1>\"}"] {
        let chunk = json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}, "finish_reason": null}]});
        let data = chunk.to_string();
        let sent = x
            .chat_chunk(data.as_bytes())
            .map(|b| String::from_utf8(b).unwrap())
            .unwrap_or(data);
        let v: Value = serde_json::from_str(&sent).unwrap();
        args.push_str(
            v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap_or(""),
        );
    }
    // No finish_reason: the end of the stream releases what is held.
    if let Some(end) = x.chat_stream_end() {
        let v: Value = serde_json::from_slice(&end).unwrap();
        args.push_str(
            v["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                .as_str()
                .unwrap(),
        );
    }
    assert_eq!(args, "{\"card\":\"4111 1111 1111 1111\"}");
}

#[test]
fn text_the_client_wrote_like_a_placeholder_is_left_alone() {
    let r = redactor(Policy::default(), true);
    let mut x = r.exchange("k");
    let body = obj(json!({"messages": [
        {"role": "user", "content": "The template uses <EMAIL_1> literally."},
        {"role": "user", "content": "My mail is jane@example.com"}]}));
    let out = x.chat_request(body).unwrap().into_inner();
    assert_eq!(out["messages"][1]["content"], "My mail is <EMAIL_2>");
    let answer =
        json!({"choices": [{"index": 0, "message": {"content": "<EMAIL_1> vs <EMAIL_2>"}}]});
    let v: Value =
        serde_json::from_slice(&x.chat_answer(answer.to_string().as_bytes()).unwrap()).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "<EMAIL_1> vs jane@example.com"
    );
}

#[test]
fn free_texts_share_one_numbering_block_and_restore() {
    let r = redactor(Policy::default(), true);
    let mut x = r.exchange("agent");
    let a = x.redact_text("mail ann@example.com").unwrap();
    assert_eq!(a.get(), "mail <EMAIL_1>");
    let b = x
        .redact_text("rows: ann@example.com, bob@example.org")
        .unwrap();
    assert_eq!(b.get(), "rows: <EMAIL_1>, <EMAIL_2>");
    assert_eq!(
        x.restore_text("write to <EMAIL_2> and <EMAIL_1>"),
        "write to bob@example.org and ann@example.com"
    );
    let mut policy = HashMap::new();
    policy.insert("CREDIT_CARD".to_string(), Action::Block);
    let strict = redactor(Policy::new(Action::Mask, policy), true);
    let mut y = strict.exchange("agent");
    let Err(Refusal::Blocked(err)) = y.redact_text("card 4111 1111 1111 1111") else {
        panic!("not blocked");
    };
    assert_eq!(err.types, ["CREDIT_CARD"]);
    assert!(
        y.redact_text("nothing here").is_ok(),
        "only new findings block"
    );
    let off = redactor(Policy::default(), false);
    let mut z = off.exchange("agent");
    z.redact_text("ann@example.com").unwrap();
    assert_eq!(z.restore_text("<EMAIL_1>"), "<EMAIL_1>");
}

#[test]
fn an_empty_password_label_does_not_swallow_the_next_line() {
    let r = redactor(Policy::default(), true);
    let aws = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
    for (text, masked) in [
        (
            "password= \npassword= hunter2",
            "password= \npassword= <PASSWORD_1>",
        ),
        (
            "password=\npassword= hunter2",
            "password=\npassword= <PASSWORD_1>",
        ),
        (
            &format!("password=\naws_secret_access_key: {aws}") as &str,
            "password=\naws_secret_access_key: <AWS_SECRET_KEY_1>",
        ),
        (
            &format!("password=\naws_secret_access_key= {aws}"),
            "password=\naws_secret_access_key= <AWS_SECRET_KEY_1>",
        ),
        (
            &format!("password=\naws_secret_access_key = {aws}"),
            "password=\naws_secret_access_key = <AWS_SECRET_KEY_1>",
        ),
        ("password=\nSSN: 212 54 1234", "password=\nSSN: <US_SSN_1>"),
        ("password=\nSSN: 212-54-1234", "password=\nSSN: <US_SSN_1>"),
        (
            "user=bob password=\n\npwd= hunter2",
            "user=bob password=\n\npwd= <PASSWORD_1>",
        ),
        // Spaces and tabs around `=` on the same line are still a label's.
        ("password =\thunter2", "password =\t<PASSWORD_1>"),
        // The value is everything after the first `=`, whatever it holds.
        ("password=a=b", "password=<PASSWORD_1>"),
        ("passwd=a=b=c", "passwd=<PASSWORD_1>"),
        ("password=c2VjcmV0cGFzcw==", "password=<PASSWORD_1>"),
        (
            "password=hunter2\npassword=second",
            "password=<PASSWORD_1>\npassword=<PASSWORD_2>",
        ),
    ] {
        let mut x = r.exchange("k");
        assert_eq!(x.redact_text(text).unwrap().get(), masked, "{text:?}");
    }
}
