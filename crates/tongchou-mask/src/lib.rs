//! De-identification (脱敏): the masks a providing unit's grant can name for a field
//! (DESIGN.md §5), as pure functions of the raw value. Governed query applies them inside
//! the engine; nothing here knows about SQL.
//!
//! Rules every mask keeps: a value too short to mask is masked whole, never passed
//! through; a mask is computed from the raw value (masks never chain); keyed masks
//! (`pseudonym`, `fpe`) take a per-consumer-unit key, so their outputs join inside one
//! unit's queries and are useless across units, and without the key a dictionary of IDs
//! does not reverse them.
//!
//! Spec syntax (as grants store it): `name` or `name(arg, …)`, e.g. `keep_first_last(1,1)`,
//! `round(-2)`, `bucket(1000)`, `constant('***')`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aes::Aes256;
use fpe::ff1::{FF1, FlexibleNumeralString};

use hmac::{Hmac, Mac};
use jiff::civil::Date;
use sha2::Sha256;

/// The character that replaces what a mask hides.
pub const HIDDEN: char = '*';

#[derive(Debug, Clone, PartialEq)]
pub enum Mask {
    /// Keep the first `first` and last `last` characters.
    KeepFirstLast {
        first: usize,
        last: usize,
    },
    /// 张** (the surname, compound surnames included).
    ChineseName,
    /// 440605********123X: region and the last four characters.
    CitizenId,
    /// 138****1234.
    Mobile,
    /// Cut after the district or county (区 / 县 / 市).
    AddressDistrict,
    /// Cut after the town or sub-district (镇 / 街道 / 乡).
    AddressTown,
    /// The last four digits only.
    BankCard,
    /// The first day of the year.
    DateYear,
    /// The first day of the month.
    DateMonth,
    /// Round to `digits` decimal places (negative: to tens, hundreds, …).
    Round {
        digits: i32,
    },
    /// The lower bound of the bucket of `width`.
    Bucket {
        width: f64,
    },
    Null,
    Constant(String),
    /// A keyed pseudonym: HMAC-SHA-256 under the consumer unit's key.
    Pseudonym,
    /// NIST FF1 format-preserving encryption under the consumer unit's key.
    Fpe,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    #[error("'{0}' is not a mask; known masks: {known}", known = tongchou_model::MASKS.join(", "))]
    Unknown(String),
    #[error("mask '{0}': {1}")]
    BadArguments(String, String),
}

fn args_of(spec: &str) -> Result<(&str, Vec<&str>), MaskError> {
    let spec = spec.trim();
    match spec.split_once('(') {
        None => Ok((spec, Vec::new())),
        Some((name, rest)) => {
            let inner = rest
                .strip_suffix(')')
                .ok_or_else(|| MaskError::BadArguments(spec.into(), "missing ')'".into()))?;
            let args = inner
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .collect();
            Ok((name.trim(), args))
        }
    }
}

impl Mask {
    pub fn parse(spec: &str) -> Result<Mask, MaskError> {
        let (name, args) = args_of(spec)?;
        let bad = |why: &str| MaskError::BadArguments(spec.to_string(), why.to_string());
        let number = |i: usize, default: i64| -> Result<i64, MaskError> {
            match args.get(i) {
                None => Ok(default),
                Some(a) => a.parse().map_err(|_| bad("arguments are whole numbers")),
            }
        };
        let no_args = |mask: Mask| {
            if args.is_empty() {
                Ok(mask)
            } else {
                Err(bad("takes no arguments"))
            }
        };
        match name {
            "keep_first_last" => {
                let (first, last) = (number(0, 1)?, number(1, 1)?);
                if first < 0 || last < 0 {
                    return Err(bad("counts cannot be negative"));
                }
                Ok(Mask::KeepFirstLast {
                    first: first as usize,
                    last: last as usize,
                })
            }
            "chinese_name" => no_args(Mask::ChineseName),
            "citizen_id" => no_args(Mask::CitizenId),
            "mobile" => no_args(Mask::Mobile),
            "address_district" => no_args(Mask::AddressDistrict),
            "address_town" => no_args(Mask::AddressTown),
            "bank_card" => no_args(Mask::BankCard),
            "date_year" => no_args(Mask::DateYear),
            "date_month" => no_args(Mask::DateMonth),
            "round" => Ok(Mask::Round {
                digits: number(0, 0)? as i32,
            }),
            "bucket" => {
                let width: f64 = args
                    .first()
                    .ok_or_else(|| bad("needs the bucket width, e.g. bucket(1000)"))?
                    .parse()
                    .map_err(|_| bad("the width is a number"))?;
                if !(width > 0.0 && width.is_finite()) {
                    return Err(bad("the width must be positive"));
                }
                Ok(Mask::Bucket { width })
            }
            "null" => no_args(Mask::Null),
            "constant" => Ok(Mask::Constant(
                args.first()
                    .map(|a| a.trim_matches('\'').to_string())
                    .unwrap_or_else(|| "***".into()),
            )),
            "pseudonym" => no_args(Mask::Pseudonym),
            "fpe" => no_args(Mask::Fpe),
            _ => Err(MaskError::Unknown(name.to_string())),
        }
    }

