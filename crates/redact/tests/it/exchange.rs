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

// ---- The whole body is walked: every string and key a provider receives is scanned. ----

const EMAIL: &str = "jane.doe@example.com";
const CARD: &str = "4111 1111 1111 1111";
/// A text holding both: what each newly covered field is given.
const SECRET: &str = "mail jane.doe@example.com, card 4111 1111 1111 1111";

/// The raw forms that must not remain anywhere in a redacted body.
fn raw_forms() -> Vec<String> {
    vec![
        EMAIL.into(),
        CARD.into(),
        CARD.replace(' ', ""),
        "jane.doe%40example.com".into(),
        b64(SECRET.as_bytes()),
    ]
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes what the walk sent as base64, leniently: characters outside the alphabet and
/// padding are skipped, a dangling last character is dropped.
fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::RequireNone)
            .with_decode_allow_trailing_bits(true),
    );
    let mut digits: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '/')
        .collect();
    if digits.len() % 4 == 1 {
        digits.pop();
    }
    LENIENT.decode(digits).unwrap_or_default()
}

/// A chat body: one user message, and `extra`'s fields.
fn chat_with(extra: Value) -> Value {
    let mut body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// Where a routing field or protocol word sits in `v`: (JSON pointer, value).
fn routing_values(v: &Value, at: &str, out: &mut Vec<(String, Value)>) {
    const ROUTING: &[&str] = &[
        "model",
        "role",
        "type",
        "tool_choice",
        "reasoning_effort",
        "service_tier",
        "format",
        "detail",
        "voice",
        "modalities",
        "encoding_format",
    ];
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let here = format!("{at}/{k}");
                if ROUTING.contains(&k.as_str()) && !x.is_object() {
                    out.push((here.clone(), x.clone()));
                }
                routing_values(x, &here, out);
            }
        }
        Value::Array(items) => {
            for (i, x) in items.iter().enumerate() {
                routing_values(x, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn has_raw(text: &str) -> bool {
    raw_forms().iter().any(|raw| text.contains(raw))
}

/// The text of `v` as a provider reads it: `data:` URL payloads decoded.
fn visible(v: &Value) -> String {
    let mut out = String::new();
    collect_visible(v, &mut out);
    out
}

fn collect_visible(v: &Value, out: &mut String) {
    match v {
        Value::String(s) => add_visible(s, out),
        Value::Array(items) => items.iter().for_each(|i| collect_visible(i, out)),
        Value::Object(m) => {
            for (k, x) in m {
                add_visible(k, out);
                collect_visible(x, out);
            }
        }
        _ => {}
    }
}

fn add_visible(s: &str, out: &mut String) {
    out.push_str(s);
    out.push(' ');
    if let Some((head, payload)) = s.split_once(',').filter(|_| s.starts_with("data:")) {
        if head.ends_with(";base64") {
            out.push_str(&String::from_utf8_lossy(&unb64(payload)));
        } else {
            out.push_str(&payload.replace("%3C", "<").replace("%3E", ">"));
        }
        out.push(' ');
    }
}

/// The placeholders in `text`, in order.
fn placeholders(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(lt) = rest.find('<') {
        rest = &rest[lt..];
        let end =
            rest[1..].find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'));
        match end {
            Some(e) if rest.as_bytes()[e + 1] == b'>' && rest[1..=e].contains('_') => {
                out.push(rest[..e + 2].to_owned());
                rest = &rest[e + 2..];
            }
            _ => rest = &rest[1..],
        }
    }
    out
}

/// Redacts `body` (chat or embeddings), checks that no raw value remains anywhere in it, that
/// routing fields are unchanged, and that an answer echoing its placeholders gets the client's
/// values back. Returns the redacted body.
fn hides(body: Value, embeddings: bool) -> Value {
    let r = redactor(Policy::default(), true);
    let mut x = r.exchange("k");
    let out = if embeddings {
        x.embeddings_request(obj(body.clone()))
    } else {
        x.chat_request(obj(body.clone()))
    };
    let out = Value::Object(out.unwrap().into_inner());
    let text = out.to_string();
    for raw in raw_forms() {
        assert!(!text.contains(&raw), "{raw} left in {text}");
    }
    let mut before = Vec::new();
    routing_values(&body, "", &mut before);
    for (at, v) in before.into_iter().filter(|(_, v)| !has_raw(&v.to_string())) {
        assert_eq!(
            out.pointer(&at),
            Some(&v),
            "routing field {at} changed: {text}"
        );
    }
    let echoed = placeholders(&visible(&out)).join(" ");
    assert!(!echoed.is_empty(), "nothing masked: {text}");
    let answer =
        json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": echoed}}]});
    let back: Value =
        serde_json::from_slice(&x.chat_answer(answer.to_string().as_bytes()).unwrap()).unwrap();
    let content = back["choices"][0]["message"]["content"].as_str().unwrap();
    if echoed.contains("<EMAIL_") {
        assert!(content.contains(EMAIL), "{content}");
    }
    if echoed.contains("<CREDIT_CARD_") {
        assert!(
            content.contains(CARD) || content.contains(&CARD.replace(' ', "")),
            "{content}"
        );
    }
    out
}

fn tool(function: Value) -> Value {
    json!({"tool_choice": "auto", "tools": [{"type": "function", "function": function}]})
}

#[test]
fn tool_and_function_descriptions_are_masked() {
    let out = hides(
        chat_with(tool(json!({"name": "lookup", "description": SECRET,
            "parameters": {"type": "object", "properties": {"q": {"type": "string", "description": SECRET}}}}))),
        false,
    );
    assert_eq!(out["tools"][0]["function"]["name"], "lookup");
    assert_eq!(
        out["tools"][0]["function"]["parameters"]["properties"]["q"]["type"],
        "string"
    );
}

#[test]
fn parameter_defaults_and_enums_are_masked() {
    hides(
        chat_with(tool(
            json!({"name": "send", "parameters": {"type": "object",
            "properties": {"to": {"type": "string", "default": EMAIL, "enum": [EMAIL, CARD]}},
            "required": ["to"]}}),
        )),
        false,
    );
}

#[test]
fn response_format_schemas_are_masked() {
    let out = hides(
        chat_with(
            json!({"response_format": {"type": "json_schema", "json_schema": {
            "name": "contact", "strict": true, "description": SECRET,
            "schema": {"type": "object", "properties": {"email": {"const": EMAIL, "examples": [CARD]}}}}}}),
        ),
        false,
    );
    assert_eq!(out["response_format"]["json_schema"]["strict"], true);
}

#[test]
fn prediction_content_is_masked_as_text_and_as_parts() {
    hides(
        chat_with(json!({"prediction": {"type": "content", "content": SECRET}})),
        false,
    );
    hides(
        chat_with(
            json!({"prediction": {"type": "content", "content": [{"type": "text", "text": SECRET}]}}),
        ),
        false,
    );
}

#[test]
fn the_user_field_is_masked_and_pure_numbers_are_scanned() {
    let out = hides(chat_with(json!({"user": EMAIL})), false);
    assert_eq!(out["user"], "<EMAIL_1>");
    // A string of digits alone can be a card: nothing skips it for being a number.
    let out = hides(chat_with(json!({"user": "4111111111111111"})), false);
    assert_eq!(out["user"], "<CREDIT_CARD_1>");
    let r = redactor(Policy::default(), true);
    let body = obj(chat_with(json!({"seed": 4111111111111111u64})));
    let out = r.exchange("k").chat_request(body.clone()).unwrap();
    assert_eq!(out.into_inner(), body, "numbers are not text");
}

#[test]
fn metadata_values_and_keys_are_masked() {
    let out = hides(
        chat_with(json!({"metadata": {"customer": EMAIL, EMAIL: "vip", "card": CARD}})),
        false,
    );
    let keys: Vec<&String> = out["metadata"].as_object().unwrap().keys().collect();
    assert!(keys.contains(&&"<EMAIL_1>".to_string()), "{keys:?}");
    assert_eq!(out["metadata"]["<EMAIL_1>"], "vip");
    assert_eq!(out["metadata"]["customer"], "<EMAIL_1>");
}

#[test]
fn stop_sequences_are_masked() {
    hides(chat_with(json!({"stop": [EMAIL, "\n\n"]})), false);
    hides(chat_with(json!({"stop": SECRET})), false);
}

#[test]
fn image_url_query_strings_are_masked() {
    let url = format!("https://img.example.com/a.png?u={EMAIL}&c=4111111111111111");
    let out = hides(
        chat_with(json!({"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": url, "detail": "high"}}]}]})),
        false,
    );
    let sent = out["messages"][0]["content"][0]["image_url"]["url"]
        .as_str()
        .unwrap();
    assert!(
        sent.starts_with("https://img.example.com/a.png?u=<EMAIL_1>"),
        "{sent}"
    );
}

