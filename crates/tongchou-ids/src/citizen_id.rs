//! GB 11643-1999 citizen identity numbers: 6-digit region, 8-digit birth date, 3-digit
//! sequence (odd for men), ISO 7064 MOD 11-2 check character.

use crate::InvalidId;

const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const CHECK_CHARS: [char; 11] = ['1', '0', 'X', '9', '8', '7', '6', '5', '4', '3', '2'];

/// Province-level codes of GB/T 2260 (first two digits of a region code).
const PROVINCES: [u32; 34] = [
    11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50, 51, 52,
    53, 54, 61, 62, 63, 64, 65, 71, 81, 82,
];

/// The check character for the first 17 digits.
pub fn check_char(first17: &[u8; 17]) -> char {
    let sum: u32 = first17
        .iter()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    CHECK_CHARS[(sum % 11) as usize]
}

/// Validates a citizen ID; a lower-case `x` is accepted as the check character.
pub fn validate(id: &str) -> Result<(), InvalidId> {
    let bytes = id.as_bytes();
    if id.chars().count() != 18 {
        return Err(InvalidId::WrongLength {
            expected: 18,
            found: id.chars().count(),
        });
    }
    if let Some((position, character)) = id
        .chars()
        .take(17)
        .enumerate()
        .find(|(_, c)| !c.is_ascii_digit())
    {
        return Err(InvalidId::BadCharacter {
            position: position + 1,
            character,
        });
    }
    let province: u32 = id[..2].parse().unwrap_or(0);
    if !PROVINCES.contains(&province) {
        return Err(InvalidId::UnknownRegion(id[..6].to_string()));
    }
    if !is_plausible_birth_date(&id[6..14]) {
        return Err(InvalidId::BadBirthDate(id[6..14].to_string()));
    }
    let first17: &[u8; 17] = bytes[..17].try_into().expect("length checked");
    let expected = check_char(first17);
    let found = id
        .chars()
        .nth(17)
        .expect("length checked")
        .to_ascii_uppercase();
    if found != expected {
        return Err(InvalidId::BadCheck { expected, found });
    }
    Ok(())
}

/// True when `yyyymmdd` is a real calendar date between 1850 and 2099.
pub fn is_plausible_birth_date(yyyymmdd: &str) -> bool {
    let (Ok(year), Ok(month), Ok(day)) = (
        yyyymmdd[..4].parse::<u32>(),
        yyyymmdd[4..6].parse::<u32>(),
        yyyymmdd[6..8].parse::<u32>(),
    ) else {
        return false;
    };
    (1850..=2099).contains(&year)
        && (1..=12).contains(&month)
        && day >= 1
        && day <= days_in_month(year, month)
}

pub fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400) => {
            29
        }
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Builds a valid ID from its parts; `sequence` is 0..=999, odd for men.
pub fn build(region: u32, year: u32, month: u32, day: u32, sequence: u32) -> String {
    let body = format!("{region:06}{year:04}{month:02}{day:02}{sequence:03}");
    let first17: &[u8; 17] = body.as_bytes().try_into().expect("17 digits");
    format!("{body}{}", check_char(first17))
}

/// Gender encoded in a valid ID: true for male.
pub fn is_male(id: &str) -> Option<bool> {
    id.as_bytes()
        .get(16)
        .filter(|b| b.is_ascii_digit())
        .map(|b| (b - b'0') % 2 == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_valid_ids_pass() {
        // Examples published with GB 11643 explanations.
        assert_eq!(validate("11010519491231002X"), Ok(()));
        assert_eq!(validate("440524188001010014"), Ok(()));
        assert_eq!(validate("11010519491231002x"), Ok(()));
    }

    #[test]
    fn errors_name_the_problem() {
        assert_eq!(
            validate("110105194912310021"),
            Err(InvalidId::BadCheck {
                expected: 'X',
                found: '1'
            })
        );
        assert!(matches!(
            validate("1101051949123100"),
            Err(InvalidId::WrongLength { found: 16, .. })
        ));
        assert!(matches!(
            validate("11010519491331002X"),
            Err(InvalidId::BadBirthDate(_))
        ));
        assert!(matches!(
            validate("99010519491231002X"),
            Err(InvalidId::UnknownRegion(_))
        ));
        assert!(matches!(
            validate("1101O519491231002X"),
            Err(InvalidId::BadCharacter {
                position: 5,
                character: 'O'
            })
        ));
    }

    proptest! {
        #[test]
        fn built_ids_validate(region in 440600u32..440700, year in 1900u32..2025, month in 1u32..=12, day in 1u32..=28, seq in 0u32..1000) {
            let id = build(region, year, month, day, seq);
            prop_assert_eq!(validate(&id), Ok(()));
            prop_assert_eq!(is_male(&id), Some(seq % 2 == 1));
        }

        #[test]
        fn any_single_digit_change_is_caught(region in 440600u32..440700, year in 1950u32..2000, seq in 0u32..1000, pos in 0usize..17, delta in 1u8..10) {
            let id = build(region, year, 6, 15, seq);
            let mut bytes = id.into_bytes();
            bytes[pos] = b'0' + (bytes[pos] - b'0' + delta) % 10;
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(validate(&changed).is_err());
        }

        #[test]
        fn validate_never_panics(s in "\\PC{0,25}") {
            let _ = validate(&s);
        }
    }
}
