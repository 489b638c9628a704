//! The capacity model of docs/CAPACITY.md: what a team needs for a number of events a day, from
//! costs measured on this machine by the benchmarks (`make bench-scale`: CPU per event of capture,
//! the broker, the consumer and ClickHouse's inserts, bytes per event in Kafka and in ClickHouse;
//! `make bench-query`: analysis time per million events). The results those commands wrote are
//! kept in `bench/results/`; `make capacity` prints the model from them, and a test keeps the
//! tables in docs/CAPACITY.md equal to what it prints.
//!
//! The model is arithmetic on measured costs and stated assumptions ([`Assumptions`]), not a
//! promise: it sizes for the daily peak, leaves CPU headroom, and rounds up.

use serde_json::Value;

/// Per-event costs, from a `bench-scale` result.
#[derive(Debug, Clone, PartialEq)]
pub struct Costs {
    pub machine: String,
    /// CPU per event (µs of one core).
    pub capture_us: f64,
    pub broker_produce_us: f64,
    pub broker_fetch_us: f64,
    pub consumer_us: f64,
    pub clickhouse_insert_us: f64,
    /// On disk, per event.
    pub kafka_bytes: f64,
    pub clickhouse_bytes: f64,
    /// Throughput of 1, 2, 3 … processes on the bench machine (events/s): capture, consumer.
    pub capture_eps: Vec<f64>,
    pub consumer_eps: Vec<f64>,
}

/// Analysis costs, from a `bench-query` result: in-process p50 per million events queried, on
/// the bench machine's cores.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryCosts {
    pub cores: f64,
    pub trend_ms_per_million: f64,
    pub funnel_ms_per_million: f64,
}

/// What the model assumes beyond the measurements.
#[derive(Debug, Clone, PartialEq)]
pub struct Assumptions {
    /// The busiest hour's rate over the day's average.
    pub peak_factor: f64,
    /// The share of a core the services are sized to use at the peak.
    pub cpu_target: f64,
    /// Kafka keeps events this long (the topic's retention; the operator may stretch it for a backlog).
    pub kafka_retention_days: f64,
    /// ClickHouse keeps events this long (`eventTtlDays`).
    pub clickhouse_retention_days: f64,
    /// Disks are sized so that this share stays free.
    pub disk_free: f64,
    /// A 30-day trend should answer within this (p50), which decides how many shards share a query.
    pub trend_target_ms: f64,
}

impl Default for Assumptions {
    fn default() -> Self {
        Self {
            peak_factor: 3.0,
            cpu_target: 0.5,
            kafka_retention_days: 7.0,
            clickhouse_retention_days: 365.0,
            disk_free: 0.25,
            trend_target_ms: 1000.0,
        }
    }
}

/// A team's size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Volume {
    pub label: &'static str,
    pub events_per_day: f64,
    /// Cores of each ClickHouse node (a machine type the team would pick).
    pub clickhouse_node_cores: u32,
}

pub const VOLUMES: [Volume; 3] = [
    Volume { label: "1 M", events_per_day: 1e6, clickhouse_node_cores: 4 },
    Volume { label: "100 M", events_per_day: 1e8, clickhouse_node_cores: 16 },
    Volume { label: "1 B", events_per_day: 1e9, clickhouse_node_cores: 32 },
];

/// What a volume needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub volume: Volume,
    pub average_eps: f64,
    pub peak_eps: f64,
    pub capture_cores: f64,
    pub capture_replicas: u32,
    pub consumer_cores: f64,
    pub consumer_replicas: u32,
    pub partitions: u32,
    pub brokers: u32,
    pub replication_factor: u32,
    pub broker_cores: f64,
    pub kafka_disk_per_broker_gib: f64,
    pub clickhouse_insert_cores: f64,
    pub clickhouse_data_gib: f64,
    /// A 30-day trend's p50 on one node of `clickhouse_node_cores`.
    pub trend_one_node_ms: f64,
    pub funnel_one_node_ms: f64,
    pub shards: u32,
    pub replicas: u32,
    pub clickhouse_disk_per_node_gib: f64,
    pub clickhouse_memory_per_node_gib: u32,
}

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

