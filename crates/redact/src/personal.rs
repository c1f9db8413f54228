//! The built-in detectors of personal data: payment cards, national identifiers, email
//! addresses, phone numbers, bank accounts and network addresses.

use crate::patterns::{EMAIL, Pattern, Search};
use crate::validate;

/// The personal-data patterns, most specific first.
pub fn patterns() -> Vec<Pattern> {
    vec![
        Pattern {
            entity: "EMAIL",
            regex: EMAIL,
            check: None,
            extend: None,
            search: Search::Email,
        },
        Pattern::checked(
            "US_SSN",
            r"(?i:ssn|social security(?: number| no\.?)?)[^0-9\n]{0,20}[0-9]{3}[ -]?[0-9]{2}[ -]?[0-9]{4}(?-u:\b)",
            Some(validate::ssn),
        ),
        Pattern::checked(
            "US_SSN",
            r"(?-u:\b)(?:[0-9]{3}-[0-9]{2}-[0-9]{4}|[0-9]{3}\.[0-9]{2}\.[0-9]{4})(?-u:\b)",
            Some(validate::ssn),
        ),
        Pattern::checked(
            "IBAN",
            r"(?-u:\b)[A-Z]{2}[0-9]{2}(?:[ .-]?[A-Z0-9]{4}){2,7}(?:[ .-]?[A-Z0-9]{1,3})?(?-u:\b)",
            Some(validate::iban),
        ),
        Pattern::checked(
            "CREDIT_CARD",
            r"(?-u:\b)[0-9](?:[ .-]?[0-9]){12,18}(?-u:\b)",
            Some(validate::credit_card),
        ),
        Pattern::checked(
            "PHONE",
            r"\+[1-9][0-9]{0,3}(?:[ .-]?\(?[0-9]{1,4}\)?){2,6}(?-u:\b)",
            Some(validate::phone),
        ),
        Pattern::checked(
            "PHONE",
            r"(?:\([0-9]{3}\) ?|(?-u:\b)[0-9]{3}[-. ])[0-9]{3}[-. ][0-9]{4}(?-u:\b)",
            Some(validate::phone),
        ),
        Pattern::checked(
            "PHONE",
            r"(?-u:\b)0[1-9][0-9]{0,3}[ -][0-9]{3,4}[ -]?[0-9]{3,4}(?-u:\b)",
            Some(validate::phone),
        ),
        Pattern::checked(
            "IP_ADDRESS",
            r"(?-u:\b)(?:[0-9]{1,3}\.){3}[0-9]{1,3}(?-u:\b)",
            Some(validate::ipv4),
        ),
        Pattern::checked(
            "IP_ADDRESS",
            r"(?i:(?:[0-9a-f]{1,4}:){1,7}(?::[0-9a-f]{1,4}){1,7}|(?:[0-9a-f]{1,4}:){7}[0-9a-f]{1,4}|(?:[0-9a-f]{1,4}:){1,7}:|::(?:[0-9a-f]{1,4}:){0,6}[0-9a-f]{1,4})",
            Some(validate::ipv6),
        ),
    ]
}
