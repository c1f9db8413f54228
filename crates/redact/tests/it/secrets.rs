//! Secrets in the formats their issuers publish: each format found whole, look-alikes left
//! alone, the evasions (a JWT with spaces around its dots or without a signature, a private
//! key block without its footer), values after the labels that name a secret, and the cost of
//! near-misses of the new formats staying linear.
//!
//! Every value here is made up from the published format (prefix, alphabet, length,
//! checksum) by a small generator: none is a real credential or another project's fixture.

use crate::detector;
use warden_redact::{Cost, Detector};

/// Deterministic random characters.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn pick(&mut self, alphabet: &str, n: usize) -> String {
        let a = alphabet.as_bytes();
        (0..n)
            .map(|_| char::from(a[(self.next() % a.len() as u64) as usize]))
            .collect()
    }
}

const UPPER: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const ALNUM: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
const URL64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const B64: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const HEX: &str = "0123456789abcdef";
const DIGITS: &str = "0123456789";

/// CRC-32 as zlib computes it (the crate the detector uses too).
fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// Six base62 digits (`0-9A-Za-z`), zero-padded.
fn base62(mut n: u32) -> String {
    const DIGITS62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; 6];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8(out).unwrap()
}

/// A GitHub or npm style token: prefix, 30 random characters, their CRC-32 in base62.
fn checksummed(g: &mut Gen, prefix: &str) -> String {
    let body = g.pick(ALNUM, 30);
    format!("{prefix}{body}{}", base62(crc32(body.as_bytes())))
}

