//! `probe = { … }`: one verification probe (`crate::probe`), read from any
//! table: `[health]` and the `[[pre]]`/`[[post]]` tasks. Exactly one kind
//! key (`http`, `websocket`, `tcp`, `command`, `promql`) says what it
//! checks; the other keys are that kind's. Every problem is a diagnostic
//! at its span, with a hint.

use super::reader::{did_you_mean, Reader};
use crate::config::{CommandProbe, HttpProbe, OnEmpty, ProbeCfg, PromQlProbe, TcpProbe, WsProbe};
use crate::template::{NODE_PLACEHOLDERS, PLACEHOLDERS, TASK_PLACEHOLDERS};
use std::path::Path;
use toml_span::value::{Table, Value, ValueInner};
use toml_span::Span;

/// Where a probe is declared, which says the placeholders it may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// `[health] probe`: per node; URLs and addresses take `{node}`,
    /// `{address}`, `{host}`, the command every node placeholder.
    Node,
    /// A `[[pre]]`/`[[post]]` task: no node; URLs and addresses take
    /// `{version}` (the release being rolled out), the command what a
    /// task's `run` takes (`TASK_PLACEHOLDERS`: `{version}`, `{plan_dir}`,
    /// `{run}`).
    Phase,
}

/// `{version}`: what a phase task's probe URL or address may use.
pub(crate) const PHASE_PLACEHOLDERS: &[&str] = &["version", "previous"];

impl Scope {
    fn urls(self) -> &'static [&'static str] {
        match self {
            Scope::Node => NODE_PLACEHOLDERS,
            Scope::Phase => PHASE_PLACEHOLDERS,
        }
    }

    fn commands(self) -> &'static [&'static str] {
        match self {
            Scope::Node => PLACEHOLDERS,
            Scope::Phase => TASK_PLACEHOLDERS,
        }
    }
}

const KINDS: &[&str] = &["http", "websocket", "tcp", "command", "promql"];
const HTTP_KEYS: &[&str] = &["http", "status", "body", "json", "within"];
const WS_KEYS: &[&str] = &[
    "websocket",
    "send",
    "expect_type",
    "caps",
    "caps_field",
    "within",
];
const TCP_KEYS: &[&str] = &["tcp", "within"];
const COMMAND_KEYS: &[&str] = &["command", "stdout", "within"];
const PROMQL_KEYS: &[&str] = &["promql", "prometheus", "min", "max", "on_empty", "within"];

/// The largest `send` message (the peer's limit is the probe's own, 64 KiB).
const SEND_MAX: usize = crate::probe::ws::MESSAGE_MAX;

const EXAMPLE: &str = "probe = { http = \"http://127.0.0.1:8080/healthz\", status = 200 }";

/// The probe in `v` (the value of a `probe` key), `path` naming it in the
/// messages (`[health].probe`, `[[post]] "verify".probe`). `dir` is where
/// a command probe runs (the plan's directory).
pub(crate) fn read(
    r: &mut Reader,
    v: &Value<'_>,
    path: &str,
    scope: Scope,
    dir: &Path,
) -> Option<ProbeCfg> {
    let before = r.diags.len();
    let p = read_table(r, v, path, scope, dir);
    // Any problem (an unknown key too) and there is no probe.
    p.filter(|_| r.diags.len() == before)
}

