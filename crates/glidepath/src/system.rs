//! The system file: components, their releases and the protocol ranges each
//! release speaks per axis, who talks to whom, skew rules, required stops,
//! stateful components, capability flags, and where each instance's running
//! version can be read. Parsed with the same diagnostics as plans; turned
//! into `glidepath_core::compat::SystemSpec` for the planner.
//!
//! `inventory` reads every instance's version (an HTTP endpoint, a command,
//! or a static entry for clients that cannot be polled, with a `count`).

use crate::diag::{Diag, Report, Severity};
use crate::plan::{did_you_mean, PlanError, Reader};
use glidepath_core::compat::{
    CapabilitySpec, ComponentSpec, Range, ReleaseSpec, SkewRule, System, SystemSpec,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml_span::value::{Table, ValueInner};
use toml_span::Span;

/// Where an instance's version comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum VersionSource {
    Static(String),
    Url(String),
    Command(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub component: String,
    pub name: String,
    pub source: VersionSource,
    /// How many instances this entry stands for (static lists of clients).
    pub count: u64,
}

#[derive(Debug, Clone)]
pub struct SystemFile {
    pub path: PathBuf,
    pub dir: PathBuf,
    /// The file's text (journaled by `glidepath upgrade`).
    pub source: String,
    pub spec: SystemSpec,
    pub instances: Vec<Instance>,
    /// component → rollout plan that upgrades it (handed to `glidepath run`).
    pub rollout_plans: BTreeMap<String, PathBuf>,
    /// (component, release) → the release's artifact (absolute) and
    /// sha256, for `glidepath upgrade` (`artifact`/`sha256` of a
    /// `[[component.release]]`).
    pub artifacts: BTreeMap<(String, String), (PathBuf, String)>,
    /// capability flag → the command that switches it on
    /// (`[[capability]] enable`, `timeout`), for `glidepath upgrade`.
    pub flag_commands: BTreeMap<String, FlagCommand>,
}

/// How `glidepath upgrade` switches a capability flag on.
#[derive(Debug, Clone, PartialEq)]
pub struct FlagCommand {
    /// A shell command; `{flag}` and `{campaign}` are filled single-quoted.
    pub enable: String,
    pub timeout: Duration,
}

/// How long a flag's `enable` command may run unless `timeout` says.
pub const FLAG_TIMEOUT: Duration = Duration::from_secs(60);

fn parse_range(s: &str) -> Option<Range> {
    let s = s.trim();
    match s.split_once("..") {
        Some((a, b)) => {
            let (min, max) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            (min <= max).then_some(Range { min, max })
        }
        None => s.parse().ok().map(|v| Range { min: v, max: v }),
    }
}

/// Read a system file: `[[component]]`s (with `[[component.release]]`),
/// `[[skew]]`, `[[capability]]`. A rollout plan may point at one with
/// `[system] file = "…"`; that is followed too.
pub fn load(path: &Path) -> Result<SystemFile, PlanError> {
    let source = std::fs::read_to_string(path).map_err(|e| PlanError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let dir = path
        .canonicalize()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."));
    let file = path.display().to_string();
    let report = |diags: Vec<Diag>| Report {
        file: file.clone(),
        source: source.clone(),
        diags,
    };
    let mut doc = match toml_span::parse(&source) {
        Ok(d) => d,
        Err(e) => {
            return Err(PlanError::Invalid(report(vec![Diag::error(
                format!("TOML syntax error: {e}"),
                (e.span.start, e.span.end),
                "here",
            )])));
        }
    };
    let ValueInner::Table(root) = doc.take() else {
        unreachable!("a TOML document is a table")
    };
    // a rollout plan pointing at its system file
    if !root.contains_key("component") {
        if let Some(sys) = root.get("system").and_then(|v| v.as_table()) {
            if let Some(f) = sys.get("file").and_then(|v| v.as_str()) {
                return load(&dir.join(f));
            }
        }
    }
    let mut r = Reader {
        src: &source,
        diags: Vec::new(),
        uses_port: None,
    };
    r.known_keys(
        &root,
        "the system file",
        &["component", "skew", "capability"],
    );
    let mut spec = SystemSpec::default();
    let mut instances = Vec::new();
    let mut rollout_plans = BTreeMap::new();
    let mut artifacts = BTreeMap::new();
    let mut flag_commands = BTreeMap::new();
    let mut names: Vec<String> = Vec::new();
    let mut spans: Vec<Span> = Vec::new();
    match root.get("component").map(|v| (v.as_array(), v.span)) {
        None => r.diags.push(Diag::error("no [[component]] declared", (0, 0), "the file starts here").hint("declare each component: [[component]] name = \"server\" …, with [[component.release]] entries")),
        Some((None, s)) => r.err(s, "`component` must be an array of tables", "use [[component]]", None),
        Some((Some(arr), _)) => {
            for item in arr {
                let Some(t) = item.as_table() else { continue };
                if let Some(c) = read_component(&mut r, t, item.span, &dir, &mut instances, &mut rollout_plans, &mut artifacts) {
                    if names.contains(&c.name) {
                        r.err(item.span, format!("component `{}` declared twice", c.name), "duplicate", None);
                    }
                    names.push(c.name.clone());
                    spans.push(item.span);
                    spec.components.push(c);
                }
            }
        }
    }
    // references between components
    let known: Vec<&str> = names.iter().map(String::as_str).collect();
    let check_ref = |r: &mut Reader, name: &str, span: Span, what: &str| {
        if !known.contains(&name) {
            let hint = did_you_mean(name, known.iter().copied())
                .unwrap_or_else(|| format!("components: {}", known.join(", ")));
            r.err(
                span,
                format!("{what} names unknown component `{name}`"),
                "not a declared component",
                Some(hint),
            );
        }
    };
    if let Some(arr) = root.get("component").and_then(|v| v.as_array()) {
        for item in arr {
            if let Some(list) = item
                .as_table()
                .and_then(|t| t.get("talks_to"))
                .and_then(|v| v.as_array())
            {
                for v in list {
                    if let Some(n) = v.as_str() {
                        check_ref(&mut r, n, v.span, "talks_to");
                    }
                }
            }
        }
    }
    for item in root
        .get("skew")
        .and_then(|v| v.as_array())
        .map(|a| a.as_slice())
        .unwrap_or(&[])
    {
        let Some(t) = item.as_table() else { continue };
        r.known_keys(
            t,
            "[[skew]]",
            &["component", "anchor", "max_newer", "max_older"],
        );
        let c = r.req_str(t, item.span, "[[skew]]", "component", "\"agent\"");
        let a = r.req_str(t, item.span, "[[skew]]", "anchor", "\"server\"");
        let newer = r.int(t, "max_newer", 0, "0").map_or(0, |x| x.0 as u32);
        let older = r.int(t, "max_older", 0, "3").map_or(0, |x| x.0 as u32);
        if let (Some((c, cs)), Some((a, as_))) = (c, a) {
            check_ref(&mut r, &c, cs, "a skew rule");
            check_ref(&mut r, &a, as_, "a skew rule");
            spec.skew.push(SkewRule {
                component: c,
                anchor: a,
                max_newer: newer,
                max_older: older,
            });
        }
    }
    for item in root
        .get("capability")
        .and_then(|v| v.as_array())
        .map(|a| a.as_slice())
        .unwrap_or(&[])
    {
        let Some(t) = item.as_table() else { continue };
        r.known_keys(
            t,
            "[[capability]]",
            &["name", "members", "enable", "timeout"],
        );
        let name = r.req_str(t, item.span, "[[capability]]", "name", "\"fast-sync\"");
        let enable = r.template_str(
            t,
            "enable",
            "\"./flags.sh enable {flag}\"",
            crate::template::FLAG_PLACEHOLDERS,
        );
        let timeout = r.duration(t, "timeout", Some(FLAG_TIMEOUT));
        if let (Some((n, _)), Some((enable, _)), Some(timeout)) = (&name, enable, timeout) {
            flag_commands.insert(n.clone(), FlagCommand { enable, timeout });
        }
        let members = r
            .str_list(t, "members", "[\"server\", \"agent\"]")
            .unwrap_or_default();
        for (m, s) in &members {
            check_ref(&mut r, m, *s, "a capability");
        }
        if let Some((n, _)) = name {
            spec.capabilities.push(CapabilitySpec {
                name: n,
                members: members.into_iter().map(|x| x.0).collect(),
            });
        }
    }
    if r.diags.iter().all(|d| d.severity != Severity::Error) {
        if let Err(e) = System::new(spec.clone()) {
            r.diags.push(Diag::error(e.0, (0, 0), "the declarations"));
        }
    }
    if r.diags.iter().any(|d| d.severity == Severity::Error) {
        let mut d = r.diags;
        d.sort_by_key(|x| x.span.map_or(0, |s| s.0));
        return Err(PlanError::Invalid(report(d)));
    }
    Ok(SystemFile {
        path: path.to_path_buf(),
        dir,
        source: source.clone(),
        spec,
        instances,
        rollout_plans,
        artifacts,
        flag_commands,
    })
}

fn read_component(
    r: &mut Reader,
    t: &Table<'_>,
    at: Span,
    dir: &Path,
    instances: &mut Vec<Instance>,
    plans: &mut BTreeMap<String, PathBuf>,
    artifacts: &mut BTreeMap<(String, String), (PathBuf, String)>,
) -> Option<ComponentSpec> {
    r.known_keys(
        t,
        "[[component]]",
        &[
            "name",
            "talks_to",
            "stateful",
            "release",
            "instances",
            "rollout_plan",
        ],
    );
    let (name, _) = r.req_str(t, at, "[[component]]", "name", "\"server\"")?;
    let talks_to = r
        .str_list(t, "talks_to", "[\"server\"]")
        .unwrap_or_default()
        .into_iter()
        .map(|x| x.0)
        .collect();
    let stateful = match t.get("stateful") {
        None => false,
        Some(v) => match v.as_bool() {
            Some(b) => b,
            None => {
                r.type_err(v, "stateful", "true or false", "true");
                false
            }
        },
    };
    if let Some((p, _)) = r.str(t, "rollout_plan", "\"plans/server.toml\"") {
        plans.insert(name.clone(), crate::files::tidy_join(dir, &p));
    }
    let mut releases: Vec<ReleaseSpec> = Vec::new();
    match t.get("release").map(|v| (v.as_array(), v.span)) {
        None => r.missing(
            at,
            &format!("component `{name}`"),
            "[[component.release]]",
            "a release table: version = \"1.0\", protocols = { api = \"1..2\" }",
        ),
        Some((None, s)) => r.err(
            s,
            "`release` must be an array of tables",
            "use [[component.release]]",
            None,
        ),
        Some((Some(arr), _)) => {
            for item in arr {
                let Some(rt) = item.as_table() else { continue };
                r.known_keys(
                    rt,
                    "[[component.release]]",
                    &[
                        "version",
                        "protocols",
                        "required_stop",
                        "capabilities",
                        "artifact",
                        "sha256",
                    ],
                );
                let Some((version, vs)) =
                    r.req_str(rt, item.span, "[[component.release]]", "version", "\"1.0\"")
                else {
                    continue;
                };
                if let Some(a) = read_artifact(r, rt, item.span, dir, &name, &version) {
                    artifacts.insert((name.clone(), version.clone()), a);
                }
                if releases.iter().any(|x| x.version == version) {
                    r.err(
                        vs,
                        format!("{name} release `{version}` declared twice"),
                        "duplicate",
                        None,
                    );
                }
                let mut protocols = BTreeMap::new();
                match rt.get("protocols") {
                    None => r.missing(
                        item.span,
                        "[[component.release]]",
                        "protocols",
                        "{ api = \"1..2\" }",
                    ),
                    Some(pv) => {
                        match pv.as_table() {
                            None => r.type_err(
                                pv,
                                "protocols",
                                "a table of axis = \"min..max\"",
                                "{ api = \"1..2\" }",
                            ),
                            Some(pt) => {
                                for (k, v) in pt.iter() {
                                    let range = match v.as_ref() {
                                        ValueInner::String(s) => parse_range(s),
                                        ValueInner::Integer(i) if *i >= 0 => Some(Range {
                                            min: *i as u32,
                                            max: *i as u32,
                                        }),
                                        _ => None,
                                    };
                                    match range {
                                    Some(rg) => {
                                        protocols.insert(k.name.to_string(), rg);
                                    }
                                    None => r.err(v.span, format!("invalid protocol range for `{}`", k.name), "expected \"min..max\" or a version", Some("e.g. api = \"1..3\" (speaks 1, 2 and 3), or api = 2".into())),
                                }
                                }
                            }
                        }
                    }
                }
                let required_stop = rt
                    .get("required_stop")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false);
                let capabilities: BTreeSet<String> = r
                    .str_list(rt, "capabilities", "[\"fast-sync\"]")
                    .unwrap_or_default()
                    .into_iter()
                    .map(|x| x.0)
                    .collect();
                releases.push(ReleaseSpec {
                    version,
                    protocols,
                    required_stop,
                    capabilities,
                });
            }
        }
    }
    if let Some(v) = t.get("instances") {
        match v.as_array() {
            None => r.type_err(
                v,
                "instances",
                "an array of tables",
                "[ { name = \"srv-1\", version_url = \"http://10.0.0.1/version\" } ]",
            ),
            Some(arr) => {
                for item in arr {
                    let Some(it) = item.as_table() else { continue };
                    r.known_keys(
                        it,
                        "an instance",
                        &["name", "version", "version_url", "command", "count"],
                    );
                    let Some((iname, _)) =
                        r.req_str(it, item.span, "an instance", "name", "\"srv-1\"")
                    else {
                        continue;
                    };
                    let count = r.int(it, "count", 1, "250").map_or(1, |x| x.0 as u64);
                    let src = [
                        r.str(it, "version", "\"1.0\"")
                            .map(|x| VersionSource::Static(x.0)),
                        r.str(it, "version_url", "\"http://{address}/version\"")
                            .map(|x| VersionSource::Url(x.0)),
                        r.str(it, "command", "\"api --version\"")
                            .map(|x| VersionSource::Command(x.0)),
                    ];
                    let given: Vec<VersionSource> = src.into_iter().flatten().collect();
                    if given.len() != 1 {
                        r.err(item.span, format!("instance `{iname}` needs exactly one of `version`, `version_url`, `command`"), "where its version comes from", Some("a static `version` for clients that cannot be polled (with `count`), `version_url` for a service, `command` for anything else".into()));
                        continue;
                    }
                    instances.push(Instance {
                        component: name.clone(),
                        name: iname,
                        source: given.into_iter().next().expect("one"),
                        count,
                    });
                }
            }
        }
    }
    Some(ComponentSpec {
        name,
        releases,
        stateful,
        talks_to,
    })
}

/// A release's `artifact` and `sha256` (both or neither): the artifact
/// (relative to the system file's directory, made absolute) and its
/// checksum, 64 hex digits. Whether the file exists is checked when a
/// campaign needs it (`glidepath upgrade`), not here: `inventory` and
/// `plan` may run where the artifacts are not.
fn read_artifact(
    r: &mut Reader,
    rt: &Table<'_>,
    at: Span,
    dir: &Path,
    component: &str,
    version: &str,
) -> Option<(PathBuf, String)> {
    let artifact = r.str(rt, "artifact", "\"dist/server-2.0.tar.gz\"");
    let sha = r.str(rt, "sha256", "\"<64 hex digits>\"");
    if let Some((h, hs)) = &sha {
        if h.len() != 64 || !h.chars().all(|c| c.is_ascii_hexdigit()) {
            r.err(
                *hs,
                format!("{component} release `{version}`: `sha256` must be 64 hex digits"),
                "not a sha256",
                Some("sha256sum ARTIFACT | cut -d' ' -f1 (for a directory: glidepath validate prints the manifest's sha256)".into()),
            );
            return None;
        }
    }
    match (artifact, sha) {
        (Some((a, as_)), Some((h, _))) => {
            if a.trim().is_empty() {
                r.err(as_, "`artifact` is empty", "a path", None);
                return None;
            }
            Some((crate::files::tidy_join(dir, &a), h.to_ascii_lowercase()))
        }
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            r.err(
                at,
                format!("{component} release `{version}` needs both `artifact` and `sha256`, or neither"),
                "one of the two is missing",
                Some("a release `glidepath upgrade` rolls out is its artifact and the artifact's reviewed sha256: artifact = \"dist/2.0.tar.gz\", sha256 = \"…\"".into()),
            );
            None
        }
    }
}

