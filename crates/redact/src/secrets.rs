//! The built-in detectors of secrets: credentials and tokens in the formats their issuers
//! publish (with the issuer's checksum where the format has one), and values after the
//! labels that name a secret (`password=…`, `"api_key": "…"`, `Authorization: Bearer …`).
//!
//! Three kinds of pattern, in this order (a failed check tries the patterns after it at the
//! same place, so the patterns that never fail come first):
//!
//! 1. [`TOKENS`]: a distinctive prefix and shape; every match is the token unless it is a
//!    documentation placeholder ([`not_placeholder`]: `AKIAXXXXXXXXXXXXXXXX`), which a
//!    random token is with odds below one in ten billion (masking
//!    a look-alike costs little, missing a real token leaks it).
//! 2. Looser shapes a check confirms: a GitHub or npm token glued to a word (its CRC-32),
//!    label-and-value forms (AWS secret keys, Authorization headers, password labels).
//! 3. Unbounded bodies followed by code (`extend.rs`): private key blocks and JWTs.

use crate::extend::{self, Memo};
use crate::patterns::{Extend, Pattern, Search};
use crate::validate;
use regex_automata::meta::Regex;
use regex_automata::{Anchored, Input};
use std::ops::Range;
use std::sync::OnceLock;

/// Slack bot, user, workspace, refresh and legacy tokens (confirmed by [`slack`]).
const SLACK_TOKEN: (&str, &str) = ("SLACK_TOKEN", r"(?-u:\b)xox[abeoprs]-[A-Za-z0-9-]{10,250}");

