//! Request bodies → raw events, with every cost bounded before anything is materialised.
//!
//! A body may be plain JSON, gzip (whatever the request says: like PostHog's capture, gzip is
//! recognised by its magic bytes, since real posthog-js versions send `?compression=gzip-js` with
//! uncompressed bodies and compressed bodies with no parameter), base64 (`?compression=base64`,
//! or a form's base64 `data` field, as older PostHog SDKs send), or a form. Its JSON is one event
//! (an object), an array of events, or an envelope `{"batch": [...], "api_key": ..., "sent_at":
//! ...}`.
//!
//! Decoding is in two steps, so that a request costs little before its key is checked:
//! 1. [`decode`] decompresses (at most `max_batch_bytes`: a gzip bomb stops there), then splits the
//!    JSON into each event's byte span without building any value — at most `max_events` spans,
//!    each at most `max_event_bytes` — and reads the envelope's key and `sent_at`.
//! 2. [`Payload::event`] / [`Payload::events`] build `serde_json::Value`s from the spans while
//!    counting every key and value against a budget (`max_values` per request): a small body of
//!    millions of tiny values is refused when the budget runs out, having allocated no more than
//!    the budget allows.

use std::fmt;
use std::io::Read;
use std::ops::Range;

use base64::Engine;
use bytes::Bytes;
use flate2::read::GzDecoder;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Number, Value};
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// What one request may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest event, in bytes of JSON.
    pub max_event_bytes: usize,
    /// The largest body, in bytes after decompression.
    pub max_batch_bytes: usize,
    /// The most events in one request.
    pub max_events: usize,
    /// The most JSON keys and values in one request (what building its events allocates).
    pub max_values: usize,
}

/// A decoded request: its events as byte spans of the decoded body (not yet parsed into values)
/// and the request-level fields.
#[derive(Debug)]
pub struct Payload {
    data: Bytes,
    spans: Vec<Range<usize>>,
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
    #[error("the request carries more than {limit} events; send at most {limit} per request")]
    TooManyEvents { limit: usize },
    #[error("the request carries more than {limit} JSON keys and values in all; send fewer events per request")]
    TooManyValues { limit: usize },
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

impl PayloadError {
    /// Whether the request was refused for its size (413).
    pub fn is_too_large(&self) -> bool {
        matches!(
            self,
            Self::BodyTooLarge { .. }
                | Self::EventTooLarge { .. }
                | Self::TooManyEvents { .. }
                | Self::TooManyValues { .. }
        )
    }
}

impl Payload {
    /// How many events the request carries.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Bytes of the decoded body (what it holds in memory).
    pub fn decoded_len(&self) -> usize {
        self.data.len()
    }

    /// The most JSON keys and values the events could hold (a value takes at least two bytes with
    /// its separator), within `max_values`.
    pub fn max_possible_values(&self, max_values: usize) -> usize {
        self.spans.iter().map(|s| s.len() / 2 + 1).sum::<usize>().min(max_values)
    }

    /// Event `index` as a value, counting its keys and values against `budget` (what is left of
    /// the request's `max_values`).
    pub fn event(&self, index: usize, budget: &mut Budget) -> Result<Value, PayloadError> {
        let span = self.spans.get(index).cloned().unwrap_or(0..0);
        // The whole body was checked to be UTF-8 (`split`) and a span starts and ends at a JSON
        // value's edges, so this check cannot fail; it runs at memory speed, and parsing from a
        // `str` then skips serde_json's UTF-8 check of every string (the per-string check and
        // parsing from bytes cost capture 4-5 % of its CPU in the batch benchmark).
        let text =
            std::str::from_utf8(&self.data[span]).map_err(|e| PayloadError::InvalidJson(format!("not UTF-8: {e}")))?;
        let mut de = serde_json::Deserializer::from_str(text);
        let value = Budgeted(budget).deserialize(&mut de).map_err(|e| budget.explain(e))?;
        de.end().map_err(|e| PayloadError::InvalidJson(e.to_string()))?;
        Ok(value)
    }

