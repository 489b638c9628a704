//! The consumer's replicas from its Kafka lag, decided by the operator itself (no metrics adapter,
//! no HorizontalPodAutoscaler): pure, and unit-tested.
//!
//! - Wanted: `clamp(ceil(lag / target per replica), min, min(max, partitions))` — a consumer
//!   replica beyond the partition count would have nothing to read.
//! - Up at once; down only to the highest recommendation of the stabilisation window (as the
//!   HorizontalPodAutoscaler does), so a lag that dips for a moment does not flap the replicas.
//! - Held while ClickHouse is unhealthy (more consumers would only add inserts it refuses), or
//!   while the lag cannot be read.
//!
//! The recommendations of the window live in the platform's status, so a restarted (or another)
//! operator replica goes on with the same window.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The consumer group's backlog, as read from Kafka.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Lag {
    /// Records not consumed yet, over every partition.
    pub records: i64,
    /// Age of the oldest record not consumed yet (seconds), when there is one.
    pub oldest_age_seconds: Option<i64>,
}

/// What the spec asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub target_lag_per_replica: i64,
    pub scale_down_window: Duration,
}

/// One recommendation (what the lag alone asked for) and when it was made (Unix seconds).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Recommendation {
    pub at: i64,
    pub replicas: i32,
}

/// Why the replicas are what they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The lag asks for more: scaled up now.
    ScaledUp,
    /// The lag has asked for fewer for the whole window: scaled down.
    ScaledDown,
    /// The lag asks for fewer, but not for the whole window yet.
    Stabilizing,
    /// The replicas match the lag.
    Steady,
    /// ClickHouse is unhealthy: held.
    ClickHouseUnhealthy,
    /// The lag could not be read: held.
    LagUnknown,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ScaledUp => "ScaledUp",
            Reason::ScaledDown => "ScaledDown",
            Reason::Stabilizing => "Stabilizing",
            Reason::Steady => "Steady",
            Reason::ClickHouseUnhealthy => "ClickHouseUnhealthy",
            Reason::LagUnknown => "LagUnknown",
        }
    }

    /// Whether the replicas follow the lag (false: held for a reason outside the lag).
    pub fn follows_lag(self) -> bool {
        !matches!(self, Reason::ClickHouseUnhealthy | Reason::LagUnknown)
    }
}

/// The decision of one reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub replicas: i32,
    pub reason: Reason,
    /// What the lag alone asks for (None when it could not be read).
    pub recommended: Option<i32>,
    /// The window's recommendations to keep (this one included).
    pub recommendations: Vec<Recommendation>,
    /// A sentence for the condition and the event.
    pub message: String,
}

/// At most this many recommendations are kept (one per reconcile; the window is a few minutes).
const MAX_RECOMMENDATIONS: usize = 64;

/// The replicas the lag alone asks for.
pub fn recommended(policy: &Policy, partitions: i32, lag: i64) -> i32 {
    let min = policy.min_replicas.max(0);
    let ceiling = policy.max_replicas.min(partitions.max(1)).max(min);
    let target = policy.target_lag_per_replica.max(1);
    let lag = lag.max(0);
    let wanted = lag / target + i64::from(lag % target != 0);
    i32::try_from(wanted).unwrap_or(i32::MAX).clamp(min, ceiling)
}