#[test]
fn text_data_urls_are_decoded_masked_and_encoded_again() {
    for media in [
        "text/plain",
        "application/json",
        "text/csv;charset=utf-8",
        "",
    ] {
        let url = format!("data:{media};base64,{}", b64(SECRET.as_bytes()));
        let out = hides(
            chat_with(json!({"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": url}}]}]})),
            false,
        );
        let sent = out["messages"][0]["content"][0]["image_url"]["url"]
            .as_str()
            .unwrap();
        let (head, payload) = sent.split_once(";base64,").unwrap();
        assert_eq!(head, format!("data:{media}"));
        let decoded = String::from_utf8(unb64(payload)).unwrap();
        assert_eq!(decoded, "mail <EMAIL_1>, card <CREDIT_CARD_1>");
    }
    let url = "data:text/plain,mail%20jane.doe%40example.com%2C%20card%204111%201111%201111%201111";
    let out = hides(
        chat_with(json!({"prediction": {"type": "content", "content": url}})),
        false,
    );
    assert_eq!(
        out["prediction"]["content"],
        "data:text/plain,mail%20%3CEMAIL_1%3E,%20card%20%3CCREDIT_CARD_1%3E"
    );
}

#[test]
fn file_data_of_a_text_file_is_masked_and_its_name_too() {
    let file = json!({"type": "file", "file": {"filename": format!("{EMAIL} notes.txt"),
        "file_data": format!("data:text/plain;base64,{}", b64(SECRET.as_bytes()))}});
    let out = hides(
        chat_with(json!({"messages": [{"role": "user", "content": [file]}]})),
        false,
    );
    let f = &out["messages"][0]["content"][0]["file"];
    assert_eq!(f["filename"], "<EMAIL_1> notes.txt");
    let payload = f["file_data"].as_str().unwrap().split_once(',').unwrap().1;
    assert_eq!(unb64(payload), b"mail <EMAIL_1>, card <CREDIT_CARD_1>");
    // Raw base64 (no `data:` prefix) that decodes to text is text too.
    let audio = json!({"type": "input_audio", "input_audio": {"data": b64(SECRET.as_bytes()), "format": "wav"}});
    let r = redactor(Policy::default(), true);
    let body = chat_with(json!({"messages": [{"role": "user", "content": [audio]}]}));
    let out = r
        .exchange("k")
        .chat_request(obj(body))
        .unwrap()
        .into_inner();
    let data = out["messages"][0]["content"][0]["input_audio"]["data"]
        .as_str()
        .unwrap();
    assert_eq!(unb64(data), b"mail <EMAIL_1>, card <CREDIT_CARD_1>");
}

