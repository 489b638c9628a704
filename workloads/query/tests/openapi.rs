//! Keeps `schemas/openapi/query.yaml` true to the service:
//!
//! - its operations are exactly [`QUERY_ROUTES`], each with a unique operationId, a success
//!   response (200, 201, 202 or 204) and, unless public (`security: []`), a 401, and every path
//!   parameter declared;
//! - every `$ref` resolves to a component;
//! - the request schemas name exactly the fields the serde types accept, the query parameters
//!   exactly those the handlers read, and the enums exactly the values serde accepts (aliases
//!   included) or answers;
//! - every example deserializes into its Rust type (response examples also serialize back
//!   unchanged) and fits its schema; response examples show every documented field and no other.
//!
//! Field and value lists come from serde itself: deserializing an unknown field or variant fails
//! with "unknown field `x`, expected one of `a`, `b`, …", which names everything accepted.

use std::collections::{BTreeMap, BTreeSet};

use cairn_query::cohorts::{Behaviour, Cohort, CohortInput, Cohorts};
use cairn_query::deletions::{PersonDeletion, PersonDeletions};
use cairn_query::event_changes::{parse_update, ChangeAccepted, StoredEvent};
use cairn_query::explorer::{EventsPage, EventsParams, NameCounts, PickerParams, SessionParams};
use cairn_query::filters::{Operator, PropertyFilter, PropertyKind};
use cairn_query::funnels::{ConversionWindow, FunnelOrder, FunnelStep, FunnelsRequest, FunnelsResponse, WindowUnit};
use cairn_query::insights::{
    parse_query, Dashboard, DashboardInput, DashboardPatch, Insight, InsightInput, InsightPatch, InsightQuery, List,
    Page, TileInput,
};
use cairn_query::persons_api::{PersonDetail, PersonsPage, PersonsParams};
use cairn_query::retention::{EventSpec, Period, RetentionRequest, RetentionResponse, RetentionType};
use cairn_query::routes::QUERY_ROUTES;
use cairn_query::timerange::{self, Interval};
use cairn_query::trends::{Breakdown, Math, Series, TrendsRequest, TrendsResponse};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_yaml::Value;

const DOCUMENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/openapi/query.yaml");
const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
/// What a path item may hold besides operations.
const PATH_ITEM_FIELDS: [&str; 4] = ["summary", "description", "parameters", "servers"];

fn document() -> Value {
    let text = std::fs::read_to_string(DOCUMENT).unwrap_or_else(|e| panic!("{DOCUMENT}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{DOCUMENT} is not YAML: {e}"))
}

fn key_text(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => serde_yaml::to_string(other).unwrap().trim().to_string(),
    }
}

struct Operation<'a> {
    method: String,
    path: String,
    op: &'a Value,
    item: &'a Value,
}

impl Operation<'_> {
    fn id(&self) -> String {
        self.op
            .get("operationId")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| format!("{} {}", self.method, self.path))
    }
}

fn operations(doc: &Value) -> Vec<Operation<'_>> {
    let paths = doc.get("paths").and_then(Value::as_mapping).expect("the document has paths");
    let mut out = Vec::new();
    for (path, item) in paths {
        let path = key_text(path);
        let item_map = item.as_mapping().unwrap_or_else(|| panic!("{path}: not a path item"));
        for (k, op) in item_map {
            let k = key_text(k);
            if METHODS.contains(&k.as_str()) {
                out.push(Operation { method: k, path: path.clone(), op, item });
            } else {
                assert!(
                    PATH_ITEM_FIELDS.contains(&k.as_str()) || k.starts_with("x-"),
                    "{path}: unexpected key {k:?} in the path item"
                );
            }
        }
    }
    out
}

/// The value at a local reference (`#/components/schemas/X`).
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix("#/")?;
    let mut v = doc;
    for token in pointer.split('/') {
        let token = token.replace("~1", "/").replace("~0", "~");
        v = match v {
            Value::Sequence(items) => items.get(token.parse::<usize>().ok()?)?,
            _ => v.get(token.as_str())?,
        };
    }
    Some(v)
}

/// Follows `$ref`s to the object itself.
fn deref<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    while let Some(r) = v.get("$ref").and_then(Value::as_str) {
        v = resolve(doc, r).unwrap_or_else(|| panic!("unresolved $ref {r}"));
    }
    v
}

fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    resolve(doc, &format!("#/components/schemas/{name}"))
        .unwrap_or_else(|| panic!("components.schemas.{name} is missing"))
}

/// Every parameter of an operation (the path item's and its own), dereferenced.
fn parameters<'a>(doc: &'a Value, o: &Operation<'a>) -> Vec<&'a Value> {
    let mut out = Vec::new();
    for list in [o.item.get("parameters"), o.op.get("parameters")].into_iter().flatten() {
        for p in list.as_sequence().expect("parameters is a list") {
            out.push(deref(doc, p));
        }
    }
    out
}

fn param_names(doc: &Value, o: &Operation, location: &str) -> BTreeSet<String> {
    parameters(doc, o)
        .into_iter()
        .filter(|p| p.get("in").and_then(Value::as_str) == Some(location))
        .map(|p| {
            p.get("name")
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{}: a parameter without a name", o.id()))
                .to_string()
        })
        .collect()
}

/// The properties a schema declares, through `$ref` and `allOf`.
fn property_names(doc: &Value, schema: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        out.extend(property_names(doc, resolve(doc, r).unwrap_or_else(|| panic!("unresolved $ref {r}"))));
    }
    if let Some(props) = schema.get("properties").and_then(Value::as_mapping) {
        out.extend(props.keys().map(key_text));
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_sequence) {
        for s in all {
            out.extend(property_names(doc, s));
        }
    }
    out
}

fn strings(v: Option<&Value>) -> BTreeSet<String> {
    v.and_then(Value::as_sequence).map(|items| items.iter().map(key_text).collect()).unwrap_or_default()
}

// ---- what serde accepts -------------------------------------------------------------------------

/// The backquoted names after "expected" in serde's unknown field/variant message.
fn expected_names(message: &str) -> BTreeSet<String> {
    message
        .split_once("expected")
        .map(|(_, rest)| rest.split('`').skip(1).step_by(2).map(String::from).collect())
        .unwrap_or_default()
}

/// The fields `T` accepts, given `probe` holding an unknown field `__probe__`.
fn fields_with<T: DeserializeOwned>(probe: &str) -> BTreeSet<String> {
    let probe: Value = serde_yaml::from_str(probe).unwrap();
    let name = std::any::type_name::<T>();
    match serde_yaml::from_value::<T>(probe) {
        Ok(_) => panic!("{name} accepts an unknown field: it no longer refuses unknown fields"),
        Err(e) => {
            let message = e.to_string();
            assert!(
                message.contains("unknown field `__probe__`"),
                "{name}: unexpected refusal of an unknown field: {message}"
            );
            expected_names(&message)
        }
    }
}

fn fields_of<T: DeserializeOwned>() -> BTreeSet<String> {
    fields_with::<T>("{__probe__: 1}")
}

/// Every value `T` accepts, aliases included.
fn accepted<T: DeserializeOwned>() -> BTreeSet<String> {
    let message = serde_yaml::from_value::<T>(Value::from("__probe__"))
        .map(|_| ())
        .expect_err("an unknown value is refused")
        .to_string();
    assert!(message.contains("unknown variant"), "{}: {message}", std::any::type_name::<T>());
    expected_names(&message)
}

/// The values `T` answers with: those accepted that serialize back as themselves.
fn answered<T: DeserializeOwned + Serialize>() -> BTreeSet<String> {
    accepted::<T>()
        .into_iter()
        .filter(|v| {
            let t: T = serde_yaml::from_value(Value::from(v.as_str())).unwrap();
            serde_yaml::to_value(&t).unwrap() == v.as_str()
        })
        .collect()
}

fn default_of<T: Default + Serialize>() -> Value {
    serde_yaml::to_value(T::default()).unwrap()
}

// ---- routes and operations ----------------------------------------------------------------------

#[test]
fn operations_are_exactly_the_query_routes() {
    let doc = document();
    let routes: BTreeSet<(String, String)> = QUERY_ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect();
    assert_eq!(routes.len(), QUERY_ROUTES.len(), "QUERY_ROUTES repeats a route");
    let documented: BTreeSet<(String, String)> =
        operations(&doc).iter().map(|o| (o.method.clone(), o.path.clone())).collect();
    let missing: Vec<_> = routes.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routes).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "query.yaml and QUERY_ROUTES differ.\n  not documented: {missing:?}\n  not served: {extra:?}"
    );
    assert!(
        doc.get("openapi").and_then(Value::as_str).is_some_and(|v| v.starts_with("3.1")),
        "an OpenAPI 3.1 document"
    );
}

