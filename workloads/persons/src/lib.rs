//! Persons: who a project's distinct ids belong to, and what is known about them.
//!
//! A visitor browses anonymously under one distinct id and logs in under another; PostHog's SDKs
//! then send `$identify` (with `$anon_distinct_id`) or `$create_alias`, and analyses must count
//! one person. This crate holds the rules, free of storage, so that they are stated once and
//! tested exhaustively:
//!
//! - [`ids`]: a person's id is the 64-bit CityHash of the distinct id that started it — the value
//!   ClickHouse computes as `cityHash64(distinct_id)`, already the person key of the
//!   `events_by_person` table — so a distinct id that was never merged needs no lookup and no row;
//!   and which distinct ids are never merged (`anonymous`, `null`, …).
//! - [`identity`]: what an identity event asks ([`identity::IdentityOp`]) and what it does, given
//!   what is known of the two ids' persons ([`identity::decide`]): the merge rule, including the
//!   refusal to merge two identified persons.
//! - [`properties`]: the `$set`, `$set_once` and `$unset` operations an event carries, and their
//!   fold in event-time order, so that replays and late events converge to the same properties
//!   whatever order they arrive in.
//! - [`store`]: the decisions kept in PostgreSQL, one project at a time, each recorded by its
//!   event, and the moved ids handed to ClickHouse through an outbox.

pub mod identity;
pub mod ids;
pub mod properties;
pub mod store;

pub use ids::{id_hash, is_illegal, PersonId};