/// Decides the consumer's replicas. `current`: the Deployment's replicas now (None before it
/// exists); `history`: the recommendations kept so far; `now`: Unix seconds.
pub fn decide(
    policy: &Policy,
    partitions: i32,
    lag: Option<Lag>,
    clickhouse_healthy: bool,
    current: Option<i32>,
    history: &[Recommendation],
    now: i64,
) -> Decision {
    let window = i64::try_from(policy.scale_down_window.as_secs()).unwrap_or(i64::MAX);
    let mut kept: Vec<Recommendation> =
        history.iter().copied().filter(|r| r.at > now.saturating_sub(window) && r.at <= now).collect();
    let floor = policy.min_replicas.max(0);
    let ceiling = policy.max_replicas.max(floor);
    let held = current.unwrap_or(floor).clamp(floor, ceiling);
    let Some(lag) = lag else {
        return Decision {
            replicas: held,
            reason: Reason::LagUnknown,
            recommended: None,
            recommendations: kept,
            message: format!("holding {held} replicas: the consumer group's lag cannot be read from Kafka"),
        };
    };
    let wanted = recommended(policy, partitions, lag.records);
    kept.push(Recommendation { at: now, replicas: wanted });
    if kept.len() > MAX_RECOMMENDATIONS {
        kept.drain(..kept.len() - MAX_RECOMMENDATIONS);
    }
    let basis = format!(
        "lag {} records (target {} per replica), {} partitions",
        lag.records, policy.target_lag_per_replica, partitions
    );
    if !clickhouse_healthy {
        return Decision {
            replicas: held,
            reason: Reason::ClickHouseUnhealthy,
            recommended: Some(wanted),
            recommendations: kept,
            message: format!(
                "holding {held} replicas while ClickHouse is unhealthy ({basis}; more consumers would only add inserts it refuses)"
            ),
        };
    }
    let Some(current) = current else {
        return Decision {
            replicas: wanted,
            reason: Reason::Steady,
            recommended: Some(wanted),
            recommendations: kept,
            message: format!("{wanted} replicas: {basis}"),
        };
    };
    // Down only as far as the highest recommendation of the window.
    let highest = kept.iter().map(|r| r.replicas).max().unwrap_or(wanted);
    let (replicas, reason) = if wanted > current {
        (wanted, Reason::ScaledUp)
    } else if highest < current {
        (highest, Reason::ScaledDown)
    } else if wanted < current {
        (current, Reason::Stabilizing)
    } else {
        (current, Reason::Steady)
    };
    let replicas = replicas.clamp(floor, ceiling);
    let message = match reason {
        Reason::ScaledUp | Reason::ScaledDown => format!("{current} → {replicas} replicas: {basis}"),
        Reason::Stabilizing => format!(
            "{current} replicas, {wanted} would do: scaling down once the lag has asked for fewer for {}s ({basis})",
            window
        ),
        _ => format!("{current} replicas: {basis}"),
    };
    Decision { replicas, reason, recommended: Some(wanted), recommendations: kept, message }
}