#[test]
fn binary_media_passes_as_it_came_but_its_header_is_scanned() {
    let png: Vec<u8> = [&[0x89u8, b'P', b'N', b'G', 13, 10, 26, 10][..], &[0xff; 40]].concat();
    let payload = b64(&png);
    let url = format!("data:image/png;name={EMAIL};base64,{payload}");
    let r = redactor(Policy::default(), true);
    let body = chat_with(json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}},
        {"type": "input_audio", "input_audio": {"data": payload, "format": "wav"}}]}]}));
    let out = r
        .exchange("k")
        .chat_request(obj(body))
        .unwrap()
        .into_inner();
    let parts = &out["messages"][0]["content"];
    assert_eq!(
        parts[0]["image_url"]["url"],
        format!("data:image/png;name=<EMAIL_1>;base64,{payload}")
    );
    assert_eq!(parts[1]["input_audio"]["data"], payload);
    // Text sent as "media" that is not base64 is scanned as text.
    let body = chat_with(json!({"messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{SECRET}")}}]}]}));
    hides(body, false);
}

#[test]
fn refusal_parts_are_masked() {
    hides(
        chat_with(json!({"messages": [{"role": "user", "content": "hi"},
            {"role": "assistant", "content": [{"type": "refusal", "refusal": SECRET}]}]})),
        false,
    );
}

