//! `demo` (the three rehearsals), `demo --stop DIR` (the fleet a
//! `demo --keep` left running) and `demo-node` (one demo service).

use super::{print_json, Ctx};
use crate::{exit, Failure};
use anyhow::Context;
use glidepath::demo::DemoPlan;
use std::path::{Path, PathBuf};

pub async fn node(dir: PathBuf, listen: &str, boot_ms: u64) -> Result<u8, Failure> {
    glidepath::demo::node::serve(dir, listen, boot_ms)
        .await
        .context("demo node")?;
    Ok(exit::OK)
}

pub async fn run(
    ctx: &Ctx,
    nodes: usize,
    rps: u32,
    knobs: DemoPlan,
    keep: bool,
    dir: Option<PathBuf>,
) -> Result<u8, Failure> {
    if nodes < 2 {
        return Err(Failure::new(
            exit::INVALID,
            "--nodes must be at least 2 (a canary and a peer)",
        ));
    }
    for (flag, v) in [
        ("--window", &knobs.window),
        ("--probe-interval", &knobs.probe_interval),
    ] {
        glidepath::plan::parse_duration(v)
            .map_err(|e| Failure::new(exit::INVALID, format!("{flag} {v}: {e}")))?;
    }
    let bin = std::env::current_exe().context("locating the glidepath binary")?;
    let opts = glidepath::demo::DemoOptions {
        nodes,
        keep,
        color: ctx.color,
        rps,
        knobs,
        dir,
        quiet: ctx.json(),
    };
    let report = glidepath::demo::run(&bin, opts).await?;
    if ctx.json() {
        print_json(&report);
    }
    Ok(if report.passed {
        exit::OK
    } else {
        exit::ROLLED_BACK
    })
}

/// `demo --stop DIR`: stop the nodes `demo --keep` left running there.
pub fn stop(ctx: &Ctx, dir: &Path) -> Result<u8, Failure> {
    let stopped = glidepath::demo::fleet::stop_kept(dir).map_err(|e| {
        Failure::new(
            exit::INVALID,
            format!(
                "{}: {e}\nhint: DIR is the work directory `glidepath demo --keep` printed (it holds nodes/)",
                dir.display()
            ),
        )
    })?;
    let failed = stopped.iter().any(|s| s.result == "failed");
    if ctx.json() {
        print_json(serde_json::json!({ "dir": dir, "nodes": stopped }));
    } else {
        for s in &stopped {
            let pid = s.pid.map_or("-".to_string(), |p| p.to_string());
            println!("{} (pid {pid}): {}", s.node, s.result.replace('_', " "));
        }
        if stopped.iter().all(|s| s.result == "not_running") {
            println!("no demo node of {} was running", dir.display());
        }
    }
    Ok(if failed { exit::INTERNAL } else { exit::OK })
}
