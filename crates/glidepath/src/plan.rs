//! The plan file: parsing and validation (the low stage of `run`, no I/O
//! besides reading the file and checking the artifact exists). Every problem
//! is collected, not just the first, each with its span and a hint.

use crate::diag::{Diag, Report, Severity};
use glidepath_core::{
    plan_groups, BatchSize, CheckSpec, DrainTimeoutPolicy, InconclusivePolicy, RolloutSpec,
    WindowSpec,
};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml_span::value::{Table, Value, ValueInner};
use toml_span::Span;

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub name: String,
    pub address: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Release {
    pub version: String,
    pub artifact: PathBuf,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BalancerCfg {
    None,
    /// Drain/ready endpoints over HTTP and a JSON state endpoint.
    Http {
        drain: String,
        ready: String,
        state: String,
        timeout: Duration,
    },
    /// HAProxy's runtime API over a unix socket or TCP.
    Haproxy {
        socket: Option<PathBuf>,
        address: Option<String>,
        backend: String,
        /// node name → HAProxy server name (default: the node name).
        servers: std::collections::BTreeMap<String, String>,
        /// A URL through the frontend, checked after re-enabling.
        frontend: Option<String>,
        timeout: Duration,
    },
    /// Shell command templates.
    Command {
        drain: String,
        enable: String,
        /// Prints the node's active connections (a number).
        active: String,
        /// Exit 0 when the node is in rotation.
        check: Option<String>,
        timeout: Duration,
    },
}

impl BalancerCfg {
    pub fn kind(&self) -> &'static str {
        match self {
            BalancerCfg::None => "none",
            BalancerCfg::Http { .. } => "http",
            BalancerCfg::Haproxy { .. } => "haproxy",
            BalancerCfg::Command { .. } => "command",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum DeployKind {
    /// This machine's filesystem.
    Local,
    /// The system OpenSSH client, with connection reuse.
    Ssh {
        /// Host template (default `{host}`: the address without its port).
        host: String,
        user: Option<String>,
        port: Option<u16>,
        identity_file: Option<PathBuf>,
        /// Extra `ssh` arguments (e.g. `-o UserKnownHostsFile=…`).
        options: Vec<String>,
    },
    /// Shell command templates for every step.
    Command {
        current: String,
        stage: String,
        switch: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeployCfg {
    pub kind: DeployKind,
    pub install_dir: String,
    pub keep_releases: usize,
    pub restart: String,
    pub restart_timeout: Duration,
    /// Timeout of every other deploy command (ssh/command deployers), and
    /// of local staging (the copy and its hash).
    pub command_timeout: Duration,
    /// Preflight: proves the restart target exists and the privileges work
    /// (e.g. `systemctl cat api`, `sudo -n true`); runs where `restart` runs.
    pub check: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HealthCfg {
    pub http: Option<String>,
    /// Substring the HTTP body must contain.
    pub body: Option<String>,
    pub tcp: Option<String>,
    pub command: Option<String>,
    pub version_url: Option<String>,
    pub deadline: Duration,
    pub interval: Duration,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CheckKind {
    /// Share of requests whose `label` starts with `prefix` (e.g. 5xx codes).
    ErrorRatio {
        metric: String,
        label: String,
        prefix: String,
    },
    /// A quantile of a histogram (seconds).
    LatencyQuantile { metric: String, quantile: f64 },
    /// PromQL instant queries: the value, and the sample size.
    Query {
        query: String,
        samples_query: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckCfg {
    pub spec: CheckSpec,
    pub kind: CheckKind,
}

/// Where a secret comes from; its value is read at use and never logged.
#[derive(Debug, Clone, PartialEq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl SecretRef {
    pub fn read(&self) -> Result<String, String> {
        match self {
            SecretRef::Env(v) => {
                std::env::var(v).map_err(|_| format!("environment variable {v} is not set"))
            }
            SecretRef::File(p) => std::fs::read_to_string(p)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|e| format!("cannot read secret file {}: {e}", p.display())),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    Bearer(SecretRef),
    Basic { user: String, password: SecretRef },
}

#[derive(Debug, Clone, PartialEq)]
pub enum SliSource {
    Scrape { url: String },
    Prometheus { url: String, auth: Option<Auth> },
}

#[derive(Debug, Clone, PartialEq)]
pub struct SliCfg {
    pub source: SliSource,
    pub timeout: Duration,
    pub checks: Vec<CheckCfg>,
    /// Metrics source failures pause the window (true) or roll back.
    pub pause_on_error: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Strategy {
    pub canary: Vec<String>,
    pub batch: BatchSize,
    pub max_unavailable: Option<usize>,
    pub sli_window: Option<Duration>,
    pub probe_interval: Duration,
    pub pause_after: Vec<usize>,
    pub drain_timeout: Duration,
    pub on_drain_timeout: DrainTimeoutPolicy,
    /// `retry = { backoff, max_backoff, deadline }`: how infrastructure
    /// faults are waited out.
    pub retry: glidepath_core::RetrySpec,
}

/// A validated plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub path: PathBuf,
    pub dir: PathBuf,
    pub source: String,
    pub hash: String,
    pub release: Release,
    pub fleet_name: String,
    pub nodes: Vec<Node>,
    pub strategy: Strategy,
    pub balancers: Vec<BalancerCfg>,
    pub deploy: DeployCfg,
    pub health: HealthCfg,
    pub sli: Option<SliCfg>,
    pub rollback_on: Vec<String>,
    /// The last-known-good release as an artifact, for nodes whose
    /// `releases/` no longer holds it.
    pub rollback_release: Option<Release>,
    pub journal: Option<PathBuf>,
    pub gates: crate::gates::GatesCfg,
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read plan {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plan {} is invalid ({} problem(s))", .0.file, .0.diags.iter().filter(|d| d.severity == Severity::Error).count())]
    Invalid(Report),
}

/// Parse a duration such as `250ms`, `30s`, `5m`, `1h`, `1m30s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let mut total = 0u128;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("expected a number at `{rest}`"));
        }
        let n: u128 = rest[..digits]
            .parse()
            .map_err(|_| "number too large".to_string())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        let ms = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "" => return Err(format!("`{s}` has no unit")),
            u => return Err(format!("unknown unit `{u}`")),
        };
        total += n * ms;
        rest = &rest[unit_len..];
    }
    Ok(Duration::from_millis(total as u64))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Placeholders a template may use.
pub const PLACEHOLDERS: &[&str] = &[
    "node",
    "address",
    "host",
    "version",
    "install_dir",
    "plan_dir",
];

/// The host part of an address (`10.0.0.1:8080` → `10.0.0.1`, `[::1]:80` → `::1`).
pub fn host_of(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match address.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') => h,
        _ => address,
    }
}

/// Fill `{node}`, `{address}`, … in a template, as they are: for URLs,
/// addresses and paths, never for a shell command (that is
/// [`render_shell`]). `${VAR}` is left alone.
pub fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = template.to_string();
    for (k, v) in vars {
        out = out.replace(&format!("{{{k}}}"), v);
    }
    out
}

/// Quote for a POSIX shell: `'…'`, a `'` inside written `'\''`.
pub fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Fill a shell command template: every value goes in single-quoted, so
/// data never becomes shell. The quoting follows where the placeholder
/// stands: bare (`cat {install_dir}/pid`), inside `"…"` or `'…'` (the quote
/// is closed around the value and reopened), or inside `$(…)`/backquotes.
/// `${VAR}` is left to the shell; unknown `{…}` are left as they are.
pub fn render_shell(template: &str, vars: &[(&str, &str)]) -> String {
    #[derive(Clone, Copy, PartialEq)]
    enum Ctx {
        Plain,
        Single,
        Double,
        /// `$(…)`, with its open parentheses
        Sub(usize),
        Tick,
    }
    let b = template.as_bytes();
    let mut stack = vec![Ctx::Plain];
    let mut out: Vec<u8> = Vec::with_capacity(b.len() + 16);
    let mut i = 0;
    while i < b.len() {
        let ctx = *stack.last().expect("never empty");
        let c = b[i];
        if c == b'{' && (i == 0 || b[i - 1] != b'$') {
            if let Some(len) = template[i + 1..].find('}') {
                let name = &template[i + 1..i + 1 + len];
                if let Some((_, v)) = vars.iter().find(|(k, _)| *k == name) {
                    let q = sq(v);
                    match ctx {
                        Ctx::Single => out.extend(format!("'{q}'").bytes()),
                        Ctx::Double => out.extend(format!("\"{q}\"").bytes()),
                        _ => out.extend(q.bytes()),
                    }
                    i += len + 2;
                    continue;
                }
            }
        }
        let next = b.get(i + 1).copied();
        let mut take = 1;
        match ctx {
            Ctx::Single => {
                if c == b'\'' {
                    stack.pop();
                }
            }
            Ctx::Double => match c {
                b'\\' => take = 2,
                b'"' => {
                    stack.pop();
                }
                b'$' if next == Some(b'(') => {
                    stack.push(Ctx::Sub(0));
                    take = 2;
                }
                b'`' => stack.push(Ctx::Tick),
                _ => {}
            },
            Ctx::Plain | Ctx::Sub(_) | Ctx::Tick => match c {
                b'\\' => take = 2,
                b'\'' => stack.push(Ctx::Single),
                b'"' => stack.push(Ctx::Double),
                b'$' if next == Some(b'(') => {
                    stack.push(Ctx::Sub(0));
                    take = 2;
                }
                b'`' if ctx == Ctx::Tick => {
                    stack.pop();
                }
                b'`' => stack.push(Ctx::Tick),
                b'(' => {
                    if let Some(Ctx::Sub(n)) = stack.last_mut() {
                        *n += 1;
                    }
                }
                b')' => match stack.last_mut() {
                    Some(Ctx::Sub(0)) => {
                        stack.pop();
                    }
                    Some(Ctx::Sub(n)) => *n -= 1,
                    _ => {}
                },
                _ => {}
            },
        }
        let end = (i + take).min(b.len());
        out.extend_from_slice(&b[i..end]);
        i = end;
    }
    String::from_utf8(out).expect("copied from UTF-8 input and quoted UTF-8 values")
}

/// The placeholder values of every template, built in one place: `{node}`,
/// `{address}`, `{host}` and `{plan_dir}`, plus `{install_dir}`,
/// `{version}` (and `{artifact}`, `{sha256}`) where a step has them.
#[derive(Debug, Clone, PartialEq)]
pub struct Vars(Vec<(&'static str, String)>);

impl Vars {
    /// `{node}`, `{address}` and `{host}`: what every template of a node has.
    pub fn node(name: &str, address: &str) -> Vars {
        Vars(vec![
            ("node", name.to_string()),
            ("address", address.to_string()),
            ("host", host_of(address).to_string()),
        ])
    }

    /// Add (or replace) one value.
    pub fn with(mut self, key: &'static str, value: impl Into<String>) -> Vars {
        let value = value.into();
        match self.0.iter_mut().find(|(k, _)| *k == key) {
            Some(slot) => slot.1 = value,
            None => self.0.push((key, value)),
        }
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn pairs(&self) -> Vec<(&str, &str)> {
        self.0.iter().map(|(k, v)| (*k, v.as_str())).collect()
    }

    /// [`render`] with these values (URLs, addresses, paths).
    pub fn fill(&self, template: &str) -> String {
        render(template, &self.pairs())
    }

    /// [`render_shell`] with these values (shell commands).
    pub fn shell(&self, template: &str) -> String {
        render_shell(template, &self.pairs())
    }
}

/// Longest node name or version accepted.
pub const MAX_NAME_LEN: usize = 128;

fn check_word(what: &str, s: &str, extra: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if s.len() > MAX_NAME_LEN {
        return Err(format!("{} bytes long (at most {MAX_NAME_LEN})", s.len()));
    }
    if !s.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(format!("{s:?} must start with a letter or a digit"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c) || extra.contains(*c)))
    {
        return Err(format!(
            "{s:?} contains {c:?}: only letters, digits and {}are allowed",
            "._-"
                .chars()
                .chain(extra.chars())
                .map(|c| format!("`{c}` "))
                .collect::<String>()
        ));
    }
    Ok(())
}

/// A node name: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 128 bytes (so never
/// `.` or `..`): it becomes a directory name and a command argument.
pub fn check_node_name(s: &str) -> Result<(), String> {
    check_word("node name", s, "")
}

/// A release version: `[A-Za-z0-9][A-Za-z0-9._+~-]*`, at most 128 bytes
/// (no `/`, space, newline or shell character; never `.` or `..`). The
/// release a node reports is checked against it before any use.
pub fn check_version(s: &str) -> Result<(), String> {
    check_word("version", s, "+~")
}

/// A node address: `host` or `host:port`, where host is a hostname
/// (letters, digits, `-`, `_`, dot-separated labels), an IPv4 address, or
/// an IPv6 address in brackets (`[::1]:8080`), and port is 1..65535.
pub fn check_address(s: &str) -> Result<(), String> {
    let bad = |why: String| Err(why);
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return bad("`[` without a closing `]`".into());
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return bad(format!("`{h}` is not an IPv6 address"));
        }
        match after {
            "" => (None, None),
            p => match p.strip_prefix(':') {
                Some(p) => (None, Some(p)),
                None => return bad("expected `:port` after `]`".into()),
            },
        }
    } else {
        match s.split_once(':') {
            None => (Some(s), None),
            Some((h, p)) if !p.contains(':') => (Some(h), Some(p)),
            Some(_) => return bad("an IPv6 address goes in brackets: [::1]:8080".into()),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) || p.len() > 5 {
            return bad(format!("port `{p}` is not a number"));
        }
        if !(1..=65535).contains(&p.parse::<u32>().unwrap_or(0)) {
            return bad(format!("port {p} is out of range (1..65535)"));
        }
    }
    if let Some(h) = host {
        if h.is_empty() {
            return bad("the host is empty".into());
        }
        if h.len() > 253 {
            return bad("the host name is longer than 253 bytes".into());
        }
        let labels: Vec<&str> = h.split('.').collect();
        let all_numeric = labels
            .iter()
            .all(|l| !l.is_empty() && l.bytes().all(|c| c.is_ascii_digit()));
        if all_numeric && h.parse::<std::net::Ipv4Addr>().is_err() {
            return bad(format!("`{h}` is not an IPv4 address"));
        }
        for l in labels {
            if l.is_empty() || l.len() > 63 {
                return bad(format!("`{h}` has an empty or over-long label"));
            }
            if l.starts_with('-') || l.ends_with('-') {
                return bad(format!("a label of `{h}` starts or ends with `-`"));
            }
            if let Some(c) = l
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            {
                return bad(format!(
                    "{c:?} in the host: a host name has letters, digits, `-`, `_` and dots"
                ));
            }
        }
    }
    Ok(())
}

/// Cheap check used while validating `[release] storage_impacting`.
fn source_has_backup_gate(source: &str) -> bool {
    source.lines().any(|l| l.trim() == "[gates.backup]")
}

pub(crate) fn did_you_mean<'a>(
    word: &str,
    options: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    options
        .into_iter()
        .map(|o| (strsim::jaro_winkler(word, o), o))
        .filter(|(s, _)| *s > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, o)| format!("did you mean `{o}`?"))
}

pub(crate) fn sp(s: Span) -> (usize, usize) {
    (s.start, s.end)
}

/// Collects diagnostics while reading the spanned TOML tree.
pub(crate) struct Reader<'s> {
    pub(crate) src: &'s str,
    pub(crate) diags: Vec<Diag>,
}

impl<'s> Reader<'s> {
    pub(crate) fn err(
        &mut self,
        span: Span,
        msg: impl Into<String>,
        label: impl Into<String>,
        hint: Option<String>,
    ) {
        let mut d = Diag::error(msg, sp(span), label);
        d.hint = hint;
        self.diags.push(d);
    }

    /// Report keys that are not in `allowed`.
    pub(crate) fn known_keys(&mut self, t: &Table<'_>, section: &str, allowed: &[&str]) {
        for k in t.keys() {
            if !allowed.contains(&k.name.as_ref()) {
                let hint = did_you_mean(&k.name, allowed.iter().copied())
                    .unwrap_or_else(|| format!("known keys in {section}: {}", allowed.join(", ")));
                self.err(
                    k.span,
                    format!("unknown key `{}` in {section}", k.name),
                    "unknown key",
                    Some(hint),
                );
            }
        }
    }

    pub(crate) fn type_err(&mut self, v: &Value<'_>, key: &str, expected: &str, example: &str) {
        let found = v.as_ref().type_str();
        self.err(
            v.span,
            format!("wrong type for `{key}`: expected {expected}, found {found}"),
            format!("expected {expected}"),
            Some(format!("for example: {key} = {example}")),
        );
    }

    pub(crate) fn missing(&mut self, at: Span, section: &str, key: &str, example: &str) {
        // Point at the section header's line, not the whole table.
        let end = self.src[at.start.min(self.src.len())..]
            .find('\n')
            .map_or(at.end, |i| at.start + i);
        self.err(
            Span::new(at.start, end.max(at.start)),
            format!("missing `{key}` in {section}"),
            format!("{section} needs `{key}`"),
            Some(format!("add: {key} = {example}")),
        );
    }

    pub(crate) fn str(
        &mut self,
        t: &Table<'_>,
        key: &str,
        example: &str,
    ) -> Option<(String, Span)> {
        let v = t.get(key)?;
        match v.as_str() {
            Some(s) => Some((s.to_string(), v.span)),
            None => {
                self.type_err(v, key, "a string", example);
                None
            }
        }
    }

    pub(crate) fn req_str(
        &mut self,
        t: &Table<'_>,
        at: Span,
        section: &str,
        key: &str,
        example: &str,
    ) -> Option<(String, Span)> {
        if t.get(key).is_none() {
            self.missing(at, section, key, example);
            return None;
        }
        self.str(t, key, example)
    }

    pub(crate) fn int(
        &mut self,
        t: &Table<'_>,
        key: &str,
        min: i64,
        example: &str,
    ) -> Option<(i64, Span)> {
        let v = t.get(key)?;
        match v.as_integer() {
            Some(i) if i >= min => Some((i, v.span)),
            Some(i) => {
                self.err(
                    v.span,
                    format!("`{key}` = {i} is out of range"),
                    format!("must be at least {min}"),
                    Some(format!("for example: {key} = {example}")),
                );
                None
            }
            None => {
                self.type_err(v, key, "an integer", example);
                None
            }
        }
    }

    pub(crate) fn num(&mut self, t: &Table<'_>, key: &str) -> Option<(f64, Span)> {
        let v = t.get(key)?;
        match v.as_ref() {
            ValueInner::Float(f) => Some((*f, v.span)),
            ValueInner::Integer(i) => Some((*i as f64, v.span)),
            _ => {
                self.type_err(v, key, "a number", "0.5");
                None
            }
        }
    }

    pub(crate) fn duration(
        &mut self,
        t: &Table<'_>,
        key: &str,
        default: Option<Duration>,
    ) -> Option<Duration> {
        let Some(v) = t.get(key) else {
            return default;
        };
        let Some(s) = v.as_str() else {
            self.type_err(v, key, "a duration string", "\"30s\"");
            return None;
        };
        match parse_duration(s) {
            Ok(d) if d.is_zero() => {
                self.err(
                    v.span,
                    format!("`{key}` must be longer than 0"),
                    "zero duration",
                    Some("use e.g. \"500ms\" or \"30s\"".into()),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    v.span,
                    format!("invalid duration `{s}` for `{key}`: {e}"),
                    "not a duration",
                    Some("write a number with a unit: ms, s, m or h, e.g. \"30s\", \"1m30s\", \"250ms\"".into()),
                );
                None
            }
        }
    }

    pub(crate) fn table<'t, 'de>(
        &mut self,
        root: &'t Table<'de>,
        key: &str,
    ) -> Option<(&'t Table<'de>, Span)> {
        let v = root.get(key)?;
        match v.as_table() {
            Some(t) => Some((t, v.span)),
            None => {
                self.type_err(v, key, "a table", &format!("[{key}] section"));
                None
            }
        }
    }

    pub(crate) fn str_list(
        &mut self,
        t: &Table<'_>,
        key: &str,
        example: &str,
    ) -> Option<Vec<(String, Span)>> {
        let v = t.get(key)?;
        let Some(arr) = v.as_array() else {
            self.type_err(v, key, "an array of strings", example);
            return None;
        };
        let mut out = Vec::new();
        for item in arr {
            match item.as_str() {
                Some(s) => out.push((s.to_string(), item.span)),
                None => self.type_err(item, key, "a string", example),
            }
        }
        Some(out)
    }

    pub(crate) fn template(&mut self, s: &str, span: Span, key: &str, allowed: &[&str]) {
        let bytes = s.as_bytes();
        let mut i = 0;
        while let Some(off) = s[i..].find('{') {
            let start = i + off;
            i = start + 1;
            if start > 0 && bytes[start - 1] == b'$' {
                continue; // ${VAR} belongs to the shell
            }
            let Some(len) = s[start + 1..].find('}') else {
                break;
            };
            let name = &s[start + 1..start + 1 + len];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                continue;
            }
            if !allowed.contains(&name) {
                let hint = did_you_mean(name, allowed.iter().copied()).unwrap_or_else(|| {
                    format!(
                        "placeholders available here: {}",
                        allowed
                            .iter()
                            .map(|p| format!("{{{p}}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                });
                self.err(
                    span,
                    format!("unknown placeholder `{{{name}}}` in `{key}`"),
                    "unknown placeholder",
                    Some(hint),
                );
            }
        }
    }
}

/// Read and validate a plan file.
pub fn load(path: &Path) -> Result<(Plan, Report), PlanError> {
    let source = std::fs::read_to_string(path).map_err(|e| PlanError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    // Resolve relative paths against the plan's directory, made absolute so
    // that `resume` from another working directory finds the same files.
    let dir = path
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    parse(path, &source, &dir)
}

/// Validate plan text. `dir` resolves relative paths (artifact, journal).
pub fn parse(path: &Path, source: &str, dir: &Path) -> Result<(Plan, Report), PlanError> {
    let file = path.display().to_string();
    let mut r = Reader {
        src: source,
        diags: Vec::new(),
    };
    let report = |diags: Vec<Diag>| Report {
        file: file.clone(),
        source: source.to_string(),
        diags,
    };
    let mut doc = match toml_span::parse(source) {
        Ok(d) => d,
        Err(e) => {
            let msg = e.to_string();
            let d = Diag::error(format!("TOML syntax error: {msg}"), sp(e.span), "here")
                .hint("check quotes, brackets and `key = value` pairs on this line");
            return Err(PlanError::Invalid(report(vec![d])));
        }
    };
    let root_span = doc.span;
    let root = match doc.take() {
        ValueInner::Table(t) => t,
        _ => unreachable!("a TOML document is a table"),
    };
    r.known_keys(
        &root,
        "the plan",
        &[
            "release", "fleet", "strategy", "balancer", "deploy", "health", "sli", "rollback",
            "journal", "system", "gates",
        ],
    );
    let head = Span::new(0, 0);
    let need = |r: &mut Reader, key: &str, example: &str| {
        let d = Diag::error(
            format!("missing [{key}] section"),
            (0, 0),
            "the plan starts here",
        )
        .hint(example.to_string());
        r.diags.push(d);
    };

    // [release]
    let mut release = None;
    match r.table(&root, "release") {
        None if !root.contains_key("release") => need(
            &mut r,
            "release",
            "add [release] with version, artifact and sha256",
        ),
        None => {}
        Some((t, at)) => {
            r.known_keys(
                t,
                "[release]",
                &["version", "artifact", "sha256", "storage_impacting"],
            );
            if t.get("storage_impacting").and_then(|v| v.as_bool()) == Some(true)
                && !source_has_backup_gate(source)
            {
                let s = t.get("storage_impacting").map(|v| v.span).unwrap_or(at);
                r.err(s, "a storage-impacting release needs a backup gate", "no [gates.backup]", Some("add [gates.backup] with file = … and max_age = \"24h\" (or command = …) proving a fresh backup".into()));
            }
            let version = r.req_str(t, at, "[release]", "version", "\"1.0.10\"");
            let artifact = r.req_str(t, at, "[release]", "artifact", "\"dist/api-1.0.10\"");
            let sha = r.req_str(t, at, "[release]", "sha256", "\"<64 hex digits>\"");
            if let Some((v, s)) = &version {
                if let Err(why) = check_version(v) {
                    r.err(
                        *s,
                        format!("invalid version: {why}"),
                        "not a version",
                        Some("a version names a directory and is passed to commands: use letters, digits, `.`, `-`, `_`, `+`, `~`, such as \"1.0.10\"".into()),
                    );
                }
            }
            let mut art_path = None;
            if let Some((a, s)) = &artifact {
                let p = dir.join(a);
                if !p.exists() {
                    r.err(
                        *s,
                        format!("artifact `{a}` not found"),
                        format!("looked for {}", p.display()),
                        Some("paths are relative to the plan file's directory".into()),
                    );
                } else {
                    art_path = Some(p);
                }
            }
            if let Some((h, s)) = &sha {
                if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                    r.err(*s, "`sha256` must be 64 hex digits", format!("{} characters", h.len()), Some("compute it with: sha256sum FILE, or for a directory the recipe in the README (\"Artifacts\"); `glidepath validate` prints the artifact's sha256 when it differs".into()));
                }
            }
            if let (Some((v, _)), Some(p), Some((h, _))) = (version, art_path, sha) {
                release = Some(Release {
                    version: v,
                    artifact: p,
                    sha256: h.to_lowercase(),
                });
            }
        }
    }

    // [fleet]
    let mut nodes: Vec<Node> = Vec::new();
    let mut node_spans: Vec<Span> = Vec::new();
    let mut fleet_name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "fleet".into());
    match r.table(&root, "fleet") {
        None if !root.contains_key("fleet") => need(
            &mut r,
            "fleet",
            "add [fleet] with nodes = [ { name = \"api-1\", address = \"10.0.0.11:8080\" } ]",
        ),
        None => {}
        Some((t, at)) => {
            r.known_keys(t, "[fleet]", &["name", "nodes"]);
            if let Some((n, _)) = r.str(t, "name", "\"api\"") {
                fleet_name = n;
            }
            match t.get("nodes") {
                None => r.missing(at, "[fleet]", "nodes", "[ { name = \"api-1\", address = \"10.0.0.11:8080\" } ]"),
                Some(v) => match v.as_array() {
                    None => r.type_err(v, "nodes", "an array of tables", "[ { name = \"api-1\", address = \"10.0.0.11:8080\" } ]"),
                    Some(arr) if arr.is_empty() => r.err(v.span, "the fleet has no nodes", "empty", Some("list at least one node: { name = \"api-1\", address = \"10.0.0.11:8080\" }".into())),
                    Some(arr) => {
                        for item in arr {
                            let Some(nt) = item.as_table() else {
                                r.type_err(item, "nodes", "a table { name, address }", "{ name = \"api-1\", address = \"10.0.0.11:8080\" }");
                                continue;
                            };
                            r.known_keys(nt, "a fleet node", &["name", "address"]);
                            let name = r.req_str(nt, item.span, "a fleet node", "name", "\"api-1\"");
                            let addr = r.req_str(nt, item.span, "a fleet node", "address", "\"10.0.0.11:8080\"");
                            if let (Some((n, ns)), Some((a, as_))) = (name, addr) {
                                if let Err(why) = check_node_name(&n) {
                                    r.err(ns, format!("invalid node name: {why}"), "not a node name", Some("node names become directory names, command arguments and API paths: start with a letter or digit, then letters, digits, `.`, `-`, `_`".into()));
                                } else if let Err(why) = check_address(&a) {
                                    r.err(as_, format!("invalid address {a:?} of node `{n}`: {why}"), "not host:port", Some("write host:port, e.g. \"10.0.0.11:8080\", \"api-1.internal:8080\" or \"[fd00::11]:8080\"".into()));
                                } else if nodes.iter().any(|x| x.name == n) {
                                    r.err(ns, format!("duplicate node name `{n}`"), "already in the fleet", Some("each node needs a unique name".into()));
                                } else if nodes.iter().any(|x| x.address == a) {
                                    r.err(as_, format!("duplicate address `{a}`"), "another node has this address", Some("two nodes with one address would be drained and deployed twice".into()));
                                } else {
                                    nodes.push(Node { name: n, address: a });
                                    node_spans.push(item.span);
                                }
                            }
                        }
                    }
                },
            }
        }
    }
    let node_names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();

    // [strategy]
    let mut strategy = Strategy {
        canary: vec![],
        batch: BatchSize::Count(1),
        max_unavailable: None,
        sli_window: None,
        probe_interval: Duration::from_secs(10),
        pause_after: vec![],
        drain_timeout: Duration::from_secs(30),
        on_drain_timeout: DrainTimeoutPolicy::Fail,
        retry: glidepath_core::RetrySpec::default(),
    };
    let mut window_span = None;
    let mut probe_span = None;
    let mut pauses_raw = Vec::new();
    match r.table(&root, "strategy") {
        None if !root.contains_key("strategy") => need(
            &mut r,
            "strategy",
            "add [strategy] with canary = [\"api-1\"]",
        ),
        None => {}
        Some((t, at)) => {
            r.known_keys(
                t,
                "[strategy]",
                &[
                    "canary",
                    "batch_size",
                    "max_unavailable",
                    "sli_window",
                    "probe_interval",
                    "pauses",
                    "drain_timeout",
                    "on_drain_timeout",
                    "retry",
                ],
            );
            if let Some((rt, _)) = r.table(t, "retry") {
                strategy.retry = strategy_retry(&mut r, rt);
            }
            match r.str_list(t, "canary", "[\"api-1\"]") {
                None if !t.contains_key("canary") => r.missing(
                    at,
                    "[strategy]",
                    "canary",
                    "[\"api-1\"]  # the node(s) that get the release first",
                ),
                None => {}
                Some(list) if list.is_empty() => r.err(
                    t.get("canary").map(|v| v.span).unwrap_or(at),
                    "no canary node",
                    "empty",
                    Some("name at least one fleet node: the canary gets the release first".into()),
                ),
                Some(list) => {
                    for (c, s) in list {
                        if !nodes.is_empty() && !node_names.contains(&c.as_str()) {
                            let hint =
                                did_you_mean(&c, node_names.iter().copied()).unwrap_or_else(|| {
                                    format!("fleet nodes: {}", node_names.join(", "))
                                });
                            r.err(
                                s,
                                format!("canary node `{c}` is not in the fleet"),
                                "not in [fleet].nodes",
                                Some(hint),
                            );
                        } else if strategy.canary.contains(&c) {
                            r.err(
                                s,
                                format!("canary node `{c}` listed twice"),
                                "duplicate",
                                None,
                            );
                        } else {
                            strategy.canary.push(c);
                        }
                    }
                    if !nodes.is_empty() && strategy.canary.len() == nodes.len() && nodes.len() > 1
                    {
                        let s = t.get("canary").map(|v| v.span).unwrap_or(at);
                        r.diags.push(Diag {
                            severity: Severity::Warning,
                            message: "every node is a canary: there are no peers to protect".into(),
                            span: Some(sp(s)),
                            label: "all nodes".into(),
                            hint: Some("keep the canary a small part of the fleet".into()),
                        });
                    }
                }
            }
            if let Some(v) = t.get("batch_size") {
                match v.as_ref() {
                    ValueInner::Integer(i) if *i >= 1 => strategy.batch = BatchSize::Count(*i as usize),
                    ValueInner::Integer(i) => r.err(v.span, format!("`batch_size` = {i} is out of range"), "must be at least 1", Some("for example: batch_size = 2 or batch_size = \"25%\"".into())),
                    ValueInner::String(s) => match s.strip_suffix('%').map(|p| p.trim().parse::<u32>()) {
                        Some(Ok(p)) if (1..=100).contains(&p) => strategy.batch = BatchSize::Percent(p as u8),
                        Some(_) => r.err(v.span, format!("`batch_size` = \"{s}\" is out of range"), "a percentage from 1% to 100%", Some("for example: batch_size = \"25%\"".into())),
                        None => r.err(v.span, format!("invalid `batch_size` \"{s}\""), "not a count or a percentage", Some("write a count (batch_size = 2) or a percentage (batch_size = \"25%\")".into())),
                    },
                    _ => r.type_err(v, "batch_size", "an integer or a percentage string", "2"),
                }
            }
            if let Some((m, _)) = r.int(t, "max_unavailable", 1, "1") {
                strategy.max_unavailable = Some(m as usize);
            }
            strategy.sli_window = r.duration(t, "sli_window", None);
            window_span = t.get("sli_window").map(|v| v.span);
            if let Some(d) = r.duration(t, "probe_interval", Some(strategy.probe_interval)) {
                strategy.probe_interval = d;
            }
            probe_span = t.get("probe_interval").map(|v| v.span);
            if let Some(d) = r.duration(t, "drain_timeout", Some(strategy.drain_timeout)) {
                strategy.drain_timeout = d;
            }
            if let Some((p, s)) = r.str(t, "on_drain_timeout", "\"fail\"") {
                match p.as_str() {
                    "fail" => strategy.on_drain_timeout = DrainTimeoutPolicy::Fail,
                    "proceed" => strategy.on_drain_timeout = DrainTimeoutPolicy::Proceed,
                    _ => r.err(
                        s,
                        format!("unknown `on_drain_timeout` \"{p}\""),
                        "expected \"fail\" or \"proceed\"",
                        did_you_mean(&p, ["fail", "proceed"]),
                    ),
                }
            }
            pauses_raw = r
                .str_list(t, "pauses", "[\"after-canary\"]")
                .unwrap_or_default();
        }
    }

    // pauses need the group count
    let groups = plan_groups(
        &nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>(),
        &strategy.canary,
        strategy.batch,
    );
    for (p, s) in pauses_raw {
        let idx = if p == "after-canary" {
            Some(0)
        } else if let Some(n) = p
            .strip_prefix("after-batch-")
            .and_then(|n| n.parse::<usize>().ok())
        {
            if n == 0 || n >= groups.len() {
                r.err(
                    s,
                    format!("pause `{p}`: there is no batch {n}"),
                    format!(
                        "this plan has {} batch(es) after the canary",
                        groups.len().saturating_sub(1)
                    ),
                    None,
                );
                None
            } else {
                Some(n)
            }
        } else {
            r.err(
                s,
                format!("unknown pause point `{p}`"),
                "not a pause point",
                Some("use \"after-canary\" or \"after-batch-N\"".into()),
            );
            None
        };
        if let Some(i) = idx {
            strategy.pause_after.push(i);
        }
    }

    // [balancer] or [[balancer]] (several balancers per node)
    let mut balancers = Vec::new();
    match root.get("balancer") {
        None => need(
            &mut r,
            "balancer",
            "add [balancer] with kind = \"haproxy\", \"http\", \"command\" or \"none\"",
        ),
        Some(v) => match v.as_ref() {
            ValueInner::Table(t) => balancers.extend(read_balancer(&mut r, t, v.span, &node_names)),
            ValueInner::Array(arr) if arr.is_empty() => r.err(
                v.span,
                "no balancer",
                "empty",
                Some("use [balancer] kind = \"none\" for nodes without a load balancer".into()),
            ),
            ValueInner::Array(arr) => {
                for item in arr {
                    match item.as_table() {
                        Some(t) => {
                            balancers.extend(read_balancer(&mut r, t, item.span, &node_names))
                        }
                        None => r.type_err(item, "balancer", "a table", "[[balancer]]"),
                    }
                }
            }
            _ => r.type_err(
                v,
                "balancer",
                "a table ([balancer]) or an array of tables ([[balancer]])",
                "[balancer] section",
            ),
        },
    }

    // [deploy]
    let mut deploy = None;
    match r.table(&root, "deploy") {
        None if !root.contains_key("deploy") => need(
            &mut r,
            "deploy",
            "add [deploy] with kind = \"local\" (or \"ssh\", \"command\"), install_dir and restart",
        ),
        None => {}
        Some((t, at)) => {
            let kind_s = r.str(t, "kind", "\"local\"");
            let kind_name = kind_s
                .as_ref()
                .map_or("local", |k| k.0.as_str())
                .to_string();
            let mut allowed = vec![
                "kind",
                "install_dir",
                "keep_releases",
                "restart",
                "restart_timeout",
                "command_timeout",
                "check",
            ];
            match kind_name.as_str() {
                "ssh" => allowed.extend(["host", "user", "port", "identity_file", "ssh_options"]),
                "command" => allowed.extend(["current", "stage", "switch"]),
                _ => {}
            }
            r.known_keys(t, &format!("[deploy] (kind = \"{kind_name}\")"), &allowed);
            let all_vars: &[&str] = &[
                "node",
                "address",
                "host",
                "version",
                "install_dir",
                "plan_dir",
                "artifact",
                "sha256",
            ];
            let kind = match kind_name.as_str() {
                "local" => Some(DeployKind::Local),
                "ssh" => {
                    let host = r.str(t, "host", "\"{host}\"").map(|(h, sp_)| {
                        r.template(&h, sp_, "host", &["node", "address", "host"]);
                        h
                    });
                    let user = r.str(t, "user", "\"deploy\"").map(|x| x.0);
                    let port = r.int(t, "port", 1, "22").and_then(|(p, sp_)| {
                        if p > 65535 {
                            r.err(
                                sp_,
                                format!("port {p} is out of range"),
                                "1..65535",
                                Some("leave it out to use 22 (or your ssh config's Port)".into()),
                            );
                            None
                        } else {
                            Some(p as u16)
                        }
                    });
                    let identity_file = r
                        .str(t, "identity_file", "\"~/.ssh/deploy_ed25519\"")
                        .map(|x| dir.join(x.0));
                    let options = r
                        .str_list(
                            t,
                            "ssh_options",
                            "[\"-o\", \"UserKnownHostsFile=/etc/glidepath/known_hosts\"]",
                        )
                        .map(|l| l.into_iter().map(|x| x.0).collect())
                        .unwrap_or_default();
                    Some(DeployKind::Ssh {
                        host: host.unwrap_or_else(|| "{host}".into()),
                        user,
                        port,
                        identity_file,
                        options,
                    })
                }
                "command" => {
                    let cmd = |r: &mut Reader, key: &str, ex: &str| {
                        let v = r.req_str(t, at, "[deploy]", key, ex);
                        if let Some((c, sp_)) = &v {
                            r.template(c, *sp_, key, all_vars);
                        }
                        v.map(|x| x.0)
                    };
                    let current = cmd(
                        &mut r,
                        "current",
                        "\"incus exec {node} -- readlink /opt/api/current\"",
                    );
                    let stage = cmd(
                        &mut r,
                        "stage",
                        "\"incus file push {artifact} {node}/opt/api/releases/{version}/\"",
                    );
                    let switch = cmd(
                        &mut r,
                        "switch",
                        "\"incus exec {node} -- ln -sfn releases/{version} /opt/api/current\"",
                    );
                    match (current, stage, switch) {
                        (Some(current), Some(stage), Some(switch)) => Some(DeployKind::Command {
                            current,
                            stage,
                            switch,
                        }),
                        _ => None,
                    }
                }
                other => {
                    let span = kind_s.as_ref().map_or(at, |k| k.1);
                    r.err(
                        span,
                        format!("unknown deploy kind `{other}`"),
                        "unknown kind",
                        Some(
                            did_you_mean(other, ["local", "ssh", "command"])
                                .unwrap_or_else(|| "kinds: \"local\", \"ssh\", \"command\"".into()),
                        ),
                    );
                    None
                }
            };
            let dir_t = if matches!(kind, Some(DeployKind::Command { .. })) {
                r.str(t, "install_dir", "\"/opt/api\"")
                    .or_else(|| Some((String::new(), at)))
            } else {
                r.req_str(t, at, "[deploy]", "install_dir", "\"/opt/api/{node}\"")
            };
            if let Some((d, s)) = &dir_t {
                let before = r.diags.len();
                r.template(
                    d,
                    *s,
                    "install_dir",
                    &["node", "address", "host", "plan_dir"],
                );
                let per_host = matches!(
                    kind,
                    Some(DeployKind::Ssh { .. }) | Some(DeployKind::Command { .. })
                );
                if r.diags.len() == before
                    && !per_host
                    && nodes.len() > 1
                    && !d.contains("{node}")
                    && !d.contains("{address}")
                {
                    r.err(*s, "every node would share this install_dir", "no {node} or {address}", Some("the local deployer keeps releases per node: use e.g. \"/opt/api/{node}\"".into()));
                }
            }
            let restart = r.req_str(t, at, "[deploy]", "restart", "\"systemctl restart api\"");
            if let Some((c, s)) = &restart {
                r.template(c, *s, "restart", PLACEHOLDERS);
            }
            let check = r.str(t, "check", "\"systemctl cat api\"").map(|(c, sp_)| {
                r.template(&c, sp_, "check", PLACEHOLDERS);
                c
            });
            let keep = r
                .int(t, "keep_releases", 2, "3")
                .map(|x| x.0 as usize)
                .unwrap_or(3);
            let restart_timeout = r.duration(t, "restart_timeout", Some(Duration::from_secs(60)));
            let command_timeout = r.duration(t, "command_timeout", Some(Duration::from_secs(120)));
            if let (Some(kind), Some((d, _)), Some((c, _)), Some(rt), Some(ct)) =
                (kind, dir_t, restart, restart_timeout, command_timeout)
            {
                deploy = Some(DeployCfg {
                    kind,
                    install_dir: d,
                    keep_releases: keep,
                    restart: c,
                    restart_timeout: rt,
                    command_timeout: ct,
                    check,
                });
            }
        }
    }

    // [health]
    let mut health = None;
    match r.table(&root, "health") {
        None if !root.contains_key("health") => need(&mut r, "health", "add [health] with http = \"http://{address}/health\" (or tcp = \"{address}\", command = \"…\")"),
        None => {}
        Some((t, at)) => {
            r.known_keys(t, "[health]", &["http", "body", "tcp", "command", "version_url", "deadline", "interval", "timeout"]);
            let http = r.str(t, "http", "\"http://{address}/health\"");
            if let Some((u, s)) = &http {
                r.template(u, *s, "http", &["node", "address", "host"]);
            }
            let body = r.str(t, "body", "\"ok\"").map(|x| x.0);
            let tcp = r.str(t, "tcp", "\"{address}\"");
            if let Some((u, s)) = &tcp {
                r.template(u, *s, "tcp", &["node", "address", "host"]);
            }
            let command = r.str(t, "command", "\"systemctl is-active api\"");
            if let Some((u, s)) = &command {
                r.template(u, *s, "command", PLACEHOLDERS);
            }
            if http.is_none() && tcp.is_none() && command.is_none() {
                r.missing(at, "[health]", "http", "\"http://{address}/health\"  # or tcp = \"{address}\", or command = \"…\"");
            }
            if body.is_some() && http.is_none() {
                let s = t.get("body").map_or(at, |v| v.span);
                r.err(s, "`body` needs an `http` probe", "no http probe", Some("add http = \"http://{address}/health\"".into()));
            }
            let version_url = r.str(t, "version_url", "\"http://{address}/version\"");
            if let Some((u, s)) = &version_url {
                r.template(u, *s, "version_url", &["node", "address", "host"]);
            }
            let deadline = r.duration(t, "deadline", Some(Duration::from_secs(60)));
            let interval = r.duration(t, "interval", Some(Duration::from_secs(1)));
            let timeout = r.duration(t, "timeout", Some(Duration::from_secs(2)));
            if let (Some(d), Some(i), Some(to)) = (deadline, interval, timeout) {
                health = Some(HealthCfg {
                    http: http.map(|x| x.0),
                    body,
                    tcp: tcp.map(|x| x.0),
                    command: command.map(|x| x.0),
                    version_url: version_url.map(|v| v.0),
                    deadline: d,
                    interval: i,
                    timeout: to,
                });
            }
        }
    }

    // [sli]
    let mut sli = None;
    if let Some((t, at)) = r.table(&root, "sli") {
        let src = r.str(t, "source", "\"scrape\"");
        let prom = src.as_ref().is_some_and(|s| s.0 == "prometheus");
        let mut allowed = vec!["source", "url", "timeout", "on_error", "check"];
        if prom {
            allowed.extend([
                "bearer_token_env",
                "bearer_token_file",
                "basic_user",
                "basic_password_env",
                "basic_password_file",
            ]);
        }
        r.known_keys(
            t,
            &format!(
                "[sli] (source = \"{}\")",
                if prom { "prometheus" } else { "scrape" }
            ),
            &allowed,
        );
        if let Some((s, span)) = &src {
            if s != "scrape" && s != "prometheus" {
                r.err(*span, format!("unknown SLI source `{s}`"), "unknown source", Some(did_you_mean(s, ["scrape", "prometheus"]).unwrap_or_else(|| "sources: \"scrape\" (each node's /metrics), \"prometheus\" (PromQL)".into())));
            }
        }
        let source = if prom {
            let url = r
                .req_str(t, at, "[sli]", "url", "\"http://prometheus:9090\"")
                .map(|x| x.0);
            let secret = |r: &mut Reader, env_key: &str, file_key: &str| -> Option<SecretRef> {
                let env = r.str(t, env_key, "\"PROM_TOKEN\"");
                let file = r.str(t, file_key, "\"/etc/glidepath/prom-token\"");
                match (env, file) {
                    (Some(_), Some((_, s))) => {
                        r.err(
                            s,
                            format!("`{env_key}` and `{file_key}` both set"),
                            "choose one",
                            Some(
                                "a secret comes from one place: an environment variable or a file"
                                    .into(),
                            ),
                        );
                        None
                    }
                    (Some((e, _)), None) => Some(SecretRef::Env(e)),
                    (None, Some((f, _))) => Some(SecretRef::File(dir.join(f))),
                    (None, None) => None,
                }
            };
            let bearer = secret(&mut r, "bearer_token_env", "bearer_token_file");
            let user = r.str(t, "basic_user", "\"glidepath\"");
            let password = secret(&mut r, "basic_password_env", "basic_password_file");
            let auth = match (bearer, user, password) {
                (Some(b), None, None) => Some(Auth::Bearer(b)),
                (None, Some((u, _)), Some(p)) => Some(Auth::Basic {
                    user: u,
                    password: p,
                }),
                (None, None, None) => None,
                (None, Some((_, s)), None) => {
                    r.err(s, "`basic_user` without a password", "no basic_password_env/_file", Some("add basic_password_env = \"PROM_PASSWORD\" (the value is never logged)".into()));
                    None
                }
                (None, None, Some(_)) => {
                    r.err(
                        at,
                        "a basic-auth password without `basic_user`",
                        "no user",
                        None,
                    );
                    None
                }
                (Some(_), _, _) => {
                    r.err(
                        at,
                        "both bearer and basic auth configured",
                        "choose one",
                        None,
                    );
                    None
                }
            };
            url.map(|url| SliSource::Prometheus { url, auth })
        } else {
            let url = r.str(t, "url", "\"http://{address}/metrics\"").map(|x| {
                r.template(&x.0, x.1, "url", &["node", "address", "host"]);
                x.0
            });
            Some(SliSource::Scrape {
                url: url.unwrap_or_else(|| "http://{address}/metrics".into()),
            })
        };
        let timeout = r.duration(
            t,
            "timeout",
            Some(Duration::from_secs(if prom { 5 } else { 2 })),
        );
        let pause_on_error = match r.str(t, "on_error", "\"pause\"") {
            None => true,
            Some((p, s)) => match p.as_str() {
                "pause" => true,
                "rollback" => false,
                _ => {
                    r.err(s, format!("unknown `on_error` \"{p}\""), "expected pause or rollback", Some("\"pause\" waits for the metrics source to answer again, then watches a full window; \"rollback\" treats it as a failure".into()));
                    true
                }
            },
        };
        let mut checks = Vec::new();
        match t.get("check") {
            None => r.missing(
                at,
                "[sli]",
                "[[sli.check]]",
                "a check table: [[sli.check]] name = \"error rate\" …",
            ),
            Some(v) => match v.as_array() {
                None => r.type_err(
                    v,
                    "check",
                    "an array of tables ([[sli.check]])",
                    "[[sli.check]]",
                ),
                Some(arr) => {
                    for item in arr {
                        let Some(ct) = item.as_table() else {
                            r.type_err(item, "check", "a table", "[[sli.check]]");
                            continue;
                        };
                        if let Some(c) = read_check(&mut r, ct, item.span, prom) {
                            if checks.iter().any(|x: &CheckCfg| x.spec.name == c.spec.name) {
                                r.err(
                                    item.span,
                                    format!("duplicate check name `{}`", c.spec.name),
                                    "duplicate",
                                    Some("give every check its own name".into()),
                                );
                            }
                            checks.push(c);
                        }
                    }
                }
            },
        }
        if let (Some(to), Some(source)) = (timeout, source) {
            sli = Some(SliCfg {
                source,
                timeout: to,
                checks,
                pause_on_error,
            });
        }
    }
    match (&sli, strategy.sli_window) {
        (Some(_), None) if root.contains_key("strategy") && window_span.is_none() => {
            let at = root.get("strategy").map(|v| v.span).unwrap_or(head);
            r.missing(
                at,
                "[strategy]",
                "sli_window",
                "\"10m\"  # how long to watch the canary's SLIs",
            );
        }
        (None, Some(_)) if !root.contains_key("sli") => {
            r.err(
                window_span.unwrap_or(head),
                "`sli_window` is set but the plan has no [sli] checks",
                "nothing to watch",
                Some("add [sli] with at least one [[sli.check]], or remove sli_window".into()),
            );
        }
        (Some(_), Some(w)) if strategy.probe_interval > w => {
            r.err(probe_span.or(window_span).unwrap_or(head), "`probe_interval` is longer than `sli_window`", "no probe would run inside the window", Some("probe several times per window, e.g. sli_window = \"10m\", probe_interval = \"30s\"".into()));
        }
        _ => {}
    }

    // [rollback]
    let mut rollback_on = Vec::new();
    let mut rollback_release = None;
    match r.table(&root, "rollback") {
        None if !root.contains_key("rollback") => {
            r.diags.push(Diag::error("the plan has no rollback path: missing [rollback] section", (0, 0), "the plan starts here").hint("add [rollback] with on = [\"health\", \"sli\"]: glidepath refuses a rollout it cannot undo"));
        }
        None => {}
        Some((t, _)) => {
            r.known_keys(t, "[rollback]", &["on", "artifact", "version", "sha256"]);
            let a = r.str(t, "artifact", "\"dist/api-1.0.9\"");
            let v = r.str(t, "version", "\"1.0.9\"");
            let h = r.str(t, "sha256", "\"<64 hex digits>\"");
            match (a, v, h) {
                (None, None, None) => {}
                (Some((a, asp)), Some((v, vsp)), Some((h, hsp))) => {
                    let p = dir.join(&a);
                    if let Err(why) = check_version(&v) {
                        r.err(vsp, format!("invalid version: {why}"), "not a version", Some("the last-known-good release's version, such as \"1.0.9\"".into()));
                    } else if !p.exists() {
                        r.err(asp, format!("rollback artifact `{a}` not found"), format!("looked for {}", p.display()), None);
                    } else if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
                        r.err(hsp, "`sha256` must be 64 hex digits", "not a sha256", None);
                    } else {
                        rollback_release = Some(Release { version: v, artifact: p, sha256: h.to_lowercase() });
                    }
                }
                _ => r.err(t.get("artifact").or(t.get("version")).or(t.get("sha256")).map_or(head, |x| x.span), "a rollback artifact needs `artifact`, `version` and `sha256`", "incomplete", Some("the last-known-good release, for nodes that no longer keep it in releases/".into())),
            }
            let list = r
                .str_list(t, "on", "[\"health\", \"sli\"]")
                .unwrap_or_else(|| vec![("health".into(), head), ("sli".into(), head)]);
            for (o, s) in list {
                if !["health", "sli"].contains(&o.as_str()) {
                    r.err(
                        s,
                        format!("unknown rollback trigger `{o}`"),
                        "not a trigger",
                        Some(
                            did_you_mean(&o, ["health", "sli"])
                                .unwrap_or_else(|| "triggers: \"health\", \"sli\"".into()),
                        ),
                    );
                } else {
                    rollback_on.push(o);
                }
            }
            if !rollback_on.iter().any(|o| o == "health")
                && r.diags.iter().all(|d| {
                    d.severity != Severity::Error || !d.message.contains("rollback trigger")
                })
            {
                let s = t.get("on").map(|v| v.span).unwrap_or(head);
                r.err(s, "rollback.on must include \"health\"", "a node failing its health check would be left broken", Some("on = [\"health\", \"sli\"]; leave out \"sli\" to pause for a person on an SLI breach instead".into()));
            }
        }
    }

    // [gates]: preflight gates
    let mut gates = crate::gates::GatesCfg::default();
    if let Some((t, at)) = r.table(&root, "gates") {
        gates = crate::gates::read(&mut r, t, at, dir);
    }

    // [system]: the components file for `inventory` and `plan`
    if let Some((t, at)) = r.table(&root, "system") {
        r.known_keys(t, "[system]", &["file"]);
        match r.req_str(t, at, "[system]", "file", "\"system.toml\"") {
            Some((f, s)) if !dir.join(&f).exists() => r.err(
                s,
                format!("system file `{f}` not found"),
                format!("looked for {}", dir.join(&f).display()),
                Some("paths are relative to the plan file's directory".into()),
            ),
            _ => {}
        }
    }

    // [journal]
    let mut journal = None;
    if let Some((t, _)) = r.table(&root, "journal") {
        r.known_keys(t, "[journal]", &["path"]);
        journal = r.str(t, "path", "\"glidepath.db\"").map(|p| dir.join(p.0));
    }

    let _ = root_span;
    let errors = r.diags.iter().any(|d| d.severity == Severity::Error);
    let mut diags = r.diags;
    diags.sort_by_key(|d| d.span.map_or(0, |s| s.0));
    if errors {
        return Err(PlanError::Invalid(report(diags)));
    }
    let plan = Plan {
        path: path.to_path_buf(),
        dir: dir.to_path_buf(),
        source: source.to_string(),
        hash: sha256_hex(source.as_bytes()),
        release: release.expect("validated"),
        fleet_name,
        nodes,
        strategy,
        balancers,
        deploy: deploy.expect("validated"),
        health: health.expect("validated"),
        sli,
        rollback_on,
        rollback_release,
        journal,
        gates,
    };
    Ok((plan, report(diags)))
}

fn read_check(r: &mut Reader, t: &Table<'_>, at: Span, prom: bool) -> Option<CheckCfg> {
    if prom {
        return read_query_check(r, t, at);
    }
    if let Some(v) = t.get("query") {
        r.err(v.span, "`query` needs the prometheus source", "PromQL query", Some("set [sli] source = \"prometheus\" and url = …, or use kind = \"error_ratio\"/\"latency_quantile\" with the scrape source".into()));
        return None;
    }
    r.known_keys(
        t,
        "[[sli.check]]",
        &[
            "name",
            "kind",
            "metric",
            "label",
            "error_prefix",
            "quantile",
            "max",
            "min",
            "min_samples",
            "on_inconclusive",
        ],
    );
    let (name, max, min, min_samples, _, policy) = read_check_common(r, t, at);
    let kind = r.req_str(t, at, "[[sli.check]]", "kind", "\"error_ratio\"");
    let metric = r.req_str(t, at, "[[sli.check]]", "metric", "\"http_requests_total\"");
    let (kind_s, kind_span) = kind?;
    let metric = metric.clone();
    let ck = match kind_s.as_str() {
        "error_ratio" => {
            for (v, s) in [max, min].into_iter().flatten() {
                if !(0.0..=1.0).contains(&v) {
                    r.err(
                        s,
                        format!("threshold {v} is out of range for an error ratio"),
                        "must be between 0 and 1",
                        Some("an error ratio is a fraction: 0.01 means 1%".into()),
                    );
                }
            }
            let label = r.str(t, "label", "\"code\"").map_or("code".into(), |x| x.0);
            let prefix = r
                .str(t, "error_prefix", "\"5\"")
                .map_or("5".into(), |x| x.0);
            CheckKind::ErrorRatio {
                metric: metric.clone()?.0,
                label,
                prefix,
            }
        }
        "latency_quantile" => {
            for (v, s) in [max, min].into_iter().flatten() {
                if v <= 0.0 {
                    r.err(
                        s,
                        format!("threshold {v} is out of range for a latency"),
                        "must be above 0 (seconds)",
                        Some("latency thresholds are in seconds: 0.5 means 500 ms".into()),
                    );
                }
            }
            let q = match r.num(t, "quantile") {
                None => 0.95,
                Some((q, s)) => {
                    if !(q > 0.0 && q < 1.0) {
                        r.err(
                            s,
                            format!("quantile {q} is out of range"),
                            "must be between 0 and 1 (exclusive)",
                            Some("p95 is quantile = 0.95".into()),
                        );
                    }
                    q
                }
            };
            CheckKind::LatencyQuantile {
                metric: metric.clone()?.0,
                quantile: q,
            }
        }
        other => {
            r.err(
                kind_span,
                format!("unknown check kind `{other}`"),
                "unknown kind",
                Some(
                    did_you_mean(other, ["error_ratio", "latency_quantile"])
                        .unwrap_or_else(|| "kinds: \"error_ratio\", \"latency_quantile\"".into()),
                ),
            );
            return None;
        }
    };
    Some(CheckCfg {
        spec: CheckSpec {
            name: name?,
            max: max.map(|x| x.0),
            min: min.map(|x| x.0),
            min_samples,
            on_inconclusive: policy,
        },
        kind: ck,
    })
}

/// Name, thresholds, sample minimum and inconclusive policy of a check.
/// One balancer table.
fn read_balancer(r: &mut Reader, t: &Table<'_>, at: Span, nodes: &[&str]) -> Option<BalancerCfg> {
    let (kind, kspan) = r.req_str(t, at, "[balancer]", "kind", "\"haproxy\"")?;
    match kind.as_str() {
        "none" => {
            r.known_keys(t, "[balancer] (kind = \"none\")", &["kind"]);
            Some(BalancerCfg::None)
        }
        "http" => {
            r.known_keys(
                t,
                "[balancer] (kind = \"http\")",
                &["kind", "drain", "ready", "state", "timeout"],
            );
            let url = |r: &mut Reader, key: &str, ex: &str| {
                let v = r.req_str(t, at, "[balancer]", key, ex);
                if let Some((s, sp_)) = &v {
                    r.template(s, *sp_, key, &["node", "address", "host"]);
                }
                v.map(|x| x.0)
            };
            let drain = url(r, "drain", "\"http://{address}/admin/drain\"");
            let ready = url(r, "ready", "\"http://{address}/admin/ready\"");
            let state = url(r, "state", "\"http://{address}/admin/state\"");
            let timeout = r.duration(t, "timeout", Some(Duration::from_secs(5)));
            Some(BalancerCfg::Http {
                drain: drain?,
                ready: ready?,
                state: state?,
                timeout: timeout?,
            })
        }
        "haproxy" => {
            r.known_keys(
                t,
                "[balancer] (kind = \"haproxy\")",
                &[
                    "kind", "socket", "address", "backend", "servers", "frontend", "timeout",
                ],
            );
            let socket = r.str(t, "socket", "\"/run/haproxy/admin.sock\"");
            let address = r.str(t, "address", "\"127.0.0.1:9999\"");
            if socket.is_some() == address.is_some() {
                let s = address.as_ref().map_or(at, |a| a.1);
                r.err(s, "a haproxy balancer needs exactly one of `socket` or `address`", "the runtime API endpoint", Some("socket = \"/run/haproxy/admin.sock\" (stats socket … level admin), or address = \"127.0.0.1:9999\" for a TCP stats socket".into()));
            }
            let backend = r
                .req_str(t, at, "[balancer]", "backend", "\"api_pool\"")
                .map(|x| x.0);
            let mut servers = std::collections::BTreeMap::new();
            if let Some((st, _)) = r.table(t, "servers") {
                for (k, v) in st.iter() {
                    if !nodes.is_empty() && !nodes.contains(&k.name.as_ref()) {
                        let hint = did_you_mean(&k.name, nodes.iter().copied())
                            .unwrap_or_else(|| format!("fleet nodes: {}", nodes.join(", ")));
                        r.err(
                            k.span,
                            format!("`servers` maps `{}`, which is not a fleet node", k.name),
                            "not in [fleet].nodes",
                            Some(hint),
                        );
                    }
                    match v.as_str() {
                        Some(sv) => {
                            servers.insert(k.name.to_string(), sv.to_string());
                        }
                        None => r.type_err(v, &k.name, "a server name", "\"srv1\""),
                    }
                }
            }
            let frontend = r
                .str(t, "frontend", "\"http://127.0.0.1:8080/health\"")
                .map(|x| x.0);
            let timeout = r.duration(t, "timeout", Some(Duration::from_secs(5)));
            Some(BalancerCfg::Haproxy {
                socket: socket.map(|s| PathBuf::from(s.0)),
                address: address.map(|a| a.0),
                backend: backend?,
                servers,
                frontend,
                timeout: timeout?,
            })
        }
        "command" => {
            r.known_keys(
                t,
                "[balancer] (kind = \"command\")",
                &["kind", "drain", "enable", "active", "check", "timeout"],
            );
            let cmd = |r: &mut Reader, key: &str, ex: &str, required: bool| {
                let v = if required {
                    r.req_str(t, at, "[balancer]", key, ex)
                } else {
                    r.str(t, key, ex)
                };
                if let Some((c, sp_)) = &v {
                    r.template(c, *sp_, key, PLACEHOLDERS);
                }
                v.map(|x| x.0)
            };
            let drain = cmd(r, "drain", "\"lbctl drain {node}\"", true);
            let enable = cmd(r, "enable", "\"lbctl enable {node}\"", true);
            let active = cmd(r, "active", "\"lbctl connections {node}\"", true);
            let check = cmd(r, "check", "\"lbctl is-up {node}\"", false);
            let timeout = r.duration(t, "timeout", Some(Duration::from_secs(30)));
            Some(BalancerCfg::Command {
                drain: drain?,
                enable: enable?,
                active: active?,
                check,
                timeout: timeout?,
            })
        }
        other => {
            r.err(
                kspan,
                format!("unknown balancer kind `{other}`"),
                "unknown kind",
                Some(
                    did_you_mean(other, ["haproxy", "http", "command", "none"]).unwrap_or_else(
                        || "kinds: \"haproxy\", \"http\", \"command\", \"none\"".into(),
                    ),
                ),
            );
            None
        }
    }
}

/// (name, max, min, min_samples, min_samples given explicitly, policy)
type CheckCommon = (
    Option<String>,
    Option<(f64, Span)>,
    Option<(f64, Span)>,
    u64,
    bool,
    InconclusivePolicy,
);

fn read_check_common(r: &mut Reader, t: &Table<'_>, at: Span) -> CheckCommon {
    let name = r
        .req_str(t, at, "[[sli.check]]", "name", "\"error rate\"")
        .map(|x| x.0);
    let max = r.num(t, "max");
    let min = r.num(t, "min");
    let explicit = t.contains_key("min_samples");
    let min_samples = r
        .int(t, "min_samples", 0, "50")
        .map(|x| x.0 as u64)
        .unwrap_or(1);
    let policy = match r.str(t, "on_inconclusive", "\"wait\"") {
        None => InconclusivePolicy::Wait,
        Some((p, s)) => {
            match p.as_str() {
                "wait" => InconclusivePolicy::Wait,
                "fail" => InconclusivePolicy::Fail,
                "pass" => InconclusivePolicy::Pass,
                _ => {
                    r.err(s, format!("unknown `on_inconclusive` \"{p}\""), "expected wait, fail or pass", Some("\"wait\" keeps probing and fails if the window ends without enough data".into()));
                    InconclusivePolicy::Wait
                }
            }
        }
    };
    if max.is_none() && min.is_none() {
        r.err(
            at,
            format!(
                "check `{}` has no threshold",
                name.as_deref().unwrap_or("?")
            ),
            "no max or min",
            Some("add max = … (breach above) or min = … (breach below)".into()),
        );
    }
    (name, max, min, min_samples, explicit, policy)
}

/// A PromQL check: `query` gives the value, `samples_query` the sample size.
fn read_query_check(r: &mut Reader, t: &Table<'_>, at: Span) -> Option<CheckCfg> {
    r.known_keys(
        t,
        "[[sli.check]] (source = \"prometheus\")",
        &[
            "name",
            "kind",
            "query",
            "samples_query",
            "max",
            "min",
            "min_samples",
            "on_inconclusive",
        ],
    );
    if let Some((k, s)) = r.str(t, "kind", "\"query\"") {
        if k != "query" {
            r.err(s, format!("check kind `{k}` is for the scrape source"), "not a PromQL check", Some("with source = \"prometheus\" a check is a `query` (and a `samples_query`); drop `kind`".into()));
        }
    }
    let (name, max, min, min_samples, explicit, policy) = read_check_common(r, t, at);
    let placeholders = ["node", "address", "host", "instances", "nodes"];
    let query = r.req_str(t, at, "[[sli.check]]", "query", "'histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket{instance=~\"{instances}\"}[1m])) by (le))'");
    if let Some((q, s)) = &query {
        r.template(q, *s, "query", &placeholders);
    }
    let samples_query = r.str(
        t,
        "samples_query",
        "'sum(increase(http_requests_total{instance=~\"{instances}\"}[1m]))'",
    );
    if let Some((q, s)) = &samples_query {
        r.template(q, *s, "samples_query", &placeholders);
    }
    if samples_query.is_none() && (min_samples > 0 && explicit) {
        r.err(at, format!("check `{}` has min_samples but no samples_query", name.as_deref().unwrap_or("?")), "no way to count samples", Some("add samples_query = 'sum(increase(http_requests_total{instance=~\"{instances}\"}[1m]))'".into()));
    }
    let min_samples = if samples_query.is_none() {
        0
    } else {
        min_samples
    };
    Some(CheckCfg {
        spec: CheckSpec {
            name: name?,
            max: max.map(|x| x.0),
            min: min.map(|x| x.0),
            min_samples,
            on_inconclusive: policy,
        },
        kind: CheckKind::Query {
            query: query?.0,
            samples_query: samples_query.map(|x| x.0),
        },
    })
}

/// `[strategy] retry = { backoff = "500ms", max_backoff = "10s", deadline = "5m" }`.
fn strategy_retry(r: &mut Reader<'_>, t: &Table<'_>) -> glidepath_core::RetrySpec {
    let def = glidepath_core::RetrySpec::default();
    r.known_keys(
        t,
        "[strategy] retry",
        &["backoff", "max_backoff", "deadline"],
    );
    let ms = |d: Duration| d.as_millis() as u64;
    let get = |r: &mut Reader<'_>, key: &str, default: u64| {
        r.duration(t, key, Some(Duration::from_millis(default)))
            .map_or(default, ms)
    };
    let out = glidepath_core::RetrySpec {
        backoff_ms: get(r, "backoff", def.backoff_ms),
        max_backoff_ms: get(r, "max_backoff", def.max_backoff_ms),
        deadline_ms: get(r, "deadline", def.deadline_ms),
    };
    if out.max_backoff_ms < out.backoff_ms {
        if let Some(v) = t.get("max_backoff").or_else(|| t.get("backoff")) {
            r.err(
                v.span,
                format!(
                    "`max_backoff` ({}ms) is shorter than `backoff` ({}ms)",
                    out.max_backoff_ms, out.backoff_ms
                ),
                "max_backoff < backoff",
                Some("the wait doubles from `backoff` up to `max_backoff`: e.g. retry = { backoff = \"500ms\", max_backoff = \"10s\" }".into()),
            );
        }
    }
    if out.deadline_ms < out.backoff_ms {
        if let Some(v) = t.get("deadline") {
            r.err(
                v.span,
                format!(
                    "`deadline` ({}ms) leaves no time for a retry after `backoff` ({}ms)",
                    out.deadline_ms, out.backoff_ms
                ),
                "deadline < backoff",
                Some("the deadline is how long an outage is waited out before the run stops (exit 4, resumable): e.g. deadline = \"5m\"".into()),
            );
        }
    }
    out
}

impl Plan {
    /// The rollout as the decision core sees it.
    pub fn rollout_spec(&self) -> RolloutSpec {
        let names: Vec<String> = self.nodes.iter().map(|n| n.name.clone()).collect();
        let groups = plan_groups(&names, &self.strategy.canary, self.strategy.batch);
        let batch_len = groups.iter().skip(1).map(|g| g.len()).max().unwrap_or(1);
        let window = match (&self.sli, self.strategy.sli_window) {
            (Some(sli), Some(w)) => Some(WindowSpec {
                length_ms: w.as_millis() as u64,
                interval_ms: self.strategy.probe_interval.as_millis() as u64,
                checks: sli.checks.iter().map(|c| c.spec.clone()).collect(),
                rollback_on_breach: self.rollback_on.iter().any(|o| o == "sli"),
                pause_on_metrics_error: sli.pause_on_error,
            }),
            _ => None,
        };
        RolloutSpec {
            version: self.release.version.clone(),
            groups,
            max_unavailable: self.strategy.max_unavailable.unwrap_or(batch_len).max(1),
            pause_after: self.strategy.pause_after.clone(),
            window,
            drain_timeout_ms: self.strategy.drain_timeout.as_millis() as u64,
            drain_poll_ms: 100,
            on_drain_timeout: self.strategy.on_drain_timeout,
            health_deadline_ms: self.health.deadline.as_millis() as u64,
            health_interval_ms: self.health.interval.as_millis() as u64,
            retry: self.strategy.retry,
        }
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The node's install directory (absolute, or relative to the plan dir).
    pub fn install_dir(&self, node: &Node) -> PathBuf {
        self.dir
            .join(self.vars(node).fill(&self.deploy.install_dir))
    }

    /// The releases whose sha256 this plan gives (the new one, and the
    /// `[rollback]` artifact): deployers re-verify them before a switch.
    pub fn known_releases(&self) -> Vec<Release> {
        std::iter::once(self.release.clone())
            .chain(self.rollback_release.clone())
            .collect()
    }

    /// The placeholders every template of this node has (`{node}`,
    /// `{address}`, `{host}`, `{plan_dir}`); drivers add `{install_dir}` and
    /// `{version}` (see `drivers::Target::vars`).
    pub fn vars(&self, node: &Node) -> Vars {
        Vars::node(&node.name, &node.address).with("plan_dir", self.dir.display().to_string())
    }

    /// Where the journal lives unless overridden on the command line.
    pub fn journal_path(&self) -> PathBuf {
        self.journal
            .clone()
            .unwrap_or_else(crate::journal::default_path)
    }

    /// What `run` would do, in order, for `validate`.
    pub fn describe(&self) -> Vec<String> {
        let spec = self.rollout_spec();
        let mut out = vec![format!(
            "release {} ({}), sha256 {}…, fleet `{}` of {} node(s)",
            self.release.version,
            self.release.artifact.display(),
            &self.release.sha256[..12],
            self.fleet_name,
            self.nodes.len()
        )];
        out.push("preflight: verify the artifact checksum, read each node's current release (its rollback target), check every node is healthy and reachable at the balancer".into());
        let node_steps = "drain → wait for 0 active connections → stage + verify → switch current → restart → health check → re-enable → post-enable check";
        for (i, g) in spec.groups.iter().enumerate() {
            let who = if i == 0 {
                format!("canary {}", g.join(", "))
            } else {
                format!("batch {}/{}: {}", i, spec.groups.len() - 1, g.join(", "))
            };
            out.push(format!(
                "{who}: {node_steps} (at most {} out of rotation at once)",
                spec.max_unavailable.min(g.len())
            ));
            if i == 0 {
                if let Some(w) = &spec.window {
                    let checks: Vec<String> = w
                        .checks
                        .iter()
                        .map(|c| {
                            let t = match (c.max, c.min) {
                                (Some(m), _) => format!("≤ {m}"),
                                (None, Some(m)) => format!("≥ {m}"),
                                _ => String::new(),
                            };
                            format!("{} {t} (min {} samples)", c.name, c.min_samples)
                        })
                        .collect();
                    out.push(format!(
                        "watch SLIs for {} probing every {}: {}; a breach {}",
                        humantime::format_duration(Duration::from_millis(w.length_ms)),
                        humantime::format_duration(Duration::from_millis(w.interval_ms)),
                        checks.join(", "),
                        if w.rollback_on_breach {
                            "rolls the canary back automatically"
                        } else {
                            "pauses for an operator"
                        }
                    ));
                }
            }
            if spec.pause_after.contains(&i) {
                out.push("pause: wait for `glidepath promote RUN`".into());
            }
        }
        out.push(format!(
            "on a failed health check{}: restore each changed node to its previous release (keep {} releases per node)",
            if self.rollback_on.iter().any(|o| o == "sli") { " or SLI breach" } else { "" },
            self.deploy.keep_releases
        ));
        out
    }
}

/// The shell recipe that computes a directory artifact's sha256, run from
/// inside the directory (GNU find, od, awk, sort and sha256sum; the same
/// text is in the README). [`artifact_sha256`] gives the same answer, and
/// without its last `| sha256sum` it prints [`dir_manifest`].
pub const DIR_SHA256_PIPELINE: &str = r#"{ find . -mindepth 1 ! -path ./.glidepath-sha256 \( -type l -printf 'l %p\0%l\0' -o -type d -printf 'd %p\0' -o -type f -perm -u=x -printf 'x %p\0' -o -type f -printf 'f %p\0' -o -printf '? %p\0' \)
  find . -type f ! -path ./.glidepath-sha256 -exec sha256sum -z {} +
} | od -An -v -tx1 | LC_ALL=C awk '
  BEGIN { for (i = 32; i < 127; i++) c[sprintf("%02x", i)] = sprintf("%c", i) }
  { for (i = 1; i <= NF; i++) if ($i == "00") rec(); else b[n++] = $i }
  END { for (p in t) print p, t[p], d[p] }
  function hex(from,  s, i) { s = ""; for (i = from; i < n; i++) s = s b[i]; return s }
  function rec(  p, h, i) {
    if (l != "") { d[l] = hex(0); l = "" }
    else if (b[1] == "20") { p = hex(4); t[p] = c[b[0]]; d[p] = t[p] == "d" ? "-" : "?"; if (t[p] == "l") l = p }
    else { h = ""; for (i = 0; i < 64; i++) h = h c[b[i]]; d[hex(68)] = h }
    n = 0
  }' | LC_ALL=C sort | sha256sum"#;

/// The checksum marker a deployer writes into a staged release; it is not
/// part of the release (nor of its hash), and never trusted on its own.
pub const MARKER: &str = ".glidepath-sha256";

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// What a non-regular, non-directory, non-symlink entry is.
fn special_kind(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// Open a regular file for reading without following a symlink and
/// without blocking on a FIFO (what `lstat` said may have changed since):
/// anything but a regular file is refused, never read.
pub fn open_regular(p: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)?;
    let ft = f.metadata()?.file_type();
    if !ft.is_file() {
        return Err(invalid(format!(
            "{} is {}, not a regular file",
            p.display(),
            special_kind(&ft)
        )));
    }
    Ok(f)
}

fn file_sha(p: &Path) -> std::io::Result<String> {
    let mut f = open_regular(p)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// sha256 of an artifact: a regular file's bytes, or for a directory the
/// sha256 of its [`dir_manifest`] (what [`DIR_SHA256_PIPELINE`] prints). A
/// symlink given as the artifact itself is followed; anything else that is
/// neither a file nor a directory is refused without being opened.
pub fn artifact_sha256(path: &Path) -> std::io::Result<String> {
    let md = std::fs::metadata(path)?;
    if md.is_file() {
        file_sha(path)
    } else if md.is_dir() {
        Ok(sha256_hex(dir_manifest(path)?.as_bytes()))
    } else {
        Err(invalid(format!(
            "artifact {} is {}: an artifact is a regular file or a directory",
            path.display(),
            special_kind(&md.file_type())
        )))
    }
}

/// One entry of a directory artifact.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    File { exec: bool, sha256: String },
    Dir,
    Symlink(Vec<u8>),
}

/// Every entry under `root` (relative path bytes, no `./`), symlinks not
/// followed, the root's checksum marker left out. Special files are refused.
fn walk_tree(root: &Path) -> std::io::Result<std::collections::BTreeMap<Vec<u8>, Entry>> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    fn walk(
        root: &Path,
        rel: &Path,
        out: &mut std::collections::BTreeMap<Vec<u8>, Entry>,
    ) -> std::io::Result<()> {
        for e in std::fs::read_dir(root.join(rel))? {
            let e = e?;
            let r = rel.join(e.file_name());
            if rel.as_os_str().is_empty() && e.file_name() == MARKER {
                continue;
            }
            let p = root.join(&r);
            let md = std::fs::symlink_metadata(&p)?;
            let ft = md.file_type();
            let key = r.as_os_str().as_bytes().to_vec();
            if ft.is_symlink() {
                let target = std::fs::read_link(&p)?;
                out.insert(key, Entry::Symlink(target.as_os_str().as_bytes().to_vec()));
            } else if ft.is_dir() {
                out.insert(key, Entry::Dir);
                walk(root, &r, out)?;
            } else if ft.is_file() {
                let exec = md.permissions().mode() & 0o100 != 0;
                out.insert(
                    key,
                    Entry::File {
                        exec,
                        sha256: file_sha(&p)?,
                    },
                );
            } else {
                return Err(invalid(format!(
                    "artifact entry {:?} is {}: an artifact holds only regular files, directories and symlinks",
                    Path::new(".").join(&r),
                    special_kind(&ft)
                )));
            }
        }
        Ok(())
    }
    let mut out = std::collections::BTreeMap::new();
    walk(root, Path::new(""), &mut out)?;
    for (at, e) in &out {
        if let Entry::Symlink(target) = e {
            if let Some(why) = link_escapes(&out, at, target) {
                return Err(invalid(format!(
                    "artifact entry {:?} is a symlink to {:?}, {why}: links must stay inside the artifact",
                    Path::new(".").join(std::ffi::OsStr::from_bytes(at)),
                    std::ffi::OsStr::from_bytes(target)
                )));
            }
        }
    }
    Ok(out)
}

/// Why the symlink at `at` (relative to the artifact root) pointing at
/// `target` would leave the artifact, if it would: resolved the way the
/// kernel does, through the other links of the tree.
fn link_escapes(
    entries: &std::collections::BTreeMap<Vec<u8>, Entry>,
    at: &[u8],
    target: &[u8],
) -> Option<String> {
    if target.first() == Some(&b'/') {
        return Some("an absolute path".into());
    }
    // resolution starts in the link's own directory
    let mut path: Vec<Vec<u8>> = at.split(|b| *b == b'/').map(<[u8]>::to_vec).collect();
    path.pop();
    let mut queue: std::collections::VecDeque<Vec<u8>> =
        target.split(|b| *b == b'/').map(<[u8]>::to_vec).collect();
    let mut hops = 0;
    while let Some(c) = queue.pop_front() {
        match c.as_slice() {
            b"" | b"." => {}
            b".." => {
                if path.pop().is_none() {
                    return Some("which resolves outside the artifact".into());
                }
            }
            _ => {
                path.push(c);
                if let Some(Entry::Symlink(t)) = entries.get(&path.join(&b'/')) {
                    hops += 1;
                    if hops > 40 {
                        return Some("which loops".into());
                    }
                    if t.first() == Some(&b'/') {
                        return Some("which goes through a link to an absolute path".into());
                    }
                    path.pop();
                    for part in t.split(|b| *b == b'/').rev() {
                        queue.push_front(part.to_vec());
                    }
                }
            }
        }
    }
    None
}

/// A directory's manifest, the text its sha256 is taken of: one line per
/// entry (files, directories and symlinks, the root's checksum marker left
/// out), `<path> <type> <data>`, sorted. `<path>` is the path relative to
/// the directory, hex-encoded byte by byte (so no name can forge a line or
/// collide with another); `<type>` is `f` (a file), `x` (a file whose owner
/// may execute it), `d` (a directory) or `l` (a symlink, kept as a link);
/// `<data>` is the file's sha256, `-` for a directory, or the link's target,
/// hex-encoded. Special files and links leaving the directory are refused.
pub fn dir_manifest(path: &Path) -> std::io::Result<String> {
    let mut manifest = String::new();
    for (rel, e) in walk_tree(path)? {
        let (t, data) = match e {
            Entry::File { exec, sha256 } => (if exec { "x" } else { "f" }, sha256),
            Entry::Dir => ("d", "-".to_string()),
            Entry::Symlink(target) => ("l", hex::encode(target)),
        };
        manifest.push_str(&format!("{} {t} {data}\n", hex::encode(rel)));
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell_sha(dir: &Path) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(DIR_SHA256_PIPELINE)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }

    /// A tree with every kind of awkward name.
    fn odd_tree(dir: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir.join("bin/sub")).unwrap();
        std::fs::create_dir_all(dir.join("empty dir")).unwrap();
        std::fs::write(dir.join("bin/app"), "binary").unwrap();
        std::fs::set_permissions(dir.join("bin/app"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::write(dir.join("bin/sub/Z.conf"), "z").unwrap();
        std::fs::write(dir.join("a b.txt"), "spaces").unwrap();
        std::fs::write(dir.join("new\nline"), "newline").unwrap();
        std::fs::write(dir.join("back\\slash"), "backslash").unwrap();
        std::fs::write(dir.join("ünïcødé ✓"), "unicode").unwrap();
        std::fs::write(dir.join("-dash"), "").unwrap();
        std::fs::write(dir.join("bin/sub/.glidepath-sha256"), "not the root one").unwrap();
        std::os::unix::fs::symlink("bin/app", dir.join("app link")).unwrap();
        std::os::unix::fs::symlink("../a b.txt", dir.join("bin/sub/up\nlink")).unwrap();
        std::fs::write(dir.join(".glidepath-sha256"), "ignored").unwrap();
    }

    #[test]
    fn directory_hash_matches_the_documented_shell_recipe() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("art");
        odd_tree(&dir);
        let ours = artifact_sha256(&dir).unwrap();
        assert_eq!(ours, shell_sha(&dir), "the shell recipe gives our hash");
        let manifest = dir_manifest(&dir).unwrap();
        assert_eq!(manifest.lines().count(), 13, "{manifest}");
        assert!(manifest.contains(&format!(
            "{} x {}\n",
            hex::encode("bin/app"),
            sha256_hex(b"binary")
        )));
        assert!(manifest.contains(&format!(
            "{} l {}\n",
            hex::encode("app link"),
            hex::encode("bin/app")
        )));
        assert!(manifest.contains(&format!("{} d -\n", hex::encode("empty dir"))));
        assert!(!manifest.contains(&hex::encode(".glidepath-sha256\n")));
        // the README documents this very recipe
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
                .unwrap();
        assert!(
            readme.contains(DIR_SHA256_PIPELINE),
            "README.md must carry DIR_SHA256_PIPELINE verbatim"
        );
        // the type, the exec bit and a link's target are part of the hash
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("bin/app"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let no_exec = artifact_sha256(&dir).unwrap();
        assert_ne!(no_exec, ours, "the exec bit counts");
        assert_eq!(no_exec, shell_sha(&dir));
        std::fs::remove_file(dir.join("app link")).unwrap();
        std::os::unix::fs::symlink("bin/sub/Z.conf", dir.join("app link")).unwrap();
        assert_ne!(
            artifact_sha256(&dir).unwrap(),
            no_exec,
            "a link's target counts"
        );
        assert_eq!(artifact_sha256(&dir).unwrap(), shell_sha(&dir));
        std::fs::remove_dir(dir.join("empty dir")).unwrap();
        assert_eq!(artifact_sha256(&dir).unwrap(), shell_sha(&dir));
    }

    #[test]
    fn no_name_can_forge_a_manifest_line() {
        // Under a `sha256sum` manifest (`<hex>  ./<path>` lines), tree B's one
        // file, a directory named "a\n<sha(b)>  ." holding `b`, printed the
        // same two lines as tree A's `a` and `b`.
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("A");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::write(a.join("a"), "first").unwrap();
        std::fs::write(a.join("b"), "second").unwrap();
        let b = tmp.path().join("B");
        let forged = b.join(format!("a\n{}  .", sha256_hex(b"second")));
        std::fs::create_dir_all(&forged).unwrap();
        std::fs::write(forged.join("b"), "first").unwrap();
        let old_style = |root: &Path, files: &[&str]| -> String {
            files
                .iter()
                .map(|f| {
                    let body = std::fs::read(root.join(f)).unwrap();
                    format!("{}  ./{f}\n", sha256_hex(&body))
                })
                .collect()
        };
        let forged_name = format!("a\n{}  ./b", sha256_hex(b"second"));
        assert_eq!(
            old_style(&a, &["a", "b"]),
            old_style(&b, &[forged_name.as_str()]),
            "the attack this test guards against"
        );
        assert_ne!(dir_manifest(&a).unwrap(), dir_manifest(&b).unwrap());
        assert_ne!(artifact_sha256(&a).unwrap(), artifact_sha256(&b).unwrap());
        assert_eq!(artifact_sha256(&b).unwrap(), shell_sha(&b));
    }

    /// Runs `f` on another thread; a hang fails the test instead of
    /// hanging it.
    fn within_5s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("hashing hung instead of refusing")
    }

    #[test]
    fn special_files_are_refused_without_being_opened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("art");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ok"), "x").unwrap();
        let fifo = dir.join("pipe");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let d = dir.clone();
        let err = within_5s(move || artifact_sha256(&d))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"./pipe\" is a FIFO"), "{err}");
        // the artifact itself a FIFO
        let err = within_5s(move || artifact_sha256(&fifo))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is a FIFO (named pipe): an artifact is a regular file or a directory"),
            "{err}"
        );
        // a device node (needs root: /dev/zero's numbers) and a link to one
        let dev = tmp.path().join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        let c = std::ffi::CString::new(dev.join("zero").as_os_str().as_encoded_bytes()).unwrap();
        if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 5)) } == 0 {
            let d = dev.clone();
            let err = within_5s(move || artifact_sha256(&d))
                .unwrap_err()
                .to_string();
            assert!(err.contains("\"./zero\" is a character device"), "{err}");
        }
        std::fs::remove_dir_all(&dev).unwrap();
        std::fs::create_dir_all(&dev).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dev.join("zero")).unwrap();
        let err = within_5s(move || artifact_sha256(&dev))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is a symlink to \"/dev/zero\", an absolute path"),
            "{err}"
        );
    }

    #[test]
    fn symlinks_are_kept_inside_the_artifact() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("art");
        std::fs::create_dir_all(dir.join("d/e")).unwrap();
        std::fs::write(dir.join("d/f"), "x").unwrap();
        let link = |at: &str, to: &str| {
            let _ = std::fs::remove_file(dir.join(at));
            std::os::unix::fs::symlink(to, dir.join(at)).unwrap();
            artifact_sha256(&dir).map_err(|e| e.to_string())
        };
        // inside: fine, and the link (not what it points at) is hashed
        link("up", "d/e/..").unwrap();
        link("d/e/top", "../..").unwrap();
        link("d/e/sib", "../f").unwrap();
        link("dangling", "d/nothing").unwrap();
        link("x", "d/e/top/d/f").unwrap();
        let err = link("passwd", "/etc/passwd").unwrap_err();
        assert!(err.contains("\"./passwd\" is a symlink to \"/etc/passwd\", an absolute path: links must stay inside the artifact"), "{err}");
        std::fs::remove_file(dir.join("passwd")).unwrap();
        let err = link("d/out", "../../outside").unwrap_err();
        assert!(err.contains("which resolves outside the artifact"), "{err}");
        std::fs::remove_file(dir.join("d/out")).unwrap();
        // each link alone stays inside; through the other one, it leaves
        let err = link("through", "d/e/top/..").unwrap_err();
        assert!(err.contains("\"./through\""), "{err}");
        assert!(err.contains("which resolves outside the artifact"), "{err}");
        std::fs::remove_file(dir.join("through")).unwrap();
        let err = link("loop", "loop/x").unwrap_err();
        assert!(err.contains("which loops"), "{err}");
    }

    #[test]
    fn grammars_of_names_versions_and_addresses() {
        for ok in ["api-1", "a", "A.b_c-9", "10"] {
            assert_eq!(check_node_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "-x",
            ".hidden",
            "a/b",
            "a b",
            "a;b",
            "ü",
            &"a".repeat(129),
        ] {
            assert!(check_node_name(bad).is_err(), "{bad:?}");
        }
        for ok in ["1.0.10", "2", "1.0.0-rc.1+build.5", "1.2~beta"] {
            assert_eq!(check_version(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "2\nrm -rf /",
            "1;touch PWNED",
            "a/b",
            "1 2",
            "-1",
            "$(x)",
            "1'",
        ] {
            assert!(check_version(bad).is_err(), "{bad:?}");
        }
        for ok in [
            "127.0.0.1:9001",
            "10.0.0.1",
            "api-1.internal:8080",
            "[::1]:80",
            "[fd00::11]",
            "my_host:1",
        ] {
            assert_eq!(check_address(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "127.0.0.1;touch /tmp/x",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:",
            "300.1.1.1:80",
            "::1",
            "[::1",
            "[nope]:80",
            "host:80x",
            "-host:80",
            "a..b",
            "$(id):80",
            "a b:80",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shell_templates_quote_every_value() {
        let evil = "x'; touch PWNED; echo '$(id)`id`\"";
        let vars = [("node", "api-1"), ("install_dir", evil)];
        let run = |tpl: &str| {
            let cmd = render_shell(tpl, &vars);
            let tmp = tempfile::tempdir().unwrap();
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .current_dir(tmp.path())
                .output()
                .unwrap();
            assert!(
                !tmp.path().join("PWNED").exists(),
                "`{cmd}` ran data as shell"
            );
            String::from_utf8_lossy(&out.stdout).into_owned()
        };
        assert_eq!(
            run("printf '%s|' {install_dir} {node}"),
            format!("{evil}|api-1|")
        );
        assert_eq!(
            run("printf '%s|' \"{install_dir}/pid\""),
            format!("{evil}/pid|")
        );
        assert_eq!(
            run("printf '%s|' 'at {install_dir}!'"),
            format!("at {evil}!|")
        );
        assert_eq!(
            run("printf '%s|' \"$(printf %s {install_dir})\""),
            format!("{evil}|")
        );
        assert_eq!(run("printf '%s|' `printf %s {node}`"), "api-1|");
        assert_eq!(
            run("printf '%s|' ${HOME+set} {unknown} {node}"),
            "set|{unknown}|api-1|"
        );
        assert_eq!(render_shell("echo {node}", &vars), "echo 'api-1'");
    }

    #[test]
    fn one_placeholder_set_for_every_template() {
        let v = Vars::node("api-1", "[::1]:8080")
            .with("plan_dir", "/plans")
            .with("version", "2")
            .with("install_dir", "/opt/api/api-1");
        assert_eq!(
            v.fill("{node} {address} {host} {plan_dir} {version} {install_dir}"),
            "api-1 [::1]:8080 ::1 /plans 2 /opt/api/api-1"
        );
        assert_eq!(v.shell("ping {host}"), "ping '::1'");
        assert_eq!(v.with("version", "3").get("version"), Some("3"));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("30x"), Err("unknown unit `x`".into()));
        assert_eq!(parse_duration("30"), Err("`30` has no unit".into()));
        assert!(parse_duration("s").is_err());
    }

    #[test]
    fn templates_render() {
        assert_eq!(
            render(
                "http://{address}/h?n={node}",
                &[("address", "a:1"), ("node", "n1")]
            ),
            "http://a:1/h?n=n1"
        );
        assert_eq!(
            render("echo ${HOME} {node}", &[("node", "x")]),
            "echo ${HOME} x"
        );
    }
}