#[test]
fn every_operation_has_a_unique_id_a_success_and_a_401() {
    let doc = document();
    let mut seen = BTreeMap::new();
    for o in operations(&doc) {
        let at = format!("{} {}", o.method, o.path);
        let id = o.op.get("operationId").and_then(Value::as_str).unwrap_or_else(|| panic!("{at}: no operationId"));
        assert!(!id.is_empty(), "{at}: empty operationId");
        if let Some(other) = seen.insert(id.to_string(), at.clone()) {
            panic!("operationId {id} is used by both {other} and {at}");
        }
        let codes: BTreeSet<String> =
            o.op.get("responses")
                .and_then(Value::as_mapping)
                .unwrap_or_else(|| panic!("{at}: no responses"))
                .keys()
                .map(key_text)
                .collect();
        assert!(
            ["200", "201", "202", "204"].iter().any(|c| codes.contains(*c)),
            "{at}: no 200, 201, 202 or 204 response ({codes:?})"
        );
        // Public operations (`security: []`, the API's own documentation) need no credential.
        let public = o.op.get("security").and_then(Value::as_sequence).is_some_and(|s| s.is_empty());
        assert!(public || codes.contains("401"), "{at}: no 401 response ({codes:?})");
        assert!(o.op.get("summary").and_then(Value::as_str).is_some(), "{at}: no summary");
    }
}

#[test]
fn every_path_parameter_is_declared() {
    let doc = document();
    for o in operations(&doc) {
        let in_template: BTreeSet<String> =
            o.path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}')).map(String::from).collect();
        assert_eq!(param_names(&doc, &o, "path"), in_template, "{}: path parameters", o.id());
        for p in parameters(&doc, &o) {
            if p.get("in").and_then(Value::as_str) == Some("path") {
                assert_eq!(p.get("required"), Some(&Value::Bool(true)), "{}: path parameters are required", o.id());
            }
        }
    }
}

