//! The web dashboard's files (`dashboard/dist`, built by Vite), served at `/` when
//! `CAIRN_DASHBOARD_DIR` names them, so the dashboard and the API share one origin and one
//! Ingress rule. A path with a file extension is a file (404 when missing); any other path is a
//! client-side route and gets `index.html`.
//!
//! Caching: Vite names built assets by their content hash, so `/assets/…` is immutable for a
//! year; `index.html` is revalidated on every load so a new release is picked up at once.
//! Every answer carries a Content-Security-Policy that allows scripts, styles, images and API calls
//! from this origin only (inline styles are allowed: the chart library sets them).

use std::convert::Infallible;
use std::path::Path;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response};
use tower::ServiceExt;
use tower_http::services::{ServeDir, ServeFile};

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
img-src 'self' data:; connect-src 'self'; font-src 'self' data:; object-src 'none'; \
base-uri 'self'; frame-ancestors 'none'; form-action 'self'";

#[derive(Clone)]
pub struct Dashboard {
    files: ServeDir,
    index: ServeFile,
}

impl Dashboard {
    /// The dashboard in `dir`, which must hold an `index.html`.
    pub fn new(dir: &Path) -> Result<Self, std::io::Error> {
        let index = dir.join("index.html");
        if !index.is_file() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{} has no index.html (build it: cd dashboard && npm ci && npm run build)", dir.display()),
            ));
        }
        Ok(Self { files: ServeDir::new(dir), index: ServeFile::new(index) })
    }

    /// Answers one GET or HEAD request for a dashboard path.
    pub async fn serve(self, req: Request<Body>) -> Result<Response<Body>, Infallible> {
        let path = req.uri().path().to_string();
        let is_file = path.rsplit('/').next().is_some_and(|last| last.contains('.'));
        let mut res = if is_file { self.files.oneshot(req).await } else { self.index.oneshot(req).await }
            .map(|r| r.map(Body::new))
            .unwrap_or_else(|e| match e {});
        let cache = if path.starts_with("/assets/") && res.status().is_success() {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        let h = res.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
        h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        Ok(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    fn site() -> (tempdir::Dir, Dashboard) {
        let dir = tempdir::Dir::new();
        std::fs::write(dir.0.join("index.html"), "<!doctype html><div id=root></div>").unwrap();
        std::fs::create_dir_all(dir.0.join("assets")).unwrap();
        std::fs::write(dir.0.join("assets/app-1a2b.js"), "console.log(1)").unwrap();
        let d = Dashboard::new(&dir.0).unwrap();
        (dir, d)
    }

    async fn get(d: &Dashboard, path: &str) -> (StatusCode, HeaderValue, String) {
        let res = d.clone().serve(Request::get(path).body(Body::empty()).unwrap()).await.unwrap();
        let status = res.status();
        let cache = res.headers()[header::CACHE_CONTROL].clone();
        assert!(res.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        let body = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap();
        (status, cache, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn routes_get_index_files_get_themselves_missing_files_404() {
        let (_dir, d) = site();
        let (s, cache, body) = get(&d, "/project/3/trends").await;
        assert_eq!(s, StatusCode::OK);
        assert!(body.contains("id=root"));
        assert_eq!(cache, "no-cache");
        let (s, cache, body) = get(&d, "/assets/app-1a2b.js").await;
        assert_eq!(s, StatusCode::OK);
        assert_eq!(body, "console.log(1)");
        assert_eq!(cache, "public, max-age=31536000, immutable");
        let (s, cache, _) = get(&d, "/assets/gone-9z.js").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        assert_eq!(cache, "no-cache");
        let (s, _, _) = get(&d, "/../Cargo.toml").await;
        assert_ne!(s, StatusCode::OK);
    }

    #[test]
    fn a_directory_without_index_html_is_refused() {
        let dir = tempdir::Dir::new();
        let err = Dashboard::new(&dir.0).err().unwrap();
        assert!(err.to_string().contains("npm run build"));
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
                let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let p = std::env::temp_dir().join(format!("cairn-dashboard-test-{}-{n}", std::process::id()));
                let _ = std::fs::remove_dir_all(&p);
                std::fs::create_dir_all(&p).unwrap();
                Self(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}
