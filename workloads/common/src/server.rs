//! Serving HTTP with the limits every listener needs against slow or greedy clients, and the
//! client's real address.
//!
//! [`serve`] replaces `axum::serve` (which sets no timer, so hyper's header timeout never fires,
//! and accepts connections without bound):
//! - at most `max_connections` open connections per listener; beyond that the listener stops
//!   accepting (new connections wait in the kernel's backlog) instead of spending memory on them;
//! - the request head must arrive within `header_timeout` (also between requests of a kept-alive
//!   connection), so a client that sends a byte a minute, or nothing, is closed;
//! - each request, body included, must be handled within `request_timeout` (408 otherwise);
//! - every request carries `ConnectInfo<SocketAddr>`, the peer, for [`client_address`].
//!
//! [`TrustedProxies`] and [`client_address`] find the client behind proxies: `X-Forwarded-For`
//! is believed only when the peer is a trusted proxy, and then only from the right, up to the
//! first address that is not a trusted proxy — what a client writes into the header itself is on
//! the left and is never taken.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::catalogue::{
    ADMIN_ADDR, HTTP_HEADER_TIMEOUT_MS, HTTP_MAX_CONNECTIONS, HTTP_REQUEST_TIMEOUT_MS, TRUSTED_PROXIES,
};
use crate::config::{ConfigError, Source};

/// Serves a service: `app` on `addr`, and the admin endpoints (`/metrics`, `/healthz`,
/// `/readyz`) on `admin_addr` when one is given (`CAIRN_ADMIN_ADDR`: what the operator sets in a
/// pod, so that the Ingress, which reaches only the API port, never exposes metrics or the
/// dependency details of readiness), or on `addr` beside the API when not (the local stack).
pub async fn serve_service(
    addr: SocketAddr,
    app: Router,
    admin: Router,
    admin_addr: Option<SocketAddr>,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // Every API request gets an id and a span (not the probes and scrapes of the admin routes).
    let app = app.layer(axum::middleware::from_fn(crate::trace::trace_requests));
    let app = match admin_addr {
        Some(admin_addr) => {
            let listener = TcpListener::bind(admin_addr).await?;
            tracing::info!(addr = %admin_addr, "admin endpoints listening");
            let (limits, stop) = (limits.clone(), shutdown.clone());
            tokio::spawn(async move {
                if let Err(e) = serve(listener, admin, limits, stop).await {
                    tracing::error!(error = %e, "the admin listener failed");
                }
            });
            app
        }
        None => app.merge(admin),
    };
    serve(TcpListener::bind(addr).await?, app, limits, shutdown).await
}

/// `CAIRN_ADMIN_ADDR`, if set.
pub fn admin_addr_from_source(env: &dyn Source) -> Result<Option<SocketAddr>, ConfigError> {
    ADMIN_ADDR.parse_opt(env)
}

/// What one listener allows.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// `CAIRN_HTTP_MAX_CONNECTIONS`: open connections per listener (default 1024).
    pub max_connections: usize,
    /// `CAIRN_HTTP_HEADER_TIMEOUT_MS`: time to receive a request's head, also while a kept-alive
    /// connection waits for its next request (default 10 s).
    pub header_timeout: Duration,
    /// `CAIRN_HTTP_REQUEST_TIMEOUT_MS`: time to read the body and answer (default 60 s).
    pub request_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        match Self::from_source(&crate::config::NoEnv) {
            Ok(limits) => limits,
            Err(e) => unreachable!("the catalogue's defaults parse (tested): {e}"),
        }
    }
}

impl ServerLimits {
    pub fn from_source(env: &dyn Source) -> Result<Self, ConfigError> {
        Ok(Self {
            max_connections: HTTP_MAX_CONNECTIONS.parse::<usize>(env)?.max(1),
            header_timeout: HTTP_HEADER_TIMEOUT_MS.millis(env)?,
            request_timeout: HTTP_REQUEST_TIMEOUT_MS.millis(env)?,
        })
    }
}

/// Serves `app` on `listener` until `shutdown`, then lets the requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        // A permit first: at the limit, stop accepting until a connection closes.
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let request_timeout = limits.request_timeout;
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move {
                let req = req.map(axum::body::Body::new);
                let response = match tokio::time::timeout(request_timeout, app.oneshot(req)).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(never)) => match never {},
                    Err(_) => timed_out(request_timeout),
                };
                Ok::<Response, Infallible>(response)
            }
        });
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_timeout)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

