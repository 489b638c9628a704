//! Which Cairn version a platform runs, and upgrades one platform at a time.
//!
//! A platform with `spec.version` runs that version (changing it upgrades that platform at once:
//! the user chose the moment). A platform without one runs the operator's default version — but
//! when the operator is upgraded and its default changes, every such platform would roll at once,
//! and a bad release would take all of them down together. So only one platform at a time moves
//! to a new default: it holds the *upgrade slot* from the moment its new pods are applied until
//! it is Ready at the new version (`status.version`); the others keep their version, with an
//! `UpgradePending` condition, until the slot is free. A platform that never becomes Ready at the
//! new version keeps the slot: the rollout stops there, as a canary's would.
//!
//! `status.targetVersion` records what is applied while it differs from `status.version`, so a
//! restarted operator finds the platform that was upgrading and lets it finish first.

use std::sync::Mutex;

use kube::ResourceExt;

use crate::crd::AnalyticsPlatform;
use crate::resources::config::platform_key;

/// The version to apply, and whether the platform waits for the slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionChoice {
    /// The version whose images are applied now.
    pub apply: String,
    /// The version the platform should reach (the spec's, or the operator's default).
    pub target: String,
    /// `Some(platform)` while an implicit upgrade waits for `platform` to finish its own.
    pub waiting_for: Option<String>,
}

/// The one upgrade in flight among the platforms without `spec.version`.
#[derive(Debug, Default)]
pub struct UpgradeSlot {
    holder: Mutex<Option<String>>,
}

/// Whether a platform is part-way to a version it does not run yet.
fn mid_upgrade(ap: &AnalyticsPlatform) -> bool {
    ap.status.as_ref().is_some_and(|s| s.target_version.is_some() && s.target_version != s.version)
}

impl UpgradeSlot {
    /// The version `ap` runs now. `others` are the platforms the operator knows (for a slot
    /// holder from before a restart).
    pub fn choose<'a>(
        &self,
        ap: &AnalyticsPlatform,
        default: &str,
        others: impl Iterator<Item = &'a AnalyticsPlatform>,
    ) -> VersionChoice {
        let me = platform_key(ap);
        let target = ap.spec.version.clone().unwrap_or_else(|| default.to_string());
        let status = ap.status.clone().unwrap_or_default();
        let running = status.version.clone();
        let go = |slot: &mut Option<String>| {
            if running.as_deref() != Some(target.as_str()) && ap.spec.version.is_none() {
                *slot = Some(me.clone());
            }
            VersionChoice { apply: target.clone(), target: target.clone(), waiting_for: None }
        };
        let Ok(mut slot) = self.holder.lock() else {
            // A poisoned lock means a panic elsewhere: keep what runs.
            return VersionChoice {
                apply: running.clone().unwrap_or_else(|| target.clone()),
                target: target.clone(),
                waiting_for: None,
            };
        };
        let Some(current) = running.clone() else { return go(&mut slot) };
        if current == target {
            if slot.as_deref() == Some(me.as_str()) {
                *slot = None;
            }
            return VersionChoice { apply: target.clone(), target, waiting_for: None };
        }
        // Pinned by the spec, or already part-way there: go on.
        if ap.spec.version.is_some() || status.target_version.as_deref() == Some(target.as_str()) {
            return go(&mut slot);
        }
        if slot.is_none() {
            *slot = others.filter(|o| o.uid() != ap.uid() && mid_upgrade(o)).map(platform_key).next();
        }
        match slot.clone() {
            Some(holder) if holder != me => VersionChoice { apply: current, target, waiting_for: Some(holder) },
            _ => go(&mut slot),
        }
    }

    /// `ap` is Ready at `version`, or gone: the slot is free if it held it.
    pub fn release(&self, ap: &AnalyticsPlatform) {
        let me = platform_key(ap);
        if let Ok(mut slot) = self.holder.lock() {
            if slot.as_deref() == Some(me.as_str()) {
                *slot = None;
            }
        }
    }

    pub fn holder(&self) -> Option<String> {
        self.holder.lock().ok().and_then(|s| s.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::AnalyticsPlatformStatus;
    use crate::resources::fixtures::platform;

    fn at(name: &str, version: Option<&str>, target: Option<&str>) -> AnalyticsPlatform {
        let mut ap = platform();
        ap.metadata.name = Some(name.into());
        ap.metadata.uid = Some(format!("uid-{name}"));
        ap.status = Some(AnalyticsPlatformStatus {
            version: version.map(str::to_string),
            target_version: target.map(str::to_string),
            ..Default::default()
        });
        ap
    }

    #[test]
    fn one_platform_at_a_time_moves_to_a_new_default() {
        let slot = UpgradeSlot::default();
        let a = at("a", Some("1.0"), None);
        let b = at("b", Some("1.0"), None);
        let none: [AnalyticsPlatform; 0] = [];
        assert_eq!(slot.choose(&a, "1.0", none.iter()).apply, "1.0", "nothing to do");
        assert_eq!(slot.holder(), None);
        let first = slot.choose(&a, "2.0", none.iter());
        assert_eq!((first.apply.as_str(), first.waiting_for.as_deref()), ("2.0", None));
        assert_eq!(slot.holder().as_deref(), Some("analytics/a"));
        let second = slot.choose(&b, "2.0", none.iter());
        assert_eq!((second.apply.as_str(), second.waiting_for.as_deref()), ("1.0", Some("analytics/a")));
        // a is Ready at 2.0: b goes next.
        slot.release(&a);
        assert_eq!(slot.choose(&b, "2.0", none.iter()).apply, "2.0");
        // A new platform starts at the default at once.
        let fresh = at("c", None, None);
        assert_eq!(slot.choose(&fresh, "2.0", none.iter()).apply, "2.0");
    }

    #[test]
    fn pinned_platforms_and_restarts() {
        let slot = UpgradeSlot::default();
        // After a restart the slot is empty; the platform that was part-way is found in the store.
        let upgrading = at("a", Some("1.0"), Some("2.0"));
        let waiting = at("b", Some("1.0"), None);
        let store = [upgrading.clone(), waiting.clone()];
        assert_eq!(slot.choose(&waiting, "2.0", store.iter()).waiting_for.as_deref(), Some("analytics/a"));
        assert_eq!(slot.choose(&upgrading, "2.0", store.iter()).apply, "2.0", "the holder goes on");
        // A pinned platform follows its spec whatever the slot.
        let mut pinned = at("p", Some("1.0"), None);
        pinned.spec.version = Some("3.0".into());
        assert_eq!(slot.choose(&pinned, "2.0", store.iter()).apply, "3.0");
        // Pinning the holder back to its version frees the slot.
        let mut back = upgrading.clone();
        back.spec.version = Some("1.0".into());
        assert_eq!(slot.choose(&back, "2.0", store.iter()).apply, "1.0");
        assert_eq!(slot.holder(), None);
    }
}
