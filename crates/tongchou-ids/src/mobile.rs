//! Mainland mobile numbers: 11 digits, `1` then `3`–`9`; an optional `+86`/`86` prefix and
//! separators are tolerated when detecting.

/// Digits of a mobile number without country prefix or separators, if it is one.
pub fn normalize(text: &str) -> Option<String> {
    let digits: String = text
        .trim()
        .trim_start_matches('+')
        .chars()
        .filter(|c| !matches!(c, ' ' | '-'))
        .collect();
    let digits = digits
        .strip_prefix("86")
        .filter(|rest| rest.len() == 11)
        .unwrap_or(&digits);
    let bytes = digits.as_bytes();
    (bytes.len() == 11
        && bytes.iter().all(u8::is_ascii_digit)
        && bytes[0] == b'1'
        && (b'3'..=b'9').contains(&bytes[1]))
    .then(|| digits.to_string())
}

pub fn is_mobile(text: &str) -> bool {
    normalize(text).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_mobile_numbers() {
        assert!(is_mobile("13812341234"));
        assert!(is_mobile("+86 138-1234-1234"));
        assert!(!is_mobile("12812341234"));
        assert!(!is_mobile("0757-86281234"));
        assert!(!is_mobile("1381234123"));
    }
}
