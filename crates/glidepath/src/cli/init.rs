//! `glidepath init [PATH]`: a commented first plan, from flags or, on a
//! terminal, a short dialogue for what the flags leave out. The text is
//! validated by the plan parser before anything is written: a hostile
//! node name or address is reported as `validate` would, and nothing is
//! written.

use super::{print_json, Ctx};
use crate::{exit, Failure};
use clap::ValueEnum;
use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
pub enum BalancerKind {
    Haproxy,
    Http,
    Command,
    None,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
pub enum DeployKind {
    Local,
    Ssh,
    Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
pub enum MetricsKind {
    Scrape,
    Prometheus,
    None,
}

/// What `init` was told (a `None` is asked for on a terminal, else its
/// default is used and said).
#[derive(Debug, Default, clap::Args)]
pub struct InitArgs {
    /// Where to write the plan.
    #[arg(default_value = "plan.toml")]
    pub path: PathBuf,
    /// Overwrite PATH if it exists.
    #[arg(long)]
    pub force: bool,
    /// How nodes are taken out of rotation [default: none].
    #[arg(long, value_enum)]
    pub balancer: Option<BalancerKind>,
    /// How releases reach the nodes [default: local].
    #[arg(long, value_enum)]
    pub deploy: Option<DeployKind>,
    /// A node, NAME=ADDRESS (host:port); repeat for each node [default: api-1=127.0.0.1:8081 api-2=127.0.0.1:8082].
    #[arg(long = "node", value_name = "NAME=ADDRESS")]
    pub nodes: Vec<String>,
    /// Where releases live on each node [default: /opt/api/{node} (local), /opt/api (ssh, command)].
    #[arg(long, value_name = "DIR")]
    pub install_dir: Option<String>,
    /// The command that restarts a node on the release in `current` [default: systemctl restart api].
    #[arg(long, value_name = "COMMAND")]
    pub restart: Option<String>,
    /// The URL answering 2xx when a node is healthy [default: http://{address}/health].
    #[arg(long, value_name = "URL")]
    pub health_url: Option<String>,
    /// A URL answering the release a node serves (checked after each restart; `adopt` reads it).
    #[arg(long, value_name = "URL")]
    pub version_url: Option<String>,
    /// Where the SLIs come from: each node's /metrics, Prometheus, or none (health only) [default: none].
    #[arg(long, value_enum)]
    pub metrics: Option<MetricsKind>,
    /// Prometheus' URL, or the nodes' metrics URL with `scrape` [default: http://127.0.0.1:9090, http://{address}/metrics].
    #[arg(long, value_name = "URL")]
    pub metrics_url: Option<String>,
    /// The release to roll out [default: 1.0.1].
    #[arg(long, value_name = "VERSION")]
    pub release: Option<String>,
    /// Its artifact, a file or a directory: its sha256 is filled in.
    #[arg(long, value_name = "PATH")]
    pub artifact: Option<PathBuf>,
}

/// Everything the plan is written from.
#[derive(Debug, Clone)]
pub struct Answers {
    pub balancer: BalancerKind,
    pub deploy: DeployKind,
    pub nodes: Vec<(String, String)>,
    pub install_dir: String,
    pub restart: String,
    pub health_url: String,
    pub version_url: Option<String>,
    pub metrics: MetricsKind,
    pub metrics_url: String,
    pub release: String,
    /// As the plan names it (relative to the plan), and its sha256.
    pub artifact: Option<(String, String)>,
}

const DEFAULT_NODES: &str = "api-1=127.0.0.1:8081 api-2=127.0.0.1:8082";
const PLACEHOLDER_ARTIFACT: &str = "dist/CHANGE-ME";

fn name(v: impl ValueEnum) -> String {
    v.to_possible_value()
        .map(|p| p.get_name().to_string())
        .unwrap_or_default()
}

fn split_node(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((n, a)) if !n.trim().is_empty() && !a.trim().is_empty() => {
            Ok((n.trim().to_string(), a.trim().to_string()))
        }
        _ => Err(format!(
            "--node {s:?}: expected NAME=ADDRESS, such as api-1=10.0.0.11:8080"
        )),
    }
}

/// Asks for what the flags leave out, one line each with the default in
/// brackets (an empty line or the end of input takes it); with no input
/// (not a terminal), takes the defaults and lists them in `defaulted`.
pub struct Asker<'a> {
    pub input: Option<(&'a mut dyn BufRead, &'a mut dyn std::io::Write)>,
    pub defaulted: Vec<String>,
}

