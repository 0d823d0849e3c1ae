//! `demo` (the three rehearsals) and `demo-node` (one demo service).

use super::{print_json, Ctx};
use crate::{exit, Failure};
use anyhow::Context;
use glidepath::demo::DemoPlan;
use std::path::PathBuf;

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
