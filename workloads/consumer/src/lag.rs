//! Consumer lag: for every assigned partition, the high watermark minus the consumer's position,
//! published as `cairn_consumer_lag` (what the consumer's autoscaler scales on).

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::Offset;
use tokio_util::sync::CancellationToken;

use crate::metrics::{ConsumerMetrics, PartitionLabels};

pub fn spawn_lag_reporter<C: ConsumerContext + 'static>(
    consumer: Arc<StreamConsumer<C>>,
    metrics: Arc<ConsumerMetrics>,
    every: Duration,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let c = Arc::clone(&consumer);
            let lags = tokio::task::spawn_blocking(move || measure(&c)).await.unwrap_or_default();
            metrics.lag.clear();
            let mut total = 0i64;
            for (topic, partition, lag) in lags {
                total += lag;
                metrics.lag.get_or_create(&PartitionLabels { topic, partition }).set(lag);
            }
            metrics.lag_total.set(total);
        }
    });
}

fn measure<C: ConsumerContext + 'static>(consumer: &StreamConsumer<C>) -> Vec<(String, i32, i64)> {
    let Ok(position) = consumer.position() else { return Vec::new() };
    let mut out = Vec::new();
    for el in position.elements() {
        let Ok((_, high)) = consumer.fetch_watermarks(el.topic(), el.partition(), Duration::from_secs(2)) else {
            continue;
        };
        let lag = match el.offset() {
            Offset::Offset(pos) => (high - pos).max(0),
            // Nothing consumed yet in this session: fall back to the committed offset.
            _ => match consumer.committed_offsets(position.clone(), Duration::from_secs(2)) {
                Ok(c) => match c.find_partition(el.topic(), el.partition()).map(|p| p.offset()) {
                    Some(Offset::Offset(committed)) => (high - committed).max(0),
                    _ => high,
                },
                Err(_) => continue,
            },
        };
        out.push((el.topic().to_string(), el.partition(), lag));
    }
    out
}