/// One instance's observed version.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Observed {
    pub component: String,
    pub instance: String,
    pub count: u64,
    pub version: Option<String>,
    pub error: Option<String>,
}

/// Read every instance's version (at most 32 at a time, each with a timeout).
pub async fn collect(sys: &SystemFile, timeout: Duration) -> Vec<Observed> {
    let client = crate::drivers::http_client(timeout);
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(32));
    let mut set = tokio::task::JoinSet::new();
    for (i, inst) in sys.instances.iter().cloned().enumerate() {
        let (client, sem, dir) = (client.clone(), sem.clone(), sys.dir.clone());
        set.spawn(async move {
            let _permit = sem.acquire_owned().await;
            let got: Result<String, String> = match &inst.source {
                VersionSource::Static(v) => Ok(v.clone()),
                VersionSource::Url(u) => match client.get(u).send().await {
                    Ok(resp) if resp.status().is_success() => crate::drivers::http::read_text(
                        resp,
                        crate::drivers::http::SMALL_MAX,
                        &format!("GET {u}"),
                        crate::drivers::DriverError::Failed,
                    )
                    .await
                    .map(|t| t.trim().to_string())
                    .map_err(|e| e.to_string()),
                    Ok(resp) => Err(format!("GET {u}: HTTP {}", resp.status())),
                    Err(e) => Err(format!(
                        "GET {u}: {}",
                        if e.is_timeout() {
                            "timed out".to_string()
                        } else if e.is_connect() {
                            "connection failed".to_string()
                        } else {
                            e.to_string()
                        }
                    )),
                },
                VersionSource::Command(c) => {
                    crate::drivers::service_command::shell_output(c, &dir, timeout)
                        .await
                        .map(|o| o.lines().last().unwrap_or("").trim().to_string())
                        .map_err(|e| e.to_string())
                }
            };
            let (version, error) = match got {
                Ok(v) if !v.is_empty() => (Some(v), None),
                Ok(_) => (None, Some("empty version".to_string())),
                Err(e) => (None, Some(e)),
            };
            (
                i,
                Observed {
                    component: inst.component,
                    instance: inst.name,
                    count: inst.count,
                    version,
                    error,
                },
            )
        });
    }
    let mut out: Vec<(usize, Observed)> = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(x) = r {
            out.push(x);
        }
    }
    out.sort_by_key(|x| x.0);
    out.into_iter().map(|x| x.1).collect()
}
