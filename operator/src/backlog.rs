//! The backlog guard: Kafka deletes records by age whether anyone consumed them or not, so a
//! consumer that falls behind by more than the topic's retention loses acknowledged events. The
//! operator compares the age of the oldest record not consumed yet with the retention and, within
//! the spec's cap, stretches the retention before that happens. Pure, and unit-tested.
//!
//! - At risk: the oldest unconsumed record is older than half of `retentionHours` (it stays at
//!   risk, protected or not, until the backlog is younger than that).
//! - The retention grows to twice that age (whole hours) whenever the backlog is older than half
//!   the retention in force, at least `retentionHours`, at most `maxRetentionHours` (default
//!   twice `retentionHours`). It never shrinks while a backlog
//!   remains; it returns to `retentionHours` once the oldest unconsumed record is younger than a
//!   quarter of `retentionHours` (or nothing is left to consume).
//! - Protected: the retention in force is at least twice the oldest age (the consumers have that
//!   long to catch up). At risk and not protected (the cap is reached) is a failure the platform
//!   reports as `EventsAtRisk`.

/// What the guard decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    /// The retention the topic gets (hours).
    pub retention_hours: i64,
    /// The oldest unconsumed record is older than half the retention that was in force.
    pub at_risk: bool,
    /// At risk, and the cap keeps the retention from growing far enough.
    pub unprotected: bool,
    pub message: String,
}

/// The cap on the retention: the spec's, else twice `retentionHours`; never below it.
pub fn cap_hours(retention_hours: i64, max_retention_hours: Option<i64>) -> i64 {
    max_retention_hours.unwrap_or(retention_hours.saturating_mul(2)).max(retention_hours)
}

fn hours(seconds: i64) -> String {
    if seconds >= 3600 {
        format!("{:.1}h", seconds as f64 / 3600.0)
    } else {
        format!("{}m", seconds / 60)
    }
}

/// `in_force`: the retention the topic has now (hours; the spec's when unknown); `oldest_age`:
/// the age of the oldest unconsumed record (seconds; None when nothing is left to consume or the
/// lag could not be read — then `lag_known` says which).
pub fn guard(
    retention_hours: i64,
    max_retention_hours: Option<i64>,
    in_force: Option<i64>,
    oldest_age: Option<i64>,
    lag_known: bool,
) -> Guard {
    let base = retention_hours.max(1);
    let cap = cap_hours(base, max_retention_hours);
    let current = in_force.unwrap_or(base).clamp(base, cap);
    let Some(age) = oldest_age.filter(|a| *a > 0) else {
        // Nothing to consume: back to the spec. Lag unreadable: keep what is in force.
        let retention_hours = if lag_known { base } else { current };
        let message = if lag_known {
            format!("nothing waits to be consumed; retention {base}h")
        } else {
            format!("the lag cannot be read; retention stays {retention_hours}h")
        };
        return Guard { retention_hours, at_risk: false, unprotected: false, message };
    };
    // At risk against the spec's retention (so the condition holds while the stretch protects
    // the backlog, instead of flapping off once stretched); stretched further when the backlog
    // nears the retention in force.
    let at_risk = age.saturating_mul(2) > base.saturating_mul(3600);
    let needs_more = age.saturating_mul(2) > current.saturating_mul(3600);
    let drained = age.saturating_mul(4) < base.saturating_mul(3600);
    let wanted = (age.saturating_mul(2) + 3599) / 3600;
    let retention_hours = if needs_more {
        wanted.clamp(current, cap)
    } else if drained {
        base
    } else {
        current
    };
    let unprotected = at_risk && retention_hours.saturating_mul(3600) < age.saturating_mul(2);
    let message = if unprotected {
        format!(
            "the oldest unconsumed event is {} old and the topic keeps events {retention_hours}h \
             (maxRetentionHours {cap}): events not consumed within {} are deleted unread",
            hours(age),
            hours((retention_hours * 3600 - age).max(0))
        )
    } else if at_risk {
        format!(
            "the oldest unconsumed event is {} old, more than half the retention of {base}h: \
             retention extended to {retention_hours}h (at most {cap}h)",
            hours(age)
        )
    } else if retention_hours != base {
        format!(
            "the oldest unconsumed event is {} old; retention stays {retention_hours}h until the \
             backlog is younger than {}",
            hours(age),
            hours(base * 3600 / 4)
        )
    } else {
        format!("the oldest unconsumed event is {} old; retention {retention_hours}h", hours(age))
    };
    Guard { retention_hours, at_risk, unprotected, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60;
    const H: i64 = 3600;

    #[test]
    fn a_young_backlog_changes_nothing() {
        let g = guard(1, None, None, Some(10 * MIN), true);
        assert_eq!((g.retention_hours, g.at_risk, g.unprotected), (1, false, false));
        let g = guard(168, None, None, None, true);
        assert_eq!((g.retention_hours, g.at_risk), (168, false));
    }

    #[test]
    fn forty_minutes_of_a_one_hour_retention_is_at_risk_and_extended() {
        let g = guard(1, None, None, Some(40 * MIN), true);
        assert!(g.at_risk && !g.unprotected, "{g:?}");
        assert_eq!(g.retention_hours, 2, "twice the age, whole hours, within the default cap of 2h");
        // Older still: the cap holds, and the platform says the events are at risk.
        let g = guard(1, None, Some(2), Some(70 * MIN), true);
        assert!(g.at_risk && g.unprotected, "{g:?}");
        assert_eq!(g.retention_hours, 2);
        assert!(g.message.contains("deleted unread"), "{}", g.message);
        let g = guard(1, None, Some(2), Some(3 * H), true);
        assert!(g.message.contains("within 0m"), "never a negative time: {}", g.message);
        // A larger cap covers it.
        let g = guard(1, Some(6), Some(2), Some(70 * MIN), true);
        assert_eq!((g.retention_hours, g.at_risk, g.unprotected), (3, true, false));
    }

    #[test]
    fn the_extension_stays_while_the_backlog_does_and_goes_when_it_drains() {
        // Extended to 4h; the backlog shrinks to 40 min: no longer at risk, but not drained.
        let g = guard(2, Some(8), Some(4), Some(40 * MIN), true);
        assert_eq!((g.retention_hours, g.at_risk), (4, false));
        // Stretched and still older than half the spec's retention: at risk (protected) on
        // every reconcile, not only the one that stretched it.
        let g = guard(1, None, Some(2), Some(45 * MIN), true);
        assert_eq!((g.retention_hours, g.at_risk, g.unprotected), (2, true, false));
        // Below a quarter of the spec's retention: back to it.
        let g = guard(2, Some(8), Some(4), Some(20 * MIN), true);
        assert_eq!(g.retention_hours, 2);
        // Nothing left: back to it too; lag unreadable: kept.
        assert_eq!(guard(2, Some(8), Some(4), None, true).retention_hours, 2);
        assert_eq!(guard(2, Some(8), Some(4), None, false).retention_hours, 4);
    }

    #[test]
    fn never_past_the_cap_nor_below_the_spec() {
        let g = guard(10, Some(12), Some(50), Some(100 * H), true);
        assert_eq!(g.retention_hours, 12);
        let g = guard(10, Some(5), None, Some(9 * H), true);
        assert_eq!(g.retention_hours, 10, "a cap below the spec is the spec");
        assert!(g.unprotected);
        assert_eq!(cap_hours(168, None), 336);
    }
}
