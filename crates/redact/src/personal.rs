//! The built-in detectors of personal data: payment cards, national identifiers, email
//! addresses, phone numbers, bank accounts and network addresses.

use crate::email::EMAIL;
use crate::patterns::{Pattern, Search};
use crate::validate;

/// An extension after a phone number (`x12`, `ext. 12`, `extension 12`), masked with it.
macro_rules! extension {
    () => {
        r"(?:,? ?(?:x|ext\.?|extension) ?[0-9]{1,6}(?-u:\b))?"
    };
}

/// An IPv6 address in one of RFC 4291's text forms: eight groups, or fewer around one `::`,
/// the last two groups possibly written as an IPv4 address; then a zone and a prefix. Only
/// those forms: a looser run of hex groups and colons (`10:30:00`, `a:b:c`) would be a
/// candidate the check refuses at every clock time of a log. No word character before it:
/// a word boundary before a leading group, none before a leading `::` (so a path such as
/// `Vec::new` or `std::io` is no candidate either). The forms with an IPv4 tail come first,
/// so that at one start the longest form is the one found (leftmost-first).
macro_rules! ipv6 {
    () => {
        concat!(
            r"(?i:",
            r"(?-u:\b)(?:[0-9a-f]{1,4}:){6}[0-9]{1,3}(?:\.[0-9]{1,3}){3}",
            r"|(?-u:\b)[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,5}::(?:[0-9a-f]{1,4}:){0,5}[0-9]{1,3}(?:\.[0-9]{1,3}){3}",
            r"|(?-u:\B)::(?:[0-9a-f]{1,4}:){0,5}[0-9]{1,3}(?:\.[0-9]{1,3}){3}",
            r"|(?-u:\b)(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}",
            r"|(?-u:\b)[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6}::(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?",
            r"|(?-u:\B)::(?:[0-9a-f]{1,4}(?::[0-9a-f]{1,4}){0,6})?",
            r")(?:%[0-9A-Za-z_.-]{1,16})?(?:/[0-9]{1,3})?"
        )
    };
}

/// The personal-data patterns, most specific first.
pub fn patterns() -> Vec<Pattern> {
    vec![
        Pattern {
            entity: "EMAIL",
            regex: EMAIL,
            check: None,
            veto: None,
            extend: None,
            context: None,
            search: Search::Email,
        },
        // After a word that says an email address follows, an address written out to dodge
        // detection: `john at gmail.com`, `jane [at] example [dot] org`.
        Pattern::checked(
            "EMAIL",
            concat!(
                r"(?i:(?-u:\b)e-?mail(?:[ _-]?(?:address|addr))?(?-u:\b)[^\n@]{0,24}?",
                r"(?-u:\b)[a-z0-9._%+-]{1,64}(?: at | ?[(\[{]at[)\]}] ?)",
                r"[a-z0-9-]{1,63}(?:(?:\.| dot | ?[(\[{]dot[)\]}] ?)[a-z0-9-]{1,63}){1,4})(?-u:\b)",
            ),
            Some(validate::email_written_out),
        )
        .standing_alone(validate::written_out_email_stands_alone),
        Pattern::checked(
            "US_SSN",
            r"(?i:ssn|social security(?: number| no\.?)?)[^0-9\n]{0,20}[0-9]{3}[ .-]?[0-9]{2}[ .-]?[0-9]{4}(?-u:\b)",
            Some(validate::ssn),
        ),
        Pattern {
            entity: "US_SSN",
            regex: r"(?-u:\b)(?:[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{3}\.[0-9]{2}\.[0-9]{4}|[0-9]{3} [0-9]{2} [0-9]{4})(?-u:\b)",
            check: Some(validate::ssn),
            veto: Some(validate::ssn_look_alike),
            extend: None,
            context: None,
            search: Search::Together,
        },
        Pattern {
            entity: "IBAN",
            regex: r"(?-u:\b)[A-Z]{2} ?[0-9]{2}(?:[ .-]?[A-Za-z0-9]){8,32}",
            check: Some(validate::iban),
            veto: Some(validate::iban_look_alike),
            extend: None,
            context: None,
            search: Search::Together,
        },
        Pattern::checked(
            "CREDIT_CARD",
            r"(?-u:\b)[0-9](?:[ .-]?[0-9]){12,18}(?-u:\b)",
            Some(validate::credit_card),
        ),
        // After a word that says a phone number follows, any grouping of 7 to 15 digits.
        Pattern::checked(
            "PHONE",
            concat!(
                r"(?i:(?-u:\b)(?:tele?phone|phone|tel|mobile|cell(?:phone)?|fax|whatsapp)(?-u:\b))",
                r"[^0-9\n+(]{0,24}\+?\(?[0-9][0-9 ().-]{5,22}[0-9](?-u:\b)",
                extension!()
            ),
            Some(validate::phone_after_label),
        ),
        Pattern::checked(
            "PHONE",
            concat!(
                r"\+[1-9][0-9]{0,3}(?:[ .-]?\(?[0-9]{1,4}\)?){1,6}(?-u:\b)",
                extension!()
            ),
            Some(validate::phone),
        ),
        Pattern::checked(
            "PHONE",
            concat!(
                r"(?:(?-u:\b)1[ .-]?)?(?:\([0-9]{3}\) ?|(?-u:\b)[0-9]{3}[-. ])[0-9]{3}[-. ][0-9]{4}(?-u:\b)",
                extension!()
            ),
            Some(validate::phone),
        ),
        // National format: the trunk prefix 0, an area code, groups.
        Pattern::checked(
            "PHONE",
            r"(?:\(0[1-9][0-9]{0,4}\)|(?-u:\b)0[1-9][0-9]{0,4})(?:[ -][0-9]{2,5}){1,4}(?-u:\b)",
            Some(validate::national_phone),
        ),
        Pattern::checked(
            "IP_ADDRESS",
            r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?:/[0-9]{1,2})?(?-u:\b)",
            Some(validate::ipv4),
        )
        .standing_alone(validate::ip_stands_alone),
        Pattern::checked("IP_ADDRESS", ipv6!(), Some(validate::ipv6))
            .standing_alone(validate::ip_stands_alone),
        // National format of any region's numbering plan (`02 123 456`, `(021) 8350123`,
        // `22 50 12 34`): last, so that an address or a card found at the same place wins.
        // Found by code (whole runs of digit groups); the regex says what it finds.
        Pattern {
            entity: "PHONE",
            regex: r"\(?[0-9]{1,5}\)?(?:[ .-]?\(?[0-9]{1,10}\)?){1,5}",
            // Checked by the detector's numbering plans (`validate::NumberingPlans`); the
            // search finds only runs that stand on their own.
            check: None,
            veto: None,
            extend: None,
            context: None,
            search: Search::DigitRuns,
        },
    ]
}
