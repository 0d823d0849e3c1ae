//! `inventory` and `plan` across components: the versions observed on
//! every instance (`system::collect`) → the planner's state → what is in use
//! (protocol versions per axis, pairs already incompatible), and the
//! shortest safe order of stages to a target, each with its reason.

use crate::system::{collect, Observed, SystemFile};
use glidepath_core::compat::{Stage, State, System, Target};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The planner's search bound (states expanded).
const SEARCH_LIMIT: usize = 2_000_000;

/// Why the versions in use, or the target, cannot be known.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The system file's declarations are inconsistent.
    #[error("{0}")]
    Declarations(String),
    #[error("{0}")]
    BadTarget(String),
    #[error("cannot read the versions in use:\n  {}", .0.join("\n  "))]
    Unreachable(Vec<String>),
    #[error("versions in use are not declared:\n  {}\nhint: add them as [[component.release]] entries", .0.join("\n  "))]
    UnknownVersions(Vec<String>),
    #[error("component `{0}` lists no instances, so its versions in use are unknown\nhint: add instances = [{{ name = \"…\", version = \"…\", count = N }}] for clients that cannot be polled")]
    NoInstances(String),
}

/// What `inventory` reports.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    pub instances: Vec<Observed>,
    /// Per protocol axis: "component release speaks range", for each
    /// release in use.
    pub axes: BTreeMap<String, Vec<String>>,
    /// Communicating pairs in use that share no protocol version.
    pub incompatible: Vec<String>,
    pub unreachable: Vec<String>,
    pub unknown_versions: Vec<String>,
    /// Per instance (same order): the protocol ranges its release speaks,
    /// when it is a declared release.
    #[serde(skip)]
    pub protocols: Vec<Option<String>>,
}

/// A stage, and the plan that rolls it out when the system file names one.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStage {
    #[serde(flatten)]
    pub stage: Stage,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout_plan: Option<PathBuf>,
    /// The release's artifact and sha256, when the system file declares
    /// them (what `run --release … --artifact … --sha256 …` needs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// What `plan` reports.
#[derive(Debug, Clone, Serialize)]
pub struct UpgradePlan {
    /// False when no safe order reaches the target (`reason` says why).
    pub reachable: bool,
    /// Per component: "name v1+v2" (the releases in use).
    pub current: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub stages: Vec<PlannedStage>,
}

fn compile(sf: &SystemFile) -> Result<System, UpgradeError> {
    System::new(sf.spec.clone()).map_err(|e| UpgradeError::Declarations(e.0))
}

fn span<T: std::fmt::Display + PartialEq>(min: T, max: T) -> String {
    if min == max {
        min.to_string()
    } else {
        format!("{min}..{max}")
    }
}

/// Observed versions → planner state, with the instances that could not be
/// read (`unreachable`) and the versions that are not declared (`unknown`).
pub fn state_of(sys: &System, obs: &[Observed]) -> (State, Vec<String>, Vec<String>) {
    let mut versions = vec![0u64; sys.spec.components.len()];
    let (mut unreachable, mut unknown) = (Vec::new(), Vec::new());
    for o in obs {
        let c = sys.component(&o.component).expect("declared");
        match (&o.version, &o.error) {
            (Some(v), _) => match sys.release(c, v) {
                Some(r) => versions[c] |= 1 << r,
                None => unknown.push(format!(
                    "{} {} runs {v}, which is not a declared release of {}",
                    o.component, o.instance, o.component
                )),
            },
            (None, e) => unreachable.push(format!(
                "{} {}: {}",
                o.component,
                o.instance,
                e.clone().unwrap_or_default()
            )),
        }
    }
    (State { versions, flags: 0 }, unreachable, unknown)
}

