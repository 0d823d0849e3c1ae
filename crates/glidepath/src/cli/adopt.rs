//! `glidepath adopt PLAN`: a fleet glidepath never deployed has no
//! `releases/` and no `current`, so preflight finds no rollback target.
//! `adopt` makes what each node runs today its first release, through the
//! deployer (`Deployer::installed`, `Deployer::adopt`): every node is
//! looked at first, and nothing changes unless every node can be adopted.

use super::{load_plan, print_json, Ctx};
use crate::{exit, Failure};
use glidepath::config::DeployKind;
use glidepath::drivers::{DriverError, Drivers, Health, Target};
use serde::Serialize;
use std::path::Path;

#[derive(Serialize)]
struct NodeAdoption {
    node: String,
    /// `adopted`, `already_adopted`, `would_adopt`, `refused`, `failed`.
    result: &'static str,
    version: Option<String>,
    detail: String,
}

#[derive(Serialize)]
struct Adoption<'a> {
    plan: &'a Path,
    dry_run: bool,
    nodes: &'a [NodeAdoption],
}

/// What to do on one node, once looked at.
enum Todo {
    Already(String),
    Adopt(String, Vec<String>),
    Refused(DriverError),
}

async fn look(
    drivers: &Drivers,
    health: &Health,
    t: &Target,
    release: Option<&str>,
    exclude: &[String],
) -> Todo {
    let found = match drivers.deployer.installed(t, exclude).await {
        Ok(f) => f,
        Err(e) => return Todo::Refused(e),
    };
    match found.current {
        Some(v) if found.current_present => return Todo::Already(v),
        Some(v) => {
            return Todo::Refused(DriverError::Failed(format!(
                "`current` points at release {v}, which is not in {}/releases: give [rollback] artifact, version and sha256 for it",
                t.install_dir.display()
            )))
        }
        None if found.entries.is_empty() => {
            return Todo::Refused(DriverError::Failed(format!(
                "nothing is installed in {} (it is empty, or holds only what --exclude leaves out)",
                t.install_dir.display()
            )))
        }
        None => {}
    }
    let served = match health.served_version(t).await {
        Ok(v) => v,
        Err(e) => return Todo::Refused(e),
    };
    match (release, served) {
        (Some(r), Some(s)) if r != s => Todo::Refused(DriverError::Failed(format!(
            "it serves {s} ([health] version_url), not {r} (--release): preflight would find it unhealthy"
        ))),
        (Some(v), _) => Todo::Adopt(v.to_string(), found.entries),
        (None, Some(v)) => Todo::Adopt(v, found.entries),
        (None, None) => Todo::Refused(DriverError::Failed(
            "no version to record: pass --release VERSION".into(),
        )),
    }
}

pub async fn run(
    ctx: &Ctx,
    path: &Path,
    release: Option<&str>,
    exclude: &[String],
    dry_run: bool,
) -> Result<u8, Failure> {
    let plan = load_plan(path, ctx)?;
    if let DeployKind::Command { .. } = plan.deploy.kind {
        return Err(Failure::new(
            exit::INVALID,
            format!("{}: [deploy] kind = \"command\": adopt does not apply, your commands own the layout\nhint: make the `current` command print the release each node runs today (and keep that release where `switch` can go back to it); `glidepath preflight {}` then finds the rollback target", path.display(), path.display()),
        ));
    }
    if let Some(r) = release {
        glidepath::names::check_version(r)
            .map_err(|why| Failure::new(exit::INVALID, format!("--release {r:?}: {why}")))?;
    }
    for e in exclude {
        if e.is_empty() || e.contains('/') || e == "." || e == ".." {
            return Err(Failure::new(
                exit::INVALID,
                format!("--exclude {e:?}: name an entry of the install dir (no `/`)"),
            ));
        }
    }
    if release.is_none() && plan.health.version_url.is_none() {
        return Err(Failure::new(
            exit::INVALID,
            format!("no version to record: pass --release VERSION (the release the nodes run today)\nhint: or add [health] version_url to {}, and adopt reads each node's answer", path.display()),
        ));
    }
    let drivers = Drivers::for_plan(&plan);
    let health = Health::new(plan.health.clone(), plan.dir.clone());
    let targets: Vec<Target> = plan.nodes.iter().map(|n| plan.target(n)).collect();
    let mut todo = Vec::new();
    for t in &targets {
        todo.push(look(&drivers, &health, t, release, exclude).await);
    }
    let refused = todo.iter().any(|t| matches!(t, Todo::Refused(_)));
    let mut out = Vec::new();
    let mut code = exit::OK;
    let mut worst = |e: &DriverError| {
        let c = if e.is_infra() {
            exit::UNREACHABLE
        } else {
            exit::GATE
        };
        if code == exit::OK || c == exit::GATE {
            code = c;
        }
    };
    for (t, td) in targets.iter().zip(todo) {
        let (result, version, detail) = match td {
            Todo::Already(v) => (
                "already_adopted",
                Some(v.clone()),
                format!("already adopted (current -> releases/{v})"),
            ),
            Todo::Refused(e) => {
                worst(&e);
                ("refused", None, e.to_string())
            }
            Todo::Adopt(v, entries) if dry_run || refused => (
                if refused {
                    "not_changed"
                } else {
                    "would_adopt"
                },
                Some(v.clone()),
                format!(
                    "would copy {} into {}/releases/{v} and point current at it",
                    entries.join(", "),
                    t.install_dir.display()
                ),
            ),
            Todo::Adopt(v, _) => match drivers.deployer.adopt(t, &v, exclude).await {
                Ok(d) => ("adopted", Some(v), d),
                Err(e) => {
                    worst(&e);
                    ("failed", Some(v), e.to_string())
                }
            },
        };
        out.push(NodeAdoption {
            node: t.name.clone(),
            result,
            version,
            detail,
        });
    }
    if ctx.json() {
        print_json(Adoption {
            plan: path,
            dry_run,
            nodes: &out,
        });
        return Ok(code);
    }
    for n in &out {
        let mark = match n.result {
            "adopted" => "✓ adopted",
            "already_adopted" => "·",
            "would_adopt" => "· would adopt:",
            "not_changed" => "· not changed:",
            _ => "✗",
        };
        println!("{} {mark} {}", n.node, n.detail);
    }
    let p = glidepath::hints::shell_word(&path.display().to_string());
    if refused {
        println!("nothing was changed on any node: fix the nodes above, then `glidepath adopt {p}` again");
    } else if dry_run {
        println!("dry run: nothing was changed; `glidepath adopt {p}` does it");
    } else if code == exit::OK {
        if out.iter().any(|n| n.result == "adopted") {
            println!("the services were not touched: they run on the files they started with. The next restart (the plan's `restart`) must start the release in <install_dir>/current.");
        }
        println!("next: glidepath preflight {p}, then glidepath run {p}");
    }
    Ok(code)
}
