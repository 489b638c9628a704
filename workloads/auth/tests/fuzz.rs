//! Property-based fuzzing of auth's token parsing (`make fuzz` runs it longer:
//! `PROPTEST_CASES`): access tokens (JWTs) of every shape, bearer headers, refresh-token digests.
//! Nothing but a valid token signed with the key verifies; nothing panics.

use std::time::{Duration, SystemTime};

use axum::http::{header, HeaderMap, HeaderValue};
use cairn_auth::extract::bearer;
use cairn_auth::tokens::{constant_time_eq, digest_hex, TokenSigner};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    ProptestConfig { failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn only_tokens_signed_with_the_key_verify(
        garbage in "[A-Za-z0-9_.=+/-]{0,300}",
        flip in 0usize..400,
        user in 1i64..1_000_000,
    ) {
        let signer = TokenSigner::new(b"a-fuzzing-secret-of-enough-length-0123456789", Duration::from_secs(900));
        prop_assert!(signer.verify(&garbage).is_none());
        let good = signer.issue(user, uuid::Uuid::new_v4(), SystemTime::now()).unwrap();
        prop_assert_eq!(signer.verify(&good).and_then(|c| c.user_id()), Some(user));
        // Any one character changed breaks it (except base64 padding bits that decode the same).
        let mut bytes = good.clone().into_bytes();
        let i = flip % bytes.len();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).unwrap();
        if let Some(c) = signer.verify(&tampered) {
            prop_assert_eq!(c.user_id(), Some(user), "a tampered token verified as someone else");
        }
        let other = TokenSigner::new(b"another-secret-of-enough-length-0123456789ab", Duration::from_secs(900));
        prop_assert!(other.verify(&good).is_none());
    }

    #[test]
    fn bearer_headers_and_digests(value in "[ -~]{0,200}", a in "[ -~]{0,64}", b in "[ -~]{0,64}") {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(header::AUTHORIZATION, v);
            if let Some(t) = bearer(&h) {
                prop_assert!(!t.is_empty() && t.trim() == t);
            }
        }
        prop_assert_eq!(digest_hex(&a).len(), 64);
        prop_assert_eq!(constant_time_eq(&a, &b), a == b);
    }
}
