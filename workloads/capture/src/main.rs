//! The cairn-capture binary: configuration from the environment, then [`cairn_capture::run`].

use cairn_capture::config::CaptureConfig;
use cairn_common::telemetry::init_or_exit;

#[tokio::main]
async fn main() {
    let telemetry = init_or_exit("cairn-capture");
    let result = match CaptureConfig::from_env() {
        Ok(cfg) => cairn_capture::run(cfg).await,
        Err(e) => Err(e.into()),
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "capture failed");
        telemetry.shutdown();
        std::process::exit(1);
    }
    telemetry.shutdown();
}
