//! librdkafka client configuration shared by capture's producer, the consumer and the operator's
//! admin client: brokers and security settings come from [`KafkaConfig`] in one place; and topic
//! administration ([`topics`]), one code path for the services and the operator.

pub mod lag;
pub mod topics;

use rdkafka::ClientConfig;

use crate::config::{ExposeSecret, KafkaConfig};

/// A client configuration with the brokers and security settings filled in.
pub fn client_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers);
    // Keep librdkafka's own logging quiet; errors reach us through callbacks and results.
    c.set("log_level", "4");
    if let Some(p) = &cfg.security_protocol {
        c.set("security.protocol", p);
    }
    if let Some(m) = &cfg.sasl_mechanism {
        c.set("sasl.mechanism", m);
    }
    if let Some(u) = &cfg.sasl_username {
        c.set("sasl.username", u);
    }
    if let Some(p) = &cfg.sasl_password {
        c.set("sasl.password", p.expose_secret());
    }
    if let Some(ca) = &cfg.ssl_ca_location {
        c.set("ssl.ca.location", ca);
    }
    // The protocol's request size must hold the largest record and its batch's framing.
    c.set("message.max.bytes", (cfg.message_max_bytes + 64 * 1024).to_string());
    c
}

use std::time::Duration;

use rdkafka::client::{Client, ClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use thiserror::Error;

/// Creates the topics that do not exist yet in the background (an existing topic is left as it
/// is), each with `max.message.bytes` set to the shared record limit and, for a replication factor
/// `rf` above 1, `min.insync.replicas` = rf − 1 (with capture's acks=all an acknowledged event is on
/// two brokers, and one broker may be down); retries with backoff until it succeeds or `stop`
/// (Kafka may still be starting when a service starts).
pub fn ensure_topics_in_background(
    cfg: KafkaConfig,
    topics: Vec<topics::DesiredTopic>,
    stop: tokio_util::sync::CancellationToken,
) {
    tokio::spawn(async move {
        let mut backoff = crate::retry::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let max_message = cfg.message_max_bytes.to_string();
        loop {
            let settings = |_: &topics::DesiredTopic, rf: i32| {
                vec![("max.message.bytes", max_message.clone()), ("min.insync.replicas", (rf - 1).max(1).to_string())]
            };
            match topics::converge(&cfg, &topics, topics::Converge::CreateMissing, settings).await {
                Ok(_) => return,
                Err(e) => tracing::warn!(error = %e, "cannot ensure Kafka topics yet"),
            }
            if !backoff.wait(&stop).await {
                return;
            }
        }
    });
}

/// Asks the cluster for a topic's metadata: `Ok(partitions)` when a broker answered and the
/// topic exists with every partition led, `Err(reason)` otherwise. Blocking; call it from
/// `spawn_blocking`.
pub fn probe_topic<C: ClientContext>(client: &Client<C>, topic: &str, timeout: Duration) -> Result<usize, String> {
    let md = client.fetch_metadata(Some(topic), timeout).map_err(|e| format!("metadata request failed: {e}"))?;
    if md.brokers().is_empty() {
        return Err("no brokers".into());
    }
    let t = md.topics().iter().find(|t| t.name() == topic).ok_or_else(|| format!("topic {topic} not in metadata"))?;
    if let Some(err) = t.error() {
        return Err(format!("topic {topic}: {:?}", RDKafkaErrorCode::from(err)));
    }
    if t.partitions().is_empty() {
        return Err(format!("topic {topic} has no partitions"));
    }
    if let Some(p) = t.partitions().iter().find(|p| p.leader() < 0 || p.error().is_some()) {
        return Err(format!("topic {topic} partition {} has no leader", p.id()));
    }
    Ok(t.partitions().len())
}

/// Whether an error means the cluster is unreachable (as opposed to one request failing).
pub fn is_connectivity_error(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::AllBrokersDown | RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::Resolve)
    )
}

/// Why changing a topic's configuration failed.
#[derive(Debug, Error)]
pub enum AlterConfigError {
    #[error("invalid configuration name or value {0:?} (contains a NUL byte)")]
    Nul(String),
    #[error("librdkafka refused configuration {name}: {message}")]
    Entry { name: String, message: String },
    #[error("no answer from Kafka within {0:?}")]
    Timeout(Duration),
    #[error("Kafka refused to change the configuration of topic {topic}: {code:?} {message}")]
    Refused { topic: String, code: RDKafkaErrorCode, message: String },
}