impl Costs {
    /// From `bench-scale`'s JSON: the median over its runs (1, 2, 3 processes) of each cost.
    pub fn from_scale(json: &Value) -> Result<Self, String> {
        let runs = json["runs"].as_array().filter(|r| !r.is_empty()).ok_or("no runs in the scale result")?;
        let field = |k: &str| -> Result<Vec<f64>, String> {
            runs.iter().map(|r| r[k].as_f64().ok_or_else(|| format!("a run without {k}"))).collect()
        };
        Ok(Self {
            machine: json["machine"].as_str().unwrap_or("unknown machine").to_string(),
            capture_us: median(field("capture_cpu_us_per_event")?),
            broker_produce_us: median(field("broker_produce_cpu_us_per_event")?),
            broker_fetch_us: median(field("broker_fetch_cpu_us_per_event")?),
            consumer_us: median(field("consumer_cpu_us_per_event")?),
            clickhouse_insert_us: median(field("clickhouse_insert_cpu_us_per_event")?),
            kafka_bytes: median(field("kafka_bytes_per_event")?),
            clickhouse_bytes: median(field("clickhouse_bytes_per_event")?),
            capture_eps: field("capture_events_per_second")?,
            consumer_eps: field("consumer_events_per_second")?,
        })
    }
}

impl QueryCosts {
    /// From `bench-query`'s JSON: the 30-day daily trend and the 3-step funnel.
    pub fn from_query(json: &Value) -> Result<Self, String> {
        let events = json["events_queried"].as_f64().ok_or("no events_queried in the query result")?;
        let cores = json["cores"].as_f64().ok_or("no cores in the query result")?;
        let p50 = |name: &str| -> Result<f64, String> {
            json["analyses"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["name"] == name))
                .and_then(|x| x["in_process_p50_ms"].as_f64())
                .ok_or_else(|| format!("no analysis {name:?} in the query result"))
        };
        let per_million = events / 1e6;
        Ok(Self {
            cores,
            trend_ms_per_million: p50("30-day daily trend")? / per_million,
            funnel_ms_per_million: p50("3-step funnel, 30 days")? / per_million,
        })
    }
}

