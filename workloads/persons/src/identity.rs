//! The identity merge rule: what `$identify`, `$create_alias` and `$merge_dangerously` do.
//!
//! The person of the event's `distinct_id` (the *target*, typically the user id after login)
//! survives; the other id (`$anon_distinct_id`, or `alias`: the *source*) joins it:
//!
//! 1. The same id twice, or an id that is never merged ([`crate::is_illegal`]): nothing changes.
//! 2. Neither id has a person of its own yet (each is still its own implicit person): the source
//!    joins the target's person, which becomes identified.
//! 3. Only one has a person: the other id joins it — unless that would put the target into a person
//!    already identified as someone else (the target is a user id asserted by the event; a shared
//!    device's anonymous id must not pull a second user into the first one's person): then the
//!    target stands alone, identified, and the decision says it was refused.
//! 4. Both have persons, different ones: they merge (every id of the source's person moves to the
//!    target's) only if the source's person is not identified. Two identified persons are never
//!    merged by an event: the decision is [`Decision::Refused`] and nothing moves.
//!    `$merge_dangerously` merges them anyway, but only where the project allows it
//!    ([`Policy::allow_merge_dangerously`], off by default): write keys are public, so otherwise
//!    anyone could join two people's data.
//! 5. `$identify` without `$anon_distinct_id` (a backend asserting a user id) marks the target's
//!    person identified, which protects it from being merged into another later.
//!
//! A merge is a union, so the final grouping does not depend on the order merges are processed
//! in — except where a refusal depends on which of two identifications came first (one anonymous
//! id identified as two users: the first one processed keeps it). Decisions are recorded by event,
//! so replays reproduce them.

use cairn_common::event::CapturedEvent;
use serde_json::Value;

use crate::ids::{id_hash, is_illegal, PersonId};

/// Which identity event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityKind {
    /// `$identify`: the source is `$anon_distinct_id` (optional).
    Identify,
    /// `$create_alias`: the source is `alias`.
    Alias,
    /// `$merge_dangerously`: the source is `alias`; merges identified persons where allowed.
    MergeDangerously,
}

/// What an identity event asks: the target (the event's `distinct_id`) and the source id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityOp {
    pub kind: IdentityKind,
    pub target: String,
    pub source: Option<String>,
}

/// The identity operation an event carries, if it is an identity event with what it needs
/// (`$create_alias` and `$merge_dangerously` without `alias` are not).
pub fn identity_op(event: &CapturedEvent) -> Option<IdentityOp> {
    let (kind, field) = match event.event.as_str() {
        "$identify" => (IdentityKind::Identify, "$anon_distinct_id"),
        "$create_alias" => (IdentityKind::Alias, "alias"),
        "$merge_dangerously" => (IdentityKind::MergeDangerously, "alias"),
        _ => return None,
    };
    let source = match event.properties.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    if source.is_none() && kind != IdentityKind::Identify {
        return None;
    }
    Some(IdentityOp { kind, target: event.distinct_id.clone(), source })
}

/// What is stored about a distinct id's person. An id with nothing stored is its own implicit
/// person ([`id_hash`] of itself), not identified, with no other id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    pub person: PersonId,
    pub identified: bool,
}

/// A project's choices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// Whether `$merge_dangerously` may merge two identified persons (off: it acts as
    /// `$create_alias`).
    pub allow_merge_dangerously: bool,
}

/// Why nothing changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unchanged {
    /// Source and target are the same id.
    SameId,
    /// Both ids already belong to one person, which is identified.
    AlreadyOnePerson,
    /// `$identify` without a source for a person already identified.
    AlreadyIdentified,
}

/// What an identity event does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Unchanged(Unchanged),
    /// An id that is never merged (named) was involved: nothing changes.
    IllegalId(String),
    /// The person becomes identified (and is stored, if it was implicit); no id moves.
    Identify {
        person: PersonId,
    },
    /// `id` (until now its own implicit person) joins `person`, which becomes identified.
    Join {
        id: String,
        person: PersonId,
    },
    /// Every id of `from` moves to `into`, which becomes identified; `from` ends.
    Merge {
        from: PersonId,
        into: PersonId,
    },
    /// The ids belong to different identified persons (or the target would join someone else's
    /// identified person): nothing moves; `target` (the target id's person) becomes identified.
    Refused {
        source: PersonId,
        target: PersonId,
    },
}