    /// True for masks that need the consumer unit's key.
    pub fn keyed(&self) -> bool {
        matches!(self, Mask::Pseudonym | Mask::Fpe)
    }

    /// Masks a text value. Dates and numbers given as text are masked as such.
    pub fn text(&self, value: &str, key: &UnitKey) -> Option<String> {
        Some(match self {
            Mask::KeepFirstLast { first, last } => keep_first_last(value, *first, *last),
            Mask::ChineseName => chinese_name(value),
            Mask::CitizenId => citizen_id(value),
            Mask::Mobile => mobile(value),
            Mask::AddressDistrict => address_cut(value, &["区", "县", "市"]),
            Mask::AddressTown => address_cut(value, &["街道", "镇", "乡"]),
            Mask::BankCard => bank_card(value),
            Mask::DateYear | Mask::DateMonth => {
                let date: Date = value.trim().get(..10)?.parse().ok()?;
                self.date(date)?.to_string()
            }
            Mask::Round { .. } | Mask::Bucket { .. } => {
                let n: f64 = value.trim().parse().ok()?;
                format_number(self.number(n)?)
            }
            Mask::Null => return None,
            Mask::Constant(c) => c.clone(),
            Mask::Pseudonym => key.pseudonym(value),
            Mask::Fpe => key.fpe_encrypt(value),
        })
    }

    /// Masks a number; `None` for masks that do not keep numbers numeric.
    pub fn number(&self, value: f64) -> Option<f64> {
        match self {
            Mask::Round { digits } => {
                let scale = 10f64.powi(*digits);
                Some((value * scale).round() / scale)
            }
            Mask::Bucket { width } => Some((value / width).floor() * width),
            _ => None,
        }
    }

    /// Masks a decimal given as its unscaled digits at `scale`, exactly (no floating point):
    /// the result is at [`Mask::decimal_scale`]. `None` for masks that do not keep numbers
    /// numeric, and for a bucket width that is no whole number of the scale's units.
    pub fn decimal(&self, unscaled: i128, scale: u8) -> Option<i128> {
        match self {
            Mask::Round { digits } => {
                let step = 10i128.checked_pow((i32::from(scale) - digits).max(0) as u32)?;
                let (quotient, rest) = (unscaled / step, unscaled % step);
                let away = i128::from(rest.unsigned_abs() * 2 >= step.unsigned_abs());
                let rounded = (quotient + away * unscaled.signum()).checked_mul(step)?;
                Some(rounded / 10i128.pow(u32::from(scale - self.decimal_scale(scale))))
            }
            Mask::Bucket { width } => {
                let width = width * 10f64.powi(i32::from(scale));
                let units = width.round() as i128;
                let whole = units > 0 && (width - units as f64).abs() < 1e-6 * width.max(1.0);
                whole.then(|| unscaled.div_euclid(units) * units)
            }
            _ => None,
        }
    }

    /// The scale of what [`Mask::decimal`] returns for a decimal at `scale`: rounding keeps
    /// only the places it rounds to.
    pub fn decimal_scale(&self, scale: u8) -> u8 {
        match self {
            Mask::Round { digits } => (*digits).clamp(0, i32::from(scale)) as u8,
            _ => scale,
        }
    }

    /// Masks a date; `None` for masks that do not keep dates dates.
    pub fn date(&self, value: Date) -> Option<Date> {
        match self {
            Mask::DateYear => Date::new(value.year(), 1, 1).ok(),
            Mask::DateMonth => Date::new(value.year(), value.month(), 1).ok(),
            _ => None,
        }
    }
}

fn format_number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        format!("{n}")
    }
}

fn hidden(n: usize) -> String {
    std::iter::repeat_n(HIDDEN, n).collect()
}

/// Keeps `first` and `last` characters; a value of `first + last` characters or fewer is
/// masked whole, so nothing is passed through.
pub fn keep_first_last(value: &str, first: usize, last: usize) -> String {
    let chars: Vec<char> = value.chars().collect();
    if chars.len() <= first + last {
        return hidden(chars.len().max(1));
    }
    let mut out: String = chars[..first].iter().collect();
    out.push_str(&hidden(chars.len() - first - last));
    out.extend(&chars[chars.len() - last..]);
    out
}

/// Two-character surnames common in Guangdong and in the national lists.
const COMPOUND_SURNAMES: [&str; 16] = [
    "欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "令狐", "司徒", "夏侯",
    "轩辕", "长孙", "宇文", "端木",
];