/// The plan for one volume.
pub fn plan(v: Volume, c: &Costs, q: &QueryCosts, a: &Assumptions) -> Plan {
    let average_eps = v.events_per_day / 86_400.0;
    let peak_eps = average_eps * a.peak_factor;
    let cores = |us: f64| peak_eps * us / 1e6 / a.cpu_target;

    let capture_cores = cores(c.capture_us);
    // Two replicas at least (one may be rolled or lost), one core each at most.
    let capture_replicas = (capture_cores.ceil() as u32).max(2);
    let consumer_cores = cores(c.consumer_us);
    // A consumer spends most of its time waiting for ClickHouse's inserts: its CPU is not its
    // limit, its measured rate is (one process's, sized at the same share).
    let one_consumer = c.consumer_eps.first().copied().unwrap_or(f64::INFINITY) * a.cpu_target;
    let consumer_replicas = (consumer_cores.ceil() as u32).max((peak_eps / one_consumer).ceil() as u32).max(1);
    // Room for the autoscaler to triple the consumers for a backlog (partitions cap replicas);
    // a dozen from a team's size up, so that consumers can be added without growing the topic.
    let floor = if v.events_per_day > 1e7 { 12 } else { 4 };
    let partitions = (consumer_replicas * 3).max(floor).next_multiple_of(2);

    // One broker for a trial-sized team; a quorum of three, RF 3, from there.
    let (brokers, rf) = if v.events_per_day <= 1e7 { (1u32, 1u32) } else { (3, 3) };
    // The leader appends once and each follower fetches and appends again (a follower's work is
    // taken as a produce's); the consumer's fetch once.
    let broker_cores = cores(c.broker_produce_us * f64::from(rf) + c.broker_fetch_us);
    let kafka_total = v.events_per_day * a.kafka_retention_days * c.kafka_bytes * f64::from(rf);
    let kafka_disk_per_broker_gib = kafka_total / f64::from(brokers) / (1.0 - a.disk_free) / GIB;

    let clickhouse_insert_cores = cores(c.clickhouse_insert_us);
    let clickhouse_data_gib = v.events_per_day * a.clickhouse_retention_days * c.clickhouse_bytes / GIB;
    let month_millions = 30.0 * v.events_per_day / 1e6;
    let node = f64::from(v.clickhouse_node_cores);
    // An analysis uses every core of the node it runs on (ClickHouse's max_threads); the bench's
    // per-million figure was taken on `q.cores` cores.
    let trend_one_node_ms = q.trend_ms_per_million * month_millions * q.cores / node;
    let funnel_one_node_ms = q.funnel_ms_per_million * month_millions * q.cores / node;
    // Shards: enough that a 30-day trend meets its target (each shard scans its share), that the
    // inserts take at most a third of each node, and that a node holds at most 4 TiB of data.
    let by_query = (trend_one_node_ms / a.trend_target_ms).ceil();
    let by_insert = (clickhouse_insert_cores / (node / 3.0)).ceil();
    let by_disk = (clickhouse_data_gib / (4096.0 * (1.0 - a.disk_free))).ceil();
    let shards = by_query.max(by_insert).max(by_disk).max(1.0) as u32;
    // Replicated (two copies) from the size where losing a server must not lose events.
    let replicas = if v.events_per_day <= 1e7 { 1 } else { 2 };
    let clickhouse_disk_per_node_gib = clickhouse_data_gib / f64::from(shards) / (1.0 - a.disk_free);
    // ClickHouse's guidance: at least 16 GiB (32 recommended); 4 GiB per core for analytics.
    let clickhouse_memory_per_node_gib = (v.clickhouse_node_cores * 4).max(16);
    Plan {
        volume: v,
        average_eps,
        peak_eps,
        capture_cores,
        capture_replicas,
        consumer_cores,
        consumer_replicas,
        partitions,
        brokers,
        replication_factor: rf,
        broker_cores,
        kafka_disk_per_broker_gib,
        clickhouse_insert_cores,
        clickhouse_data_gib,
        trend_one_node_ms,
        funnel_one_node_ms,
        shards,
        replicas,
        clickhouse_disk_per_node_gib,
        clickhouse_memory_per_node_gib,
    }
}

fn gib(x: f64) -> String {
    if x >= 1024.0 {
        format!("{:.1} TiB", x / 1024.0)
    } else if x >= 10.0 {
        format!("{x:.0} GiB")
    } else {
        format!("{x:.1} GiB")
    }
}

fn int(x: f64) -> String {
    let s = format!("{:.0}", x);
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    format!("{sign}{out}")
}

