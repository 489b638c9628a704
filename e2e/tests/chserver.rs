//! The contract of `stack/clickhouse/chserver.py`, the ClickHouse HTTP interface every test runs
//! on: the protocol features Cairn's services use, through the same Rust `clickhouse` crate, so a
//! change to the stand-in that would make tests pass where a real server behaves differently (or
//! the reverse) fails here first. Each feature: RowBinary inserts and typed reads, server-side
//! parameters, per-request settings, insert deduplication tokens, ClickHouse's error codes, and
//! accounts with their passwords and `readonly`. And one function Cairn computes on both sides:
//! `cityHash64` (a person's id, `cairn_persons::id_hash`).
//!
//! Not covered, because the stand-in does not speak it: ClickHouse's block compression of bodies
//! (`CAIRN_CLICKHOUSE_COMPRESSION=lz4`, the crate's `compress`/`decompress` parameters). It is
//! for real servers over a network; the default (`none`) is what every test and the local stack
//! use.

use cairn_common::clickhouse::{client, EventRow};
use cairn_e2e::{unique, TestClickHouse};
use clickhouse::Row;
use serde::Deserialize;
use time::OffsetDateTime;

async fn fresh_database(ch: &TestClickHouse) -> String {
    let database = unique("chserver");
    let c = client(&ch.config("default"));
    c.query(&format!("CREATE DATABASE {database}")).execute().await.unwrap();
    c.query(&format!(
        "CREATE TABLE {database}.events (uuid UUID, project_id UInt64, event String, distinct_id String, \
         properties String, timestamp DateTime64(3, 'UTC'), received_at DateTime64(3, 'UTC'), \
         ingested_at DateTime64(3, 'UTC') DEFAULT now64(3)) ENGINE = MergeTree ORDER BY (project_id, timestamp) \
         SETTINGS non_replicated_deduplication_window = 100"
    ))
    .execute()
    .await
    .unwrap();
    database
}