/// Decides what `op` does, given what is stored about its target's and source's persons.
pub fn decide(op: &IdentityOp, target: Option<Known>, source: Option<Known>, policy: Policy) -> Decision {
    if is_illegal(&op.target) {
        return Decision::IllegalId(op.target.clone());
    }
    let target_person = target.map_or_else(|| id_hash(&op.target), |k| k.person);
    let target_identified = target.is_some_and(|k| k.identified);
    let Some(source_id) = op.source.as_deref() else {
        return if target_identified {
            Decision::Unchanged(Unchanged::AlreadyIdentified)
        } else {
            Decision::Identify { person: target_person }
        };
    };
    if source_id == op.target {
        return Decision::Unchanged(Unchanged::SameId);
    }
    if is_illegal(source_id) {
        return Decision::IllegalId(source_id.to_string());
    }
    let dangerous = op.kind == IdentityKind::MergeDangerously && policy.allow_merge_dangerously;
    match (target, source) {
        // Neither has a person yet: the source joins the target's.
        (None, None) | (Some(_), None) => Decision::Join { id: source_id.to_string(), person: target_person },
        // Only the source has one: the target joins it, unless it is someone else's.
        (None, Some(s)) if !s.identified || dangerous => Decision::Join { id: op.target.clone(), person: s.person },
        (None, Some(s)) => Decision::Refused { source: s.person, target: target_person },
        (Some(t), Some(s)) if t.person == s.person => {
            if t.identified {
                Decision::Unchanged(Unchanged::AlreadyOnePerson)
            } else {
                Decision::Identify { person: t.person }
            }
        }
        (Some(t), Some(s)) if !s.identified || dangerous => Decision::Merge { from: s.person, into: t.person },
        (Some(t), Some(s)) => Decision::Refused { source: s.person, target: t.person },
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn op(kind: IdentityKind, target: &str, source: Option<&str>) -> IdentityOp {
        IdentityOp { kind, target: target.into(), source: source.map(str::to_string) }
    }

    fn event(name: &str, distinct_id: &str, properties: Value) -> CapturedEvent {
        let now = time::OffsetDateTime::now_utc();
        CapturedEvent {
            uuid: uuid::Uuid::now_v7(),
            project_id: 1,
            event: name.into(),
            distinct_id: distinct_id.into(),
            properties: properties.as_object().cloned().unwrap_or_default(),
            timestamp: now,
            received_at: now,
        }
    }

    #[test]
    fn identity_events_are_read_as_posthog_sends_them() {
        let e = event("$identify", "user-1", serde_json::json!({"$anon_distinct_id": " anon-1 "}));
        assert_eq!(identity_op(&e), Some(op(IdentityKind::Identify, "user-1", Some("anon-1"))));
        let e = event("$identify", "user-1", serde_json::json!({}));
        assert_eq!(identity_op(&e), Some(op(IdentityKind::Identify, "user-1", None)));
        let e = event("$create_alias", "user-1", serde_json::json!({"alias": 42}));
        assert_eq!(identity_op(&e), Some(op(IdentityKind::Alias, "user-1", Some("42"))));
        assert_eq!(identity_op(&event("$create_alias", "user-1", serde_json::json!({}))), None);
        assert_eq!(identity_op(&event("$pageview", "user-1", serde_json::json!({"alias": "x"}))), None);
    }

    #[test]
    fn the_rule_case_by_case() {
        let p = Policy::default();
        let anon = Known { person: 10, identified: false };
        let user = Known { person: 20, identified: true };
        let other_user = Known { person: 30, identified: true };
        let identify = op(IdentityKind::Identify, "u", Some("a"));
        // Neither stored: the anonymous id joins the user's (implicit) person.
        assert_eq!(decide(&identify, None, None, p), Decision::Join { id: "a".into(), person: id_hash("u") });
        // Only the user stored: the anonymous id joins it.
        assert_eq!(decide(&identify, Some(user), None, p), Decision::Join { id: "a".into(), person: 20 });
        // Only the anonymous id stored (aliased before): the user joins it.
        assert_eq!(decide(&identify, None, Some(anon), p), Decision::Join { id: "u".into(), person: 10 });
        // ... unless it is someone else's identified person (a shared device).
        assert_eq!(
            decide(&identify, None, Some(other_user), p),
            Decision::Refused { source: 30, target: id_hash("u") }
        );
        // Both stored, the source anonymous: merge into the target.
        assert_eq!(decide(&identify, Some(user), Some(anon), p), Decision::Merge { from: 10, into: 20 });
        // Both identified: refused, whatever the event, unless the project allows $merge_dangerously.
        assert_eq!(decide(&identify, Some(user), Some(other_user), p), Decision::Refused { source: 30, target: 20 });
        let dangerous = op(IdentityKind::MergeDangerously, "u", Some("a"));
        assert_eq!(decide(&dangerous, Some(user), Some(other_user), p), Decision::Refused { source: 30, target: 20 });
        let allow = Policy { allow_merge_dangerously: true };
        assert_eq!(decide(&dangerous, Some(user), Some(other_user), allow), Decision::Merge { from: 30, into: 20 });
        // Already one person.
        assert_eq!(decide(&identify, Some(user), Some(user), p), Decision::Unchanged(Unchanged::AlreadyOnePerson));
        assert_eq!(decide(&identify, Some(anon), Some(anon), p), Decision::Identify { person: 10 });
        // Same id, illegal ids, identify without a source.
        assert_eq!(
            decide(&op(IdentityKind::Alias, "u", Some("u")), None, None, p),
            Decision::Unchanged(Unchanged::SameId)
        );
        assert_eq!(
            decide(&op(IdentityKind::Identify, "u", Some("null")), None, None, p),
            Decision::IllegalId("null".into())
        );
        assert_eq!(
            decide(&op(IdentityKind::Identify, "anonymous", Some("a")), None, None, p),
            Decision::IllegalId("anonymous".into())
        );
        assert_eq!(
            decide(&op(IdentityKind::Identify, "u", None), None, None, p),
            Decision::Identify { person: id_hash("u") }
        );
        assert_eq!(
            decide(&op(IdentityKind::Identify, "u", None), Some(user), None, p),
            Decision::Unchanged(Unchanged::AlreadyIdentified)
        );
    }

    /// A tiny store applying decisions: distinct id → (person, identified).
    #[derive(Default)]
    struct Store {
        ids: BTreeMap<String, PersonId>,
        identified: BTreeSet<PersonId>,
    }

    impl Store {
        fn known(&self, id: &str) -> Option<Known> {
            self.ids.get(id).map(|p| Known { person: *p, identified: self.identified.contains(p) })
        }
        fn apply(&mut self, op: &IdentityOp) {
            let t = self.known(&op.target);
            let s = op.source.as_deref().and_then(|s| self.known(s));
            match decide(op, t, s, Policy::default()) {
                Decision::Unchanged(_) | Decision::IllegalId(_) => {}
                Decision::Identify { person } => {
                    self.ids.entry(op.target.clone()).or_insert(person);
                    self.identified.insert(person);
                }
                Decision::Join { id, person } => {
                    for who in [&op.target, op.source.as_ref().unwrap()] {
                        self.ids.entry(who.clone()).or_insert(person);
                    }
                    self.ids.insert(id, person);
                    self.identified.insert(person);
                }
                Decision::Merge { from, into } => {
                    for p in self.ids.values_mut().filter(|p| **p == from) {
                        *p = into;
                    }
                    self.identified.remove(&from);
                    self.identified.insert(into);
                }
                Decision::Refused { target, .. } => {
                    self.ids.entry(op.target.clone()).or_insert(target);
                    self.identified.insert(target);
                }
            }
        }
        /// The partition of ids into persons (as sets of ids), independent of person numbers.
        fn groups(&self) -> BTreeSet<BTreeSet<String>> {
            let mut by: BTreeMap<PersonId, BTreeSet<String>> = BTreeMap::new();
            for (id, p) in &self.ids {
                by.entry(*p).or_default().insert(id.clone());
            }
            by.into_values().collect()
        }
    }

    /// Anonymous sessions that each end in one login (no id identified as two users): the persons
    /// come out the same whatever order the events are processed in.
    #[test]
    fn merges_without_conflicts_converge_in_any_order() {
        let ops = [
            op(IdentityKind::Identify, "alice", Some("anon-1")),
            op(IdentityKind::Identify, "alice", Some("anon-2")),
            op(IdentityKind::Alias, "alice", Some("alice@example.com")),
            op(IdentityKind::Identify, "bob", Some("anon-3")),
            op(IdentityKind::Alias, "bob", Some("bob@example.com")),
            op(IdentityKind::Identify, "carol", None),
        ];
        let mut first: Option<BTreeSet<BTreeSet<String>>> = None;
        // Every order of the six (720).
        let mut idx: Vec<usize> = (0..ops.len()).collect();
        let mut count = 0;
        permute(&mut idx, 0, &mut |order| {
            let mut store = Store::default();
            for &i in order {
                store.apply(&ops[i]);
            }
            let groups = store.groups();
            match &first {
                None => first = Some(groups),
                Some(g) => assert_eq!(&groups, g, "order {order:?}"),
            }
            count += 1;
        });
        assert_eq!(count, 720);
        let expected: BTreeSet<BTreeSet<String>> = [
            vec!["alice", "anon-1", "anon-2", "alice@example.com"],
            vec!["bob", "anon-3", "bob@example.com"],
            vec!["carol"],
        ]
        .into_iter()
        .map(|g| g.into_iter().map(str::to_string).collect())
        .collect();
        assert_eq!(first.unwrap(), expected);
    }

    #[test]
    fn a_shared_device_never_joins_two_users() {
        // One anonymous id identified as two users: whichever comes first keeps it; the other user
        // stands alone; never one person.
        for order in [[0, 1], [1, 0]] {
            let ops =
                [op(IdentityKind::Identify, "alice", Some("anon")), op(IdentityKind::Identify, "bob", Some("anon"))];
            let mut store = Store::default();
            for i in order {
                store.apply(&ops[i]);
            }
            assert_ne!(store.known("alice").unwrap().person, store.known("bob").unwrap().person);
            assert!(store.known("alice").unwrap().identified && store.known("bob").unwrap().identified);
        }
    }

    fn permute(v: &mut Vec<usize>, k: usize, f: &mut impl FnMut(&[usize])) {
        if k == v.len() {
            f(v);
            return;
        }
        for i in k..v.len() {
            v.swap(k, i);
            permute(v, k + 1, f);
            v.swap(k, i);
        }
    }
}
