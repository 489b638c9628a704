//! Passwords: the policy a new password must meet, and argon2id hashing (PHC strings).
//!
//! Hashing and verifying cost tens of milliseconds of CPU on purpose; callers run them in
//! `spawn_blocking`.

use argon2::password_hash::{self, Output, ParamsString, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use rand::RngCore;

/// Shortest accepted password, in characters.
pub const MIN_LENGTH: usize = 10;
/// Longest accepted password, in bytes (hashing is bounded; nobody types more).
pub const MAX_BYTES: usize = 1024;

/// Frequently used passwords of at least [`MIN_LENGTH`] characters (compared case-insensitively).
const COMMON: &[&str] = &[
    "1234567890",
    "12345678910",
    "123456789a",
    "1q2w3e4r5t",
    "1qaz2wsx3edc",
    "abc1234567",
    "abcd123456",
    "administrator",
    "baseball123",
    "changeme123",
    "dragon1234",
    "football123",
    "iloveyou12",
    "iloveyou123",
    "letmein123",
    "letmeinplease",
    "monkey1234",
    "passw0rd123",
    "password1!",
    "password12",
    "password123",
    "password1234",
    "password!!",
    "p@ssw0rd123",
    "princess123",
    "qwerty1234",
    "qwerty12345",
    "qwerty123456",
    "qwertyuiop",
    "qwertyuiop1",
    "sunshine123",
    "superman123",
    "trustno1234",
    "welcome123",
    "welcome1234",
    "zaq12wsxcde",
    "zxcvbnm123",
    "asdfghjkl1",
    "1qaz2wsx3e",
    "q1w2e3r4t5",
    "a1b2c3d4e5",
    "0987654321",
    "aa12345678",
    "michael123",
    "jennifer123",
    "shadow1234",
    "master1234",
    "starwars123",
    "whatever123",
    "correcthorsebatterystaple",
];

/// Why a password is refused (the message of a 400 on field `password`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    #[error("must be at least {MIN_LENGTH} characters long")]
    TooShort,
    #[error("must be at most {MAX_BYTES} bytes long")]
    TooLong,
    #[error("must mix at least two kinds of characters (lower case, upper case, digits, symbols)")]
    OneClass,
    #[error("is too common; choose another")]
    Common,
    #[error("must not contain your email address")]
    ContainsEmail,
}

/// Checks a new password against the policy.
pub fn check_policy(password: &str, email: &str) -> Result<(), WeakPassword> {
    if password.len() > MAX_BYTES {
        return Err(WeakPassword::TooLong);
    }
    if password.chars().count() < MIN_LENGTH {
        return Err(WeakPassword::TooShort);
    }
    let class = |c: char| {
        if c.is_lowercase() {
            0
        } else if c.is_uppercase() {
            1
        } else if c.is_numeric() {
            2
        } else {
            3
        }
    };
    let mut chars = password.chars().map(class);
    let first = chars.next();
    if chars.all(|c| Some(c) == first) {
        return Err(WeakPassword::OneClass);
    }
    let lower = password.to_lowercase();
    if COMMON.iter().any(|c| *c == lower) {
        return Err(WeakPassword::Common);
    }
    let local = email.split('@').next().unwrap_or_default().to_lowercase();
    if local.chars().count() >= 3 && lower.contains(&local) {
        return Err(WeakPassword::ContainsEmail);
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

/// The argon2id PHC string of `password` with a fresh random salt (OWASP's parameters: 19 MiB,
/// 2 passes, 1 lane).
pub fn hash(password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// True when `password` matches the PHC string `phc` (false for a malformed `phc`).
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default().verify_password(password.as_bytes(), &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Hashes with `blocks` as argon2's working memory (at least 19 MiB of blocks), so that a
/// worker that hashes all day allocates that memory once: each allocate-and-free of 19 MiB from
/// a different thread left the allocator holding it per thread arena (auth's resident memory
/// grew past 300 MiB under a login storm with two hashes at a time).
pub fn hash_with(password: &str, blocks: &mut [Block]) -> Result<String, HashError> {
    let argon = Argon2::default();
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let salt_string = SaltString::encode_b64(&salt).map_err(|e| HashError(e.to_string()))?;
    let needed = argon.params().block_count();
    let memory = blocks.get_mut(..needed).ok_or_else(|| HashError("too little working memory".into()))?;
    let output = Output::init_with(Params::DEFAULT_OUTPUT_LEN, |out| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), &salt, out, &mut *memory)
            .map_err(|_| password_hash::Error::Password)
    })
    .map_err(|e| HashError(e.to_string()))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(argon.params()).map_err(|e| HashError(e.to_string()))?,
        salt: Some(salt_string.as_salt()),
        hash: Some(output),
    };
    Ok(phc.to_string())
}

