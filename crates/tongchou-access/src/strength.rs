//! The strength a new password must have: long enough, and not among the first guesses of
//! anyone trying passwords — the most common ones (here and in China), keyboard and
//! alphabet runs, a few characters repeated, or the account's own name padded out.

use crate::AccessError;

pub const MIN_CHARS: usize = 10;
/// Longer than anyone types; Argon2 hashes any length, but a password is not a document.
pub const MAX_CHARS: usize = 256;
const MIN_DISTINCT_CHARS: usize = 5;

/// The most guessed passwords and the words the rest are built on (lower case).
const COMMON: &[&str] = &[
    "password",
    "passw0rd",
    "p@ssw0rd",
    "password1",
    "qwerty",
    "qwertyuiop",
    "qwerty123",
    "1q2w3e4r5t",
    "1qaz2wsx3edc",
    "iloveyou",
    "letmein",
    "welcome",
    "admin",
    "administrator",
    "root",
    "dragon",
    "monkey",
    "sunshine",
    "princess",
    "football",
    "baseball",
    "abc",
    "abc123",
    "a123456",
    "a123456789",
    "aa123456",
    "a1b2c3d4e5",
    "woaini",
    "woaini1314",
    "5201314",
    "520520",
    "1314520",
    "wodemima",
    "mima",
    "zhang",
    "wang",
    "china",
    "beijing",
    "shanghai",
    "guangzhou",
    "foshan",
    "nanhai",
    "tongchou",
    "zhongguo",
    "asdfghjkl",
    "zxcvbnm",
    "1234qwer",
    "qazwsx",
    "changeme",
    "test",
    "user",
    "guest",
];

/// Runs people type: the alphabet, the digits (0 after 9, as on a keyboard) and the
/// keyboard's rows and columns; each is also refused backwards.
const RUNS: &[&str] = &[
    "abcdefghijklmnopqrstuvwxyz",
    "01234567890",
    "qwertyuiopasdfghjklzxcvbnm",
    "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p",
    "!@#$%^&*()",
];

/// Refuses a new password for `name` that is too weak, saying why and what to do.
pub fn check(name: &str, password: &str) -> Result<(), AccessError> {
    match weakness(name, password) {
        Some(why) => Err(AccessError::WeakPassword(why)),
        None => Ok(()),
    }
}

fn weakness(name: &str, password: &str) -> Option<&'static str> {
    let lower = password.to_lowercase();
    let chars = lower.chars().count();
    if chars < MIN_CHARS {
        return Some("it is shorter than 10 characters");
    }
    if chars > MAX_CHARS {
        return Some("it is longer than 256 characters");
    }
    if is_common(&lower) {
        return Some("it is one of the most common passwords, or one with digits added");
    }
    if is_run(&lower) {
        return Some("it is a run of the alphabet, the digits or the keyboard");
    }
    if distinct_chars(&lower) < MIN_DISTINCT_CHARS {
        return Some("it repeats fewer than 5 different characters");
    }
    if without_name(&lower, name).chars().count() < MIN_CHARS {
        return Some("it is mostly the user name");
    }
    None
}

/// A common password, or a common word with digits or symbols before or after it.
fn is_common(lower: &str) -> bool {
    let padding = |text: &str| !text.chars().any(char::is_alphabetic);
    COMMON.iter().any(|word| {
        lower
            .match_indices(word)
            .any(|(at, _)| padding(&lower[..at]) && padding(&lower[at + word.len()..]))
    })
}

fn is_run(lower: &str) -> bool {
    RUNS.iter().any(|run| {
        let backwards: String = run.chars().rev().collect();
        run.contains(lower) || backwards.contains(lower)
    })
}

fn distinct_chars(text: &str) -> usize {
    let mut chars: Vec<char> = text.chars().collect();
    chars.sort_unstable();
    chars.dedup();
    chars.len()
}

fn without_name(lower: &str, name: &str) -> String {
    let name = name.to_lowercase();
    if name.is_empty() {
        lower.to_string()
    } else {
        lower.replace(&name, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_usual_first_guesses_are_refused() {
        for weak in [
            "1234567890",
            "0987654321",
            "password",
            "Password123",
            "qwertyuiop",
            "QWERTYUIOP",
            "11111111111",
            "woaini1314",
            "a123456789",
            "a1234567890",
            "1314woaini",
            "abcdefghijk",
            "1qaz2wsx3edc",
            "abababababab",
            "zhangwei2024",
            "!!password!!",
        ] {
            assert!(
                weakness("zhangwei", weak).is_some(),
                "{weak} should be refused"
            );
        }
    }

    #[test]
    fn ordinary_strong_passwords_pass() {
        for strong in [
            "a long enough password",
            "correct horse battery",
            "set by the bureau",
            "Tgb7-mq2x-Rk9p",
            "我的密码是长江大桥123",
            "reliable horse",
        ] {
            assert_eq!(weakness("li", strong), None, "{strong}");
        }
    }

    #[test]
    fn the_reason_names_the_rule() {
        let why = |p| check("wang_fang", p).unwrap_err().to_string();
        assert!(why("short").contains("10 characters"));
        assert!(why("wang_fang_1").contains("user name"));
        assert!(why("qazwsx!!!!").contains("common"));
    }

    proptest! {
        /// What `tongchou demo` gives its accounts always passes.
        #[test]
        fn demo_passwords_pass(p in "[a-hj-km-np-z2-9]{4}-[a-hj-km-np-z2-9]{4}-[a-hj-km-np-z2-9]{4}") {
            prop_assert_eq!(weakness("science_analyst", &p), None);
        }

        #[test]
        fn one_character_repeated_never_passes(c in any::<char>(), n in 10usize..40) {
            let p: String = std::iter::repeat_n(c, n).collect();
            prop_assert!(weakness("someone", &p).is_some());
        }

        #[test]
        fn a_run_never_passes(start in 0usize..16, len in 10usize..=26, back in any::<bool>()) {
            let run: String = RUNS[0].chars().skip(start).take(len).collect();
            prop_assume!(run.chars().count() >= MIN_CHARS);
            let p: String = if back { run.chars().rev().collect() } else { run };
            prop_assert!(weakness("someone", &p).is_some());
        }

        #[test]
        fn a_common_word_with_digits_never_passes(i in 0..COMMON.len(), digits in "[0-9]{0,6}") {
            let p = format!("{}{digits}", COMMON[i]);
            prop_assert!(weakness("someone", &p).is_some());
        }
    }
}
