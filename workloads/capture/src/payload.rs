//! Request bodies → raw events.
//!
//! A body may be plain JSON, gzip (`Content-Encoding: gzip`, PostHog's `?compression=gzip-js`,
//! or simply gzip's magic bytes), base64 (`?compression=base64`), or a form with a base64 `data`
//! field (older PostHog SDKs). Its JSON is one event (an object), an array of events, or an
//! envelope `{"batch": [...], "api_key": ..., "sent_at": ...}`. Limits apply after
//! decompression, so a small gzip bomb is refused like a large body.

use std::io::Read;

use base64::Engine;
use bytes::Bytes;
use flate2::read::GzDecoder;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Size limits, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_event_bytes: usize,
    pub max_batch_bytes: usize,
}

/// A decoded request: its events (still unvalidated) and request-level fields.
#[derive(Debug)]
pub struct Payload {
    pub events: Vec<Value>,
    /// Whether the request carried a batch (an array or an envelope), so errors name indexes.
    pub is_batch: bool,
    /// `api_key` or `token` at the top level of the body.
    pub key: Option<String>,
    /// The envelope's `sent_at`, for clock-skew correction.
    pub sent_at: Option<OffsetDateTime>,
}

#[derive(Debug, Error, PartialEq)]
pub enum PayloadError {
    #[error("the body exceeds {limit} bytes after decompression")]
    BodyTooLarge { limit: usize },
    #[error("event {index} exceeds {limit} bytes")]
    EventTooLarge { index: usize, limit: usize },
    #[error("the body is empty")]
    Empty,
    #[error("the body is not valid {encoding}: {detail}")]
    BadEncoding { encoding: &'static str, detail: String },
    #[error("unsupported compression {0:?}; use gzip, gzip-js or base64")]
    UnsupportedCompression(String),
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{field} {reason}")]
    InvalidField { field: &'static str, reason: String },
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow, default)]
    batch: Option<Vec<&'a RawValue>>,
    #[serde(default)]
    api_key: Option<Value>,
    #[serde(default)]
    token: Option<Value>,
    #[serde(default)]
    sent_at: Option<Value>,
}

/// Decodes a request body. `content_encoding` is the header's value, `compression` PostHog's
/// query parameter, `form` whether the content type is `application/x-www-form-urlencoded`.
pub fn decode(
    body: &Bytes,
    content_encoding: Option<&str>,
    compression: Option<&str>,
    form: bool,
    limits: Limits,
) -> Result<Payload, PayloadError> {
    let mut compression = compression.map(|c| c.to_ascii_lowercase());
    let mut raw: Vec<u8>;
    let mut data: &[u8] = body;

    // Older PostHog SDKs post a form whose `data` field holds base64 JSON. Tools such as curl
    // label plain JSON as a form too, so a body that starts like JSON or gzip is never a form.
    let looks_like_json_or_gzip = matches!(trim_ascii(data).first(), Some(b'{' | b'[' | 0x1f));
    if (form && !looks_like_json_or_gzip) || data.starts_with(b"data=") {
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(data)
            .map_err(|e| PayloadError::BadEncoding { encoding: "form data", detail: e.to_string() })?;
        let mut field_data = None;
        for (k, v) in fields {
            match k.as_str() {
                "data" => field_data = Some(v),
                "compression" => compression = Some(v.to_ascii_lowercase()),
                _ => {}
            }
        }
        let field_data = field_data
            .ok_or(PayloadError::InvalidField { field: "data", reason: "is required in a form body".into() })?;
        raw = base64_decode(field_data.trim().as_bytes())?;
        data = &raw;
        if compression.as_deref() == Some("base64") {
            compression = None;
        }
    }

    match compression.as_deref() {
        None | Some("") | Some("gzip") | Some("gzip-js") => {}
        Some("base64") => {
            raw = base64_decode(trim_ascii(data))?;
            data = &raw;
        }
        Some(other) => return Err(PayloadError::UnsupportedCompression(other.to_string())),
    }

    let gzip_requested = matches!(compression.as_deref(), Some("gzip") | Some("gzip-js"))
        || content_encoding
            .map(|e| e.eq_ignore_ascii_case("gzip") || e.eq_ignore_ascii_case("x-gzip"))
            .unwrap_or(false);
    let decompressed;
    if gzip_requested || data.starts_with(&[0x1f, 0x8b]) {
        decompressed = gunzip(data, limits.max_batch_bytes)?;
        data = &decompressed;
    } else if data.len() > limits.max_batch_bytes {
        return Err(PayloadError::BodyTooLarge { limit: limits.max_batch_bytes });
    }

    parse_json(data, limits)
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map(|e| e + 1).unwrap_or(start);
    &b[start..end]
}

