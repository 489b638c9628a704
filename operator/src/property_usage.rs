//! Property columns chosen from query usage (`spec.clickhouse.autoPropertyColumns`).
//!
//! The query service names, in every statement's `log_comment`, the event properties it parses
//! out of the events' JSON because they are no column yet; ClickHouse keeps that in its query
//! log with the statement's duration. Every few minutes (`CAIRN_OPERATOR_PROPERTY_USAGE_SECS`)
//! the operator reads, per platform, which properties statements over its database parsed in
//! the last `lookbackDays`, by at least `minQueries` statements, and makes the costliest
//! (summed duration) columns — up to `maxColumns` beyond those the spec lists. Reads between
//! two looks reuse the last choice. A server that keeps no query log (or an account that may
//! not read it) leaves the choice empty and says so in the status; nothing else waits for it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cairn_common::clickhouse::{property_columns, property_usage, PropertyUsage, Topology};
use kube::ResourceExt;

use crate::crd::{AnalyticsPlatform, AutoPropertyColumns};

/// How long the query log may take to read.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The choice for one platform: what to add now and what was chosen before.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Usage {
    /// Properties to make columns now (not columns yet), costliest first.
    pub chosen: Vec<PropertyUsage>,
    /// Columns there already that the spec does not list: chosen before (or listed once).
    pub present: Vec<String>,
    /// Why the query log could not be read, if it could not.
    pub problem: Option<String>,
    /// Whether the choice is on.
    pub enabled: bool,
}

impl Usage {
    /// What the status's `propertyColumns` adds about the choice (empty when it is off).
    pub fn summary(&self) -> String {
        if !self.enabled {
            return String::new();
        }
        let mut text = String::new();
        if !self.present.is_empty() || !self.chosen.is_empty() {
            let mut names: Vec<String> = self.present.clone();
            names.extend(self.chosen.iter().map(|u| format!("{} ({} statements)", u.key, u.queries)));
            text.push_str(&format!(", beyond the spec's (from query usage): {}", names.join(", ")));
        }
        if let Some(problem) = &self.problem {
            text.push_str(&format!(", query usage not read: {problem}"));
        }
        text
    }
}

/// The properties to make columns from `usage` (costliest first): those neither columns nor
/// listed already, while the columns beyond the listed ones stay within `max`.
pub fn choose(
    configured: &[String],
    existing: &BTreeMap<String, String>,
    usage: Vec<PropertyUsage>,
    max: u32,
) -> Usage {
    let present: Vec<String> = existing.keys().filter(|k| !configured.contains(k)).cloned().collect();
    let budget = (max as usize).saturating_sub(present.len());
    let chosen = usage
        .into_iter()
        .filter(|u| !existing.contains_key(&u.key) && !configured.contains(&u.key))
        .take(budget)
        .collect();
    Usage { chosen, present, problem: None, enabled: true }
}

struct Memo {
    at: Instant,
    spec: AutoPropertyColumns,
    configured: Vec<String>,
    usage: Usage,
}

/// The last choice of each platform (by uid), and when it was made.
#[derive(Clone, Default)]
pub struct UsageMemos(Arc<Mutex<HashMap<String, Memo>>>);

