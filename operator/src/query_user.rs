//! The query service's own ClickHouse account: it may read the platform's database and nothing
//! else (no writes, no DDL, no other database, no access management).
//!
//! The query service answers questions from the public API; its statements are built from bound
//! parameters and run with `readonly = 2` and memory and row limits, but a bug there must still
//! not be able to write, drop or read another platform's data. So the operator, with the
//! platform's own ClickHouse account (managed: `cairn`, which has access management; external: the
//! credentials Secret's account, which needs `ACCESS MANAGEMENT`), keeps an account per platform:
//!
//! ```sql
//! CREATE USER IF NOT EXISTS `cairn_query.<namespace>.<name>` IDENTIFIED WITH sha256_hash BY '…' SALT '…' SETTINGS readonly = 2
//! ALTER USER `cairn_query.<namespace>.<name>` IDENTIFIED WITH sha256_hash BY '…' SALT '…' SETTINGS readonly = 2
//! GRANT SELECT ON `<database>`.* TO `cairn_query.<namespace>.<name>`
//! ```
//!
//! The password is the generated credentials' `clickhouse-query-password`; only its salted SHA-256
//! reaches ClickHouse (no password in ClickHouse's query log). `ALTER USER` on every reconcile makes
//! a rotated password take effect. When the account cannot be made (the platform's account lacks
//! the right), query keeps the platform's account and the status says so.

use cairn_common::clickhouse::server_client;
use cairn_common::config::ClickHouseConfig;
use sha2::{Digest, Sha256};

use crate::crd::AnalyticsPlatform;

/// The key of the generated credentials that holds the query account's password.
pub const PASSWORD_KEY: &str = "clickhouse-query-password";

/// The query account of a platform: `cairn_query.<namespace>.<name>` (both DNS labels or
/// subdomains, so the name needs no escaping beyond backticks and never contains `:`, which would
/// break HTTP Basic authentication).
pub fn user_name(ap: &AnalyticsPlatform) -> String {
    format!(
        "cairn_query.{}.{}",
        ap.metadata.namespace.as_deref().unwrap_or_default(),
        ap.metadata.name.as_deref().unwrap_or_default()
    )
}

fn quote(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// ClickHouse's `sha256_hash` with a salt: SHA-256 of the password followed by the salt, in hex.
/// The salt is derived from the account's name, so that the statement is the same on every
/// reconcile while the password is unchanged.
fn salted_hash(user: &str, password: &str) -> (String, String) {
    let salt = hex::encode(&Sha256::digest(format!("cairn query account salt\0{user}").as_bytes())[..16]);
    let hash = hex::encode(Sha256::digest(format!("{password}{salt}").as_bytes()));
    (hash, salt)
}

/// The statements that make `user` a read-only account on `database` with `password`; on a
/// cluster (`on_cluster`: ` ON CLUSTER '<name>'`, or empty) on every node, since a Distributed
/// read runs on each shard as the same user.
pub fn statements(user: &str, password: &str, database: &str, on_cluster: &str) -> [String; 3] {
    let (hash, salt) = salted_hash(user, password);
    let identified = format!("IDENTIFIED WITH sha256_hash BY '{hash}' SALT '{salt}' SETTINGS readonly = 2");
    [
        format!("CREATE USER IF NOT EXISTS {}{on_cluster} {identified}", quote(user)),
        format!("ALTER USER {}{on_cluster} {identified}", quote(user)),
        format!("GRANT{on_cluster} SELECT ON {}.* TO {}", quote(database), quote(user)),
    ]
}

fn on_cluster(cfg: &ClickHouseConfig) -> String {
    cfg.topology().on_cluster()
}

/// Creates or updates the account; `cfg` is the platform's own (privileged) account.
pub async fn ensure(cfg: &ClickHouseConfig, user: &str, password: &str) -> Result<(), clickhouse::error::Error> {
    let server = server_client(cfg);
    for sql in statements(user, password, &cfg.database, &on_cluster(cfg)) {
        server.query(&sql).execute().await?;
    }
    Ok(())
}

/// Drops the account (the platform is being deleted).
pub async fn drop(cfg: &ClickHouseConfig, user: &str) -> Result<(), clickhouse::error::Error> {
    server_client(cfg).query(&format!("DROP USER IF EXISTS {}{}", quote(user), on_cluster(cfg))).execute().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_never_reaches_clickhouse_and_the_statements_are_stable() {
        let a = statements("cairn_query.ns.demo", "s3cret-password", "cairn", "");
        assert!(a.iter().all(|s| !s.contains("s3cret-password")), "{a:?}");
        assert_eq!(a, statements("cairn_query.ns.demo", "s3cret-password", "cairn", ""), "same input, same statements");
        assert_ne!(
            a[1],
            statements("cairn_query.ns.demo", "rotated", "cairn", "")[1],
            "a new password changes the hash"
        );
        assert_eq!(a[2], "GRANT SELECT ON `cairn`.* TO `cairn_query.ns.demo`");
        // ClickHouse checks sha256(password + salt) against the hash.
        let (hash, salt) = salted_hash("cairn_query.ns.demo", "s3cret-password");
        assert_eq!(hash, hex::encode(Sha256::digest(format!("s3cret-password{salt}").as_bytes())));
        assert!(a[0].contains(&format!("BY '{hash}' SALT '{salt}'")));
    }

    #[test]
    fn names_are_quoted() {
        let s = statements("odd`user", "p", "db`x", "");
        assert_eq!(s[2], "GRANT SELECT ON `db``x`.* TO `odd``user`");
    }

    #[test]
    fn on_a_cluster_the_account_is_made_on_every_node() {
        let s = statements("u", "p", "cairn", " ON CLUSTER 'c'");
        assert!(
            s[0].starts_with("CREATE USER IF NOT EXISTS `u` ON CLUSTER 'c' IDENTIFIED WITH sha256_hash"),
            "{}",
            s[0]
        );
        assert!(s[1].starts_with("ALTER USER `u` ON CLUSTER 'c' IDENTIFIED"), "{}", s[1]);
        assert_eq!(s[2], "GRANT ON CLUSTER 'c' SELECT ON `cairn`.* TO `u`");
    }
}
