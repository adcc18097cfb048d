//! GB 32100-2015 unified social credit codes: registration authority, category, 6-digit
//! region, 9-character organisation code (GB 11714), mod-31 check character. The set of
//! characters leaves out I, O, S, V and Z.

use crate::InvalidId;

pub const CHARSET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];
const ORG_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];

fn value_of(c: u8) -> Option<u32> {
    CHARSET.iter().position(|&x| x == c).map(|p| p as u32)
}

/// The mod-31 check character for the first 17 characters (which must be in [`CHARSET`]).
pub fn check_char(first17: &[u8]) -> Option<char> {
    let mut sum = 0;
    for (c, w) in first17.iter().zip(WEIGHTS) {
        sum += value_of(*c)? * w;
    }
    Some(CHARSET[((31 - sum % 31) % 31) as usize] as char)
}

/// The GB 11714 check character of an 8-character organisation code body.
pub fn org_check_char(body: &[u8; 8]) -> char {
    let sum: u32 = body
        .iter()
        .zip(ORG_WEIGHTS)
        .map(|(c, w)| value_of(*c).unwrap_or(0) * w)
        .sum();
    match 11 - sum % 11 {
        10 => 'X',
        11 => '0',
        n => char::from_digit(n, 10).expect("digit"),
    }
}

/// Validates a code; lower-case letters are accepted.
pub fn validate(code: &str) -> Result<(), InvalidId> {
    let upper = code.to_ascii_uppercase();
    let count = upper.chars().count();
    if count != 18 {
        return Err(InvalidId::WrongLength {
            expected: 18,
            found: count,
        });
    }
    if let Some((position, character)) = upper
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii() || value_of(*c as u8).is_none())
    {
        return Err(InvalidId::BadCharacter {
            position: position + 1,
            character,
        });
    }
    let bytes = upper.as_bytes();
    if let Some((position, &c)) = bytes[2..8]
        .iter()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_digit())
    {
        return Err(InvalidId::BadCharacter {
            position: position + 3,
            character: c as char,
        });
    }
    let expected = check_char(&bytes[..17]).expect("charset checked");
    let found = bytes[17] as char;
    if found != expected {
        return Err(InvalidId::BadCheck { expected, found });
    }
    Ok(())
}

/// Builds a valid code. `authority_category` is e.g. "91" (enterprise registered with market
/// regulation) or "11" (government organ); `org_body` is 8 characters of [`CHARSET`].
pub fn build(authority_category: &str, region: u32, org_body: &[u8; 8]) -> String {
    let org = format!(
        "{}{}",
        std::str::from_utf8(org_body).expect("ascii"),
        org_check_char(org_body)
    );
    let body = format!("{authority_category}{region:06}{org}");
    let check = check_char(body.as_bytes()).expect("built from charset");
    format!("{body}{check}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn published_codes_validate() {
        // Codes printed on public business licences.
        assert_eq!(validate("91350100M000100Y43"), Ok(()));
        assert_eq!(validate("91350100m000100y43"), Ok(()));
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(matches!(
            validate("91350100M000100Y44"),
            Err(InvalidId::BadCheck { found: '4', .. })
        ));
        assert!(matches!(
            validate("91350100M00010OY43"),
            Err(InvalidId::BadCharacter {
                position: 15,
                character: 'O'
            })
        ));
        assert!(matches!(
            validate("9135"),
            Err(InvalidId::WrongLength { found: 4, .. })
        ));
    }

    fn org_body() -> impl Strategy<Value = [u8; 8]> {
        proptest::array::uniform8(proptest::sample::select(CHARSET.to_vec()))
    }

    proptest! {
        #[test]
        fn built_codes_validate(body in org_body(), region in 440600u32..440700) {
            let code = build("91", region, &body);
            prop_assert_eq!(validate(&code), Ok(()));
        }

        #[test]
        fn any_single_character_change_is_caught(body in org_body(), pos in 0usize..18, delta in 1usize..31) {
            let code = build("91", 440605, &body);
            let mut bytes = code.into_bytes();
            let old = CHARSET.iter().position(|&c| c == bytes[pos]).unwrap();
            bytes[pos] = CHARSET[(old + delta) % 31];
            let changed = String::from_utf8(bytes).unwrap();
            prop_assert!(validate(&changed).is_err());
        }

        #[test]
        fn validate_never_panics(s in "\\PC{0,25}") {
            let _ = validate(&s);
        }
    }
}