#[test]
fn unknown_part_types_are_walked_entirely() {
    let part = json!({"type": "input_widget", "widget": {"label": SECRET, "rows": [{"cell": EMAIL}],
        "note": {"deeper": [[CARD]]}}});
    let out = hides(
        chat_with(
            json!({"messages": [{"role": "user", "content": [part]}], "x_vendor": {"k": SECRET}}),
        ),
        false,
    );
    assert_eq!(out["messages"][0]["content"][0]["type"], "input_widget");
}

#[test]
fn tool_call_arguments_given_as_an_object_are_masked() {
    hides(
        chat_with(json!({"messages": [{"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                "function": {"name": "pay", "arguments": {"to": EMAIL, "card": {"number": CARD}}}}]},
            {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "ok"}]}]})),
        false,
    );
}

#[test]
fn nested_embeddings_input_is_masked_and_token_ids_stay() {
    let out = hides(
        json!({"model": "text-embedding-3-small", "encoding_format": "float", "user": "u1",
            "input": [[SECRET, "plain"], [EMAIL]]}),
        true,
    );
    assert_eq!(out["input"][0][1], "plain");
    let ids = json!({"model": "e", "input": [[1, 2, 4111111111111111u64], [3]]});
    let r = redactor(Policy::default(), true);
    let out = r
        .exchange("k")
        .embeddings_request(obj(ids.clone()))
        .unwrap();
    assert_eq!(Value::Object(out.into_inner()), ids);
}

#[test]
fn unexpected_values_in_enum_fields_are_scanned_and_protocol_words_are_not() {
    let out = hides(
        chat_with(
            json!({"reasoning_effort": EMAIL, "service_tier": "flex", "modalities": ["text"]}),
        ),
        false,
    );
    assert_eq!(out["reasoning_effort"], "<EMAIL_1>");
    assert_eq!(out["service_tier"], "flex");
}

#[test]
fn placeholder_shaped_text_anywhere_in_the_body_is_reserved() {
    let r = redactor(Policy::default(), true);
    let mut x = r.exchange("k");
    let body = chat_with(
        json!({"messages": [{"role": "user", "content": format!("mail {EMAIL}")}],
        "metadata": {"template": "<EMAIL_1>"},
        "tools": [{"type": "function", "function": {"name": "f", "description": "uses <EMAIL_2>"}}]}),
    );
    let out = x.chat_request(obj(body)).unwrap().into_inner();
    assert_eq!(out["messages"][0]["content"], "mail <EMAIL_3>");
    let answer =
        json!({"choices": [{"index": 0, "message": {"content": "<EMAIL_1> <EMAIL_2> <EMAIL_3>"}}]});
    let v: Value =
        serde_json::from_slice(&x.chat_answer(answer.to_string().as_bytes()).unwrap()).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("<EMAIL_1> <EMAIL_2> {EMAIL}")
    );
}

#[test]
fn walking_is_charged_and_stays_linear() {
    let r = redactor(Policy::default(), true);
    let cost_of = |n: usize| {
        let items: Vec<Value> = (0..n)
            .map(|i| json!({"k": format!("v{i}"), "n": i}))
            .collect();
        let mut x = r.exchange("k");
        x.chat_request(obj(chat_with(json!({"metadata": {"rows": items}}))))
            .unwrap();
        x.request_cost()
    };
    let (small, big) = (cost_of(1_000), cost_of(8_000));
    assert!(big > small * 7 && big < small * 9, "{small} {big}");
    let bounded = r.with_max_cost(Some(small / 2));
    let items: Vec<Value> = (0..1_000).map(|i| json!({"k": format!("v{i}")})).collect();
    let refused = bounded
        .exchange("k")
        .chat_request(obj(chat_with(json!({"metadata": {"rows": items}}))));
    assert!(matches!(refused, Err(Refusal::TooComplex(_))));
}

// ---- Answers: every string of the message, whole or streamed. ----

