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
    pub config: Option<ConfigGate>,
}

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
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
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
    let Some(ConfigGate { files, .. }) = &plan.gates.config else {
        return vec![];
    };
    let mut out = Vec::new();
    for f in files {
        if f.contains('{') {
            for n in &plan.nodes {
                let dir = plan.install_dir(n).display().to_string();
                let p = plan.vars(n).with("install_dir", dir).fill(f);
                out.push((format!("{} ({})", p, n.name), plan.dir.join(p)));
            }
        } else {
            out.push((f.clone(), plan.dir.join(f)));
        }
    }
    out
}

/// (label, value) pairs.
pub type Pairs = Vec<(String, String)>;

/// The snapshot recorded before a run: the sha256 of each config file, and
/// for each env name of `[gates.config] env` a keyed fingerprint of its
/// value ([`FingerprintKey`]), or the value itself for the names listed in
/// `env_clear`. An unset name is `<unset>`. No other value ever reaches
/// the journal: when the key cannot be read or created, the value is
/// recorded as `<not recorded: …>`.
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
    let env = match &plan.gates.config {
        Some(c) if !c.env.is_empty() => {
            // the key is only needed when a value is to be fingerprinted
            let needs_key = c
                .env
                .iter()
                .any(|n| !c.env_clear.contains(n) && std::env::var_os(n).is_some());
            let key = if needs_key {
                FingerprintKey::for_user()
            } else {
                Err("not needed".into())
            };
            snapshot_env(&c.env, &c.env_clear, key.as_ref(), |n| std::env::var_os(n))
        }
        _ => vec![],
    };
    (hashes, env)
}

/// The env half of [`snapshot`], with the key and the environment given.
pub fn snapshot_env(
    names: &[String],
    clear: &[String],
    key: Result<&FingerprintKey, &String>,
    get: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Pairs {
    use std::os::unix::ffi::OsStrExt;
    names
        .iter()
        .map(|n| {
            let v = match get(n) {
                None => "<unset>".to_string(),
                Some(v) if clear.contains(n) => v.to_string_lossy().into_owned(),
                Some(v) => match key {
                    Ok(k) => k.fingerprint(n, v.as_bytes()),
                    Err(why) => format!("<not recorded: {why}>"),
                },
            };
            (n.clone(), v)
        })
        .collect()
}

/// HMAC-SHA256 (RFC 2104) over sha2.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |b: u8| k.map(|x| x ^ b);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

/// The secret key of env fingerprints: 32 random bytes kept in a 0600 file
/// of the user's state directory, never in the journal. A fingerprint is
/// `hmac-sha256:<key id>:<HMAC-SHA256(key, NAME \0 value)>`: the same value
/// of the same name gives the same fingerprint on this machine (a change
/// between runs shows), and someone who reads only the journal cannot test
/// guesses of a short secret against it. The key id (a hash of the key)
/// tells which key made a fingerprint, so a changed key is not mistaken
/// for a changed value.
#[derive(Clone)]
pub struct FingerprintKey {
    key: [u8; 32],
    id: String,
}

impl std::fmt::Debug for FingerprintKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "FingerprintKey({})", self.id)
    }
}

/// The user's state directory for glidepath: `$XDG_STATE_HOME/glidepath`,
/// else `$HOME/.local/state/glidepath`.
pub fn state_dir() -> Result<PathBuf, String> {
    let abs = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    if let Some(p) = std::env::var_os("XDG_STATE_HOME").and_then(abs) {
        return Ok(p.join("glidepath"));
    }
    match std::env::var_os("HOME").and_then(abs) {
        Some(h) => Ok(h.join(".local/state/glidepath")),
        None => Err("no state directory: set XDG_STATE_HOME or HOME".into()),
    }
}

impl FingerprintKey {
    pub const FILE: &'static str = "fingerprint.key";

    fn from_bytes(key: [u8; 32]) -> Self {
        let id = hex::encode(&hmac_sha256(&key, b"glidepath fingerprint key id")[..4]);
        FingerprintKey { key, id }
    }

    /// The key of this user on this machine (created on first use).
    pub fn for_user() -> Result<Self, String> {
        Self::load_or_create(&state_dir()?.join(Self::FILE))
    }

