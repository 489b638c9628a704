//! From what the reconciler observed to the status it reports: one condition per component,
//! Ready, Progressing, Degraded and UpgradePending, and a phase. Pure logic, unit-tested.

use crate::crd::{Condition, ManagedStatus, WorkloadStatus};
use crate::resources::Workload;

/// Condition types.
pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const KAFKA_READY: &str = "KafkaReady";
pub const CLICKHOUSE_READY: &str = "ClickHouseReady";
pub const UPGRADE_PENDING: &str = "UpgradePending";
pub const CONSUMER_SCALING: &str = "ConsumerScaling";
pub const DATA_PATH_HEALTHY: &str = "DataPathHealthy";
pub const EVENTS_AT_RISK: &str = "EventsAtRisk";
pub const DISK_PRESSURE: &str = "DiskPressure";

pub fn workload_condition(w: Workload) -> String {
    let name = w.name();
    let mut c = name.chars();
    let capitalised = c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default();
    format!("{capitalised}Ready")
}

/// A dependency's state: ready with a message, or failed with a reason and message.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum DependencyState {
    Ready(String),
    Failed {
        reason: String,
        message: String,
    },
    /// Not checked this time (paused, or an earlier step failed).
    #[default]
    Unknown,
}

/// What one workload's Deployment shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WorkloadObservation {
    pub status: WorkloadStatus,
    /// Whether the Deployment has rolled out its current template: the controller has seen the
    /// latest generation and every replica is updated and available, no old one left.
    pub rolled_out: bool,
    /// The Deployment's message when its rollout failed (`ProgressDeadlineExceeded`).
    pub stalled: Option<String>,
}

/// Everything one reconcile observed.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub generation: i64,
    pub paused: bool,
    /// Capture, consumer, query, auth (the order of [`Workload::ALL`]).
    pub workloads: [WorkloadObservation; 4],
    pub managed: Vec<ManagedStatus>,
    pub kafka: DependencyState,
    pub clickhouse: DependencyState,
    /// Objects in the way that the platform does not own (see `children.rs`).
    pub conflicts: Vec<String>,
    /// A child that could not be built from the spec.
    pub invalid: Option<String>,
    /// Referenced Secrets that do not exist.
    pub missing_secrets: Vec<String>,
    /// Applying children failed (e.g. the API server refused an object).
    pub apply_error: Option<String>,
    /// Why an upgrade to a new default version waits, if it does.
    pub upgrade_waiting: Option<String>,
    /// The consumer scaled by its lag: whether its replicas follow the lag (false: held), the
    /// reason and the message.
    pub consumer_scaling: Option<(bool, String, String)>,
    /// The heartbeat's verdict (heartbeat.rs), when it is on: healthy (None: not known yet),
    /// reason, message.
    pub data_path: Option<(Option<bool>, String, String)>,
    /// The backlog guard's verdict (backlog.rs), when the lag was read: at risk, unprotected
    /// (the retention cannot grow far enough), message.
    pub backlog: Option<(bool, bool, String)>,
    /// ClickHouse's disks: None not read; Some(None) enough free space; Some(Some(why)) pressure.
    pub disk_pressure: Option<Option<String>>,
    pub now: String,
}

/// Degraded reasons that say the data path needs attention, not that the platform's rollout
/// failed: a platform degraded only by these has its version rolled out (an upgrade of the next
/// platform need not wait for a disk to be grown or a consumer scaled back).
pub const DATA_PATH_REASONS: [&str; 4] =
    ["DiskPressure", "EventsAtRisk", "EventsNotArriving", "CaptureRefusedHeartbeat"];

/// Whether the conditions say the platform's version is rolled out: every component ready,
/// nothing progressing, and nothing degraded but the data path.
pub fn rolled_out(conditions: &[Condition]) -> bool {
    let status = |t: &str| conditions.iter().find(|c| c.type_ == t).map(|c| (c.status.as_str(), c.reason.as_str()));
    let components =
        conditions.iter().filter(|c| c.type_.ends_with("Ready") && c.type_ != READY).all(|c| c.status == "True");
    let degraded_ok = match status(DEGRADED) {
        Some(("False", _)) => true,
        Some(("True", reason)) => DATA_PATH_REASONS.contains(&reason),
        _ => false,
    };
    components && status(PROGRESSING) == Some(("False", "Stable")) && degraded_ok
}