impl Asker<'_> {
    fn ask(&mut self, q: &str, flag: &str, default: &str, given: Option<String>) -> String {
        if let Some(g) = given {
            return g;
        }
        let Some((r, w)) = self.input.as_mut() else {
            if !default.is_empty() {
                self.defaulted.push(format!("{flag} {default}"));
            }
            return default.to_string();
        };
        let _ = write!(w, "{q} [{default}]: ");
        let _ = w.flush();
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(n) if n > 0 && !line.trim().is_empty() => line.trim().to_string(),
            _ => default.to_string(),
        }
    }

    /// A kind, asked again (up to three times) while it is not one.
    fn kind<T: ValueEnum>(
        &mut self,
        q: &str,
        flag: &str,
        default: T,
        given: Option<T>,
    ) -> Result<T, Failure> {
        if let Some(g) = given {
            return Ok(g);
        }
        let all: Vec<String> = T::value_variants().iter().cloned().map(name).collect();
        let q = format!("{q} ({})", all.join(", "));
        for _ in 0..3 {
            let s = self.ask(&q, flag, &name(default.clone()), None);
            match T::from_str(&s, true) {
                Ok(v) => return Ok(v),
                Err(_) if self.input.is_some() => {
                    if let Some((_, w)) = self.input.as_mut() {
                        let _ = writeln!(w, "  {s:?} is not one of {}", all.join(", "));
                    }
                }
                Err(_) => break,
            }
        }
        Err(Failure::new(
            exit::INVALID,
            format!("{flag}: expected one of {}", all.join(", ")),
        ))
    }
}

/// The answers: flags first, then the dialogue or the defaults.
pub fn answers(a: &InitArgs, k: &mut Asker) -> Result<Answers, Failure> {
    let balancer = k.kind("Balancer", "--balancer", BalancerKind::None, a.balancer)?;
    let deploy = k.kind("Deployer", "--deploy", DeployKind::Local, a.deploy)?;
    let nodes = match a.nodes.as_slice() {
        [] => k
            .ask(
                "Nodes, NAME=ADDRESS separated by spaces",
                "--node",
                DEFAULT_NODES,
                None,
            )
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        given => given.to_vec(),
    };
    let nodes = nodes
        .iter()
        .map(|n| split_node(n))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::new(exit::INVALID, e))?;
    let install_dir = k.ask(
        "Install dir on each node (releases/ and current go there)",
        "--install-dir",
        if deploy == DeployKind::Local {
            "/opt/api/{node}"
        } else {
            "/opt/api"
        },
        a.install_dir.clone(),
    );
    let restart = k.ask(
        "Restart command (starts the release in {install_dir}/current)",
        "--restart",
        "systemctl restart api",
        a.restart.clone(),
    );
    let health_url = k.ask(
        "Health URL (2xx when healthy)",
        "--health-url",
        "http://{address}/health",
        a.health_url.clone(),
    );
    let version_url = k.ask(
        "Version URL (answers the release a node serves; empty: none)",
        "--version-url",
        "",
        a.version_url.clone(),
    );
    let metrics = k.kind("SLI metrics", "--metrics", MetricsKind::None, a.metrics)?;
    let metrics_url = match metrics {
        MetricsKind::None => String::new(),
        MetricsKind::Scrape => k.ask(
            "Metrics URL of each node",
            "--metrics-url",
            "http://{address}/metrics",
            a.metrics_url.clone(),
        ),
        MetricsKind::Prometheus => k.ask(
            "Prometheus URL",
            "--metrics-url",
            "http://127.0.0.1:9090",
            a.metrics_url.clone(),
        ),
    };
    let release = k.ask(
        "Release to roll out",
        "--release",
        "1.0.1",
        a.release.clone(),
    );
    let artifact = k.ask(
        "Its artifact (a file or a directory; empty: fill in later)",
        "--artifact",
        "",
        a.artifact.as_ref().map(|p| p.display().to_string()),
    );
    let artifact = match artifact.as_str() {
        "" => None,
        p => {
            let sha = glidepath::artifact::artifact_sha256(Path::new(p)).map_err(|e| {
                Failure::new(
                    exit::INVALID,
                    format!(
                        "--artifact {p}: {e}\nhint: an artifact is a regular file or a directory"
                    ),
                )
            })?;
            Some((p.to_string(), sha))
        }
    };
    Ok(Answers {
        balancer,
        deploy,
        nodes,
        install_dir,
        restart,
        health_url,
        version_url: Some(version_url).filter(|v| !v.is_empty()),
        metrics,
        metrics_url,
        release,
        artifact,
    })
}

