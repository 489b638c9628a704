//! The consume loop: read records into a batch, and when the batch is full or old enough,
//! make it durable (dead letters to their topic, rows into ClickHouse) and only then commit its
//! offsets. A crash anywhere before the commit means Kafka redelivers the batch; the events
//! table's uuid key and the insert deduplication token keep the redelivery invisible to queries.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_common::kafka::is_connectivity_error;
use cairn_common::telemetry::{Health, Heartbeat};
use rdkafka::client::ClientContext;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::batch::{Batch, DeadLetter, Origin};
use crate::dead_letter::{refused_for_content, DeadLetterProducer};
use crate::metrics::ConsumerMetrics;
use crate::writer::{Backoff, WriteError, Writer};

/// The readiness check that Kafka reports into.
pub const KAFKA_CHECK: &str = "kafka";

/// Reports connectivity into readiness and logs partition assignments.
pub struct ConsumerHealthContext {
    pub health: Health,
}

impl ClientContext for ConsumerHealthContext {
    fn error(&self, error: KafkaError, reason: &str) {
        if is_connectivity_error(&error) {
            self.health.set(KAFKA_CHECK, false, format!("{error}: {reason}"));
        } else {
            tracing::warn!(%error, reason, "kafka client error");
        }
    }
}

impl ConsumerContext for ConsumerHealthContext {
    fn post_rebalance(&self, base: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let protocol = match base.rebalance_protocol() {
            rdkafka::consumer::RebalanceProtocol::Cooperative => "cooperative",
            rdkafka::consumer::RebalanceProtocol::Eager => "eager",
            rdkafka::consumer::RebalanceProtocol::None => "none",
        };
        match rebalance {
            Rebalance::Assign(tpl) => tracing::info!(partitions = %describe(tpl), %protocol, "partitions assigned"),
            Rebalance::Revoke(tpl) => tracing::info!(partitions = %describe(tpl), %protocol, "partitions revoked"),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements().iter().map(|e| format!("{}/{}", e.topic(), e.partition())).collect::<Vec<_>>().join(",")
}

pub type EventConsumer = StreamConsumer<ConsumerHealthContext>;

pub struct Pipeline {
    pub consumer: Arc<EventConsumer>,
    pub writer: Writer,
    pub dead_letters: DeadLetterProducer,
    pub metrics: Arc<ConsumerMetrics>,
    pub batch_max_events: usize,
    /// A batch is inserted once its records hold this many bytes, whatever their count.
    pub batch_max_bytes: usize,
    pub batch_max_age: Duration,
    /// How long a dead letter is retried while Kafka does not take it; then it is dropped (with
    /// an error and a metric) rather than stop consumption.
    pub dead_letter_timeout: Duration,
    pub shutdown_grace: Duration,
    pub retry: Backoff,
    /// Liveness: beats at every turn of the loop and every retry.
    pub heartbeat: Heartbeat,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Write(#[from] WriteError),
    #[error("shutting down before the dead-letter topic accepted the batch's poison records: {0}")]
    DeadLetter(String),
}

impl Pipeline {
    /// Consumes until `stop`; then makes the current batch durable, commits it and returns.
    pub async fn run(mut self, stop: CancellationToken) -> Result<(), PipelineError> {
        let mut batch = Batch::new();
        let beat_every = self.heartbeat.interval();
        loop {
            self.heartbeat.beat();
            let deadline = batch.started().map(|s| s + self.batch_max_age);
            tokio::select! {
                biased;
                _ = stop.cancelled() => {
                    tracing::info!(records = batch.len(), "finishing the current batch before exit");
                    self.flush(&mut batch, &stop).await?;
                    return Ok(());
                }
                _ = sleep_until(deadline) => {
                    self.flush(&mut batch, &stop).await?;
                }
                message = self.consumer.recv() => match message {
                    Ok(m) => {
                        let dead_before = batch.dead_letters.len();
                        batch.push(
                            Origin { topic: m.topic(), partition: m.partition(), offset: m.offset() },
                            m.key(),
                            m.payload(),
                        );
                        if cairn_common::telemetry::exporting() {
                            batch.link(header_of(&m, cairn_common::trace::TRACEPARENT));
                        }
                        if batch.dead_letters.len() > dead_before {
                            // Only a dead letter looks at headers: which request brought it.
                            if let Some(letter) = batch.dead_letters.last_mut() {
                                letter.request_id = request_id_of(&m);
                            }
                        }
                        if batch.len() >= self.batch_max_events || batch.bytes >= self.batch_max_bytes {
                            self.flush(&mut batch, &stop).await?;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka consume error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                // Idle (no records, no batch): the loop still turns, so it is not stalled.
                _ = tokio::time::sleep(beat_every) => {}
            }
        }
    }

    async fn flush(&mut self, batch: &mut Batch, stop: &CancellationToken) -> Result<(), PipelineError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut b = std::mem::take(batch);
        let span = tracing::info_span!(
            "batch",
            records = b.len(),
            rows = b.rows.len(),
            traces = b.links.len(),
            trace_id = tracing::field::Empty,
        );
        cairn_common::trace::link(&span, std::mem::take(&mut b.links));
        cairn_common::trace::record_trace_id(&span);
        self.store(b, stop).instrument(span).await
    }

    /// Stores a batch (dead letters, rows, refused rows) and commits its offsets.
    async fn store(&mut self, b: Batch, stop: &CancellationToken) -> Result<(), PipelineError> {
        self.send_dead_letters(&b.dead_letters, stop).await?;
        let inserted = self.writer.insert(&b.rows, &b.dedup_token(), stop, self.shutdown_grace, &self.metrics).await?;
        // Rows ClickHouse refused for their content: to the dead-letter topic, as records.
        let refused: Vec<DeadLetter> = inserted
            .refused
            .iter()
            .filter_map(|(i, reason)| {
                let row = b.rows.get(*i)?;
                let (topic, partition, offset) = b.row_origins.get(*i)?.clone();
                Some(DeadLetter {
                    topic,
                    partition,
                    offset,
                    key: Some(cairn_common::event::kafka_key(row.project_id, &row.distinct_id).into_bytes()),
                    payload: row.to_record().ok(),
                    reason: format!("ClickHouse refused the row: {reason}"),
                    request_id: None,
                })
            })
            .collect();
        self.send_dead_letters(&refused, stop).await?;
        if !b.changes.is_empty() {
            self.store_changes(&b, stop).await?;
        }
        self.commit(&b);
        self.metrics.count("inserted", b.rows.len() - refused.len());
        self.metrics.count("dead_lettered", b.dead_letters.len() + refused.len());
        self.metrics.batches.inc();
        self.metrics.batch_events.observe(b.len() as f64);
        if let Some(oldest) = b.oldest_received {
            let age = (time::OffsetDateTime::now_utc() - oldest).as_seconds_f64();
            self.metrics.freshness_seconds.observe(age.max(0.0));
        }
        tracing::debug!(
            rows = b.rows.len(),
            dead_letters = b.dead_letters.len() + refused.len(),
            "batch stored and committed"
        );
        Ok(())
    }

    /// Applies the batch's updates and deletions (after its captures are stored: a change may
    /// follow its event in the same batch) and appends the new versions.
    async fn store_changes(&mut self, b: &Batch, stop: &CancellationToken) -> Result<(), PipelineError> {
        let mut give_up_at: Option<Instant> = None;
        let versions = loop {
            self.heartbeat.beat();
            let read = tokio::time::timeout(
                self.writer.timeout,
                crate::changes::versions(&self.writer.client, &b.rows, &b.changes),
            )
            .await
            .unwrap_or(Err(clickhouse::error::Error::TimedOut));
            match read {
                Ok(v) => break v,
                Err(e) => {
                    self.metrics.insert_failures.inc();
                    self.writer.health.set(crate::writer::CLICKHOUSE_CHECK, false, e.to_string());
                    let delay = self.retry.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "reading the versions that changes apply to failed; retrying");
                    if stop.is_cancelled() {
                        let deadline = *give_up_at.get_or_insert_with(|| Instant::now() + self.shutdown_grace);
                        if Instant::now() + delay > deadline {
                            return Err(WriteError::GaveUp(e.to_string()).into());
                        }
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        };
        self.retry.reset();
        for (uuid, why) in &versions.skipped {
            tracing::info!(%uuid, why, "an event change made no new version");
            self.metrics.changes.get_or_create(&crate::metrics::OutcomeLabels { outcome: why }).inc();
        }
        let applied = (b.changes.len() - versions.skipped.len()) as u64;
        if versions.rows.is_empty() {
            return Ok(());
        }
        // The token names the versions themselves: a batch of the same offsets that makes other
        // versions (a topic made again) is never dropped as a retry.
        let token = {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(b.dedup_token().as_bytes());
            for r in &versions.rows {
                h.update(r.project_id.to_le_bytes());
                h.update(r.uuid.as_bytes());
                h.update(r.version.to_le_bytes());
                h.update(r.change_id.as_bytes());
            }
            format!("changes-{}", hex::encode(&h.finalize()[..16]))
        };
        let inserted = self.writer.insert(&versions.rows, &token, stop, self.shutdown_grace, &self.metrics).await?;
        // A version ClickHouse refuses (it cannot be, but if): every change of the batch that
        // made it goes to the dead letters, to be replayed in order.
        let refused: Vec<DeadLetter> = inserted
            .refused
            .iter()
            .filter_map(|(i, reason)| Some((versions.rows.get(*i)?, reason)))
            .flat_map(|(row, reason)| {
                b.changes
                    .iter()
                    .filter(move |(c, _)| c.project_id == row.project_id && c.uuid == row.uuid)
                    .map(move |(change, origin)| (change, origin, reason))
            })
            .map(|(change, origin, reason)| DeadLetter {
                topic: b
                    .commit_offsets()
                    .into_iter()
                    .find(|(_, p, _)| *p == origin.partition)
                    .map_or_else(|| "(the events topic)".to_string(), |(t, _, _)| t),
                partition: origin.partition,
                offset: origin.offset,
                key: Some(change.kafka_key().into_bytes()),
                payload: change.to_record().ok(),
                reason: format!("ClickHouse refused the event's new version: {reason}"),
                request_id: None,
            })
            .collect();
        self.send_dead_letters(&refused, stop).await?;
        self.metrics
            .changes
            .get_or_create(&crate::metrics::OutcomeLabels { outcome: "applied" })
            .inc_by(applied.saturating_sub(refused.len() as u64));
        self.metrics
            .changes
            .get_or_create(&crate::metrics::OutcomeLabels { outcome: "dead_lettered" })
            .inc_by(refused.len() as u64);
        Ok(())
    }

    async fn send_dead_letters(
        &mut self,
        letters: &[DeadLetter],
        stop: &CancellationToken,
    ) -> Result<(), PipelineError> {
        if letters.is_empty() {
            return Ok(());
        }
        let mut letters = std::borrow::Cow::Borrowed(letters);
        let mut give_up_at: Option<Instant> = None;
        let started = Instant::now();
        loop {
            self.heartbeat.beat();
            match self.dead_letters.send(&letters).await {
                Ok(()) => {
                    for l in letters.iter() {
                        tracing::warn!(topic = %l.topic, partition = l.partition, offset = l.offset, reason = %l.reason, request_id = l.request_id.as_deref(), "record sent to the dead-letter topic");
                    }
                    self.retry.reset();
                    return Ok(());
                }
                Err(e) if refused_for_content(&e) && matches!(letters, std::borrow::Cow::Borrowed(_)) => {
                    // Too large (or otherwise refused as it is): once more, truncated.
                    tracing::warn!(error = %e, "Kafka refused a dead letter as it is; sending it truncated");
                    self.metrics
                        .dead_letter_failures
                        .get_or_create(&crate::metrics::OutcomeLabels { outcome: "truncated" })
                        .inc();
                    letters = std::borrow::Cow::Owned(letters.iter().map(DeadLetter::truncated).collect());
                }
                Err(e) if refused_for_content(&e) || started.elapsed() >= self.dead_letter_timeout => {
                    for l in letters.iter() {
                        tracing::error!(error = %e, topic = %l.topic, partition = l.partition, offset = l.offset, reason = %l.reason, request_id = l.request_id.as_deref(), "a dead letter cannot be written; dropping it so that consumption goes on");
                    }
                    self.metrics
                        .dead_letter_failures
                        .get_or_create(&crate::metrics::OutcomeLabels { outcome: "dropped" })
                        .inc_by(letters.len() as u64);
                    return Ok(());
                }
                Err(e) => {
                    let delay = self.retry.next_delay();
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "dead-letter write failed; retrying");
                    if stop.is_cancelled() {
                        let deadline = *give_up_at.get_or_insert_with(|| Instant::now() + self.shutdown_grace);
                        if Instant::now() + delay > deadline {
                            return Err(PipelineError::DeadLetter(e.to_string()));
                        }
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    fn commit(&self, b: &Batch) {
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, offset) in b.commit_offsets() {
            if let Err(e) = tpl.add_partition_offset(&topic, partition, Offset::Offset(offset)) {
                tracing::warn!(error = %e, "cannot build the offset list");
            }
        }
        let consumer = Arc::clone(&self.consumer);
        let result = tokio::task::block_in_place(|| consumer.commit(&tpl, CommitMode::Sync));
        if let Err(e) = result {
            // The batch is stored; a failed commit (typically a rebalance) only means its records
            // are delivered again, and storage deduplicates them.
            self.metrics.commit_failures.inc();
            tracing::warn!(error = %e, "offset commit failed; the batch will be redelivered and deduplicated");
        }
    }
}

/// Sleeps until `deadline`, or forever without one (a `select!` arm that never fires).
pub(crate) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// The `cairn-request-id` header of a record (see `cairn_common::trace`).
fn request_id_of<M: Message>(m: &M) -> Option<String> {
    header_of(m, cairn_common::trace::KAFKA_HEADER).and_then(|v| std::str::from_utf8(v).ok()).map(str::to_string)
}

/// The value of a record's header `key`.
fn header_of<'m, M: Message>(m: &'m M, key: &str) -> Option<&'m [u8]> {
    let headers = m.headers()?;
    headers.iter().find(|h| h.key == key)?.value
}
