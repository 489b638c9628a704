//! Configuration names cannot drift: every `CAIRN_*` variable a service or the operator reads is
//! documented in docs/OPERATIONS.md, every one the operator renders into a pod is read by a
//! workload (or expanded by Kubernetes in another variable), and every documented one is read by
//! something (a service, the operator, the stack's scripts or the tests' harness).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Rust files under `dir`, without their `#[cfg(test)]` tail (tests set and read their own
/// variables).
fn sources(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            let text = std::fs::read_to_string(&p).unwrap();
            let code = match text.find("#[cfg(test)]") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            out.push((p, code));
        }
    }
}

/// `CAIRN_*` names in `text`, each with the text just before it.
fn names(text: &str) -> Vec<(&str, &str)> {
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = text[from..].find("CAIRN_") {
        let start = from + i;
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .map_or(text.len(), |n| start + n);
        let before_ok = start == 0 || !text.as_bytes()[start - 1].is_ascii_alphanumeric();
        if before_ok && end > start + 6 {
            let mut b = start.saturating_sub(40);
            while !text.is_char_boundary(b) {
                b += 1;
            }
            out.push((&text[start..end], &text[b..start]));
        }
        from = end.max(start + 1);
    }
    out
}

/// Names read through the configuration helpers or `std::env`.
fn read_in(code: &str) -> BTreeSet<String> {
    const READERS: [&str; 9] =
        ["env_string(", "env_parse(", "env_millis(", "env_bool(", "env_opt(", "env_addr(", "var(", "var_os(", "parse("];
    names(code)
        .into_iter()
        .filter(|(_, before)| {
            let b = before.trim_end().trim_end_matches('"');
            READERS.iter().any(|r| b.trim_end().ends_with(r))
        })
        .map(|(n, _)| n.to_string())
        .collect()
}

/// The names docs/OPERATIONS.md documents; `_SUFFIX` shorthands after a full name on the same line
/// (`CAIRN_KAFKA_SASL_MECHANISM`, `_SASL_USERNAME`) stand for the full name with that suffix.
fn documented() -> BTreeSet<String> {
    let doc = std::fs::read_to_string(repo().join("docs/OPERATIONS.md")).unwrap();
    let mut out = BTreeSet::new();
    for line in doc.lines() {
        let full: Vec<&str> = names(line).into_iter().map(|(n, _)| n).collect();
        out.extend(full.iter().map(|n| n.to_string()));
        for short in line.split('`').filter(|t| t.starts_with('_') && t.len() > 1) {
            for f in &full {
                for (i, _) in f.match_indices('_') {
                    out.insert(format!("{}{short}", &f[..i]));
                }
            }
        }
    }
    out
}

#[test]
fn every_variable_read_is_documented_and_every_rendered_one_is_read() {
    let root = repo();
    let mut files = Vec::new();
    for dir in [
        "workloads/common/src",
        "workloads/capture/src",
        "workloads/consumer/src",
        "workloads/auth/src",
        "workloads/query/src",
        "operator/src",
    ] {
        sources(&root.join(dir), &mut files);
    }
    let read: BTreeSet<String> = files.iter().flat_map(|(_, code)| read_in(code)).collect();
    assert!(read.len() > 60, "the scan finds the services' variables: {read:?}");
    let docs = documented();

    let undocumented: Vec<_> = read.iter().filter(|n| !docs.contains(*n)).collect();
    assert!(undocumented.is_empty(), "read but not documented in docs/OPERATIONS.md: {undocumented:?}");

    // What the operator puts into pods: every CAIRN_ literal of its resource builders.
    let mut rendered = BTreeSet::new();
    let mut expanded = BTreeSet::new();
    for (path, code) in &files {
        for (name, before) in names(code) {
            if before.ends_with("$(") {
                expanded.insert(name.to_string());
            } else if path.to_string_lossy().contains("operator/src/resources") {
                rendered.insert(name.to_string());
            }
        }
    }
    let unread: Vec<_> = rendered.iter().filter(|n| !read.contains(*n) && !expanded.contains(*n)).collect();
    assert!(unread.is_empty(), "the operator renders variables nothing reads: {unread:?}");

    // Documented ones are read by something: the services above, or the scripts and harness.
    let mut elsewhere = String::new();
    for dir in ["stack", "e2e/src", "e2e/tests", "bench/src"] {
        let mut stack = Vec::new();
        collect_text(&root.join(dir), &mut stack);
        elsewhere.extend(stack);
    }
    elsewhere.push_str(&std::fs::read_to_string(root.join("Makefile")).unwrap());
    let stale: Vec<_> = docs
        .iter()
        .filter(|n| !read.contains(*n) && !rendered.contains(*n) && !elsewhere.contains(n.as_str()))
        .filter(|n| !n.ends_with('_'))
        .collect();
    // Shorthand expansion adds candidates that are not names; only full names written in the
    // document count as documented variables.
    let doc = std::fs::read_to_string(root.join("docs/OPERATIONS.md")).unwrap();
    let stale: Vec<_> = stale.into_iter().filter(|n| names(&doc).iter().any(|(m, _)| m == n)).collect();
    assert!(stale.is_empty(), "documented in docs/OPERATIONS.md but read by nothing: {stale:?}");
}

fn collect_text(dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_text(&p, out);
        } else if let Ok(t) = std::fs::read_to_string(&p) {
            out.push(t);
        }
    }
}
