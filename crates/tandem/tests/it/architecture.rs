//! The architecture's rules, checked on the source: no module of a crate uses a module that
//! uses it back (re-exports, `pub use` and `pub(crate) use`, are a module's façade and do
//! not count), and the command line does not depend on the server.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("crates/tandem is two levels below the workspace")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `a/b.rs` and `a/b/mod.rs` are module `a::b`; `lib.rs` and `main.rs` are the root ("").
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("lib" | "main" | "mod")
    ) {
        parts.pop();
    }
    parts.join("::")
}

/// The text a module's uses are read from: no comments, no unit tests, no re-exports.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    let mut out = String::new();
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or("");
        out.push_str(line);
        out.push('\n');
    }
    for facade in ["pub use ", "pub(crate) use "] {
        while let Some(start) = out.find(facade) {
            let end = out[start..].find(';').map_or(out.len(), |e| start + e + 1);
            out.replace_range(start..end, "");
        }
    }
    out
}

/// Every `prefix`-qualified path in `text` (`crate::a::b::Item` gives `["a","b","Item"]`).
fn paths_after(text: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let path: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        found.push(
            path.split("::")
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        );
    }
    found
}

/// The modules of one crate that each module uses.
fn uses(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeMap<String, String> = files
        .iter()
        .map(|f| (module_of(src, f), std::fs::read_to_string(f).unwrap()))
        .collect();
    let resolve = |parts: &[String]| -> String {
        (1..=parts.len())
            .rev()
            .map(|n| parts[..n].join("::"))
            .find(|m| modules.contains_key(m))
            .unwrap_or_default()
    };
    let mut edges = BTreeMap::new();
    for (module, text) in &modules {
        let text = code(text);
        let own: Vec<String> = if module.is_empty() {
            vec![]
        } else {
            module.split("::").map(str::to_string).collect()
        };
        let mut refs = paths_after(&text, "crate::");
        for p in paths_after(&text, "super::") {
            let mut full = own[..own.len().saturating_sub(1)].to_vec();
            full.extend(p);
            refs.push(full);
        }
        for p in paths_after(&text, "self::") {
            let mut full = own.clone();
            full.extend(p);
            refs.push(full);
        }
        // A child module named without a prefix (`use child::Item;`).
        for child in modules.keys() {
            let parts: Vec<&str> = child.split("::").filter(|s| !s.is_empty()).collect();
            if parts.len() == own.len() + 1
                && parts[..own.len()] == own.iter().map(String::as_str).collect::<Vec<_>>()[..]
            {
                let last = parts[parts.len() - 1];
                // The whole path, so that `child::grandchild::Item` is the grandchild's.
                for rest in paths_after(&text, &format!("{last}::")) {
                    let mut full: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
                    full.extend(rest);
                    refs.push(full);
                }
            }
        }
        let targets: BTreeSet<String> = refs
            .iter()
            .map(|r| resolve(r))
            .filter(|t| t != module)
            .collect();
        edges.insert(module.clone(), targets);
    }
    edges
}

#[test]
fn no_module_uses_one_that_uses_it_back() {
    let mut cycles = Vec::new();
    for entry in std::fs::read_dir(workspace().join("crates"))
        .unwrap()
        .flatten()
    {
        let src = entry.path().join("src");
        if !src.is_dir() {
            continue;
        }
        let edges = uses(&src);
        for (a, targets) in &edges {
            for b in targets {
                if a < b && edges.get(b).is_some_and(|t| t.contains(a)) {
                    cycles.push(format!(
                        "{}: `{}` <-> `{}`",
                        entry.file_name().to_string_lossy(),
                        if a.is_empty() { "crate" } else { a },
                        b
                    ));
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "modules that use each other:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_command_line_does_not_depend_on_the_server() {
    let manifest = std::fs::read_to_string(workspace().join("crates/cli/Cargo.toml")).unwrap();
    for crate_name in ["server", "mgmt", "engine", "registrar", "edge", "node"] {
        assert!(
            !manifest
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{crate_name}."))
                    || l.trim_start().starts_with(&format!("{crate_name} "))),
            "cli depends on {crate_name}"
        );
    }
}
