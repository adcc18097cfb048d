use proptest::prelude::*;

use super::*;

fn key(n: u8) -> UnitKey {
    UnitKey::new([n; 32])
}

#[test]
fn every_mask_the_model_lists_parses_and_nothing_else_does() {
    for name in tongchou_model::MASKS {
        let spec = if name == "bucket" {
            "bucket(1000)"
        } else {
            name
        };
        Mask::parse(spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
    }
    assert!(matches!(Mask::parse("md5"), Err(MaskError::Unknown(_))));
    assert!(Mask::parse("keep_first_last(a)").is_err());
    assert!(Mask::parse("keep_first_last(-1,2)").is_err());
    assert!(Mask::parse("bucket(0)").is_err());
    assert!(Mask::parse("mobile(3)").is_err());
    assert_eq!(
        Mask::parse("keep_first_last(2, 3)").unwrap(),
        Mask::KeepFirstLast { first: 2, last: 3 }
    );
    assert_eq!(
        Mask::parse("round(-2)").unwrap(),
        Mask::Round { digits: -2 }
    );
    assert_eq!(
        Mask::parse("constant('不公开')").unwrap(),
        Mask::Constant("不公开".into())
    );
}

#[test]
fn chinese_data_is_masked_as_people_expect() {
    assert_eq!(chinese_name("张三"), "张*");
    assert_eq!(chinese_name("张小明"), "张**");
    assert_eq!(chinese_name("欧阳小明"), "欧阳**");
    assert_eq!(
        chinese_name("欧阳"),
        "欧*",
        "two characters: a surname and a given name"
    );
    assert_eq!(chinese_name("张"), "*");
    assert_eq!(citizen_id("44060519800101123X"), "440605********123X");
    assert_eq!(citizen_id("440605800101123"), "440605*****1123");
    assert_eq!(citizen_id("4406051980"), "**********");
    assert_eq!(mobile("13812341234"), "138****1234");
    assert_eq!(mobile("+86 138-1234-1234"), "138****1234");
    assert_eq!(mobile("0757-8628"), "*********");
    assert_eq!(
        Mask::AddressDistrict
            .text("广东省佛山市南海区桂城街道南海大道1号", &key(1))
            .unwrap(),
        "广东省佛山市南海区***"
    );
    assert_eq!(
        Mask::AddressTown
            .text("广东省佛山市南海区桂城街道南海大道1号", &key(1))
            .unwrap(),
        "广东省佛山市南海区桂城街道***"
    );
    assert_eq!(
        Mask::AddressTown.text("南海大道1号", &key(1)).unwrap(),
        "***"
    );
    assert_eq!(bank_card("6222 0212 3456 7890 123"), "***************0123");
    assert_eq!(bank_card("1234"), "****");
    assert_eq!(
        Mask::DateMonth.text("1980-05-17", &key(1)).unwrap(),
        "1980-05-01"
    );
    assert_eq!(
        Mask::DateYear
            .date("1980-05-17".parse().unwrap())
            .unwrap()
            .to_string(),
        "1980-01-01"
    );
    assert_eq!(Mask::Round { digits: -2 }.number(12_345.6), Some(12_300.0));
    assert_eq!(
        Mask::Bucket { width: 1000.0 }
            .text("12345.6", &key(1))
            .unwrap(),
        "12000"
    );
    assert_eq!(Mask::Null.text("x", &key(1)), None);
}

#[test]
fn pseudonyms_join_within_a_unit_and_not_across() {
    let id = "44060519800101123X";
    let a = key(1).pseudonym(id);
    assert_eq!(a, key(1).pseudonym(id));
    assert_ne!(a, key(2).pseudonym(id));
    assert_ne!(a, key(1).pseudonym("44060519800101124X"));
    assert_eq!(a.len(), 21);
    assert!(!a.contains("4406"));
    let derived = UnitKey::derive(&[7; 32], "11440605752031440X");
    assert_eq!(
        derived.pseudonym(id),
        UnitKey::derive(&[7; 32], "11440605752031440X").pseudonym(id)
    );
    assert_ne!(
        derived.pseudonym(id),
        UnitKey::derive(&[7; 32], "11440605752000003X").pseudonym(id)
    );
    assert_eq!(
        format!("{derived:?}"),
        "UnitKey(…)",
        "keys stay out of logs"
    );
}

#[test]
fn fpe_keeps_the_format_and_only_the_key_undoes_it() {
    let id = "44060519800101123X";
    let masked = key(1).fpe_encrypt(id);
    assert_eq!(masked.len(), 18);
    assert_ne!(masked, id);
    assert_eq!(key(1).fpe_decrypt(&masked), id);
    assert_ne!(key(2).fpe_decrypt(&masked), id);
    let card = "6222-0212-3456-7890";
    let masked = key(1).fpe_encrypt(card);
    assert_eq!(masked.chars().filter(|c| *c == '-').count(), 3);
    assert!(masked.chars().all(|c| c.is_ascii_digit() || c == '-'));
    assert_eq!(key(1).fpe_decrypt(&masked), card);
    assert_eq!(
        key(1).fpe_encrypt("123"),
        "***",
        "too small a domain to encrypt"
    );
}

proptest! {
    #[test]
    fn keep_first_last_never_passes_a_short_value_through(value in "\\PC{0,12}", first in 0usize..5, last in 0usize..5) {
        let masked = keep_first_last(&value, first, last);
        let n = value.chars().count();
        prop_assert_eq!(masked.chars().count(), n.max(1));
        if n <= first + last {
            prop_assert!(masked.chars().all(|c| c == HIDDEN));
        } else {
            prop_assert_eq!(masked.chars().filter(|c| *c == HIDDEN).count() >= n - first - last, true);
            let kept: String = value.chars().take(first).collect();
            prop_assert!(masked.starts_with(&kept));
        }
    }

    #[test]
    fn names_never_show_the_given_name(surname in "[张王李陈黄]", given in "[明华伟芳]{1,3}") {
        let masked = chinese_name(&format!("{surname}{given}"));
        prop_assert!(masked.starts_with(&surname));
        prop_assert!(masked.chars().skip(1).all(|c| c == HIDDEN));
    }

    #[test]
    fn citizen_ids_keep_region_and_check_digits_only(id in "[1-6][0-9]{16}[0-9X]") {
        let masked = citizen_id(&id);
        prop_assert_eq!(&masked[..6], &id[..6]);
        prop_assert_eq!(&masked[14..], &id[14..]);
        prop_assert_eq!(&masked[6..14], "********");
    }

    #[test]
    fn fpe_round_trips_and_keeps_the_alphabet(value in "[0-9A-Z]{6,24}", k in 1u8..20) {
        let masked = key(k).fpe_encrypt(&value);
        prop_assert_eq!(masked.len(), value.len());
        prop_assert!(masked.chars().all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()));
        prop_assert_eq!(key(k).fpe_decrypt(&masked), value);
    }

    #[test]
    fn pseudonyms_are_fixed_length_and_keyed(value in "\\PC{1,30}", k in 1u8..20) {
        let p = key(k).pseudonym(&value);
        prop_assert_eq!(p.len(), 21);
        prop_assert_ne!(p, key(k + 1).pseudonym(&value));
    }

    #[test]
    fn decimals_round_and_bucket_exactly_as_their_text_would(v in -10i128.pow(17)..10i128.pow(17), digits in -3i32..5, width in 1u32..100_000) {
        let at2 = |d: i128| Mask::Round { digits }.decimal(d, 2);
        let r = at2(v).unwrap();
        let kept = Mask::Round { digits }.decimal_scale(2);
        let back = r * 10i128.pow(u32::from(2 - kept));
        let step = 10i128.pow((2 - digits).max(0) as u32);
        prop_assert_eq!(back % step, 0);
        prop_assert!((back - v).abs() * 2 <= step);
        let b = Mask::Bucket { width: f64::from(width) }.decimal(v, 2).unwrap();
        prop_assert!(b <= v && v - b < i128::from(width) * 100);
    }

    #[test]
    fn buckets_and_rounding_stay_close_and_coarse(v in -1e9f64..1e9, width in 1u32..100_000) {
        let b = Mask::Bucket { width: width as f64 }.number(v).unwrap();
        prop_assert!(b <= v && v - b < width as f64);
        let r = Mask::Round { digits: -2 }.number(v).unwrap();
        prop_assert!((r - v).abs() <= 50.0 + 1e-6);
        prop_assert_eq!(r % 100.0, 0.0);
    }
}

