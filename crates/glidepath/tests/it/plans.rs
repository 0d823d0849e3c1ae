//! Broken plans and their exact diagnostics (file:line:column, message,
//! hint), as snapshots; and the `validate` command's exit codes and JSON.

use glidepath::plan::{parse, PlanError};
use std::path::Path;

const GOOD: &str = r#"[release]
version  = "2"
artifact = "dist/2/release.toml"
sha256   = "SHA"

[fleet]
name  = "api"
nodes = [
  { name = "api-1", address = "127.0.0.1:9001" },
  { name = "api-2", address = "127.0.0.1:9002" },
  { name = "api-3", address = "127.0.0.1:9003" },
]

[strategy]
canary         = ["api-1"]
batch_size     = 1
sli_window     = "1m"
probe_interval = "10s"

[balancer]
kind  = "http"
drain = "http://{address}/admin/drain"
ready = "http://{address}/admin/ready"
state = "http://{address}/admin/state"

[deploy]
kind        = "local"
install_dir = "/opt/api/{node}"
restart     = "systemctl restart api"

[health]
http     = "http://{address}/health"
deadline = "60s"

[sli]
source = "scrape"

[[sli.check]]
name        = "error rate"
kind        = "error_ratio"
metric      = "http_requests_total"
max         = 0.01
min_samples = 50

[[sli.check]]
name     = "p95 latency"
kind     = "latency_quantile"
metric   = "http_request_duration_seconds"
quantile = 0.95
max      = 0.5

[rollback]
on = ["health", "sli"]
"#;

pub(crate) fn setup() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("dist/2")).unwrap();
    let art = dir.path().join("dist/2/release.toml");
    std::fs::write(&art, "version = \"2\"\n").unwrap();
    let sha = glidepath::plan::artifact_sha256(&art).unwrap();
    (dir, GOOD.replace("SHA", &sha))
}