/// Token formats with a distinctive prefix and shape: `(entity, regex)`. Every run before a
/// distinctive character is bounded (see `patterns::built_in`).
const TOKENS: &[(&str, &str)] = &[
    // AWS access key ids, every documented prefix (IAM unique-id prefixes and STS).
    (
        "AWS_ACCESS_KEY",
        r"(?-u:\b)(?:A3T[A-Z0-9]|AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|APKA|AROA|ASCA)[A-Z0-9]{16}(?-u:\b)",
    ),
    // AWS Bedrock API keys: long-term `ABSK` + base64 of `BedrockAPIKey-…`; short-term
    // `bedrock-api-key-` + base64 of a presigned `bedrock.amazonaws.com` URL.
    (
        "API_KEY",
        r"(?-u:\b)ABSK(?:QmVkcm9ja0FQSUtleS[A-Za-z0-9+/]{20,300}|[A-Za-z0-9+/]{100,300})={0,2}",
    ),
    (
        "API_KEY",
        r"(?-u:\b)bedrock-api-key-[A-Za-z0-9+/]{40}[A-Za-z0-9+/]*={0,2}",
    ),
    // 1Password account Secret Keys: version `A3`, the account's six characters, then 26
    // characters in groups of 6-5-5-5-5 (also seen without the second dash).
    (
        "API_KEY",
        r"(?-u:\b)A3-[A-Z0-9]{6}-[A-Z0-9]{6}-?[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}-[A-Z0-9]{5}(?-u:\b)",
    ),
    // OpenAI (project, service account, admin, user, legacy), Anthropic, OpenRouter.
    (
        "API_KEY",
        r"(?-u:\b)sk-(?:proj|svcacct|admin|None)-[A-Za-z0-9_-]{20,400}",
    ),
    (
        "API_KEY",
        r"(?-u:\b)sk-ant-[a-z]{3,6}[0-9]{2}-[A-Za-z0-9_-]{20,400}",
    ),
    ("API_KEY", r"(?-u:\b)sk-or-v1-[0-9a-f]{64}(?-u:\b)"),
    ("API_KEY", r"(?-u:\b)sk-[A-Za-z0-9]{20,200}(?-u:\b)"),
    // Hugging Face (user and organisation), Groq, xAI, Replicate, Perplexity, LangSmith,
    // NVIDIA.
    (
        "API_KEY",
        r"(?-u:\b)(?:hf_[A-Za-z0-9]{30,100}|api_org_[A-Za-z0-9]{30,40}|gsk_[A-Za-z0-9]{40,100}|xai-[A-Za-z0-9]{40,120}|r8_[A-Za-z0-9]{37}|pplx-[A-Za-z0-9]{40,60}|lsv2_(?:pt|sk)_[0-9a-f]{32}_[0-9a-f]{10})(?-u:\b)",
    ),
    ("API_KEY", r"(?-u:\b)nvapi-[A-Za-z0-9_-]{64}"),
    // Google: API keys, OAuth access tokens, OAuth client secrets, refresh tokens.
    ("GOOGLE_API_KEY", r"(?-u:\b)AIza[0-9A-Za-z_-]{35}"),
    ("GOOGLE_API_KEY", r"(?-u:\b)ya29\.[0-9A-Za-z_-]{20,}"),
    ("GOOGLE_API_KEY", r"(?-u:\b)GOCSPX-[0-9A-Za-z_-]{28}"),
    ("GOOGLE_API_KEY", r"(?-u:\b)1//0[0-9A-Za-z_-]{40,}"),
    // GitHub: classic, OAuth, user-to-server, server-to-server, refresh; fine-grained.
    (
        "GITHUB_TOKEN",
        r"(?-u:\b)(?:(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})(?-u:\b)",
    ),
    // GitLab: every `gl…-` token prefix (routable ones end in `.` and nine characters), and
    // runner registration tokens.
    (
        "GITLAB_TOKEN",
        r"(?-u:\b)gl(?:pat|dt|ft|rt|ptt|imt|soat|ffct|agent|oas|cbt|wt)-[A-Za-z0-9_-]{20,300}(?:\.[0-9a-z]{9}(?-u:\b))?",
    ),
    ("GITLAB_TOKEN", r"(?-u:\b)GR1348941[A-Za-z0-9_-]{20}"),
    // npm, PyPI (macaroons for pypi.org and test.pypi.org).
    ("API_KEY", r"(?-u:\b)npm_[A-Za-z0-9]{36}(?-u:\b)"),
    (
        "API_KEY",
        r"(?-u:\b)pypi-AgE(?:IcHlwaS5vcmc|NdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{50,}",
    ),
    // Slack: bot, user, app, workspace, legacy and refresh tokens; configuration tokens;
    // app-level tokens; incoming and workflow webhooks.
    (SLACK_TOKEN.0, SLACK_TOKEN.1),
    (
        "SLACK_TOKEN",
        r"(?-u:\b)xoxe\.xox[bp]-[0-9]-[A-Za-z0-9]{100,300}",
    ),
    ("SLACK_TOKEN", r"(?-u:\b)xapp-[0-9]-[A-Za-z0-9-]{30,250}"),
    (
        "SLACK_TOKEN",
        r"(?:https?://)?hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9/+]{20,250}",
    ),
    // Stripe: secret, restricted and live publishable keys; webhook signing secrets.
    (
        "STRIPE_KEY",
        r"(?-u:\b)(?:(?:sk|rk)_(?:live|test)|pk_live)_[A-Za-z0-9]{16,200}(?-u:\b)",
    ),
    ("STRIPE_KEY", r"(?-u:\b)whsec_[A-Za-z0-9+/=]{32,100}"),
    // Twilio API key SIDs, SendGrid, Postman (Mailgun keys: after a label, below).
    ("API_KEY", r"(?-u:\b)SK[0-9a-f]{32}(?-u:\b)"),
    (
        "API_KEY",
        r"(?-u:\b)SG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}",
    ),
    ("API_KEY", r"(?-u:\b)PMAK-[a-f0-9]{24}-[a-f0-9]{34}(?-u:\b)"),
    // Shopify, Square, Dropbox (short-lived access tokens).
    (
        "API_KEY",
        r"(?-u:\b)shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}(?-u:\b)",
    ),
    (
        "API_KEY",
        r"(?-u:\b)(?:EAAA[A-Za-z0-9_-]{60,300}|sq0atp-[A-Za-z0-9_-]{22}|sq0csp-[A-Za-z0-9_-]{43})",
    ),
    (
        "API_KEY",
        r"(?-u:\b)sl\.(?:[A-Za-z]\.)?[A-Za-z0-9_=-]{130}[A-Za-z0-9_=-]*",
    ),
    // DigitalOcean, Databricks, HashiCorp Vault, Doppler, Heroku.
    ("API_KEY", r"(?-u:\b)do[opr]_v1_[a-f0-9]{64}(?-u:\b)"),
    ("API_KEY", r"(?-u:\b)dapi[a-f0-9]{32}(?:-[0-9]+)?(?-u:\b)"),
    ("API_KEY", r"(?-u:\b)hv[sbr]\.[A-Za-z0-9_-]{24,300}"),
    (
        "API_KEY",
        r"(?-u:\b)dp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9_.-]{40,128}",
    ),
    ("API_KEY", r"(?-u:\b)HRKU-[A-Za-z0-9_-]{58,62}"),
    // Linear, Atlassian (API tokens, Bitbucket app passwords), Notion, Airtable, New Relic.
    (
        "API_KEY",
        r"(?-u:\b)lin_(?:api_[A-Za-z0-9]{40}|oauth_[a-f0-9]{64})(?-u:\b)",
    ),
    ("API_KEY", r"(?-u:\b)AT(?:ATT|CTT)3[A-Za-z0-9_=-]{100,300}"),
    ("API_KEY", r"(?-u:\b)ATBB[A-Za-z0-9_=.-]{32,40}"),
    (
        "API_KEY",
        r"(?-u:\b)(?:secret_[A-Za-z0-9]{43}|ntn_[A-Za-z0-9]{46}|pat[A-Za-z0-9]{14}\.[a-f0-9]{64}|NRAK-[A-Z0-9]{27})(?-u:\b)",
    ),
    // Discord bot tokens (base64 of the bot's id, a timestamp, an HMAC), Telegram bot tokens.
    (
        "API_KEY",
        r"(?-u:\b)[MNO][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}",
    ),
    ("API_KEY", r"(?-u:\b)[0-9]{5,16}:A[A-Za-z0-9_-]{34}"),
    // Grafana, Sentry, Supabase, 1Password service accounts, Mapbox secret tokens, Fly.io,
    // Cloudflare origin CA keys.
    (
        "API_KEY",
        r"(?-u:\b)(?:glc_[A-Za-z0-9+/]{32,400}={0,2}|glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}(?-u:\b))",
    ),
    ("API_KEY", r"(?-u:\b)sntry[su]_[A-Za-z0-9+/=_-]{40,}"),
    (
        "API_KEY",
        r"(?-u:\b)(?:sbp_[a-f0-9]{40}(?-u:\b)|sb_secret_[A-Za-z0-9_-]{20,})",
    ),
    ("API_KEY", r"(?-u:\b)ops_eyJ[A-Za-z0-9+/=_-]{100,}"),
    (
        "API_KEY",
        r"(?-u:\b)sk\.eyJ[A-Za-z0-9_-]{20,300}\.[A-Za-z0-9_-]{20,}",
    ),
    ("API_KEY", r"(?-u:\b)fo1_[A-Za-z0-9_-]{43}"),
    (
        "API_KEY",
        r"(?-u:\b)v1\.0-[a-f0-9]{24}-[a-f0-9]{146}(?-u:\b)",
    ),
    // age secret keys (Bech32).
    (
        "PRIVATE_KEY",
        r"(?-u:\b)AGE-SECRET-KEY-1[0-9A-Z]{58}(?-u:\b)",
    ),
];