#[test]
fn every_ref_resolves_to_a_component() {
    /// Every reference: `$ref` values and discriminator mappings.
    fn refs<'a>(v: &'a Value, at: &str, out: &mut Vec<(String, &'a Value)>) {
        match v {
            Value::Mapping(m) => {
                for (k, x) in m {
                    let k = key_text(k);
                    let here = format!("{at}/{k}");
                    if k == "$ref" {
                        out.push((here, x));
                    } else if k == "mapping" && at.ends_with("/discriminator") {
                        for (name, r) in x.as_mapping().into_iter().flatten() {
                            out.push((format!("{here}/{}", key_text(name)), r));
                        }
                    } else {
                        refs(x, &here, out);
                    }
                }
            }
            Value::Sequence(items) => {
                for (i, x) in items.iter().enumerate() {
                    refs(x, &format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
    }
    let doc = document();
    let mut all = Vec::new();
    refs(&doc, "#", &mut all);
    assert!(all.len() > 50, "only {} $refs found: is the walk broken?", all.len());
    let bad: Vec<String> = all
        .iter()
        .filter(|(_, r)| !r.as_str().is_some_and(|r| r.starts_with("#/components/") && resolve(&doc, r).is_some()))
        .map(|(at, r)| format!("{at}: {r:?}"))
        .collect();
    assert!(bad.is_empty(), "unresolved $refs:\n{}", bad.join("\n"));
}

// ---- request shapes -----------------------------------------------------------------------------

#[test]
fn request_schemas_name_exactly_the_fields_serde_accepts() {
    let doc = document();
    let cases: Vec<(&str, BTreeSet<String>)> = vec![
        ("TrendsRequest", fields_of::<TrendsRequest>()),
        ("Series", fields_of::<Series>()),
        ("Breakdown", fields_of::<Breakdown>()),
        ("PropertyFilter", fields_of::<PropertyFilter>()),
        ("CohortInput", fields_of::<CohortInput>()),
        ("Behaviour", fields_of::<Behaviour>()),
        ("FunnelsRequest", fields_of::<FunnelsRequest>()),
        ("FunnelStep", fields_of::<FunnelStep>()),
        ("ConversionWindow", fields_of::<ConversionWindow>()),
        ("RetentionRequest", fields_of::<RetentionRequest>()),
        ("SqlRequest", fields_of::<cairn_query::user_sql::SqlRequest>()),
        ("EventExportInput", fields_of::<cairn_query::event_exports::ExportInput>()),
        ("EventExportPatch", fields_of::<cairn_query::event_exports::ExportPatch>()),
        ("StickinessFields", fields_of::<cairn_query::stickiness::StickinessRequest>()),
        ("StickinessSeries", fields_of::<cairn_query::stickiness::StickinessSeries>()),
        ("LifecycleFields", fields_of::<cairn_query::lifecycle::LifecycleRequest>()),
        ("PathsFields", fields_of::<cairn_query::paths::PathsRequest>()),
        ("SessionsFields", fields_of::<cairn_query::sessions::SessionsRequest>()),
        ("EventSpec", fields_of::<EventSpec>()),
        ("InsightInput", fields_of::<InsightInput>()),
        ("InsightPatch", fields_of::<InsightPatch>()),
        ("TileInput", fields_of::<TileInput>()),
        ("DashboardInput", fields_of::<DashboardInput>()),
        ("DashboardPatch", fields_of::<DashboardPatch>()),
        ("QueryJobInput", fields_of::<cairn_query::jobs::JobInput>()),
    ];
    for (name, fields) in cases {
        assert_eq!(
            property_names(&doc, schema(&doc, name)),
            fields,
            "components.schemas.{name}: properties vs the fields serde accepts"
        );
    }
    // An insight's query: the analysis' fields plus `kind`.
    for (name, kind) in [
        ("TrendsQuery", "trends"),
        ("FunnelsQuery", "funnels"),
        ("RetentionQuery", "retention"),
        ("StickinessQuery", "stickiness"),
        ("LifecycleQuery", "lifecycle"),
        ("PathsQuery", "paths"),
        ("SessionsQuery", "sessions"),
    ] {
        let mut documented = property_names(&doc, schema(&doc, name));
        assert!(documented.remove("kind"), "{name} declares kind");
        assert_eq!(
            documented,
            fields_with::<InsightQuery>(&format!("{{kind: {kind}, __probe__: 1}}")),
            "components.schemas.{name}"
        );
    }
    let mapping: BTreeSet<String> = schema(&doc, "InsightQuery")
        .get("discriminator")
        .and_then(|d| d.get("mapping"))
        .and_then(Value::as_mapping)
        .expect("InsightQuery has a discriminator mapping")
        .keys()
        .map(key_text)
        .collect();
    let kinds = expected_names(
        &serde_yaml::from_value::<InsightQuery>(serde_yaml::from_str("{kind: __probe__}").unwrap())
            .expect_err("an unknown kind is refused")
            .to_string(),
    );
    assert_eq!(mapping, kinds, "InsightQuery's kinds");
}

#[test]
fn query_parameters_are_exactly_those_the_handlers_read() {
    let doc = document();
    let none = BTreeSet::new();
    let without = |mut all: BTreeSet<String>, drop: &[&str]| {
        for d in drop {
            assert!(all.remove(*d), "{d} is no longer a parameter");
        }
        all
    };
    let mut expected: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    expected.insert("list_events", fields_of::<EventsParams>());
    // The path gives the distinct_id.
    expected.insert("list_person_events", without(fields_of::<EventsParams>(), &["distinct_id"]));
    // Accepted but meaningless for these two.
    expected.insert("list_event_names", without(fields_of::<PickerParams>(), &["event", "key"]));
    expected.insert("list_property_keys", without(fields_of::<PickerParams>(), &["key"]));
    expected.insert("list_property_values", fields_of::<PickerParams>());
    expected.insert("list_insights", fields_of::<Page>());
    expected.insert("list_dashboards", fields_of::<Page>());
    expected.insert("list_persons", fields_of::<PersonsParams>());
    expected.insert("list_session_events", fields_of::<SessionParams>());
    // The list's filters, every page (no cursor or limit), and the file's format.
    let mut export = without(fields_of::<EventsParams>(), &["cursor", "limit"]);
    export.insert("format".into());
    expected.insert("export_events", export);
    expected.insert("export_insight", BTreeSet::from(["format".to_string()]));
    expected.insert("get_insight_result", BTreeSet::from(["refresh".to_string()]));
    let ops = operations(&doc);
    for id in expected.keys() {
        assert!(ops.iter().any(|o| o.id() == *id), "no operation {id}");
    }
    for o in &ops {
        let id = o.id();
        assert_eq!(
            param_names(&doc, o, "query"),
            *expected.get(id.as_str()).unwrap_or(&none),
            "{id}: query parameters"
        );
    }
}

#[test]
fn enums_are_exactly_what_serde_accepts_and_answers() {
    let doc = document();
    let cases: Vec<(&str, BTreeSet<String>, Option<Value>)> = vec![
        ("MathInput", accepted::<Math>(), Some(default_of::<Math>())),
        ("Math", answered::<Math>(), None),
        ("FilterOperator", accepted::<Operator>(), Some(default_of::<Operator>())),
        ("PropertyKind", accepted::<PropertyKind>(), Some(default_of::<PropertyKind>())),
        ("Interval", accepted::<Interval>(), Some(default_of::<Interval>())),
        ("FunnelOrder", accepted::<FunnelOrder>(), Some(default_of::<FunnelOrder>())),
        ("WindowUnit", accepted::<WindowUnit>(), None),
        ("RetentionType", accepted::<RetentionType>(), Some(default_of::<RetentionType>())),
        ("Period", accepted::<Period>(), Some(default_of::<Period>())),
    ];
    for (name, values, default) in cases {
        let s = schema(&doc, name);
        assert_eq!(strings(s.get("enum")), values, "components.schemas.{name}.enum");
        assert_eq!(s.get("default"), default.as_ref(), "components.schemas.{name}.default");
    }
    // Enums answered in responses: every value answered as itself.
    for (name, values) in [
        ("Interval", answered::<Interval>()),
        ("FunnelOrder", answered::<FunnelOrder>()),
        ("RetentionType", answered::<RetentionType>()),
        ("Period", answered::<Period>()),
    ] {
        assert_eq!(strings(schema(&doc, name).get("enum")), values, "{name} as answered");
    }
}

// ---- examples -----------------------------------------------------------------------------------

/// Equal, numbers compared by value (`3` and `3.0`), maps regardless of order.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Sequence(x), Value::Sequence(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Mapping(x), Value::Mapping(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn has_type(v: &Value, t: &str) -> bool {
    match (t, v) {
        ("null", Value::Null)
        | ("boolean", Value::Bool(_))
        | ("string", Value::String(_))
        | ("number", Value::Number(_))
        | ("array", Value::Sequence(_))
        | ("object", Value::Mapping(_)) => true,
        ("integer", Value::Number(n)) => n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0),
        _ => false,
    }
}

/// Checks `v` against `schema` (the keywords this document uses). `strict`: every open object
/// schema with properties must see exactly those keys (response examples show every field).
fn check(doc: &Value, schema: &Value, v: &Value, at: &str, strict: bool, errs: &mut Vec<String>) {
    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false))
        || schema.get("unevaluatedProperties") == Some(&Value::Bool(false));
    let strict = strict && !closed;
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let target = resolve(doc, r).unwrap_or_else(|| panic!("unresolved $ref {r}"));
        check(doc, target, v, at, strict, errs);
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<String> = match t {
            Value::Sequence(ts) => ts.iter().map(key_text).collect(),
            other => vec![key_text(other)],
        };
        if !types.iter().any(|t| has_type(v, t)) {
            errs.push(format!("{at}: expected {types:?}, found {v:?}"));
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_sequence) {
        if !e.iter().any(|x| same(x, v)) {
            errs.push(format!("{at}: {v:?} is not one of {e:?}"));
        }
    }
    if let Some(c) = schema.get("const") {
        if !same(c, v) {
            errs.push(format!("{at}: expected {c:?}, found {v:?}"));
        }
    }
    if let Value::Mapping(m) = v {
        let props = schema.get("properties").and_then(Value::as_mapping);
        for (k, s) in props.into_iter().flatten() {
            match m.get(k) {
                Some(x) => check(doc, s, x, &format!("{at}.{}", key_text(k)), strict, errs),
                None if strict => {
                    errs.push(format!("{at}: the documented field {} is not in the example", key_text(k)))
                }
                None => {}
            }
        }
        for r in strings(schema.get("required")) {
            if !m.contains_key(r.as_str()) {
                errs.push(format!("{at}: the required field {r} is missing"));
            }
        }
        let known = property_names(doc, schema);
        for k in m.keys().map(key_text) {
            if (closed || (strict && props.is_some())) && !known.contains(&k) {
                errs.push(format!("{at}: {k} is not a documented field"));
            }
        }
    }
    if let (Value::Sequence(items), Some(s)) = (v, schema.get("items")) {
        for (i, x) in items.iter().enumerate() {
            check(doc, s, x, &format!("{at}[{i}]"), strict, errs);
        }
    }
    for s in schema.get("allOf").and_then(Value::as_sequence).into_iter().flatten() {
        check(doc, s, v, at, strict, errs);
    }
    for (keyword, exactly_one) in [("anyOf", false), ("oneOf", true)] {
        if let Some(branches) = schema.get(keyword).and_then(Value::as_sequence) {
            let mut reasons = Vec::new();
            let fits = branches
                .iter()
                .filter(|s| {
                    let mut e = Vec::new();
                    check(doc, s, v, at, strict, &mut e);
                    reasons.extend(e.iter().cloned());
                    e.is_empty()
                })
                .count();
            if fits == 0 || (exactly_one && fits > 1) {
                errs.push(format!("{at}: fits {fits} of the {keyword} branches: {}", reasons.join("; ")));
            }
        }
    }
}

