//! Backfills: the copies of stored data that migrations ask for (`events_by_person`'s copy of
//! every stored event), run apart from the reconcile loop.
//!
//! A reconcile applies the schema with backfills deferred (they are recorded in
//! `cairn_backfills`), then hands each pending backfill to [`Backfills::drive`]: one task per
//! backfill runs the copy under a query id derived from the database and the statement, and
//! records it done. The reconcile never waits for a copy and never sends one that runs: the task
//! is registered here while it runs, and ClickHouse itself refuses a second query with the same
//! id (so another operator replica, or this one after a restart, cannot start the same copy while
//! the first still runs). A copy cut short (the operator restarted, ClickHouse restarted) stays
//! pending and is run again: the target collapses duplicates like any redelivery.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_common::clickhouse::{backfill_progress, client, pending_backfills, run_backfill, Backfill, MigrationError};
use cairn_common::config::ClickHouseConfig;

use crate::crd::BackfillStatus;
use crate::leader::Leadership;

/// How long a backfill may run.
pub const BACKFILL_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// How soon a failed backfill is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(60);
/// How soon a backfill found running elsewhere is looked at again.
pub const RUNNING_ELSEWHERE_RECHECK: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
enum Run {
    Running { since: Instant, started_at: String },
    Failed { at: Instant, error: String, retry: Duration },
}

/// The backfills this operator runs, by query id.
#[derive(Debug, Default, Clone)]
pub struct Backfills {
    runs: Arc<Mutex<HashMap<String, Run>>>,
}

impl Backfills {
    /// Starts what is pending and not running (none while `hold` says why not: disk pressure);
    /// returns the status of every pending backfill.
    pub async fn drive(
        &self,
        cfg: &ClickHouseConfig,
        leadership: &Leadership,
        metrics: &crate::metrics::OperatorMetrics,
        now: &str,
        hold: Option<&str>,
    ) -> Result<Vec<BackfillStatus>, MigrationError> {
        let ch = client(cfg);
        let pending = pending_backfills(&ch).await?;
        // One copy at a time, in migration order: each reads the whole events table, and two at
        // once would double the load on ClickHouse for no sooner end.
        let mut busy = self
            .runs
            .lock()
            .map(|r| pending.iter().any(|b| matches!(r.get(&b.query_id), Some(Run::Running { .. }))))
            .unwrap_or(true);
        let mut out = Vec::new();
        for b in pending {
            let run = self.runs.lock().ok().and_then(|r| r.get(&b.query_id).cloned());
            let mut status = BackfillStatus { migration: b.version, name: b.name.clone(), ..Default::default() };
            match run {
                Some(Run::Running { since, started_at }) => {
                    status.state = "Running".into();
                    status.started_at = Some(started_at);
                    if let Ok(Some((read, total))) = backfill_progress(&ch, &b.query_id).await {
                        status.rows_read = Some(read);
                        status.rows_total = Some(total);
                    }
                    let _ = since;
                }
                Some(Run::Failed { at, error, retry }) if at.elapsed() < retry => {
                    status.state = if retry == RUNNING_ELSEWHERE_RECHECK { "Running" } else { "Failed" }.into();
                    status.message = Some(format!("{error}; looked at again within {}s", retry.as_secs()));
                }
                _ if !leadership.is_leader() => {
                    status.state = "Pending".into();
                }
                _ if hold.is_some() => {
                    status.state = "Pending".into();
                    status.message = hold.map(|h| format!("waits: {h}"));
                }
                _ if busy => {
                    status.state = "Pending".into();
                    status.message = Some("waits for the copy before it".into());
                }
                _ => {
                    busy = true;
                    metrics.backfills_started.inc();
                    self.start(ch.clone(), b.clone(), now.to_string());
                    status.state = "Running".into();
                    status.started_at = Some(now.to_string());
                }
            }
            out.push(status);
        }
        Ok(out)
    }

    fn start(&self, ch: clickhouse::Client, b: Backfill, now: String) {
        let Ok(mut runs) = self.runs.lock() else { return };
        runs.insert(b.query_id.clone(), Run::Running { since: Instant::now(), started_at: now });
        drop(runs);
        let registry = self.runs.clone();
        tracing::info!(migration = b.version, name = %b.name, query_id = %b.query_id, "starting a backfill");
        tokio::spawn(async move {
            let result = run_backfill(&ch, &b, BACKFILL_TIMEOUT).await;
            let Ok(mut runs) = registry.lock() else { return };
            match result {
                Ok(()) => {
                    runs.remove(&b.query_id);
                }
                Err(e) => {
                    let text = e.to_string();
                    let retry = if text.contains("QUERY_WITH_SAME_ID_IS_ALREADY_RUNNING") || text.contains("Code: 216")
                    {
                        tracing::info!(query_id = %b.query_id, "the backfill already runs elsewhere; waiting for it");
                        RUNNING_ELSEWHERE_RECHECK
                    } else {
                        tracing::warn!(error = %text, query_id = %b.query_id, "backfill failed");
                        RETRY_AFTER
                    };
                    runs.insert(b.query_id.clone(), Run::Failed { at: Instant::now(), error: text, retry });
                }
            }
        });
    }

    /// Whether a backfill of this operator runs now (for tests and metrics).
    pub fn running(&self) -> usize {
        self.runs.lock().map(|r| r.values().filter(|v| matches!(v, Run::Running { .. })).count()).unwrap_or(0)
    }
}