/// A TOML basic string: whatever the value holds stays inside the quotes
/// (the parser then judges it as data).
fn q(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            c if c.is_control() => o.push_str(&format!("\\u{:04X}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// The artifact's path as the plan at `plan_dir` names it.
fn relative_to(artifact: &Path, plan_dir: &Path) -> String {
    let abs = artifact
        .canonicalize()
        .unwrap_or_else(|_| artifact.to_path_buf());
    abs.strip_prefix(plan_dir)
        .map(Path::to_path_buf)
        .unwrap_or(abs)
        .display()
        .to_string()
}

/// The plan's text, every section commented.
pub fn plan_text(a: &Answers) -> String {
    let mut s = String::new();
    let canary = &a.nodes[0].0;
    let (artifact, sha) = match &a.artifact {
        Some((p, sha)) => (q(p), q(sha)),
        None => (q(PLACEHOLDER_ARTIFACT), q(&"0".repeat(64))),
    };
    s.push_str(&format!(
        r#"# A glidepath plan, written by `glidepath init`. Every section says what it
# is for and what to change; README "The plan file" has every key.
# Check it with `glidepath validate {{this file}}`: it lists what `run` would do.

# The release to roll out. `artifact` is a file or a directory, relative to
# this plan; `sha256` is what `glidepath hash ARTIFACT` prints. For the next
# release, change these three lines (or pass run --release/--artifact/--sha256).
[release]
version  = {version}
artifact = {artifact}
sha256   = {sha}

# The nodes. `name` becomes a directory and a command argument; `address` is
# host:port, filled into {{address}} (and {{host}}) in the templates below.
[fleet]
# name = "api"                        # the lock key (default: this file's name)
nodes = [
"#,
        version = q(&a.release),
    ));
    for (n, addr) in &a.nodes {
        s.push_str(&format!(
            "  {{ name = {}, address = {} }},\n",
            q(n),
            q(addr)
        ));
    }
    s.push_str(&format!(
        r#"]

# The order: the canary first, then batches of the others, at most
# `max_unavailable` nodes out of rotation at once.
[strategy]
canary          = [{canary}]
batch_size      = "50%"              # or a count: 2
max_unavailable = 1
# pauses        = ["after-canary"]   # wait for `glidepath promote RUN` after the canary
"#,
        canary = q(canary),
    ));
    if a.metrics != MetricsKind::None {
        s.push_str(
            "sli_window      = \"5m\"               # how long the SLIs of the canary are watched\nprobe_interval  = \"15s\"\n",
        );
    }
    s.push_str("\n# How a node is taken out of rotation before it changes, and put back.\n");
    s.push_str(match a.balancer {
        BalancerKind::Haproxy => {
            r#"# HAProxy's runtime API: a stats socket at `level admin`, and the backend
# whose servers are the nodes (`servers = { api-1 = "srv1" }` when the names differ).
[balancer]
kind    = "haproxy"
socket  = "/run/haproxy/admin.sock"   # or address = "127.0.0.1:9999"
backend = "api"                        # change: your backend's name
"#
        }
        BalancerKind::Http => {
            r#"# An HTTP drain API on each node: POST drain/ready, and a state URL
# answering {"drained": bool, "active": n} (the demo nodes speak it).
[balancer]
kind  = "http"
drain = "http://{address}/admin/drain"
ready = "http://{address}/admin/ready"
state = "http://{address}/admin/state"
"#
        }
        BalancerKind::Command => {
            r#"# Commands for any other balancer. `active` prints the node's open
# connections (a number). Change them to your balancer's CLI.
[balancer]
kind   = "command"
drain  = "lbctl drain {node}"
enable = "lbctl enable {node}"
active = "lbctl connections {node}"
"#
        }
        BalancerKind::None => {
            r#"# No balancer: nodes are restarted in place (clients see the restart).
# Change to kind = "haproxy", "http" or "command" when the nodes sit behind one.
[balancer]
kind = "none"
"#
        }
    });
    s.push_str(&format!(
        "\n# How a release reaches a node: releases/<version> under install_dir, and a\n# `current` symlink switched atomically. `restart` must start the release in\n# {{install_dir}}/current. A fleet glidepath never deployed: `glidepath adopt` once.\n[deploy]\n{kind}install_dir   = {dir}\nkeep_releases = 3\nrestart       = {restart}\nrestart_timeout = \"60s\"\n",
        kind = match a.deploy {
            DeployKind::Local => "kind          = \"local\"      # this machine\n".to_string(),
            DeployKind::Ssh => "kind          = \"ssh\"        # the system OpenSSH client: your ssh config, agent and known_hosts\n# user        = \"deploy\"\n# identity_file = \"~/.ssh/deploy_ed25519\"\n".to_string(),
            DeployKind::Command => "kind          = \"command\"    # your own commands (incus, docker, …): change the three below\ncurrent       = \"incus exec {node} -- readlink /opt/api/current\"\nstage         = \"incus file push -r {artifact} {node}/opt/api/releases/{version}/\"\nswitch        = \"incus exec {node} -- ln -sfn releases/{version} /opt/api/current\"\n".to_string(),
        },
        dir = q(&a.install_dir),
        restart = q(&a.restart),
    ));
    s.push_str(&format!(
        "\n# When a node counts as healthy: before the rollout (every node), and after\n# its restart (until `deadline`). `version_url` must answer the release.\n[health]\nhttp     = {}\n{}deadline = \"60s\"\ninterval = \"1s\"\n",
        q(&a.health_url),
        match &a.version_url {
            Some(v) => format!("version_url = {}\n", q(v)),
            None => "# version_url = \"http://{address}/version\"\n".into(),
        }
    ));
    let checks = r#"
# Each check is judged on the canary; a breach rolls it back. Change the
# metric names to your service's (a counter of requests by status code, and
# a latency histogram), and the limits to your SLOs.
[[sli.check]]
name            = "error rate"
kind            = "error_ratio"
metric          = "http_requests_total"
label           = "code"               # the label holding the status code
max             = 0.01
min_samples     = 100                  # fewer requests: inconclusive, never a pass
on_inconclusive = "wait"

[[sli.check]]
name        = "p95 latency"
kind        = "latency_quantile"
metric      = "http_request_duration_seconds"
quantile    = 0.95
max         = 0.5
min_samples = 100
"#;
    match a.metrics {
        MetricsKind::None => s.push_str(
            "\n# No SLI checks: the health check alone judges a release. Add [sli] with\n# [[sli.check]]s (and [strategy] sli_window) to watch the canary's metrics.\n",
        ),
        MetricsKind::Scrape => s.push_str(&format!(
            "\n# The SLIs, read from each node's Prometheus-text /metrics.\n[sli]\nsource = \"scrape\"\nurl    = {}\n{checks}",
            q(&a.metrics_url)
        )),
        MetricsKind::Prometheus => s.push_str(&format!(
            "\n# The SLIs, read from Prometheus (each node by its `instance` label).\n[sli]\nsource = \"prometheus\"\nurl    = {}\n# bearer_token_env = \"PROM_TOKEN\"\n{checks}",
            q(&a.metrics_url)
        )),
    }
    s.push_str(&format!(
        "\n# What rolls a release back on its own. `health` is required.\n[rollback]\non = [{}]\n\n# The journal: by default one per machine and user\n# (~/.local/state/glidepath/journal.db). Uncomment to keep it beside this plan.\n# [journal]\n# path = \"glidepath.db\"\n",
        if a.metrics == MetricsKind::None {
            "\"health\""
        } else {
            "\"health\", \"sli\""
        }
    ));
    s
}

/// Validate `text` as the plan at `path` would be read, with the
/// placeholder artifact made up for the check when none was given.
fn check(
    path: &Path,
    text: &str,
    plan_dir: &Path,
    placeholder: bool,
) -> Result<(), glidepath::diag::Report> {
    let scratch;
    let dir = if placeholder {
        scratch = std::env::temp_dir().join(format!("glidepath-init-{}", std::process::id()));
        let art = scratch.join(PLACEHOLDER_ARTIFACT);
        let _ = std::fs::create_dir_all(art.parent().expect("has a parent"));
        let _ = std::fs::write(&art, b"");
        scratch.as_path()
    } else {
        plan_dir
    };
    let r = glidepath::plan::parse(path, text, dir);
    if placeholder {
        let _ = std::fs::remove_dir_all(dir);
    }
    match r {
        Ok(_) => Ok(()),
        Err(glidepath::plan::PlanError::Invalid(report)) => Err(report),
        Err(e) => Err(glidepath::diag::Report {
            file: path.display().to_string(),
            source: text.into(),
            diags: vec![glidepath::diag::Diag::error(e.to_string(), (0, 0), "here")],
        }),
    }
}

#[derive(serde::Serialize)]
struct Written<'a> {
    plan: &'a Path,
    defaults: &'a [String],
    next: &'a [String],
}

pub fn run(ctx: &Ctx, a: &InitArgs) -> Result<u8, Failure> {
    let path = &a.path;
    if path.exists() && !a.force {
        return Err(Failure::new(
            exit::INVALID,
            format!(
                "{} exists: nothing was written\nhint: pass --force to overwrite it, or another PATH",
                path.display()
            ),
        ));
    }
    let tty = std::io::stdin().is_terminal() && !ctx.json();
    let (stdin, mut err) = (std::io::stdin(), std::io::stderr());
    let mut lock = stdin.lock();
    let mut k = Asker {
        input: tty.then_some((
            &mut lock as &mut dyn BufRead,
            &mut err as &mut dyn std::io::Write,
        )),
        defaulted: Vec::new(),
    };
    let mut answers = answers(a, &mut k)?;
    let defaulted = k.defaulted;
    if answers.nodes.is_empty() {
        return Err(Failure::new(
            exit::INVALID,
            "no node: pass --node NAME=ADDRESS",
        ));
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let plan_dir = parent
        .canonicalize()
        .map_err(|e| Failure::new(exit::INVALID, format!("{}: {e}", parent.display())))?;
    if let Some((p, _)) = answers.artifact.as_mut() {
        *p = relative_to(Path::new(p), &plan_dir);
    }
    let text = plan_text(&answers);
    if let Err(report) = check(path, &text, &plan_dir, answers.artifact.is_none()) {
        return Err(super::invalid(
            &report,
            ctx,
            format!(
                "the plan for {} has problems (above): nothing was written",
                path.display()
            ),
        ));
    }
    std::fs::write(path, &text)
        .map_err(|e| Failure::new(exit::INVALID, format!("{}: {e}", path.display())))?;
    let p = glidepath::hints::shell_word(&path.display().to_string());
    let mut next = Vec::new();
    if answers.artifact.is_none() {
        next.push(format!(
            "glidepath hash ARTIFACT     # then put ARTIFACT and its sha256 in [release] of {p}"
        ));
    }
    next.push(format!("glidepath validate {p}"));
    next.push(format!("glidepath adopt {p}     # once, if glidepath never deployed this fleet (no releases/ and current yet)"));
    next.push(format!("glidepath preflight {p}"));
    next.push(format!("glidepath run {p}"));
    if ctx.json() {
        print_json(Written {
            plan: path,
            defaults: &defaulted,
            next: &next,
        });
        return Ok(exit::OK);
    }
    if !defaulted.is_empty() {
        eprintln!("not given, so the defaults: {}", defaulted.join(", "));
    }
    println!(
        "wrote {p}: balancer {}, deploy {}, {} node(s), metrics {}",
        name(answers.balancer),
        name(answers.deploy),
        answers.nodes.len(),
        name(answers.metrics)
    );
    println!("edit it (each section says what to change), then:");
    for n in &next {
        println!("  {n}");
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The dialogue asks only what the flags leave out, takes the default
    /// on an empty line, asks a kind again when the answer is not one, and
    /// takes the defaults at the end of its input.
    #[test]
    fn the_dialogue_asks_what_the_flags_leave_out() {
        let a = InitArgs {
            deploy: Some(DeployKind::Ssh),
            ..Default::default()
        };
        let mut input: &[u8] = b"nginx\nhttp\napi-1=10.0.0.1:80 api-2=10.0.0.2:80\n\n\n\nhttp://{address}/version\nscrape\n";
        let mut prompts = Vec::new();
        let mut k = Asker {
            input: Some((&mut input, &mut prompts)),
            defaulted: Vec::new(),
        };
        let got = answers(&a, &mut k).unwrap_or_else(|f| panic!("{}", f.message));
        let defaulted = std::mem::take(&mut k.defaulted);
        drop(k);
        let prompts = String::from_utf8(prompts).unwrap();
        assert!(!prompts.contains("Deployer"), "given by a flag: {prompts}");
        assert!(
            prompts.contains("\"nginx\" is not one of haproxy, http, command, none"),
            "{prompts}"
        );
        assert!(
            prompts.contains("Balancer (haproxy, http, command, none) [none]: "),
            "{prompts}"
        );
        assert_eq!(got.balancer, BalancerKind::Http);
        assert_eq!(got.nodes.len(), 2);
        assert_eq!(
            got.install_dir, "/opt/api",
            "an empty line takes the default"
        );
        assert_eq!(got.restart, "systemctl restart api");
        assert_eq!(got.version_url.as_deref(), Some("http://{address}/version"));
        assert_eq!(got.metrics, MetricsKind::Scrape);
        // the input ended: the defaults from here on
        assert_eq!(got.metrics_url, "http://{address}/metrics");
        assert_eq!(got.release, "1.0.1");
        assert!(got.artifact.is_none());
        assert!(defaulted.is_empty(), "asked, not defaulted: {defaulted:?}");
        let text = plan_text(&got);
        assert!(text.contains("kind  = \"http\"") && text.contains("source = \"scrape\""));
    }
}