fn read_table(
    r: &mut Reader,
    v: &Value<'_>,
    path: &str,
    scope: Scope,
    dir: &Path,
) -> Option<ProbeCfg> {
    let Some(t) = v.as_table() else {
        let found = v.as_ref().type_str();
        r.err(
            v.span,
            format!("wrong type for {path}: expected a table, found {found}"),
            "expected a table",
            Some(format!("for example: {EXAMPLE}")),
        );
        return None;
    };
    let at = v.span;
    let kinds: Vec<(&str, Span)> = t
        .iter()
        .filter(|(k, _)| KINDS.contains(&k.name.as_ref()))
        .map(|(k, _)| {
            let name = *KINDS
                .iter()
                .find(|n| **n == k.name.as_ref())
                .expect("a kind");
            (name, k.span)
        })
        .collect();
    let Some(&(kind, _)) = kinds.first() else {
        r.known_keys(t, path, &all_keys());
        r.err(
            at,
            format!("{path} does not say what it checks"),
            "no probe kind",
            Some(format!("add one of {}: {EXAMPLE}", KINDS.join(", "))),
        );
        return None;
    };
    for (other, span) in &kinds[1..] {
        r.err(
            *span,
            format!("{path} has both `{kind}` and `{other}`"),
            "a second probe kind",
            Some("a probe checks one thing: declare two probes (two tasks)".into()),
        );
    }
    let keys = match kind {
        "http" => HTTP_KEYS,
        "websocket" => WS_KEYS,
        "tcp" => TCP_KEYS,
        "command" => COMMAND_KEYS,
        _ => PROMQL_KEYS,
    };
    let article = if kind == "http" { "an" } else { "a" };
    let section = format!("{path} ({article} {kind} probe)");
    r.known_keys(t, &section, keys);
    let within = r.duration(t, "within", None);
    let within = match t.get("within") {
        Some(_) => Some(within?),
        None => None,
    };
    match kind {
        "http" => read_http(r, t, path, scope, within),
        "websocket" => read_ws(r, t, path, scope, within),
        "tcp" => read_tcp(r, t, path, scope, within),
        "command" => read_command(r, t, at, path, scope, dir, within),
        _ => read_promql(r, t, at, path, scope, within),
    }
}

/// Every key of every kind, for the hints when no kind is given.
fn all_keys() -> Vec<&'static str> {
    let mut all: Vec<&str> = Vec::new();
    for k in [HTTP_KEYS, WS_KEYS, TCP_KEYS, COMMAND_KEYS, PROMQL_KEYS]
        .into_iter()
        .flatten()
    {
        if !all.contains(k) {
            all.push(k);
        }
    }
    all
}

/// A URL template: its placeholders checked, then (filled with sample
/// values) parsed, its scheme `want`.
fn url(
    r: &mut Reader,
    t: &Table<'_>,
    key: &str,
    want: &str,
    example: &str,
    allowed: &[&str],
) -> Option<String> {
    let (s, span) = r.str(t, key, example)?;
    let before = r.diags.len();
    r.template(&s, span, key, allowed);
    if r.diags.len() > before {
        return None;
    }
    let sample = sample(&s);
    let bad = |r: &mut Reader, msg: String, hint: String| {
        r.err(span, msg, "not a usable URL", Some(hint));
        None
    };
    match reqwest::Url::parse(&sample) {
        Err(e) => bad(
            r,
            format!("`{key}` = {s:?} is not a URL: {e}"),
            format!("for example: {key} = {example}"),
        ),
        Ok(u) if u.scheme() == "https" || u.scheme() == "wss" => bad(
            r,
            format!("`{key}`: {}:// is not supported: glidepath is built without TLS", u.scheme()),
            format!("probe a plain {want}:// endpoint (on the node or 127.0.0.1, behind the TLS terminator)"),
        ),
        Ok(u) if u.scheme() != want => bad(
            r,
            format!("`{key}` must be a {want}:// URL, found {}://", u.scheme()),
            format!("for example: {key} = {example}"),
        ),
        Ok(u) if u.host_str().is_none_or(str::is_empty) => bad(
            r,
            format!("`{key}` = {s:?} has no host"),
            format!("for example: {key} = {example}"),
        ),
        Ok(_) => Some(s),
    }
}

/// A template with sample values in its placeholders, to check its shape.
fn sample(s: &str) -> String {
    crate::template::Vars::node("node-1", "127.0.0.1:8080")
        .with("version", "1.0.0")
        .with("install_dir", "/srv/app")
        .with("plan_dir", "/srv/plans")
        .fill(s)
}

fn read_http(
    r: &mut Reader,
    t: &Table<'_>,
    path: &str,
    scope: Scope,
    within: Option<std::time::Duration>,
) -> Option<ProbeCfg> {
    let url = url(
        r,
        t,
        "http",
        "http",
        "\"http://127.0.0.1:8080/healthz\"",
        scope.urls(),
    );
    let status = match r.int(t, "status", 100, "200") {
        Some((c, span)) if c > 599 => {
            r.err(
                span,
                format!("`status` = {c} is not an HTTP status"),
                "100 to 599",
                Some("for example: status = 200 (leave it out for any 2xx)".into()),
            );
            None
        }
        Some((c, _)) => Some(Some(c as u16)),
        None if t.get("status").is_some() => None,
        None => Some(None),
    };
    let body = r.str(t, "body", "\"ok\"").map(|x| x.0);
    let json = match t.get("json") {
        None => Some(Vec::new()),
        Some(v) => read_json(r, v, path),
    };
    Some(ProbeCfg::Http(HttpProbe {
        url: url?,
        status: status?,
        body,
        json: json?,
        within,
    }))
}

