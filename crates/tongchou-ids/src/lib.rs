//! Validators and generators for the identifiers Chinese government data is keyed by.
//!
//! - [`citizen_id`]: GB 11643 citizen identity numbers (ISO 7064 MOD 11-2 check character).
//! - [`credit_code`]: GB 32100 unified social credit codes (31-character set, mod-31 check),
//!   which since 2015 are also the business-licence number.
//! - [`mobile`] and [`bank_card`] (Luhn) for personal data detection.
//!
//! Real exports contain invalid codes, so validators return a reason that a person can act
//! on instead of a bare `false`; callers report, they never drop silently.

pub mod bank_card;
pub mod citizen_id;
pub mod credit_code;
pub mod mobile;

/// Why an identifier is not valid: shown to stewards in quarantine reports.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    #[error("length is {found}, expected {expected}")]
    WrongLength { expected: usize, found: usize },
    #[error("character '{character}' at position {position} is not allowed here")]
    BadCharacter { position: usize, character: char },
    #[error("region code {0} is not a known province")]
    UnknownRegion(String),
    #[error("birth date {0} does not exist or is out of range")]
    BadBirthDate(String),
    #[error("check character is '{found}', expected '{expected}'")]
    BadCheck { expected: char, found: char },
}
