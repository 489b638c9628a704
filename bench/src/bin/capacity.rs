//! `make capacity`: the capacity model (docs/CAPACITY.md) from the benchmarks' results —
//! `bench/results/scale.json` (`make bench-scale`) and `bench/results/query.json`
//! (`make bench-query`), or the two paths given.

use anyhow::{Context, Result};
use cairn_bench::capacity::{render, Assumptions, Costs, QueryCosts};
use serde_json::Value;

fn read(path: &str) -> Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {path}"))
}

fn main() -> Result<()> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/results");
    let mut args = std::env::args().skip(1);
    let scale = args.next().unwrap_or_else(|| format!("{dir}/scale.json"));
    let query = args.next().unwrap_or_else(|| format!("{dir}/query.json"));
    let costs = Costs::from_scale(&read(&scale)?).map_err(anyhow::Error::msg)?;
    let queries = QueryCosts::from_query(&read(&query)?).map_err(anyhow::Error::msg)?;
    print!("{}", render(&costs, &queries, &Assumptions::default()));
    Ok(())
}
