//! Property filters and property expressions over the events' JSON `properties`, or over their
//! persons' properties (`"type": "person"`: the `person_properties` a statement joins in, see
//! [`crate::persons::join_person_properties`]).
//!
//! A property's value is compared as text: a string as itself, any other JSON value as its JSON
//! text (`42`, `true`). Numeric comparisons read the value as a number (a number, or a string
//! holding one); events where it is missing or not numeric do not match.

use cairn_common::http::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sql::Sql;

/// How a filter compares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    #[default]
    #[serde(alias = "equals", alias = "eq")]
    Exact,
    #[serde(alias = "not_equals", alias = "neq")]
    IsNot,
    #[serde(alias = "icontains")]
    Contains,
    #[serde(alias = "not_icontains")]
    NotContains,
    Gt,
    Gte,
    Lt,
    Lte,
    IsSet,
    IsNotSet,
}

/// Whose property: the event's, or its person's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PropertyKind {
    #[default]
    Event,
    Person,
    /// `{"type": "cohort", "key": "id", "value": <cohort id>}`: the events of the cohort's persons
    /// (`exact`) or of everyone else (`is_not`).
    Cohort,
    /// A property of the event's session (`$session_duration`, `$entry_pathname`, … see
    /// [`crate::sessions::SESSION_KEYS`]); trends only.
    Session,
}

impl PropertyKind {
    /// The JSON column the property is read from.
    pub fn column(self) -> &'static str {
        match self {
            PropertyKind::Event | PropertyKind::Cohort => "properties",
            PropertyKind::Person => crate::persons::PERSON_PROPERTIES,
            PropertyKind::Session => crate::sessions::SESSION_PROPERTIES,
        }
    }
}

/// `{"key": "browser", "operator": "exact", "value": "Chrome"}`; `value` may be a list for
/// `exact` and `is_not` (any of); `"type": "person"` compares the person's property.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropertyFilter {
    pub key: String,
    #[serde(default)]
    pub operator: Operator,
    #[serde(default)]
    pub value: Option<Value>,
    #[serde(default, rename = "type")]
    pub kind: PropertyKind,
    /// A cohort filter's cohort, loaded before the statement is built (`cohorts::resolve`).
    #[serde(skip)]
    pub cohort: Option<std::sync::Arc<crate::cohorts::CohortSpec>>,
}

/// Whether any of `filters` reads a person's properties.
pub fn uses_person(filters: &[PropertyFilter]) -> bool {
    filters.iter().any(|f| f.kind == PropertyKind::Person)
}

/// Whether any of `filters` reads the session's properties.
pub fn uses_session(filters: &[PropertyFilter]) -> bool {
    filters.iter().any(|f| f.kind == PropertyKind::Session)
}

/// Refuses a session property where the statement has no sessions joined (every analysis but
/// trends), or a key that is no session property.
pub fn check_session(sql: &Sql, field: &str, key_field: &str, key: &str) -> Result<(), ApiError> {
    if !sql.sessions_joined() {
        return Err(ApiError::invalid(field, "session properties filter and break down trends only"));
    }
    if !crate::sessions::SESSION_KEYS.contains(&key) {
        return Err(ApiError::invalid(
            key_field,
            format!("a session property is one of {}", crate::sessions::SESSION_KEYS.join(", ")),
        ));
    }
    Ok(())
}

/// Longest property key or compared value accepted.
const MAX_TEXT: usize = 1024;

fn check_key(field: &str, key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > 400 {
        return Err(ApiError::invalid(field, "a property key must have 1 to 400 characters"));
    }
    Ok(())
}

/// The property's value as text, NULL when missing or JSON null (see the module's doc). One
/// parse of the JSON per row.
pub fn prop_nullable(sql: &mut Sql, key: &str) -> String {
    prop_nullable_of(sql, PropertyKind::Event, key)
}

/// [`prop_nullable`] of the event's or the person's property.
pub fn prop_nullable_of(sql: &mut Sql, kind: PropertyKind, key: &str) -> String {
    let column = if kind == PropertyKind::Event { crate::materialized::column_of(key) } else { None };
    prop_nullable_with(sql, kind, key, column)
}

/// [`prop_nullable_of`] given the property's column, if it has one: an event property that is a
/// column of its own holds exactly the JSON expression's value.
fn prop_nullable_with(sql: &mut Sql, kind: PropertyKind, key: &str, column: Option<String>) -> String {
    if let Some(column) = column {
        return column;
    }
    if kind == PropertyKind::Event {
        sql.note_parsed(key);
    }
    let k = sql.str(key);
    if kind == PropertyKind::Session {
        // A map joined in (no JSON to parse); an event without a session has it empty.
        let m = kind.column();
        return format!("if(mapContains({m}, {k}), {m}[{k}], NULL)");
    }
    format!("JSONExtract({}, {k}, 'Nullable(String)')", kind.column())
}

/// The property's value as text, empty when missing.
fn prop_text_of(sql: &mut Sql, kind: PropertyKind, key: &str) -> String {
    let v = prop_nullable_of(sql, kind, key);
    format!("ifNull({v}, '')")
}

