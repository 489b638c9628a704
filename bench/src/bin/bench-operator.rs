//! `make bench-operator`: the operator on the local control plane (real kube-apiserver, etcd,
//! kube-controller-manager, kube-scheduler, kwok) with the test stack's Kafka and ClickHouse.
//!
//! Prints: time from `kubectl apply` to Ready for one platform; reconciles per minute of idle
//! platforms over `IDLE_SECONDS` (default 300); the operator's CPU and memory; and the same with
//! `PLATFORMS` (default 50) platforms in one cluster.
//!
//! The autopilot runs as in production (lag and backlog read, disks, system logs, a heartbeat
//! every 30 s per platform read back from ClickHouse). kwok's pods run nothing, so each heartbeat
//! send fails at capture's name (a DNS miss, as cheap as a refused connection); the freshness
//! threshold is raised so that the platforms stay Ready and the idle figures stay the steady
//! state's.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use cairn_bench::cpu_seconds;
use cairn_e2e::{unique, wait_until, Service, TestClickHouse, TestKafka, TestKube};
use cairn_operator::crd::AnalyticsPlatform;
use kube::api::{Api, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use serde_json::json;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn platform(name: &str, brokers: &str, ch: &str) -> AnalyticsPlatform {
    serde_json::from_value(json!({
        "apiVersion": "cairn.dev/v1alpha1", "kind": "AnalyticsPlatform", "metadata": {"name": name},
        "spec": {
            "capture": {"replicas": 2}, "consumer": {"replicas": 1}, "query": {"replicas": 1}, "auth": {"replicas": 1},
            "kafka": {"external": {"bootstrapServers": brokers}, "topic": {"name": unique("bench_events"), "partitions": 4}},
            // The test bed's disk is the machine's, shared with the builds.
            "clickhouse": {"external": {"url": ch}, "database": unique("bench"), "minFreeDiskPercent": 1}
        }
    }))
    .unwrap_or_default()
}

async fn ready_count(api: &Api<AnalyticsPlatform>) -> usize {
    api.list(&Default::default())
        .await
        .map(|l| l.items.iter().filter(|a| a.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Ready")).count())
        .unwrap_or(0)
}

/// Reconciles per minute and CPU (percent of one core) over `seconds` of idleness.
async fn idle_rate(operator: &Service, pid: u32, seconds: u64) -> Result<(f64, f64)> {
    let before = operator.metric("cairn_operator_reconciles_total").await?;
    let cpu = cpu_seconds(pid).unwrap_or(0.0);
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let after = operator.metric("cairn_operator_reconciles_total").await?;
    let used = cpu_seconds(pid).unwrap_or(0.0) - cpu;
    Ok(((after - before) * 60.0 / seconds as f64, used * 100.0 / seconds as f64))
}

#[tokio::main]
async fn main() -> Result<()> {
    let idle = env_or("IDLE_SECONDS", 300);
    let n = env_or("PLATFORMS", 50) as usize;
    let kube = TestKube::shared()?;
    let kafka = TestKafka::shared()?;
    let ch = TestClickHouse::shared()?;
    let crd = cairn_e2e::repo_root().join("crds/analyticsplatform.yaml");
    kube.kubectl(&["apply", "--server-side", "--force-conflicts", "-f", &crd.display().to_string()])?;
    kube.kubectl(&["wait", "--for=condition=Established", "--timeout=60s", "crd/analyticsplatforms.cairn.dev"])?;
    let cfg =
        kube::Config::from_custom_kubeconfig(Kubeconfig::read_from(kube.kubeconfig())?, &KubeConfigOptions::default())
            .await?;
    let client = Client::try_from(cfg)?;

    let ns = unique("bench").replace('_', "-");
    kube.kubectl(&["create", "namespace", &ns])?;
    let mut env = HashMap::new();
    env.insert("KUBECONFIG".to_string(), kube.kubeconfig().display().to_string());
    env.insert("WATCH_NAMESPACE".to_string(), ns.clone());
    env.insert("POD_NAMESPACE".to_string(), ns.clone());
    env.insert("CAIRN_LOG".to_string(), "warn".to_string());
    env.insert("CAIRN_OPERATOR_FRESHNESS_THRESHOLD_SECS".to_string(), "86400".to_string());
    let operator = Service::start("operator", &env).await?;
    let pid = operator.pid().unwrap_or(0);
    let api: Api<AnalyticsPlatform> = Api::namespaced(client.clone(), &ns);

    let started = Instant::now();
    api.create(&PostParams::default(), &platform("one", &kafka.brokers(), &ch.url())).await?;
    wait_until("one platform Ready", Duration::from_secs(300), || async { ready_count(&api).await == 1 }).await?;
    let one_ready = started.elapsed();
    let (one_idle, one_cpu) = idle_rate(&operator, pid, idle).await?;
    let one_rss = rss_mib(pid);

    let started = Instant::now();
    for i in 1..n {
        api.create(&PostParams::default(), &platform(&format!("p{i:02}"), &kafka.brokers(), &ch.url())).await?;
    }
    wait_until("every platform Ready", Duration::from_secs(1800), || async { ready_count(&api).await == n }).await?;
    let all_ready = started.elapsed();
    let (many_idle, many_cpu) = idle_rate(&operator, pid, idle).await?;
    let many_rss = rss_mib(pid);

    println!("| measure | 1 platform | {n} platforms |");
    println!("|---|---:|---:|");
    println!(
        "| apply → Ready | {:.1} s | {:.1} s (all {n}, created back to back) |",
        one_ready.as_secs_f64(),
        all_ready.as_secs_f64()
    );
    println!("| reconciles per minute while idle ({idle} s) | {one_idle:.2} | {many_idle:.2} |");
    println!("| operator CPU while idle (% of one core) | {one_cpu:.2} % | {many_cpu:.2} % |");
    println!("| operator memory (RSS) | {one_rss:.1} MiB | {many_rss:.1} MiB |");
    kube.kubectl(&["delete", "namespace", &ns, "--wait=false"])?;
    Ok(())
}
