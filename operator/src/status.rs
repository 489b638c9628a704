//! From what the reconciler observed to the status it reports: one condition per component,
//! Ready, Progressing and Degraded, and a phase. Pure logic, unit-tested.

use crate::crd::{Condition, WorkloadStatus, WorkloadsStatus};
use crate::resources::Workload;

/// Condition types.
pub const READY: &str = "Ready";
pub const PROGRESSING: &str = "Progressing";
pub const DEGRADED: &str = "Degraded";
pub const KAFKA_READY: &str = "KafkaReady";
pub const CLICKHOUSE_READY: &str = "ClickHouseReady";

pub fn workload_condition(w: Workload) -> String {
    let name = w.name();
    let mut c = name.chars();
    let capitalised = c.next().map(|f| f.to_ascii_uppercase().to_string() + c.as_str()).unwrap_or_default();
    format!("{capitalised}Ready")
}

/// A dependency's state: ready with a message, or failed with a reason and message.
#[derive(Debug, Clone, PartialEq)]
pub enum DependencyState {
    Ready(String),
    Failed {
        reason: String,
        message: String,
    },
    /// Not checked this time (paused, or an earlier step failed).
    Unknown(String),
}

/// Everything one reconcile observed.
#[derive(Debug, Clone)]
pub struct Observed {
    pub generation: i64,
    pub paused: bool,
    pub workloads: WorkloadsStatus,
    /// Per workload: whether its Deployment has rolled out the current template.
    pub rolled_out: [bool; 4],
    pub kafka: DependencyState,
    pub clickhouse: DependencyState,
    /// Applying children failed (e.g. the API server refused an object).
    pub apply_error: Option<String>,
    pub now: String,
}

fn workload_status(w: &WorkloadsStatus, which: Workload) -> &WorkloadStatus {
    match which {
        Workload::Capture => &w.capture,
        Workload::Consumer => &w.consumer,
        Workload::Query => &w.query,
        Workload::Auth => &w.auth,
    }
}

/// The conditions and phase for `observed`, keeping each condition's lastTransitionTime from
/// `previous` when its status did not change.
#[allow(clippy::type_complexity)]
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
    for (i, w) in Workload::ALL.iter().enumerate() {
        let s = workload_status(&o.workloads, *w);
        let ready = s.ready_replicas >= s.desired_replicas && o.rolled_out[i];
        if !ready {
            all_workloads_ready = false;
            rolling.push(w.name());
        }
        let reason = if ready { "ReplicasReady" } else { "ReplicasNotReady" };
        push(
            &workload_condition(*w),
            Some(ready),
            reason,
            format!("{}/{} replicas ready", s.ready_replicas, s.desired_replicas),
        );
    }

    let dep = |push: &mut dyn FnMut(&str, Option<bool>, &str, String),
               type_: &str,
               state: &DependencyState,
               ok_reason: &str| match state {
        DependencyState::Ready(m) => push(type_, Some(true), ok_reason, m.clone()),
        DependencyState::Failed { reason, message } => push(type_, Some(false), reason, message.clone()),
        DependencyState::Unknown(m) => push(type_, None, "NotChecked", m.clone()),
    };
    dep(&mut push, KAFKA_READY, &o.kafka, "TopicReady");
    dep(&mut push, CLICKHOUSE_READY, &o.clickhouse, "SchemaApplied");

    let failure = o
        .apply_error
        .as_ref()
        .map(|e| ("ApplyFailed".to_string(), e.clone()))
        .or_else(|| match &o.kafka {
            DependencyState::Failed { reason, message } => Some((reason.clone(), format!("Kafka: {message}"))),
            _ => None,
        })
        .or_else(|| match &o.clickhouse {
            DependencyState::Failed { reason, message } => Some((reason.clone(), format!("ClickHouse: {message}"))),
            _ => None,
        });
    let deps_ready = matches!(o.kafka, DependencyState::Ready(_)) && matches!(o.clickhouse, DependencyState::Ready(_));

    match &failure {
        Some((reason, message)) => push(DEGRADED, Some(true), reason, message.clone()),
        None => push(DEGRADED, Some(false), "AsExpected", "no failures".into()),
    }
    let progressing = !all_workloads_ready && !o.paused;
    push(
        PROGRESSING,
        Some(progressing),
        if progressing { "RollingOut" } else { "Stable" },
        if progressing { format!("waiting for {}", rolling.join(", ")) } else { "every workload is rolled out".into() },
    );
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
        let ws = WorkloadStatus { ready_replicas: 2, desired_replicas: 2 };
        Observed {
            generation: 4,
            paused: false,
            workloads: WorkloadsStatus { capture: ws.clone(), consumer: ws.clone(), query: ws.clone(), auth: ws },
            rolled_out: [true; 4],
            kafka: DependencyState::Ready("topic has 4 partitions".into()),
            clickhouse: DependencyState::Ready("schema version 1".into()),
            apply_error: None,
            now: "2026-11-26T10:00:00Z".into(),
        }
    }

    fn get<'a>(c: &'a [Condition], t: &str) -> &'a Condition {
        c.iter().find(|c| c.type_ == t).unwrap()
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
        assert_eq!(c.len(), 9);
    }

    #[test]
    fn rollout_is_progressing_not_degraded() {
        let mut o = observed();
        o.workloads.consumer.ready_replicas = 1;
        let (c, phase) = evaluate(&[], &o);
        assert_eq!(phase, "Progressing");
        assert_eq!(get(&c, READY).status, "False");
        assert_eq!(get(&c, PROGRESSING).message, "waiting for consumer");
        assert_eq!(get(&c, "ConsumerReady").message, "1/2 replicas ready");
        o.workloads.consumer.ready_replicas = 2;
        o.rolled_out[1] = false;
        assert_eq!(evaluate(&[], &o).1, "Progressing", "an old template still running is not ready");
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