/// `json = { "/status" = "ok", "/db/up" = true }`: JSON pointers and the
/// values expected there.
fn read_json(
    r: &mut Reader,
    v: &Value<'_>,
    path: &str,
) -> Option<Vec<(String, serde_json::Value)>> {
    let Some(t) = v.as_table() else {
        r.type_err(
            v,
            "json",
            "a table of JSON pointers",
            "{ \"/status\" = \"ok\" }",
        );
        return None;
    };
    if t.is_empty() {
        r.err(
            v.span,
            format!("`json` in {path} is empty"),
            "no field to check",
            Some("for example: json = { \"/status\" = \"ok\" }, or leave it out".into()),
        );
        return None;
    }
    let mut out = Vec::new();
    let mut ok = true;
    // In the plan's order (the table is sorted by key).
    let mut fields: Vec<_> = t.iter().collect();
    fields.sort_by_key(|(k, _)| k.span.start);
    for (k, val) in fields {
        let ptr = k.name.to_string();
        if !ptr.starts_with('/') {
            r.err(
                k.span,
                format!("`json` key {ptr:?} is not a JSON pointer"),
                "a JSON pointer starts with /",
                Some(format!(
                    "write \"/{}\" (a field: /status; a nested one: /db/up; an array item: /items/0)",
                    ptr.trim_start_matches('/')
                )),
            );
            ok = false;
            continue;
        }
        match to_json(val) {
            Some(j) => out.push((ptr, j)),
            None => {
                r.err(
                    val.span,
                    format!("`json` value for {ptr:?} cannot be compared with JSON"),
                    "not a JSON value",
                    Some("use a string, a number, a boolean, an array or a table".into()),
                );
                ok = false;
            }
        }
    }
    ok.then_some(out)
}

/// A TOML value as JSON (`None` for what JSON has not: a date).
fn to_json(v: &Value<'_>) -> Option<serde_json::Value> {
    Some(match v.as_ref() {
        ValueInner::String(s) => serde_json::Value::String(s.to_string()),
        ValueInner::Integer(i) => serde_json::Value::from(*i),
        ValueInner::Float(f) => serde_json::Number::from_f64(*f)?.into(),
        ValueInner::Boolean(b) => serde_json::Value::Bool(*b),
        ValueInner::Array(a) => {
            serde_json::Value::Array(a.iter().map(to_json).collect::<Option<Vec<_>>>()?)
        }
        ValueInner::Table(t) => serde_json::Value::Object(
            t.iter()
                .map(|(k, v)| Some((k.name.to_string(), to_json(v)?)))
                .collect::<Option<serde_json::Map<_, _>>>()?,
        ),
    })
}