/// Partitions grow when consumers cannot: the consumer already runs one replica per partition,
/// `maxReplicas` leaves room for more, the lag asks for more than the partitions allow, and it
/// rose since the last reading (a backlog that is being worked off needs no more partitions).
/// Returns the partition count to grow to: what the lag asks for, at most double at once, never
/// past `max_partitions` nor `maxReplicas`. None: leave them.
pub fn grow_partitions(
    policy: &Policy,
    partitions: i32,
    max_partitions: Option<i32>,
    replicas: Option<i32>,
    lag_before: Option<i64>,
    lag_now: Option<i64>,
    clickhouse_healthy: bool,
) -> Option<i32> {
    let max_partitions = max_partitions?;
    let (now, before) = (lag_now?, lag_before?);
    if !clickhouse_healthy || now <= before || replicas != Some(partitions) || partitions >= max_partitions {
        return None;
    }
    let target = policy.target_lag_per_replica.max(1);
    let wanted = i32::try_from(now / target + i64::from(now % target != 0)).unwrap_or(i32::MAX);
    let ceiling = max_partitions.min(policy.max_replicas).min(partitions.saturating_mul(2));
    (wanted > partitions && ceiling > partitions).then(|| wanted.min(ceiling))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_grow_only_when_replicas_cannot_and_the_lag_rises() {
        let p = policy();
        let grow = |parts, max, replicas, before, now| grow_partitions(&p, parts, max, replicas, before, now, true);
        // 4 partitions, 4 replicas, lag 1M and rising: to 8 (double at most), max 12.
        assert_eq!(grow(4, Some(12), Some(4), Some(900_000), Some(1_000_000)), Some(8));
        // Again at 8: up to what the lag asks for (20) but never past the max.
        assert_eq!(grow(8, Some(12), Some(8), Some(900_000), Some(1_000_000)), Some(12));
        assert_eq!(grow(12, Some(12), Some(12), Some(900_000), Some(1_000_000)), None, "at the max");
        assert_eq!(grow(4, None, Some(4), Some(900_000), Some(1_000_000)), None, "no maxPartitions: never");
        assert_eq!(grow(4, Some(12), Some(3), Some(900_000), Some(1_000_000)), None, "replicas still have room");
        assert_eq!(grow(4, Some(12), Some(4), Some(1_000_000), Some(900_000)), None, "draining");
        assert_eq!(grow(4, Some(12), Some(4), None, Some(1_000_000)), None, "no earlier reading");
        assert_eq!(grow(4, Some(12), Some(4), Some(100_000), Some(150_000)), None, "the replicas suffice");
        assert_eq!(grow(4, Some(12), Some(4), Some(200_000), Some(210_000)), Some(5), "what the lag asks for");
        let few = Policy { max_replicas: 4, ..p };
        assert_eq!(grow_partitions(&few, 4, Some(12), Some(4), Some(1), Some(1_000_000), true), None, "maxReplicas");
        assert_eq!(grow_partitions(&p, 4, Some(12), Some(4), Some(1), Some(1_000_000), false), None, "ClickHouse down");
    }

    fn policy() -> Policy {
        Policy {
            min_replicas: 1,
            max_replicas: 20,
            target_lag_per_replica: 50_000,
            scale_down_window: Duration::from_secs(300),
        }
    }

    fn lag(records: i64) -> Option<Lag> {
        Some(Lag { records, oldest_age_seconds: Some(60) })
    }

    #[test]
    fn the_lag_divided_by_the_target_within_min_max_and_partitions() {
        let p = policy();
        assert_eq!(recommended(&p, 8, 0), 1, "never below min");
        assert_eq!(recommended(&p, 8, 1), 1);
        assert_eq!(recommended(&p, 8, 50_001), 2, "rounded up");
        assert_eq!(recommended(&p, 8, 400_000), 8);
        assert_eq!(recommended(&p, 8, 4_000_000), 8, "never more than partitions");
        assert_eq!(recommended(&Policy { max_replicas: 3, ..p }, 8, 4_000_000), 3, "never more than max");
        assert_eq!(recommended(&Policy { min_replicas: 4, ..p }, 2, 0), 4, "min wins over partitions");
        assert_eq!(recommended(&p, 8, i64::MAX), 8);
    }

    #[test]
    fn up_at_once_down_after_the_window_without_flapping() {
        let p = policy();
        // A surge: 400,000 records on 8 partitions, from 1 replica.
        let d = decide(&p, 8, lag(400_000), true, Some(1), &[], 1_000);
        assert_eq!((d.replicas, d.reason), (8, Reason::ScaledUp));
        assert!(d.message.contains("1 → 8"), "{}", d.message);
        // Drained 60 s later: the window still holds the 8.
        let d = decide(&p, 8, lag(0), true, Some(8), &d.recommendations, 1_060);
        assert_eq!((d.replicas, d.reason), (8, Reason::Stabilizing));
        // A blip of lag inside the window does not move anything either way.
        let d = decide(&p, 8, lag(120_000), true, Some(8), &d.recommendations, 1_120);
        assert_eq!((d.replicas, d.reason), (8, Reason::Stabilizing));
        // Past the window of the 8 (at 1,000 + 300), the highest left is the blip's 3.
        let d = decide(&p, 8, lag(0), true, Some(8), &d.recommendations, 1_310);
        assert_eq!((d.replicas, d.reason), (3, Reason::ScaledDown));
        // And once that one left the window too, the minimum.
        let d = decide(&p, 8, lag(0), true, Some(3), &d.recommendations, 1_430);
        assert_eq!((d.replicas, d.reason), (1, Reason::ScaledDown));
        let d = decide(&p, 8, lag(0), true, Some(1), &d.recommendations, 1_460);
        assert_eq!((d.replicas, d.reason), (1, Reason::Steady));
        assert!(d.recommendations.iter().all(|r| r.at > 1_460 - 300), "old recommendations dropped");
    }

    #[test]
    fn held_while_clickhouse_is_unhealthy_or_the_lag_unknown() {
        let p = policy();
        let d = decide(&p, 8, lag(400_000), false, Some(2), &[], 1_000);
        assert_eq!((d.replicas, d.reason, d.recommended), (2, Reason::ClickHouseUnhealthy, Some(8)));
        assert!(d.message.contains("ClickHouse"), "{}", d.message);
        // The recommendation is kept: when ClickHouse returns, the window knows the lag asked for 8.
        assert_eq!(d.recommendations, vec![Recommendation { at: 1_000, replicas: 8 }]);
        let d = decide(&p, 8, None, true, Some(2), &d.recommendations, 1_030);
        assert_eq!((d.replicas, d.reason, d.recommended), (2, Reason::LagUnknown, None));
        // Held within min and max all the same.
        let d = decide(&Policy { min_replicas: 3, ..p }, 8, None, true, Some(1), &[], 1_060);
        assert_eq!(d.replicas, 3);
    }

    #[test]
    fn a_new_deployment_starts_where_the_lag_says() {
        let d = decide(&policy(), 8, lag(120_000), true, None, &[], 1_000);
        assert_eq!((d.replicas, d.reason), (3, Reason::Steady));
    }

    #[test]
    fn the_window_is_bounded() {
        let p = Policy { scale_down_window: Duration::from_secs(100_000), ..policy() };
        let mut history = Vec::new();
        for i in 0..200 {
            history = decide(&p, 8, lag(0), true, Some(1), &history, 1_000 + i).recommendations;
        }
        assert_eq!(history.len(), MAX_RECOMMENDATIONS);
    }
}