fn timed_out(after: Duration) -> Response {
    let mut r = (
        StatusCode::REQUEST_TIMEOUT,
        axum::Json(serde_json::json!({
            "error": "request_timeout",
            "message": format!("the request was not received and answered within {after:?}")
        })),
    )
        .into_response();
    r.headers_mut().insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    r
}

#[derive(Debug, Error)]
#[error("{name}: {entry:?} is not an IP address or CIDR block")]
pub struct ProxyConfigError {
    pub name: &'static str,
    pub entry: String,
}

impl From<ProxyConfigError> for ConfigError {
    fn from(e: ProxyConfigError) -> Self {
        ConfigError::Invalid { name: e.name.into(), value: e.entry, reason: "not an IP address or CIDR block".into() }
    }
}

/// Addresses whose `X-Forwarded-For` is believed: the Ingress controller, the query gateway.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<(IpAddr, u8)>,
}

/// Loopback and private addresses: in a cluster, the Ingress controller and the other pods.
pub const DEFAULT_TRUSTED_PROXIES: &str = "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7";

impl TrustedProxies {
    /// A comma-separated list of addresses and CIDR blocks; empty trusts nobody.
    pub fn parse(name: &'static str, spec: &str) -> Result<Self, ProxyConfigError> {
        let mut nets = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = || ProxyConfigError { name, entry: entry.to_string() };
            let (addr, bits) = match entry.split_once('/') {
                Some((a, b)) => (a.parse::<IpAddr>().map_err(|_| bad())?, b.parse::<u8>().map_err(|_| bad())?),
                None => {
                    let a = entry.parse::<IpAddr>().map_err(|_| bad())?;
                    (a, if a.is_ipv4() { 32 } else { 128 })
                }
            };
            if bits > if addr.is_ipv4() { 32 } else { 128 } {
                return Err(bad());
            }
            nets.push((addr, bits));
        }
        Ok(Self { nets })
    }

    /// `CAIRN_TRUSTED_PROXIES` (default: loopback and private addresses).
    pub fn from_source(env: &dyn Source) -> Result<Self, ConfigError> {
        Ok(Self::parse(TRUSTED_PROXIES.name, &TRUSTED_PROXIES.string(env))?)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|(net, bits)| match (canonical(*net), ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(&n.octets(), &a.octets(), *bits),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(&n.octets(), &a.octets(), *bits),
            _ => false,
        })
    }
}

/// An IPv4 address written as IPv6 (`::ffff:1.2.3.4`, as dual-stack sockets report) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
    let full = usize::from(bits / 8);
    let rest = bits % 8;
    if a[..full] != b[..full] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    (a[full] & mask) == (b[full] & mask)
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the rightmost
/// `X-Forwarded-For` entry that is not a trusted proxy (entries to its left were written by the
/// client or proxies nobody vouches for). All entries trusted: the leftmost.
pub fn client_address(headers: &HeaderMap, peer: IpAddr, trusted: &TrustedProxies) -> IpAddr {
    let peer = canonical(peer);
    if !trusted.contains(peer) {
        return peer;
    }
    let mut leftmost = None;
    let entries: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|e| parse_forwarded_entry(e.trim()))
        .collect();
    for ip in entries.iter().rev() {
        if !trusted.contains(*ip) {
            return *ip;
        }
        leftmost = Some(*ip);
    }
    leftmost.unwrap_or(peer)
}

