//! Date ranges, timezones and time buckets.
//!
//! A range is `[from, to)` in a timezone. `date_from`/`date_to` are either relative (`-7d`,
//! `-24h`, `-2w`, `-3m`, `-1y`: days, weeks, months and years count back from the start of today,
//! hours from the start of this hour), a date (`2026-11-01`: its midnight; as `date_to`, the end of
//! that day) or a timestamp (RFC 3339, or a civil date-time read in the timezone). Buckets are
//! computed here in the timezone (DST-aware; weeks start on Monday) and, identically, by
//! ClickHouse's `toStartOf…` functions with the same timezone.

use cairn_common::http::ApiError;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan, Zoned};
use serde::{Deserialize, Serialize};

/// A trend's bucket size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Interval {
    Hour,
    #[default]
    Day,
    Week,
    Month,
}

impl Interval {
    /// The start of the bucket that holds `z`.
    pub fn floor(self, z: &Zoned) -> Result<Zoned, jiff::Error> {
        let tz = z.time_zone().clone();
        match self {
            // Counted back on the timeline, so the repeated hour of a DST change stays itself.
            Interval::Hour => {
                let into_hour =
                    i64::from(z.minute()) * 60_000 + i64::from(z.second()) * 1000 + i64::from(z.millisecond());
                let ts = Timestamp::from_millisecond(z.timestamp().as_millisecond() - into_hour)?;
                Ok(ts.to_zoned(tz))
            }
            Interval::Day => z.start_of_day(),
            Interval::Week => {
                let d = z.date();
                let monday = d.checked_sub((d.weekday().to_monday_zero_offset() as i64).days())?;
                monday.to_zoned(tz)
            }
            Interval::Month => z.date().first_of_month().to_zoned(tz),
        }
    }

    /// The start of the next bucket after `start` (a bucket start).
    pub fn next(self, start: &Zoned) -> Result<Zoned, jiff::Error> {
        let tz = start.time_zone().clone();
        match self {
            // Hours are absolute: a DST change makes a local day 23 or 25 buckets long.
            Interval::Hour => {
                let next = start.timestamp().checked_add(1.hour())?.to_zoned(tz);
                self.floor(&next)
            }
            Interval::Day => start.date().checked_add(1.day())?.to_zoned(tz),
            Interval::Week => start.date().checked_add(1.week())?.to_zoned(tz),
            Interval::Month => start.date().checked_add(1.month())?.to_zoned(tz),
        }
    }

    /// The bucket of `timestamp` as seconds since the epoch, in SQL, for the timezone bound at
    /// placeholder `tz`. Must agree with [`Interval::floor`].
    pub fn bucket_sql(self, tz: &str) -> String {
        match self {
            Interval::Hour => format!("toUnixTimestamp(toStartOfHour(timestamp, {tz}))"),
            Interval::Day => format!("toUnixTimestamp(toStartOfDay(timestamp, {tz}))"),
            Interval::Week => {
                format!("toUnixTimestamp(toDateTime(toMonday(timestamp, {tz}), {tz}))")
            }
            Interval::Month => {
                format!("toUnixTimestamp(toDateTime(toStartOfMonth(timestamp, {tz}), {tz}))")
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Interval::Hour => "hour",
            Interval::Day => "day",
            Interval::Week => "week",
            Interval::Month => "month",
        }
    }
}

/// A resolved `[from, to)` range in a timezone.
#[derive(Debug, Clone)]
pub struct TimeRange {
    pub tz_name: String,
    pub from: Zoned,
    pub to: Zoned,
}

impl TimeRange {
    pub fn from_ms(&self) -> i64 {
        self.from.timestamp().as_millisecond()
    }

    pub fn to_ms(&self) -> i64 {
        self.to.timestamp().as_millisecond()
    }

