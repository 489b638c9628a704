//! Traces exported over OTLP/HTTP to a collector: a request's trace continues the caller's
//! `traceparent` through capture, and the consumer's batch that stores its events links to it.
//!
//! The collector here is an in-process OTLP/HTTP receiver that decodes what the services send
//! with OpenTelemetry's own protobuf definitions (`opentelemetry-proto`), as a collector does.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use cairn_e2e::{wait_until, Pipeline, TestClickHouse, TestKafka};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use serde_json::json;

/// A received span with the service that sent it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    span: Span,
}

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<Received>>>,
    exports: Arc<Mutex<u32>>,
}

impl Collector {
    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }
}

fn string_attr(attrs: &[KeyValue], key: &str) -> Option<String> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        AnyValue::StringValue(s) => Some(s.clone()),
        _ => None,
    })
}

async fn receive(State(c): State<Collector>, body: Bytes) -> StatusCode {
    let Ok(req) = ExportTraceServiceRequest::decode(body) else {
        return StatusCode::BAD_REQUEST;
    };
    *c.exports.lock().unwrap() += 1;
    let mut spans = c.spans.lock().unwrap();
    for rs in req.resource_spans {
        let service = rs.resource.as_ref().and_then(|r| string_attr(&r.attributes, "service.name")).unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                spans.push(Received { service: service.clone(), span });
            }
        }
    }
    StatusCode::OK
}

