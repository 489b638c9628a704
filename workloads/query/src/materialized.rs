//! Which event properties are columns of their own (see
//! `cairn_common::clickhouse::property_columns`): read from `system.columns` at start and every
//! 30 seconds, and used by every expression that reads an event property
//! ([`crate::filters::prop_nullable_of`]) in place of parsing the properties' JSON.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, RwLock};

static COLUMNS: LazyLock<RwLock<Arc<BTreeMap<String, String>>>> = LazyLock::new(Default::default);

/// The column that holds the event property `key`, when there is one.
pub fn column_of(key: &str) -> Option<String> {
    let map = COLUMNS.read().map(|m| Arc::clone(&m)).ok()?;
    map.get(key).cloned()
}

/// Every property column (key → column).
pub fn all() -> Arc<BTreeMap<String, String>> {
    COLUMNS.read().map(|m| Arc::clone(&m)).unwrap_or_default()
}

pub fn set(columns: BTreeMap<String, String>) {
    if let Ok(mut m) = COLUMNS.write() {
        *m = Arc::new(columns);
    }
}

/// Reads the property columns from ClickHouse; on an error the ones known stay in use (a column
/// is never dropped while the service runs, so a stale list is still right).
pub async fn refresh(ch: &clickhouse::Client) -> Result<usize, clickhouse::error::Error> {
    let columns = cairn_common::clickhouse::property_columns(ch).await?;
    let n = columns.len();
    set(columns);
    Ok(n)
}
