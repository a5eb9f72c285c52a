//! The layering ARCHITECTURE.md promises, checked on the source: which of the hub's top-level
//! modules each may use, no cycle among them, and no source file or function too long to read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// What each top-level module may use of the crate (besides itself). `app` puts everything
/// together and may use anything.
const ALLOWED: &[(&str, &[&str])] = &[
    ("domain", &[]),
    ("clock", &[]),
    ("telemetry", &[]),
    ("health", &[]),
    ("pacer", &["clock"]),
    ("store", &["domain", "pacer", "telemetry"]),
    ("keys", &["domain"]),
    ("config", &["domain", "keys"]),
    ("tsp_client", &["domain", "telemetry", "config"]),
    ("tls", &[]),
    ("requestor_client", &["domain", "telemetry", "config"]),
    ("error", &["domain", "keys", "store", "tsp_client"]),
    (
        "hub",
        &[
            "clock",
            "config",
            "domain",
            "error",
            "health",
            "keys",
            "pacer",
            "requestor_client",
            "store",
            "telemetry",
            "tls",
            "tsp_client",
        ],
    ),
    (
        "flows",
        &[
            "clock",
            "config",
            "domain",
            "error",
            "health",
            "hub",
            "keys",
            "pacer",
            "requestor_client",
            "store",
            "telemetry",
            "tsp_client",
        ],
    ),
    (
        "workers",
        &[
            "clock",
            "config",
            "domain",
            "error",
            "flows",
            "hub",
            "pacer",
            "requestor_client",
            "tsp_client",
        ],
    ),
    (
        "http",
        &[
            "clock",
            "config",
            "domain",
            "error",
            "flows",
            "hub",
            "telemetry",
            "tls",
        ],
    ),
];

/// Longest source file and function, in lines, outside tests.
const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 80;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, with its text up to its `#[cfg(test)]` module.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = match text.find("#[cfg(test)]") {
                Some(i) => text[..i].to_string(),
                None => text,
            };
            out.push((path, code));
        }
    }
    out
}

/// The top-level module a file belongs to (`store` for `src/store/tokens.rs`).
fn top_module(path: &Path) -> String {
    let rel = path.strip_prefix(src()).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The crate's top-level modules a piece of code names (`crate::x`, `use crate::{x, …}`).
fn used_modules(code: &str) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    used.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                used.insert(name);
            }
        }
    }
    used
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, code) in sources(&src()) {
        let top = top_module(&path);
        let used = used_modules(&code);
        let entry = graph.entry(top.clone()).or_default();
        entry.extend(used.into_iter().filter(|m| *m != top));
    }
    graph
}

#[test]
fn each_module_uses_only_the_layers_below_it() {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut wrong = Vec::new();
    for (module, used) in graph() {
        if module == "app" || module == "lib" {
            continue;
        }
        let Some(may) = allowed.get(module.as_str()) else {
            wrong.push(format!("{module}: not in the layering (add it to ALLOWED)"));
            continue;
        };
        for u in used {
            if !may.contains(&u.as_str()) {
                wrong.push(format!("{module} uses {u}"));
            }
        }
    }
    assert!(wrong.is_empty(), "layering broken:\n{}", wrong.join("\n"));
}

#[test]
fn the_modules_make_no_cycle() {
    let graph = graph();
    fn visit(
        m: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut cycle = path[i..].to_vec();
            cycle.push(m.to_string());
            return Some(cycle);
        }
        if !done.insert(m.to_string()) {
            return None;
        }
        path.push(m.to_string());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        let cycle = visit(m, &graph, &mut Vec::new(), &mut done);
        assert!(
            cycle.is_none(),
            "import cycle: {}",
            cycle.unwrap().join(" -> ")
        );
    }
}

#[test]
fn no_file_or_function_is_too_long_to_read() {
    let mut long = Vec::new();
    for (path, code) in sources(&src()) {
        let name = path.strip_prefix(src()).unwrap().display().to_string();
        let lines: Vec<&str> = code.lines().collect();
        if lines.len() > MAX_FILE_LINES {
            long.push(format!("{name}: {} lines", lines.len()));
        }
        for (start, fn_name, len) in functions(&lines) {
            if len > MAX_FN_LINES {
                long.push(format!("{name}:{}: fn {fn_name}: {len} lines", start + 1));
            }
        }
    }
    assert!(long.is_empty(), "too long:\n{}", long.join("\n"));
}

/// Each `fn` with a body: its first line, its name and its length in lines (braces counted
/// outside strings and comments, roughly: enough for code formatted by rustfmt).
fn functions(lines: &[&str]) -> Vec<(usize, String, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim_start();
        let is_fn = [
            "fn ",
            "pub fn ",
            "async fn ",
            "pub async fn ",
            "pub(crate) fn ",
        ]
        .iter()
        .chain(
            [
                "pub(crate) async fn ",
                "pub(super) fn ",
                "pub(super) async fn ",
            ]
            .iter(),
        )
        .any(|p| line.starts_with(p));
        if !is_fn {
            i += 1;
            continue;
        }
        let name: String = line[line.find("fn ").unwrap() + 3..]
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let (mut depth, mut opened, mut j) = (0i64, false, i);
        while j < lines.len() {
            for c in strip_literals(lines[j]).chars() {
                match c {
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => depth -= 1,
                    ';' if !opened && depth == 0 => break,
                    _ => {}
                }
            }
            if (opened && depth == 0) || (!opened && strip_literals(lines[j]).contains(';')) {
                break;
            }
            j += 1;
        }
        if opened {
            out.push((i, name, j - i + 1));
        }
        i += 1;
    }
    out
}

/// A line without its comment, string and char literals.
fn strip_literals(line: &str) -> String {
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if in_str {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '/' if chars.peek() == Some(&'/') => break,
            '\'' => {
                // A char literal ('{', '\n'); a lifetime has no closing quote close by.
                let rest: String = chars.clone().take(3).collect();
                if let Some(end) = rest.find('\'') {
                    for _ in 0..=end {
                        chars.next();
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}
