//! The crate's modules form layers: no module imports one that imports it
//! back, directly or through others (test code aside). This test reads the
//! sources and fails naming the cycle, so a new `use` that ties two layers
//! together is caught in review, not months later.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The top-level modules each top-level module's non-test code names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        // The binary's modules (`main`, `cli/`) sit on top of the library.
        if ["lib", "main", "cli", "layers"].contains(&name.as_str()) {
            continue;
        }
        let mut files = Vec::new();
        if path.is_dir() {
            for f in std::fs::read_dir(&path).unwrap() {
                files.push(f.unwrap().path());
            }
        } else {
            files.push(path.clone());
        }
        let mut uses = BTreeSet::new();
        for f in files
            .iter()
            .filter(|f| f.extension().is_some_and(|e| e == "rs"))
        {
            let text = std::fs::read_to_string(f).unwrap();
            // Unit tests sit at the end of a file, after `#[cfg(test)]`.
            let code = text.split("#[cfg(test)]").next().unwrap_or("");
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for (i, _) in line.match_indices("crate::") {
                    let rest = &line[i + "crate::".len()..];
                    let m: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !m.is_empty() && m != name {
                        uses.insert(m);
                    }
                }
            }
        }
        graph.insert(name, uses);
    }
    graph
}

/// A cycle through `from`, if there is one.
fn cycle(
    graph: &BTreeMap<String, BTreeSet<String>>,
    from: &str,
    path: &mut Vec<String>,
) -> Option<Vec<String>> {
    for next in graph.get(from).into_iter().flatten() {
        if next == &path[0] {
            let mut c = path.clone();
            c.push(next.clone());
            return Some(c);
        }
        if !path.contains(next) {
            path.push(next.clone());
            if let Some(c) = cycle(graph, next, path) {
                return Some(c);
            }
            path.pop();
        }
    }
    None
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = imports();
    assert!(graph.contains_key("plan") && graph["gates"].contains("drivers"));
    for m in graph.keys() {
        if let Some(c) = cycle(&graph, m, &mut vec![m.clone()]) {
            panic!(
                "import cycle: {} (see ARCHITECTURE.md, \"Layers\")",
                c.join(" → ")
            );
        }
    }
}

#[test]
fn the_check_finds_a_cycle() {
    let mut graph = imports();
    graph.get_mut("config").unwrap().insert("plan".into());
    assert!(cycle(&graph, "config", &mut vec!["config".into()]).is_some());
}