/// The event property's value as a number, NULL when missing or not numeric.
pub fn prop_number(sql: &mut Sql, key: &str) -> String {
    prop_number_of(sql, PropertyKind::Event, key)
}

fn prop_number_of(sql: &mut Sql, kind: PropertyKind, key: &str) -> String {
    let text = prop_text_of(sql, kind, key);
    format!("toFloat64OrNull({text})")
}

fn scalar_text(field: &str, v: &Value) -> Result<String, ApiError> {
    let s = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return Err(ApiError::invalid(field, "expected a string, number or boolean")),
    };
    if s.len() > MAX_TEXT {
        return Err(ApiError::invalid(field, format!("longer than {MAX_TEXT} characters")));
    }
    Ok(s)
}

impl PropertyFilter {
    /// The filter as a boolean SQL expression.
    pub fn condition(&self, sql: &mut Sql, field: &str) -> Result<String, ApiError> {
        check_key(&format!("{field}.key"), &self.key)?;
        let value_field = format!("{field}.value");
        let need_value = || {
            self.value
                .as_ref()
                .filter(|v| !v.is_null())
                .ok_or_else(|| ApiError::invalid(&value_field, "this operator needs a value"))
        };
        if self.kind == PropertyKind::Session {
            check_session(sql, &format!("{field}.type"), &format!("{field}.key"), &self.key)?;
        }
        if self.kind == PropertyKind::Cohort {
            let spec = self
                .cohort
                .as_ref()
                .ok_or_else(|| ApiError::invalid(&value_field, "no such cohort in this project"))?;
            let ids = crate::cohorts::ids_sql(sql, spec)?;
            return match self.operator {
                Operator::Exact => Ok(format!("cityHash64(distinct_id) IN {ids}")),
                Operator::IsNot => Ok(format!("cityHash64(distinct_id) NOT IN {ids}")),
                _ => Err(ApiError::invalid(format!("{field}.operator"), "a cohort filter is exact (in it) or is_not")),
            };
        }
        Ok(match self.operator {
            Operator::Exact | Operator::IsNot => {
                let values: Vec<String> = match need_value()? {
                    Value::Array(items) if items.is_empty() => {
                        return Err(ApiError::invalid(&value_field, "the list is empty"))
                    }
                    Value::Array(items) if items.len() > 100 => {
                        return Err(ApiError::invalid(&value_field, "at most 100 values"))
                    }
                    Value::Array(items) => {
                        items.iter().map(|v| scalar_text(&value_field, v)).collect::<Result<_, _>>()?
                    }
                    v => vec![scalar_text(&value_field, v)?],
                };
                let text = prop_nullable_of(sql, self.kind, &self.key);
                let list = sql.strs(values);
                // A missing property (NULL IN … is NULL) equals nothing and differs from all.
                // `IN` rather than `has(list, …)`: over a LowCardinality column it is decided
                // once per distinct value, not per row (on 3.6 million rows: +2 % over the
                // unfiltered statement against +100 % with `has`).
                if self.operator == Operator::Exact {
                    format!("ifNull({text} IN {list}, 0)")
                } else {
                    format!("ifNull({text} NOT IN {list}, 1)")
                }
            }
            Operator::Contains | Operator::NotContains => {
                let needle = scalar_text(&value_field, need_value()?)?;
                let text = prop_text_of(sql, self.kind, &self.key);
                let p = sql.str(needle);
                let op = if self.operator == Operator::Contains { ">" } else { "=" };
                format!("positionCaseInsensitiveUTF8({text}, {p}) {op} 0")
            }
            Operator::Gt | Operator::Gte | Operator::Lt | Operator::Lte => {
                let n = match need_value()? {
                    Value::Number(n) => n.as_f64(),
                    Value::String(s) => s.trim().parse::<f64>().ok(),
                    _ => None,
                }
                .filter(|n| n.is_finite())
                .ok_or_else(|| ApiError::invalid(&value_field, "expected a number"))?;
                let num = prop_number_of(sql, self.kind, &self.key);
                let p = sql.f64(n);
                let op = match self.operator {
                    Operator::Gt => ">",
                    Operator::Gte => ">=",
                    Operator::Lt => "<",
                    _ => "<=",
                };
                format!("ifNull({num} {op} {p}, 0)")
            }
            Operator::IsSet | Operator::IsNotSet => {
                let v = prop_nullable_of(sql, self.kind, &self.key);
                let set = format!("isNotNull({v})");
                if self.operator == Operator::IsSet {
                    set
                } else {
                    format!("NOT {set}")
                }
            }
        })
    }
}

/// Appends ` AND (<every filter>)`, naming each `field[i]` in errors, refusing more than `max`.
pub fn push_all(sql: &mut Sql, filters: &[PropertyFilter], field: &str, max: usize) -> Result<(), ApiError> {
    let all = all_conditions(sql, filters, field, max)?;
    sql.push(" AND (").push(&all).push(")");
    Ok(())
}