pub(crate) fn diagnose(dir: &Path, src: &str) -> String {
    match parse(Path::new("plan.toml"), src, dir) {
        Ok(_) => "valid".into(),
        Err(PlanError::Invalid(r)) => r.short(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_reference_plan_is_valid() {
    let (dir, good) = setup();
    assert_eq!(diagnose(dir.path(), &good), "valid");
}

#[test]
fn broken_plans_and_their_diagnostics() {
    let (dir, good) = setup();
    // (name, from, to): each case edits the valid plan once
    let cases: &[(&str, &str, &str)] = &[
        ("toml_syntax", "version  = \"2\"", "version  = \"2"),
        ("unknown_key", "batch_size     = 1", "batchsize      = 1"),
        ("wrong_type", "batch_size     = 1", "batch_size     = true"),
        ("bad_duration", "sli_window     = \"1m\"", "sli_window     = \"30x\""),
        ("canary_not_in_fleet", "canary         = [\"api-1\"]", "canary         = [\"api-11\"]"),
        ("error_ratio_out_of_range", "max         = 0.01", "max         = 5"),
        ("quantile_out_of_range", "quantile = 0.95", "quantile = 1.5"),
        ("missing_rollback_section", "[rollback]\non = [\"health\", \"sli\"]\n", ""),
        ("rollback_without_health", "on = [\"health\", \"sli\"]", "on = [\"sli\"]"),
        ("duplicate_node", "name = \"api-3\"", "name = \"api-2\""),
        ("node_name_dot_dot", "name = \"api-3\"", "name = \"..\""),
        ("address_with_shell", "address = \"127.0.0.1:9002\"", "address = \"127.0.0.1;touch /tmp/x\""),
        ("version_with_newline", "version  = \"2\"", "version  = \"2\\ntouch /tmp/x\""),
        ("batch_percent_out_of_range", "batch_size     = 1", "batch_size     = \"150%\""),
        ("probe_longer_than_window", "probe_interval = \"10s\"", "probe_interval = \"2m\""),
        ("unknown_placeholder", "/opt/api/{node}", "/opt/api/{nod}"),
        ("bad_sha_and_missing_artifact", "artifact = \"dist/2/release.toml\"", "artifact = \"dist/3/release.toml\""),
        ("unknown_balancer_kind", "kind  = \"http\"", "kind  = \"htpp\""),
        ("missing_version", "version  = \"2\"\n", ""),
        ("window_without_sli", "[sli]\nsource = \"scrape\"", "[nosli]\nsource = \"scrape\""),
        ("pause_after_missing_batch", "probe_interval = \"10s\"", "probe_interval = \"10s\"\npauses = [\"after-batch-9\"]"),
        ("check_without_threshold", "quantile = 0.95\nmax      = 0.5", "quantile = 0.95"),
        ("empty_fleet", "nodes = [\n  { name = \"api-1\", address = \"127.0.0.1:9001\" },\n  { name = \"api-2\", address = \"127.0.0.1:9002\" },\n  { name = \"api-3\", address = \"127.0.0.1:9003\" },\n]", "nodes = []"),
    ];
    let mut all = String::new();
    for (name, from, to) in cases {
        assert!(good.contains(from), "case {name}: `{from}` not in the plan");
        let mut src = good.replacen(from, to, 1);
        if *name == "window_without_sli" {
            let (a, b) = (
                src.find("[nosli]").unwrap(),
                src.find("[rollback]").unwrap(),
            );
            src.replace_range(a..b, "");
        }
        if *name == "bad_sha_and_missing_artifact" {
            src = src.replacen(
                &src[src.find("sha256   = \"").unwrap() + 12
                    ..src.find("sha256   = \"").unwrap() + 76]
                    .to_string(),
                "not-hex",
                1,
            );
        }
        let out = diagnose(dir.path(), &src);
        assert_ne!(out, "valid", "case {name} must be refused");
        all.push_str(&format!("## {name}\n{out}\n"));
    }
    insta::assert_snapshot!("broken_plans", all);
}

#[test]
fn every_problem_is_reported_at_once() {
    let (dir, good) = setup();
    let src = good
        .replace("batch_size     = 1", "batchsize = 1")
        .replace("sli_window     = \"1m\"", "sli_window = \"1x\"")
        .replace("canary         = [\"api-1\"]", "canary = [\"web-1\"]");
    let out = diagnose(dir.path(), &src);
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.starts_with("plan.toml:15:"), "{out}");
}

#[test]
fn validate_exit_codes_and_json() {
    let (dir, good) = setup();
    let ok = dir.path().join("ok.toml");
    std::fs::write(&ok, &good).unwrap();
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["validate", ok.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("valid. `glidepath run` would:"), "{text}");
    assert!(
        text.contains("canary api-1: drain → wait for 0 active connections"),
        "{text}"
    );

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        good.replace("sli_window     = \"1m\"", "sli_window     = \"30x\""),
    )
    .unwrap();
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["validate", bad.to_str().unwrap(), "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["problems"][0]["line"], 17);
    assert_eq!(v["problems"][0]["column"], 19);
    assert!(v["problems"][0]["hint"]
        .as_str()
        .unwrap()
        .contains("\"30s\""));
    // the human form names file:line:col
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["validate", bad.to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:17:19"), "{err}");
}

#[test]
fn the_shipped_example_plan_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/local/plan.toml");
    match glidepath::plan::load(&path) {
        Ok((plan, warnings)) => {
            assert!(warnings.diags.is_empty(), "{}", warnings.short());
            assert_eq!(
                plan.rollout_spec().groups,
                vec![vec!["api-1"], vec!["api-2"], vec!["api-3"]]
            );
        }
        Err(PlanError::Invalid(r)) => panic!("{}", r.short()),
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn broken_driver_configs_and_their_diagnostics() {
    let (dir, good) = setup();
    // the reference plan with the real-infrastructure drivers
    let base = good
        .replace(
            "[balancer]\nkind  = \"http\"\ndrain = \"http://{address}/admin/drain\"\nready = \"http://{address}/admin/ready\"\nstate = \"http://{address}/admin/state\"",
            "[[balancer]]\nkind    = \"haproxy\"\nsocket  = \"/run/haproxy/admin.sock\"\nbackend = \"api_pool\"\nservers = { api-1 = \"srv1\" }\n\n[[balancer]]\nkind    = \"haproxy\"\naddress = \"10.0.0.2:9999\"\nbackend = \"api_pool\"",
        )
        .replace(
            "[deploy]\nkind        = \"local\"",
            "[deploy]\nkind        = \"ssh\"\nuser        = \"deploy\"\nport        = 22",
        )
        .replace("[sli]\nsource = \"scrape\"", "[sli]\nsource = \"prometheus\"\nurl    = \"http://prom:9090\"\nbearer_token_env = \"PROM_TOKEN\"")
        .replace(
            "kind        = \"error_ratio\"\nmetric      = \"http_requests_total\"",
            "query         = 'sum(rate(http_requests_total{code=~\"5..\",instance=~\"{instances}\"}[1m])) / sum(rate(http_requests_total{instance=~\"{instances}\"}[1m]))'\nsamples_query = 'sum(increase(http_requests_total{instance=~\"{instances}\"}[1m]))'",
        )
        .replace(
            "kind     = \"latency_quantile\"\nmetric   = \"http_request_duration_seconds\"\nquantile = 0.95",
            "query    = 'histogram_quantile(0.95, sum(rate(http_request_duration_seconds_bucket{instance=~\"{instances}\"}[1m])) by (le))'",
        );
    assert_eq!(
        diagnose(dir.path(), &base),
        "valid",
        "the driver reference plan is valid:\n{base}"
    );
    let cases: &[(&str, &str, &str)] = &[
        (
            "haproxy_socket_and_address",
            "socket  = \"/run/haproxy/admin.sock\"",
            "socket  = \"/run/haproxy/admin.sock\"\naddress = \"127.0.0.1:9999\"",
        ),
        (
            "haproxy_servers_unknown_node",
            "servers = { api-1 = \"srv1\" }",
            "servers = { api-9 = \"srv1\" }",
        ),
        (
            "haproxy_without_backend",
            "address = \"10.0.0.2:9999\"\nbackend = \"api_pool\"",
            "address = \"10.0.0.2:9999\"",
        ),
        (
            "ssh_port_out_of_range",
            "port        = 22",
            "port        = 70000",
        ),
        (
            "ssh_unknown_key",
            "user        = \"deploy\"",
            "usr         = \"deploy\"",
        ),
        (
            "prometheus_without_url",
            "url    = \"http://prom:9090\"\n",
            "",
        ),
        (
            "bearer_env_and_file",
            "bearer_token_env = \"PROM_TOKEN\"",
            "bearer_token_env = \"PROM_TOKEN\"\nbearer_token_file = \"/etc/token\"",
        ),
        (
            "min_samples_without_samples_query",
            "max      = 0.5",
            "max      = 0.5\nmin_samples = 100",
        ),
        (
            "scrape_kind_with_prometheus",
            "query    = 'histogram",
            "kind = \"latency_quantile\"\nquery    = 'histogram",
        ),
        (
            "unknown_placeholder_in_query",
            "[1m])) by (le))'",
            "[1m])) by (le)) {instance}'",
        ),
        (
            "health_without_probe",
            "http     = \"http://{address}/health\"\n",
            "",
        ),
        (
            "on_error_typo",
            "bearer_token_env = \"PROM_TOKEN\"",
            "bearer_token_env = \"PROM_TOKEN\"\non_error = \"rollbak\"",
        ),
    ];
    let mut all = String::new();
    for (name, from, to) in cases {
        assert!(base.contains(from), "case {name}: `{from}` not in the plan");
        let out = diagnose(dir.path(), &base.replacen(from, to, 1));
        assert_ne!(out, "valid", "case {name} must be refused");
        all.push_str(&format!("## {name}\n{out}\n"));
    }
    insta::assert_snapshot!("broken_driver_configs", all);
}

#[test]
fn the_haproxy_prometheus_example_validates_with_its_checksum() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/haproxy-prometheus/plan.toml");
    let out = std::process::Command::new(crate::harness::BIN)
        .args(["validate", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("canary api-2") && text.contains("pause: wait for `glidepath promote RUN`"),
        "{text}"
    );
}

#[test]
fn a_storage_impacting_release_needs_a_backup_gate() {
    let (dir, good) = setup();
    let src = good.replace("sha256   =", "storage_impacting = true\nsha256   =");
    let out = diagnose(dir.path(), &src);
    assert!(
        out.contains("a storage-impacting release needs a backup gate"),
        "{out}"
    );
    std::fs::write(dir.path().join("latest.dump"), "backup").unwrap();
    let with_gate = format!("{src}\n[gates.backup]\nfile = \"latest.dump\"\nmax_age = \"1h\"\n");
    assert_eq!(diagnose(dir.path(), &with_gate), "valid");
}

#[test]
fn retry_budget_is_configurable_and_validated() {
    let (dir, good) = setup();
    let with = |retry: &str| {
        good.replacen(
            "batch_size     = 1",
            &format!("batch_size     = 1\nretry = {retry}"),
            1,
        )
    };
    // defaults, documented in the README
    let (plan, _) = parse(Path::new("plan.toml"), &good, dir.path()).unwrap();
    assert_eq!(
        plan.rollout_spec().retry,
        glidepath_core::RetrySpec {
            backoff_ms: 500,
            max_backoff_ms: 10_000,
            deadline_ms: 300_000
        }
    );
    let src = with(r#"{ backoff = "1s", max_backoff = "30s", deadline = "15m" }"#);
    let (plan, _) = parse(Path::new("plan.toml"), &src, dir.path()).unwrap();
    assert_eq!(
        plan.rollout_spec().retry,
        glidepath_core::RetrySpec {
            backoff_ms: 1_000,
            max_backoff_ms: 30_000,
            deadline_ms: 900_000
        }
    );
    for (retry, expect) in [
        (r#"{ backof = "1s" }"#, "did you mean `backoff`"),
        (
            r#"{ backoff = "1x" }"#,
            "invalid duration `1x` for `backoff`",
        ),
        (r#"{ backoff = "0s" }"#, "`backoff` must be longer than 0"),
        (
            r#"{ backoff = "5s", max_backoff = "1s" }"#,
            "`max_backoff` (1000ms) is shorter than `backoff` (5000ms)",
        ),
        (
            r#"{ backoff = "5s", deadline = "1s" }"#,
            "`deadline` (1000ms) leaves no time for a retry",
        ),
        (r#""5s""#, "retry"),
    ] {
        let out = diagnose(dir.path(), &with(retry));
        assert!(
            out.contains(expect) && out.starts_with("plan.toml:"),
            "{retry}: {out}"
        );
    }
}

/// A FIFO (or a link to /dev/zero) in a directory artifact hung `validate`
/// forever: now it is refused, named, and never opened.
#[test]
fn validate_refuses_special_files_and_escaping_links_without_hanging() {
    let (dir, good) = setup();
    let art = dir.path().join("dist/dir");
    std::fs::create_dir_all(&art).unwrap();
    std::fs::write(art.join("release.toml"), "version = \"2\"\n").unwrap();
    let src = good.replace("dist/2/release.toml", "dist/dir").replacen(
        &good[good.find("sha256   = \"").unwrap() + 12..][..64],
        &"a".repeat(64),
        1,
    );
    let plan = dir.path().join("fifo.toml");
    std::fs::write(&plan, src).unwrap();
    let validate = |what: &str| -> String {
        let out = crate::harness::output_within(
            &["validate", plan.to_str().unwrap()],
            std::time::Duration::from_secs(20),
            what,
        );
        assert_eq!(out.status.code(), Some(2), "{what}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let fifo = std::ffi::CString::new(art.join("pipe").as_os_str().as_encoded_bytes()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let err = validate("a FIFO");
    assert!(err.contains("\"./pipe\" is a FIFO"), "{err}");
    std::fs::remove_file(art.join("pipe")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", art.join("zero")).unwrap();
    let err = validate("a link to /dev/zero");
    assert!(
        err.contains("\"./zero\" is a symlink to \"/dev/zero\", an absolute path"),
        "{err}"
    );
}

/// `{host}` means the same in every template that accepts it: in
/// `install_dir` it reached the paths (and the shell) literally.
#[test]
fn host_fills_install_dir_like_every_other_template() {
    let (dir, good) = setup();
    let src = good.replace("/opt/api/{node}", "/opt/{host}/{node}");
    let (plan, _) = parse(Path::new("plan.toml"), &src, dir.path()).unwrap();
    let n = plan.node("api-2").unwrap();
    assert_eq!(
        plan.install_dir(n),
        Path::new("/opt/127.0.0.1/api-2"),
        "{{host}} is the address without its port"
    );
}

/// The `[gates.config] files` templates use the same placeholder set as
/// every other template (`{host}` included), and an unknown one is named.
#[test]
fn config_file_templates_share_the_placeholder_set() {
    let (dir, good) = setup();
    let src = format!(
        "{good}\n[gates.config]\nmatrix = \"m.toml\"\nfiles = [\"conf/{{host}}/{{node}}.env\"]\n"
    );
    std::fs::write(dir.path().join("m.toml"), "").unwrap();
    let (plan, _) = parse(Path::new("plan.toml"), &src, dir.path()).unwrap();
    let files = glidepath::gates::config_files(&plan.gates, &glidepath::gates::Inputs::of(&plan));
    assert!(
        files
            .iter()
            .any(|(_, p)| p.ends_with("conf/127.0.0.1/api-2.env")),
        "{files:?}"
    );
    let bad = src.replace("{host}", "{hots}");
    let out = diagnose(dir.path(), &bad);
    assert!(out.contains("unknown placeholder `{hots}`"), "{out}");
}

/// `compare = "baseline"` and its keys: a valid plan, what `rollout_spec`
/// makes of it (alpha split between the enforcing checks, the canary's
/// expected share), and every wrong shape refused with its place and hint.
#[test]
fn compare_checks_and_their_diagnostics() {
    let (dir, good) = setup();
    let base = good
        .replace(
            "[sli]\nsource = \"scrape\"",
            "[sli]\nsource = \"scrape\"\nalpha  = 0.02\nbaseline = [\"api-2\", \"api-3\"]\non_incident = \"pause\"",
        )
        .replace(
            "max         = 0.01\nmin_samples = 50",
            "max         = 0.01\nmin_samples = 50\ncompare     = \"baseline\"\ntolerance   = \"10%\"",
        )
        .replace(
            "quantile = 0.95\nmax      = 0.5",
            "quantile = 0.95\nmax      = 0.5\ncompare  = \"baseline\"\ntolerance = 0.2\nmode     = \"shadow\"",
        );
    let (plan, _) = parse(Path::new("plan.toml"), &base, dir.path()).expect("valid");
    let w = plan.rollout_spec().window.unwrap();
    let (errors, latency) = (&w.checks[0], &w.checks[1]);
    let c = errors.compare.as_ref().unwrap();
    // the shadow check spends none of the budget: alpha 0.02 is the error check's
    assert_eq!(
        (c.tolerance, c.alpha, c.expected_share),
        (0.1, 0.02, 1.0 / 3.0)
    );
    let l = latency.compare.as_ref().unwrap();
    assert_eq!(
        (l.tolerance, l.quantile, latency.shadow),
        (0.2, Some(0.95), true)
    );
    assert_eq!(plan.baseline_nodes(), vec!["api-2", "api-3"]);

    let cases: &[(&str, &str, &str)] = &[
        (
            "compare_typo",
            "compare     = \"baseline\"",
            "compare     = \"baselin\"",
        ),
        (
            "tolerance_not_a_percentage",
            "tolerance   = \"10%\"",
            "tolerance   = \"ten\"",
        ),
        (
            "tolerance_out_of_range",
            "tolerance   = \"10%\"",
            "tolerance   = -0.5",
        ),
        (
            "tolerance_without_compare",
            "compare     = \"baseline\"\ntolerance   = \"10%\"",
            "tolerance   = \"10%\"",
        ),
        (
            "mode_typo",
            "mode     = \"shadow\"",
            "mode     = \"shaddow\"",
        ),
        ("alpha_out_of_range", "alpha  = 0.02", "alpha  = 5"),
        (
            "baseline_unknown_node",
            "baseline = [\"api-2\", \"api-3\"]",
            "baseline = [\"api-2\", \"api-9\"]",
        ),
        (
            "baseline_is_the_canary",
            "baseline = [\"api-2\", \"api-3\"]",
            "baseline = [\"api-1\"]",
        ),
        (
            "on_incident_typo",
            "on_incident = \"pause\"",
            "on_incident = \"ignore\"",
        ),
        (
            "metric_not_a_prometheus_name",
            "metric      = \"http_requests_total\"",
            "metric      = \"http requests\"",
        ),
        (
            "error_prefix_with_regex",
            "metric      = \"http_requests_total\"",
            "metric      = \"http_requests_total\"\nerror_prefix = \"5.*|2\"",
        ),
        (
            "no_baseline_left",
            "canary         = [\"api-1\"]",
            "canary         = [\"api-1\", \"api-2\", \"api-3\"]",
        ),
    ];
    let mut all = String::new();
    for (name, from, to) in cases {
        assert!(base.contains(from), "case {name}: `{from}` not in the plan");
        let src = base.replacen(from, to, 1);
        // the baseline names must leave the canary out for the last case
        let src = if *name == "no_baseline_left" {
            src.replace("baseline = [\"api-2\", \"api-3\"]\n", "")
        } else {
            src
        };
        let out = diagnose(dir.path(), &src);
        assert_ne!(out, "valid", "case {name} must be refused");
        all.push_str(&format!("## {name}\n{out}\n"));
    }
    // a PromQL check compared with its baseline counts with events_query
    let prom = base
        .replace("[sli]\nsource = \"scrape\"", "[sli]\nsource = \"prometheus\"\nurl    = \"http://prom:9090\"")
        .replace(
            "kind        = \"error_ratio\"\nmetric      = \"http_requests_total\"",
            "query         = 'sum(rate(http_requests_total{code=~\"5..\",instance=~\"{instances}\"}[1m])) / sum(rate(http_requests_total{instance=~\"{instances}\"}[1m]))'\nsamples_query = 'sum(http_requests_total{instance=~\"{instances}\"})'",
        );
    let counted = prom.replacen(
        "samples_query",
        "events_query = 'sum(http_requests_total{code=~\"5..\",instance=~\"{instances}\"})'\nsamples_query",
        1,
    );
    assert_eq!(diagnose(dir.path(), &counted), "valid");
    // counter totals: a range or a rate would count events twice
    let ranged = counted.replacen(
        "sum(http_requests_total{code=~\"5..\",instance=~\"{instances}\"})",
        "sum(increase(http_requests_total{code=~\"5..\",instance=~\"{instances}\"}[{window}]))",
        1,
    );
    all.push_str(&format!(
        "## events_query_with_a_range\n{}\n",
        diagnose(dir.path(), &ranged)
    ));
    all.push_str(&format!(
        "## query_compare_without_events_query\n{}\n",
        diagnose(dir.path(), &prom)
    ));
    let fixed = prom.replacen(
        "compare     = \"baseline\"\ntolerance   = \"10%\"",
        "events_query = 'x'",
        1,
    );
    all.push_str(&format!(
        "## events_query_without_compare\n{}\n",
        diagnose(dir.path(), &fixed)
    ));
    insta::assert_snapshot!("compare_checks", all);
}

/// `batch_bake` and `watch_after`: what `validate` says, and that they need
/// SLI checks to watch with.
#[test]
fn bake_and_watch_after_are_described_and_need_sli_checks() {
    let (dir, good) = setup();
    let src = good.replace(
        "probe_interval = \"10s\"",
        "probe_interval = \"10s\"\nbatch_bake     = \"2m\"\nwatch_after    = \"30m\"",
    );
    let (plan, _) = parse(Path::new("plan.toml"), &src, dir.path()).expect("valid");
    let steps = plan.describe().join("\n");
    assert!(
        steps.contains("bake: watch the nodes upgraded so far for 2m"),
        "{steps}"
    );
    assert!(steps.contains("watch the whole fleet for 30m"), "{steps}");
    let w = plan.rollout_spec().window.unwrap();
    assert_eq!((w.bake_ms, w.watch_ms), (Some(120_000), Some(1_800_000)));
    // without [sli] there is nothing to watch with
    let no_sli = src
        .split("[sli]")
        .next()
        .unwrap()
        .replace("sli_window     = \"1m\"\n", "")
        .to_string()
        + "[rollback]\non = [\"health\"]\n";
    let out = diagnose(dir.path(), &no_sli);
    assert!(
        out.contains("`watch_after` is set but the plan has no [sli] checks"),
        "{out}"
    );
}

/// `max_failed_nodes`: a count or a percentage of the fleet (rounded
/// down), described by `validate`, and refused when negative, out of range,
/// of the wrong type, or so large that every batch node could fail.
#[test]
fn the_failure_budget_is_read_described_and_validated() {
    let (dir, good) = setup();
    let with = |v: &str| {
        good.replacen(
            "batch_size     = 1",
            &format!("batch_size     = 1\nmax_failed_nodes = {v}"),
            1,
        )
    };
    // the default: any failure rolls back
    let (plan, _) = parse(Path::new("plan.toml"), &good, dir.path()).unwrap();
    assert_eq!(plan.rollout_spec().max_failed_nodes, 0);
    assert!(!plan.describe().join("\n").contains("failure budget"));
    // 3 nodes, canary api-1: two batch nodes
    for (v, n, said) in [
        ("1", 1, "failure budget (max_failed_nodes): up to 1 batch node(s) may fail"),
        (
            "\"50%\"",
            1,
            "failure budget (max_failed_nodes = \"50%\" of 3 nodes): up to 1 batch node(s) may fail",
        ),
    ] {
        let (plan, _) = parse(Path::new("plan.toml"), &with(v), dir.path()).expect(v);
        assert_eq!(plan.rollout_spec().max_failed_nodes, n, "{v}");
        let steps = plan.describe().join("\n");
        assert!(
            steps.contains(said) && steps.contains("a canary failure always does"),
            "{v}: {steps}"
        );
    }
    // a percentage that rounds down to 0 is valid, with a warning
    let (plan, warnings) = parse(Path::new("plan.toml"), &with("\"10%\""), dir.path()).unwrap();
    assert_eq!(plan.rollout_spec().max_failed_nodes, 0);
    let warned = warnings.short();
    assert!(
        warned.contains("`max_failed_nodes` of a fleet of 3 node(s) rounds down to 0"),
        "{warned}"
    );
    for (v, expect) in [
        ("-1", "`max_failed_nodes` = -1 is out of range"),
        ("\"100%\"", "`max_failed_nodes` = \"100%\" is out of range"),
        ("\"-5%\"", "`max_failed_nodes` = \"-5%\" is out of range"),
        ("\"two\"", "invalid `max_failed_nodes` \"two\""),
        ("true", "wrong type for `max_failed_nodes`"),
        (
            "2",
            "`max_failed_nodes` allows 2 failed node(s), but this plan has 2 batch node(s)",
        ),
        (
            "\"70%\"",
            "`max_failed_nodes` allows 2 failed node(s), but this plan has 2 batch node(s)",
        ),
    ] {
        let out = diagnose(dir.path(), &with(v));
        assert!(
            out.contains(expect) && out.starts_with("plan.toml:"),
            "{v}: {out}"
        );
    }
}

/// `[[pre]]`/`[[post]]` tasks: what `validate` says (order, retries,
/// irreversible ones), and their diagnostics.
#[test]
fn pre_and_post_tasks_are_described_and_checked() {
    let (dir, good) = setup();
    std::fs::create_dir_all(dir.path().join("migrations")).unwrap();
    let mig = |name: &str, sql: &str| {
        std::fs::write(dir.path().join("migrations").join(name), sql).unwrap()
    };
    mig(
        "0001_expand.sql",
        "ALTER TABLE users ADD COLUMN email text;\n",
    );
    mig(
        "0002_drop.sql",
        "ALTER TABLE users DROP COLUMN legacy_name;\n",
    );
    mig("0003_marked.sql", "-- glidepath: contract\nSELECT 1;\n");
    mig(
        "0005_commit.sql",
        "BEGIN;\nALTER TABLE users ADD COLUMN email text;\nCOMMIT;\n",
    );
    mig(
        "0004_index.sql",
        "-- CONCURRENTLY in a comment is fine\nCREATE INDEX CONCURRENTLY i ON users (email);\n",
    );
    let tasks = r#"
[[pre]]
name = "backup"
run = "pg_dump app > backup-{version}.sql"
retries = 2
retry_delay = "10s"

[[pre]]
name = "expand"
migrate = ["migrations/0001_expand.sql"]
database_url_env = "DATABASE_URL"

[[pre]]
name = "room-hashes"
run = "replay-hash --all"
capture = true
idempotent = true

[[post]]
name = "contract"
migrate = "migrations/0002_drop.sql"
database_url_env = "DATABASE_URL"

[[post]]
name = "hashes-unchanged"
compare_to = "room-hashes"
"#;
    let src = good.clone() + tasks;
    let (plan, _) = parse(Path::new("plan.toml"), &src, dir.path()).expect("valid");
    let steps = plan.describe().join("\n");
    insta::assert_snapshot!(
        "tasks_described",
        steps.replace(&dir.path().display().to_string(), "DIR")
    );
    let spec = plan.rollout_spec();
    assert_eq!(
        spec.pre
            .iter()
            .map(|t| (t.name.as_str(), t.attempts, t.idempotent))
            .collect::<Vec<_>>(),
        [
            ("backup", 3, false),
            ("expand", 1, true),
            ("room-hashes", 1, true)
        ]
    );
    // an unmarked DROP in a post task is a contract: always irreversible
    assert_eq!(
        spec.post[0].irreversible.as_deref(),
        Some("contract migration migrations/0002_drop.sql")
    );

    let cases: &[(&str, &str, &str)] = &[
        (
            "contract_file_in_pre",
            "migrations/0001_expand.sql",
            "migrations/0002_drop.sql",
        ),
        (
            "marked_contract_in_pre",
            "migrations/0001_expand.sql",
            "migrations/0003_marked.sql",
        ),
        (
            "missing_migration",
            "migrations/0001_expand.sql",
            "migrations/0009_nope.sql",
        ),
        (
            "commit_in_a_migration",
            "migrations/0001_expand.sql",
            "migrations/0005_commit.sql",
        ),
        (
            "concurrently_in_a_transaction",
            "migrations/0001_expand.sql",
            "migrations/0004_index.sql",
        ),
        (
            "no_database_url",
            "database_url_env = \"DATABASE_URL\"\n\n[[pre]]",
            "\n[[pre]]",
        ),
        (
            "two_actions",
            "name = \"backup\"\n",
            "name = \"backup\"\nmigrate = [\"migrations/0001_expand.sql\"]\n",
        ),
        (
            "no_action",
            "run = \"pg_dump app > backup-{version}.sql\"\n",
            "",
        ),
        (
            "unknown_placeholder",
            "backup-{version}.sql",
            "backup-{release}.sql",
        ),
        (
            "compare_to_unknown",
            "compare_to = \"room-hashes\"",
            "compare_to = \"room-hash\"",
        ),
        ("duplicate_name", "name = \"expand\"", "name = \"backup\""),
        (
            "contract_declared_reversible",
            "migrate = \"migrations/0002_drop.sql\"",
            "migrate = \"migrations/0002_drop.sql\"\nreversible = true",
        ),
        (
            "note_without_reversible_false",
            "name = \"backup\"\n",
            "name = \"backup\"\nnote = \"hmm\"\n",
        ),
        (
            "irreversible_pre_task",
            "name = \"backup\"\n",
            "name = \"backup\"\nreversible = false\n",
        ),
        (
            "capture_not_idempotent",
            "capture = true\nidempotent = true",
            "capture = true\nidempotent = false",
        ),
        ("unknown_key", "retries = 2", "retrys = 2"),
        (
            "on_post_failure_typo",
            "on = [\"health\", \"sli\"]",
            "on = [\"health\", \"sli\"]\non_post_failure = \"pause\"",
        ),
    ];
    let mut all = String::new();
    for (name, from, to) in cases {
        assert!(src.contains(from), "case {name}: `{from}` not in the plan");
        let out = diagnose(dir.path(), &src.replacen(from, to, 1));
        assert_ne!(out, "valid", "case {name} must be refused");
        all.push_str(&format!("## {name}\n{out}\n"));
    }
    insta::assert_snapshot!(
        "tasks_diagnostics",
        all.replace(&dir.path().display().to_string(), "DIR")
    );
}

/// A verification probe as an SLI check: read, described, and checked.
#[test]
fn probe_checks_are_sli_checks() {
    let (dir, good) = setup();
    let check = "[[sli.check]]\nname  = \"handshake\"\nprobe = { websocket = \"ws://{host}:9000/rt\", send = '{\"type\":\"hello\"}', expect_type = \"welcome\", caps = [\"chat\"] }\n\n[rollback]";
    let src = good.replace("[rollback]", check);
    let (plan, _) = parse(Path::new("plan.toml"), &src, dir.path()).expect("valid");
    let w = plan.rollout_spec().window.unwrap();
    let h = w.checks.iter().find(|c| c.name == "handshake").unwrap();
    assert_eq!((h.max, h.min_samples), (Some(0.0), 1));
    assert!(plan
        .describe()
        .join("\n")
        .contains("handshake ≤ 0 (min 1 samples)"));
    let cases = [
        (
            "max_out_of_range",
            "caps = [\"chat\"] }",
            "caps = [\"chat\"] }\nmax = 2",
        ),
        (
            "wrong_kind",
            "name  = \"handshake\"",
            "name  = \"handshake\"\nkind = \"error_ratio\"",
        ),
        (
            "unknown_key",
            "name  = \"handshake\"",
            "name  = \"handshake\"\ntolerance = 0.1",
        ),
        ("unknown_placeholder", "{host}", "{release}"),
        (
            "duplicate_name",
            "name  = \"handshake\"",
            "name  = \"error rate\"",
        ),
    ];
    let mut all = String::new();
    for (name, from, to) in cases {
        let out = diagnose(dir.path(), &src.replacen(from, to, 1));
        assert_ne!(out, "valid", "case {name} must be refused");
        all.push_str(&format!("## {name}\n{out}\n"));
    }
    insta::assert_snapshot!("probe_checks", all);
}

/// `[journal]`: a SQLite `path` or a PostgreSQL `url` (team mode), never
/// both, and a URL never with a password (the plan is journaled).
#[test]
fn journal_urls_and_their_diagnostics() {
    use glidepath::journal::Location;
    let (dir, good) = setup();
    let with = |section: &str| format!("{good}\n[journal]\n{section}\n");
    let load = |src: &str| parse(Path::new("plan.toml"), src, dir.path()).map(|(p, _)| p);

    let p = load(&with("url = \"postgres://glide@db.internal:5433/fleet\"")).unwrap();
    let loc = p.journal_location();
    assert!(loc.is_postgres(), "{loc:?}");
    assert_eq!(loc.to_string(), "postgres://glide@db.internal:5433/fleet");
    let p = load(&with("path = \"j.db\"")).unwrap();
    assert_eq!(
        p.journal_location(),
        Location::from(dir.path().join("j.db"))
    );
    let p = load(&good).unwrap();
    assert_eq!(
        p.journal_location(),
        Location::from(glidepath::journal::default_path())
    );

    let cases: &[(&str, &str)] = &[
        (
            "password_in_url",
            "url = \"postgres://glide:hunter2@db.internal/fleet\"",
        ),
        (
            "password_in_query",
            "url = \"postgres://glide@db.internal/fleet?password=hunter2\"",
        ),
        (
            "path_and_url",
            "path = \"j.db\"\nurl = \"postgres://glide@db.internal/fleet\"",
        ),
        ("not_postgres", "url = \"mysql://glide@db.internal/fleet\""),
        ("no_host", "url = \"postgres:///fleet\""),
        (
            "tls_required",
            "url = \"postgres://glide@db.internal/fleet?sslmode=require\"",
        ),
        ("url_not_a_string", "url = 5432"),
    ];
    let mut all = String::new();
    for (name, section) in cases {
        let src = with(section);
        let out = diagnose(dir.path(), &src);
        assert_ne!(out, "valid", "case {name} must be refused");
        // the rendered form (with the source lines) keeps the password out too
        let Err(PlanError::Invalid(report)) = load(&src) else {
            unreachable!()
        };
        let rendered = report.render(false);
        for shown in [&out, &rendered] {
            assert!(!shown.contains("hunter2"), "case {name}: {shown}");
        }
        all.push_str(&format!("## {name}\n{out}\n"));
    }
    insta::assert_snapshot!("journal_diagnostics", all);
}