    /// The start of every bucket that overlaps the range, at most `max` of them.
    pub fn buckets(&self, interval: Interval, max: usize) -> Result<Vec<Zoned>, ApiError> {
        let mut out = Vec::new();
        let mut b = interval.floor(&self.from).map_err(date_error)?;
        while b.timestamp() < self.to.timestamp() {
            if out.len() >= max {
                return Err(ApiError::invalid(
                    "interval",
                    format!(
                        "the range holds more than {max} {} buckets; choose a longer interval or a shorter range",
                        interval.name()
                    ),
                ));
            }
            let next = interval.next(&b).map_err(date_error)?;
            out.push(b);
            b = next;
        }
        Ok(out)
    }
}

fn date_error(e: jiff::Error) -> ApiError {
    ApiError::invalid("date_from", format!("the date range cannot be computed: {e}"))
}

/// The timezone `name` (IANA, e.g. `Europe/Berlin`); `UTC` when absent.
pub fn timezone(name: Option<&str>) -> Result<(String, TimeZone), ApiError> {
    let name = name.map(str::trim).filter(|n| !n.is_empty()).unwrap_or("UTC");
    // Only IANA names: letters, digits and `/_+-`, which is also all ClickHouse accepts.
    if name.len() > 64 || !name.chars().all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c)) {
        return Err(ApiError::invalid("timezone", "not an IANA timezone name such as Europe/Berlin"));
    }
    let tz = TimeZone::get(name).map_err(|_| ApiError::invalid("timezone", format!("unknown timezone {name:?}")))?;
    Ok((name.to_string(), tz))
}

/// Whether a bound is the start or the end of a range (a date as `date_to` means its end).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bound {
    From,
    To,
}

fn parse_point(field: &str, text: &str, bound: Bound, tz: &TimeZone, now: &Zoned) -> Result<Zoned, ApiError> {
    let text = text.trim();
    let bad = |reason: &str| ApiError::invalid(field, format!("{text:?}: {reason}"));
    if let Some(rel) = text.strip_prefix('-') {
        let (num, unit) = rel.split_at(rel.find(|c: char| !c.is_ascii_digit()).unwrap_or(rel.len()));
        let n: i64 = num.parse().map_err(|_| bad("expected a relative date such as -7d, -24h, -2w, -3m or -1y"))?;
        if n > 100_000 {
            return Err(bad("too far back"));
        }
        let today = now.start_of_day().map_err(|e| bad(&e.to_string()))?;
        let point = match unit {
            "h" => Interval::Hour
                .floor(now)
                .and_then(|h| h.timestamp().checked_sub(n.hours()))
                .map(|t| t.to_zoned(tz.clone())),
            "d" => today.date().checked_sub(n.days()).and_then(|d| d.to_zoned(tz.clone())),
            "w" => today.date().checked_sub((7 * n).days()).and_then(|d| d.to_zoned(tz.clone())),
            "m" => today.date().checked_sub(n.months()).and_then(|d| d.to_zoned(tz.clone())),
            "y" => today.date().checked_sub(n.years()).and_then(|d| d.to_zoned(tz.clone())),
            _ => return Err(bad("the unit must be h, d, w, m or y")),
        };
        return point.map_err(|e| bad(&e.to_string()));
    }
    if text.len() == 10 {
        if let Ok(d) = text.parse::<Date>() {
            let d = if bound == Bound::To { d.checked_add(1.day()).map_err(|e| bad(&e.to_string()))? } else { d };
            return d.to_zoned(tz.clone()).map_err(|e| bad(&e.to_string()));
        }
    }
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Ok(ts.to_zoned(tz.clone()));
    }
    if let Ok(dt) = text.parse::<DateTime>() {
        return dt.to_zoned(tz.clone()).map_err(|e| bad(&e.to_string()));
    }
    Err(bad("expected a relative date (-7d), a date (2026-11-01) or an RFC 3339 timestamp"))
}

/// One bound given alone (retention's `date_to`): `end` reads a date as the end of that day.
pub fn point(
    field: &str,
    text: &str,
    end: bool,
    timezone_name: Option<&str>,
    now: Timestamp,
) -> Result<Zoned, ApiError> {
    let (_, tz) = timezone(timezone_name)?;
    let now = now.to_zoned(tz.clone());
    parse_point(field, text, if end { Bound::To } else { Bound::From }, &tz, &now)
}

/// Resolves a request's range. `default_from` applies when `date_from` is absent; `date_to`
/// defaults to now.
pub fn resolve(
    date_from: Option<&str>,
    date_to: Option<&str>,
    timezone_name: Option<&str>,
    default_from: &str,
    max_days: i64,
    now: Timestamp,
) -> Result<TimeRange, ApiError> {
    let (tz_name, tz) = timezone(timezone_name)?;
    let now = now.to_zoned(tz.clone());
    let from = parse_point("date_from", date_from.unwrap_or(default_from), Bound::From, &tz, &now)?;
    let to = match date_to {
        Some(t) if !t.trim().is_empty() => parse_point("date_to", t, Bound::To, &tz, &now)?,
        _ => now.clone(),
    };
    if from.timestamp() >= to.timestamp() {
        return Err(ApiError::invalid("date_from", "date_from must be before date_to"));
    }
    let span_ms = to.timestamp().as_millisecond() - from.timestamp().as_millisecond();
    if span_ms > max_days * 86_400_000 {
        return Err(ApiError::invalid("date_from", format!("the date range may span at most {max_days} days")));
    }
    Ok(TimeRange { tz_name, from, to })
}