/// The words a label naming a secret ends with, in lower case.
const LABEL_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "passcode",
    "pwd",
    "secret",
    "token",
];

/// Two-word labels ending with `key`: `api_key`, `api-key`, `apikey`, `apiKey`… (few, and
/// none that starts like a common word: each is a literal the engine looks for first).
const LABEL_KEYS: &[&str] = &["api", "secret", "private"];

/// The options of a command line that take a secret (`--password hunter2`).
const LABEL_OPTIONS: &str =
    "password|passwd|pass|token|secret|api-key|apikey|access-token|auth-token|client-secret";

/// A quoted value, to its closing quote.
const QUOTED: &str = r#"\\?"[^"\r\n]{3,}?\\?"|\\?'[^'\r\n]{3,}?\\?'"#;
/// A quoted value without its closing quote, to the end of the line.
const UNCLOSED: &str = r#"\\?"[^"\r\n]{3,}|\\?'[^'\r\n]{3,}"#;
/// A bare value, and the first letter of a word after it, which tells prose from
/// configuration.
const BARE: &str = r#"[^\s"'`;&,<>\\]{3,}(?:[ \t]+[A-Za-z])?"#;

/// `word`, `WORD` and `Word`.
fn cased(word: &str) -> [String; 3] {
    let mut capital = word.to_owned();
    capital[..1].make_ascii_uppercase();
    [word.to_owned(), word.to_ascii_uppercase(), capital]
}

