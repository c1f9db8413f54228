//! Detection quality on public labelled data that nobody on the team wrote: other projects'
//! recogniser and rule fixtures, a numbering-plan database's example numbers, payment
//! processors' published test cards (`tests/public/*.txt`; sources, licences and method in
//! `tests/public/README.md`). Kept apart from the team's own corpus (`tests/corpus.txt`).
//!
//! Format: one case per line, `text with [[CLASS|value]] inside ## source reference`. The
//! reference follows the last ` ## `. In the text `\n` is a newline and `\\` a backslash;
//! lines starting with `#` are comments. A line without a marker is a look-alike: nothing in
//! it may be flagged.
//!
//! Scoring, per class (CREDIT_CARD, IBAN, PHONE, EMAIL, US_SSN, IP_ADDRESS, and SECRET for
//! every other built-in entity):
//! - a labelled value is caught when findings of any kind cover every alphanumeric character
//!   of it (a leak is a leak whatever the label);
//! - a finding is a true positive when it overlaps a labelled value of its own class,
//!   otherwise a false positive;
//! - a look-alike line is untouched when nothing at all is found in it.
//!
//! `cargo test -p warden-redact --test it public -- --nocapture` prints the figures as a
//! markdown table and lists every miss and false positive.

use crate::detector;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

/// The issue's aims are asserted only when this is set; the figures are printed regardless.
const ENFORCE_AIMS: bool = true;
/// Aim: recall per class.
const AIM_RECALL: f64 = 0.97;
/// Classes below the recall aim by a decision, each with the floor it may not fall under
/// (today's figure) and why.
const BELOW_AIM: &[(&str, f64, &str)] = &[(
    "US_SSN",
    0.70,
    "five of the seven misses are bare nine-digit numbers (`078051121`, `(111223333)`) without \
     a word that says an SSN follows: taken as SSNs, every such id, CUSIP and order number \
     would be, and the public set's CUSIP look-alikes are exactly that shape",
)];
/// Aim: precision over all findings.
const AIM_PRECISION: f64 = 0.98;
/// Aim: share of look-alike lines with no finding.
const AIM_UNTOUCHED: f64 = 0.98;
/// Sanity: fewest sources, fewest positives of each class.
const MIN_SOURCES: usize = 3;
const MIN_POSITIVES: u32 = 20;

const CLASSES: [&str; 7] = [
    "CREDIT_CARD",
    "IBAN",
    "PHONE",
    "EMAIL",
    "US_SSN",
    "IP_ADDRESS",
    "SECRET",
];

/// The scoring class of a detector's entity name.
fn class_of(entity: &str) -> &'static str {
    CLASSES
        .iter()
        .copied()
        .find(|c| *c == entity)
        .unwrap_or("SECRET")
}

/// One labelled value: byte span in the case's text, and its class.
struct Label {
    start: usize,
    end: usize,
    class: String,
}

/// One line of a data file.
struct Case {
    source: String,
    reference: String,
    text: String,
    labels: Vec<Label>,
}

/// Decodes `\n` and `\\`; any other backslash stands for itself.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.peek() {
                Some('n') => {
                    chars.next();
                    out.push('\n');
                    continue;
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                    continue;
                }
                _ => {}
            }
        }
        out.push(c);
    }
    out
}

/// The earliest `[[CLASS|` in `s`: its byte offset and the class. (Searching for the class
/// too lets a value sit inside brackets of its own, as in `[[[IP_ADDRESS|::1]]]:80`.)
fn next_marker(s: &str) -> Option<(usize, &'static str)> {
    CLASSES
        .iter()
        .filter_map(|c| s.find(&format!("[[{c}|")).map(|at| (at, *c)))
        .min()
}

