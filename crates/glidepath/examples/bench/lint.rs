//! lint: `glidepath lint` vs squawk's CLI on a 20,000-statement file.

use std::time::Instant;

/// `glidepath lint` against squawk's CLI (PyPI `squawk-cli`) on the same
/// generated 20,000-statement file: time ratio and backward-compatibility findings.
pub fn lint_vs_squawk() {
    use std::collections::BTreeMap;
    let bin = crate::glidepath_bin();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.sql");
    let templates = [
        "ALTER TABLE t{i} ADD COLUMN c{i} text;",
        "ALTER TABLE t{i} DROP COLUMN c{i};",
        "CREATE INDEX CONCURRENTLY i{i} ON t{i} (a);",
        "ALTER TABLE t{i} RENAME COLUMN a{i} TO b{i};",
        "ALTER TABLE t{i} ALTER COLUMN c{i} TYPE bigint;",
        "ALTER TABLE t{i} ADD COLUMN r{i} int NOT NULL;",
        "CREATE TABLE n{i} (id bigint PRIMARY KEY, v text);",
        "ALTER TABLE t{i} ALTER COLUMN c{i} DROP NOT NULL;",
        "DROP TABLE old{i};",
        "UPDATE t{i} SET a = 1 WHERE id = {i};",
    ];
    let mut sql = String::from("SET lock_timeout = '2s';\nSET statement_timeout = '5s';\n");
    for i in 0..20_000 {
        sql.push_str(&templates[i % templates.len()].replace("{i}", &i.to_string()));
        sql.push('\n');
    }
    std::fs::write(&file, &sql).unwrap();
    let time = |cmd: &mut std::process::Command| {
        let mut best = f64::MAX;
        let mut out = None;
        for _ in 0..3 {
            let t0 = Instant::now();
            let o = cmd.output().expect("runs");
            best = best.min(t0.elapsed().as_secs_f64());
            out = Some(o);
        }
        (best, out.unwrap())
    };
    let (g, gout) = time(
        std::process::Command::new(&bin)
            .arg("lint")
            .arg(&file)
            .arg("--output")
            .arg("json"),
    );
    let Ok(_) = std::process::Command::new("squawk")
        .arg("--version")
        .output()
    else {
        println!("lint: glidepath {g:.2}s on 20,000 statements; squawk not installed (pip install squawk-cli==2.68.0) — no comparison");
        return;
    };
    let (q, qout) = time(
        std::process::Command::new("squawk")
            .arg("--reporter")
            .arg("gcc")
            .arg(&file),
    );
    let compat: Vec<String> = glidepath::lint::RULES
        .iter()
        .filter(|r| r.1 == glidepath::lint::Class::BackwardIncompatible)
        .map(|r| r.0.to_string())
        .collect();
    let mut ours: BTreeMap<String, usize> = BTreeMap::new();
    let v: serde_json::Value = serde_json::from_slice(&gout.stdout).unwrap();
    for f in v["files"][0]["findings"].as_array().unwrap() {
        let rule = f["rule"].as_str().unwrap().to_string();
        if compat.contains(&rule) {
            *ours.entry(rule).or_default() += 1;
        }
    }
    let mut theirs: BTreeMap<String, usize> = BTreeMap::new();
    for line in String::from_utf8_lossy(&qout.stdout).lines() {
        if let Some(rule) = line
            .split(": warning: ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
        {
            if compat.iter().any(|c| c == rule) {
                *theirs.entry(rule.to_string()).or_default() += 1;
            }
        }
    }
    println!(
        "lint: 20,000 statements — glidepath {g:.2}s, squawk {q:.2}s: ratio {:.2} (goal ≤ 1.0); backward-compatibility findings {} (glidepath {:?} / squawk {:?})",
        g / q,
        if ours == theirs { "identical" } else { "DIFFER" },
        ours,
        theirs
    );
}