/// The model's tables (Markdown), as docs/CAPACITY.md holds them.
pub fn render(c: &Costs, q: &QueryCosts, a: &Assumptions) -> String {
    let plans: Vec<Plan> = VOLUMES.iter().map(|v| plan(*v, c, q, a)).collect();
    let mut out = String::new();
    out.push_str(&format!("Measured on: {}.\n\n", c.machine));
    out.push_str("| cost (measured) | per event |\n|---|---:|\n");
    for (name, value) in [
        ("capture CPU", format!("{:.1} µs", c.capture_us)),
        ("Kafka broker CPU, produce (leader append)", format!("{:.1} µs", c.broker_produce_us)),
        ("Kafka broker CPU, the consumer's fetch", format!("{:.1} µs", c.broker_fetch_us)),
        ("consumer CPU", format!("{:.1} µs", c.consumer_us)),
        ("ClickHouse CPU, insert (views and merges included)", format!("{:.1} µs", c.clickhouse_insert_us)),
        ("Kafka disk (LZ4 batches)", format!("{:.0} bytes", c.kafka_bytes)),
        ("ClickHouse disk (every table, compressed, merged)", format!("{:.0} bytes", c.clickhouse_bytes)),
        (
            "30-day trend, in-process p50",
            format!("{:.2} ms per million events on {} cores", q.trend_ms_per_million, q.cores),
        ),
        (
            "3-step funnel, in-process p50",
            format!("{:.2} ms per million events on {} cores", q.funnel_ms_per_million, q.cores),
        ),
    ] {
        out.push_str(&format!("| {name} | {value} |\n"));
    }
    out.push('\n');
    let eps = |v: &[f64]| v.iter().map(|x| int(*x)).collect::<Vec<_>>().join(" / ");
    out.push_str(&format!(
        "Throughput on the bench machine with 1 / 2 / 3 processes: capture {} events/s, consumers {} events/s.\n\n",
        eps(&c.capture_eps),
        eps(&c.consumer_eps)
    ));
    let header: Vec<&str> = plans.iter().map(|p| p.volume.label).collect();
    out.push_str(&format!("| events a day | {} |\n", header.join(" | ")));
    out.push_str(&format!("|---|{}\n", "---:|".repeat(plans.len())));
    let row = |out: &mut String, name: &str, f: &dyn Fn(&Plan) -> String| {
        let cells: Vec<String> = plans.iter().map(f).collect();
        out.push_str(&format!("| {name} | {} |\n", cells.join(" | ")));
    };
    row(&mut out, "average / peak events/s", &|p| format!("{} / {}", int(p.average_eps), int(p.peak_eps)));
    row(&mut out, "capture: cores at peak → replicas", &|p| {
        format!("{:.2} → {}", p.capture_cores, p.capture_replicas)
    });
    row(&mut out, "consumer: cores at peak → replicas", &|p| {
        format!("{:.2} → {}", p.consumer_cores, p.consumer_replicas)
    });
    row(&mut out, "topic partitions", &|p| p.partitions.to_string());
    row(&mut out, "Kafka brokers (replication factor)", &|p| format!("{} ({})", p.brokers, p.replication_factor));
    row(&mut out, "Kafka cores at peak, all brokers", &|p| format!("{:.2}", p.broker_cores));
    row(&mut out, "Kafka disk per broker", &|p| gib(p.kafka_disk_per_broker_gib));
    row(&mut out, "ClickHouse insert cores at peak", &|p| format!("{:.2}", p.clickhouse_insert_cores));
    row(&mut out, "ClickHouse data for the retention", &|p| gib(p.clickhouse_data_gib));
    row(&mut out, "ClickHouse node (cores)", &|p| p.volume.clickhouse_node_cores.to_string());
    row(&mut out, "30-day trend / funnel on one node, p50", &|p| {
        format!("{} / {} ms", int(p.trend_one_node_ms), int(p.funnel_one_node_ms))
    });
    row(&mut out, "ClickHouse shards × replicas", &|p| format!("{} × {}", p.shards, p.replicas));
    row(&mut out, "30-day trend / funnel over the shards, p50", &|p| {
        format!(
            "{} / {} ms",
            int(p.trend_one_node_ms / f64::from(p.shards)),
            int(p.funnel_one_node_ms / f64::from(p.shards))
        )
    });
    row(&mut out, "ClickHouse disk / memory per node", &|p| {
        format!("{} / {} GiB", gib(p.clickhouse_disk_per_node_gib), p.clickhouse_memory_per_node_gib)
    });
    out.push('\n');
    for p in &plans {
        out.push_str(&format!(
            "`AnalyticsPlatform` for {} events a day:\n\n```yaml\n{}```\n\n",
            p.volume.label,
            spec_yaml(p, a)
        ));
    }
    out
}

