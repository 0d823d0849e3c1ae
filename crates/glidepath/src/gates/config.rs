//! `[gates.config]`: the release's deprecation matrix against the keys of
//! the config files (per node when templated) and the names set in the
//! environment: a removed key fails, a deprecated one warns.

use super::snapshot::secret_looking;
use super::{one_table, shape, Context, GateResult, Inputs, Reading, Verdict};
use crate::diag::Diag;
use std::path::{Path, PathBuf};
use toml_span::value::Table;
use toml_span::Span;

/// `[gates.config]`: the deprecation matrix, the config files and env
/// names it checks, and which env values the snapshot may record in clear.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ConfigGate {
    pub matrix: PathBuf,
    /// Config file templates (`{node}`, `{address}`, `{host}`, `{install_dir}`, `{plan_dir}`).
    pub files: Vec<String>,
    /// Env names checked against the matrix and recorded in the snapshot.
    pub env: Vec<String>,
    /// Names (all also in `env`) whose values are recorded in clear; every
    /// other value is recorded as a keyed fingerprint.
    pub env_clear: Vec<String>,
}

/// One row of a release's deprecation matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Deprecation {
    pub name: String,
    pub deprecated_in: Option<String>,
    pub removed_in: Option<String>,
    pub replacement: Option<String>,
    pub note: Option<String>,
}

/// Read a deprecation matrix (`[[key]] name, deprecated_in, removed_in, replacement, note`).
pub fn read_matrix(path: &Path) -> Result<Vec<Deprecation>, String> {
    let text = crate::files::read_text(path, crate::files::SMALL_MAX)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let mut v = toml_span::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let toml_span::value::ValueInner::Table(t) = v.take() else {
        return Err("not a table".into());
    };
    let at = |span: Span| {
        let (l, c) = crate::diag::line_col(&text, span.start);
        format!("{}:{l}:{c}", path.display())
    };
    let mut out = Vec::new();
    let items = match t.get("key") {
        None => return Ok(out),
        Some(v) => match v.as_array() {
            Some(a) => a.as_slice(),
            None => {
                return Err(format!(
                    "{}: `key` is {}, not an array of tables: write [[key]] (an array of tables), one per key",
                    at(v.span),
                    shape(v)
                ))
            }
        },
    };
    for item in items {
        let Some(kt) = item.as_table() else {
            return Err(format!(
                "{}: a `key` entry is {}, not a table: write [[key]] name = \"…\"",
                at(item.span),
                shape(item)
            ));
        };
        let s = |k: &str| -> Result<Option<String>, String> {
            match kt.get(k) {
                None => Ok(None),
                Some(v) => match v.as_str() {
                    Some(x) => Ok(Some(x.to_string())),
                    None => Err(format!(
                        "{}: `{k}` is {}, expected a string (e.g. {k} = \"1.0.10\")",
                        at(v.span),
                        shape(v)
                    )),
                },
            }
        };
        let Some(name) = s("name")? else {
            return Err(format!("{}: a [[key]] without `name`", at(item.span)));
        };
        out.push(Deprecation {
            name,
            deprecated_in: s("deprecated_in")?,
            removed_in: s("removed_in")?,
            replacement: s("replacement")?,
            note: s("note")?,
        });
    }
    Ok(out)
}

