//! Person ids and the distinct ids that are never merged.

/// A person's id: the [`id_hash`] of the distinct id that started the person. A distinct id that
/// no identity event ever touched is its own person, with this id.
pub type PersonId = u64;

/// The 64-bit CityHash (v1.0.2) of a distinct id: what ClickHouse computes as
/// `cityHash64(distinct_id)` (checked against the engine in `e2e/tests/chserver.rs`).
pub fn id_hash(distinct_id: &str) -> u64 {
    ch_cityhash102::cityhash64(distinct_id.as_bytes())
}

/// Distinct ids that SDKs and integrations send by mistake for many different people; merging on
/// them would join strangers. Compared ignoring case (PostHog's list).
const ILLEGAL_ANY_CASE: &[&str] = &[
    "anonymous",
    "guest",
    "distinctid",
    "distinct_id",
    "id",
    "not_authenticated",
    "email",
    "undefined",
    "true",
    "false",
];

/// The same, compared exactly.
const ILLEGAL_EXACT: &[&str] = &["[object Object]", "NaN", "None", "none", "null", "0", "undefined"];

/// Whether `distinct_id` is never merged with another (empty, or one of the placeholders above,
/// also in single or double quotes).
pub fn is_illegal(distinct_id: &str) -> bool {
    let id = distinct_id.trim();
    let unquoted = id
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .or_else(|| id.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')))
        .unwrap_or(id);
    unquoted.is_empty()
        || ILLEGAL_ANY_CASE.iter().any(|bad| unquoted.eq_ignore_ascii_case(bad))
        || ILLEGAL_EXACT.contains(&unquoted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_illegal_in_any_case_or_quotes_and_real_ids_are_not() {
        for bad in
            ["", "  ", "anonymous", "Anonymous", "GUEST", "\"null\"", "'undefined'", "0", "[object Object]", "NaN"]
        {
            assert!(is_illegal(bad), "{bad:?}");
        }
        for good in ["user-1", "0x1", "nan-ny", "none@example.com", "00", "anonymous-42", "NULL"] {
            assert!(!is_illegal(good), "{good:?}");
        }
    }

    #[test]
    fn the_hash_is_stable() {
        // ClickHouse: SELECT cityHash64('') and cityHash64('user-1') (the e2e checks many more).
        assert_eq!(id_hash(""), 11160318154034397263);
        assert_ne!(id_hash("user-1"), id_hash("user-2"));
    }
}