/// All of `filters` as one boolean expression (`1` when there are none).
pub fn all_conditions(sql: &mut Sql, filters: &[PropertyFilter], field: &str, max: usize) -> Result<String, ApiError> {
    if filters.len() > max {
        return Err(ApiError::invalid(field, format!("at most {max} filters")));
    }
    let mut parts = Vec::new();
    for (i, f) in filters.iter().enumerate() {
        parts.push(format!("({})", f.condition(sql, &format!("{field}[{i}]"))?));
    }
    Ok(if parts.is_empty() { "1".to_string() } else { parts.join(" AND ") })
}

/// A series' or step's event condition: `event = {p}` or `1` for any event.
pub fn event_condition(sql: &mut Sql, event: Option<&str>, field: &str) -> Result<String, ApiError> {
    match event {
        None => Ok("1".to_string()),
        Some(e) if e.is_empty() || e.len() > 400 => {
            Err(ApiError::invalid(field, "an event name must have 1 to 400 characters"))
        }
        Some(e) => {
            let p = sql.str(e);
            Ok(format!("event = {p}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(v: Value) -> PropertyFilter {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn every_operator_binds_its_key_and_value() {
        for f in [
            json!({"key": "k'", "value": "v'"}),
            json!({"key": "k", "operator": "is_not", "value": ["a", 1, true]}),
            json!({"key": "k", "operator": "icontains", "value": "%_'"}),
            json!({"key": "k", "operator": "gt", "value": "12.5"}),
            json!({"key": "k", "operator": "is_not_set"}),
        ] {
            let mut sql = Sql::new();
            let cond = filter(f.clone()).condition(&mut sql, "filters[0]").unwrap();
            assert!(!cond.contains("k'") && !cond.contains("v'") && !cond.contains("%_"), "{cond}");
            assert!(!sql.params().is_empty(), "{f}");
        }
    }

    #[test]
    fn an_event_property_with_a_column_reads_the_column() {
        let column = cairn_common::clickhouse::column_name("$browser");
        let mut sql = Sql::new();
        assert_eq!(prop_nullable_with(&mut sql, PropertyKind::Event, "$browser", Some(column.clone())), column);
        assert!(sql.params().is_empty());
        let json = prop_nullable_with(&mut sql, PropertyKind::Event, "$browser", None);
        assert_eq!(json, "JSONExtract(properties, {p0:String}, 'Nullable(String)')");
        // The column list holds event properties only: a person's property is read from its JSON.
        assert!(
            prop_nullable_of(&mut sql, PropertyKind::Person, "$browser").starts_with("JSONExtract(person_properties")
        );
    }

    #[test]
    fn refuses_missing_or_wrong_values_naming_the_field() {
        let mut sql = Sql::new();
        let e = filter(json!({"key": "k", "operator": "gt", "value": "many"}))
            .condition(&mut sql, "filters[3]")
            .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("filters[3].value"));
        let e = filter(json!({"key": "k", "operator": "exact"})).condition(&mut sql, "filters[0]").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("filters[0].value"));
        let e = filter(json!({"key": "", "value": 1})).condition(&mut sql, "series[1].filters[0]").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("series[1].filters[0].key"));
        assert!(serde_json::from_value::<PropertyFilter>(json!({"key": "k", "operator": "regex"})).is_err());
    }

    #[test]
    fn session_properties_read_the_joined_map_where_sessions_are_joined_only() {
        let f = filter(json!({"type": "session", "key": "$session_duration", "operator": "gt", "value": 60}));
        let mut sql = Sql::new();
        let e = f.condition(&mut sql, "filters[0]").unwrap_err();
        assert_eq!(e.field.as_deref(), Some("filters[0].type"));
        sql.join_sessions();
        let cond = f.condition(&mut sql, "filters[0]").unwrap();
        assert!(cond.contains("if(mapContains(session_properties, {p"), "{cond}");
        assert!(sql.parsed().next().is_none(), "a session property is no event property parsed");
        let other = filter(json!({"type": "session", "key": "$browser", "value": "x"}));
        assert_eq!(other.condition(&mut sql, "filters[1]").unwrap_err().field.as_deref(), Some("filters[1].key"));
    }

    #[test]
    fn list_filters_are_in_sets_that_a_missing_property_never_matches() {
        let mut sql = Sql::new();
        let exact = filter(json!({"key": "k", "value": ["a", "b"]})).condition(&mut sql, "f").unwrap();
        assert_eq!(exact, "ifNull(JSONExtract(properties, {p0:String}, 'Nullable(String)') IN {p1:Array(String)}, 0)");
        let not = filter(json!({"key": "k", "operator": "is_not", "value": "a"})).condition(&mut sql, "f").unwrap();
        assert!(not.starts_with("ifNull(") && not.ends_with(" NOT IN {p3:Array(String)}, 1)"), "{not}");
        assert_eq!(sql.parsed().collect::<Vec<_>>(), ["k"]);
    }
}