/// The conditions and phase for `observed`, keeping each condition's lastTransitionTime from
/// `previous` when its status did not change.
pub fn evaluate(previous: &[Condition], o: &Observed) -> (Vec<Condition>, String) {
    let mut out: Vec<Condition> = Vec::new();
    let mut push = |type_: &str, ok: Option<bool>, reason: &str, message: String| {
        let status = match ok {
            Some(true) => "True",
            Some(false) => "False",
            None => "Unknown",
        };
        let last = previous
            .iter()
            .find(|c| c.type_ == type_ && c.status == status)
            .map(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| o.now.clone());
        out.push(Condition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: reason.to_string(),
            message,
            last_transition_time: last,
            observed_generation: o.generation,
        });
    };

    let mut all_workloads_ready = true;
    let mut rolling = Vec::new();
    let mut stalled = Vec::new();
    for (i, w) in Workload::ALL.iter().enumerate() {
        let wo = &o.workloads[i];
        let s = &wo.status;
        let ready = s.ready_replicas >= s.desired_replicas && wo.rolled_out;
        if !ready {
            all_workloads_ready = false;
            rolling.push(w.name().to_string());
        }
        if let Some(m) = &wo.stalled {
            stalled.push(format!("{}: {m}", w.name()));
        }
        let reason = if ready {
            "ReplicasReady"
        } else if wo.stalled.is_some() {
            "ProgressDeadlineExceeded"
        } else {
            "ReplicasNotReady"
        };
        let mut message = format!("{}/{} replicas ready", s.ready_replicas, s.desired_replicas);
        if !wo.rolled_out && s.ready_replicas >= s.desired_replicas {
            message.push_str("; rolling out a new template");
        }
        push(&workload_condition(*w), Some(ready), reason, message);
    }
    for m in &o.managed {
        if !m.rolled_out {
            all_workloads_ready = false;
            rolling.push(format!("managed {}", m.component));
        }
    }

    type Push<'a> = dyn FnMut(&str, Option<bool>, &str, String) + 'a;
    let dep = |push: &mut Push<'_>, type_: &str, state: &DependencyState, ok_reason: &str| match state {
        DependencyState::Ready(m) => push(type_, Some(true), ok_reason, m.clone()),
        DependencyState::Failed { reason, message } => push(type_, Some(false), reason, message.clone()),
        DependencyState::Unknown => push(type_, None, "NotChecked", "not checked".into()),
    };
    dep(&mut push, KAFKA_READY, &o.kafka, "TopicReady");
    dep(&mut push, CLICKHOUSE_READY, &o.clickhouse, "SchemaApplied");

    // The first failure, in order of what a person must fix first.
    let failure = (!o.conflicts.is_empty())
        .then(|| ("OwnershipConflict".to_string(), o.conflicts.join("; ")))
        .or_else(|| o.invalid.as_ref().map(|e| ("InvalidSpec".to_string(), e.clone())))
        .or_else(|| {
            (!o.missing_secrets.is_empty()).then(|| ("SecretNotFound".to_string(), o.missing_secrets.join("; ")))
        })
        .or_else(|| o.apply_error.as_ref().map(|e| ("ApplyFailed".to_string(), e.clone())))
        .or_else(|| (!stalled.is_empty()).then(|| ("ProgressDeadlineExceeded".to_string(), stalled.join("; "))))
        .or_else(|| match &o.kafka {
            DependencyState::Failed { reason, message } => Some((reason.clone(), format!("Kafka: {message}"))),
            _ => None,
        })
        .or_else(|| match &o.clickhouse {
            DependencyState::Failed { reason, message } => Some((reason.clone(), format!("ClickHouse: {message}"))),
            _ => None,
        })
        .or_else(|| match &o.disk_pressure {
            Some(Some(m)) => Some(("DiskPressure".to_string(), m.clone())),
            _ => None,
        })
        .or_else(|| match &o.backlog {
            Some((true, true, m)) => Some(("EventsAtRisk".to_string(), m.clone())),
            _ => None,
        })
        .or_else(|| match &o.data_path {
            Some((Some(false), reason, m)) => Some((reason.clone(), format!("data path: {m}"))),
            _ => None,
        });
    let deps_ready = matches!(o.kafka, DependencyState::Ready(_)) && matches!(o.clickhouse, DependencyState::Ready(_));

    match &failure {
        Some((reason, message)) => push(DEGRADED, Some(true), reason, message.clone()),
        None => push(DEGRADED, Some(false), "AsExpected", "no failures".into()),
    }
    let progressing = !all_workloads_ready && !o.paused && stalled.is_empty();
    push(
        PROGRESSING,
        Some(progressing),
        if progressing { "RollingOut" } else { "Stable" },
        if progressing { format!("waiting for {}", rolling.join(", ")) } else { "every workload is rolled out".into() },
    );
    match &o.upgrade_waiting {
        Some(m) => push(UPGRADE_PENDING, Some(true), "WaitingForUpgradeSlot", m.clone()),
        None => push(UPGRADE_PENDING, Some(false), "UpToDate", "no upgrade waits".into()),
    }
    if let Some((follows, reason, message)) = &o.consumer_scaling {
        push(CONSUMER_SCALING, Some(*follows), reason, message.clone());
    }
    if let Some((healthy, reason, message)) = &o.data_path {
        push(DATA_PATH_HEALTHY, *healthy, reason, message.clone());
    }
    if let Some((at_risk, unprotected, message)) = &o.backlog {
        let reason = match (at_risk, unprotected) {
            (true, true) => "RetentionCapReached",
            (true, false) => "RetentionExtended",
            _ => "BacklogWithinRetention",
        };
        push(EVENTS_AT_RISK, Some(*at_risk), reason, message.clone());
    }
    match &o.disk_pressure {
        Some(Some(m)) => push(DISK_PRESSURE, Some(true), "LowFreeSpace", m.clone()),
        Some(None) => push(DISK_PRESSURE, Some(false), "EnoughFreeSpace", "every ClickHouse disk has room".into()),
        None => {}
    }
    let ready = all_workloads_ready && deps_ready && failure.is_none();
    let (reason, message) = if o.paused {
        ("Paused", "spec.paused is true: the operator changes nothing".to_string())
    } else if ready {
        ("AllComponentsReady", "every workload and dependency is ready".to_string())
    } else if let Some((reason, message)) = &failure {
        (reason.as_str(), message.clone())
    } else if !all_workloads_ready {
        ("WorkloadsNotReady", format!("waiting for {}", rolling.join(", ")))
    } else {
        ("DependenciesNotReady", "waiting for Kafka and ClickHouse".to_string())
    };
    push(READY, Some(ready && !o.paused), reason, message);

    let phase = if o.paused {
        "Paused"
    } else if failure.is_some() {
        "Degraded"
    } else if ready {
        "Ready"
    } else {
        "Progressing"
    };
    (out, phase.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observed() -> Observed {
        let w = WorkloadObservation {
            status: WorkloadStatus { ready_replicas: 2, desired_replicas: 2 },
            rolled_out: true,
            stalled: None,
        };
        Observed {
            generation: 4,
            workloads: [w.clone(), w.clone(), w.clone(), w],
            kafka: DependencyState::Ready("topic has 4 partitions".into()),
            clickhouse: DependencyState::Ready("schema version 1".into()),
            now: "2026-11-26T10:00:00Z".into(),
            ..Observed::default()
        }
    }

    fn get<'a>(c: &'a [Condition], t: &str) -> &'a Condition {
        c.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn the_data_path_disks_and_backlog_can_degrade_a_ready_platform() {
        // Every Deployment Ready, the heartbeat not arriving: Degraded, saying why.
        let o = Observed {
            data_path: Some((Some(false), "EventsNotArriving".into(), "sent 3m0s ago".into())),
            ..observed()
        };
        let (c, phase) = evaluate(&[], &o);
        assert_eq!(phase, "Degraded");
        assert_eq!(get(&c, DATA_PATH_HEALTHY).status, "False");
        assert_eq!(get(&c, DEGRADED).reason, "EventsNotArriving");
        assert_eq!(get(&c, READY).status, "False");
        // Not known yet (the first heartbeat on its way): no verdict either way.
        let o = Observed { data_path: Some((None, "WaitingForFirstHeartbeat".into(), "…".into())), ..observed() };
        let (c, phase) = evaluate(&[], &o);
        assert_eq!((phase.as_str(), get(&c, DATA_PATH_HEALTHY).status.as_str()), ("Ready", "Unknown"));
        // At risk but protected by a longer retention: a condition, not a failure.
        let o = Observed { backlog: Some((true, false, "extended".into())), ..observed() };
        let (c, phase) = evaluate(&[], &o);
        assert_eq!((phase.as_str(), get(&c, EVENTS_AT_RISK).reason.as_str()), ("Ready", "RetentionExtended"));
        let o = Observed { backlog: Some((true, true, "deleted unread".into())), ..observed() };
        let (c, phase) = evaluate(&[], &o);
        assert_eq!((phase.as_str(), get(&c, DEGRADED).reason.as_str()), ("Degraded", "EventsAtRisk"));
        let o = Observed { disk_pressure: Some(Some("disk default has 1.0 GiB free".into())), ..observed() };
        let (c, phase) = evaluate(&[], &o);
        assert_eq!((phase.as_str(), get(&c, DISK_PRESSURE).status.as_str()), ("Degraded", "True"));
        let o = Observed { disk_pressure: Some(None), ..observed() };
        assert_eq!(evaluate(&[], &o).1, "Ready");
        // Degraded by the data path only: the version counts as rolled out; by a rollout failure not.
        let o = Observed { disk_pressure: Some(Some("low".into())), ..observed() };
        assert!(rolled_out(&evaluate(&[], &o).0));
        let o = Observed { apply_error: Some("refused".into()), ..observed() };
        assert!(!rolled_out(&evaluate(&[], &o).0));
        assert!(rolled_out(&evaluate(&[], &observed()).0));
    }

    #[test]
    fn all_ready() {
        let (c, phase) = evaluate(&[], &observed());
        assert_eq!(phase, "Ready");
        assert_eq!(get(&c, READY).status, "True");
        assert_eq!(get(&c, DEGRADED).status, "False");
        assert_eq!(get(&c, PROGRESSING).status, "False");
        assert_eq!(get(&c, "CaptureReady").status, "True");
        assert!(c.iter().all(|c| c.observed_generation == 4));
        assert_eq!(c.len(), 10);
        assert_eq!(get(&c, UPGRADE_PENDING).status, "False");
    }

    #[test]
    fn rollout_is_progressing_not_degraded() {
        let mut o = observed();
        o.workloads[1].status.ready_replicas = 1;
        let (c, phase) = evaluate(&[], &o);
        assert_eq!(phase, "Progressing");
        assert_eq!(get(&c, READY).status, "False");
        assert_eq!(get(&c, PROGRESSING).message, "waiting for consumer");
        assert_eq!(get(&c, "ConsumerReady").message, "1/2 replicas ready");
        o.workloads[1].status.ready_replicas = 2;
        o.workloads[1].rolled_out = false;
        let (c, phase) = evaluate(&[], &o);
        assert_eq!(phase, "Progressing", "an old template still running is not ready");
        assert!(get(&c, "ConsumerReady").message.contains("rolling out"));
        o.workloads[1].rolled_out = true;
        o.managed = vec![ManagedStatus { component: "kafka".into(), rolled_out: false, ..Default::default() }];
        let (c, phase) = evaluate(&[], &o);
        assert_eq!(phase, "Progressing", "a managed StatefulSet rolling out");
        assert_eq!(get(&c, PROGRESSING).message, "waiting for managed kafka");
    }

    #[test]
    fn a_stalled_rollout_degrades() {
        let mut o = observed();
        o.workloads[0].rolled_out = false;
        o.workloads[0].stalled = Some("ReplicaSet \"demo-capture-1\" has timed out progressing.".into());
        let (c, phase) = evaluate(&[], &o);
        assert_eq!(phase, "Degraded");
        assert_eq!(get(&c, DEGRADED).reason, "ProgressDeadlineExceeded");
        assert!(get(&c, DEGRADED).message.starts_with("capture: "));
        assert_eq!(get(&c, PROGRESSING).status, "False");
    }

    #[test]
    fn conflicts_come_first_and_name_the_object() {
        let mut o = observed();
        o.apply_error = Some("Deployment: refused".into());
        o.conflicts = vec!["Service demo-capture already exists and is not owned by this platform (no owner)".into()];
        let (c, phase) = evaluate(&[], &o);
        assert_eq!(phase, "Degraded");
        assert_eq!(get(&c, DEGRADED).reason, "OwnershipConflict");
        assert!(get(&c, READY).message.contains("Service demo-capture"));
        o.conflicts.clear();
        o.missing_secrets = vec!["Secret ch-creds (named by x) does not exist".into()];
        assert_eq!(get(&evaluate(&[], &o).0, DEGRADED).reason, "SecretNotFound");
    }

    #[test]
    fn unreachable_kafka_degrades_with_its_reason() {
        let mut o = observed();
        o.kafka = DependencyState::Failed { reason: "KafkaUnreachable".into(), message: "all brokers down".into() };
        let (c, phase) = evaluate(&[], &o);
        assert_eq!(phase, "Degraded");
        assert_eq!(get(&c, DEGRADED).reason, "KafkaUnreachable");
        assert_eq!(get(&c, READY).status, "False");
        assert_eq!(get(&c, KAFKA_READY).status, "False");
    }

    #[test]
    fn transition_time_changes_only_with_status() {
        let (first, _) = evaluate(&[], &observed());
        let mut later = observed();
        later.now = "2026-11-26T11:00:00Z".into();
        let (same, _) = evaluate(&first, &later);
        assert_eq!(get(&same, READY).last_transition_time, "2026-11-26T10:00:00Z");
        later.paused = true;
        let (paused, phase) = evaluate(&same, &later);
        assert_eq!(phase, "Paused");
        assert_eq!(get(&paused, READY).last_transition_time, "2026-11-26T11:00:00Z");
        assert_eq!(get(&paused, READY).reason, "Paused");
    }
}
