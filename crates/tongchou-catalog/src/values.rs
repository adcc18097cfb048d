//! Reading values the way departments write them: dates as `2015-06-09`, `2015/6/9`,
//! `2015年6月9日` or `20150609`, timestamps, and yes/no in Chinese or English.

use jiff::civil::{Date, DateTime};

/// Parses the date forms found in government exports.
pub fn parse_date(text: &str) -> Option<Date> {
    let t = text.trim();
    if t.len() == 8 && t.bytes().all(|b| b.is_ascii_digit()) {
        return Date::new(
            t[..4].parse().ok()?,
            t[4..6].parse().ok()?,
            t[6..8].parse().ok()?,
        )
        .ok();
    }
    let t = t
        .strip_suffix('日')
        .or_else(|| t.strip_suffix('号'))
        .unwrap_or(t);
    // Split without collecting: this runs for every date of every loaded row.
    let mut parts = t.split(['-', '/', '.', '年', '月']);
    let (year, month, day) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |p: &str| !p.is_empty() && p.len() <= 4 && p.bytes().all(|b| b.is_ascii_digit());
    if parts.next().is_some() || year.len() != 4 || ![year, month, day].into_iter().all(digits) {
        return None;
    }
    Date::new(year.parse().ok()?, month.parse().ok()?, day.parse().ok()?).ok()
}

/// Parses `2015-06-09 18:35[:00]` (or with `T`, or any date form above plus a time).
pub fn parse_timestamp(text: &str) -> Option<DateTime> {
    let t = text.trim();
    let (date, time) = t.split_once([' ', 'T'])?;
    let date = parse_date(date)?;
    let mut hms = time.trim().split(':').map(|p| p.parse::<i8>().ok());
    let (h, m) = (hms.next()??, hms.next()??);
    let s = hms.next().map_or(Some(0), |s| s).unwrap_or(0);
    date.to_datetime(jiff::civil::Time::new(h, m, s, 0).ok()?)
        .into()
}

/// 是/否, true/false, yes/no, Y/N.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "是" | "true" | "yes" | "y" | "有" => Some(true),
        "否" | "false" | "no" | "n" | "无" => Some(false),
        _ => None,
    }
}

pub fn parse_integer(text: &str) -> Option<i64> {
    let t = text.trim();
    let digits = t.strip_prefix('-').unwrap_or(t);
    if digits.len() > 1 && digits.starts_with('0') {
        return None; // a code with leading zeros, not a number
    }
    t.parse().ok()
}

pub fn parse_decimal(text: &str) -> Option<f64> {
    let t = text.trim();
    let t: std::borrow::Cow<'_, str> = if t.contains(',') {
        t.replace(',', "").into()
    } else {
        t.into()
    };
    if parse_integer(&t).is_none()
        && t.split('.')
            .next()
            .is_some_and(|i| i.len() > 1 && i.starts_with('0'))
    {
        return None;
    }
    t.parse::<f64>().ok().filter(|f| f.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn chinese_date_forms() {
        let d = Date::constant(2015, 6, 9);
        for text in [
            "2015-06-09",
            "2015/6/9",
            "2015年6月9日",
            "20150609",
            "2015.06.09",
            " 2015-6-9 ",
        ] {
            assert_eq!(parse_date(text), Some(d), "{text}");
        }
        for text in [
            "2015-02-30",
            "2015年13月1日",
            "15/6/9",
            "2015-06",
            "abc",
            "2015-06-09x",
        ] {
            assert_eq!(parse_date(text), None, "{text}");
        }
    }

    #[test]
    fn timestamps_booleans_numbers() {
        assert_eq!(
            parse_timestamp("2015-03-02 18:35:00").unwrap().to_string(),
            "2015-03-02T18:35:00"
        );
        assert_eq!(
            parse_timestamp("2015/3/2 18:35").unwrap().to_string(),
            "2015-03-02T18:35:00"
        );
        assert!(parse_timestamp("2015-03-02 25:00").is_none());
        assert_eq!(parse_bool("是"), Some(true));
        assert_eq!(parse_bool("1"), None);
        assert_eq!(parse_integer("0305123"), None);
        assert_eq!(parse_integer("-12"), Some(-12));
        assert_eq!(parse_decimal("1,234.50"), Some(1234.5));
    }

    proptest! {
        #[test]
        fn every_real_date_parses_in_every_style(y in 1900i16..2100, m in 1i8..=12, d in 1i8..=28) {
            let date = Date::new(y, m, d).unwrap();
            for text in [format!("{y}-{m:02}-{d:02}"), format!("{y}/{m}/{d}"), format!("{y}年{m}月{d}日")] {
                prop_assert_eq!(parse_date(&text), Some(date));
            }
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,30}") {
            let _ = (parse_date(&s), parse_timestamp(&s), parse_decimal(&s));
        }
    }
}
