//! Preflight gates declared in a plan's `[gates]`: config deprecations,
//! the artifact's signature, migration safety, freeze windows, a fresh
//! backup, and custom commands; and the built-in gates every run passes
//! ([`builtin`]). Each returns a verdict (pass, warn, fail) with a reason
//! and how to fix it. `run` refuses to start on a failing gate unless it is
//! forced with a written reason, which is journaled with who and when.
//!
//! One module per declared gate, each with one shape: its config type, a
//! `read` of its `[gates.X]` table (diagnostics through [`Reading`]), and a
//! `check` giving its [`GateResult`]s from a [`Context`]. A new gate is a new
//! module, a field of [`GatesCfg`], and a line in [`read`] and [`evaluate`].
//!
//! The declared gates never see `Plan`: the plan parser hands them its
//! reader as a [`Reading`], and a run hands them [`Inputs`] (the plan
//! directory, the release, each node's placeholders), built from a plan by
//! `Inputs::of` in `plan/gates.rs`. Nothing in `gates` imports `plan`: the
//! built-in gates get [`builtin::BuiltinInputs`] the same way.

pub mod backup;
pub mod builtin;
pub mod config;
pub mod custom;
pub mod freeze;
pub mod migrations;
pub mod signature;
pub mod snapshot;

pub use backup::BackupGate;
pub use config::{check_config, config_keys, read_matrix, ConfigGate, Deprecation};
pub use custom::CustomGate;
pub use freeze::{frozen, Freeze};
pub use migrations::MigrationsGate;
pub use signature::{key_id, signed_bytes, verify_signature, Manifest, SignatureGate};
pub use snapshot::{
    hmac_sha256, secret_looking, snapshot, snapshot_env, state_dir, FingerprintKey, Pairs,
};

use crate::diag::Diag;
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
    /// Nothing to check (no balancer, no node reached, no SLI): never
    /// blocks a run, and says why.
    Skipped,
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

/// The plan's `[gates]`, one field per declared gate.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GatesCfg {
    pub config: Option<ConfigGate>,
    pub signature: Option<SignatureGate>,
    pub migrations: Option<MigrationsGate>,
    pub freeze: Vec<Freeze>,
    pub backup: Option<BackupGate>,
    pub custom: Vec<CustomGate>,
}

/// What the declared gates know of the plan (they never see `Plan`; see
/// [`Inputs::of`]).
pub struct Inputs {
    /// Relative paths and the commands' working directory.
    pub plan_dir: PathBuf,
    /// The release being rolled out.
    pub version: String,
    pub artifact: PathBuf,
    /// Turns a directory artifact into the bytes its signature covers.
    pub manifest: Manifest,
    /// Every node, in plan order, with its placeholders.
    pub nodes: Vec<NodeVars>,
    /// The files the plan's `migrate` tasks run, with their phase: the
    /// migrations gate lints exactly these when there are any.
    pub task_migrations: Vec<(PathBuf, glidepath_core::TaskPhase)>,
}

/// One node as a gate's templates see it.
pub struct NodeVars {
    pub name: String,
    /// Fills `{node}`, `{address}`, `{host}`, `{install_dir}`, `{plan_dir}`.
    pub fill: Box<dyn Fn(&str) -> String + Send + Sync>,
}

/// What every `check` gets.
pub struct Context<'a> {
    pub inputs: &'a Inputs,
    pub now: jiff::Timestamp,
    /// The release every node runs now, when they agree.
    pub deployed: Option<&'a str>,
}