fn base64url(bytes: &[u8]) -> String {
    let a = URL64.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(a[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// The findings of `text` as `(entity, matched text)`.
fn found(d: &Detector, text: &str) -> Vec<(String, String)> {
    d.find(text)
        .into_iter()
        .map(|f| (f.entity.name().to_owned(), text[f.start..f.end].to_owned()))
        .collect()
}

/// One well-formed token of every format, with its entity.
fn tokens() -> Vec<(&'static str, String)> {
    let mut g = Gen(0x5EC2_E75E_ED00_0001);
    let mut t: Vec<(&'static str, String)> = Vec::new();
    for prefix in [
        "AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "APKA", "AROA",
        "ASCA", "A3TX",
    ] {
        t.push(("AWS_ACCESS_KEY", format!("{prefix}{}", g.pick(UPPER, 16))));
    }
    let bedrock = base64url(b"BedrockAPIKey-ab12-at-123456789012:").replace(['-', '_'], "A");
    t.push(("API_KEY", format!("ABSK{bedrock}{}=", g.pick(B64, 60))));
    t.push(("API_KEY", format!("ABSK{}", g.pick(B64, 120))));
    t.push((
        "API_KEY",
        format!(
            "bedrock-api-key-YmVkcm9jay5hbWF6b25hd3MuY29t{}==",
            g.pick(B64, 300)
        ),
    ));
    for prefix in ["sk-proj-", "sk-svcacct-", "sk-admin-"] {
        t.push(("API_KEY", format!("{prefix}{}", g.pick(URL64, 80))));
    }
    t.push(("API_KEY", format!("sk-{}", g.pick(ALNUM, 48))));
    t.push(("API_KEY", format!("sk-ant-api03-{}AA", g.pick(URL64, 93))));
    t.push(("API_KEY", format!("sk-ant-admin01-{}AA", g.pick(URL64, 93))));
    t.push(("API_KEY", format!("sk-or-v1-{}", g.pick(HEX, 64))));
    t.push(("API_KEY", format!("hf_{}", g.pick(ALNUM, 34))));
    t.push(("API_KEY", format!("gsk_{}", g.pick(ALNUM, 52))));
    t.push(("API_KEY", format!("xai-{}", g.pick(ALNUM, 80))));
    t.push(("API_KEY", format!("r8_{}", g.pick(ALNUM, 37))));
    t.push(("API_KEY", format!("pplx-{}", g.pick(ALNUM, 48))));
    t.push((
        "API_KEY",
        format!("lsv2_pt_{}_{}", g.pick(HEX, 32), g.pick(HEX, 10)),
    ));
    t.push(("GOOGLE_API_KEY", format!("AIza{}", g.pick(URL64, 35))));
    t.push(("GOOGLE_API_KEY", format!("ya29.a0{}", g.pick(URL64, 120))));
    t.push(("GOOGLE_API_KEY", format!("GOCSPX-{}", g.pick(ALNUM, 28))));
    for prefix in ["ghp_", "gho_", "ghu_", "ghs_", "ghr_"] {
        t.push(("GITHUB_TOKEN", checksummed(&mut g, prefix)));
    }
    t.push((
        "GITHUB_TOKEN",
        format!("github_pat_11{}_{}", g.pick(ALNUM, 20), g.pick(ALNUM, 59)),
    ));
    for prefix in ["glpat-", "gldt-", "glft-", "glrt-", "glsoat-", "glffct-"] {
        t.push(("GITLAB_TOKEN", format!("{prefix}{}", g.pick(ALNUM, 20))));
    }
    t.push(("GITLAB_TOKEN", format!("glptt-{}", g.pick(HEX, 40))));
    t.push((
        "GITLAB_TOKEN",
        format!("glpat-{}.01{}", g.pick(URL64, 27), g.pick(HEX, 7)),
    ));
    t.push(("GITLAB_TOKEN", format!("GR1348941{}", g.pick(ALNUM, 20))));
    t.push(("API_KEY", checksummed(&mut g, "npm_")));
    t.push((
        "API_KEY",
        format!("pypi-AgEIcHlwaS5vcmc{}", g.pick(URL64, 120)),
    ));
    for kind in ["b", "p", "a", "r", "s", "o"] {
        t.push((
            "SLACK_TOKEN",
            format!(
                "xox{kind}-{}-{}-{}",
                g.pick(DIGITS, 12),
                g.pick(DIGITS, 13),
                g.pick(ALNUM, 24)
            ),
        ));
    }
    t.push(("SLACK_TOKEN", format!("xoxe.xoxp-1-{}", g.pick(ALNUM, 163))));
    t.push(("SLACK_TOKEN", format!("xoxe-1-{}", g.pick(ALNUM, 146))));
    t.push((
        "SLACK_TOKEN",
        format!(
            "xapp-1-A{}-{}-{}",
            g.pick(UPPER, 10),
            g.pick(DIGITS, 13),
            g.pick(HEX, 64)
        ),
    ));
    t.push((
        "SLACK_TOKEN",
        format!(
            "https://hooks.slack.com/services/T{}/B{}/{}",
            g.pick(UPPER, 8),
            g.pick(UPPER, 10),
            g.pick(ALNUM, 24)
        ),
    ));
    t.push((
        "SLACK_TOKEN",
        format!(
            "https://hooks.slack.com/workflows/T{}/A{}/{}/{}",
            g.pick(UPPER, 10),
            g.pick(UPPER, 10),
            g.pick(DIGITS, 18),
            g.pick(ALNUM, 24)
        ),
    ));
    for prefix in ["sk_live_", "sk_test_", "rk_live_", "pk_live_"] {
        t.push(("STRIPE_KEY", format!("{prefix}{}", g.pick(ALNUM, 24))));
    }
    t.push(("STRIPE_KEY", format!("whsec_{}", g.pick(ALNUM, 32))));
    t.push(("API_KEY", format!("SK{}", g.pick(HEX, 32))));
    t.push((
        "API_KEY",
        format!("SG.{}.{}", g.pick(URL64, 22), g.pick(URL64, 43)),
    ));
    for prefix in ["shpat_", "shpca_", "shppa_", "shpss_"] {
        t.push(("API_KEY", format!("{prefix}{}", g.pick(HEX, 32))));
    }
    for prefix in ["dop_v1_", "doo_v1_", "dor_v1_"] {
        t.push(("API_KEY", format!("{prefix}{}", g.pick(HEX, 64))));
    }
    t.push(("API_KEY", format!("dapi{}", g.pick(HEX, 32))));
    t.push(("API_KEY", format!("hvs.{}", g.pick(URL64, 90))));
    t.push(("API_KEY", format!("dp.st.{}", g.pick(ALNUM, 43))));
    t.push(("API_KEY", format!("dp.pt.{}", g.pick(ALNUM, 43))));
    t.push(("API_KEY", format!("lin_api_{}", g.pick(ALNUM, 40))));
    t.push(("API_KEY", format!("ATATT3{}", g.pick(URL64, 186))));
    t.push((
        "API_KEY",
        format!(
            "MT{}.{}.{}",
            g.pick(URL64, 22),
            g.pick(URL64, 6),
            g.pick(URL64, 27)
        ),
    ));
    t.push((
        "API_KEY",
        format!("{}:AA{}", g.pick(DIGITS, 10), g.pick(ALNUM, 33)),
    ));
    t.push(("API_KEY", format!("HRKU-AA{}", g.pick(URL64, 58))));
    t.push(("API_KEY", format!("EAAA{}", g.pick(URL64, 60))));
    t.push(("API_KEY", format!("sq0csp-{}", g.pick(URL64, 43))));
    t.push(("API_KEY", format!("sl.{}", g.pick(URL64, 140))));
    t.push((
        "API_KEY",
        format!("PMAK-{}-{}", g.pick(HEX, 24), g.pick(HEX, 34)),
    ));
    t.push((
        "API_KEY",
        format!("glsa_{}_{}", g.pick(ALNUM, 32), g.pick(HEX, 8)),
    ));
    t.push(("API_KEY", format!("sbp_{}", g.pick(HEX, 40))));
    // 1Password Secret Key: `A3-`, then groups of 6, 6, 5, 5, 5, 5 capitals and digits.
    let groups: Vec<String> = [6, 6, 5, 5, 5, 5]
        .iter()
        .map(|&n| g.pick("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", n))
        .collect();
    t.push(("API_KEY", format!("A3-{}", groups.join("-"))));
    t.push((
        "PRIVATE_KEY",
        format!(
            "AGE-SECRET-KEY-1{}",
            g.pick("QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L", 58)
        ),
    ));
    t
}

#[test]
fn every_format_is_found_whole_in_every_context() {
    let d = detector();
    for (entity, token) in tokens() {
        for text in [
            format!("key {token} end"),
            format!("\"{token}\""),
            format!("TOKEN={token}\n"),
            format!("config:\n  value: '{token}'"),
            token.clone(),
        ] {
            assert_eq!(
                found(&d, &text),
                [(entity.to_owned(), token.clone())],
                "{text:?}"
            );
        }
    }
}

#[test]
fn a_checksum_confirms_a_token_glued_to_a_word_and_never_rejects_a_distinctive_one() {
    let d = detector();
    let mut g = Gen(7);
    for prefix in ["ghp_", "ghs_", "npm_"] {
        let token = checksummed(&mut g, prefix);
        let glued = format!("x{token}");
        assert_eq!(found(&d, &glued).len(), 1, "{glued}");
        assert_eq!(found(&d, &glued)[0].1, token);
        // A wrong checksum glued to a word: nothing to confirm the shape.
        let wrong = format!("x{}{}", &token[..token.len() - 6], "000000");
        assert!(found(&d, &wrong).is_empty(), "{wrong}");
        // Standing on its own, the prefix and shape suffice, checksum or not.
        let random = format!("{prefix}{}", g.pick(ALNUM, 36));
        assert_eq!(found(&d, &format!("use {random} now")).len(), 1, "{random}");
    }
}

#[test]
fn look_alikes_are_left_alone() {
    let d = detector();
    let mut g = Gen(99);
    let uuid = format!(
        "{}-{}-4{}-a{}-{}",
        g.pick(HEX, 8),
        g.pick(HEX, 4),
        g.pick(HEX, 3),
        g.pick(HEX, 3),
        g.pick(HEX, 12)
    );
    let lookalikes = [
        format!("request {uuid} failed"),
        format!("commit {} merged", g.pick(HEX, 40)),
        format!("sha256:{}", g.pick(HEX, 64)),
        format!("blob {} end", g.pick(B64, 200)),
        format!("integrity sha512-{}==", g.pick(B64, 86)),
        "class=\"sk-spinner-double-bounce sk-fading-circle\"".to_owned(),
        "npm_package_dependencies_typescript=5.4.0".to_owned(),
        "ghp_short and glpat-tooshort and xoxb-12345 and AKIA123".to_owned(),
        format!("cache key-{} hit", g.pick(HEX, 32)),
        "The bearer of this letter uses Bearer token authentication.".to_owned(),
        "Basic Authentication is configured; Basic usage is free.".to_owned(),
        "Authorization: Bearer YOUR_ACCESS_TOKEN_HERE".to_owned(),
        "Authorization: Bearer ${TOKEN}".to_owned(),
        "eyJhbGciOiJIUzI1NiJ9 alone is a header".to_owned(),
        format!("eyJ{}.eyJ{} is no token", g.pick(URL64, 20), g.pick(URL64, 40)),
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----"
            .to_owned(),
        "-----BEGIN RSA PRIVATE KEY----- is how a key block opens".to_owned(),
        "SELECT id FROM users; import os.path; fn main() {}".to_owned(),
        "AKIAIOSFODNN7EXAMPL is one short".to_owned(),
    ];
    for text in &lookalikes {
        assert!(
            found(&d, text).is_empty(),
            "{text:?}: {:?}",
            found(&d, text)
        );
    }
}

#[test]
fn password_and_secret_labels_mask_only_the_value() {
    let d = detector();
    for (text, value) in [
        ("password: hunter2", "hunter2"),
        ("\"password\": \"hunter2\"", "hunter2"),
        (
            "{\"password\":\"correct horse battery\"}",
            "correct horse battery",
        ),
        ("password=\"hunter2\"", "hunter2"),
        ("'password' => 'hunter2',", "hunter2"),
        ("db_password=hunter2", "hunter2"),
        ("DB_PASSWORD=hunter2", "hunter2"),
        ("secret=s3cr3tvalue", "s3cr3tvalue"),
        ("client_secret: 'Zq8~abcdefgh'", "Zq8~abcdefgh"),
        ("api_key=live1234abcd", "live1234abcd"),
        ("apikey: 9f8e7d6c5b4a", "9f8e7d6c5b4a"),
        ("access_token = \"opaque-token-42\"", "opaque-token-42"),
        ("auth_token: q1w2e3r4t5", "q1w2e3r4t5"),
        ("private_key=Zm9vYmFyYmF6", "Zm9vYmFyYmF6"),
        ("spring.datasource.password=Pa55word!", "Pa55word!"),
        ("dbPassword: \"Pa55word!\"", "Pa55word!"),
        ("const apiKey = 'abc123def456';", "abc123def456"),
        ("$password = \"hunter2\";", "hunter2"),
        ("password := \"hunter2\"", "hunter2"),
        ("define('DB_PASSWORD', 'wp-s3cret');", "wp-s3cret"),
        ("mysql --password hunter2 -u root", "hunter2"),
        ("{\\\"password\\\": \\\"hunter2\\\"}", "hunter2"),
        ("<password>hunter2</password>", "hunter2"),
        ("Password=Str0ng!Pass;", "Str0ng!Pass"),
        ("?user=bob&password=hunter2&next=1", "hunter2"),
        ("password=a=b", "a=b"),
        ("connect(user=u, password=hunter2)", "hunter2"),
        ("password: secret", "secret"),
        (
            "TWILIO_AUTH_TOKEN=0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef",
        ),
        ("Authorization: Basic dXNlcjpodW50ZXIy", "dXNlcjpodW50ZXIy"),
        (
            "Authorization: Bearer opaque1234567890token",
            "opaque1234567890token",
        ),
        (
            "Authorization: Token 0123456789abcdef0123",
            "0123456789abcdef0123",
        ),
    ] {
        let f = found(&d, text);
        assert_eq!(f.len(), 1, "{text:?}: {f:?}");
        assert_eq!(f[0].1, value, "{text:?}");
    }
}

#[test]
fn labels_without_a_secret_are_left_alone() {
    let d = detector();
    for text in [
        "the password is stored hashed",
        "password: see the vault (no value here).",
        "Reset your password: click the link below.",
        "password_policy: strict",
        "password_hash: stored",
        "password:\n  rotate: weekly",
        "password=\nuser=bob",
        "\"password\": \"\"",
        "\"password\": null, \"token\": true",
        "password: string;",
        "password: str = Field()",
        "password=${DB_PASSWORD}",
        "password: \"{{ vault_db_password }}\"",
        "password=os.environ['DB_PASSWORD']",
        "connect(password=password)",
        "password=db_password",
        "password: ********",
        "password=<your-password>",
        "api_key=your_api_key",
        "max_tokens=100 tokens: 1500 token: 12",
        "PWD=/home/ann/project",
        "aws_secret_access_key = tooShortForAnAwsKey1",
    ] {
        assert!(
            found(&d, text).is_empty(),
            "{text:?}: {:?}",
            found(&d, text)
        );
    }
}

#[test]
fn a_token_after_a_label_is_found_as_its_own_kind() {
    let d = detector();
    let mut g = Gen(3);
    let ghp = checksummed(&mut g, "ghp_");
    let sk = format!("sk-proj-{}", g.pick(URL64, 60));
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbg";
    for (text, entity, value) in [
        (format!("GITHUB_TOKEN={ghp}"), "GITHUB_TOKEN", ghp.as_str()),
        (format!("\"api_key\": \"{sk}\""), "API_KEY", sk.as_str()),
        (format!("access_token={jwt}"), "JWT", jwt),
        (format!("Authorization: Bearer {jwt}"), "JWT", jwt),
        (
            format!("Authorization: Bearer {sk}"),
            "API_KEY",
            sk.as_str(),
        ),
    ] {
        assert_eq!(
            found(&d, &text),
            [(entity.to_owned(), value.to_owned())],
            "{text}"
        );
    }
}

#[test]
fn aws_secret_keys_are_found_after_their_labels_in_every_form() {
    let d = detector();
    let key = "Zx9/Kq2+Lm4Np6Rs8Tu0Vw1Xy3Za5Bc7De9Fg1Hi";
    for text in [
        format!("aws_secret_access_key = {key}"),
        format!("AWS_SECRET_ACCESS_KEY={key}"),
        format!("export AWS_SECRET_ACCESS_KEY=\"{key}\""),
        format!("{{\"SecretAccessKey\": \"{key}\", \"x\": 1}}"),
        format!("aws_secret_access_key: {key}\n"),
        format!("  secretAccessKey: '{key}'"),
        format!("'aws_secret_key' => '{key}',"),
        format!("--aws-secret-access-key {key}"),
        format!("aws_secret_access_key:\n  {key}"),
    ] {
        assert_eq!(
            found(&d, &text),
            [("AWS_SECRET_KEY".to_owned(), key.to_owned())],
            "{text:?}"
        );
    }
}

#[test]
fn jwts_are_found_signed_or_not_and_with_spaces_around_their_dots() {
    let d = detector();
    let header = base64url(br#"{"alg":"HS256","typ":"JWT"}"#);
    let none = base64url(br#"{"alg":"none"}"#);
    let payload = base64url(br#"{"sub":"1234567890","name":"Ann","iat":1516239022}"#);
    let signature = "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
    for token in [
        format!("{header}.{payload}.{signature}"),
        format!("{none}.{payload}."),
        format!("{none}.{payload}"),
        format!("{header} . {payload} . {signature}"),
        format!("{header}. {payload} .{signature}"),
        format!("{none} . {payload}"),
    ] {
        for text in [format!("token {token} end"), format!("\"{token}\"")] {
            assert_eq!(
                found(&d, &text),
                [("JWT".to_owned(), token.clone())],
                "{text:?}"
            );
        }
    }
}

#[test]
fn a_private_key_block_is_masked_with_or_without_its_footer() {
    let d = detector();
    let mut g = Gen(11);
    let lines: Vec<String> = (0..3).map(|_| g.pick(B64, 64)).collect();
    let body = format!("{}\n{}\n{}\nAbCdEf==", lines[0], lines[1], lines[2]);
    for (open, close) in [
        (
            "-----BEGIN RSA PRIVATE KEY-----",
            "-----END RSA PRIVATE KEY-----",
        ),
        (
            "-----BEGIN OPENSSH PRIVATE KEY-----",
            "-----END OPENSSH PRIVATE KEY-----",
        ),
        (
            "-----BEGIN ENCRYPTED PRIVATE KEY-----",
            "-----END ENCRYPTED PRIVATE KEY-----",
        ),
        (
            "-----BEGIN PGP PRIVATE KEY BLOCK-----",
            "-----END PGP PRIVATE KEY BLOCK-----",
        ),
    ] {
        let whole = format!("{open}\n{body}\n{close}");
        assert_eq!(
            found(&d, &format!("key:\n{whole}\nthanks")),
            [("PRIVATE_KEY".to_owned(), whole.clone())]
        );
        // Without its footer: through the end of the base64 body, not the prose after it.
        let cut = format!("{open}\n{body}");
        assert_eq!(
            found(&d, &format!("key:\n{cut}\nThanks, see you")),
            [("PRIVATE_KEY".to_owned(), cut.clone())],
            "{open}"
        );
        // In a JSON string, with escaped line breaks.
        let escaped = cut.replace('\n', "\\n");
        assert_eq!(
            found(&d, &format!("{{\"private_key\": \"{escaped}\"}}")),
            [("PRIVATE_KEY".to_owned(), escaped.clone())]
        );
    }
    let encrypted = format!(
        "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,{}\n\n{body}",
        g.pick("0123456789ABCDEF", 32)
    );
    assert_eq!(
        found(&d, &encrypted),
        [("PRIVATE_KEY".to_owned(), encrypted.clone())]
    );
}

fn cost_of(d: &Detector, text: &str) -> u64 {
    let mut cost = Cost::unlimited();
    d.find_within(text, &mut cost).unwrap();
    cost.spent()
}

#[test]
fn near_misses_of_the_new_formats_cost_linearly() {
    let d = detector();
    for unit in [
        "Bearer abcdefghijklmnopqrst ",
        "password: see the ",
        "password=\"unterminated ",
        "token: 12 ",
        "eyJhbGciOiJub25lIn0 . eyJ ",
        "eyJxyzxyz.eyJabcdef-",
        "-----BEGIN PGP PRIVATE KEY BLOCK-----\nVersion: 1\n",
        "xghp_0123456789012345678901234567890123456 ",
        "ABSK+",
        "1234567:A ",
        "Basic QUJDREVGR0g= ",
    ] {
        let small = cost_of(&d, &unit.repeat(64 * 1024 / unit.len()));
        let large = cost_of(&d, &unit.repeat(256 * 1024 / unit.len()));
        assert!(
            large < 5 * small,
            "{unit:?}: 64 KiB cost {small}, 256 KiB cost {large}"
        );
        assert!(large < 64 * 256 * 1024, "{unit:?}: {large} for 256 KiB");
    }
}

#[test]
fn the_checksum_is_zlibs_crc32() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926, "the standard check value");
}