fn parses<T: DeserializeOwned>(v: &Value) -> Result<T, String> {
    serde_yaml::from_value::<T>(v.clone()).map_err(|e| e.to_string())
}

fn accepts<T: DeserializeOwned>(v: &Value) -> Result<(), String> {
    parses::<T>(v).map(|_| ())
}

/// What the service would answer: deserialized, then serialized back unchanged.
fn round_trips<T: DeserializeOwned + Serialize>(v: &Value) -> Result<(), String> {
    let back = serde_yaml::to_value(parses::<T>(v)?).map_err(|e| e.to_string())?;
    if same(&back, v) {
        Ok(())
    } else {
        Err(format!("serializes back differently:\n{}", serde_yaml::to_string(&back).unwrap()))
    }
}

fn insight_query(v: &Value) -> Result<(), String> {
    let json = serde_json::to_value(v).map_err(|e| e.to_string())?;
    parse_query(&json).map(|_| ()).map_err(|e| e.to_string())
}

fn insight_input(v: &Value) -> Result<(), String> {
    accepts::<InsightInput>(v)?;
    insight_query(v.get("query").ok_or("no query")?)
}

fn date_point(v: &Value) -> Result<(), String> {
    let now: jiff::Timestamp = "2026-11-26T15:30:00Z".parse().unwrap();
    let text = v.as_str().ok_or("not a string")?;
    timerange::point("date_from", text, false, None, now).map(|_| ()).map_err(|e| e.to_string())
}

