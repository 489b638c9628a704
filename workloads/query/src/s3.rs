//! Writing objects to S3-compatible storage (AWS S3, MinIO, Ceph, R2, GCS's XML API, s3proxy):
//! one `PUT` per object, signed with AWS Signature Version 4 over the payload's SHA-256, path-style
//! (`{endpoint}/{bucket}/{key}`), the body streamed from a file.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use thiserror::Error;

use cairn_common::config::ExposeSecret as _;

/// Where and as whom objects are written (`CAIRN_EXPORT_S3_*`).
#[derive(Clone)]
pub struct S3Config {
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: cairn_common::config::SecretString,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"[redacted]")
            .finish()
    }
}

#[derive(Debug, Error)]
pub enum S3Error {
    #[error("the S3 endpoint `{0}` is not an http(s) URL")]
    Endpoint(String),
    #[error("cannot read the file to upload: {0}")]
    File(#[from] std::io::Error),
    #[error("cannot reach the S3 endpoint: {0}")]
    Network(#[from] reqwest::Error),
    #[error("S3 refused the PUT of `{key}`: {status} {body}")]
    Refused { key: String, status: u16, body: String },
}

/// Percent-encodes `s` as SigV4 wants it (unreserved characters kept; `/` kept when `path`).
fn encode(s: &str, path: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            b'/' if path => out.push('/'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    // HMAC takes a key of any length.
    let mut mac = match Hmac::<Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC-SHA256 accepts every key length"),
    };
    mac.update(data.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

/// The headers of a signed `PUT` (`Authorization`, `x-amz-date`, `x-amz-content-sha256`) for
/// `host` and the canonical `uri`, at `amz_date` (`YYYYMMDD'T'HHMMSS'Z'`).
pub fn sign_put(cfg: &S3Config, host: &str, uri: &str, payload_sha256: &str, amz_date: &str) -> Vec<(String, String)> {
    let date = &amz_date[..8];
    let signed_headers = "host;x-amz-content-sha256;x-amz-date";
    let canonical = format!(
        "PUT\n{uri}\n\nhost:{host}\nx-amz-content-sha256:{payload_sha256}\nx-amz-date:{amz_date}\n\n{signed_headers}\n{payload_sha256}"
    );
    let scope = format!("{date}/{}/s3/aws4_request", cfg.region);
    let to_sign =
        format!("AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
    let secret = cfg.secret_access_key.expose_secret();
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date);
    let k_region = hmac(&k_date, &cfg.region);
    let k_service = hmac(&k_region, "s3");
    let k_signing = hmac(&k_service, "aws4_request");
    let signature = hex::encode(hmac(&k_signing, &to_sign));
    vec![
        (
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                cfg.access_key_id
            ),
        ),
        ("x-amz-date".into(), amz_date.to_string()),
        ("x-amz-content-sha256".into(), payload_sha256.to_string()),
    ]
}

/// A file to upload: where it is, its length and SHA-256 (hex), and its content type.
pub struct Upload<'a> {
    pub path: &'a std::path::Path,
    pub len: u64,
    pub sha256: &'a str,
    pub content_type: &'a str,
}

/// Uploads `file` as `bucket`/`key`.
pub async fn put_file(
    http: &reqwest::Client,
    cfg: &S3Config,
    bucket: &str,
    key: &str,
    file: Upload<'_>,
) -> Result<(), S3Error> {
    let Upload { path, len, sha256, content_type } = file;
    let base =
        reqwest::Url::parse(cfg.endpoint.trim_end_matches('/')).map_err(|_| S3Error::Endpoint(cfg.endpoint.clone()))?;
    if !matches!(base.scheme(), "http" | "https") {
        return Err(S3Error::Endpoint(cfg.endpoint.clone()));
    }
    let host = match (base.host_str(), base.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => return Err(S3Error::Endpoint(cfg.endpoint.clone())),
    };
    let prefix = base.path().trim_end_matches('/');
    let uri = format!("{prefix}/{}/{}", encode(bucket, false), encode(key, true));
    let url = format!("{}://{host}{uri}", base.scheme());
    let amz_date = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%SZ").to_string();
    let file = tokio::fs::File::open(path).await?;
    let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(file));
    let mut req = http
        .put(&url)
        .header(reqwest::header::CONTENT_LENGTH, len)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body);
    for (name, value) in sign_put(cfg, &host, &uri, sha256, &amz_date) {
        req = req.header(name, value);
    }
    let resp = req.send().await?;
    let status = resp.status();
    if status.is_success() {
        return Ok(());
    }
    let body: String = resp.text().await.unwrap_or_default().chars().take(500).collect();
    Err(S3Error::Refused { key: key.to_string(), status: status.as_u16(), body })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's documented example (the IAM GET example's key and date), computed for a PUT: the
    /// signing key derivation and the canonical request shape are what a server recomputes.
    #[test]
    fn signatures_follow_sigv4() {
        let cfg = S3Config {
            endpoint: "http://127.0.0.1:9000".into(),
            region: "us-east-1".into(),
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".to_string().into(),
        };
        // The signing key of AWS's example (docs "Examples of how to derive a signing key"):
        // secret above, date 20150830, us-east-1, iam.
        let k = hmac(
            &hmac(&hmac(&hmac(b"AWS4wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "20150830"), "us-east-1"), "iam"),
            "aws4_request",
        );
        assert_eq!(hex::encode(k), "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9");
        let empty = hex::encode(Sha256::digest(b""));
        let h = sign_put(&cfg, "127.0.0.1:9000", "/bucket/a%20b/c.jsonl", &empty, "20150830T123600Z");
        assert!(h[0].1.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="));
        assert_eq!(h[0].1.len(), h[0].1.rfind('=').unwrap_or(0) + 1 + 64);
        assert_eq!(encode("a b/ü", true), "a%20b/%C3%BC");
        assert!(!format!("{cfg:?}").contains("EXAMPLEKEY"));
    }
}