impl UsageMemos {
    /// The platform's choice: the last one if younger than `interval` (and made for the same
    /// spec), else read afresh from the query log through `ch` (the platform's database).
    pub async fn refresh(
        &self,
        ap: &AnalyticsPlatform,
        ch: &clickhouse::Client,
        configured: &[String],
        interval: Duration,
    ) -> Usage {
        let spec = ap.spec.clickhouse.auto_property_columns.clone().unwrap_or_default();
        let max = spec.max_columns.unwrap_or(AutoPropertyColumns::DEFAULT_MAX_COLUMNS);
        if max == 0 {
            return Usage::default();
        }
        let id = ap.uid().unwrap_or_else(|| format!("{}/{}", ap.namespace().unwrap_or_default(), ap.name_any()));
        if let Ok(memos) = self.0.lock() {
            if let Some(m) = memos.get(&id) {
                if m.at.elapsed() < interval && m.spec == spec && m.configured == configured {
                    return m.usage.clone();
                }
            }
        }
        let days = spec.lookback_days.unwrap_or(AutoPropertyColumns::DEFAULT_LOOKBACK_DAYS);
        let min_queries = spec.min_queries.unwrap_or(AutoPropertyColumns::DEFAULT_MIN_QUERIES);
        let read = async {
            let existing = property_columns(ch).await?;
            // Enough candidates that those already columns or listed still leave `max` others.
            let limit = u64::from(max) + (existing.len() + configured.len()) as u64;
            let topology = Topology::from_cluster(ap.spec.clickhouse.cluster.as_deref());
            let usage = property_usage(ch, &topology, days, u64::from(min_queries), limit).await?;
            Ok::<_, clickhouse::error::Error>((existing, usage))
        };
        // A time limit of its own: a query log too large to read in time is remembered as such
        // (and read again only after `interval`), never holding up the rest of the reconcile.
        let usage = match tokio::time::timeout(READ_TIMEOUT, read).await {
            Ok(Ok((existing, usage))) => choose(configured, &existing, usage, max),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read the query usage of event properties");
                Usage { enabled: true, problem: Some(first_line(&e.to_string())), ..Usage::default() }
            }
            Err(_) => {
                tracing::warn!("reading the query usage of event properties took longer than {READ_TIMEOUT:?}");
                let problem = format!("the query log took longer than {} s to read", READ_TIMEOUT.as_secs());
                Usage { enabled: true, problem: Some(problem), ..Usage::default() }
            }
        };
        if let Ok(mut memos) = self.0.lock() {
            // Platforms gone long ago are forgotten.
            memos.retain(|_, m| m.at.elapsed() < interval.saturating_mul(10).max(Duration::from_secs(3600)));
            memos.insert(id, Memo { at: Instant::now(), spec, configured: configured.to_vec(), usage: usage.clone() });
        }
        usage
    }
}

/// An error's first line, without ClickHouse's stack trace, short enough for a status.
fn first_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    line.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(key: &str, queries: u64, duration_ms: u64) -> PropertyUsage {
        PropertyUsage { key: key.into(), queries, duration_ms }
    }

    #[test]
    fn the_costliest_unlisted_properties_are_chosen_within_the_budget() {
        let configured = vec!["$browser".to_string(), "$os".to_string()];
        let existing: BTreeMap<String, String> = [("$browser", "mp_browser_x"), ("plan", "mp_plan_y")]
            .iter()
            .map(|(k, c)| (k.to_string(), c.to_string()))
            .collect();
        let usage = vec![
            used("$browser", 900, 9000),
            used("plan", 500, 5000),
            used("tier", 300, 4000),
            used("$os", 200, 3000),
            used("region", 100, 100),
        ];
        // `plan` is a column beyond the listed ones already: one more fits in a budget of two.
        let u = choose(&configured, &existing, usage.clone(), 2);
        assert_eq!(u.present, ["plan"]);
        assert_eq!(u.chosen, [used("tier", 300, 4000)]);
        assert!(u.summary().contains("from query usage): plan, tier (300 statements)"), "{}", u.summary());
        // A full budget chooses nothing; a larger one takes them in order of cost.
        assert!(choose(&configured, &existing, usage.clone(), 1).chosen.is_empty());
        let keys: Vec<String> = choose(&configured, &existing, usage, 5).chosen.into_iter().map(|u| u.key).collect();
        assert_eq!(keys, ["tier", "region"]);
        // Off: nothing said.
        assert_eq!(Usage::default().summary(), "");
        let broken = Usage { enabled: true, problem: Some("no query log".into()), ..Usage::default() };
        assert_eq!(broken.summary(), ", query usage not read: no query log");
    }
}