/// Dotted keys of a config file: TOML, JSON, YAML (mappings) or .env.
pub fn config_keys(path: &Path) -> Result<Vec<String>, String> {
    let text = crate::files::read_text(path, crate::files::SMALL_MAX)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    let mut keys = Vec::new();
    if name.ends_with(".toml") {
        let mut v = toml_span::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        fn walk(prefix: &str, v: &toml_span::value::ValueInner<'_>, out: &mut Vec<String>) {
            if let toml_span::value::ValueInner::Table(t) = v {
                for (k, val) in t {
                    let key = if prefix.is_empty() {
                        k.name.to_string()
                    } else {
                        format!("{prefix}.{}", k.name)
                    };
                    out.push(key.clone());
                    walk(&key, val.as_ref(), out);
                }
            }
        }
        walk("", &v.take(), &mut keys);
    } else if name.ends_with(".json") {
        let v: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
            if let serde_json::Value::Object(m) = v {
                for (k, val) in m {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    out.push(key.clone());
                    walk(&key, val, out);
                }
            }
        }
        walk("", &v, &mut keys);
    } else if name.ends_with(".yaml") || name.ends_with(".yml") {
        // mappings only: `key:` lines, nesting by indentation
        let mut stack: Vec<(usize, String)> = Vec::new();
        for line in text.lines() {
            let t = line.trim_end();
            let content = t.trim_start();
            if content.is_empty() || content.starts_with('#') || content.starts_with('-') {
                continue;
            }
            let indent = t.len() - content.len();
            let Some((k, _)) = content.split_once(':') else {
                continue;
            };
            let k = k.trim().trim_matches(['"', '\'']);
            while stack.last().is_some_and(|(i, _)| *i >= indent) {
                stack.pop();
            }
            let key = stack
                .last()
                .map_or(k.to_string(), |(_, p)| format!("{p}.{k}"));
            keys.push(key.clone());
            stack.push((indent, key));
        }
    } else {
        // .env: KEY=VALUE lines
        for line in text.lines() {
            let l = line.trim().trim_start_matches("export ").trim();
            if l.starts_with('#') {
                continue;
            }
            if let Some((k, _)) = l.split_once('=') {
                keys.push(k.trim().to_string());
            }
        }
    }
    Ok(keys)
}

/// The config files of `[gates.config]`, rendered per node when templated:
/// (label, path).
pub fn files(g: &ConfigGate, inputs: &Inputs) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    for f in &g.files {
        if f.contains('{') {
            for n in &inputs.nodes {
                let p = (n.fill)(f);
                out.push((format!("{} ({})", p, n.name), inputs.plan_dir.join(p)));
            }
        } else {
            out.push((f.clone(), inputs.plan_dir.join(f)));
        }
    }
    out
}

/// The deprecation gate: removed keys fail, deprecated ones warn.
pub fn check_config(
    matrix: &[Deprecation],
    release: &str,
    sources: &[(String, Vec<String>)],
) -> GateResult {
    use glidepath_core::compat::cmp_versions;
    use std::cmp::Ordering::Less;
    let (mut removed, mut deprecated) = (Vec::new(), Vec::new());
    for d in matrix {
        for (src, keys) in sources {
            if !keys.iter().any(|k| k == &d.name) {
                continue;
            }
            let hint = d
                .replacement
                .as_ref()
                .map(|r| format!(": use `{r}`"))
                .unwrap_or_default();
            let note = d
                .note
                .as_ref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default();
            if let Some(r) = d
                .removed_in
                .as_deref()
                .filter(|r| cmp_versions(release, r) != Less)
            {
                removed.push(format!(
                    "`{}` in {src} was removed in {r}{hint}{note}",
                    d.name
                ));
            } else if let Some(r) = d
                .deprecated_in
                .as_deref()
                .filter(|r| cmp_versions(release, r) != Less)
            {
                deprecated.push(format!(
                    "`{}` in {src} is deprecated since {r}{hint}{note}",
                    d.name
                ));
            }
        }
    }
    let n: usize = sources.iter().map(|s| s.1.len()).sum();
    if !removed.is_empty() {
        let mut all = removed;
        all.extend(deprecated);
        GateResult::new(
            "config",
            Verdict::Fail,
            all.join("; "),
            Some("rename the keys before deploying: the new release ignores or rejects them"),
        )
    } else if !deprecated.is_empty() {
        GateResult::new(
            "config",
            Verdict::Warn,
            deprecated.join("; "),
            Some("move to the replacement keys before they are removed"),
        )
    } else {
        GateResult::new(
            "config",
            Verdict::Pass,
            format!(
                "{n} key(s) in {} source(s): none deprecated or removed in {release}",
                sources.len()
            ),
            None,
        )
    }
}