    /// Read the key at `path`, or create it (0600, in a 0700 directory).
    /// A key file that others may read is refused.
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        use std::io::{Read, Write};
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        let shown = path.display();
        if !path.exists() {
            let dir = path.parent().unwrap_or(Path::new("."));
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let mut key = [0u8; 32];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut key))
                .map_err(|e| format!("cannot read /dev/urandom: {e}"))?;
            // written aside, then linked into place: a concurrent run sees
            // either no key or the whole key, and the first one wins
            let tmp = dir.join(format!(".{}.{}.tmp", Self::FILE, std::process::id()));
            let written = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .and_then(|mut f| {
                    f.write_all(format!("{}\n", hex::encode(key)).as_bytes())?;
                    f.sync_all()
                });
            let linked = written.and_then(|()| match std::fs::hard_link(&tmp, path) {
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
                other => other,
            });
            let _ = std::fs::remove_file(&tmp);
            linked.map_err(|e| format!("cannot create {shown}: {e}"))?;
        }
        let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: {e}"))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(format!(
                "{shown} may be read by others (mode {mode:o}): chmod 600 it"
            ));
        }
        let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
        let key: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                format!("{shown} is not a fingerprint key (64 hex digits); remove it to create a new one")
            })?;
        Ok(Self::from_bytes(key))
    }

    /// The fingerprint of `name`'s value.
    pub fn fingerprint(&self, name: &str, value: &[u8]) -> String {
        let mut msg = Vec::with_capacity(name.len() + 1 + value.len());
        msg.extend_from_slice(name.as_bytes());
        msg.push(0);
        msg.extend_from_slice(value);
        format!(
            "hmac-sha256:{}:{}",
            self.id,
            hex::encode(hmac_sha256(&self.key, &msg))
        )
    }
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