/// The label names: each word and key label in lower, upper and capitalised case (so that
/// the engine can look for their literals first; mixed case such as `dbPassword` or
/// `DB_PASSWORD` ends with one of them), and `pass` after `_`, `-` or `.` (`db_pass`; alone it
/// is a test count).
fn label_names() -> String {
    let mut names: Vec<String> = LABEL_WORDS.iter().flat_map(|w| cased(w)).collect();
    for first in LABEL_KEYS {
        let [lower, upper, capital] = cased(first);
        names.push(format!("{lower}[_-]?key|{lower}Key"));
        names.push(format!("{upper}[_-]?KEY"));
        names.push(format!("{capital}[_-]?Key"));
    }
    names.push("[_.-](?:pass|PASS|Pass)".to_owned());
    names.join("|")
}

/// A label naming a secret, its separator and its value (see [`label_value`]): the label
/// ends with one of [`label_names`] (not `access_key`, which names an id, and an AWS
/// secret's label is the AWS pattern's to judge), perhaps with `_confirm` or a digit; then
/// `=`, `:`, `=>`, `:=` or `==` with spaces or tabs around it (never a line break: an empty
/// value must not take the next line's), or `,` between a quoted label and a quoted value
/// (`define('DB_PASSWORD', '…')`), or a space after a `--` option; then the value: quoted
/// (to its closing quote, or the end of the line) or bare (to white space, a quote, `;`,
/// `&`, `,`, `<`, `>` or `\`).
fn label_regex() -> &'static str {
    static REGEX: OnceLock<String> = OnceLock::new();
    REGEX.get_or_init(|| {
        format!(
            r#"--(?:{LABEL_OPTIONS})[ \t]+(?:{QUOTED}|{BARE})|(?:{names})(?:[_-]?(?i:confirm(?:ation)?)|[0-9])?(?:(?:\\?["'])?\]?[ \t]{{0,8}}(?:=>|:=|==|=|:)[ \t]{{0,8}}(?:{QUOTED}|{UNCLOSED}|{BARE})|\\?["'][ \t]*,[ \t]*(?:{QUOTED}))"#,
            names = label_names()
        )
    })
}

/// The secret patterns, most specific first: tokens, then checked shapes, then followed
/// bodies.
pub fn patterns() -> Vec<Pattern> {
    let mut all: Vec<Pattern> = TOKENS
        .iter()
        .map(|&(entity, regex)| {
            let check = match regex {
                r if r == SLACK_TOKEN.1 => slack,
                r if r.contains("://") || r.contains(r"hooks\.") => whole,
                _ => not_placeholder,
            };
            Pattern::checked(entity, regex, Some(check))
        })
        .collect();
    all.extend(checked());
    all.extend(followed());
    all
}

/// A token unless it is a placeholder: a run of eight or more of one character other than a
/// digit (`xxxxxxxx`, `XXXX…`, `aaaa…`; numeric ids such as `31111111111` are real). (AWS's documented `…EXAMPLE` keys stay masked: the public
/// sources disagree on them, and masking costs nothing.)
/// A random token of 40 base62 characters holds such a run with odds of about 1 in 10^11.
fn not_placeholder(text: &str) -> Option<Range<usize>> {
    let b = text.as_bytes();
    let mut run = 1;
    for w in b.windows(2) {
        run = if w[0] == w[1] && !w[0].is_ascii_digit() {
            run + 1
        } else {
            1
        };
        if run >= 8 {
            return None;
        }
    }
    Some(0..text.len())
}

/// The whole match (webhook URLs: their path is the secret, placeholder or not).
fn whole(text: &str) -> Option<Range<usize>> {
    Some(0..text.len())
}

