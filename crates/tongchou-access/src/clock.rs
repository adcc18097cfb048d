//! Time as the access rules see it: timestamps stored in one sortable UTC form, dates read in
//! China Standard Time, and working days (Monday–Friday, corrected by the bureau's calendar
//! of public holidays and make-up working days).

use std::collections::HashMap;

use jiff::Timestamp;
use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use sqlx::SqlitePool;

use crate::AccessError;

/// Working days a steward has to answer a request before the bureau is told.
pub const ANSWER_WITHIN_WORKING_DAYS: usize = 10;

pub fn china() -> TimeZone {
    TimeZone::fixed(jiff::tz::offset(8))
}

/// The stored form: second precision, UTC, so text order is time order.
pub fn stamp(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn parse_stamp(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

pub fn today() -> Date {
    Timestamp::now().to_zoned(china()).date()
}

/// Reads `YYYY-MM-DD` (or `YYYY/MM/DD`, `YYYY年M月D日`) as a date.
pub fn parse_date(text: &str) -> Result<Date, AccessError> {
    let normalised: String = text
        .trim()
        .replace(['/', '年', '月'], "-")
        .trim_end_matches('日')
        .to_string();
    let mut parts = normalised.split('-').map(|p| p.parse::<i16>());
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(Ok(y)), Some(Ok(m)), Some(Ok(d)), None) => Date::new(y, m as i8, d as i8).ok(),
        _ => None,
    }
    .ok_or_else(|| AccessError::Invalid(format!("'{text}' is not a date: write it as 2027-06-30")))
}

/// The first instant after `day` ends in China: a grant "until 2027-06-30" holds all that day.
pub fn end_of_day(day: Date) -> Timestamp {
    let next = day.tomorrow().unwrap_or(day);
    next.to_zoned(china())
        .map(|z| z.timestamp())
        .unwrap_or(Timestamp::MAX)
}

pub fn start_of_day(day: Date) -> Timestamp {
    day.to_zoned(china())
        .map(|z| z.timestamp())
        .unwrap_or(Timestamp::MIN)
}

/// The bureau's exceptions to the Monday–Friday week.
#[derive(Debug, Default, Clone)]
pub struct Calendar {
    exceptions: HashMap<Date, bool>,
}

impl Calendar {
    pub async fn load(pool: &SqlitePool) -> Result<Calendar, AccessError> {
        let rows: Vec<(String, String)> = sqlx::query_as("SELECT day, kind FROM calendar")
            .fetch_all(pool)
            .await?;
        let exceptions = rows
            .into_iter()
            .filter_map(|(day, kind)| Some((day.parse().ok()?, kind == "workday")))
            .collect();
        Ok(Calendar { exceptions })
    }

    pub fn is_working_day(&self, day: Date) -> bool {
        self.exceptions.get(&day).copied().unwrap_or(!matches!(
            day.weekday(),
            Weekday::Saturday | Weekday::Sunday
        ))
    }

    /// The last day of the answer period for a request filed at `filed`: the day filed does
    /// not count, then `ANSWER_WITHIN_WORKING_DAYS` working days.
    pub fn answer_due(&self, filed: Timestamp) -> Date {
        let mut day = filed.to_zoned(china()).date();
        let mut counted = 0;
        while counted < ANSWER_WITHIN_WORKING_DAYS {
            day = match day.tomorrow() {
                Ok(next) => next,
                Err(_) => return day,
            };
            if self.is_working_day(day) {
                counted += 1;
            }
        }
        day
    }
}

pub async fn set_day(pool: &SqlitePool, day: Date, kind: &str) -> Result<(), AccessError> {
    if !matches!(kind, "holiday" | "workday" | "normal") {
        return Err(AccessError::Invalid(format!(
            "'{kind}' is not holiday, workday or normal"
        )));
    }
    if kind == "normal" {
        sqlx::query("DELETE FROM calendar WHERE day = ?")
            .bind(day.to_string())
            .execute(pool)
            .await?;
    } else {
        sqlx::query("INSERT INTO calendar (day, kind) VALUES (?, ?) ON CONFLICT(day) DO UPDATE SET kind = excluded.kind")
            .bind(day.to_string())
            .bind(kind)
            .execute(pool)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_working_days_skip_weekends_and_holidays() {
        let filed: Timestamp = "2026-09-25T02:00:00Z".parse().unwrap(); // Friday in China
        let plain = Calendar::default();
        assert_eq!(plain.answer_due(filed).to_string(), "2026-10-09");
        let mut national_day = Calendar::default();
        for d in 1..=8 {
            national_day
                .exceptions
                .insert(Date::new(2026, 10, d).unwrap(), false);
        }
        national_day
            .exceptions
            .insert(Date::new(2026, 9, 27).unwrap(), true); // make-up Sunday
        assert_eq!(national_day.answer_due(filed).to_string(), "2026-10-16");
    }

    #[test]
    fn dates_in_chinese_forms_and_day_ends() {
        assert_eq!(
            parse_date("2027年6月30日").unwrap().to_string(),
            "2027-06-30"
        );
        assert_eq!(parse_date("2027/06/30").unwrap().to_string(), "2027-06-30");
        assert!(parse_date("June").is_err());
        assert!(parse_date("2027-02-30").is_err());
        let end = end_of_day(parse_date("2027-06-30").unwrap());
        assert_eq!(stamp(end), "2027-06-30T16:00:00Z");
        assert_eq!(parse_stamp(&stamp(end)), Some(end));
    }
}