fn base64_decode(b: &[u8]) -> Result<Vec<u8>, PayloadError> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    STANDARD
        .decode(b)
        .or_else(|_| URL_SAFE.decode(b))
        .map_err(|e| PayloadError::BadEncoding { encoding: "base64", detail: e.to_string() })
}

/// Gunzips at most `limit` bytes; more is an error, so a gzip bomb costs at most `limit`.
fn gunzip(data: &[u8], limit: usize) -> Result<Vec<u8>, PayloadError> {
    let mut out = Vec::with_capacity((data.len() * 4).min(limit));
    let mut reader = GzDecoder::new(data).take(limit as u64 + 1);
    reader.read_to_end(&mut out).map_err(|e| PayloadError::BadEncoding { encoding: "gzip", detail: e.to_string() })?;
    if out.len() > limit {
        return Err(PayloadError::BodyTooLarge { limit });
    }
    Ok(out)
}

fn parse_json(data: &[u8], limits: Limits) -> Result<Payload, PayloadError> {
    let text = std::str::from_utf8(data).map_err(|e| PayloadError::InvalidJson(format!("not UTF-8: {e}")))?;
    let trimmed = text.trim_start();
    if trimmed.is_empty() {
        return Err(PayloadError::Empty);
    }
    let to_values = |raws: Vec<&RawValue>| -> Result<Vec<Value>, PayloadError> {
        raws.into_iter()
            .enumerate()
            .map(|(index, raw)| {
                if raw.get().len() > limits.max_event_bytes {
                    return Err(PayloadError::EventTooLarge { index, limit: limits.max_event_bytes });
                }
                serde_json::from_str(raw.get()).map_err(|e| PayloadError::InvalidJson(e.to_string()))
            })
            .collect()
    };
    if trimmed.starts_with('[') {
        let raws: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| PayloadError::InvalidJson(e.to_string()))?;
        return Ok(Payload { events: to_values(raws)?, is_batch: true, key: None, sent_at: None });
    }
    if !trimmed.starts_with('{') {
        return Err(PayloadError::InvalidJson("expected a JSON object or array".into()));
    }
    let envelope: Envelope = serde_json::from_str(text).map_err(|e| PayloadError::InvalidJson(e.to_string()))?;
    let key = match (envelope.api_key, envelope.token) {
        (Some(Value::String(k)), _) | (None | Some(Value::Null), Some(Value::String(k))) => Some(k),
        (None | Some(Value::Null), None | Some(Value::Null)) => None,
        _ => {
            return Err(PayloadError::InvalidField { field: "api_key", reason: "must be a string".into() });
        }
    };
    let sent_at = match envelope.sent_at {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(OffsetDateTime::parse(&s, &Rfc3339).map_err(|_| {
            PayloadError::InvalidField { field: "sent_at", reason: "must be an RFC 3339 date-time".into() }
        })?),
        Some(_) => {
            return Err(PayloadError::InvalidField {
                field: "sent_at",
                reason: "must be an RFC 3339 date-time string".into(),
            })
        }
    };
    match envelope.batch {
        Some(raws) => Ok(Payload { events: to_values(raws)?, is_batch: true, key, sent_at }),
        None => {
            if text.len() > limits.max_event_bytes {
                return Err(PayloadError::EventTooLarge { index: 0, limit: limits.max_event_bytes });
            }
            let event: Value = serde_json::from_str(text).map_err(|e| PayloadError::InvalidJson(e.to_string()))?;
            Ok(Payload { events: vec![event], is_batch: false, key, sent_at })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    const LIMITS: Limits = Limits { max_event_bytes: 1000, max_batch_bytes: 10_000 };

    fn gzip(b: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(b).unwrap();
        e.finish().unwrap()
    }

    fn decode_plain(s: &str) -> Result<Payload, PayloadError> {
        decode(&Bytes::from(s.to_string()), None, None, false, LIMITS)
    }

    #[test]
    fn single_array_and_envelope() {
        let p = decode_plain(r#"{"event":"a","distinct_id":"u","api_key":"k"}"#).unwrap();
        assert!(!p.is_batch);
        assert_eq!(p.events.len(), 1);
        assert_eq!(p.key.as_deref(), Some("k"));

        let p = decode_plain(r#"[{"event":"a"},{"event":"b"}]"#).unwrap();
        assert!(p.is_batch);
        assert_eq!(p.events.len(), 2);

        let p = decode_plain(r#"{"token":"t","sent_at":"2026-01-01T00:00:00Z","batch":[{"event":"a"}]}"#).unwrap();
        assert!(p.is_batch);
        assert_eq!(p.key.as_deref(), Some("t"));
        assert!(p.sent_at.is_some());
    }

    #[test]
    fn gzip_by_header_by_query_and_by_magic() {
        let body = Bytes::from(gzip(br#"[{"event":"a"}]"#));
        assert_eq!(decode(&body, Some("gzip"), None, false, LIMITS).unwrap().events.len(), 1);
        assert_eq!(decode(&body, None, Some("gzip-js"), false, LIMITS).unwrap().events.len(), 1);
        assert_eq!(decode(&body, None, None, false, LIMITS).unwrap().events.len(), 1);
        let err = decode(&Bytes::from_static(b"not gzip"), Some("gzip"), None, false, LIMITS).unwrap_err();
        assert!(matches!(err, PayloadError::BadEncoding { encoding: "gzip", .. }));
    }

    #[test]
    fn base64_and_form_data() {
        use base64::engine::general_purpose::STANDARD;
        let b64 = STANDARD.encode(br#"{"event":"a","distinct_id":"u"}"#);
        let p = decode(&Bytes::from(b64.clone()), None, Some("base64"), false, LIMITS).unwrap();
        assert_eq!(p.events[0]["event"], "a");
        let form = serde_urlencoded::to_string([("data", b64.as_str())]).unwrap();
        let p = decode(&Bytes::from(form), None, None, true, LIMITS).unwrap();
        assert_eq!(p.events[0]["distinct_id"], "u");
        // JSON labelled as a form (curl -d) is JSON.
        let p = decode(&Bytes::from(r#"{"event":"a"}"#), None, None, true, LIMITS).unwrap();
        assert_eq!(p.events[0]["event"], "a");
        assert_eq!(
            decode(&Bytes::from("x"), None, Some("lz64"), false, LIMITS).unwrap_err(),
            PayloadError::UnsupportedCompression("lz64".into())
        );
    }

    #[test]
    fn limits_apply_after_decompression() {
        // 20 kB of spaces compresses to a few dozen bytes.
        let bomb = format!("[{}{{\"event\":\"a\"}}]", " ".repeat(20_000));
        let body = Bytes::from(gzip(bomb.as_bytes()));
        assert!(body.len() < 200);
        assert_eq!(
            decode(&body, Some("gzip"), None, false, LIMITS).unwrap_err(),
            PayloadError::BodyTooLarge { limit: 10_000 }
        );
        let big_event = format!(r#"[{{"event":"a"}},{{"event":"{}"}}]"#, "x".repeat(2000));
        assert_eq!(decode_plain(&big_event).unwrap_err(), PayloadError::EventTooLarge { index: 1, limit: 1000 });
        assert_eq!(decode_plain(&" ".repeat(10_001)).unwrap_err(), PayloadError::BodyTooLarge { limit: 10_000 });
    }

    #[test]
    fn refuses_bad_json_and_fields() {
        assert!(matches!(decode_plain("{oops"), Err(PayloadError::InvalidJson(_))));
        assert!(matches!(decode_plain("42"), Err(PayloadError::InvalidJson(_))));
        assert_eq!(decode_plain("   ").unwrap_err(), PayloadError::Empty);
        assert!(matches!(decode_plain(r#"{"api_key":5}"#), Err(PayloadError::InvalidField { field: "api_key", .. })));
        assert!(matches!(
            decode_plain(r#"{"sent_at":"later","batch":[]}"#),
            Err(PayloadError::InvalidField { field: "sent_at", .. })
        ));
    }
}