/// A Slack token (`xoxb-`, `xoxp-`, `xoxa-`, `xoxr-`, `xoxs-`, `xoxo-`, `xoxe-` and a body):
/// every published kind carries numeric team and user ids, so the body (without trailing
/// dashes) holds at least 20 characters and 8 digits; not a placeholder.
fn slack(text: &str) -> Option<Range<usize>> {
    let end = text.trim_end_matches('-').len();
    let body = &text[5..end];
    let digits = body.bytes().filter(u8::is_ascii_digit).count();
    (body.len() >= 20 && digits >= 8).then_some(0..end)?;
    not_placeholder(&text[..end])
}

/// Looser shapes a check confirms, and values after labels.
fn checked() -> Vec<Pattern> {
    vec![
        Pattern::checked(
            "AWS_SECRET_KEY",
            r#"(?i:aws[_.-]?secret[_.-]?(?:access[_.-]?)?key|secret[_.-]?access[_.-]?key|aws[_.-]?secret)(?:\\?["'])?\]?(?:[ \t]{0,8}(?:=>|:=|[:=])[ \t\r\n]{0,16}|[ \t]{1,8})\\?["']?[A-Za-z0-9/+]{40}(?:[^A-Za-z0-9/+=]|$)"#,
            Some(aws_secret),
        ),
        // `sk-` and a body with dashes: a key if it holds digits (CSS classes do not).
        Pattern::checked(
            "API_KEY",
            r"(?-u:\b)sk-[A-Za-z0-9_-]{20,200}",
            Some(loose_sk),
        ),
        // Tokens glued to a word: their CRC-32 confirms them.
        Pattern::checked(
            "GITHUB_TOKEN",
            r"(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36}",
            Some(crc_token),
        ),
        Pattern::checked("API_KEY", r"npm_[A-Za-z0-9]{36}", Some(crc_token)),
        Pattern::checked(
            "API_KEY",
            r#"(?-u:\b)(?:(?i:bearer)|(?i:authorization)\\?["']?[ \t]*[:=][ \t]*\\?["']?(?i:token))[ \t]+[A-Za-z0-9._~+/_-]{16,}=*"#,
            Some(bearer),
        ),
        Pattern::checked(
            "PASSWORD",
            r"(?-u:\b)(?i:basic)[ \t]+[A-Za-z0-9+/]{8,}={0,2}",
            Some(basic_auth),
        ),
        Pattern::checked(
            "API_KEY",
            r#"(?i:(?:twilio[_-]?)?account[_-]?sid|twilio[_-]?sid)(?:\\?["'])?[ \t]{0,8}(?:=>|:=|[:=])[ \t]{0,8}\\?["']?AC[0-9a-f]{32}(?-u:\b)"#,
            Some(trailing_token::<34>),
        ),
        Pattern::checked(
            "API_KEY",
            r"(?i:mailgun)[^\r\n]{0,64}?(?-u:\b)key-[0-9a-f]{32}(?-u:\b)",
            Some(trailing_token::<36>),
        ),
        Pattern::checked(
            "API_KEY",
            r"(?i:AccountKey|SharedAccessKey)[ \t]*=[ \t]*[A-Za-z0-9+/]{40,100}={0,2}",
            Some(validate::value_after_label),
        ),
        Pattern::checked(
            "PASSWORD",
            r"<(?i:password|passwd|pwd|secret|token|api[_-]?key|apikey|client[_-]?secret|access[_-]?token)>[^<\r\n]{3,256}</",
            Some(xml_value),
        ),
        Pattern {
            entity: "PASSWORD",
            regex: r"(?-u:\b)[A-Za-z][A-Za-z0-9+.-]{0,20}://[^\s:/@]{1,128}:[^\s@/]{1,128}@",
            check: Some(validate::url_password),
            veto: None,
            extend: None,
            context: None,
            search: Search::Alone,
        },
        Pattern {
            entity: "PASSWORD",
            regex: label_regex(),
            check: Some(label_value),
            veto: None,
            extend: None,
            context: None,
            search: Search::Alone,
        },
    ]
}