/// [`verify`] with `blocks` as working memory (a hash made with more memory than `blocks` holds
/// is checked with memory of its own).
pub fn verify_with(password: &str, phc: &str, blocks: &mut [Block]) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else { return false };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else { return false };
    let Ok(params) = Params::try_from(&parsed) else { return false };
    let Ok(algorithm) = Algorithm::try_from(parsed.algorithm) else { return false };
    let version = match parsed.version.map(Version::try_from) {
        None => Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let needed = params.block_count();
    let Some(memory) = blocks.get_mut(..needed) else { return verify(password, phc) };
    let argon = Argon2::new(algorithm, version, params);
    let mut salt_buf = [0u8; 64];
    let Ok(salt_bytes) = salt.decode_b64(&mut salt_buf) else { return false };
    let computed = Output::init_with(expected.len(), |out| {
        argon
            .hash_password_into_with_memory(password.as_bytes(), salt_bytes, out, &mut *memory)
            .map_err(|_| password_hash::Error::Password)
    });
    // Output's equality is constant-time.
    matches!(computed, Ok(c) if c == expected)
}

/// Blocks of argon2 working memory for the default parameters.
pub fn working_memory() -> Vec<Block> {
    vec![Block::default(); Params::default().block_count()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_refuses_weak_passwords() {
        let email = "alice.smith@example.com";
        assert_eq!(check_policy("Sh0rt!", email), Err(WeakPassword::TooShort));
        assert_eq!(check_policy("abcdefghijkl", email), Err(WeakPassword::OneClass));
        assert_eq!(check_policy("123456789012", email), Err(WeakPassword::OneClass));
        assert_eq!(check_policy("Password123", email), Err(WeakPassword::Common));
        assert_eq!(check_policy("QWERTYuiop", email), Err(WeakPassword::Common));
        assert_eq!(check_policy("xxAlice.Smith99", email), Err(WeakPassword::ContainsEmail));
        assert_eq!(check_policy(&"aB3".repeat(400), email), Err(WeakPassword::TooLong));
        assert_eq!(check_policy("correct horse battery", email), Ok(()));
        assert_eq!(check_policy("Tr0ub4dor&3x", email), Ok(()));
        // Characters, not bytes: ten accented letters and a digit are long enough.
        assert_eq!(check_policy("éééééééééé1", email), Ok(()));
        // A two-letter local part is too short to be matched.
        assert_eq!(check_policy("xy-password-zz", "xy@example.com"), Ok(()));
    }

    #[test]
    fn hashes_are_argon2id_and_salted() {
        let a = hash("correct horse battery").unwrap();
        let b = hash("correct horse battery").unwrap();
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "salted");
        assert!(verify("correct horse battery", &a));
        assert!(!verify("correct horse batterY", &a));
        assert!(!verify("anything", "not a phc string"));
    }

    #[test]
    fn hashing_with_reused_memory_matches_the_allocating_functions() {
        let mut blocks = working_memory();
        let a = hash_with("correct horse battery", &mut blocks).unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert!(verify("correct horse battery", &a), "the reference verifier accepts it");
        assert!(verify_with("correct horse battery", &a, &mut blocks));
        assert!(!verify_with("correct horse batterY", &a, &mut blocks));
        let b = hash("correct horse battery").unwrap();
        assert!(verify_with("correct horse battery", &b, &mut blocks), "and checks the reference's hashes");
        assert!(!verify_with("anything", "not a phc string", &mut blocks));
        // A hash that needs more memory than the worker holds is still checked.
        assert!(verify_with("correct horse battery", &a, &mut blocks[..10]));
    }
}