/// 张三 → 张*, 张小明 → 张**, 欧阳小明 → 欧阳**; a one-character value → *.
pub fn chinese_name(value: &str) -> String {
    let value = value.trim();
    let surname = COMPOUND_SURNAMES
        .iter()
        .find(|s| value.starts_with(*s) && value.chars().count() > 2)
        .map_or(1, |s| s.chars().count());
    keep_first_last(value, surname, 0)
}

/// 440605198001011234 → 440605********1234; anything not 15 or 18 characters is masked
/// whole.
pub fn citizen_id(value: &str) -> String {
    let v = value.trim();
    match v.chars().count() {
        15 | 18 if v.is_ascii() => keep_first_last(v, 6, 4),
        n => hidden(n.max(1)),
    }
}

/// 13812341234 → 138****1234; anything else is masked whole.
pub fn mobile(value: &str) -> String {
    let digits: String = value
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .collect();
    let digits = digits.strip_prefix("+86").unwrap_or(&digits);
    if digits.len() == 11 && digits.chars().all(|c| c.is_ascii_digit()) {
        keep_first_last(digits, 3, 4)
    } else {
        hidden(value.chars().count().max(1))
    }
}

/// The address up to and including the first of `markers` after the province and city
/// (广东省佛山市南海区桂城街道… → 广东省佛山市南海区***); masked whole when none is found.
fn address_cut(value: &str, markers: &[&str]) -> String {
    let v = value.trim();
    let after = |m: &str| v.find(m).map_or(0, |i| i + m.len());
    let start = after("省").max(after("市"));
    let cut = markers
        .iter()
        .filter_map(|m| v[start..].find(m).map(|i| start + i + m.len()))
        .min();
    match cut {
        Some(end) if end < v.len() => format!("{}{}", &v[..end], hidden(3)),
        Some(end) => v[..end].to_string(),
        None => hidden(3),
    }
}

/// The last four digits.
pub fn bank_card(value: &str) -> String {
    let digits: String = value.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 12 {
        return hidden(value.chars().count().max(1));
    }
    keep_first_last(&digits, 0, 4)
}

/// The secret of one consumer unit for keyed masks: 32 bytes from the platform's key store.
#[derive(Clone)]
pub struct UnitKey {
    bytes: [u8; 32],
    /// HMAC keyed and primed for pseudonyms, cloned per value: the key's two blocks are
    /// hashed once, not for every value.
    pseudonym_mac: Hmac<Sha256>,
    /// Pseudonyms made lately under this key (clones share it): an ID recurs across rows
    /// and statements, and a lookup is cheaper than the HMAC.
    remembered: Arc<Mutex<Remembered>>,
}

/// Recent pseudonyms both ways: by value for masking, by pseudonym for the ledger's
/// subject index (which person an answer's pseudonym names).
#[derive(Default)]
struct Remembered {
    by_value: HashMap<Arc<str>, Pseudonym, ahash::RandomState>,
    by_pseudonym: HashMap<Pseudonym, Arc<str>, ahash::RandomState>,
}

impl Remembered {
    fn insert(&mut self, value: &str, pseudonym: Pseudonym) {
        let value: Arc<str> = value.into();
        self.by_pseudonym.insert(pseudonym, value.clone());
        self.by_value.insert(value, pseudonym);
    }
}

/// A pseudonym's text: `P` and 20 base-32 characters.
pub type Pseudonym = [u8; 21];

/// How many pseudonyms a key remembers (≈ 140 bytes each, both ways) before it starts
/// afresh.
const REMEMBERED: usize = 1 << 18;

impl std::fmt::Debug for UnitKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnitKey(…)")
    }
}

const DIGITS: &str = "0123456789";
const UPPER_ALNUM: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

impl UnitKey {
    pub fn new(bytes: [u8; 32]) -> UnitKey {
        let mut pseudonym_mac = Hmac::<Sha256>::new_from_slice(&bytes).expect("any key length");
        pseudonym_mac.update(b"pseudonym\0");
        UnitKey {
            bytes,
            pseudonym_mac,
            remembered: Arc::default(),
        }
    }

    /// The unit's key derived from the platform's master key, so that keys need no table
    /// of their own and a new unit has one at once.
    pub fn derive(master: &[u8; 32], unit: &str) -> UnitKey {
        let mut mac = Hmac::<Sha256>::new_from_slice(master).expect("any key length");
        mac.update(b"tongchou unit mask key\0");
        mac.update(unit.as_bytes());
        UnitKey::new(mac.finalize().into_bytes().into())
    }

