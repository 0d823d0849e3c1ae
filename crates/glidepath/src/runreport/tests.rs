//! The report's model on journaled event lists: the fixture (a demo run
//! whose canary breached its SLI and was rolled back, with a forced gate,
//! fingerprinted env values and hostile texts added) and cuts of it.

use super::*;
use glidepath_core::Event;

/// The run record (first line) and events of `tests/fixtures/report_run.jsonl`.
pub(crate) fn fixture() -> (RunRecord, Vec<Event>) {
    let text = include_str!("../../tests/fixtures/report_run.jsonl");
    let mut lines = text.lines();
    let r: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    let s = |k: &str| r[k].as_str().unwrap().to_string();
    let rec = RunRecord {
        id: s("id"),
        fleet: s("fleet"),
        plan_path: s("plan_path"),
        plan_hash: s("plan_hash"),
        plan_source: s("plan_source"),
        version: s("version"),
        status: s("status").parse().unwrap(),
        reason: s("reason"),
        created_at: r["created_at"].as_u64().unwrap(),
        updated_at: r["updated_at"].as_u64().unwrap(),
    };
    let events = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    (rec, events)
}

fn kinds(r: &RunReport) -> Vec<&'static str> {
    r.decisions.iter().map(|d| d.kind).collect()
}

#[test]
fn a_rolled_back_run_names_its_cause_with_the_figures_and_what_was_restored() {
    let (rec, events) = fixture();
    let r = RunReport::build(&rec, &events);
    assert_eq!(
        kinds(&r),
        ["gate_forced", "started", "rollback", "finished"],
        "{:#?}",
        r.decisions
    );
    let rb = r.rollback.as_ref().expect("a rollback section");
    let cause = rb.cause.as_deref().unwrap();
    assert!(
        cause.contains("error rate = 0.3387 > max 0.05 (62 samples)"),
        "{cause}"
    );
    assert_eq!(rb.restored, ["node-1 (back to 2)"]);
    assert!(rb.not_reversed.is_empty());
    // the breach is in the chart's data, judged by the core
    let err = r.checks.iter().find(|c| c.check == "error rate").unwrap();
    assert_eq!((err.max, err.min), (Some(0.05), None));
    assert_eq!(err.points.len(), 1);
    let p = &err.points[0];
    assert_eq!(
        (p.t_ms, p.samples, p.verdict.as_deref()),
        (1486, 62, Some("breach"))
    );
    assert!(p.over_limit);
    // who, where, and the forced gate with its reason
    assert_eq!(r.run_by(), "alice@ops-1 (pid 4242, glidepath 0.1.0)");
    let freeze = r
        .gates
        .as_ref()
        .unwrap()
        .iter()
        .find(|g| g.gate == "freeze")
        .unwrap();
    let forced = freeze.forced.as_ref().unwrap();
    assert_eq!(forced.by, "alice@ops-1");
    assert!(forced.reason.starts_with("hotfix for INC-42"));
    // the canary served the bad release from its enable to its drain
    assert_eq!(
        r.clients.exposure,
        [Exposure {
            node: "node-1".into(),
            from_ms: 448,
            to_ms: Some(1491)
        }]
    );
    assert_eq!(r.run.groups, [vec!["node-1"], vec!["node-2", "node-3"]]);
    assert_eq!(r.state_words(), "finished: rolled_back");
}

#[test]
fn steps_pair_each_intent_with_its_outcome_and_fold_polls_into_one_row() {
    let (rec, events) = fixture();
    let r = RunReport::build(&rec, &events);
    let n1 = &r.nodes[0];
    assert_eq!(
        (n1.node.as_str(), n1.status.as_str()),
        ("node-1", "rolled_back")
    );
    let row = |i: usize| {
        let s = &n1.steps[i];
        (
            s.step.as_str(),
            s.version.as_deref(),
            s.tries,
            s.t_ms,
            s.duration_ms,
            s.result,
        )
    };
    assert_eq!(row(0), ("drain", None, 1, 45, 5, "ok"));
    assert_eq!(row(1), ("check_drained", None, 2, 52, 114, "ok"));
    assert_eq!(row(5), ("check_health", Some("3"), 3, 225, 216, "ok"));
    assert_eq!(n1.steps.len(), 16);
    assert!(r.nodes[1].steps.is_empty() && r.nodes[1].status == "untouched");
    // the run's own steps: the window's start (probes are the charts)
    assert_eq!(r.run_steps.len(), 1);
    assert_eq!(r.run_steps[0].step, "start_window");
    assert_eq!(r.windows, [477]);
}

#[test]
fn a_journal_without_origin_still_renders_saying_what_is_unknown() {
    let (rec, mut events) = fixture();
    events.retain(|e| !matches!(e, Event::Origin { .. }));
    let r = RunReport::build(&rec, &events);
    assert!(r.run_by().starts_with("unknown"), "{}", r.run_by());
    assert!(!r.run.rollout_known);
    assert!(r.nodes.iter().all(|n| n.status == "unknown"));
    let err = r.checks.iter().find(|c| c.check == "error rate").unwrap();
    assert_eq!((err.max, err.points[0].verdict.as_deref()), (None, None));
    let md = r.markdown();
    assert!(md.contains("| Run by | unknown"), "{md}");
    assert!(md.contains("### error rate (limit unknown)"), "{md}");
    // the finished reason still tells the cause
    assert!(kinds(&r).contains(&"finished"));
}