/// The plan parser's reader, as the gates use it: typed reads of a TOML
/// table that report each problem (with its span and a hint) instead of
/// stopping. Implemented by `plan::Reader` (in `plan/gates.rs`).
pub trait Reading {
    fn push(&mut self, d: Diag);
    /// Report keys that are not in `allowed`.
    fn known_keys(&mut self, t: &Table<'_>, section: &str, allowed: &[&str]);
    fn missing(&mut self, at: Span, section: &str, key: &str, example: &str);
    fn str(&mut self, t: &Table<'_>, key: &str, example: &str) -> Option<(String, Span)>;
    fn req_str(
        &mut self,
        t: &Table<'_>,
        at: Span,
        section: &str,
        key: &str,
        example: &str,
    ) -> Option<(String, Span)>;
    fn str_list(&mut self, t: &Table<'_>, key: &str, example: &str) -> Option<Vec<(String, Span)>>;
    fn duration(&mut self, t: &Table<'_>, key: &str, default: Option<Duration>)
        -> Option<Duration>;
    /// Report placeholders of `s` that are not in `allowed`.
    fn template(&mut self, s: &str, span: Span, key: &str, allowed: &[&str]);
}

impl dyn Reading + '_ {
    pub fn err(
        &mut self,
        span: Span,
        msg: impl Into<String>,
        label: impl Into<String>,
        hint: Option<String>,
    ) {
        let mut d = Diag::error(msg, (span.start, span.end), label);
        d.hint = hint;
        self.push(d);
    }
}

/// What a TOML value is, for a diagnostic: "a table", "an array", …
pub(crate) fn shape(v: &toml_span::Value<'_>) -> &'static str {
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
    r: &mut dyn Reading,
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
    r: &mut dyn Reading,
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

/// Read `[gates]` (called by the plan parser), each gate in turn.
pub(crate) fn read(r: &mut dyn Reading, t: &Table<'_>, _at: Span, dir: &Path) -> GatesCfg {
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
    GatesCfg {
        config: config::read(r, t, dir),
        signature: signature::read(r, t, dir),
        migrations: migrations::read(r, t, dir),
        freeze: freeze::read(r, t),
        backup: backup::read(r, t, dir),
        custom: custom::read(r, t),
    }
}

/// Evaluate the declared gates at `now`.
/// `deployed` is the release every node runs now (when they agree): it
/// fills `{deployed}` in `since_git`, so "the migrations new since the
/// release currently deployed" is `since_git = "v{deployed}"`.
pub async fn evaluate(
    g: &GatesCfg,
    inputs: &Inputs,
    now: jiff::Timestamp,
    deployed: Option<&str>,
) -> Vec<GateResult> {
    let cx = Context {
        inputs,
        now,
        deployed,
    };
    let mut out = Vec::new();
    if let Some(c) = &g.config {
        out.extend(config::check(c, &cx).await);
    }
    if let Some(s) = &g.signature {
        out.extend(signature::check(s, &cx).await);
    }
    if !inputs.task_migrations.is_empty() {
        let lock_fail = g.migrations.as_ref().is_some_and(|m| m.lock_risk_fails);
        out.push(migrations::check_task_files(
            &inputs.task_migrations,
            lock_fail,
        ));
    } else if let Some(m) = &g.migrations {
        out.extend(migrations::check(m, &cx).await);
    }
    out.extend(freeze::check(&g.freeze, &cx).await);
    if let Some(b) = &g.backup {
        out.extend(backup::check(b, &cx).await);
    }
    out.extend(custom::check(&g.custom, &cx).await);
    out
}

/// The config files of `[gates.config]` (none without it), rendered per
/// node when templated: (label, path).
pub fn config_files(g: &GatesCfg, inputs: &Inputs) -> Vec<(String, PathBuf)> {
    g.config
        .as_ref()
        .map(|c| config::files(c, inputs))
        .unwrap_or_default()
}

/// The table `preflight` prints.
pub fn render(results: &[GateResult]) -> String {
    let mut s = format!("{:<22} {:<8} {}\n", "gate", "verdict", "reason");
    for r in results {
        let v = match (r.verdict, &r.forced) {
            (Verdict::Fail, Some(_)) => "FORCED",
            (Verdict::Pass, _) => "pass",
            (Verdict::Warn, _) => "warn",
            (Verdict::Skipped, _) => "skipped",
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