    /// Every event as a value, within `budget`.
    pub fn events(&self, budget: &mut Budget) -> Result<Vec<Value>, PayloadError> {
        (0..self.len()).map(|i| self.event(i, budget)).collect()
    }
}

/// What is left of a request's `max_values`.
#[derive(Debug)]
pub struct Budget {
    left: usize,
    limit: usize,
}

impl Budget {
    pub fn new(limit: usize) -> Self {
        Self { left: limit, limit }
    }

    fn take(&mut self) -> bool {
        match self.left.checked_sub(1) {
            Some(l) => {
                self.left = l;
                true
            }
            None => false,
        }
    }

    fn explain(&self, e: serde_json::Error) -> PayloadError {
        if self.left == 0 && e.to_string().starts_with(OVER_BUDGET) {
            PayloadError::TooManyValues { limit: self.limit }
        } else {
            PayloadError::InvalidJson(e.to_string())
        }
    }
}

const OVER_BUDGET: &str = "over the budget of JSON values";

/// A `serde_json::Value` built while counting every key and value against a budget.
struct Budgeted<'b>(&'b mut Budget);

impl<'de> DeserializeSeed<'de> for Budgeted<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Budgeted<'_> {
    fn charge<E: de::Error>(&mut self) -> Result<(), E> {
        if self.0.take() {
            Ok(())
        } else {
            Err(E::custom(OVER_BUDGET))
        }
    }
}

