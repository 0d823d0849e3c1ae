//! planner: `glidepath plan` on 20 components × 50 releases, 10,000 instances.

use std::time::Instant;

/// The upgrade planner: 20 components × 50 releases, 10,000 instances.
pub fn planner() {
    use glidepath_core::compat::*;
    use std::collections::{BTreeMap, BTreeSet};
    let rel = |v: String, p: &[(&str, u32, u32)], stop: bool| ReleaseSpec {
        version: v,
        protocols: p
            .iter()
            .map(|(a, x, y)| (a.to_string(), Range { min: *x, max: *y }))
            .collect::<BTreeMap<_, _>>(),
        required_stop: stop,
        capabilities: BTreeSet::new(),
    };
    let v = |k: usize| format!("1.{k}");
    // a client of the server on `axis`: protocol 1 up to release 29, then 2
    let follower = |name: String, axis: &str| ComponentSpec {
        name,
        releases: (0..50)
            .map(|k| {
                let p = if k < 30 { 1 } else { 2 };
                rel(v(k), &[(axis, p, p)], false)
            })
            .collect(),
        stateful: false,
        talks_to: vec!["server".into()],
    };
    let mut comps = Vec::new();
    // the server: a bridge from 25 to 39 speaks both api/agent protocol 1 and 2
    comps.push(ComponentSpec {
        name: "server".into(),
        releases: (0..50)
            .map(|k| {
                let p = if k < 25 {
                    (1, 1)
                } else if k < 40 {
                    (1, 2)
                } else {
                    (2, 2)
                };
                rel(
                    v(k),
                    &[
                        ("api", p.0, p.1),
                        ("agent", p.0, p.1),
                        ("sql", 1, 1),
                        ("cache", 1, 1),
                    ],
                    false,
                )
            })
            .collect(),
        stateful: false,
        talks_to: vec!["db".into(), "cache".into()],
    });
    for i in 0..12 {
        comps.push(follower(format!("client-{i}"), "api"));
    }
    for i in 0..5 {
        comps.push(follower(format!("agent-{i}"), "agent"));
    }
    comps.push(ComponentSpec {
        name: "db".into(),
        releases: (0..50)
            .map(|k| rel(v(k), &[("sql", 1, 1)], false))
            .collect(),
        stateful: true,
        talks_to: vec![],
    });
    comps.push(ComponentSpec {
        name: "cache".into(),
        releases: (0..50)
            .map(|k| rel(v(k), &[("cache", 1, 1)], k % 10 == 0 && k > 0))
            .collect(),
        stateful: false,
        talks_to: vec![],
    });
    let skew = (0..5)
        .map(|i| SkewRule {
            component: format!("agent-{i}"),
            anchor: "server".into(),
            max_newer: 0,
            max_older: 49,
        })
        .collect();
    let spec = SystemSpec {
        components: comps,
        skew,
        capabilities: vec![],
    };
    // 10,000 instances: where they run now
    let mut instances: Vec<(String, String)> = Vec::new();
    for _ in 0..20 {
        instances.push(("server".into(), v(0)));
    }
    for i in 0..8000 {
        instances.push((
            format!("client-{}", i % 12),
            v(if i % 3 == 0 { 5 } else { 0 }),
        ));
    }
    for i in 0..1900 {
        instances.push((format!("agent-{}", i % 5), v(0)));
    }
    for _ in 0..3 {
        instances.push(("db".into(), v(45)));
    }
    for _ in 0..77 {
        instances.push(("cache".into(), v(0)));
    }
    assert_eq!(instances.len(), 10_000);
    let runs = 20;
    let mut times = Vec::new();
    let mut stages = 0;
    for _ in 0..runs {
        let t0 = Instant::now();
        let sys = System::new(spec.clone()).unwrap();
        let mut versions = vec![0u64; sys.spec.components.len()];
        for (c, ver) in &instances {
            let ci = sys.component(c).unwrap();
            versions[ci] |= 1 << sys.release(ci, ver).unwrap();
        }
        let start = State { versions, flags: 0 };
        let target = Target {
            releases: (0..20).map(|c| (c, 49)).collect(),
            flags: vec![],
        };
        let moves = sys.plan(&start, &target, 5_000_000).expect("a plan");
        let explained = sys.explain(&start, &moves);
        stages = explained.len();
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "planner: 20 components × 50 releases, 10,000 instances (mixed start, a bridge, skew, a stateful db, required stops): {stages} stages; median {:.1} ms, max {:.1} ms over {runs} runs (goal < 200 ms)",
        times[runs / 2],
        times[runs - 1]
    );
}