/// An address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:80`.
fn parse_forwarded_entry(e: &str) -> Option<IpAddr> {
    if let Ok(ip) = e.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(sa) = e.parse::<SocketAddr>() {
        return Some(canonical(sa.ip()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn trusted_proxies_parse_and_match() {
        let t = TrustedProxies::parse("X", DEFAULT_TRUSTED_PROXIES).unwrap();
        assert!(t.contains("10.244.0.7".parse().unwrap()));
        assert!(t.contains("172.31.255.255".parse().unwrap()));
        assert!(!t.contains("172.32.0.1".parse().unwrap()));
        assert!(t.contains("::ffff:192.168.1.1".parse().unwrap()), "v4-mapped v6");
        assert!(t.contains("fd12::1".parse().unwrap()));
        assert!(!t.contains("203.0.113.7".parse().unwrap()));
        assert!(TrustedProxies::parse("X", "10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("X", "nope").is_err());
        assert_eq!(TrustedProxies::parse("X", " ").unwrap(), TrustedProxies::default());
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_address() {
        let t = TrustedProxies::parse("X", "10.0.0.0/8").unwrap();
        let ingress: IpAddr = "10.0.0.2".parse().unwrap();
        // The client wrote a fake entry; the ingress appended the real one.
        assert_eq!(
            client_address(&headers(&["1.1.1.1, 203.0.113.7"]), ingress, &t),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // Through two trusted hops (ingress → query gateway → auth).
        assert_eq!(
            client_address(&headers(&["1.1.1.1, 203.0.113.7", "10.0.0.2"]), "10.0.0.9".parse().unwrap(), &t),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        // An untrusted peer's header is ignored.
        let direct: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(client_address(&headers(&["1.1.1.1"]), direct, &t), direct);
        // A trusted peer without the header is the client.
        assert_eq!(client_address(&HeaderMap::new(), ingress, &t), ingress);
        // Ports and brackets as proxies write them; garbage skipped.
        assert_eq!(
            client_address(&headers(&["[2001:db8::1]:443, junk"]), ingress, &t),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_address(&headers(&["10.1.1.1"]), ingress, &t), "10.1.1.1".parse::<IpAddr>().unwrap());
    }

    /// A server on a free port with short limits, for the tests below.
    async fn server(limits: ServerLimits) -> (SocketAddr, CancellationToken) {
        use axum::routing::post;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route(
            "/echo",
            post(|ConnectInfo(peer): ConnectInfo<SocketAddr>, body: axum::body::Bytes| async move {
                format!("{} {}", peer.ip(), body.len())
            }),
        );
        let stop = CancellationToken::new();
        tokio::spawn(serve(listener, app, limits, stop.clone()));
        (addr, stop)
    }

    /// Writes `chunks` one by one, `gap` apart; reads until the server closes. Returns what was
    /// read and how long it took.
    async fn talk(addr: SocketAddr, chunks: Vec<Vec<u8>>, gap: Duration) -> (String, Duration) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut read, mut write) = stream.into_split();
        let started = std::time::Instant::now();
        let writer = tokio::spawn(async move {
            for c in chunks {
                if write.write_all(&c).await.is_err() {
                    return;
                }
                tokio::time::sleep(gap).await;
            }
            // Keep the write side open (an idle client).
            tokio::time::sleep(Duration::from_secs(30)).await;
        });
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(Duration::from_secs(8), read.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Err(_) => {
                    out.extend_from_slice(b"<still open>");
                    break;
                }
            }
        }
        writer.abort();
        (String::from_utf8_lossy(&out).into_owned(), started.elapsed())
    }

    #[tokio::test]
    async fn silent_slow_and_idle_clients_are_closed() {
        let limits = ServerLimits {
            max_connections: 8,
            header_timeout: Duration::from_millis(500),
            request_timeout: Duration::from_millis(1500),
        };
        let (addr, stop) = server(limits).await;
        let bytes = |s: &str| s.bytes().map(|b| vec![b]).collect::<Vec<_>>();

        // Connects and says nothing.
        let (out, took) = talk(addr, vec![], Duration::ZERO).await;
        assert!(took < Duration::from_secs(3) && !out.contains("<still open>"), "{out} after {took:?}");
        // Sends its head a byte every 200 ms.
        let (out, took) = talk(addr, bytes("POST /echo HTTP/1.1\r\nHost: x\r\n"), Duration::from_millis(200)).await;
        assert!(took < Duration::from_secs(3) && !out.contains("<still open>"), "{out} after {took:?}");
        // Sends a complete head, then its body a byte every 200 ms: 408 at the request timeout.
        let mut chunks = vec![b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n".to_vec()];
        chunks.extend(bytes(&"x".repeat(100)));
        let (out, took) = talk(addr, chunks, Duration::from_millis(200)).await;
        assert!(out.starts_with("HTTP/1.1 408"), "{out}");
        assert!(took < Duration::from_secs(4), "{took:?}");
        // A good request on a kept-alive connection, then silence: answered, then closed.
        let (out, took) =
            talk(addr, vec![b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi".to_vec()], Duration::ZERO)
                .await;
        assert!(out.starts_with("HTTP/1.1 200") && out.ends_with("127.0.0.1 2"), "{out}");
        assert!(took < Duration::from_secs(3), "idle keep-alive closed after {took:?}");
        stop.cancel();
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_wait() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let limits = ServerLimits {
            max_connections: 2,
            header_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(5),
        };
        let (addr, stop) = server(limits).await;
        let _a = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _b = tokio::net::TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The third connects (the kernel's backlog) but is not served while two are open.
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 64];
        assert!(tokio::time::timeout(Duration::from_millis(500), c.read(&mut buf)).await.is_err(), "not served yet");
        drop(_a);
        let n = tokio::time::timeout(Duration::from_secs(3), c.read(&mut buf)).await.unwrap().unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        stop.cancel();
    }
}