impl<'de> Visitor<'de> for Budgeted<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E: de::Error>(mut self, v: bool) -> Result<Value, E> {
        self.charge()?;
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(mut self, v: i64) -> Result<Value, E> {
        self.charge()?;
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E: de::Error>(mut self, v: u64) -> Result<Value, E> {
        self.charge()?;
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E: de::Error>(mut self, v: f64) -> Result<Value, E> {
        self.charge()?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: de::Error>(mut self, v: &str) -> Result<Value, E> {
        self.charge()?;
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E: de::Error>(mut self, v: String) -> Result<Value, E> {
        self.charge()?;
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(mut self) -> Result<Value, E> {
        self.charge()?;
        Ok(Value::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        self.charge()?;
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(v) = seq.next_element_seed(Budgeted(self.0))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        self.charge()?;
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            self.charge()?;
            let value = map.next_value_seed(Budgeted(self.0))?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
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
    let mut data: Bytes = body.clone();

    // Older PostHog SDKs post a form whose `data` field holds base64 JSON. Tools such as curl
    // label plain JSON as a form too, so a body that starts like JSON or gzip is never a form.
    let looks_like_json_or_gzip = matches!(trim_ascii(&data).first(), Some(b'{' | b'[' | 0x1f));
    if (form && !looks_like_json_or_gzip) || data.starts_with(b"data=") {
        if data.len() > limits.max_batch_bytes {
            return Err(PayloadError::BodyTooLarge { limit: limits.max_batch_bytes });
        }
        let fields: Vec<(String, String)> = serde_urlencoded::from_bytes(&data)
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
        data = Bytes::from(base64_decode(field_data.trim().as_bytes())?);
        if compression.as_deref() == Some("base64") {
            compression = None;
        }
    }

    match compression.as_deref() {
        None | Some("") | Some("gzip") | Some("gzip-js") => {}
        // Base64 only when the body is not already JSON or gzip (the parameter can lie).
        Some("base64") if !looks_like_json_or_gzip_bytes(&data) => {
            data = Bytes::from(base64_decode(trim_ascii(&data))?);
        }
        Some("base64") => {}
        Some(other) => return Err(PayloadError::UnsupportedCompression(other.to_string())),
    }

    // Gzip is decided from the bytes, whatever the header or parameter says (PostHog's capture
    // does the same: posthog-js has sent `compression=gzip-js` with plain bodies).
    if data.starts_with(&[0x1f, 0x8b]) {
        data = Bytes::from(gunzip(&data, limits.max_batch_bytes)?);
    } else if data.len() > limits.max_batch_bytes {
        return Err(PayloadError::BodyTooLarge { limit: limits.max_batch_bytes });
    }
    let _ = content_encoding;

    split(data, limits)
}

fn looks_like_json_or_gzip_bytes(b: &[u8]) -> bool {
    matches!(trim_ascii(b).first(), Some(b'{' | b'[' | 0x1f))
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

/// The events of an array, as raw spans: at most `max` of them (more is an error before the
/// next one is read).
struct EventSpans {
    max: usize,
}

impl<'de> DeserializeSeed<'de> for EventSpans {
    type Value = Vec<&'de RawValue>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

const TOO_MANY_EVENTS: &str = "too many events";
const BATCH_NOT_ARRAY: &str = "batch must be an array";

impl<'de> Visitor<'de> for EventSpans {
    type Value = Vec<&'de RawValue>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of events")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max).min(1024));
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            if out.len() == self.max {
                return Err(de::Error::custom(TOO_MANY_EVENTS));
            }
            out.push(raw);
        }
        Ok(out)
    }
}

/// The top level of a body that is an object: an envelope (`batch`, `api_key`/`token`,
/// `sent_at`), or a single event. Other fields are skipped without building values.
struct Envelope<'a> {
    batch: Option<Vec<&'a RawValue>>,
    api_key: Option<&'a RawValue>,
    token: Option<&'a RawValue>,
    sent_at: Option<&'a RawValue>,
}

struct EnvelopeSeed {
    max_events: usize,
}

impl<'de> DeserializeSeed<'de> for EnvelopeSeed {
    type Value = Envelope<'de>;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EnvelopeSeed {
    type Value = Envelope<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event or an envelope")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut env = Envelope { batch: None, api_key: None, token: None, sent_at: None };
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            match key.as_ref() {
                "batch" => {
                    let raw: &'de RawValue = map.next_value()?;
                    if !raw.get().trim_start().starts_with('[') {
                        return Err(de::Error::custom(BATCH_NOT_ARRAY));
                    }
                    let mut de = serde_json::Deserializer::from_str(raw.get());
                    let spans = EventSpans { max: self.max_events }.deserialize(&mut de).map_err(de::Error::custom)?;
                    env.batch = Some(spans);
                }
                "api_key" => env.api_key = Some(map.next_value()?),
                "token" => env.token = Some(map.next_value()?),
                "sent_at" => env.sent_at = Some(map.next_value()?),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(env)
    }
}

/// A top-level string field (`api_key`, `token`, `sent_at`), without building anything else.
fn string_field(raw: Option<&RawValue>, field: &'static str, reason: &str) -> Result<Option<String>, PayloadError> {
    let Some(raw) = raw else { return Ok(None) };
    let text = raw.get().trim();
    if text == "null" {
        return Ok(None);
    }
    if !text.starts_with('"') {
        return Err(PayloadError::InvalidField { field, reason: reason.into() });
    }
    serde_json::from_str::<String>(text)
        .map(Some)
        .map_err(|_| PayloadError::InvalidField { field, reason: reason.into() })
}

fn json_error(e: serde_json::Error, limits: Limits) -> PayloadError {
    let text = e.to_string();
    if text.starts_with(TOO_MANY_EVENTS) {
        PayloadError::TooManyEvents { limit: limits.max_events }
    } else if text.starts_with(BATCH_NOT_ARRAY) {
        PayloadError::InvalidField { field: "batch", reason: "must be an array of events".into() }
    } else {
        PayloadError::InvalidJson(e.to_string())
    }
}

/// Splits decoded JSON into event spans.
fn split(data: Bytes, limits: Limits) -> Result<Payload, PayloadError> {
    let trimmed = trim_ascii(&data);
    if trimmed.is_empty() {
        return Err(PayloadError::Empty);
    }
    let base = data.as_ptr() as usize;
    let span_of = |raw: &RawValue| {
        let start = raw.get().as_ptr() as usize - base;
        start..start + raw.get().len()
    };
    let check_sizes = |raws: &[&RawValue]| -> Result<Vec<Range<usize>>, PayloadError> {
        raws.iter()
            .enumerate()
            .map(|(index, raw)| {
                if raw.get().len() > limits.max_event_bytes {
                    Err(PayloadError::EventTooLarge { index, limit: limits.max_event_bytes })
                } else {
                    Ok(span_of(raw))
                }
            })
            .collect()
    };
    // JSON is UTF-8: checked once for the whole body, so that both passes parse from a `str`.
    let text = std::str::from_utf8(&data).map_err(|e| PayloadError::InvalidJson(format!("not UTF-8: {e}")))?;
    let mut de = serde_json::Deserializer::from_str(text);
    let (spans, is_batch, key, sent_at) = match trimmed[0] {
        b'[' => {
            let raws = EventSpans { max: limits.max_events }.deserialize(&mut de).map_err(|e| json_error(e, limits))?;
            de.end().map_err(|e| PayloadError::InvalidJson(e.to_string()))?;
            (check_sizes(&raws)?, true, None, None)
        }
        b'{' => {
            let env = EnvelopeSeed { max_events: limits.max_events }
                .deserialize(&mut de)
                .map_err(|e| json_error(e, limits))?;
            de.end().map_err(|e| PayloadError::InvalidJson(e.to_string()))?;
            let key = match string_field(env.api_key, "api_key", "must be a string")? {
                Some(k) => Some(k),
                None => string_field(env.token, "api_key", "must be a string")?,
            };
            let sent_at = match string_field(env.sent_at, "sent_at", "must be an RFC 3339 date-time string")? {
                None => None,
                Some(s) => Some(OffsetDateTime::parse(&s, &Rfc3339).map_err(|_| PayloadError::InvalidField {
                    field: "sent_at",
                    reason: "must be an RFC 3339 date-time".into(),
                })?),
            };
            match env.batch {
                Some(raws) => {
                    // The batch's spans are relative to the `batch` value's text, which is a
                    // slice of `data` too.
                    (check_sizes(&raws)?, true, key, sent_at)
                }
                None => {
                    if trimmed.len() > limits.max_event_bytes {
                        return Err(PayloadError::EventTooLarge { index: 0, limit: limits.max_event_bytes });
                    }
                    let start = trimmed.as_ptr() as usize - base;
                    // One event: a list of one span (the whole event's text).
                    let spans: Vec<std::ops::Range<usize>> = std::iter::once(start..start + trimmed.len()).collect();
                    (spans, false, key, sent_at)
                }
            }
        }
        _ => return Err(PayloadError::InvalidJson("expected a JSON object or array".into())),
    };
    Ok(Payload { data, spans, is_batch, key, sent_at })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::write::GzEncoder;
    use flate2::Compression;
    use std::io::Write;

    const LIMITS: Limits = Limits { max_event_bytes: 1000, max_batch_bytes: 10_000, max_events: 100, max_values: 1000 };

    fn values(p: &Payload) -> Vec<Value> {
        p.events(&mut Budget::new(LIMITS.max_values)).unwrap()
    }

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
        assert_eq!(p.len(), 1);
        assert_eq!(p.key.as_deref(), Some("k"));
        assert_eq!(values(&p)[0]["distinct_id"], "u");

        let p = decode_plain(r#" [{"event":"a"}, {"event":"b","properties":{"n":[1,2.5,null,true]}}] "#).unwrap();
        assert!(p.is_batch);
        assert_eq!(p.len(), 2);
        let v = values(&p);
        assert_eq!(v[1], serde_json::json!({"event":"b","properties":{"n":[1,2.5,null,true]}}));

        let p = decode_plain(r#"{"token":"t","sent_at":"2026-01-01T00:00:00Z","batch":[{"event":"a"}]}"#).unwrap();
        assert!(p.is_batch);
        assert_eq!(p.key.as_deref(), Some("t"));
        assert!(p.sent_at.is_some());
        assert_eq!(values(&p), vec![serde_json::json!({"event":"a"})]);
    }

    #[test]
    fn counts_are_bounded_before_values_are_built() {
        // More events than allowed: refused while splitting, before any value exists.
        let many = format!("[{}{{}}]", "{},".repeat(100));
        assert_eq!(decode_plain(&many).unwrap_err(), PayloadError::TooManyEvents { limit: 100 });
        let envelope = format!(r#"{{"api_key":"k","batch":[{}{{}}]}}"#, "{},".repeat(100));
        assert_eq!(decode_plain(&envelope).unwrap_err(), PayloadError::TooManyEvents { limit: 100 });
        // Few events of many tiny values: refused when the value budget runs out.
        let dense = format!(r#"[{{"event":"a","properties":{{"x":[{}0]}}}}]"#, "0,".repeat(1100));
        let roomy = Limits { max_event_bytes: 10_000, ..LIMITS };
        let p = decode(&Bytes::from(dense), None, None, false, roomy).unwrap();
        assert_eq!(p.events(&mut Budget::new(1000)).unwrap_err(), PayloadError::TooManyValues { limit: 1000 });
        assert_eq!(p.events(&mut Budget::new(2000)).unwrap()[0]["properties"]["x"].as_array().unwrap().len(), 1101);
        // A non-string key is refused without building it.
        assert!(matches!(
            decode_plain(r#"{"api_key":[1,2,3]}"#),
            Err(PayloadError::InvalidField { field: "api_key", .. })
        ));
        assert!(matches!(
            decode_plain(r#"{"batch":{"event":"a"}}"#),
            Err(PayloadError::InvalidField { field: "batch", .. })
        ));
    }

    #[test]
    fn gzip_is_decided_by_the_bytes_whatever_the_request_says() {
        let body = Bytes::from(gzip(br#"[{"event":"a"}]"#));
        assert_eq!(decode(&body, Some("gzip"), None, false, LIMITS).unwrap().len(), 1);
        assert_eq!(decode(&body, None, Some("gzip-js"), false, LIMITS).unwrap().len(), 1);
        assert_eq!(decode(&body, None, None, false, LIMITS).unwrap().len(), 1, "compressed, no parameter");
        // posthog-js has sent compression=gzip-js (and Content-Encoding: gzip) with plain bodies.
        let plain = Bytes::from_static(br#"[{"event":"a"}]"#);
        assert_eq!(decode(&plain, Some("gzip"), Some("gzip-js"), false, LIMITS).unwrap().len(), 1);
        // ... and compression=base64 with JSON that is not base64.
        assert_eq!(decode(&plain, None, Some("base64"), false, LIMITS).unwrap().len(), 1);
        let corrupt = Bytes::from_static(&[0x1f, 0x8b, 0, 1, 2]);
        assert!(matches!(
            decode(&corrupt, None, None, false, LIMITS),
            Err(PayloadError::BadEncoding { encoding: "gzip", .. })
        ));
    }

    #[test]
    fn base64_and_form_data() {
        use base64::engine::general_purpose::STANDARD;
        let b64 = STANDARD.encode(br#"{"event":"a","distinct_id":"u"}"#);
        let p = decode(&Bytes::from(b64.clone()), None, Some("base64"), false, LIMITS).unwrap();
        assert_eq!(values(&p)[0]["event"], "a");
        let form = serde_urlencoded::to_string([("data", b64.as_str())]).unwrap();
        let p = decode(&Bytes::from(form), None, None, true, LIMITS).unwrap();
        assert_eq!(values(&p)[0]["distinct_id"], "u");
        // JSON labelled as a form (curl -d) is JSON.
        let p = decode(&Bytes::from(r#"{"event":"a"}"#), None, None, true, LIMITS).unwrap();
        assert_eq!(values(&p)[0]["event"], "a");
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
