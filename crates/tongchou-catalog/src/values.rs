//! Reading values the way departments write them: dates as `2015-06-09`, `2015/6/9`,
//! `2015年6月9日` or `20150609`, timestamps, and yes/no in Chinese or English.

use jiff::civil::{Date, DateTime};
use tongchou_model::DecimalType;

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

/// A decimal number exactly as written: `unscaled` × 10^-`scale` (`1234.50` is 123450 and
/// 2), never through binary floating point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decimal {
    pub unscaled: i128,
    /// Digits after the point as written, trailing zeros included (so `1234.50` keeps its
    /// cents); 0 for a whole number.
    pub scale: u32,
}

/// Why a text is not a [`Decimal`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotDecimal {
    NotANumber,
    /// More significant digits than 38, the most any decimal field keeps.
    TooManyDigits,
}

impl Decimal {
    /// The value with `scale` digits after the point, if that needs no rounding.
    pub fn rescaled(self, scale: u32) -> Option<i128> {
        if scale >= self.scale {
            self.unscaled
                .checked_mul(10i128.checked_pow(scale - self.scale)?)
        } else {
            let divisor = 10i128.checked_pow(self.scale - scale)?;
            (self.unscaled % divisor == 0).then(|| self.unscaled / divisor)
        }
    }

    /// The value as `decimal`'s unscaled integer, if it fits without rounding.
    pub fn fit(self, decimal: DecimalType) -> Option<i128> {
        let value = self.rescaled(u32::from(decimal.scale))?;
        let limit = 10i128.checked_pow(u32::from(decimal.precision))?;
        (value.unsigned_abs() < limit.unsigned_abs()).then_some(value)
    }

    /// Digits before the point (none for `0.5`).
    pub fn integer_digits(self) -> u32 {
        10u128.checked_pow(self.scale).map_or(0, |p| {
            (self.unscaled.unsigned_abs() / p)
                .checked_ilog10()
                .map_or(0, |d| d + 1)
        })
    }
}

/// Parses a decimal as departments write it (`1,234.50`, `-0.5`, `.5`, `1.5E3`) exactly.
/// Whole numbers with leading zeros are codes, not numbers.
pub fn parse_decimal(text: &str) -> Result<Decimal, NotDecimal> {
    let t = text.trim();
    let unsigned = t.strip_prefix(['-', '+']).unwrap_or(t);
    let (mantissa, exponent) = match unsigned.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().map_err(|_| NotDecimal::NotANumber)?),
        None => (unsigned, 0),
    };
    let (grouped, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let integer: std::borrow::Cow<'_, str> = if grouped.contains(',') {
        grouped.replace(',', "").into()
    } else {
        grouped.into()
    };
    let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
    if integer.len() + fraction.len() == 0
        || grouped.starts_with(',')
        || !digits(&integer)
        || !digits(fraction)
        || (integer.len() > 1 && integer.starts_with('0'))
    {
        return Err(NotDecimal::NotANumber);
    }
    // Trailing zeros are dropped only when the digits would not fit otherwise.
    let (fraction, magnitude) = [fraction, fraction.trim_end_matches('0')]
        .into_iter()
        .find_map(|f| Some((f, unscaled(&integer, f)?)))
        .ok_or(NotDecimal::TooManyDigits)?;
    let value = if t.starts_with('-') {
        -magnitude
    } else {
        magnitude
    };
    let scale = fraction.len() as i64 - i64::from(exponent);
    if let Ok(scale) = u32::try_from(scale) {
        return Ok(Decimal {
            unscaled: value,
            scale,
        });
    }
    u32::try_from(-scale)
        .ok()
        .and_then(|places| value.checked_mul(10i128.checked_pow(places)?))
        .map(|unscaled| Decimal { unscaled, scale: 0 })
        .ok_or(NotDecimal::TooManyDigits)
}

/// The digits of `integer` then `fraction` as one number, if they fit.
fn unscaled(integer: &str, fraction: &str) -> Option<i128> {
    integer
        .bytes()
        .chain(fraction.bytes())
        .try_fold(0i128, |n, b| {
            n.checked_mul(10)?.checked_add(i128::from(b - b'0'))
        })
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
        assert_eq!(parse_integer("0305123"), None);
    }

    fn decimal(unscaled: i128, scale: u32) -> Result<Decimal, NotDecimal> {
        Ok(Decimal { unscaled, scale })
    }

    #[test]
    fn decimals_are_read_exactly_as_written() {
        assert_eq!(parse_decimal("1,234.50"), decimal(123_450, 2));
        assert_eq!(parse_decimal(" -0.10 "), decimal(-10, 2));
        assert_eq!(parse_decimal(".5"), decimal(5, 1));
        assert_eq!(parse_decimal("7."), decimal(7, 0));
        assert_eq!(parse_decimal("1.5E3"), decimal(1500, 0));
        assert_eq!(parse_decimal("25e-4"), decimal(25, 4));
        for not in [
            "", "-", ".", "abc", "1.2.3", "0305", "1e", ",5", "NaN", "inf", "1 000",
        ] {
            assert_eq!(parse_decimal(not), Err(NotDecimal::NotANumber), "{not}");
        }
        let long = format!("1.{}", "0".repeat(60));
        assert_eq!(parse_decimal(&long), decimal(1, 0));
        assert_eq!(
            parse_decimal(&"9".repeat(40)),
            Err(NotDecimal::TooManyDigits)
        );
    }

    #[test]
    fn a_decimal_fits_a_field_only_without_rounding() {
        let money = DecimalType {
            precision: 6,
            scale: 2,
        };
        let fit = |t: &str| parse_decimal(t).unwrap().fit(money);
        assert_eq!(fit("1234.5"), Some(123_450));
        assert_eq!(
            fit("1234.500"),
            Some(123_450),
            "trailing zeros lose nothing"
        );
        assert_eq!(fit("-9999.99"), Some(-999_999));
        assert_eq!(fit("1234.505"), None, "a third place would be rounded");
        assert_eq!(fit("10000"), None, "five digits before the point");
        assert_eq!(parse_decimal("1234.50").unwrap().integer_digits(), 4);
        assert_eq!(parse_decimal("0.05").unwrap().integer_digits(), 0);
    }

    proptest! {
        #[test]
        fn canonical_decimals_read_back_to_their_digits(unscaled in any::<i64>(), scale in 0u32..12) {
            let digits = unscaled.unsigned_abs().to_string();
            let digits = format!("{}{digits}", "0".repeat((scale as usize + 1).saturating_sub(digits.len())));
            let (whole, places) = digits.split_at(digits.len() - scale as usize);
            let sign = if unscaled < 0 { "-" } else { "" };
            let text = if scale == 0 { format!("{sign}{whole}") } else { format!("{sign}{whole}.{places}") };
            prop_assert_eq!(parse_decimal(&text), decimal(i128::from(unscaled), scale));
        }

        #[test]
        fn every_real_date_parses_in_every_style(y in 1900i16..2100, m in 1i8..=12, d in 1i8..=28) {
            let date = Date::new(y, m, d).unwrap();
            for text in [format!("{y}-{m:02}-{d:02}"), format!("{y}/{m}/{d}"), format!("{y}年{m}月{d}日")] {
                prop_assert_eq!(parse_date(&text), Some(date));
            }
        }

        #[test]
        fn parsers_never_panic(s in "\\PC{0,30}") {
            let _ = (parse_date(&s), parse_timestamp(&s), parse_decimal(&s).map(Decimal::integer_digits));
        }
    }
}
