//! The cairn-consumer binary: configuration from the environment, then [`cairn_consumer::run`].

use cairn_common::telemetry::init_or_exit;
use cairn_consumer::config::ConsumerConfig;

#[tokio::main]
async fn main() {
    let telemetry = init_or_exit("cairn-consumer");
    let result = match ConsumerConfig::from_env() {
        Ok(cfg) => cairn_consumer::run(cfg).await,
        Err(e) => Err(e.into()),
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "consumer failed");
        telemetry.shutdown();
        std::process::exit(1);
    }
    telemetry.shutdown();
}
