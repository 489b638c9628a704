//! The cairn-auth binary: `cairn-auth` serves; `cairn-auth migrate` applies the PostgreSQL
//! migrations and exits.

use cairn_auth::config::AuthConfig;
use cairn_common::telemetry::init_or_exit;

#[tokio::main]
async fn main() {
    let telemetry = init_or_exit("cairn-auth");
    let command = std::env::args().nth(1);
    let result = match (command.as_deref(), AuthConfig::from_env()) {
        (_, Err(e)) => Err(e.into()),
        (None | Some("serve"), Ok(cfg)) => cairn_auth::run(cfg).await,
        (Some("migrate"), Ok(cfg)) => cairn_auth::migrate_only(&cfg).await,
        (Some(other), Ok(_)) => {
            eprintln!("unknown command {other:?}\nusage: cairn-auth [serve|migrate]");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        tracing::error!(error = %e, "auth failed");
        telemetry.shutdown();
        std::process::exit(1);
    }
    telemetry.shutdown();
}