/// Openings whose unbounded body code follows (`extend.rs`).
fn followed() -> Vec<Pattern> {
    vec![
        Pattern {
            entity: "PRIVATE_KEY",
            regex: r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
            check: None,
            veto: None,
            extend: Some(Extend::PrivateKey),
            context: None,
            search: Search::Together,
        },
        Pattern {
            entity: "JWT",
            regex: r"(?-u:\b)eyJ[A-Za-z0-9_-]{5}",
            check: None,
            veto: None,
            extend: Some(Extend::Jwt),
            context: None,
            search: Search::Together,
        },
    ]
}

fn aws_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'/' || c == b'+'
}

/// An AWS secret access key after its label: the 40 base64 characters before the character
/// that ends the match (a trailing `+` or `/` defeats a word boundary, so the pattern takes
/// one character past the key), after any separator (`=`, `:`, `=>`, `:=`, a space).
fn aws_secret(text: &str) -> Option<Range<usize>> {
    let b = text.as_bytes();
    let end = b.len() - b.iter().rev().take_while(|c| !aws_key_char(**c)).count();
    let start = end.checked_sub(40)?;
    (b[start..end].iter().all(|c| aws_key_char(*c)) && (start == 0 || !aws_key_char(b[start - 1])))
        .then_some(start..end)
}

/// `sk-` and a body that may hold `-` and `_`: a key if the body holds three digits or more.
fn loose_sk(text: &str) -> Option<Range<usize>> {
    let digits = text.bytes().filter(u8::is_ascii_digit).count();
    (digits >= 3).then_some(0..text.len())
}

/// CRC-32 (IEEE 802.3, as zlib computes it): the checksum GitHub and npm tokens end with.
fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// The value of base62 digits (`0-9A-Za-z`), if they are all base62.
fn base62(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &c| {
        let v = match c {
            b'0'..=b'9' => c - b'0',
            b'A'..=b'Z' => c - b'A' + 10,
            b'a'..=b'z' => c - b'a' + 36,
            _ => return None,
        };
        Some(acc * 62 + u64::from(v))
    })
}

/// Whether a GitHub or npm token (`ghp_`, `npm_`… and 36 base62 characters) carries its
/// checksum: its last six characters are the base62 CRC-32 of the thirty before them.
fn token_checksum(token: &str) -> bool {
    let Some((_, body)) = token.split_once('_') else {
        return false;
    };
    let body = body.as_bytes();
    body.len() == 36 && base62(&body[30..]) == Some(u64::from(crc32(&body[..30])))
}

/// A token glued to a word, found by its checksum alone.
fn crc_token(text: &str) -> Option<Range<usize>> {
    token_checksum(text).then_some(0..text.len())
}

/// The regex of every [`TOKENS`] format, for anchored searches (`None` if it does not
/// compile, which the detector's own build would report).
fn token_regex() -> Option<&'static Regex> {
    static REGEX: OnceLock<Option<Regex>> = OnceLock::new();
    REGEX
        .get_or_init(|| {
            let regexes: Vec<&str> = TOKENS.iter().map(|(_, r)| *r).collect();
            Regex::new_many(&regexes).ok()
        })
        .as_ref()
}

/// Whether `value` starts with a token another pattern finds as its own kind (a known token
/// format, a JWT, a private key block): a label or a header in front of it leaves it to
/// that pattern.
fn known_token_at(value: &str) -> bool {
    let input = Input::new(value).anchored(Anchored::Yes);
    token_regex().is_some_and(|r| r.is_match(input))
        || (value.starts_with("eyJ") && extend::jwt(value, 0, &mut Memo::default()).0.is_some())
        || value.starts_with("-----BEGIN ")
}

/// `Bearer <token>` (or `Authorization: Token <token>`): the token, if it holds a letter and
/// a digit and is not a token of a known format (found as its own kind).
fn bearer(text: &str) -> Option<Range<usize>> {
    let start = text.rfind([' ', '\t'])? + 1;
    let token = &text[start..];
    let letters = token.bytes().any(|c| c.is_ascii_alphabetic());
    let digits = token.bytes().any(|c| c.is_ascii_digit());
    (letters && digits && !known_token_at(token)).then_some(start..text.len())
}