fn read_ws(
    r: &mut Reader,
    t: &Table<'_>,
    path: &str,
    scope: Scope,
    within: Option<std::time::Duration>,
) -> Option<ProbeCfg> {
    let url = url(
        r,
        t,
        "websocket",
        "ws",
        "\"ws://127.0.0.1:9000/rt\"",
        scope.urls(),
    );
    let mut ok = true;
    let send = r.str(t, "send", "'{\"type\":\"hello\"}'");
    if let Some((s, span)) = &send {
        if s.len() > SEND_MAX {
            r.err(
                *span,
                format!(
                    "`send` is {} bytes, over the 64 KiB a message may have",
                    s.len()
                ),
                "too long",
                None,
            );
            ok = false;
        } else if let Err(e) = serde_json::from_str::<serde_json::Value>(s) {
            r.err(
                *span,
                format!("`send` is not JSON: {e}"),
                "not JSON",
                Some(
                    "write the message in single quotes, as JSON: send = '{\"type\":\"hello\"}'"
                        .into(),
                ),
            );
            ok = false;
        }
    }
    let expect_type = r.str(t, "expect_type", "\"welcome\"");
    let caps = r.str_list(t, "caps", "[\"chat\", \"presence\"]");
    if t.get("caps").is_some() && caps.is_none() {
        ok = false;
    }
    let caps_field = match r.str(t, "caps_field", "\"caps\"") {
        Some((f, span)) if f.is_empty() => {
            r.err(
                span,
                "`caps_field` is empty",
                "no field name",
                Some("leave it out for \"caps\"".into()),
            );
            ok = false;
            String::new()
        }
        Some((f, _)) => f,
        None if t.get("caps_field").is_some() => {
            ok = false;
            String::new()
        }
        None => "caps".into(),
    };
    if expect_type.is_none() && t.get("expect_type").is_none() {
        for key in ["send", "caps", "caps_field"] {
            if let Some((k, _)) = t.iter().find(|(k, _)| k.name == key) {
                r.err(
                    k.span,
                    format!("`{key}` in {path} needs `expect_type`, the reply's type"),
                    "no reply expected",
                    Some("add: expect_type = \"welcome\"".into()),
                );
                ok = false;
            }
        }
    }
    let url = url?;
    if !ok || (t.get("expect_type").is_some() && expect_type.is_none()) {
        return None;
    }
    Some(ProbeCfg::WebSocket(WsProbe {
        url,
        send: send.map(|s| s.0),
        expect_type: expect_type.map(|s| s.0),
        caps: caps.unwrap_or_default().into_iter().map(|c| c.0).collect(),
        caps_field,
        within,
    }))
}

fn read_tcp(
    r: &mut Reader,
    t: &Table<'_>,
    _path: &str,
    scope: Scope,
    within: Option<std::time::Duration>,
) -> Option<ProbeCfg> {
    let (s, span) = r.str(t, "tcp", "\"127.0.0.1:5432\"")?;
    let before = r.diags.len();
    r.template(&s, span, "tcp", scope.urls());
    if r.diags.len() > before {
        return None;
    }
    let sample = sample(&s);
    let has_port = match sample.rsplit_once(':') {
        Some((h, p)) => !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p > 0),
        None => false,
    };
    if let Err(why) = crate::names::check_address(&sample).and_then(|()| {
        if has_port {
            Ok(())
        } else {
            Err("it has no port".into())
        }
    }) {
        r.err(
            span,
            format!("`tcp` = {s:?} is not host:port: {why}"),
            "not an address",
            Some("for example: tcp = \"127.0.0.1:5432\" (or \"{address}\" in [health])".into()),
        );
        return None;
    }
    Some(ProbeCfg::Tcp(TcpProbe { address: s, within }))
}

fn read_command(
    r: &mut Reader,
    t: &Table<'_>,
    at: Span,
    path: &str,
    scope: Scope,
    dir: &Path,
    within: Option<std::time::Duration>,
) -> Option<ProbeCfg> {
    let (command, span) = r.str(t, "command", "\"replay-hash --all\"")?;
    if command.trim().is_empty() {
        r.err(
            span,
            format!("`command` in {path} is empty"),
            "no command",
            Some("for example: command = \"replay-hash --all\"".into()),
        );
        return None;
    }
    let _ = at;
    let before = r.diags.len();
    r.template(&command, span, "command", scope.commands());
    let stdout = r.str(t, "stdout", "\"ok\"").map(|x| x.0);
    if r.diags.len() > before {
        return None;
    }
    Some(ProbeCfg::Command(CommandProbe {
        command,
        stdout,
        dir: dir.to_path_buf(),
        within,
    }))
}

