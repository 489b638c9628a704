//! Configuration names cannot drift: every `CAIRN_*` variable docs/OPERATIONS.md names is declared
//! in the settings catalogue (which the services read through, the operator renders from and the
//! document's tables are generated from) or read by the stack's scripts or the tests' harness.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
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

#[test]
fn every_documented_variable_is_read_by_something() {
    let root = repo();
    let declared: BTreeSet<&str> = cairn_common::config::catalogue::ALL.iter().map(|s| s.name).collect();
    // What the services and the operator read is the catalogue (its own tests check that each
    // service reads exactly its declared settings and that docs/OPERATIONS.md's tables are
    // generated from it). Other names in the document are the scripts' and the test harness's.
    let mut elsewhere = String::new();
    for dir in ["stack", "e2e/src", "e2e/tests", "bench/src", ".ci"] {
        let mut texts = Vec::new();
        collect_text(&root.join(dir), &mut texts);
        elsewhere.extend(texts);
    }
    elsewhere.push_str(&std::fs::read_to_string(root.join("Makefile")).unwrap());
    let doc = std::fs::read_to_string(root.join("docs/OPERATIONS.md")).unwrap();
    let documented: BTreeSet<&str> = names(&doc).into_iter().map(|(n, _)| n).collect();
    assert!(documented.len() > 60, "the scan finds the documented variables: {documented:?}");
    let stale: Vec<_> =
        documented.iter().filter(|n| !declared.contains(*n) && !n.ends_with('_') && !elsewhere.contains(*n)).collect();
    assert!(stale.is_empty(), "documented in docs/OPERATIONS.md but read by nothing: {stale:?}");
    let undocumented: Vec<_> =
        declared.iter().filter(|n| n.starts_with("CAIRN_") && !documented.contains(*n)).collect();
    assert!(undocumented.is_empty(), "declared but not in docs/OPERATIONS.md: {undocumented:?}");
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