/// `Basic <base64>`: the credentials, if they decode to printable `user:password`.
fn basic_auth(text: &str) -> Option<Range<usize>> {
    let start = text.rfind([' ', '\t'])? + 1;
    let decoded = extend::decode_base64url(&text.as_bytes()[start..]);
    let printable = decoded.iter().all(|c| (0x20..0x7f).contains(c));
    let colon = decoded.iter().position(|c| *c == b':')?;
    (printable && decoded.len() >= 3 && colon + 1 < decoded.len()).then_some(start..text.len())
}

/// The last `N` bytes of a label-and-token match: the token.
fn trailing_token<const N: usize>(text: &str) -> Option<Range<usize>> {
    let start = text.len().checked_sub(N)?;
    text.is_char_boundary(start).then_some(start..text.len())
}

/// `<password>…</`: the element's text, if it is a plausible secret.
fn xml_value(text: &str) -> Option<Range<usize>> {
    let start = text.find('>')? + 1;
    let end = text.len().checked_sub(2)?;
    let value = text.get(start..end)?;
    let trimmed = value.trim();
    let lead = value.len() - value.trim_start().len();
    let range = start + lead..start + lead + trimmed.len();
    (trimmed.len() >= 3 && !placeholder(trimmed) && !reference(trimmed)).then_some(range)
}

/// The words a label (or an identifier) naming a secret ends with.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "passcode",
    "pwd",
    "pass",
    "secret",
    "secrets",
    "credential",
    "credentials",
    "token",
    "key",
    "apikey",
];

/// How a label's value was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Value {
    /// Where it is in the match.
    span: (usize, usize),
    /// The separator before it (`b' '` for a `--option value`).
    separator: u8,
    /// Between quotes.
    quoted: bool,
    /// Bare and followed on its line by another word.
    word_follows: bool,
}

/// The label at the start of a match: `_`, `-`, `.` and the word characters of its name.
fn label_end(b: &[u8]) -> usize {
    b.iter()
        .take_while(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
        .count()
}

fn bare_value_char(c: u8) -> bool {
    !(c.is_ascii_whitespace() || b"\"'`;&,<>\\".contains(&c))
}

/// Parses what [`label_regex`] matched after the label: closing quote, separator, value.
fn parse_value(text: &str) -> Option<Value> {
    let b = text.as_bytes();
    let skip = |mut at: usize, set: &[u8]| {
        while at < b.len() && set.contains(&b[at]) {
            at += 1;
        }
        at
    };
    let mut at = skip(label_end(b), b"\\\"']");
    at = skip(at, b" \t");
    let separator = match b.get(at..at + 2) {
        Some(b"=>" | b":=" | b"==") => {
            at += 2;
            b[at - 1]
        }
        _ => match b.get(at) {
            Some(c @ (b'=' | b':' | b',')) => {
                at += 1;
                *c
            }
            _ => b' ',
        },
    };
    at = skip(at, b" \t");
    if b.get(at) == Some(&b'\\') {
        at += 1;
    }
    let quote = *b.get(at)?;
    if quote == b'"' || quote == b'\'' {
        let start = at + 1;
        let close = b[start..].iter().position(|c| *c == quote);
        let mut end = close.map_or(b.len(), |i| start + i);
        if end > start && b[end - 1] == b'\\' {
            end -= 1;
        }
        return Some(Value {
            span: (start, end),
            separator,
            quoted: true,
            word_follows: false,
        });
    }
    let end = at + b[at..].iter().take_while(|c| bare_value_char(**c)).count();
    Some(Value {
        span: (at, end),
        separator,
        quoted: false,
        word_follows: end < b.len(),
    })
}

/// A bare value without the closing brackets that belong to the code around it
/// (`connect(password=hunter2)`).
fn trim_unbalanced(value: &str) -> &str {
    let mut v = value;
    for (open, close) in [('(', ')'), ('[', ']'), ('{', '}')] {
        while v.ends_with(close) && v.matches(open).count() < v.matches(close).count() {
            v = &v[..v.len() - 1];
        }
    }
    v
}

/// A value that stands for none: null-likes, type names, masks, placeholders in brackets.
fn placeholder(value: &str) -> bool {
    const WORDS: &[&str] = &[
        "null",
        "none",
        "nil",
        "true",
        "false",
        "undefined",
        "empty",
        "string",
        "str",
        "bytes",
        "int",
        "integer",
        "number",
        "bool",
        "boolean",
        "any",
        "object",
        "required",
        "optional",
        "n/a",
        "redacted",
        "hidden",
        "secretstr",
    ];
    let lower = value.to_ascii_lowercase();
    let bracketed = [("<", ">"), ("[", "]"), ("(", ")"), ("{", "}")]
        .iter()
        .any(|(o, c)| lower.starts_with(o) && lower.ends_with(c));
    let mut chars = value.chars();
    let first = chars.next();
    let masked = first.is_some_and(|f| "*•●xX#.-_?".contains(f) && chars.all(|c| c == f));
    WORDS.contains(&lower.as_str()) || bracketed || masked
}

/// A value that refers to a secret kept elsewhere: a variable or template reference, an
/// environment lookup, a call.
fn reference(value: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "${",
        "$(",
        "{{",
        "%(",
        "#{",
        "@{",
        "process.env",
        "os.environ",
        "os.getenv",
        "getenv(",
        "system.getenv",
        "env(",
        "env.",
        "env[",
        "self.",
        "this.",
        "config.",
        "settings.",
        "secrets.",
        "args.",
        "options.",
        "opts.",
        "params.",
        "request.",
        "req.",
        "ctx.",
        "props.",
        "context.",
        "vault:",
    ];
    let lower = value.to_ascii_lowercase();
    let call = value.find('(').is_some_and(|i| {
        i > 0
            && value[..i]
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"_.".contains(&c))
    });
    let variable = value.strip_prefix('$').is_some_and(|name| {
        !name.is_empty() && name.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
    });
    PREFIXES.iter().any(|p| lower.starts_with(p)) || call || variable
}