async fn start_collector() -> (Collector, u16) {
    let c = Collector::default();
    let app = Router::new().route("/v1/traces", post(receive)).with_state(c.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (c, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_trace_continues_through_capture_and_kafka_to_the_insert() {
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    let (collector, port) = start_collector().await;
    let mut p = Pipeline::new(&kafka, &ch, "phc_trace=5");
    p.set("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{port}"))
        .set("OTEL_BSP_SCHEDULE_DELAY", "200")
        // The request span's debug line, to see the trace id on a log line.
        .set("CAIRN_LOG", "info,cairn_common::trace=debug,rdkafka=warn")
        .set("CAIRN_LOG_FORMAT", "json");
    let _consumer = p.consumer().await.unwrap();
    let capture = p.capture().await.unwrap();

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_span = "00f067aa0ba902b7";
    let batch: Vec<_> = (0..25).map(|i| json!({"event": "traced", "distinct_id": format!("u{i}")})).collect();
    let r = reqwest::Client::new()
        .post(capture.url("/batch"))
        .header("traceparent", format!("00-{trace_id}-{parent_span}-01"))
        .header("x-request-id", "trace-test-1")
        .json(&json!({"api_key": "phc_trace", "batch": batch}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Capture's request span: the caller's trace, the caller's span as parent, its request id.
    wait_until("capture's request span and the consumer's batch span", Duration::from_secs(30), || {
        let spans = collector.spans();
        async move {
            let request = spans.iter().any(|s| s.service == "cairn-capture" && s.span.name == "request");
            let batch = spans.iter().any(|s| {
                s.service == "cairn-consumer"
                    && s.span.name == "batch"
                    && s.span.links.iter().any(|l| hex(&l.trace_id) == trace_id)
            });
            request && batch
        }
    })
    .await
    .unwrap();
    let spans = collector.spans();
    let request = spans
        .iter()
        .find(|s| s.service == "cairn-capture" && s.span.name == "request" && hex(&s.span.trace_id) == trace_id)
        .expect("capture's request span is in the caller's trace");
    assert_eq!(hex(&request.span.parent_span_id), parent_span);
    assert_eq!(string_attr(&request.span.attributes, "request_id").as_deref(), Some("trace-test-1"));
    assert_eq!(string_attr(&request.span.attributes, "path").as_deref(), Some("/batch"));

    // The consumer's batch span links to the request's span; its insert is a child of the batch.
    let batch = spans
        .iter()
        .find(|s| {
            s.service == "cairn-consumer"
                && s.span.name == "batch"
                && s.span.links.iter().any(|l| hex(&l.trace_id) == trace_id)
        })
        .unwrap();
    let link = batch.span.links.iter().find(|l| hex(&l.trace_id) == trace_id).unwrap();
    assert_eq!(link.span_id, request.span.span_id, "the link names capture's request span");
    let insert = spans
        .iter()
        .find(|s| s.service == "cairn-consumer" && s.span.name == "insert" && s.span.trace_id == batch.span.trace_id)
        .expect("the insert span is in the batch's trace");
    assert_eq!(insert.span.parent_span_id, batch.span.span_id);

    // Capture's log line for the request names the trace.
    assert!(
        capture
            .log_tail()
            .lines()
            .any(|l| l.contains("request finished") && l.contains(&format!("\"trace_id\":\"{trace_id}\""))),
        "no log line of the request carries its trace id:\n{}",
        capture.log_tail()
    );

    // A hostile traceparent starts a new trace instead of joining one.
    let r = reqwest::Client::new()
        .post(capture.url("/capture"))
        .header("traceparent", "00-00000000000000000000000000000000-zzzz-01")
        .header("x-request-id", "trace-test-2")
        .json(&json!({"api_key": "phc_trace", "event": "x", "distinct_id": "u"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_until("the second request's span", Duration::from_secs(20), || {
        let spans = collector.spans();
        async move {
            spans.iter().any(|s| string_attr(&s.span.attributes, "request_id").as_deref() == Some("trace-test-2"))
        }
    })
    .await
    .unwrap();
    let second = collector
        .spans()
        .into_iter()
        .find(|s| string_attr(&s.span.attributes, "request_id").as_deref() == Some("trace-test-2"))
        .unwrap();
    assert!(second.span.parent_span_id.is_empty(), "a root span");
    assert_eq!(second.span.trace_id.len(), 16);
    assert!(second.span.trace_id.iter().any(|b| *b != 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_capture_nothing() {
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    // Export to a port nothing listens on, beside a capture that exports nothing.
    let closed = cairn_e2e::free_port();
    let mut p = Pipeline::new(&kafka, &ch, "phc_down=6");
    let plain = p.capture().await.unwrap();
    p.set("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://127.0.0.1:{closed}"))
        .set("OTEL_BSP_SCHEDULE_DELAY", "100")
        .set("OTEL_BSP_MAX_QUEUE_SIZE", "64");
    let exporting = p.capture().await.unwrap();
    let http = reqwest::Client::new();
    let mut took = Vec::new();
    for (what, capture) in
        [("no export", &plain), ("collector down", &exporting), ("no export", &plain), ("collector down", &exporting)]
    {
        let started = Instant::now();
        for i in 0..300 {
            let r = http
                .post(capture.url("/capture"))
                .json(&json!({"api_key": "phc_down", "event": "e", "distinct_id": format!("u{i}")}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        took.push((what, started.elapsed()));
        let health = http.get(capture.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), 200, "{what}");
    }
    for (what, t) in &took {
        // A figure, not a timed assertion beyond "it did not hang".
        eprintln!("300 sequential requests, {what}: {:.0} ms", t.as_secs_f64() * 1e3);
        assert!(*t < Duration::from_secs(30), "{what}: {t:?}");
    }
}

/// The request id of every record on `topic` (None for a record without the header).
fn request_ids_on(brokers: &str, topic: &str, expected: usize) -> Vec<Option<String>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::{Headers, Message};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", cairn_e2e::unique("probe"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    c.subscribe(&[topic]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut out = Vec::new();
    while out.len() < expected && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(500)) {
            let id = m.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == cairn_common::trace::KAFKA_HEADER)
                    .and_then(|h| h.value.map(|v| String::from_utf8_lossy(v).into_owned()))
            });
            out.push(id);
        }
    }
    out
}

/// Every record carries the id of the request that brought it, unless
/// `CAIRN_CAPTURE_RECORD_HEADERS=false` (which saves capture the per-record header work).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_carry_their_request_id_unless_turned_off() {
    let kafka = TestKafka::shared().unwrap();
    let ch = TestClickHouse::shared().unwrap();
    for (headers, expected) in [("true", Some("req-headers-on".to_string())), ("false", None)] {
        let mut p = Pipeline::new(&kafka, &ch, "phc_hdr=7");
        p.set("CAIRN_CAPTURE_RECORD_HEADERS", headers);
        let capture = p.capture().await.unwrap();
        let batch: Vec<_> = (0..5).map(|i| json!({"event": "h", "distinct_id": format!("u{i}")})).collect();
        let r = reqwest::Client::new()
            .post(capture.url("/batch"))
            .header("x-request-id", "req-headers-on")
            .json(&json!({"api_key": "phc_hdr", "batch": batch}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let ids = request_ids_on(&kafka.brokers(), &p.topic, 5);
        assert_eq!(ids, vec![expected.clone(); 5], "CAIRN_CAPTURE_RECORD_HEADERS={headers}");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
