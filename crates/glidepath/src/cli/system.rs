//! `inventory` and `plan` across components (`glidepath::upgrade`).

use super::{invalid, print_json, Ctx};
use crate::{exit, Failure};
use glidepath::plan::PlanError;
use glidepath::upgrade;
use glidepath_core::compat::Stage;
use std::path::Path;
use std::time::Duration;

pub(super) fn load_system(
    path: &Path,
    ctx: &Ctx,
) -> Result<glidepath::system::SystemFile, Failure> {
    match glidepath::system::load(path) {
        Ok(s) => Ok(s),
        Err(PlanError::Invalid(report)) => Err(invalid(
            &report,
            ctx,
            format!("{} is invalid; nothing was done", path.display()),
        )),
        Err(e) => Err(Failure::new(exit::INVALID, e.to_string())),
    }
}

pub(super) fn timeout(s: &str) -> Result<Duration, Failure> {
    glidepath::plan::parse_duration(s)
        .map_err(|e| Failure::new(exit::INVALID, format!("--timeout: {e}")))
}

pub async fn inventory(ctx: &Ctx, file: &Path, timeout_s: &str) -> Result<u8, Failure> {
    let timeout = timeout(timeout_s)?;
    let sf = load_system(file, ctx)?;
    let inv = upgrade::inventory(&sf, timeout).await?;
    if ctx.json() {
        print_json(&inv);
    } else {
        println!(
            "{:<14} {:<22} {:>6}  {:<10} protocols",
            "component", "instance", "count", "version"
        );
        for (o, protos) in inv.instances.iter().zip(&inv.protocols) {
            println!(
                "{:<14} {:<22} {:>6}  {:<10} {}",
                o.component,
                o.instance,
                o.count,
                o.version.as_deref().unwrap_or("?"),
                protos.clone().unwrap_or_else(|| o
                    .error
                    .clone()
                    .unwrap_or_else(|| "not a declared release".into()))
            );
        }
        println!("\nprotocol versions in use, per axis:");
        for (axis, list) in &inv.axes {
            println!("  {axis}: {}", list.join(" · "));
        }
        if inv.incompatible.is_empty()
            && inv.unknown_versions.is_empty()
            && inv.unreachable.is_empty()
        {
            println!("\nevery communicating pair in use is compatible");
        }
        for p in &inv.incompatible {
            println!("INCOMPATIBLE now: {p}");
        }
        for p in inv.unknown_versions.iter().chain(&inv.unreachable) {
            println!("UNKNOWN: {p}");
        }
    }
    Ok(if !inv.unreachable.is_empty() {
        exit::UNREACHABLE
    } else if !inv.incompatible.is_empty() || !inv.unknown_versions.is_empty() {
        exit::GATE
    } else {
        exit::OK
    })
}

pub async fn plan(
    ctx: &Ctx,
    file: &Path,
    to: &[String],
    enable: &[String],
    timeout_s: &str,
) -> Result<u8, Failure> {
    let timeout = timeout(timeout_s)?;
    if to.is_empty() && enable.is_empty() {
        return Err(Failure::new(
            exit::INVALID,
            "nothing to plan: give --to COMPONENT=RELEASE (and/or --enable FLAG)",
        ));
    }
    let sf = load_system(file, ctx)?;
    let plan = upgrade::plan(&sf, to, enable, timeout).await?;
    if !plan.reachable {
        let message = format!(
            "the target cannot be reached safely: {}",
            plan.reason.as_deref().unwrap_or_default()
        );
        if ctx.json() {
            print_json(glidepath::output::PlanUnreachable {
                plan: &plan,
                error: &message,
                exit_code: exit::GATE,
            });
        }
        return Err(Failure {
            reported: ctx.json(),
            ..Failure::new(exit::GATE, message)
        });
    }
    if ctx.json() {
        print_json(&plan);
        return Ok(exit::OK);
    }
    print_stages(&plan);
    Ok(exit::OK)
}

/// The planner's answer as `plan` and `upgrade` print it.
pub(super) fn print_stages(plan: &upgrade::UpgradePlan) {
    println!("current: {}", plan.current.join(" · "));
    if plan.stages.is_empty() {
        println!("already there: nothing to do");
    } else {
        println!(
            "{} stage(s), each safe while it rolls node by node:",
            plan.stages.len()
        );
    }
    for (i, s) in plan.stages.iter().enumerate() {
        match &s.stage {
            Stage::Upgrade {
                component,
                from,
                to,
                why,
            } => {
                println!("  {}. {component} {} → {to}", i + 1, from.join("+"));
                match (&s.rollout_plan, &s.artifact, &s.sha256) {
                    (Some(p), Some(a), Some(h)) => println!(
                        "     roll out with: glidepath run {} --release {to} --artifact {} --sha256 {h}",
                        p.display(),
                        a.display()
                    ),
                    (Some(p), _, _) => println!(
                        "     roll out with: glidepath run {} --release {to} --artifact PATH --sha256 HEX (the artifact of {to} and its `glidepath hash`; declared in the system file, `glidepath upgrade` fills them in and runs every stage)",
                        p.display()
                    ),
                    _ => {}
                }
                if !why.is_empty() {
                    println!("     {why}");
                }
            }
            Stage::EnableFlag { flag, why } => {
                println!(
                    "  {}. switch flag `{flag}` on (every member now supports it)",
                    i + 1
                );
                if !why.is_empty() {
                    println!("     {why}");
                }
            }
        }
    }
}
