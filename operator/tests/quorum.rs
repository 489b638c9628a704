//! The operator against a Kafka quorum of three real brokers: the platform's topics are created
//! with replication factor 3 and `min.insync.replicas` 2, and stay Ready with a broker killed. The
//! CRD refuses quorum shapes that would not keep a majority, a change of the broker count, and a
//! ClickHouse cluster that is not external.

mod support;

use std::time::Duration;

use cairn_e2e::{unique, wait_until, TestKafkaQuorum};
use cairn_operator::crd::AnalyticsPlatform;
use kube::api::{Api, PostParams};
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;
use rdkafka::ClientConfig;
use serde_json::json;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_on_three_brokers_replicates_its_topics_three_times_and_outlives_one() {
    let env = setup().await;
    let quorum = TestKafkaQuorum::dedicated("operator", 3).unwrap();
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    let topic = unique("op_quorum");
    let ap = platform("quorum", &quorum.brokers(), &env.ch.url(), &topic, &unique("op"));
    api.create(&PostParams::default(), &ap).await.unwrap();
    let ready = wait_phase(&api, "quorum", "Ready", Duration::from_secs(120)).await;
    assert_eq!(ready.status.as_ref().unwrap().kafka.as_ref().unwrap().replication_factor, Some(3));

    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", quorum.brokers()).create().unwrap();
    for t in [topic.clone(), format!("{topic}_dead_letter")] {
        let replicas = quorum.replicas(&t).unwrap();
        assert!(replicas.iter().all(|&(r, isr)| r == 3 && isr == 3), "{t}: {replicas:?}");
        assert_eq!(topic_config(&admin, &t).await.get("min.insync.replicas").map(String::as_str), Some("2"), "{t}");
    }

    // A broker dies: the topics keep two in-sync replicas, the platform stays Ready (the
    // operator's Kafka checks reach the other two).
    quorum.nodes[2].kill().unwrap();
    wait_until("the killed broker out of every ISR", Duration::from_secs(30), || async {
        quorum.replicas(&topic).is_ok_and(|r| r.iter().all(|&(_, isr)| isr == 2))
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let still = wait_phase(&api, "quorum", "Ready", Duration::from_secs(60)).await;
    assert_eq!(condition(&still, "KafkaReady").status, "True", "{:?}", still.status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crd_refuses_quorums_without_a_majority_broker_count_changes_and_managed_clusters() {
    let env = setup().await;
    let api: Api<AnalyticsPlatform> = Api::namespaced(env.client.clone(), &env.ns);
    let managed = |name: &str, replicas: i32| -> AnalyticsPlatform {
        let mut ap = platform(name, "unused:9092", &env.ch.url(), &unique("t"), &unique("op"));
        let mut v = serde_json::to_value(&ap).unwrap();
        v["spec"]["kafka"] = json!({"managed": {"replicas": replicas}, "topic": {"name": unique("t")}});
        ap = serde_json::from_value(v).unwrap();
        ap
    };
    for n in [2, 4] {
        let err = api.create(&PostParams::default(), &managed(&format!("even{n}"), n)).await.unwrap_err();
        assert!(err.to_string().contains("an odd number of at least 3"), "{n}: {err}");
    }
    api.create(&PostParams::default(), &managed("three", 3)).await.unwrap();
    let err = api
        .patch("three", &Default::default(), &merge(json!({"spec": {"kafka": {"managed": {"replicas": 5}}}})))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("fixed when the brokers are created"), "{err}");

    let mut ch_managed = platform("chm", &env.kafka.brokers(), &env.ch.url(), &unique("t"), &unique("op"));
    let mut v = serde_json::to_value(&ch_managed).unwrap();
    v["spec"]["clickhouse"] = json!({"managed": {}, "cluster": "c"});
    ch_managed = serde_json::from_value(v).unwrap();
    let err = api.create(&PostParams::default(), &ch_managed).await.unwrap_err();
    assert!(err.to_string().contains("clickhouse.cluster names a cluster of external servers"), "{err}");

    let on_one = platform("one", &env.kafka.brokers(), &env.ch.url(), &unique("t"), &unique("op"));
    api.create(&PostParams::default(), &on_one).await.unwrap();
    let err = api
        .patch("one", &Default::default(), &merge(json!({"spec": {"clickhouse": {"cluster": "c"}}})))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("clickhouse.cluster is fixed"), "{err}");
}