/// Parses one non-comment line, or says what is wrong with it.
fn parse_case(source: &str, line: &str) -> Result<Case, String> {
    let (body, reference) = line
        .rsplit_once(" ## ")
        .ok_or_else(|| "no ` ## <source reference>` suffix".to_owned())?;
    if reference.trim().is_empty() {
        return Err("empty source reference".into());
    }
    let mut text = String::new();
    let mut labels = Vec::new();
    let mut rest = body;
    while let Some((open, class)) = next_marker(rest) {
        text.push_str(&unescape(&rest[..open]));
        let inner = &rest[open + 3 + class.len()..];
        let close = inner.find("]]").ok_or("unclosed [[ marker")?;
        let value = unescape(&inner[..close]);
        if !value.chars().any(char::is_alphanumeric) {
            return Err(format!("value {value:?} has nothing to leak"));
        }
        let start = text.len();
        text.push_str(&value);
        labels.push(Label {
            start,
            end: text.len(),
            class: class.to_owned(),
        });
        rest = &inner[close + 2..];
    }
    if let Some(open) = rest.find("[[") {
        let name: String = rest[open + 2..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
            .collect();
        if !name.is_empty() && rest[open + 2 + name.len()..].starts_with('|') {
            return Err(format!("unknown class {name}"));
        }
    }
    text.push_str(&unescape(rest));
    Ok(Case {
        source: source.to_owned(),
        reference: reference.trim().to_owned(),
        text,
        labels,
    })
}

/// Every data file (sorted by name), as (source name, contents).
fn data_files() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/public");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .map(|p| {
            let name = p
                .file_stem()
                .expect("file name")
                .to_string_lossy()
                .into_owned();
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (name, text)
        })
        .collect();
    files.sort();
    files
}

/// Counts for one class, one source, or everything.
#[derive(Default, Clone, Copy)]
struct Tally {
    positives: u32,
    caught: u32,
    tp: u32,
    fp: u32,
    lookalikes: u32,
    untouched: u32,
}

impl Tally {
    fn recall(&self) -> f64 {
        ratio(self.caught, self.positives)
    }
    fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }
    fn untouched_share(&self) -> f64 {
        ratio(self.untouched, self.lookalikes)
    }
}

/// `n / d`, or 1 when there is nothing to count.
fn ratio(n: u32, d: u32) -> f64 {
    if d == 0 {
        1.0
    } else {
        f64::from(n) / f64::from(d)
    }
}

fn row(out: &mut String, name: &str, t: &Tally) {
    let cell = |n: u32, v: f64| {
        if n == 0 {
            "–".to_owned()
        } else {
            format!("{v:.3}")
        }
    };
    writeln!(
        out,
        "| {name} | {} | {} | {} | {} | {} | {} | {} |",
        t.positives,
        cell(t.positives, t.recall()),
        t.tp + t.fp,
        cell(t.tp + t.fp, t.precision()),
        t.lookalikes,
        cell(t.lookalikes, t.untouched_share()),
        t.fp,
    )
    .expect("write to a String");
}

fn table(out: &mut String, first: &str, rows: &[(String, Tally)], total: &Tally) {
    writeln!(
        out,
        "| {first} | positives | recall | findings | precision | look-alikes | untouched | false positives |"
    )
    .expect("write to a String");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (name, t) in rows {
        row(out, name, t);
    }
    row(out, "**all**", total);
}