fn row(i: u64) -> EventRow {
    let t = OffsetDateTime::from_unix_timestamp(1_764_000_000 + i as i64).unwrap() + time::Duration::milliseconds(123);
    EventRow {
        uuid: uuid::Uuid::now_v7(),
        project_id: 1 + i % 2,
        event: format!("event {i} with 'quotes', \\ and ünïcode"),
        distinct_id: format!("user-{i}"),
        properties: format!(r#"{{"i":{i},"s":"tab\there"}}"#),
        timestamp: t,
        received_at: t,
    }
}

fn code(e: &clickhouse::error::Error) -> Option<u32> {
    let text = e.to_string();
    let rest = &text[text.find("Code: ")? + 6..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rowbinary_inserts_and_typed_reads_round_trip() {
    let ch = TestClickHouse::shared().unwrap();
    let database = fresh_database(&ch).await;
    let c = client(&ch.config(&database));
    // Several inserts, one large enough to span many HTTP chunks.
    for (batch, size) in [(0u64, 1), (1, 2_000), (2, 10)] {
        let rows: Vec<EventRow> = (batch * 10_000..batch * 10_000 + size).map(row).collect();
        let mut insert = c.insert::<EventRow>("events").await.unwrap();
        for r in &rows {
            insert.write(r).await.unwrap();
        }
        insert.end().await.unwrap();
        let back = c
            .query("SELECT ?fields FROM events WHERE distinct_id IN {ids:Array(String)} ORDER BY timestamp")
            .param("ids", rows.iter().map(|r| r.distinct_id.clone()).collect::<Vec<_>>())
            .fetch_all::<EventRow>()
            .await
            .unwrap();
        assert_eq!(back, rows, "every row back, byte for byte (strings, UUIDs, milliseconds)");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_are_bound_by_the_server_never_spliced() {
    let ch = TestClickHouse::shared().unwrap();
    let c = client(&ch.config("default"));
    #[derive(Row, Deserialize)]
    struct Echo {
        s: String,
        n: u64,
        list: Vec<String>,
    }
    let hostile = "x' OR 1=1 --\\'; DROP TABLE t; {p:String}";
    let echo = c
        .query("SELECT {s:String} AS s, {n:UInt64} AS n, {list:Array(String)} AS list")
        .param("s", hostile)
        .param("n", 18_446_744_073_709_551_615u64)
        .param("list", vec!["a'b", "c\\d", ""])
        .fetch_one::<Echo>()
        .await
        .unwrap();
    assert_eq!(echo.s, hostile);
    assert_eq!(echo.n, u64::MAX);
    assert_eq!(echo.list, ["a'b", "c\\d", ""]);
    // A parameter of the wrong type is refused, not coerced.
    let err = c.query("SELECT {n:UInt64}").param("n", "twelve").fetch_one::<u64>().await.unwrap_err();
    assert!(code(&err).is_some(), "a ClickHouse error with a code: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_apply_per_request_and_errors_carry_clickhouse_codes() {
    let ch = TestClickHouse::shared().unwrap();
    let database = fresh_database(&ch).await;
    let c = client(&ch.config(&database));
    let mut insert = c.insert::<EventRow>("events").await.unwrap();
    for i in 0..100 {
        insert.write(&row(i)).await.unwrap();
    }
    insert.end().await.unwrap();
    // Query's limits: max_rows_to_read with overflow mode throw → TOO_MANY_ROWS (158).
    let limited = c.clone().with_setting("max_rows_to_read", "10").with_setting("read_overflow_mode", "throw");
    let err = limited.query("SELECT count() FROM events WHERE event != ''").fetch_one::<u64>().await.unwrap_err();
    assert_eq!(code(&err), Some(158), "{err}");
    // readonly=2 (every query statement runs with it): reads pass, writes are refused (164).
    let readonly = c.clone().with_setting("readonly", "2");
    assert_eq!(readonly.query("SELECT count() FROM events").fetch_one::<u64>().await.unwrap(), 100);
    let err = readonly.query("INSERT INTO events (project_id) VALUES (9)").execute().await.unwrap_err();
    assert_eq!(code(&err), Some(164), "{err}");
    // The codes the services act on.
    let err = c.query("SELECT * FROM no_such_table").execute().await.unwrap_err();
    assert_eq!(code(&err), Some(60), "UNKNOWN_TABLE: {err}");
    let err = c.query("SELEKT 1").execute().await.unwrap_err();
    assert_eq!(code(&err), Some(62), "SYNTAX_ERROR: {err}");
    let err = c.query("SELECT throwIf(1, 'boom')").execute().await.unwrap_err();
    assert_eq!(code(&err), Some(395), "FUNCTION_THROW_IF_VALUE_IS_NON_ZERO: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_insert_with_the_same_token_is_stored_once() {
    let ch = TestClickHouse::shared().unwrap();
    let database = fresh_database(&ch).await;
    let c = client(&ch.config(&database));
    let rows: Vec<EventRow> = (0..50).map(row).collect();
    for token in ["batch-1", "batch-1", "batch-2"] {
        let c = c.clone().with_setting("insert_deduplication_token", token);
        let mut insert = c.insert::<EventRow>("events").await.unwrap();
        for r in &rows {
            insert.write(r).await.unwrap();
        }
        insert.end().await.unwrap();
    }
    // The consumer's redelivered batch is deduplicated; another token is another insert.
    assert_eq!(c.query("SELECT count() FROM events").fetch_one::<u64>().await.unwrap(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_are_checked_and_readonly_accounts_cannot_write() {
    use sha2::{Digest, Sha256};
    let ch = TestClickHouse::shared().unwrap();
    let database = fresh_database(&ch).await;
    let admin = client(&ch.config(&database));
    let user = unique("reader").to_ascii_lowercase().replace(|c: char| !c.is_ascii_alphanumeric(), "_");
    let (password, salt) = ("correct horse", "s4lt");
    let hash = hex::encode(Sha256::digest(format!("{password}{salt}")));
    admin
        .query(&format!(
            "CREATE USER IF NOT EXISTS {user} IDENTIFIED WITH sha256_hash BY '{hash}' SALT '{salt}' SETTINGS readonly = 1"
        ))
        .execute()
        .await
        .unwrap();
    admin.query(&format!("GRANT SELECT ON {database}.* TO {user}")).execute().await.unwrap();
    let as_user = |pw: &str| client(&ch.config(&database)).with_user(&user).with_password(pw);
    assert_eq!(as_user(password).query("SELECT count() FROM events").fetch_one::<u64>().await.unwrap(), 0);
    let err = as_user("wrong").query("SELECT 1").fetch_one::<u8>().await.unwrap_err();
    assert_eq!(code(&err), Some(516), "AUTHENTICATION_FAILED: {err}");
    let err = as_user(password).query("INSERT INTO events (project_id) VALUES (1)").execute().await.unwrap_err();
    assert_eq!(code(&err), Some(164), "READONLY: {err}");
    let err = as_user(password).query("SELECT count() FROM system.one, default.no_grant").execute().await.unwrap_err();
    assert!(matches!(code(&err), Some(497 | 60 | 81)), "no grant on another database: {err}");
    admin.query(&format!("DROP USER IF EXISTS {user}")).execute().await.unwrap();
}

/// `cairn_persons::id_hash` is ClickHouse's `cityHash64`, for every length the algorithm treats
/// differently (0–16, 17–32, 33–64, and the 64-byte blocks beyond), any bytes (UTF-8 included).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn person_id_hash_is_clickhouse_city_hash_64() {
    let ch = TestClickHouse::shared().unwrap();
    let c = client(&ch.config("default"));
    let alphabet: Vec<char> = "abcXYZ019-_.@ é✓\'\"".chars().collect();
    let ids: Vec<String> =
        (0..300usize).map(|len| (0..len).map(|i| alphabet[(i * 7 + len * 13) % alphabet.len()]).collect()).collect();
    #[derive(Row, Deserialize)]
    struct Hashed {
        s: String,
        h: u64,
    }
    let rows = c
        .query("SELECT s, cityHash64(s) AS h FROM (SELECT arrayJoin({ids:Array(String)}) AS s)")
        .param("ids", ids.clone())
        .fetch_all::<Hashed>()
        .await
        .unwrap();
    assert_eq!(rows.len(), ids.len());
    for r in rows {
        assert_eq!(cairn_persons::id_hash(&r.s), r.h, "cityHash64 of {} bytes", r.s.len());
    }
}