#[test]
fn every_string_of_a_whole_answer_is_restored_and_new_secrets_masked() {
    let r = redactor(Policy::default(), true);
    let mut x = after_request(&r, &format!("mail {EMAIL}"));
    let key = "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R";
    let answer = json!({"choices": [{"index": 0, "message": {"role": "assistant",
        "content": null,
        "refusal": "I won't mail <EMAIL_1>",
        "reasoning_content": format!("user is <EMAIL_1>; key {key}"),
        "audio": {"id": "a1", "transcript": "to <EMAIL_1>", "data": b64(&[0xff, 0xfe, 0x00])},
        "function_call": {"name": "send", "arguments": "{\"to\":\"<EMAIL_1>\"}"},
        "tool_calls": [{"id": "t", "type": "function", "function": {"name": "send", "arguments": "{\"to\":\"<EMAIL_1>\"}"}}]}}]});
    let out: Value =
        serde_json::from_slice(&x.chat_answer(answer.to_string().as_bytes()).unwrap()).unwrap();
    let m = &out["choices"][0]["message"];
    assert_eq!(m["refusal"], format!("I won't mail {EMAIL}"));
    assert_eq!(
        m["reasoning_content"],
        format!("user is {EMAIL}; key <GITHUB_TOKEN_1>")
    );
    assert_eq!(m["audio"]["transcript"], format!("to {EMAIL}"));
    assert_eq!(
        m["audio"]["data"],
        answer["choices"][0]["message"]["audio"]["data"]
    );
    assert_eq!(
        m["function_call"]["arguments"],
        format!("{{\"to\":\"{EMAIL}\"}}")
    );
    assert_eq!(
        m["tool_calls"][0]["function"]["arguments"],
        format!("{{\"to\":\"{EMAIL}\"}}")
    );
    assert_eq!(m["role"], "assistant");
}

/// Streams `deltas` through `x` (the last with `finish_reason`), and returns the deltas sent.
fn stream(x: &mut warden_redact::Exchange, deltas: &[Value]) -> Vec<Value> {
    let mut sent = Vec::new();
    for (i, d) in deltas.iter().enumerate() {
        let finish = if i == deltas.len() - 1 {
            json!("stop")
        } else {
            Value::Null
        };
        let data =
            json!({"choices": [{"index": 0, "delta": d, "finish_reason": finish}]}).to_string();
        let out = x
            .chat_chunk(data.as_bytes())
            .map(|b| String::from_utf8(b).unwrap())
            .unwrap_or(data);
        let v: Value = serde_json::from_str(&out).unwrap();
        sent.push(v["choices"][0]["delta"].clone());
    }
    sent
}

fn joined(deltas: &[Value], pointer: &str) -> String {
    deltas
        .iter()
        .filter_map(|d| d.pointer(pointer)?.as_str())
        .collect()
}

#[test]
fn streamed_refusal_reasoning_and_transcript_are_each_held_and_restored() {
    let r = redactor(Policy::default(), true);
    let mut x = after_request(&r, &format!("mail {EMAIL}"));
    let sent = stream(
        &mut x,
        &[
            json!({"role": "assistant", "reasoning_content": "for <EMA", "refusal": "no <EM"}),
            json!({"reasoning_content": "IL_1> ok", "refusal": "AIL_1>", "audio": {"transcript": "hi <EMAIL"}}),
            json!({"content": "done", "audio": {"transcript": "_1"}}),
        ],
    );
    for d in &sent[..sent.len() - 1] {
        for p in [
            "/reasoning_content",
            "/refusal",
            "/audio/transcript",
            "/content",
        ] {
            let piece = d.pointer(p).and_then(Value::as_str).unwrap_or("");
            assert!(
                !piece.contains('<'),
                "partial placeholder sent at {p}: {piece}"
            );
        }
    }
    assert_eq!(
        joined(&sent, "/reasoning_content"),
        format!("for {EMAIL} ok")
    );
    assert_eq!(joined(&sent, "/refusal"), format!("no {EMAIL}"));
    assert_eq!(
        joined(&sent, "/audio/transcript"),
        "hi <EMAIL_1",
        "an unfinished one stays as it is"
    );
    assert_eq!(joined(&sent, "/content"), "done");
    assert_eq!(sent[0]["role"], "assistant");
    assert_eq!(x.chat_stream_end(), None);
}