#[test]
fn public_labelled_data() {
    let files = data_files();
    let mut cases = Vec::new();
    let mut errors = Vec::new();
    for (source, text) in &files {
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            match parse_case(source, line) {
                Ok(case) => cases.push(case),
                Err(e) => errors.push(format!("{source}.txt:{}: {e}", n + 1)),
            }
        }
    }
    assert!(
        errors.is_empty(),
        "unparsable lines:\n{}",
        errors.join("\n")
    );
    assert!(
        files.len() >= MIN_SOURCES,
        "{} sources, fewer than {MIN_SOURCES}",
        files.len()
    );

    let d = detector();
    let mut by_class: BTreeMap<&str, Tally> =
        CLASSES.iter().map(|c| (*c, Tally::default())).collect();
    let mut by_source: BTreeMap<String, Tally> = BTreeMap::new();
    let mut total = Tally::default();
    let mut misses: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut false_positives = Vec::new();
    for case in &cases {
        let findings = d.find(&case.text);
        let source = by_source.entry(case.source.clone()).or_default();
        for label in &case.labels {
            let covered = case.text[label.start..label.end]
                .char_indices()
                .filter(|(_, c)| c.is_alphanumeric())
                .all(|(i, _)| {
                    let at = label.start + i;
                    findings.iter().any(|f| f.start <= at && at < f.end)
                });
            let class = by_class.get_mut(label.class.as_str()).expect("known class");
            for t in [class, &mut *source, &mut total] {
                t.positives += 1;
                t.caught += u32::from(covered);
            }
            if !covered {
                let found: Vec<String> = findings
                    .iter()
                    .filter(|f| f.start < label.end && label.start < f.end)
                    .map(|f| format!("{} {:?}", f.entity, &case.text[f.start..f.end]))
                    .collect();
                misses
                    .entry(class_of(&label.class))
                    .or_default()
                    .push(format!(
                        "{:?} in {:?}{} [{}: {}]",
                        &case.text[label.start..label.end],
                        case.text,
                        if found.is_empty() {
                            String::new()
                        } else {
                            format!(" (partly: {})", found.join(", "))
                        },
                        case.source,
                        case.reference
                    ));
            }
        }
        for f in &findings {
            let class = class_of(f.entity.name());
            let tp = case
                .labels
                .iter()
                .any(|l| l.class == class && f.start < l.end && l.start < f.end);
            let t = by_class.get_mut(class).expect("known class");
            for t in [t, &mut *source, &mut total] {
                if tp {
                    t.tp += 1;
                } else {
                    t.fp += 1;
                }
            }
            if !tp {
                false_positives.push(format!(
                    "{} {:?} in {:?} [{}: {}]",
                    f.entity,
                    &case.text[f.start..f.end],
                    case.text,
                    case.source,
                    case.reference
                ));
            }
        }
        if case.labels.is_empty() {
            let untouched = findings.is_empty();
            for t in [&mut *source, &mut total] {
                t.lookalikes += 1;
                t.untouched += u32::from(untouched);
            }
        }
    }

    let mut out = String::new();
    let class_rows: Vec<(String, Tally)> = by_class
        .iter()
        .filter(|(_, t)| t.positives + t.tp + t.fp > 0)
        .map(|(c, t)| ((*c).to_owned(), *t))
        .collect();
    let source_rows: Vec<(String, Tally)> =
        by_source.iter().map(|(s, t)| (s.clone(), *t)).collect();
    out.push_str("Public labelled data, by type (look-alikes have no type: see the totals)\n\n");
    table(&mut out, "type", &class_rows, &total);
    out.push_str("\nBy source\n\n");
    table(&mut out, "source", &source_rows, &total);
    println!("{out}");
    for (class, list) in &misses {
        println!("missed {class} ({}):", list.len());
        for m in list {
            println!("  {m}");
        }
    }
    println!("false positives ({}):", false_positives.len());
    for m in &false_positives {
        println!("  {m}");
    }

    for (class, t) in &by_class {
        assert!(
            t.positives >= MIN_POSITIVES,
            "{class}: {} positives, fewer than {MIN_POSITIVES}",
            t.positives
        );
    }
    if ENFORCE_AIMS {
        let mut failed = Vec::new();
        for (class, t) in &by_class {
            let aim = BELOW_AIM
                .iter()
                .find(|(c, _, _)| c == class)
                .map_or(AIM_RECALL, |(_, floor, _)| *floor);
            if t.recall() < aim {
                failed.push(format!("{class}: recall {:.3} < {aim}", t.recall()));
            }
        }
        if total.precision() < AIM_PRECISION {
            failed.push(format!(
                "precision {:.4} < {AIM_PRECISION}",
                total.precision()
            ));
        }
        if total.untouched_share() < AIM_UNTOUCHED {
            failed.push(format!(
                "look-alikes untouched {:.4} < {AIM_UNTOUCHED}",
                total.untouched_share()
            ));
        }
        assert!(
            failed.is_empty(),
            "aims not met:\n{}\n\n{out}",
            failed.join("\n")
        );
    }
}

#[test]
fn public_format_parses_markers_escapes_and_references() {
    let case = parse_case(
        "t",
        r"a [[EMAIL|x@example.org]] b\nc \\n [[IBAN|GB29 NWBK 6016 1331 9268 19]] ## repo path:1",
    )
    .expect("parses");
    assert_eq!(
        case.text,
        "a x@example.org b\nc \\n GB29 NWBK 6016 1331 9268 19"
    );
    assert_eq!(case.reference, "repo path:1");
    assert_eq!(case.labels.len(), 2);
    assert_eq!(
        &case.text[case.labels[0].start..case.labels[0].end],
        "x@example.org"
    );
    assert_eq!(case.labels[1].class, "IBAN");
    assert!(parse_case("t", "no reference").is_err());
    assert!(parse_case("t", "[[NAME|Bob]] ## r").is_err());
    assert!(parse_case("t", "[[IP_ADDRESS|::]] ## r").is_err());
    assert!(parse_case("t", "[[EMAIL|x@y.z ## r").is_err());
    assert_eq!(class_of("AWS_ACCESS_KEY"), "SECRET");
    assert_eq!(class_of("PHONE"), "PHONE");
}