fn timezone(v: &Value) -> Result<(), String> {
    timerange::timezone(v.as_str()).map(|_| ()).map_err(|e| e.to_string())
}

fn event_update(v: &Value) -> Result<(), String> {
    let json: serde_json::Value = serde_yaml::from_value(v.clone()).map_err(|e| e.to_string())?;
    let now = time::OffsetDateTime::parse("2026-11-26T15:30:00Z", &time::format_description::well_known::Rfc3339)
        .map_err(|e| e.to_string())?;
    parse_update(&json, now).map(|_| ()).map_err(|e| e.to_string())
}

type Checker = fn(&Value) -> Result<(), String>;

#[test]
fn examples_are_what_the_service_accepts_and_answers() {
    let doc = document();
    // Request examples must be accepted; response examples must be answered as they are.
    let requests: BTreeMap<&str, Checker> = BTreeMap::from([
        ("TrendsRequest", accepts::<TrendsRequest> as Checker),
        ("FunnelsRequest", accepts::<FunnelsRequest>),
        ("RetentionRequest", accepts::<RetentionRequest>),
        ("SqlRequest", accepts::<cairn_query::user_sql::SqlRequest>),
        ("EventExportInput", accepts::<cairn_query::event_exports::ExportInput>),
        ("EventExportPatch", accepts::<cairn_query::event_exports::ExportPatch>),
        ("StickinessRequest", accepts::<cairn_query::stickiness::StickinessRequest>),
        ("LifecycleRequest", accepts::<cairn_query::lifecycle::LifecycleRequest>),
        ("PathsRequest", accepts::<cairn_query::paths::PathsRequest>),
        ("SessionsRequest", accepts::<cairn_query::sessions::SessionsRequest>),
        ("InsightQuery", insight_query),
        ("InsightInput", insight_input),
        ("InsightPatch", accepts::<InsightPatch>),
        ("DashboardInput", accepts::<DashboardInput>),
        ("DashboardPatch", accepts::<DashboardPatch>),
        ("DatePoint", date_point),
        ("Timezone", timezone),
        ("EventUpdate", event_update),
        ("QueryJobInput", accepts::<cairn_query::jobs::JobInput>),
    ]);
    let responses: BTreeMap<&str, Checker> = BTreeMap::from([
        ("TrendsResponse", round_trips::<TrendsResponse> as Checker),
        ("FunnelsResponse", round_trips::<FunnelsResponse>),
        ("RetentionResponse", round_trips::<RetentionResponse>),
        ("SqlResponse", round_trips::<cairn_query::user_sql::SqlResponse>),
        ("EventExport", round_trips::<cairn_query::event_exports::EventExport>),
        ("ExportFiles", round_trips::<cairn_query::event_exports::ExportFiles>),
        ("StickinessResponse", round_trips::<cairn_query::stickiness::StickinessResponse>),
        ("LifecycleResponse", round_trips::<cairn_query::lifecycle::LifecycleResponse>),
        ("PathsResponse", round_trips::<cairn_query::paths::PathsResponse>),
        ("SessionsResponse", round_trips::<cairn_query::sessions::SessionsResponse>),
        ("EventsPage", round_trips::<EventsPage>),
        ("NameCounts", round_trips::<NameCounts>),
        ("PersonsPage", round_trips::<PersonsPage>),
        ("PersonDetail", round_trips::<PersonDetail>),
        ("PersonDeletion", round_trips::<PersonDeletion>),
        ("PersonDeletions", round_trips::<PersonDeletions>),
        ("SavedCohort", round_trips::<Cohort>),
        ("SavedCohorts", round_trips::<Cohorts>),
        ("Insight", round_trips::<Insight>),
        ("InsightList", round_trips::<List<Insight>>),
        ("Dashboard", round_trips::<Dashboard>),
        ("DashboardList", round_trips::<List<Dashboard>>),
        ("StoredEvent", round_trips::<StoredEvent>),
        ("ChangeAccepted", round_trips::<ChangeAccepted>),
        ("SampleData", round_trips::<cairn_query::sample_data::SampleData>),
        ("QueryJob", round_trips::<cairn_query::jobs::QueryJob>),
    ]);
    let schemas =
        doc.get("components").and_then(|c| c.get("schemas")).and_then(Value::as_mapping).expect("components.schemas");
    let mut failures = Vec::new();
    let mut checked = BTreeSet::new();
    for (name, s) in schemas {
        let name = key_text(name);
        let Some(examples) = s.get("examples") else {
            continue;
        };
        let examples =
            examples.as_sequence().unwrap_or_else(|| panic!("{name}.examples is a list (JSON Schema's examples)"));
        let (checker, strict) = match (requests.get(name.as_str()), responses.get(name.as_str())) {
            (Some(c), _) => (c, false),
            (_, Some(c)) => (c, true),
            _ => panic!("{name} has examples but no Rust type to check them against; add it here"),
        };
        for (i, ex) in examples.iter().enumerate() {
            let at = format!("{name}.examples[{i}]");
            if let Err(e) = checker(ex) {
                failures.push(format!("{at}: the service disagrees: {e}"));
            }
            let mut errs = Vec::new();
            check(&doc, s, ex, &at, strict, &mut errs);
            failures.extend(errs.into_iter().map(|e| format!("{e} (schema)")));
        }
        checked.insert(name);
    }
    for name in requests.keys().chain(responses.keys()) {
        assert!(checked.contains(*name), "{name} has no examples");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