fn read_promql(
    r: &mut Reader,
    t: &Table<'_>,
    at: Span,
    path: &str,
    scope: Scope,
    within: Option<std::time::Duration>,
) -> Option<ProbeCfg> {
    let query = match r.str(t, "promql", "\"sum(rate(errors_total[1m]))\"") {
        Some((q, span)) if q.trim().is_empty() => {
            r.err(
                span,
                format!("`promql` in {path} is empty"),
                "no query",
                Some("for example: promql = \"sum(rate(errors_total[1m]))\"".into()),
            );
            None
        }
        other => other.map(|x| x.0),
    };
    let prometheus = if t.get("prometheus").is_none() {
        r.err(
            at,
            format!("missing `prometheus` in {path}"),
            "a promql probe needs the Prometheus URL",
            Some("add: prometheus = \"http://127.0.0.1:9090\"".into()),
        );
        None
    } else {
        url(
            r,
            t,
            "prometheus",
            "http",
            "\"http://127.0.0.1:9090\"",
            scope.urls(),
        )
    };
    let min = r.num(t, "min");
    let max = r.num(t, "max");
    let mut ok =
        !(t.get("min").is_some() && min.is_none() || t.get("max").is_some() && max.is_none());
    if t.get("min").is_none() && t.get("max").is_none() {
        r.err(
            at,
            format!("{path} has no `max` or `min`"),
            "nothing to compare the value with",
            Some("add: max = 0.1 (the value must stay at or under it), or min = …".into()),
        );
        ok = false;
    }
    if let (Some((lo, _)), Some((hi, span))) = (min, max) {
        if lo > hi {
            r.err(
                span,
                format!("`max` = {hi} is below `min` = {lo}: no value can pass"),
                "below min",
                None,
            );
            ok = false;
        }
    }
    let on_empty = match r.str(t, "on_empty", "\"zero\"") {
        None if t.get("on_empty").is_some() => None,
        None => Some(OnEmpty::Zero),
        Some((s, _)) if s == "zero" => Some(OnEmpty::Zero),
        Some((s, _)) if s == "fail" => Some(OnEmpty::Fail),
        Some((s, span)) => {
            let hint = did_you_mean(&s, ["zero", "fail"])
                .unwrap_or_else(|| "use \"zero\" (no series is 0, the default) or \"fail\"".into());
            r.err(
                span,
                format!("unknown `on_empty` = {s:?}"),
                "zero or fail",
                Some(hint),
            );
            None
        }
    };
    if !ok {
        return None;
    }
    Some(ProbeCfg::PromQl(PromQlProbe {
        query: query?,
        prometheus: prometheus?,
        min: min.map(|m| m.0),
        max: max.map(|m| m.0),
        on_empty: on_empty?,
        within,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Read `probe = …` from `src`: the probe, and each diagnostic as
    /// (message, the text it points at, hint).
    fn read_in(src: &str, scope: Scope) -> (Option<ProbeCfg>, Vec<(String, String, String)>) {
        let mut doc = toml_span::parse(src).unwrap();
        let ValueInner::Table(root) = doc.take() else {
            unreachable!()
        };
        let mut r = Reader {
            src,
            diags: Vec::new(),
            uses_port: None,
        };
        let p = read(
            &mut r,
            root.get("probe").unwrap(),
            "[health].probe",
            scope,
            Path::new("/plans"),
        );
        let diags = r
            .diags
            .iter()
            .map(|d| {
                let (s, e) = d.span.unwrap();
                (
                    d.message.clone(),
                    src[s..e].to_string(),
                    d.hint.clone().unwrap_or_default(),
                )
            })
            .collect();
        (p, diags)
    }

    fn ok(src: &str) -> ProbeCfg {
        let (p, diags) = read_in(src, Scope::Phase);
        assert!(diags.is_empty(), "{diags:#?}");
        p.unwrap()
    }

    /// The diagnostics of a bad probe (it reads as no probe).
    fn bad(src: &str, scope: Scope) -> Vec<(String, String, String)> {
        let (p, diags) = read_in(src, scope);
        assert!(p.is_none(), "{p:?}");
        assert!(!diags.is_empty());
        diags
    }

    fn one(src: &str) -> (String, String, String) {
        let d = bad(src, Scope::Phase);
        assert_eq!(d.len(), 1, "{d:#?}");
        d.into_iter().next().unwrap()
    }

    #[test]
    fn each_kind_reads() {
        assert_eq!(
            ok(
                r#"probe = { http = "http://127.0.0.1:8080/healthz", status = 200, json = { "/status" = "ok", "/db/up" = true, "/n" = 3 } }"#
            ),
            ProbeCfg::Http(HttpProbe {
                url: "http://127.0.0.1:8080/healthz".into(),
                status: Some(200),
                body: None,
                json: vec![
                    ("/status".into(), serde_json::json!("ok")),
                    ("/db/up".into(), serde_json::json!(true)),
                    ("/n".into(), serde_json::json!(3)),
                ],
                within: None,
            })
        );
        assert_eq!(
            ok(
                r#"probe = { websocket = "ws://127.0.0.1:9000/rt", send = '{"type":"hello"}', expect_type = "welcome", caps = ["chat","presence"], within = "3s" }"#
            ),
            ProbeCfg::WebSocket(WsProbe {
                url: "ws://127.0.0.1:9000/rt".into(),
                send: Some("{\"type\":\"hello\"}".into()),
                expect_type: Some("welcome".into()),
                caps: vec!["chat".into(), "presence".into()],
                caps_field: "caps".into(),
                within: Some(Duration::from_secs(3)),
            })
        );
        assert_eq!(
            ok(r#"probe = { tcp = "127.0.0.1:5432" }"#),
            ProbeCfg::Tcp(TcpProbe {
                address: "127.0.0.1:5432".into(),
                within: None
            })
        );
        assert_eq!(
            ok(r#"probe = { command = "replay-hash --all --release {version}", stdout = "ok" }"#),
            ProbeCfg::Command(CommandProbe {
                command: "replay-hash --all --release {version}".into(),
                stdout: Some("ok".into()),
                dir: "/plans".into(),
                within: None,
            })
        );
        assert_eq!(
            ok(
                r#"probe = { promql = "sum(rate(ws_close_total{code=~\"4001|4008|1011\"}[1m]))", prometheus = "http://127.0.0.1:9090", max = 0.1 }"#
            ),
            ProbeCfg::PromQl(PromQlProbe {
                query: "sum(rate(ws_close_total{code=~\"4001|4008|1011\"}[1m]))".into(),
                prometheus: "http://127.0.0.1:9090".into(),
                min: None,
                max: Some(0.1),
                on_empty: OnEmpty::Zero,
                within: None,
            })
        );
        // A node's probe takes the node's placeholders.
        let (p, d) = read_in(
            "probe = { websocket = \"ws://{address}/rt\", expect_type = \"welcome\" }",
            Scope::Node,
        );
        assert!(d.is_empty() && p.is_some(), "{d:?}");
        // A [section] table reads like an inline one.
        let (p, d) = read_in("[probe]\ntcp = \"{host}:5432\"\n", Scope::Node);
        assert!(d.is_empty() && p.is_some(), "{d:?}");
    }

    #[test]
    fn kinds_none_or_two() {
        let d = bad(r#"probe = { url = "http://x" }"#, Scope::Phase);
        assert_eq!(d[0].0, "unknown key `url` in [health].probe");
        let (msg, at, hint) = &d[1];
        assert_eq!(msg, "[health].probe does not say what it checks");
        assert_eq!(at, r#"{ url = "http://x" }"#);
        assert!(
            hint.starts_with("add one of http, websocket, tcp, command, promql"),
            "{hint}"
        );
        let d = bad(r#"probe = { htp = "http://x" }"#, Scope::Phase);
        assert_eq!(d[0].0, "unknown key `htp` in [health].probe");
        assert_eq!(d[0].2, "did you mean `http`?");
        let d = bad(
            r#"probe = { http = "http://127.0.0.1/", tcp = "127.0.0.1:1" }"#,
            Scope::Phase,
        );
        assert_eq!(d[0].0, "[health].probe has both `http` and `tcp`");
        assert_eq!(d[0].1, "tcp");
        // The first kind's keys are the ones allowed.
        assert!(
            d.iter()
                .any(|x| x.0 == "unknown key `tcp` in [health].probe (an http probe)"),
            "{d:#?}"
        );
        let (msg, at, hint) = one("probe = \"http://x\"");
        assert_eq!(
            msg,
            "wrong type for [health].probe: expected a table, found string"
        );
        assert_eq!(at, "http://x");
        assert!(hint.contains("probe = { http = "), "{hint}");
    }

    #[test]
    fn unknown_and_misplaced_keys() {
        let (msg, at, hint) = one(r#"probe = { http = "http://127.0.0.1/", stdout = "ok" }"#);
        assert_eq!(
            msg,
            "unknown key `stdout` in [health].probe (an http probe)"
        );
        assert_eq!(at, "stdout");
        assert_eq!(
            hint,
            "known keys in [health].probe (an http probe): http, status, body, json, within"
        );
        let (msg, _, hint) =
            one(r#"probe = { websocket = "ws://127.0.0.1/", expect_typ = "welcome" }"#);
        assert_eq!(
            msg,
            "unknown key `expect_typ` in [health].probe (a websocket probe)"
        );
        assert_eq!(hint, "did you mean `expect_type`?");
    }

    #[test]
    fn wrong_types_and_values() {
        let (msg, at, _) = one(r#"probe = { http = "http://127.0.0.1/", status = "200" }"#);
        assert_eq!(
            msg,
            "wrong type for `status`: expected an integer, found string"
        );
        assert_eq!(at, "200");
        let (msg, _, _) = one(r#"probe = { http = "http://127.0.0.1/", status = 700 }"#);
        assert_eq!(msg, "`status` = 700 is not an HTTP status");
        let (msg, at, hint) =
            one(r#"probe = { http = "http://127.0.0.1/", json = { status = "ok" } }"#);
        assert_eq!(msg, "`json` key \"status\" is not a JSON pointer");
        assert_eq!(at, "status");
        assert!(hint.starts_with("write \"/status\""), "{hint}");
        let (msg, _, _) = one(r#"probe = { http = "http://127.0.0.1/", json = "/status" }"#);
        assert_eq!(
            msg,
            "wrong type for `json`: expected a table of JSON pointers, found string"
        );
        let (msg, _, _) = one(r#"probe = { tcp = "127.0.0.1:1", within = "soon" }"#);
        assert!(
            msg.starts_with("invalid duration `soon` for `within`"),
            "{msg}"
        );
        let (msg, at, hint) = one(r#"probe = { tcp = "127.0.0.1" }"#);
        assert_eq!(
            msg,
            "`tcp` = \"127.0.0.1\" is not host:port: it has no port"
        );
        assert_eq!(at, "127.0.0.1");
        assert!(hint.contains("127.0.0.1:5432"), "{hint}");
        let (msg, _, _) = one(r#"probe = { command = "  " }"#);
        assert_eq!(msg, "`command` in [health].probe is empty");
    }

    #[test]
    fn bad_urls() {
        let (msg, at, hint) = one(r#"probe = { http = "https://api.example/healthz" }"#);
        assert_eq!(
            msg,
            "`http`: https:// is not supported: glidepath is built without TLS"
        );
        assert_eq!(at, "https://api.example/healthz");
        assert!(hint.starts_with("probe a plain http:// endpoint"), "{hint}");
        let (msg, _, _) = one(r#"probe = { websocket = "http://127.0.0.1:9000/rt" }"#);
        assert_eq!(msg, "`websocket` must be a ws:// URL, found http://");
        let (msg, _, _) = one(r#"probe = { websocket = "wss://127.0.0.1:9000/rt" }"#);
        assert_eq!(
            msg,
            "`websocket`: wss:// is not supported: glidepath is built without TLS"
        );
        let (msg, _, _) = one(r#"probe = { http = "not a url" }"#);
        assert!(
            msg.starts_with("`http` = \"not a url\" is not a URL"),
            "{msg}"
        );
    }

    #[test]
    fn websocket_messages() {
        let (msg, at, hint) = one(
            r#"probe = { websocket = "ws://127.0.0.1:9000/rt", send = '{"type":hello}', expect_type = "welcome" }"#,
        );
        assert!(msg.starts_with("`send` is not JSON: "), "{msg}");
        assert_eq!(at, r#"{"type":hello}"#);
        assert!(hint.contains("single quotes"), "{hint}");
        let d = bad(
            r#"probe = { websocket = "ws://127.0.0.1:9000/rt", send = '{"type":"hello"}', caps = ["chat"] }"#,
            Scope::Phase,
        );
        let msgs: Vec<&str> = d.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "`send` in [health].probe needs `expect_type`, the reply's type",
                "`caps` in [health].probe needs `expect_type`, the reply's type"
            ]
        );
        let (msg, _, _) = one(
            r#"probe = { websocket = "ws://127.0.0.1:9000/rt", expect_type = "welcome", caps = "chat" }"#,
        );
        assert_eq!(
            msg,
            "wrong type for `caps`: expected an array of strings, found string"
        );
    }

    #[test]
    fn placeholders_by_scope() {
        // No node in a phase task.
        let (msg, at, hint) = one(r#"probe = { http = "http://{address}/healthz" }"#);
        assert_eq!(msg, "unknown placeholder `{address}` in `http`");
        assert_eq!(at, "http://{address}/healthz");
        assert_eq!(hint, "placeholders available here: {version}, {previous}");
        // {version} is for phase tasks' URLs, and their commands take
        // what a task's `run` takes…
        ok(r#"probe = { http = "http://127.0.0.1/v/{version}" }"#);
        ok(r#"probe = { command = "{plan_dir}/check --run {run} {version}" }"#);
        let (msg, _, _) = one(r#"probe = { command = "check {node}" }"#);
        assert_eq!(msg, "unknown placeholder `{node}` in `command`");
        // …and a node's URLs take the node's.
        let d = bad(r#"probe = { tcp = "{adress}" }"#, Scope::Node);
        assert_eq!(d[0].0, "unknown placeholder `{adress}` in `tcp`");
        assert_eq!(d[0].2, "did you mean `address`?");
    }

    #[test]
    fn promql_needs_its_source_and_a_bound() {
        let d = bad(r#"probe = { promql = "up" }"#, Scope::Phase);
        let msgs: Vec<&str> = d.iter().map(|x| x.0.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "missing `prometheus` in [health].probe",
                "[health].probe has no `max` or `min`"
            ]
        );
        let (msg, _, _) = one(
            r#"probe = { promql = "up", prometheus = "http://127.0.0.1:9090", min = 2, max = 1 }"#,
        );
        assert_eq!(msg, "`max` = 1 is below `min` = 2: no value can pass");
        let (msg, _, hint) = one(
            r#"probe = { promql = "up", prometheus = "http://127.0.0.1:9090", max = 1, on_empty = "zer" }"#,
        );
        assert_eq!(msg, "unknown `on_empty` = \"zer\"");
        assert_eq!(hint, "did you mean `zero`?");
        let p = ok(
            r#"probe = { promql = "up", prometheus = "http://127.0.0.1:9090", min = 1, on_empty = "fail" }"#,
        );
        assert!(
            matches!(p, ProbeCfg::PromQl(PromQlProbe { on_empty: OnEmpty::Fail, min: Some(m), .. }) if m == 1.0)
        );
    }

    #[test]
    fn health_takes_a_probe() {
        let read_health = |src: &str| {
            let mut doc = toml_span::parse(src).unwrap();
            let ValueInner::Table(root) = doc.take() else {
                unreachable!()
            };
            let mut r = Reader {
                src,
                diags: Vec::new(),
                uses_port: None,
            };
            let h = super::super::health::read(&mut r, &root, Path::new("/plans"));
            let msgs: Vec<String> = r.diags.iter().map(|d| d.message.clone()).collect();
            (h, msgs)
        };
        // A probe alone is a health check.
        let (h, msgs) = read_health(
            "[health]\nprobe = { websocket = \"ws://{address}/rt\", send = '{\"type\":\"hello\"}', expect_type = \"welcome\", caps = [\"chat\"] }\n",
        );
        assert!(msgs.is_empty(), "{msgs:?}");
        let h = h.unwrap();
        assert!(matches!(&h.probe, Some(ProbeCfg::WebSocket(w)) if w.url == "ws://{address}/rt"));
        assert_eq!(
            h.probe.unwrap().describe(),
            "websocket ws://{address}/rt, sends {\"type\":\"hello\"}, expects a reply of type \"welcome\" with caps ⊇ [chat]"
        );
        // Its problems are the plan's.
        let (h, msgs) = read_health(
            "[health]\nhttp = \"http://{address}/health\"\nprobe = { tcp = \"{portal}\" }\n",
        );
        assert!(h.is_none());
        assert_eq!(msgs, ["unknown placeholder `{portal}` in `tcp`"]);
        let (_, msgs) = read_health("[health]\nprobes = { tcp = \"{address}\" }\n");
        assert_eq!(msgs[0], "unknown key `probes` in [health]");
    }
}
