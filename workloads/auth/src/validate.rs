//! Checks of user input that are not about passwords: emails, names, time zones. Each returns
//! the 400 to answer, naming the field.

use cairn_common::http::ApiError;

pub const MAX_NAME_CHARS: usize = 200;

/// An email address as people type it: `local@domain.tld`, no spaces or control characters,
/// at most 254 bytes. Stored as given; compared case-insensitively.
pub fn email(field: &str, value: &str) -> Result<(), ApiError> {
    let bad = |why: &str| Err(ApiError::invalid(field, format!("is not a valid email address: {why}")));
    if value.is_empty() {
        return bad("empty");
    }
    if value.len() > 254 {
        return bad("longer than 254 characters");
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("contains spaces or control characters");
    }
    let Some((local, domain)) = value.rsplit_once('@') else { return bad("no @") };
    if local.is_empty() || local.len() > 64 || local.contains('@') {
        return bad("the part before @ must be 1 to 64 characters without another @");
    }
    let labels: Vec<&str> = domain.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_alphanumeric() || c == '-')
    };
    if labels.len() < 2 || !labels.iter().all(label_ok) {
        return bad("the domain must look like example.com");
    }
    Ok(())
}

/// A display name: at most [`MAX_NAME_CHARS`] characters, no control characters; `required`
/// refuses an empty (or blank) one.
pub fn name(field: &str, value: &str, required: bool) -> Result<(), ApiError> {
    if required && value.trim().is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    if value.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::invalid(field, format!("must be at most {MAX_NAME_CHARS} characters")));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

/// An IANA time zone name, checked for its shape (`UTC`, `Europe/Paris`,
/// `America/Argentina/Buenos_Aires`, `Etc/GMT+5`): segments of letters, digits, `_`, `-`, `+`
/// separated by `/`, each starting with a letter.
pub fn timezone(field: &str, value: &str) -> Result<(), ApiError> {
    let segment_ok = |s: &str| {
        s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
    };
    if value.is_empty() || value.len() > 64 || !value.split('/').all(segment_ok) {
        return Err(ApiError::invalid(field, "must be an IANA time zone name such as UTC or Europe/Paris"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for ok in ["a@b.co", "Alice.Smith+tag@Example.COM", "o'brien@example.ie", "x@sub.dömain.de"] {
            assert!(email("email", ok).is_ok(), "{ok}");
        }
        for bad in
            ["", "plain", "@example.com", "a@", "a@localhost", "a b@example.com", "a@-x.com", "a@x..com", "a@@x.com"]
        {
            let e = email("email", bad).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("email"), "{bad}");
        }
        assert!(email("email", &format!("{}@example.com", "a".repeat(65))).is_err());
    }

    #[test]
    fn names() {
        assert!(name("name", "", false).is_ok());
        assert!(name("name", "  ", true).is_err());
        assert!(name("name", "Robert'); DROP TABLE users;--", true).is_ok());
        assert!(name("name", &"x".repeat(201), true).is_err());
        assert!(name("name", "tab\there", true).is_err());
    }

    #[test]
    fn timezones() {
        for ok in ["UTC", "Europe/Paris", "America/Argentina/Buenos_Aires", "Etc/GMT+5", "EST5EDT"] {
            assert!(timezone("timezone", ok).is_ok(), "{ok}");
        }
        for bad in ["", "Europe/", "/Paris", "Europe/../etc", "Paris Time", "1UTC", "Europe/Paris;"] {
            assert!(timezone("timezone", bad).is_err(), "{bad}");
        }
    }
}