/// Read every instance's version and report what is in use.
pub async fn inventory(sf: &SystemFile, timeout: Duration) -> Result<Inventory, UpgradeError> {
    let sys = compile(sf)?;
    let obs = collect(sf, timeout).await;
    let (state, unreachable, unknown) = state_of(&sys, &obs);
    let incompatible = sys.violations(&state);
    let mut axes: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (c, comp) in sys.spec.components.iter().enumerate() {
        for r in (0..comp.releases.len()).filter(|r| state.versions[c] & (1 << r) != 0) {
            for (axis, range) in &comp.releases[r].protocols {
                let entry = format!(
                    "{} {} speaks {}",
                    comp.name,
                    comp.releases[r].version,
                    span(range.min, range.max)
                );
                let list = axes.entry(axis.clone()).or_default();
                if !list.contains(&entry) {
                    list.push(entry);
                }
            }
        }
    }
    let protocols = obs
        .iter()
        .map(|o| {
            let v = o.version.as_ref()?;
            let c = sys.component(&o.component)?;
            let r = sys.release(c, v)?;
            Some(
                sys.spec.components[c].releases[r]
                    .protocols
                    .iter()
                    .map(|(a, x)| format!("{a} {}", span(x.min, x.max)))
                    .collect::<Vec<_>>()
                    .join(", "),
            )
        })
        .collect();
    Ok(Inventory {
        instances: obs,
        axes,
        incompatible,
        unreachable,
        unknown_versions: unknown,
        protocols,
    })
}

fn target_of(sys: &System, to: &[String], enable: &[String]) -> Result<Target, UpgradeError> {
    let names = |list: Vec<&str>| list.join(", ");
    let mut target = Target::default();
    for t in to {
        let (c, v) = t.split_once('=').ok_or_else(|| {
            UpgradeError::BadTarget(format!("--to {t}: expected COMPONENT=RELEASE"))
        })?;
        let ci = sys.component(c).ok_or_else(|| {
            UpgradeError::BadTarget(format!(
                "--to {t}: no component `{c}` (components: {})",
                names(
                    sys.spec
                        .components
                        .iter()
                        .map(|x| x.name.as_str())
                        .collect()
                )
            ))
        })?;
        let ri = sys.release(ci, v).ok_or_else(|| {
            UpgradeError::BadTarget(format!(
                "--to {t}: {c} has no release `{v}` (releases: {})",
                names(
                    sys.spec.components[ci]
                        .releases
                        .iter()
                        .map(|r| r.version.as_str())
                        .collect()
                )
            ))
        })?;
        target.releases.push((ci, ri));
    }
    for f in enable {
        target.flags.push(sys.capability(f).ok_or_else(|| {
            UpgradeError::BadTarget(format!("--enable {f}: no capability `{f}`"))
        })?);
    }
    Ok(target)
}

/// The stages from the versions in use to `to` (COMPONENT=RELEASE) with the
/// capability flags `enable` switched on. A target that no safe order
/// reaches is `reachable: false` with the reason, not an error.
pub async fn plan(
    sf: &SystemFile,
    to: &[String],
    enable: &[String],
    timeout: Duration,
) -> Result<UpgradePlan, UpgradeError> {
    let sys = compile(sf)?;
    let target = target_of(&sys, to, enable)?;
    let obs = collect(sf, timeout).await;
    let (state, unreachable, unknown) = state_of(&sys, &obs);
    if !unreachable.is_empty() {
        return Err(UpgradeError::Unreachable(unreachable));
    }
    if !unknown.is_empty() {
        return Err(UpgradeError::UnknownVersions(unknown));
    }
    if let Some(comp) = sys
        .spec
        .components
        .iter()
        .enumerate()
        .find(|(c, _)| state.versions[*c] == 0)
        .map(|(_, comp)| comp)
    {
        return Err(UpgradeError::NoInstances(comp.name.clone()));
    }
    let current = sys
        .spec
        .components
        .iter()
        .enumerate()
        .map(|(c, comp)| format!("{} {}", comp.name, sys.versions_of(&state, c).join("+")))
        .collect();
    Ok(match sys.plan(&state, &target, SEARCH_LIMIT) {
        Err(u) => UpgradePlan {
            reachable: false,
            current,
            reason: Some(u.reason),
            stages: Vec::new(),
        },
        Ok(moves) => UpgradePlan {
            reachable: true,
            current,
            reason: None,
            stages: sys
                .explain(&state, &moves)
                .into_iter()
                .map(|stage| {
                    let (rollout_plan, release) = match &stage {
                        Stage::Upgrade { component, to, .. } => (
                            sf.rollout_plans.get(component).cloned(),
                            sf.artifacts.get(&(component.clone(), to.clone())).cloned(),
                        ),
                        Stage::EnableFlag { .. } => (None, None),
                    };
                    let (artifact, sha256) = release.unzip();
                    PlannedStage {
                        stage,
                        rollout_plan,
                        artifact,
                        sha256,
                    }
                })
                .collect(),
        },
    })
}