#[test]
fn decimals_are_masked_without_binary_noise() {
    let round = |digits, v, scale| Mask::Round { digits }.decimal(v, scale);
    assert_eq!(round(0, 123_450, 2), Some(1235), "1234.50 → 1235");
    assert_eq!(round(1, -123_449, 2), Some(-12_345), "-1234.49 → -1234.5");
    assert_eq!(round(-3, 123_450, 2), Some(1000), "→ 1000");
    assert_eq!(
        round(4, 123_450, 2),
        Some(123_450),
        "more places than kept: as it is"
    );
    assert_eq!(Mask::Round { digits: 4 }.decimal_scale(2), 2);
    let bucket = |width, v| Mask::Bucket { width }.decimal(v, 2);
    assert_eq!(bucket(0.1, 123_456), Some(123_450), "1234.56 → 1234.50");
    assert_eq!(bucket(1000.0, -50), Some(-100_000), "-0.50 → -1000.00");
    assert_eq!(bucket(0.001, 5), None, "a width finer than a fen");
    assert_eq!(Mask::Null.decimal(1, 2), None);
}

/// Pseudonyms are kept by consumers (exchanged files, saved results): the derivation must
/// never drift. Expected value computed independently (Python's `hmac`).
#[test]
fn pseudonyms_are_stable_hmac_sha256_in_base32() {
    assert_eq!(
        key(9).pseudonym("440604197710265508"),
        "PKLWE5NEM5FUE5M5BE5G2"
    );
    assert_eq!(
        key(9).pseudonym(" 440604197710265508 "),
        "PKLWE5NEM5FUE5M5BE5G2"
    );
}

