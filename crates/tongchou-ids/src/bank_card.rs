//! Bank card numbers (UnionPay and others): 15–19 digits passing the Luhn check.

/// The Luhn sum of `digits`, or `None` if any character is not an ASCII digit.
fn luhn_sum(digits: &str) -> Option<u32> {
    digits.bytes().rev().enumerate().try_fold(0, |sum, (i, b)| {
        let d = u32::from(b.checked_sub(b'0').filter(|d| *d <= 9)?);
        let d = if i % 2 == 1 {
            d * 2 - if d > 4 { 9 } else { 0 }
        } else {
            d
        };
        Some(sum + d)
    })
}

/// True when `digits` (only ASCII digits) passes the Luhn check.
pub fn luhn_ok(digits: &str) -> bool {
    !digits.is_empty() && luhn_sum(digits).is_some_and(|s| s % 10 == 0)
}

/// The Luhn check digit to append to `body` (ASCII digits).
pub fn luhn_check_digit(body: &str) -> char {
    let sum = luhn_sum(&format!("{body}0")).expect("body must be digits");
    char::from_digit((10 - sum % 10) % 10, 10).expect("digit")
}

/// True for 15–19 digits (spaces allowed) passing Luhn.
pub fn is_bank_card(text: &str) -> bool {
    let digits: String = text.chars().filter(|c| *c != ' ').collect();
    (15..=19).contains(&digits.len()) && luhn_ok(&digits)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_numbers() {
        assert!(luhn_ok("79927398713"));
        assert!(!luhn_ok("79927398710"));
        assert!(is_bank_card("4111 1111 1111 1111"));
        assert!(!is_bank_card("4111 1111 1111 1112"));
        assert!(!is_bank_card("79927398713"), "too short for a card");
    }

    proptest! {
        #[test]
        fn appended_check_digit_passes(body in "62[0-9]{14}") {
            let card = format!("{body}{}", luhn_check_digit(&body));
            prop_assert!(is_bank_card(&card));
        }

        #[test]
        fn a_changed_digit_fails(body in "62[0-9]{14}", pos in 0usize..16, delta in 1u8..10) {
            let card = format!("{body}{}", luhn_check_digit(&body));
            let mut bytes = card.into_bytes();
            bytes[pos] = b'0' + (bytes[pos] - b'0' + delta) % 10;
            prop_assert!(!luhn_ok(std::str::from_utf8(&bytes).unwrap()));
        }
    }
}
