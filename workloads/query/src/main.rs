//! The cairn-query binary: configuration from the environment, then [`cairn_query::run`].

use cairn_common::auth_client::AuthClientConfig;
use cairn_common::telemetry::init_tracing;
use cairn_query::config::QueryConfig;

#[tokio::main]
async fn main() {
    init_tracing("cairn-query");
    let config = QueryConfig::from_env().and_then(|q| AuthClientConfig::from_env().map(|a| (q, a)));
    let result = match config {
        Ok((q, a)) => cairn_query::run(q, a).await,
        Err(e) => Err(e.into()),
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "query failed");
        std::process::exit(1);
    }
}
