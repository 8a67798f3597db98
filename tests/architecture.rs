//! The architecture, checked from the source (issue 15): the `use crate::`
//! lines of `src/` are the dependency graph between top-level modules, and
//! this test fails when that graph stops pointing one way
//! (faces → domain → store), when the store leans on the domain, when
//! anything but `web` knows axum, or when a file grows past one sitting.
//!
//! It reads the text, not the compiler's view: a reference written
//! `crate::x::…` (or inside `use crate::{x, …}`) outside a `//` comment
//! is a dependency on `x`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The faces: they may use everything, nothing may use them.
const FACES: &[&str] = &["web", "cli", "startup"];

/// What `src/store/` may use of the crate besides itself (its own
/// `StoreError` included): the time source. The store knows no rule.
const STORE_MAY_USE: &[&str] = &["clock"];

/// Upward edges allowed to close a circle: none since issue 15. Kept so
/// that an exception, should one ever be needed, is named and checked: the
/// test fails when a circle does not go through a listed edge, and when a
/// listed edge no longer closes a circle.
const KNOWN_CYCLE_EDGES: &[(&str, &str)] = &[];

/// No file under `src/` passes this many lines.
const MAX_LINES: usize = 700;

struct Source {
    /// Path relative to `src/`, with `/` separators.
    rel: String,
    text: String,
}

fn sources() -> Vec<Source> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<Source>) {
        let mut entries: Vec<PathBuf> =
            std::fs::read_dir(dir).expect("reading src/").map(|e| e.expect("reading src/").path()).collect();
        entries.sort();
        for path in entries {
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).expect("under src/").to_string_lossy().replace('\\', "/");
                let text = std::fs::read_to_string(&path).expect("reading a source file");
                out.push(Source { rel, text });
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    assert!(out.len() > 20, "src/ looks empty: {} files", out.len());
    out
}

/// The top-level module a file belongs to; `None` for the crate roots.
fn top_module(rel: &str) -> Option<&str> {
    match rel {
        "lib.rs" | "main.rs" => None,
        _ => Some(rel.split('/').next()?.trim_end_matches(".rs")),
    }
}

/// The text without `//` comments (line and doc comments), so that prose
/// naming a module is not a dependency. Good enough for this code base: no
/// string literal in `src/` holds `crate::` or a `//` before one.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_at(s: &str) -> &str {
    let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules named after each `crate::` in `code`.