/// The spec parts that the plan decides.
pub fn spec_yaml(p: &Plan, a: &Assumptions) -> String {
    let kafka = if p.brokers == 1 {
        format!("    managed: {{storage: {:.0}Gi}}\n", p.kafka_disk_per_broker_gib.max(10.0).ceil())
    } else {
        format!(
            "    managed: {{replicas: {}, storage: {:.0}Gi}}\n",
            p.brokers,
            p.kafka_disk_per_broker_gib.max(10.0).ceil()
        )
    };
    let clickhouse = if p.shards * p.replicas == 1 {
        "    external: {url: http://clickhouse:8123}\n".to_string()
    } else {
        "    external: {url: http://clickhouse:8123}   # any node of the cluster (a Service over them)\n    cluster: cairn\n"
            .to_string()
    };
    format!(
        "spec:\n  eventTtlDays: {ttl}\n  kafka:\n{kafka}    topic: {{partitions: {parts}, retentionHours: {hours}}}\n  clickhouse:\n{clickhouse}  capture:\n    autoscaling: {{minReplicas: {cap}, maxReplicas: {cap_max}}}\n  consumer:\n    autoscaling: {{minReplicas: {con}, maxReplicas: {parts}, targetLagPerReplica: 50000}}\n",
        ttl = a.clickhouse_retention_days as u32,
        parts = p.partitions,
        hours = (a.kafka_retention_days * 24.0) as u32,
        cap = p.capture_replicas,
        cap_max = p.capture_replicas * 3,
        con = p.consumer_replicas,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results() -> (Costs, QueryCosts) {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/results");
        let scale: Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{dir}/scale.json")).unwrap()).unwrap();
        let query: Value =
            serde_json::from_str(&std::fs::read_to_string(format!("{dir}/query.json")).unwrap()).unwrap();
        (Costs::from_scale(&scale).unwrap(), QueryCosts::from_query(&query).unwrap())
    }

    /// docs/CAPACITY.md holds, between its markers, what the model prints from bench/results/:
    /// `make capacity` after a new bench result, then paste (or CAIRN_WRITE_DOCS=1 writes it).
    #[test]
    fn capacity_doc_tables_are_current() {
        let (c, q) = results();
        let generated = render(&c, &q, &Assumptions::default());
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/CAPACITY.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let (begin, end) = ("<!-- capacity:begin -->\n", "<!-- capacity:end -->");
        let start = doc.find(begin).expect("the begin marker") + begin.len();
        let stop = doc.find(end).expect("the end marker");
        if std::env::var_os("CAIRN_WRITE_DOCS").is_some() {
            std::fs::write(path, format!("{}{generated}{}", &doc[..start], &doc[stop..])).unwrap();
            return;
        }
        assert!(doc[start..stop] == generated, "docs/CAPACITY.md's tables are stale: run `make capacity-doc`");
    }

    #[test]
    fn the_model_grows_with_the_volume_and_rounds_up() {
        let (c, q) = results();
        let a = Assumptions::default();
        let plans: Vec<Plan> = VOLUMES.iter().map(|v| plan(*v, &c, &q, &a)).collect();
        assert!(plans
            .windows(2)
            .all(|w| w[0].shards <= w[1].shards && w[0].clickhouse_data_gib < w[1].clickhouse_data_gib));
        for p in &plans {
            assert!(p.capture_replicas >= 2 && f64::from(p.capture_replicas) >= p.capture_cores);
            assert!(f64::from(p.consumer_replicas) >= p.consumer_cores);
            assert!(p.partitions >= p.consumer_replicas);
            assert!(p.trend_one_node_ms / f64::from(p.shards) <= a.trend_target_ms);
        }
        assert_eq!(int(1234567.0), "1,234,567");
        assert_eq!(int(999.0), "999");
    }
}