/// What a TOML value is, for a diagnostic: "a table", "an array", …
fn shape(v: &toml_span::Value<'_>) -> &'static str {
    use toml_span::value::ValueInner as V;
    match v.as_ref() {
        V::Table(_) => "a table",
        V::Array(a) if !a.is_empty() && a.iter().all(|i| i.as_table().is_some()) => {
            "an array of tables"
        }
        V::Array(_) => "an array",
        V::String(_) => "a string",
        V::Integer(_) => "an integer",
        V::Float(_) => "a float",
        V::Boolean(_) => "a boolean",
    }
}

/// `[gates.KEY]`, which must be one table: `[[gates.KEY]]` or `KEY = 1`
/// is a diagnostic naming the right shape.
fn one_table<'t, 'de>(
    r: &mut Reader,
    t: &'t Table<'de>,
    key: &str,
) -> Option<(&'t Table<'de>, Span)> {
    let v = t.get(key)?;
    if let Some(tt) = v.as_table() {
        return Some((tt, v.span));
    }
    r.err(
        v.span,
        format!(
            "wrong shape for [gates.{key}]: expected one table, found {}",
            shape(v)
        ),
        "expected a table",
        Some(format!(
            "write [gates.{key}] (a single table, single brackets) with its keys on the lines below"
        )),
    );
    None
}

/// `[[gates.KEY]]`, which must be an array of tables. A single table
/// (`[gates.KEY]`, the easy mistake) is a diagnostic, and is still read so
/// that its own problems are reported in the same pass; any other shape, or
/// an entry that is not a table, is a diagnostic too. Nothing is ignored.
fn tables<'t, 'de>(
    r: &mut Reader,
    t: &'t Table<'de>,
    key: &str,
    example: &str,
) -> Vec<(&'t Table<'de>, Span)> {
    let Some(v) = t.get(key) else {
        return vec![];
    };
    let hint = format!(
        "write [[gates.{key}]] (an array of tables), one per entry: [[gates.{key}]] {example}"
    );
    if let Some(tt) = v.as_table() {
        r.err(
            v.span,
            format!("[gates.{key}] is a single table, but {key} entries are an array of tables"),
            format!("write [[gates.{key}]] (an array of tables)"),
            Some(hint),
        );
        return vec![(tt, v.span)];
    }
    let Some(items) = v.as_array() else {
        r.err(
            v.span,
            format!(
                "wrong shape for `{key}` in [gates]: expected an array of tables ([[gates.{key}]]), found {}",
                shape(v)
            ),
            "expected [[gates.…]] tables",
            Some(hint),
        );
        return vec![];
    };
    let mut out = Vec::new();
    for item in items {
        match item.as_table() {
            Some(it) => out.push((it, item.span)),
            None => r.err(
                item.span,
                format!(
                    "wrong shape for an entry of `{key}` in [gates]: expected a table, found {}",
                    shape(item)
                ),
                "expected a table",
                Some(hint.clone()),
            ),
        }
    }
    out
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
    if let Some((ct, cat)) = one_table(r, t, "config") {
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
                r.diags.push(d);
            }
            env_clear.push(n);
        }
        if let Some((m, s)) = matrix {
            let p = dir.join(&m);
            match read_matrix(&p) {
                Err(e) if p.exists() => r.err(s, format!("unreadable deprecation matrix: {e}"), "the matrix", Some("[[key]] name = \"db.pool_size\", deprecated_in = \"1.0.9\", removed_in = \"1.0.10\", replacement = \"…\"".into())),
                Err(_) => r.err(s, format!("deprecation matrix `{m}` not found"), format!("looked for {}", p.display()), None),
                Ok(_) => {
                    g.config = Some(ConfigGate {
                        matrix: p,
                        files,
                        env,
                        env_clear,
                    })
                }
            }
        }
    }
    if let Some((st, sat)) = one_table(r, t, "signature") {
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
    if let Some((m, mat)) = one_table(r, t, "migrations") {
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
    {
        for (ft, item_span) in tables(r, t, "freeze", "name = \"holiday freeze\"") {
            r.known_keys(
                ft,
                "[[gates.freeze]]",
                &["name", "from", "to", "weekdays", "start", "end", "timezone"],
            );
            let name = r
                .req_str(
                    ft,
                    item_span,
                    "[[gates.freeze]]",
                    "name",
                    "\"holiday freeze\"",
                )
                .map_or_else(|| "freeze".into(), |x| x.0);
            if ft.contains_key("from") || ft.contains_key("to") {
                let ts = |r: &mut Reader, key: &str| {
                    let (s, sp) = r.req_str(
                        ft,
                        item_span,
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
                            item_span,
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
                    let (s, sp) = r.req_str(ft, item_span, "[[gates.freeze]]", key, ex)?;
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
                    item_span,
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
                        item_span,
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
    if let Some((b, bat)) = one_table(r, t, "backup") {
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
    {
        for (ct, item_span) in tables(r, t, "custom", "name = \"change ticket approved\"") {
            r.known_keys(ct, "[[gates.custom]]", &["name", "command", "timeout"]);
            let name = r.req_str(
                ct,
                item_span,
                "[[gates.custom]]",
                "name",
                "\"change ticket approved\"",
            );
            let cmd = r.req_str(
                ct,
                item_span,
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
    if let Some(ConfigGate { matrix, env, .. }) = &g.config {
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

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // test case 1
        assert_eq!(
            hex::encode(hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // test case 2
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // test case 6: a key longer than the block
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn the_fingerprint_key_is_created_once_private_and_refused_when_others_can_read_it() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp
            .path()
            .join("state/glidepath")
            .join(FingerprintKey::FILE);
        let a = FingerprintKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the key file is private");
        let dmode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dmode, 0o700);
        let b = FingerprintKey::load_or_create(&path).unwrap();
        assert_eq!(a.key, b.key, "the same key on the next run");
        assert_eq!(a.fingerprint("X", b"v"), b.fingerprint("X", b"v"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = FingerprintKey::load_or_create(&path).unwrap_err();
        assert!(
            e.contains("may be read by others") && e.contains("chmod 600"),
            "{e}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "short\n").unwrap();
        let e = FingerprintKey::load_or_create(&path).unwrap_err();
        assert!(e.contains("not a fingerprint key"), "{e}");
    }

    #[test]
    fn env_values_are_fingerprinted_unless_marked_clear() {
        let secrets = [
            ("DB_PASS", "hunter2"),
            ("DATABASE_URL", "postgres://app:pw@db/app"),
            ("SENTRY_DSN", "https://abc@sentry.example/1"),
            ("APP_SESSION_COOKIE", "c00kie"),
        ];
        let names: Vec<String> = secrets
            .iter()
            .map(|x| x.0.to_string())
            .chain(["LOG_LEVEL".to_string(), "UNSET_ONE".to_string()])
            .collect();
        let clear = vec!["LOG_LEVEL".to_string()];
        let key = FingerprintKey::from_bytes([7; 32]);
        let env = |overrides: &[(&str, &str)]| {
            let mut m: std::collections::HashMap<String, String> = secrets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            m.insert("LOG_LEVEL".into(), "debug".into());
            for (k, v) in overrides {
                m.insert(k.to_string(), v.to_string());
            }
            move |n: &str| m.get(n).map(std::ffi::OsString::from)
        };
        let one = snapshot_env(&names, &clear, Ok(&key), env(&[]));
        let text = format!("{one:?}");
        for (_, v) in secrets {
            assert!(!text.contains(v), "{v} in clear: {text}");
        }
        for (n, v) in &one[..4] {
            assert!(
                v.starts_with(&format!("hmac-sha256:{}:", key.id)),
                "{n}: {v}"
            );
            assert_eq!(v.len(), "hmac-sha256:".len() + 8 + 1 + 64, "{v}");
        }
        assert_eq!(one[4], ("LOG_LEVEL".into(), "debug".into()));
        assert_eq!(one[5], ("UNSET_ONE".into(), "<unset>".into()));
        // stable: same values, same fingerprints
        assert_eq!(snapshot_env(&names, &clear, Ok(&key), env(&[])), one);
        // a change shows, and only for the changed name
        let two = snapshot_env(&names, &clear, Ok(&key), env(&[("DB_PASS", "hunter3")]));
        assert_ne!(two[0], one[0]);
        assert_eq!(two[1..], one[1..]);
        // the same value under two names gives two fingerprints
        assert_ne!(key.fingerprint("A", b"same"), key.fingerprint("B", b"same"));
        // another key (another machine) cannot be compared, nor guessed without the key
        let other = FingerprintKey::from_bytes([8; 32]);
        assert_ne!(
            snapshot_env(&names, &clear, Ok(&other), env(&[]))[0],
            one[0]
        );
        // no key: nothing recorded, never the value
        let why = "no state directory".to_string();
        let none = snapshot_env(&names, &clear, Err(&why), env(&[]));
        assert_eq!(none[0].1, "<not recorded: no state directory>");
        assert_eq!(none[4].1, "debug");
    }
}