#[test]
fn a_run_in_progress_says_so_and_shows_the_step_in_flight() {
    let (mut rec, events) = fixture();
    rec.status = RunStatus::Running;
    // up to the intent of the first health check
    let cut = events
        .iter()
        .position(|e| matches!(e, Event::Intent { step, .. } if step.kind == StepKind::CheckHealth))
        .unwrap();
    let r = RunReport::build(&rec, &events[..=cut]);
    assert!(r.run.in_progress);
    assert_eq!(r.state_words(), "in progress (running)");
    let last = r.nodes[0].steps.last().unwrap();
    assert_eq!(
        (last.step.as_str(), last.result),
        ("check_health", "in_flight")
    );
    assert!(r.rollback.is_none());
    assert!(r.markdown().contains("**in progress (running)**"));
    assert!(r.html().contains("in progress (running)"));
}

#[test]
fn no_journaled_text_makes_markdown() {
    use super::md::cell;
    // a link, an image, emphasis, code, an entity: all shown as typed
    assert_eq!(
        cell("[ok](http://evil) ![x](y) *b* _i_ `c` &lt; ~~s~~ # h > q"),
        "\\[ok\\](http://evil) \\!\\[x\\](y) \\*b\\* \\_i\\_ \\`c\\` &amp;lt; \\~\\~s\\~\\~ # h > q"
    );
    assert_eq!(cell("a|b\nc"), "a\\|b c");
    assert_eq!(cell("rolled_back _x_"), "rolled_back \\_x\\_");
    assert_eq!(cell("> q"), "\\> q");
    assert_eq!(cell("# h"), "\\# h");
}

#[test]
fn journaled_texts_are_escaped_for_each_format() {
    let (rec, events) = fixture();
    let r = RunReport::build(&rec, &events);
    let md = r.markdown();
    assert!(!md.contains("<script>") && !md.contains("<b>"), "{md}");
    let restart = md
        .lines()
        .find(|l| l.contains("| restart | 3 |"))
        .expect("the restart row on one line");
    assert!(
        restart.ends_with("&lt;script>alert(1)&lt;/script> \\| x |"),
        "{restart}"
    );
    let html = r.html();
    assert!(
        !html.contains("<script") && !html.contains("<b>bob"),
        "no journaled tag"
    );
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt; | x"));
    assert!(html.contains("approved by &lt;b&gt;bob&lt;/b&gt;"));
    // no external asset, no script
    assert!(!html.contains("src=") && !html.contains("href=") && !html.contains("<link"));
}

#[test]
fn env_values_are_shown_as_journaled_fingerprints() {
    let (rec, events) = fixture();
    let r = RunReport::build(&rec, &events);
    let md = r.markdown();
    assert!(md.contains("| DB_PASSWORD | hmac-sha256:1a2b3c4d:"), "{md}");
    assert!(md.contains("| REGION | eu-west-1 |"));
}

#[test]
fn the_json_document_leads_with_its_version_and_mirrors_the_model() {
    let (rec, events) = fixture();
    let r = RunReport::build(&rec, &events);
    let json = r.json();
    assert!(
        json.starts_with(
            "{\n  \"schema_version\": 1,\n  \"report\": 1,\n  \"run\": {\n    \"run_id\""
        ),
        "{json}"
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["run"]["started_at"], "2026-11-23T08:02:41.277Z");
    assert_eq!(v["checks"][0]["points"][0]["verdict"], "breach");
    assert_eq!(v["rollback"]["restored"][0], "node-1 (back to 2)");
}

#[test]
fn the_same_events_give_the_same_bytes() {
    let (rec, events) = fixture();
    let (a, b) = (
        RunReport::build(&rec, &events),
        RunReport::build(&rec, &events),
    );
    assert_eq!(a.markdown(), b.markdown());
    assert_eq!(a.html(), b.html());
    assert_eq!(a.json(), b.json());
}

#[test]
fn a_chart_draws_no_coordinate_from_a_value_that_is_not_a_number() {
    use super::{CheckSeries, Point};
    let point = |t_ms, value| Point {
        t_ms,
        value,
        samples: 10,
        baseline: Some(f64::INFINITY),
        over_limit: false,
        verdict: None,
        judged: None,
        error: None,
    };
    let c = CheckSeries {
        check: "error rate".into(),
        max: Some(f64::NAN),
        min: None,
        compare_tolerance: None,
        points: vec![
            point(0, Some(0.01)),
            point(500, Some(f64::NAN)),
            point(1000, Some(f64::NEG_INFINITY)),
            point(1500, Some(-0.5)),
        ],
    };
    let svg = super::svg::chart(&c, &[]);
    assert!(
        !svg.to_lowercase().contains("nan") && !svg.contains("inf"),
        "{svg}"
    );
    // the finite points are drawn (a negative one on the axis)
    assert_eq!(svg.matches("<circle").count(), 2, "{svg}");
}