    /// `P` and 20 base-32 characters of HMAC-SHA-256(key, value): the same value gives the
    /// same pseudonym for one unit, another for any other unit.
    pub fn pseudonym(&self, value: &str) -> String {
        let text = self.pseudonym_of(value);
        String::from_utf8_lossy(&text).into_owned()
    }

    fn pseudonym_of(&self, value: &str) -> Pseudonym {
        let mut mac = self.pseudonym_mac.clone();
        mac.update(value.trim().as_bytes());
        let digest = mac.finalize().into_bytes();
        let alphabet = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
        let mut out = [b'P'; 21];
        let mut bits: u64 = 0;
        let (mut have, mut written) = (0, 1);
        for byte in digest.iter().take(13) {
            bits = (bits << 8) | u64::from(*byte);
            have += 8;
            while have >= 5 && written < 21 {
                have -= 5;
                out[written] = alphabet[((bits >> have) & 31) as usize];
                written += 1;
            }
        }
        out
    }

    /// The pseudonyms of a batch of values (`None` stays `None`), remembered across
    /// batches: the lock is taken twice per batch, the HMAC only for values not seen lately.
    pub fn pseudonyms(&self, values: &[Option<&str>]) -> Vec<Option<Pseudonym>> {
        let mut out = vec![None; values.len()];
        let mut unseen = Vec::new();
        {
            let remembered = self.remembered.lock().unwrap_or_else(|p| p.into_inner());
            for (i, value) in values.iter().enumerate() {
                if let Some(value) = value {
                    match remembered.by_value.get(value.trim()) {
                        Some(known) => out[i] = Some(*known),
                        None => unseen.push(i),
                    }
                }
            }
        }
        if unseen.is_empty() {
            return out;
        }
        let made: Vec<(usize, Pseudonym)> = unseen
            .iter()
            .filter_map(|&i| values[i].map(|v| (i, self.pseudonym_of(v))))
            .collect();
        let mut remembered = self.remembered.lock().unwrap_or_else(|p| p.into_inner());
        if remembered.by_value.len() + made.len() > REMEMBERED {
            *remembered = Remembered::default();
        }
        for (i, pseudonym) in made {
            out[i] = Some(pseudonym);
            if let Some(value) = values[i] {
                remembered.insert(value.trim(), pseudonym);
            }
        }
        out
    }

    /// The values behind pseudonyms this key made lately (`None` for any it has not, or
    /// has forgotten): the subject index maps an answer's pseudonyms back without masking
    /// a whole table again.
    pub fn recall(&self, pseudonyms: &[String]) -> Vec<Option<String>> {
        let remembered = self.remembered.lock().unwrap_or_else(|p| p.into_inner());
        pseudonyms
            .iter()
            .map(|p| {
                let p: Pseudonym = p.as_bytes().try_into().ok()?;
                remembered.by_pseudonym.get(&p).map(|v| v.to_string())
            })
            .collect()
    }

    fn ff1(&self, radix: u32) -> FF1<Aes256> {
        FF1::<Aes256>::new(&self.bytes, radix).expect("radix 10 and 36 are valid")
    }

    /// FF1 over the value's alphabet (digits, or digits and upper-case letters), keeping
    /// its length and the positions of other characters. Values with fewer than six
    /// encryptable characters are masked whole: FF1 is weak on tiny domains.
    pub fn fpe_encrypt(&self, value: &str) -> String {
        self.fpe(value, true)
    }

    /// Undoes `fpe_encrypt`: for an authorised re-identification only.
    pub fn fpe_decrypt(&self, value: &str) -> String {
        self.fpe(value, false)
    }

    fn fpe(&self, value: &str, encrypt: bool) -> String {
        let upper = value.to_uppercase();
        let alphabet = if upper
            .chars()
            .all(|c| !c.is_ascii_alphanumeric() || c.is_ascii_digit())
        {
            DIGITS
        } else {
            UPPER_ALNUM
        };
        let positions: Vec<(usize, u16)> = upper
            .chars()
            .enumerate()
            .filter_map(|(i, c)| alphabet.find(c).map(|d| (i, d as u16)))
            .collect();
        if positions.len() < 6 {
            return hidden(value.chars().count().max(1));
        }
        let ff1 = self.ff1(alphabet.len() as u32);
        let numerals =
            FlexibleNumeralString::from(positions.iter().map(|p| p.1).collect::<Vec<_>>());
        let done = if encrypt {
            ff1.encrypt(b"tongchou", &numerals)
        } else {
            ff1.decrypt(b"tongchou", &numerals)
        }
        .expect("numerals are within the radix");
        let digits: Vec<u16> = done.into();
        let mut out: Vec<char> = upper.chars().collect();
        for ((i, _), d) in positions.iter().zip(digits) {
            out[*i] = alphabet.as_bytes()[d as usize] as char;
        }
        out.into_iter().collect()
    }
}

#[cfg(test)]
mod tests;
