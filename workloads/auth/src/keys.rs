//! API keys: project write keys (`phc_…`, public, for capture) and personal keys (`phx_…`,
//! secret, for query). Only a key's SHA-256 digest and its first characters are stored.

use rand::Rng;

pub const WRITE_KEY_PREFIX: &str = "phc_";
pub const PERSONAL_KEY_PREFIX: &str = "phx_";
/// Characters of a key kept in clear so people can tell their keys apart.
pub const DISPLAY_PREFIX_LEN: usize = 8;

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn random_base62(n: usize) -> String {
    let mut rng = rand::rngs::OsRng;
    (0..n).map(|_| char::from(BASE62[rng.gen_range(0..BASE62.len())])).collect()
}

/// A new write key: `phc_` and 32 base62 characters (190 bits).
pub fn new_write_key() -> String {
    format!("{WRITE_KEY_PREFIX}{}", random_base62(32))
}

/// A new personal key: `phx_` and 40 base62 characters (238 bits).
pub fn new_personal_key() -> String {
    format!("{PERSONAL_KEY_PREFIX}{}", random_base62(40))
}

/// What listings show of a key.
pub fn display_prefix(key: &str) -> String {
    key.chars().take(DISPLAY_PREFIX_LEN).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::digest_hex;

    #[test]
    fn keys_look_like_posthogs_and_are_unique() {
        let w = new_write_key();
        assert!(w.starts_with("phc_") && w.len() == 36, "{w}");
        assert!(w[4..].bytes().all(|b| b.is_ascii_alphanumeric()));
        let p = new_personal_key();
        assert!(p.starts_with("phx_") && p.len() == 44, "{p}");
        let many: std::collections::HashSet<String> = (0..1000).map(|_| new_write_key()).collect();
        assert_eq!(many.len(), 1000);
        assert_eq!(display_prefix(&w), &w[..8]);
        assert_eq!(digest_hex(&w).len(), 64);
        assert_ne!(digest_hex(&w), digest_hex(&p));
    }
}