/// Sets configuration entries of a topic with IncrementalAlterConfigs (KIP-339): only the named
/// entries change, and whatever else others set on the topic stays. (The older AlterConfigs, the
/// only one the `rdkafka` crate wraps, replaces the topic's whole configuration: every entry not
/// sent is reset to the broker's default.) Blocking for up to `timeout`; call it from
/// `spawn_blocking` or `block_in_place`.
pub fn incremental_alter_topic_config<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    set: &[(&str, String)],
    timeout: Duration,
) -> Result<(), AlterConfigError> {
    use rdkafka::bindings as rd;
    use std::ffi::{CStr, CString};

    fn c(s: &str) -> Result<CString, AlterConfigError> {
        CString::new(s).map_err(|_| AlterConfigError::Nul(s.to_string()))
    }
    /// Frees what librdkafka allocated, whichever way the function returns.
    struct Owned {
        resource: *mut rd::rd_kafka_ConfigResource_t,
        options: *mut rd::rd_kafka_AdminOptions_t,
        queue: *mut rd::rd_kafka_queue_t,
        event: *mut rd::rd_kafka_event_t,
    }
    impl Drop for Owned {
        fn drop(&mut self) {
            // SAFETY: each pointer is null or was returned by the matching librdkafka constructor
            // and is destroyed exactly once, here.
            unsafe {
                if !self.event.is_null() {
                    rd::rd_kafka_event_destroy(self.event);
                }
                if !self.queue.is_null() {
                    rd::rd_kafka_queue_destroy(self.queue);
                }
                if !self.options.is_null() {
                    rd::rd_kafka_AdminOptions_destroy(self.options);
                }
                if !self.resource.is_null() {
                    rd::rd_kafka_ConfigResource_destroy(self.resource);
                }
            }
        }
    }
    // SAFETY: a C string that librdkafka returned (or null).
    unsafe fn text(p: *const std::os::raw::c_char) -> String {
        if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }

    let topic_c = c(topic)?;
    let entries: Vec<(CString, CString, &str)> =
        set.iter().map(|(k, v)| Ok((c(k)?, c(v)?, *k))).collect::<Result<_, AlterConfigError>>()?;
    let rk = client.native_ptr();
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `rk` is a live client handle for the duration of this call (borrowed from `client`);
    // every C string outlives the calls that read it; librdkafka copies the resource when the
    // request is made; the event is read before it is destroyed (by `Owned`).
    unsafe {
        let mut owned = Owned {
            resource: rd::rd_kafka_ConfigResource_new(
                rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
                topic_c.as_ptr(),
            ),
            options: std::ptr::null_mut(),
            queue: std::ptr::null_mut(),
            event: std::ptr::null_mut(),
        };
        for (name, value, key) in &entries {
            let err = rd::rd_kafka_ConfigResource_add_incremental_config(
                owned.resource,
                name.as_ptr(),
                rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET,
                value.as_ptr(),
            );
            if !err.is_null() {
                let message = text(rd::rd_kafka_error_string(err));
                rd::rd_kafka_error_destroy(err);
                return Err(AlterConfigError::Entry { name: key.to_string(), message });
            }
        }
        owned.options =
            rd::rd_kafka_AdminOptions_new(rk, rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_INCREMENTALALTERCONFIGS);
        let mut errstr = [0 as std::os::raw::c_char; 256];
        rd::rd_kafka_AdminOptions_set_request_timeout(owned.options, timeout_ms, errstr.as_mut_ptr(), errstr.len());
        owned.queue = rd::rd_kafka_queue_new(rk);
        let mut resources = [owned.resource];
        rd::rd_kafka_IncrementalAlterConfigs(rk, resources.as_mut_ptr(), 1, owned.options, owned.queue);
        owned.event = rd::rd_kafka_queue_poll(owned.queue, timeout_ms.saturating_add(1000));
        if owned.event.is_null() {
            return Err(AlterConfigError::Timeout(timeout));
        }
        let code = rd::rd_kafka_event_error(owned.event);
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(AlterConfigError::Refused {
                topic: topic.to_string(),
                code: code.into(),
                message: text(rd::rd_kafka_event_error_string(owned.event)),
            });
        }
        let result = rd::rd_kafka_event_IncrementalAlterConfigs_result(owned.event);
        if result.is_null() {
            return Err(AlterConfigError::Refused {
                topic: topic.to_string(),
                code: RDKafkaErrorCode::Unknown,
                message: "not an IncrementalAlterConfigs result".into(),
            });
        }
        let mut count = 0usize;
        let list = rd::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut count);
        for i in 0..count {
            let r = *list.add(i);
            let code = rd::rd_kafka_ConfigResource_error(r);
            if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return Err(AlterConfigError::Refused {
                    topic: topic.to_string(),
                    code: code.into(),
                    message: text(rd::rd_kafka_ConfigResource_error_string(r)),
                });
            }
        }
    }
    Ok(())
}
