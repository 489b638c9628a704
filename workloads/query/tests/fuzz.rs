//! Property-based fuzzing of the query service's request parsing (`make fuzz` runs it longer:
//! `PROPTEST_CASES`): analysis bodies, property filters (and the SQL they become), formulas,
//! dates and timezones, cursors, gateway paths. Only errors that name a field (400) or values
//! come back; never a panic, never request text inside the SQL.

use cairn_common::http::parse_json;
use cairn_query::explorer::{decode_cursor, filters_param};
use cairn_query::filters::push_all;
use cairn_query::formula::parse;
use cairn_query::funnels::FunnelsRequest;
use cairn_query::gateway::forwardable;
use cairn_query::retention::RetentionRequest;
use cairn_query::sql::Sql;
use cairn_query::timerange::resolve;
use cairn_query::trends::TrendsRequest;
use jiff::Timestamp;
use proptest::prelude::*;

fn jsonish() -> impl Strategy<Value = String> {
    prop_oneof![
        "[\\[\\]{}\":,0-9a-z_$.eE+\\-\\\\ ]{0,200}",
        (
            "[a-z$_]{0,10}",
            prop_oneof![
                Just("exact"),
                Just("is_not"),
                Just("gt"),
                Just("lt"),
                Just("icontains"),
                Just("regex"),
                Just("is_set"),
                Just("bogus")
            ],
            prop_oneof![
                Just(serde_json::json!(1)),
                Just(serde_json::json!("x' OR 1=1 --")),
                Just(serde_json::json!([1, "a"])),
                Just(serde_json::json!(null)),
                Just(serde_json::json!({"k": 1}))
            ],
        )
            .prop_map(|(k, op, v)| serde_json::json!([{"key": k, "operator": op, "value": v}]).to_string()),
        (prop::collection::vec("[a-z$]{0,8}", 0..12), "[-0-9a-zA-Z:/ ]{0,24}", "[A-Za-z/_+-]{0,20}", 0i64..1000)
            .prop_map(|(events, from, tz, n)| {
                let steps: Vec<_> = events.iter().map(|e| serde_json::json!({"event": e})).collect();
                serde_json::json!({"series": steps, "steps": steps, "date_from": from, "timezone": tz, "periods": n,
                    "target_event": {"event": "a"}, "formula": "A+B*2/(C-1)", "interval": "day"})
                .to_string()
            }),
    ]
}

fn config() -> ProptestConfig {
    ProptestConfig { failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn analysis_bodies_parse_or_name_the_field(text in jsonish()) {
        for result in [
            parse_json::<TrendsRequest>(text.as_bytes()).err(),
            parse_json::<FunnelsRequest>(text.as_bytes()).err(),
            parse_json::<RetentionRequest>(text.as_bytes()).err(),
        ].into_iter().flatten() {
            prop_assert_eq!(result.status.as_u16(), 400);
            prop_assert!(result.field.is_some());
        }
    }

    #[test]
    fn filters_become_bound_parameters_or_a_400(text in jsonish()) {
        match filters_param(Some(&text)) {
            Ok(filters) => {
                let mut sql = Sql::new();
                if push_all(&mut sql, &filters, "properties", 30).is_ok() {
                    // Request values are parameters: none of the request's text is in the SQL.
                    for f in &filters {
                        if f.key.len() > 3 {
                            prop_assert!(!sql.text().contains(&f.key), "{}", sql.text());
                        }
                    }
                }
            }
            Err(e) => prop_assert_eq!(e.status.as_u16(), 400),
        }
    }

    #[test]
    fn formulas_dates_cursors_and_paths(
        formula in "[A-Z0-9+*/(). -]{0,40}",
        series in 0usize..12,
        from in "[-0-9a-zA-Z:+. ]{0,30}",
        to in "[-0-9a-zA-Z:+. ]{0,30}",
        tz in "[A-Za-z/_+0-9-]{0,24}",
        cursor in "[A-Za-z0-9_=:-]{0,80}",
        path in "/api/[a-zA-Z0-9%./\\\\]{0,40}",
        values in prop::collection::vec(any::<f64>(), 0..12),
    ) {
        if let Ok(expr) = parse(&formula, series) {
            let _ = expr.eval(&values);
        }
        if let Err(e) = resolve(Some(&from), Some(&to), Some(&tz), "-7d", 732, Timestamp::now()) {
            prop_assert_eq!(e.status.as_u16(), 400);
        }
        if let Err(e) = decode_cursor(&cursor) {
            prop_assert_eq!(e.status.as_u16(), 400);
        }
        if forwardable(&path) {
            let lower = path.to_ascii_lowercase();
            prop_assert!(!lower.contains("/../") && !lower.contains("%2e%2e") && !lower.contains("%2f"), "{}", path);
        }
    }
}