/// An identifier that names a secret rather than holds one: a compound (`db_password`,
/// `self.token`, `mySecret`, `my-app-secret`) whose last word names a secret, or the label's
/// own name (`password=password`, a keyword argument passed on).
fn names_a_secret(value: &str, label: &str) -> bool {
    let b = value.as_bytes();
    if !b
        .first()
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
        || !b
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c))
    {
        return false;
    }
    // The last word: after the last separator or lower-to-upper case change.
    let mut start = 0;
    for i in 1..b.len() {
        if b"_.-".contains(&b[i - 1])
            || (b[i - 1].is_ascii_lowercase() && b[i].is_ascii_uppercase())
        {
            start = i;
        }
    }
    let last = value[start..].to_ascii_lowercase();
    (start > 0 && SECRET_WORDS.contains(&last.as_str())) || value.eq_ignore_ascii_case(label)
}

/// Whether a label's value is a plausible secret.
fn plausible(label: &str, value: &str, how: Value) -> bool {
    let lower = label.to_ascii_lowercase();
    let letters_only = value.bytes().all(|c| c.is_ascii_alphabetic());
    let prose = how.separator == b':' && !how.quoted && letters_only && how.word_follows;
    let count =
        lower.ends_with("token") && value.len() < 8 && value.bytes().all(|c| c.is_ascii_digit());
    let path = lower.ends_with("pwd")
        && (value.starts_with(['/', '~', '.']) || value.get(1..3) == Some(":\\"));
    let code = !how.quoted && reference(value);
    value.chars().count() >= 3
        && !prose
        && !count
        && !path
        && !code
        && !placeholder(value)
        && !(how.quoted && value.starts_with("${"))
        && !names_a_secret(value, label)
        && !known_token_at(value)
}

/// A value after a label naming a secret (see [`label_regex`]): masks the value only, if it is a
/// plausible secret. Prose (`password: see the vault`), placeholders (`null`, `<password>`,
/// `********`), references (`${DB_PASSWORD}`, `os.environ[…]`, `db_password`), counts after
/// `token`, paths after `PWD` are not; a token of a known format is left to its own pattern.
fn label_value(text: &str) -> Option<Range<usize>> {
    let how = parse_value(text)?;
    let (start, end) = how.span;
    let raw = text.get(start..end)?;
    let value = if how.quoted {
        raw
    } else {
        trim_unbalanced(raw)
    };
    let label = text[..label_end(text.as_bytes())].trim_start_matches(['-', '_', '.']);
    plausible(label, value, how).then_some(start..start + value.len())
}
