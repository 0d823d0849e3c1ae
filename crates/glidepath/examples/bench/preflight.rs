//! preflight: the preflight gates (built-in + declared) at 100 and 1,000
//! local nodes.

use glidepath::demo::fleet::write_release;
use glidepath::demo::plans::{LocalPlan, Probe};
use glidepath::drivers::Drivers;
use std::time::Instant;

/// Preflight at `n` local nodes: the real local deployer on real install
/// dirs, a tcp health check per node against one listener, and one custom
/// gate. Returns the wall time of the built-in and declared gates.
async fn preflight_at(n: usize, command_health: bool) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let rel = write_release(dir.path(), &glidepath::demo::releases()[1]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accept = tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            drop(s);
        }
    });
    let probe = if command_health {
        Probe::Command("true".into())
    } else {
        Probe::Tcp(format!("127.0.0.1:{port}"))
    };
    let local = LocalPlan::new(n, 20000)
        .probe(probe)
        .extra("\n[[gates.custom]]\nname = \"ticket\"\ncommand = \"true\"\n");
    local.install(dir.path(), "1").unwrap();
    let path = local.write(dir.path(), &rel).unwrap();
    let (plan, _) = glidepath::plan::load(&path).unwrap_or_else(|_| panic!("bench plan invalid"));
    let drivers = Drivers::for_plan(&plan);
    let t0 = Instant::now();
    let (mut results, before) = glidepath::executor::builtin_checks(
        &glidepath::gates::builtin::BuiltinInputs::of(&plan),
        &drivers,
    )
    .await;
    results.extend(
        glidepath::gates::evaluate(
            &plan.gates,
            &glidepath::gates::Inputs::of(&plan),
            jiff::Timestamp::now(),
            glidepath::executor::same_release(&before).as_deref(),
        )
        .await,
    );
    let wall = t0.elapsed().as_secs_f64();
    accept.abort();
    let failing: Vec<_> = results
        .iter()
        .filter(|r| r.verdict != glidepath::gates::Verdict::Pass)
        .collect();
    assert!(failing.is_empty(), "preflight bench: {failing:?}");
    assert_eq!(before.len(), n);
    wall
}

pub async fn preflight() {
    for command_health in [false, true] {
        for n in [100, 1000] {
            let mut runs = Vec::new();
            for _ in 0..3 {
                runs.push(preflight_at(n, command_health).await);
            }
            runs.sort_by(|a, b| a.total_cmp(b));
            println!(
                "preflight: {n} local nodes, health {}: {:.3} s (best of 3; {:.2} ms per node; worst {:.3} s)",
                if command_health { "command = \"true\"" } else { "tcp" },
                runs[0],
                runs[0] * 1000.0 / n as f64,
                runs[2]
            );
        }
    }
}
