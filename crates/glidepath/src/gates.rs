//! Preflight gates declared in a plan's `[gates]`: migration safety,
//! freeze windows, a fresh backup, and custom commands. Each returns a
//! verdict (pass, warn, fail) with a reason and how to fix it. `run` refuses
//! to start on a failing gate unless it is forced with a written reason,
//! which is journaled with who and when.

use crate::diag::Diag;
use crate::lint::{lint_paths, Class};
use crate::plan::Reader;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml_span::value::Table;
use toml_span::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GateResult {
    /// The gate's id, as `--force` takes it.
    pub gate: String,
    pub verdict: Verdict,
    pub reason: String,
    pub fix: Option<String>,
    /// Forced past a failure: the operator's reason.
    pub forced: Option<String>,
    /// The failure is the infrastructure's (unreachable), not a refusal.
    #[serde(skip)]
    pub infra: bool,
    /// Built-in gates cannot be forced.
    #[serde(skip)]
    pub builtin: bool,
}

impl GateResult {
    pub fn new(gate: &str, verdict: Verdict, reason: impl Into<String>, fix: Option<&str>) -> Self {
        GateResult {
            gate: gate.into(),
            verdict,
            reason: reason.into(),
            fix: fix.map(str::to_string),
            forced: None,
            infra: false,
            builtin: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Freeze {
    Absolute {
        name: String,
        from: jiff::Timestamp,
        to: jiff::Timestamp,
    },
    Recurring {
        name: String,
        weekdays: Vec<jiff::civil::Weekday>,
        start: jiff::civil::Time,
        end: jiff::civil::Time,
        tz: String,
    },
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GatesCfg {
    /// (dir, explicit files, lock risks fail, git revision: files added since it)
    pub migrations: Option<(PathBuf, Vec<String>, bool, Option<String>)>,
    pub freeze: Vec<Freeze>,
    pub backup: Option<(Option<PathBuf>, Option<String>, Duration)>,
    pub custom: Vec<(String, String, Duration)>,
    /// (trusted minisign public keys, signature file)
    pub signature: Option<(Vec<String>, PathBuf)>,
    /// (deprecation matrix, config file templates, env names)
    pub config: Option<(PathBuf, Vec<String>, Vec<String>)>,
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
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut v = toml_span::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let toml_span::value::ValueInner::Table(t) = v.take() else {
        return Err("not a table".into());
    };
    let mut out = Vec::new();
    for item in t
        .get("key")
        .and_then(|k| k.as_array())
        .map(|a| a.as_slice())
        .unwrap_or(&[])
    {
        let Some(kt) = item.as_table() else { continue };
        let s = |k: &str| kt.get(k).and_then(|v| v.as_str()).map(str::to_string);
        let Some(name) = s("name") else {
            return Err(format!("{}: a [[key]] without `name`", path.display()));
        };
        out.push(Deprecation {
            name,
            deprecated_in: s("deprecated_in"),
            removed_in: s("removed_in"),
            replacement: s("replacement"),
            note: s("note"),
        });
    }
    Ok(out)
}

/// Dotted keys of a config file: TOML, JSON, YAML (mappings) or .env.
pub fn config_keys(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
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
pub fn config_files(plan: &crate::plan::Plan) -> Vec<(String, PathBuf)> {
    let Some((_, files, _)) = &plan.gates.config else {
        return vec![];
    };
    let mut out = Vec::new();
    for f in files {
        if f.contains('{') {
            for n in &plan.nodes {
                let dir = plan.install_dir(n).display().to_string();
                let p = crate::plan::render(
                    f,
                    &[
                        ("node", &n.name),
                        ("address", &n.address),
                        ("install_dir", &dir),
                    ],
                );
                out.push((format!("{} ({})", p, n.name), plan.dir.join(p)));
            }
        } else {
            out.push((f.clone(), plan.dir.join(f)));
        }
    }
    out
}

/// The snapshot recorded before a run: config file hashes and named env
/// values, secret-looking names redacted.
/// (label, value) pairs.
pub type Pairs = Vec<(String, String)>;

pub fn snapshot(plan: &crate::plan::Plan) -> (Pairs, Pairs) {
    let hashes = config_files(plan)
        .into_iter()
        .map(|(label, p)| {
            (
                label,
                std::fs::read(&p)
                    .map(|b| crate::plan::sha256_hex(&b))
                    .unwrap_or_else(|e| format!("unreadable: {e}")),
            )
        })
        .collect();
    let env = plan
        .gates
        .config
        .as_ref()
        .map(|c| c.2.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|n| {
            let v = match std::env::var(&n) {
                Err(_) => "<unset>".to_string(),
                Ok(_) if secret_looking(&n) => "<redacted>".to_string(),
                Ok(v) => v,
            };
            (n, v)
        })
        .collect();
    (hashes, env)
}

/// Does an env var name look like it holds a secret?
pub fn secret_looking(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    [
        "TOKEN",
        "SECRET",
        "PASSWORD",
        "PASSWD",
        "KEY",
        "CREDENTIAL",
        "PRIVATE",
        "AUTH",
    ]
    .iter()
    .any(|w| n.contains(w))
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

fn weekday(s: &str) -> Option<jiff::civil::Weekday> {
    use jiff::civil::Weekday::*;
    Some(match s.to_ascii_lowercase().get(..3)? {
        "mon" => Monday,
        "tue" => Tuesday,
        "wed" => Wednesday,
        "thu" => Thursday,
        "fri" => Friday,
        "sat" => Saturday,
        "sun" => Sunday,
        _ => return None,
    })
}

/// Read `[gates]` (called by the plan parser).
pub(crate) fn read(r: &mut Reader, t: &Table<'_>, at: Span, dir: &Path) -> GatesCfg {
    r.known_keys(
        t,
        "[gates]",
        &[
            "migrations",
            "freeze",
            "backup",
            "custom",
            "signature",
            "config",
        ],
    );
    let mut g = GatesCfg::default();
    if let Some((ct, cat)) = r.table(t, "config") {
        r.known_keys(ct, "[gates.config]", &["matrix", "files", "env"]);
        let matrix = r.req_str(
            ct,
            cat,
            "[gates.config]",
            "matrix",
            "\"dist/api-1.0.10/deprecations.toml\"",
        );
        let files: Vec<String> = r
            .str_list(ct, "files", "[\"/etc/api/config.toml\"]")
            .unwrap_or_default()
            .into_iter()
            .map(|x| x.0)
            .collect();
        let env: Vec<String> = r
            .str_list(ct, "env", "[\"API_MODE\"]")
            .unwrap_or_default()
            .into_iter()
            .map(|x| x.0)
            .collect();
        if let Some((m, s)) = matrix {
            let p = dir.join(&m);
            match read_matrix(&p) {
                Err(e) if p.exists() => r.err(s, format!("unreadable deprecation matrix: {e}"), "the matrix", Some("[[key]] name = \"db.pool_size\", deprecated_in = \"1.0.9\", removed_in = \"1.0.10\", replacement = \"…\"".into())),
                Err(_) => r.err(s, format!("deprecation matrix `{m}` not found"), format!("looked for {}", p.display()), None),
                Ok(_) => g.config = Some((p, files, env)),
            }
        }
    }
    if let Some((st, sat)) = r.table(t, "signature") {
        r.known_keys(st, "[gates.signature]", &["trusted_keys", "file"]);
        let keys = r
            .str_list(st, "trusted_keys", "[\"RWQ…\"]")
            .unwrap_or_default();
        if keys.is_empty() {
            r.missing(sat, "[gates.signature]", "trusted_keys", "[\"RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3\"]  # minisign public keys");
        }
        for (k, s) in &keys {
            if minisign_verify::PublicKey::from_base64(k).is_err() {
                r.err(
                    *s,
                    "not a minisign public key",
                    "expected the base64 line of a .pub file",
                    Some("the second line of `minisign -G`'s minisign.pub".into()),
                );
            }
        }
        let file = r
            .str(st, "file", "\"dist/api-1.0.10.minisig\"")
            .map(|x| dir.join(x.0))
            .unwrap_or_default();
        g.signature = Some((keys.into_iter().map(|x| x.0).collect(), file));
    }
    if let Some((m, mat)) = r.table(t, "migrations") {
        r.known_keys(
            m,
            "[gates.migrations]",
            &["dir", "files", "lock_risk", "since_git"],
        );
        let since = r.str(m, "since_git", "\"v1.0.9\"").map(|x| x.0);
        let d = r.req_str(m, mat, "[gates.migrations]", "dir", "\"migrations\"");
        let files = r
            .str_list(m, "files", "[\"0042_add_column.sql\"]")
            .unwrap_or_default()
            .into_iter()
            .map(|x| x.0)
            .collect();
        let lock_fail = match r.str(m, "lock_risk", "\"warn\"") {
            None => false,
            Some((v, s)) => match v.as_str() {
                "warn" => false,
                "fail" => true,
                _ => {
                    r.err(
                        s,
                        format!("unknown `lock_risk` \"{v}\""),
                        "expected warn or fail",
                        None,
                    );
                    false
                }
            },
        };
        if let Some((d, s)) = d {
            let p = dir.join(&d);
            if !p.is_dir() {
                r.err(
                    s,
                    format!("migrations directory `{d}` not found"),
                    format!("looked for {}", p.display()),
                    Some("paths are relative to the plan file's directory".into()),
                );
            }
            g.migrations = Some((p, files, lock_fail, since));
        }
    }
    if let Some(v) = t.get("freeze") {
        for item in v.as_array().map(|a| a.as_slice()).unwrap_or(&[]) {
            let Some(ft) = item.as_table() else { continue };
            r.known_keys(
                ft,
                "[[gates.freeze]]",
                &["name", "from", "to", "weekdays", "start", "end", "timezone"],
            );
            let name = r
                .req_str(
                    ft,
                    item.span,
                    "[[gates.freeze]]",
                    "name",
                    "\"holiday freeze\"",
                )
                .map_or_else(|| "freeze".into(), |x| x.0);
            if ft.contains_key("from") || ft.contains_key("to") {
                let ts = |r: &mut Reader, key: &str| {
                    let (s, sp) = r.req_str(
                        ft,
                        item.span,
                        "[[gates.freeze]]",
                        key,
                        "\"2026-12-20T00:00:00+01:00\"",
                    )?;
                    match s.parse::<jiff::Timestamp>() {
                        Ok(t) => Some(t),
                        Err(e) => {
                            r.err(
                                sp,
                                format!("`{key}` is not an RFC 3339 time: {e}"),
                                "not a timestamp",
                                Some("e.g. \"2026-12-20T00:00:00+01:00\" (with an offset)".into()),
                            );
                            None
                        }
                    }
                };
                if let (Some(from), Some(to)) = (ts(r, "from"), ts(r, "to")) {
                    if to <= from {
                        r.err(
                            item.span,
                            format!("freeze `{name}` ends before it starts"),
                            "to ≤ from",
                            None,
                        );
                    }
                    g.freeze.push(Freeze::Absolute { name, from, to });
                }
            } else {
                let days = r
                    .str_list(ft, "weekdays", "[\"fri\", \"sat\", \"sun\"]")
                    .unwrap_or_default();
                let mut weekdays = Vec::new();
                for (d, s) in days {
                    match weekday(&d) {
                        Some(w) => weekdays.push(w),
                        None => r.err(s, format!("unknown weekday `{d}`"), "mon…sun", None),
                    }
                }
                let time = |r: &mut Reader, key: &str, ex: &str| {
                    let (s, sp) = r.req_str(ft, item.span, "[[gates.freeze]]", key, ex)?;
                    let s2 = if s == "24:00" {
                        "23:59:59.999999999".to_string()
                    } else {
                        s.clone()
                    };
                    match s2.parse::<jiff::civil::Time>() {
                        Ok(t) => Some(t),
                        Err(_) => {
                            r.err(
                                sp,
                                format!("`{key}` = \"{s}\" is not a time of day"),
                                "HH:MM",
                                None,
                            );
                            None
                        }
                    }
                };
                let start = time(r, "start", "\"15:00\"");
                let end = time(r, "end", "\"24:00\"");
                let tz = r.req_str(
                    ft,
                    item.span,
                    "[[gates.freeze]]",
                    "timezone",
                    "\"Europe/Paris\"",
                );
                if let Some((z, s)) = &tz {
                    if jiff::tz::TimeZone::get(z).is_err() {
                        r.err(
                            *s,
                            format!("unknown time zone `{z}`"),
                            "not in the tz database",
                            Some("an IANA name such as \"Europe/Paris\" or \"UTC\"".into()),
                        );
                    }
                }
                if weekdays.is_empty() {
                    r.err(
                        item.span,
                        format!("freeze `{name}` has no weekdays"),
                        "when does it recur?",
                        Some("weekdays = [\"fri\"], or from/to for a one-off window".into()),
                    );
                }
                if let (Some(start), Some(end), Some((tz, _))) = (start, end, tz) {
                    g.freeze.push(Freeze::Recurring {
                        name,
                        weekdays,
                        start,
                        end,
                        tz,
                    });
                }
            }
        }
    }
    if let Some((b, bat)) = r.table(t, "backup") {
        r.known_keys(b, "[gates.backup]", &["file", "command", "max_age"]);
        let file = r
            .str(b, "file", "\"/var/backups/db/latest.dump\"")
            .map(|x| dir.join(x.0));
        let command = r
            .str(b, "command", "\"pgbackrest info --output=json | jq -e …\"")
            .map(|x| x.0);
        if file.is_none() == command.is_none() {
            r.err(
                bat,
                "[gates.backup] needs exactly one of `file` or `command`",
                "how to prove a fresh backup",
                None,
            );
        }
        let max_age = r
            .duration(b, "max_age", Some(Duration::from_secs(24 * 3600)))
            .unwrap_or(Duration::from_secs(86400));
        g.backup = Some((file, command, max_age));
    }
    if let Some(v) = t.get("custom") {
        for item in v.as_array().map(|a| a.as_slice()).unwrap_or(&[]) {
            let Some(ct) = item.as_table() else { continue };
            r.known_keys(ct, "[[gates.custom]]", &["name", "command", "timeout"]);
            let name = r.req_str(
                ct,
                item.span,
                "[[gates.custom]]",
                "name",
                "\"change ticket approved\"",
            );
            let cmd = r.req_str(
                ct,
                item.span,
                "[[gates.custom]]",
                "command",
                "\"./scripts/ticket-approved.sh\"",
            );
            let timeout = r
                .duration(ct, "timeout", Some(Duration::from_secs(60)))
                .unwrap_or(Duration::from_secs(60));
            if let (Some((n, ns)), Some((c, _))) = (name, cmd) {
                if !n
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_ ".contains(c))
                {
                    r.diags.push(Diag::error(
                        format!("gate name `{n}` must be letters, digits, '-', '_' or spaces"),
                        (ns.start, ns.end),
                        "used with --force",
                    ));
                }
                g.custom.push((n, c, timeout));
            }
        }
    }
    let _ = at;
    g
}

/// Is `now` inside a freeze window? Returns the window's description.
pub fn frozen(freezes: &[Freeze], now: jiff::Timestamp) -> Option<String> {
    for f in freezes {
        match f {
            Freeze::Absolute { name, from, to } => {
                if *from <= now && now < *to {
                    return Some(format!("`{name}` from {from} to {to}"));
                }
            }
            Freeze::Recurring {
                name,
                weekdays,
                start,
                end,
                tz,
            } => {
                let Ok(zone) = jiff::tz::TimeZone::get(tz) else {
                    continue;
                };
                let local = now.to_zoned(zone);
                let t = local.time();
                if weekdays.contains(&local.weekday()) && *start <= t && t < *end {
                    return Some(format!(
                        "`{name}` ({:?} {start}–{end} {tz}; it is {} there)",
                        local.weekday(),
                        local.strftime("%a %H:%M")
                    ));
                }
            }
        }
    }
    None
}

/// The key ID of a minisign key or signature line (base64): bytes 2..10,
/// shown like minisign does.
pub fn key_id(b64: &str) -> Option<String> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let id: [u8; 8] = raw.get(2..10)?.try_into().ok()?;
    Some(format!("{:016X}", u64::from_le_bytes(id)))
}

/// What a signature covers: a file's bytes, or a directory's sha256sum
/// manifest (the text whose sha256 is the plan's `sha256`).
pub fn signed_bytes(artifact: &Path) -> std::io::Result<Vec<u8>> {
    if artifact.is_file() {
        std::fs::read(artifact)
    } else {
        Ok(crate::plan::dir_manifest(artifact)?.into_bytes())
    }
}

/// Verify an artifact's minisign signature against trusted keys.
pub fn verify_signature(artifact: &Path, sig_file: &Path, trusted: &[String]) -> GateResult {
    let fail = |why: String, fix: &str| GateResult::new("signature", Verdict::Fail, why, Some(fix));
    let text = match std::fs::read_to_string(sig_file) {
        Ok(t) => t,
        Err(e) => return fail(format!("no signature at {}: {e}", sig_file.display()), "sign the artifact: minisign -Sm ARTIFACT (for a directory, sign its sha256sum manifest)"),
    };
    let sig = match minisign_verify::Signature::decode(&text) {
        Ok(s) => s,
        Err(e) => {
            return fail(
                format!("{} is not a minisign signature: {e}", sig_file.display()),
                "re-create it with minisign -S",
            )
        }
    };
    let sig_id = text
        .lines()
        .nth(1)
        .and_then(key_id)
        .unwrap_or_else(|| "?".into());
    let Some(key) = trusted
        .iter()
        .find(|k| key_id(k).as_deref() == Some(sig_id.as_str()))
    else {
        let known: Vec<String> = trusted.iter().filter_map(|k| key_id(k)).collect();
        return fail(
            format!(
                "signed by unknown key ID {sig_id} (trusted: {})",
                known.join(", ")
            ),
            "sign with a trusted key, or add this key to trusted_keys after checking it",
        );
    };
    let data = match signed_bytes(artifact) {
        Ok(d) => d,
        Err(e) => {
            return fail(
                format!("cannot read {}: {e}", artifact.display()),
                "check the artifact path",
            )
        }
    };
    let pk = minisign_verify::PublicKey::from_base64(key).expect("validated");
    match pk.verify(&data, &sig, false) {
        Ok(()) => GateResult::new("signature", Verdict::Pass, format!("signed by trusted key ID {sig_id} (\"{}\")", sig.trusted_comment()), None),
        Err(e) => fail(format!("signature by key ID {sig_id} does not match the artifact ({e}): it was changed after signing"), "use the signed artifact"),
    }
}

/// Evaluate the declared gates at `now`.
/// `deployed` is the release every node runs now (when they agree): it
/// fills `{deployed}` in `since_git`, so "the migrations new since the
/// release currently deployed" is `since_git = "v{deployed}"`.
pub async fn evaluate(
    plan: &crate::plan::Plan,
    now: jiff::Timestamp,
    deployed: Option<&str>,
) -> Vec<GateResult> {
    let (g, plan_dir, artifact) = (
        &plan.gates,
        plan.dir.as_path(),
        plan.release.artifact.as_path(),
    );
    let mut out = Vec::new();
    if let Some((matrix, _, env)) = &g.config {
        match read_matrix(matrix) {
            Err(e) => out.push(GateResult::new("config", Verdict::Fail, e, None)),
            Ok(m) => {
                let mut sources = Vec::new();
                let mut unreadable = Vec::new();
                for (label, path) in config_files(plan) {
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
                let mut r = check_config(&m, &plan.release.version, &sources);
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
    }
    if let Some((keys, file)) = &g.signature {
        let file = if file.as_os_str().is_empty() {
            PathBuf::from(format!("{}.minisig", artifact.display()))
        } else {
            file.clone()
        };
        out.push(verify_signature(artifact, &file, keys));
    }
    if let Some((dir, files, lock_fail, since)) = &g.migrations {
        let mut paths: Vec<PathBuf> = if files.is_empty() {
            vec![dir.clone()]
        } else {
            files.iter().map(|f| dir.join(f)).collect()
        };
        let since = since
            .as_ref()
            .map(|r| crate::plan::render(r, &[("deployed", deployed.unwrap_or("{deployed}"))]));
        if let Some(rev) = since.as_ref().filter(|r| {
            if r.contains("{deployed}") {
                out_push_fail(
                    &mut out,
                    "since_git uses {deployed}, but the nodes do not all run the same release"
                        .into(),
                );
                false
            } else {
                true
            }
        }) {
            // the release's new migrations: files added since `rev`
            let res = tokio::process::Command::new("git")
                .args([
                    "diff",
                    "--name-only",
                    "--diff-filter=A",
                    "--relative",
                    rev.as_str(),
                    "--",
                    ".",
                ])
                .current_dir(dir)
                .output()
                .await;
            match res {
                Ok(o) if o.status.success() => {
                    paths = String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .filter(|l| l.ends_with(".sql"))
                        .map(|l| dir.join(l))
                        .collect();
                    paths.sort();
                }
                Ok(o) => {
                    out_push_fail(
                        &mut out,
                        format!(
                            "git diff {rev} in {}: {}",
                            dir.display(),
                            String::from_utf8_lossy(&o.stderr).trim()
                        ),
                    );
                    paths.clear();
                }
                Err(e) => {
                    out_push_fail(&mut out, format!("cannot run git: {e}"));
                    paths.clear();
                }
            }
            if paths.is_empty() && out.iter().all(|r| r.gate != "migrations") {
                out.push(GateResult::new(
                    "migrations",
                    Verdict::Pass,
                    format!("no migration added since {rev}"),
                    None,
                ));
            }
        }
        if !paths.is_empty() {
            match lint_paths(&paths) {
                Err(e) => out.push(GateResult::new(
                    "migrations",
                    Verdict::Fail,
                    format!("cannot read migrations: {e}"),
                    None,
                )),
                Ok(reports) => {
                    let mut incompatible = Vec::new();
                    let mut locks = Vec::new();
                    let mut other = Vec::new();
                    for r in &reports {
                        if let Some(m) = &r.error {
                            other.push(format!("{}: {m}", r.file));
                        }
                        for (l, _, m) in &r.syntax_errors {
                            other.push(format!("{}:{l}: syntax error: {m}", r.file));
                        }
                        for (l, m) in &r.problems {
                            other.push(format!("{}:{l}: {m}", r.file));
                        }
                        for f in r.findings.iter().filter(|f| f.fails()) {
                            let line =
                                format!("{}:{} {} ({})", f.file, f.line, f.rule, f.statement);
                            match f.class {
                                Class::BackwardIncompatible => incompatible.push(line),
                                Class::LockRisk => locks.push(line),
                            }
                        }
                    }
                    let checked = reports.len();
                    if !incompatible.is_empty()
                        || !other.is_empty()
                        || (*lock_fail && !locks.is_empty())
                    {
                        let mut all = other;
                        all.extend(
                            incompatible
                                .iter()
                                .map(|x| format!("backward-incompatible: {x}")),
                        );
                        if *lock_fail {
                            all.extend(locks.iter().map(|x| format!("lock risk: {x}")));
                        }
                        out.push(GateResult::new("migrations", Verdict::Fail, all.join("; "), Some("run `glidepath lint` on the migrations for each safe alternative; contract steps go to a post-phase migration")));
                    } else if !locks.is_empty() {
                        out.push(GateResult::new(
                            "migrations",
                            Verdict::Warn,
                            format!("{checked} file(s); lock risks: {}", locks.join("; ")),
                            Some("see `glidepath lint` for the lock-free alternatives"),
                        ));
                    } else {
                        out.push(GateResult::new(
                            "migrations",
                            Verdict::Pass,
                            format!(
                            "{checked} file(s) safe while old and new releases share the schema"
                        ),
                            None,
                        ));
                    }
                }
            }
        }
    }
    if !g.freeze.is_empty() {
        out.push(match frozen(&g.freeze, now) {
            Some(w) => GateResult::new("freeze", Verdict::Fail, format!("inside freeze window {w}"), Some("wait for the window to end, or --force freeze --reason \"…\" for an emergency fix")),
            None => GateResult::new("freeze", Verdict::Pass, format!("outside all {} freeze window(s)", g.freeze.len()), None),
        });
    }
    if let Some((file, command, max_age)) = &g.backup {
        let age_s = humantime::format_duration(*max_age).to_string();
        out.push(match (file, command) {
            (Some(f), _) => match std::fs::metadata(f).and_then(|m| m.modified()) {
                Err(e) => GateResult::new(
                    "backup",
                    Verdict::Fail,
                    format!("no backup at {}: {e}", f.display()),
                    Some("take a backup before a storage-impacting release"),
                ),
                Ok(t) => {
                    let age = std::time::SystemTime::now()
                        .duration_since(t)
                        .unwrap_or_default();
                    if age > *max_age {
                        GateResult::new(
                            "backup",
                            Verdict::Fail,
                            format!(
                                "{} is {} old (max {age_s})",
                                f.display(),
                                humantime::format_duration(Duration::from_secs(age.as_secs()))
                            ),
                            Some("take a fresh backup"),
                        )
                    } else {
                        GateResult::new(
                            "backup",
                            Verdict::Pass,
                            format!(
                                "{} is {} old (max {age_s})",
                                f.display(),
                                humantime::format_duration(Duration::from_secs(age.as_secs()))
                            ),
                            None,
                        )
                    }
                }
            },
            (None, Some(c)) => match crate::drivers::service_command::shell_output(
                c,
                plan_dir,
                Duration::from_secs(120),
            )
            .await
            {
                Ok(o) => GateResult::new(
                    "backup",
                    Verdict::Pass,
                    format!("`{c}`: {}", crate::drivers::service_command::tail(o.trim())),
                    None,
                ),
                Err(e) => GateResult::new(
                    "backup",
                    Verdict::Fail,
                    e.to_string(),
                    Some("take a fresh backup"),
                ),
            },
            _ => GateResult::new("backup", Verdict::Fail, "no backup check configured", None),
        });
    }
    for (name, cmd, timeout) in &g.custom {
        let id = name.replace(' ', "-");
        out.push(
            match crate::drivers::service_command::shell_output(cmd, plan_dir, *timeout).await {
                Ok(o) => GateResult::new(
                    &id,
                    Verdict::Pass,
                    format!(
                        "`{cmd}` exit 0: {}",
                        crate::drivers::service_command::tail(o.trim())
                    ),
                    None,
                ),
                Err(e) => GateResult::new(&id, Verdict::Fail, e.to_string(), None),
            },
        );
    }
    out
}

fn out_push_fail(out: &mut Vec<GateResult>, why: String) {
    out.push(GateResult::new(
        "migrations",
        Verdict::Fail,
        why,
        Some("check since_git names a revision of the repository holding the migrations"),
    ));
}

/// The table `preflight` prints.
pub fn render(results: &[GateResult]) -> String {
    let mut s = format!("{:<22} {:<8} {}\n", "gate", "verdict", "reason");
    for r in results {
        let v = match (r.verdict, &r.forced) {
            (Verdict::Fail, Some(_)) => "FORCED",
            (Verdict::Pass, _) => "pass",
            (Verdict::Warn, _) => "warn",
            (Verdict::Fail, None) => "FAIL",
        };
        s.push_str(&format!("{:<22} {:<8} {}\n", r.gate, v, r.reason));
        if let Some(f) = r.forced.as_ref() {
            s.push_str(&format!("{:<31} forced: {f}\n", ""));
        } else if let (Some(fix), Verdict::Fail | Verdict::Warn) = (&r.fix, r.verdict) {
            s.push_str(&format!("{:<31} fix: {fix}\n", ""));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn absolute_window_edges() {
        let f = vec![Freeze::Absolute {
            name: "holidays".into(),
            from: at("2026-12-20T00:00:00+01:00"),
            to: at("2027-01-04T00:00:00+01:00"),
        }];
        assert!(
            frozen(&f, at("2026-12-19T22:59:59Z")).is_none(),
            "a second before the start (23:59:59 +01:00)"
        );
        assert!(
            frozen(&f, at("2026-12-19T23:00:00Z")).is_some(),
            "the start is inside"
        );
        assert!(frozen(&f, at("2027-01-03T22:59:59Z")).is_some());
        assert!(
            frozen(&f, at("2027-01-03T23:00:00Z")).is_none(),
            "the end is outside"
        );
    }

    #[test]
    fn recurring_window_in_its_time_zone_across_dst() {
        let f = vec![Freeze::Recurring {
            name: "friday afternoon".into(),
            weekdays: vec![jiff::civil::Weekday::Friday],
            start: "15:00".parse().unwrap(),
            end: "23:59:59.999999999".parse().unwrap(),
            tz: "Europe/Paris".into(),
        }];
        // winter, Paris = UTC+1: Friday 2026-11-27
        assert!(frozen(&f, at("2026-11-27T13:59:59Z")).is_none());
        let w = frozen(&f, at("2026-11-27T14:00:00Z")).unwrap();
        assert!(w.contains("Fri 15:00"), "{w}");
        assert!(
            frozen(&f, at("2026-11-27T22:59:59Z")).is_some(),
            "Friday 23:59:59 in Paris"
        );
        assert!(
            frozen(&f, at("2026-11-27T23:00:00Z")).is_none(),
            "Saturday 00:00 in Paris"
        );
        // summer, Paris = UTC+2: Friday 2026-07-03
        assert!(frozen(&f, at("2026-07-03T12:59:59Z")).is_none());
        assert!(frozen(&f, at("2026-07-03T13:00:00Z")).is_some());
        // a Friday in UTC that is already Saturday in Tokyo does not freeze a Tokyo window for Fridays
        let tokyo = vec![Freeze::Recurring {
            name: "t".into(),
            weekdays: vec![jiff::civil::Weekday::Friday],
            start: "00:00".parse().unwrap(),
            end: "23:59:59".parse().unwrap(),
            tz: "Asia/Tokyo".into(),
        }];
        assert!(
            frozen(&tokyo, at("2026-11-27T16:00:00Z")).is_none(),
            "Saturday 01:00 in Tokyo"
        );
        assert!(
            frozen(&tokyo, at("2026-11-27T14:00:00Z")).is_some(),
            "Friday 23:00 in Tokyo"
        );
    }
}