/// `2026-11-26T00:00:00+01:00`: a bucket's label in the range's timezone.
pub fn label(z: &Zoned) -> String {
    z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
}

/// A stored time (PostgreSQL's `timestamptz`) as the API writes it: RFC 3339.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-26T15:30:00Z".parse().unwrap()
    }

    #[test]
    fn relative_ranges_count_back_from_today() {
        let r = resolve(Some("-7d"), None, Some("UTC"), "-7d", 732, now()).unwrap();
        assert_eq!(label(&r.from), "2026-11-19T00:00:00+00:00");
        assert_eq!(r.to.timestamp(), now());
        let b = r.buckets(Interval::Day, 1000).unwrap();
        assert_eq!(b.len(), 8, "7 full days and today");
        let r = resolve(Some("-24h"), None, None, "-7d", 732, now()).unwrap();
        assert_eq!(label(&r.from), "2026-11-25T15:00:00+00:00");
        assert_eq!(r.buckets(Interval::Hour, 1000).unwrap().len(), 25);
    }

    #[test]
    fn dates_are_midnights_in_the_timezone_and_date_to_is_inclusive() {
        let r = resolve(Some("2026-11-01"), Some("2026-11-03"), Some("Asia/Tokyo"), "-7d", 732, now()).unwrap();
        assert_eq!(r.from.timestamp().to_string(), "2026-10-31T15:00:00Z");
        assert_eq!(r.to.timestamp().to_string(), "2026-11-03T15:00:00Z");
        assert_eq!(r.buckets(Interval::Day, 1000).unwrap().len(), 3);
    }

    #[test]
    fn buckets_follow_dst_weeks_and_months() {
        // Europe/Berlin leaves summer time on 2026-10-25: that day has 25 hours.
        let r = resolve(Some("2026-10-25"), Some("2026-10-25"), Some("Europe/Berlin"), "-7d", 732, now()).unwrap();
        assert_eq!(r.buckets(Interval::Hour, 1000).unwrap().len(), 25);
        let days = resolve(Some("2026-10-24"), Some("2026-10-26"), Some("Europe/Berlin"), "-7d", 732, now()).unwrap();
        let b = days.buckets(Interval::Day, 1000).unwrap();
        assert_eq!(
            b.iter().map(label).collect::<Vec<_>>(),
            ["2026-10-24T00:00:00+02:00", "2026-10-25T00:00:00+02:00", "2026-10-26T00:00:00+01:00"]
        );
        let w = resolve(Some("2026-11-04"), Some("2026-11-20"), None, "-7d", 732, now()).unwrap();
        let b = w.buckets(Interval::Week, 1000).unwrap();
        assert_eq!(label(&b[0]), "2026-11-02T00:00:00+00:00", "weeks start on Monday");
        assert_eq!(b.len(), 3);
        let m = resolve(Some("2026-01-31"), Some("2026-04-01"), None, "-7d", 732, now()).unwrap();
        assert_eq!(m.buckets(Interval::Month, 1000).unwrap().len(), 4);
    }

    #[test]
    fn refuses_bad_ranges_with_the_field() {
        for (from, to, field) in [
            ("-7x", None, "date_from"),
            ("yesterday", None, "date_from"),
            ("2026-11-10", Some("2026-11-01"), "date_from"),
            ("-3y", None, "date_from"),
            ("-7d", Some("nope"), "date_to"),
        ] {
            let e = resolve(Some(from), to, None, "-7d", 732, now()).unwrap_err();
            assert_eq!(e.field.as_deref(), Some(field), "{from} {to:?}: {e}");
        }
        let e = resolve(Some("-7d"), None, Some("Mars/Olympus"), "-7d", 732, now()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("timezone"));
        let e = resolve(Some("-7d"), None, Some("UTC'; DROP TABLE events"), "-7d", 732, now()).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("timezone"));
        let r = resolve(Some("-60d"), None, None, "-7d", 732, now()).unwrap();
        assert_eq!(r.buckets(Interval::Hour, 1000).unwrap_err().field.as_deref(), Some("interval"));
    }
}
