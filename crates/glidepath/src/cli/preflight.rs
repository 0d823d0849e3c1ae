//! `preflight`: every gate, built-in and declared, as a verdict table.

use super::{load_plan, print_json, Ctx};
use crate::{exit, Failure};
use glidepath::drivers::Drivers;
use glidepath::gates::Verdict;
use std::path::Path;

pub async fn run(ctx: &Ctx, path: &Path) -> Result<u8, Failure> {
    let p = load_plan(path, ctx)?;
    let drivers = Drivers::for_plan(&p);
    let (mut results, before) = glidepath::executor::builtin_checks(
        &glidepath::gates::builtin::BuiltinInputs::of(&p),
        &drivers,
    )
    .await;
    use glidepath::executor::same_release;
    results.extend(
        glidepath::gates::evaluate(
            &p.gates,
            &glidepath::gates::Inputs::of(&p),
            jiff::Timestamp::now(),
            same_release(&before).as_deref(),
        )
        .await,
    );
    let failing: Vec<_> = results
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .collect();
    if ctx.json() {
        print_json(glidepath::output::Preflight {
            passed: failing.is_empty(),
            gates: &results,
        });
    } else {
        print!("{}", glidepath::gates::render(&results));
    }
    Ok(if failing.is_empty() {
        exit::OK
    } else if failing.iter().all(|r| r.infra) {
        exit::UNREACHABLE
    } else {
        exit::GATE
    })
}