#[test]
fn batch_pseudonyms_match_single_ones_and_are_remembered() {
    let k = key(3);
    let values = [
        Some("440604197710265508"),
        None,
        Some(" 440604197710265508"),
        Some("甲"),
    ];
    for _ in 0..2 {
        let made = k.pseudonyms(&values);
        for (value, pseudonym) in values.iter().zip(&made) {
            assert_eq!(
                value.map(|v| k.pseudonym(v)),
                pseudonym.map(|p| String::from_utf8(p.to_vec()).unwrap())
            );
        }
    }
    // Another key remembers its own.
    let other = key(4).pseudonyms(&values);
    assert_ne!(other[0], k.pseudonyms(&values)[0]);
}

#[test]
fn remembered_pseudonyms_are_recalled_by_their_own_key_only() {
    let k = key(5);
    let made = k.pseudonym("440604197710265508");
    assert_eq!(k.recall(std::slice::from_ref(&made)), [None]);
    k.pseudonyms(&[Some(" 440604197710265508 ")]);
    assert_eq!(
        k.recall(&[made.clone(), "P".repeat(21), "short".into()]),
        [Some("440604197710265508".to_string()), None, None]
    );
    assert_eq!(
        k.clone().recall(std::slice::from_ref(&made))[0].as_deref(),
        Some("440604197710265508")
    );
    assert_eq!(key(6).recall(&[made]), [None]);
}