fn crate_references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let bytes = code.as_bytes();
    let mut from = 0;
    while let Some(at) = code[from..].find("crate::") {
        let start = from + at;
        from = start + "crate::".len();
        if start > 0 {
            let before = bytes[start - 1];
            if before.is_ascii_alphanumeric() || before == b'_' || before == b'$' {
                continue;
            }
        }
        let rest = &code[from..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::{c, d}, e}`: the first name of each item at depth 0.
            let mut depth = 0;
            let mut item_start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && depth == 0 && (c.is_ascii_alphabetic() || c == '_') => {
                        found.insert(ident_at(&group[i..]).to_string());
                        item_start = false;
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident_at(rest);
            if !name.is_empty() {
                found.insert(name.to_string());
            }
        }
    }
    found.remove("self");
    found
}

/// Edges between top-level modules, each with the files that make it.
type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn graph(sources: &[Source]) -> Graph {
    let mut g = Graph::new();
    for s in sources {
        let Some(from) = top_module(&s.rel) else { continue };
        g.entry(from.to_string()).or_default();
        for to in crate_references(&code_of(&s.text)) {
            if to != from {
                g.entry(from.to_string()).or_default().entry(to).or_default().insert(s.rel.clone());
            }
        }
    }
    g
}

fn reaches(g: &Graph, from: &str, to: &str, skip: &BTreeSet<(String, String)>) -> Option<Vec<String>> {
    // Depth-first, returning the path from `from` to `to`.
    fn go(
        g: &Graph,
        at: &str,
        to: &str,
        skip: &BTreeSet<(String, String)>,
        seen: &mut BTreeSet<String>,
        path: &mut Vec<String>,
    ) -> bool {
        path.push(at.to_string());
        if at == to && path.len() > 1 {
            return true;
        }
        if seen.insert(at.to_string()) {
            for next in g.get(at).map(|m| m.keys()).into_iter().flatten() {
                if skip.contains(&(at.to_string(), next.clone())) {
                    continue;
                }
                if go(g, next, to, skip, seen, path) {
                    return true;
                }
            }
        }
        path.pop();
        false
    }
    let mut path = Vec::new();
    go(g, from, to, skip, &mut BTreeSet::new(), &mut path).then_some(path)
}

fn describe(g: &Graph, cycle: &[String]) -> String {
    cycle
        .windows(2)
        .map(|w| {
            let files = &g[&w[0]][&w[1]];
            format!("{} → {} ({})", w[0], w[1], files.iter().cloned().collect::<Vec<_>>().join(", "))
        })
        .collect::<Vec<_>>()
        .join("\n  ")
}

#[test]
fn top_level_modules_form_no_circle() {
    let g = graph(&sources());
    let known: BTreeSet<(String, String)> =
        KNOWN_CYCLE_EDGES.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    let mut problems = Vec::new();
    for module in g.keys() {
        if let Some(cycle) = reaches(&g, module, module, &known) {
            problems.push(format!("circle:\n  {}", describe(&g, &cycle)));
            break;
        }
    }
    for (a, b) in &known {
        let exists = g.get(a).is_some_and(|m| m.contains_key(b));
        if !exists || reaches(&g, b, a, &BTreeSet::new()).is_none() {
            problems.push(format!("{a} → {b} no longer closes a circle: remove it from KNOWN_CYCLE_EDGES"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_store_uses_only_the_clock() {
    let mut problems = Vec::new();
    for s in sources().iter().filter(|s| s.rel.starts_with("store/")) {
        for used in crate_references(&code_of(&s.text)) {
            if used != "store" && !STORE_MAY_USE.contains(&used.as_str()) {
                problems.push(format!("src/{} uses crate::{used}", s.rel));
            }
        }
    }
    assert!(problems.is_empty(), "the store may use only {STORE_MAY_USE:?}:\n{}", problems.join("\n"));
}

#[test]
fn the_domain_does_not_use_the_faces() {
    let g = graph(&sources());
    let mut problems = Vec::new();
    for (from, edges) in &g {
        if FACES.contains(&from.as_str()) {
            continue;
        }
        for (to, files) in edges {
            if FACES.contains(&to.as_str()) {
                problems.push(format!("{from} → {to} ({})", files.iter().cloned().collect::<Vec<_>>().join(", ")));
            }
        }
    }
    assert!(problems.is_empty(), "a domain module uses a face:\n{}", problems.join("\n"));
}

#[test]
fn only_web_knows_axum() {
    let problems: Vec<String> = sources()
        .iter()
        .filter(|s| !s.rel.starts_with("web/"))
        .filter(|s| {
            let code = code_of(&s.text);
            code.match_indices("axum").any(|(at, _)| {
                let before = code[..at].chars().next_back();
                !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        })
        .map(|s| format!("src/{}", s.rel))
        .collect();
    assert!(problems.is_empty(), "axum outside src/web/:\n{}", problems.join("\n"));
}

#[test]
fn every_file_reads_in_one_sitting() {
    let problems: Vec<String> = sources()
        .iter()
        .map(|s| (s.rel.clone(), s.text.lines().count()))
        .filter(|(_, n)| *n > MAX_LINES)
        .map(|(rel, n)| format!("src/{rel}: {n} lines"))
        .collect();
    assert!(problems.is_empty(), "files over {MAX_LINES} lines:\n{}", problems.join("\n"));
}

#[test]
fn the_reader_finds_references() {
    let code = code_of("use crate::{a::B, b::{c, d}, self};\nlet x = crate::e::f(); // crate::g\n$crate::h");
    let found: Vec<String> = crate_references(&code).into_iter().collect();
    assert_eq!(found, ["a", "b", "e"]);
}