#[test]
fn streamed_secrets_in_reasoning_are_masked_and_the_end_flushes_each_field() {
    let r = redactor(Policy::default(), true);
    let mut x = after_request(&r, &format!("mail {EMAIL}"));
    let mut sent = Vec::new();
    for d in [
        json!({"reasoning": "card 4111 1111"}),
        json!({"reasoning": " 1111 1111", "function_call": {"name": "f", "arguments": "{\"a\":\"<EMAIL_"}}),
        json!({"function_call": {"arguments": "1>\"}"}}),
    ] {
        let data =
            json!({"choices": [{"index": 0, "delta": d, "finish_reason": null}]}).to_string();
        let out = x
            .chat_chunk(data.as_bytes())
            .map(|b| String::from_utf8(b).unwrap())
            .unwrap_or(data);
        sent.push(serde_json::from_str::<Value>(&out).unwrap()["choices"][0]["delta"].clone());
    }
    let end: Value = serde_json::from_slice(&x.chat_stream_end().unwrap()).unwrap();
    sent.push(end["choices"][0]["delta"].clone());
    assert_eq!(joined(&sent, "/reasoning"), "card <CREDIT_CARD_1>");
    assert_eq!(
        joined(&sent, "/function_call/arguments"),
        format!("{{\"a\":\"{EMAIL}\"}}")
    );
}

// ---- Property: an email planted anywhere in a random body never survives. ----

mod planted {
    use super::*;
    use proptest::prelude::*;

    const PLANT: &str = "\u{1}plant";

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z]{1,6}",
            Just(PLANT.to_owned()),
            prop::sample::select(vec![
                "type",
                "role",
                "content",
                "data",
                "file_data",
                "arguments",
                "model",
                "url",
                "text",
                "input_audio",
                "file",
                "metadata"
            ])
            .prop_map(str::to_owned),
        ]
    }

    fn tree() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            any::<i64>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from),
            Just(Value::Null),
            "[a-z <>_]{0,8}".prop_map(Value::from),
            prop::sample::select(vec!["user", "auto", "text", "data:", "data:text/plain,"])
                .prop_map(Value::from),
            Just(Value::from(PLANT)),
        ];
        leaf.prop_recursive(5, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map(key(), inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// The forms a planted email takes.
    fn form(i: usize) -> String {
        match i % 6 {
            0 => EMAIL.to_owned(),
            1 => format!("write to {EMAIL} today"),
            2 => format!(
                "data:text/plain;base64,{}",
                b64(format!("to {EMAIL}").as_bytes())
            ),
            3 => "data:,to%20jane.doe%40example.com".to_owned(),
            4 => format!("data:application/json,{{\"to\":\"{EMAIL}\"}}"),
            _ => format!("https://x.example/?u={EMAIL}"),
        }
    }

    /// Replaces every plant (value or key) by a form of the email; whether any was planted.
    fn plant(v: &mut Value, n: &mut usize) {
        match v {
            Value::String(s) if s == PLANT => {
                *s = form(*n);
                *n += 1;
            }
            Value::Array(items) => items.iter_mut().for_each(|i| plant(i, n)),
            Value::Object(m) => {
                let old = std::mem::take(m);
                for (k, mut x) in old {
                    plant(&mut x, n);
                    let k = if k == PLANT {
                        *n += 1;
                        form(*n - 1)
                    } else {
                        k
                    };
                    m.insert(k, x);
                }
            }
            _ => {}
        }
    }

    fn leaks(text: &str) -> bool {
        text.contains(EMAIL)
            || text.contains("jane.doe%40example.com")
            || text.contains(&b64(format!("to {EMAIL}").as_bytes()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn a_planted_email_never_survives(mut t in tree(), at in 0usize..6) {
            let mut n = at;
            plant(&mut t, &mut n);
            let r = redactor(Policy::default(), true);
            let chat = json!({"model": "m", "messages": [{"role": "user", "content": form(at)}], "x": t});
            let out = r.exchange("k").chat_request(obj(chat)).unwrap().into_inner();
            let text = Value::Object(out).to_string();
            prop_assert!(!leaks(&text), "{}", text);
            let emb = json!({"model": "m", "input": [form(at + 1), t]});
            let out = r.exchange("k").embeddings_request(obj(emb)).unwrap().into_inner();
            let text = Value::Object(out).to_string();
            prop_assert!(!leaks(&text), "{}", text);
        }
    }
}