/// Read `[gates.config]`.
pub(super) fn read(r: &mut dyn Reading, t: &Table<'_>, dir: &Path) -> Option<ConfigGate> {
    let (ct, cat) = one_table(r, t, "config")?;
    r.known_keys(
        ct,
        "[gates.config]",
        &["matrix", "files", "env", "env_clear"],
    );
    let matrix = r.req_str(
        ct,
        cat,
        "[gates.config]",
        "matrix",
        "\"dist/api-1.0.10/deprecations.toml\"",
    );
    let mut files: Vec<String> = Vec::new();
    for (f, span) in r
        .str_list(ct, "files", "[\"/etc/api/config.toml\"]")
        .unwrap_or_default()
    {
        r.template(
            &f,
            span,
            "files",
            &["node", "address", "host", "install_dir", "plan_dir"],
        );
        files.push(f);
    }
    let env: Vec<String> = r
        .str_list(ct, "env", "[\"API_MODE\"]")
        .unwrap_or_default()
        .into_iter()
        .map(|x| x.0)
        .collect();
    let mut env_clear = Vec::new();
    for (n, s) in r
        .str_list(ct, "env_clear", "[\"LOG_LEVEL\"]")
        .unwrap_or_default()
    {
        if !env.contains(&n) {
            r.err(
                s,
                format!("`{n}` is in env_clear but not in env"),
                "not a recorded name",
                Some(format!(
                    "env_clear only marks names of `env` as safe to record in clear: add \"{n}\" to env, or remove it here"
                )),
            );
        } else if secret_looking(&n) {
            let mut d = Diag::error(
                format!("`{n}` looks like a secret, and env_clear records its value in clear in the journal"),
                (s.start, s.end),
                "recorded in clear",
            );
            d.severity = crate::diag::Severity::Warning;
            d.hint = Some(format!(
                "remove \"{n}\" from env_clear to record a fingerprint of it instead"
            ));
            r.push(d);
        }
        env_clear.push(n);
    }
    if let Some((m, s)) = matrix {
        let p = dir.join(&m);
        match read_matrix(&p) {
            Err(e) if p.exists() => r.err(s, format!("unreadable deprecation matrix: {e}"), "the matrix", Some("[[key]] name = \"db.pool_size\", deprecated_in = \"1.0.9\", removed_in = \"1.0.10\", replacement = \"…\"".into())),
            Err(_) => r.err(s, format!("deprecation matrix `{m}` not found"), format!("looked for {}", p.display()), None),
            Ok(_) => {
                return Some(ConfigGate {
                    matrix: p,
                    files,
                    env,
                    env_clear,
                })
            }
        }
    }
    None
}

/// The config gate.
pub(super) async fn check(g: &ConfigGate, cx: &Context<'_>) -> Vec<GateResult> {
    let ConfigGate { matrix, env, .. } = g;
    let mut out = Vec::new();
    match read_matrix(matrix) {
        Err(e) => out.push(GateResult::new("config", Verdict::Fail, e, None)),
        Ok(m) => {
            let mut sources = Vec::new();
            let mut unreadable = Vec::new();
            for (label, path) in files(g, cx.inputs) {
                match config_keys(&path) {
                    Ok(k) => sources.push((label, k)),
                    Err(e) => unreadable.push(e),
                }
            }
            let set: Vec<String> = env
                .iter()
                .filter(|n| std::env::var_os(n).is_some())
                .cloned()
                .collect();
            if !env.is_empty() {
                sources.push(("the environment".to_string(), set));
            }
            let mut r = check_config(&m, &cx.inputs.version, &sources);
            if !unreadable.is_empty() {
                r = GateResult::new(
                    "config",
                    Verdict::Fail,
                    format!("{}; {}", unreadable.join("; "), r.reason),
                    Some("every config file the plan names must be readable"),
                );
            }
            out.push(r);
        }
    }
    out
}
