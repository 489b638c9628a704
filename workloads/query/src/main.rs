//! The cairn-query binary: configuration from the environment, then [`cairn_query::run`].

use cairn_common::telemetry::init_or_exit;
use cairn_query::config::QueryConfig;

#[tokio::main]
async fn main() {
    let telemetry = init_or_exit("cairn-query");
    let result = match QueryConfig::from_env() {
        Ok(cfg) => cairn_query::run(cfg).await,
        Err(e) => Err(e.into()),
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "query failed");
        telemetry.shutdown();
        std::process::exit(1);
    }
    telemetry.shutdown();
}
