//! `[gates]`: every wrong shape is a diagnostic (nothing is ignored), and
//! the pre-flight snapshot never journals an env value in clear.

use crate::harness::*;
use crate::plans::{diagnose, setup};
use glidepath::demo::node::Behaviour;
use glidepath::demo::DemoPlan;
use glidepath_core::Event;

/// The reference plan with `gates` appended (it starts on line 55).
fn with(gates: &str) -> (tempfile::TempDir, String) {
    let (dir, good) = setup();
    (dir, format!("{good}\n{gates}"))
}

#[test]
fn a_single_table_where_an_array_of_tables_belongs_is_an_error() {
    let (dir, src) = with("[gates.freeze]\nname = \"holidays\"\nfrom = \"2026-12-20T00:00:00+01:00\"\nto = \"2027-01-04T00:00:00+01:00\"\n");
    assert_eq!(
        diagnose(dir.path(), &src),
        "plan.toml:55:1: error: [gates.freeze] is a single table, but freeze entries are an array of tables (hint: write [[gates.freeze]] (an array of tables), one per entry: [[gates.freeze]] name = \"holiday freeze\")\n"
    );
    let (dir, src) = with("[gates.custom]\nname = \"ticket\"\ncommand = \"true\"\n");
    assert_eq!(
        diagnose(dir.path(), &src),
        "plan.toml:55:1: error: [gates.custom] is a single table, but custom entries are an array of tables (hint: write [[gates.custom]] (an array of tables), one per entry: [[gates.custom]] name = \"change ticket approved\")\n"
    );
    // the single table is still read: its own problems come in the same pass
    let (dir, src) = with("[gates.freeze]\nname = \"holidays\"\nweekdays = [\"fry\"]\nstart = \"15:00\"\nend = \"24:00\"\ntimezone = \"Europe/Paris\"\n");
    let out = diagnose(dir.path(), &src);
    assert!(
        out.contains("plan.toml:55:1: error: [gates.freeze] is a single table")
            && out.contains("plan.toml:57:14: error: unknown weekday `fry`"),
        "{out}"
    );
    // the right shape is valid
    let (dir, src) = with("[[gates.freeze]]\nname = \"holidays\"\nfrom = \"2026-12-20T00:00:00+01:00\"\nto = \"2027-01-04T00:00:00+01:00\"\n\n[[gates.custom]]\nname = \"ticket\"\ncommand = \"true\"\n");
    assert_eq!(diagnose(dir.path(), &src), "valid");
}

#[test]
fn every_wrong_shape_in_gates_is_a_diagnostic() {
    let (dir, _) = setup();
    std::fs::write(
        dir.path().join("deprecations.toml"),
        "[[key]]\nname = \"db.pool\"\nremoved_in = \"2\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("single.toml"),
        "[key]\nname = \"db.pool\"\nremoved_in = \"2\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("float.toml"),
        "[[key]]\nname = \"db.pool\"\nremoved_in = 1.10\n",
    )
    .unwrap();
    let config = "[gates.config]\nmatrix = \"deprecations.toml\"\n";
    // (gates text, the expected start of the only diagnostic)
    let cases: &[(&str, &str)] = &[
        ("[gates]\nfreeze = \"fri\"\n", "plan.toml:56:11: error: wrong shape for `freeze` in [gates]: expected an array of tables ([[gates.freeze]]), found a string (hint: write [[gates.freeze]]"),
        ("[gates]\nfreeze = [\"fri\"]\n", "plan.toml:56:12: error: wrong shape for an entry of `freeze` in [gates]: expected a table, found a string"),
        ("[gates]\ncustom = [\"true\"]\n", "plan.toml:56:12: error: wrong shape for an entry of `custom` in [gates]: expected a table, found a string"),
        ("[gates]\ncustom = 1\n", "plan.toml:56:10: error: wrong shape for `custom` in [gates]: expected an array of tables ([[gates.custom]]), found an integer"),
        ("[[gates.backup]]\nfile = \"x\"\n", "plan.toml:55:1: error: wrong shape for [gates.backup]: expected one table, found an array of tables (hint: write [gates.backup] (a single table, single brackets)"),
        ("[[gates.config]]\nmatrix = \"deprecations.toml\"\n", "plan.toml:55:1: error: wrong shape for [gates.config]: expected one table, found an array of tables"),
        ("[gates]\nsignature = \"RWQ\"\n", "plan.toml:56:14: error: wrong shape for [gates.signature]: expected one table, found a string"),
        ("[gates]\nmigrations = [\"m\"]\n", "plan.toml:56:14: error: wrong shape for [gates.migrations]: expected one table, found an array"),
        ("[gates.config]\nmatrix = \"deprecations.toml\"\nenv = \"DB_PASS\"\n", "plan.toml:57:8: error: wrong type for `env`: expected an array of strings, found string"),
        ("[gates.config]\nmatrix = \"deprecations.toml\"\nenv = [\"A\"]\nenv_clear = \"A\"\n", "plan.toml:58:14: error: wrong type for `env_clear`: expected an array of strings, found string"),
        ("[gates.config]\nmatrix = \"deprecations.toml\"\nenv = [\"LOG_LEVEL\"]\nenv_clear = [\"LOGLEVEL\"]\n", "plan.toml:58:15: error: `LOGLEVEL` is in env_clear but not in env (hint: env_clear only marks names of `env` as safe to record in clear: add \"LOGLEVEL\" to env, or remove it here)"),
        ("[gates.config]\nmatrix = \"single.toml\"\n", "plan.toml:56:11: error: unreadable deprecation matrix: "),
        ("[gates.config]\nmatrix = \"float.toml\"\n", "plan.toml:56:11: error: unreadable deprecation matrix: "),
    ];
    for (gates, want) in cases {
        let (_, good) = setup();
        let src = format!("{good}\n{gates}");
        let out = diagnose(dir.path(), &src);
        assert!(out.starts_with(want), "{gates}\nwant: {want}\ngot:  {out}");
        assert_eq!(out.lines().count(), 1, "one diagnostic for {gates}: {out}");
    }
    // the matrix file's own shape errors name its line and column
    let (_, good) = setup();
    let out = diagnose(
        dir.path(),
        &format!("{good}\n[gates.config]\nmatrix = \"single.toml\"\n"),
    );
    assert!(
        out.contains("single.toml:1:1: `key` is a table, not an array of tables: write [[key]] (an array of tables)"),
        "{out}"
    );
    let out = diagnose(
        dir.path(),
        &format!("{good}\n[gates.config]\nmatrix = \"float.toml\"\n"),
    );
    assert!(
        out.contains("float.toml:3:14: `removed_in` is a float, expected a string"),
        "{out}"
    );
    // a secret-looking name in env_clear is a warning, not silence
    let (_, good) = setup();
    let src = format!("{good}\n{config}env = [\"API_TOKEN\"]\nenv_clear = [\"API_TOKEN\"]\n");
    match glidepath::plan::parse(std::path::Path::new("plan.toml"), &src, dir.path()) {
        Ok((_, warnings)) => {
            let w = warnings.short();
            assert!(
                w.contains("plan.toml:58:15: warning: `API_TOKEN` looks like a secret"),
                "{w}"
            );
        }
        Err(e) => panic!("a warning only: {e}"),
    }
}

/// The snapshot of `[gates.config] env` journals a keyed fingerprint of
/// each value (stable across runs, changed when the value changes) and the
/// value itself only for the names in `env_clear`; none of the secret
/// values reaches the journal file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn env_values_are_fingerprinted_never_journaled_in_clear() {
    let env = Env::start(2).await;
    let knobs = DemoPlan::quick("2s", 5);
    std::fs::write(env.path().join("deprecations.toml"), "").unwrap();
    let gates = "\n[gates.config]\nmatrix = \"deprecations.toml\"\nenv = [\"DB_PASS\", \"DATABASE_URL\", \"SENTRY_DSN\", \"APP_SESSION_COOKIE\", \"LOG_LEVEL\", \"NOT_SET_HERE\"]\nenv_clear = [\"LOG_LEVEL\"]\n";
    let plan_for = |rel: &glidepath::plan::Release| {
        let p = env.plan(rel, &knobs);
        let text = std::fs::read_to_string(&p).unwrap() + gates;
        std::fs::write(&p, text).unwrap();
        p
    };
    let state = env.path().join("state");
    let secrets = [
        ("DB_PASS", "pw-4417"),
        ("DATABASE_URL", "postgres://app:pw-9921@db:5432/app"),
        ("SENTRY_DSN", "https://k3y-5531@o1.ingest.example/7"),
        ("APP_SESSION_COOKIE", "c00kie-8812"),
    ];
    let run = |plan: &std::path::Path, db_pass: &str| {
        let mut c = env.cmd(&["run", plan.to_str().unwrap()]);
        c.env("XDG_STATE_HOME", &state)
            .env("LOG_LEVEL", "debug")
            .env_remove("NOT_SET_HERE");
        for (k, v) in secrets {
            c.env(k, if k == "DB_PASS" { db_pass } else { v });
        }
        let out = c.output().unwrap();
        assert_eq!(code(&out), 0, "{}{}", stdout(&out), stderr(&out));
        let run = env.latest_run();
        env.events(&run)
            .into_iter()
            .find_map(|e| match e {
                Event::Snapshot { env, .. } => Some(env),
                _ => None,
            })
            .expect("a snapshot is journaled")
    };
    let first = run(&plan_for(&env.v2), "pw-4417");
    let names: Vec<&str> = first.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "DB_PASS",
            "DATABASE_URL",
            "SENTRY_DSN",
            "APP_SESSION_COOKIE",
            "LOG_LEVEL",
            "NOT_SET_HERE"
        ]
    );
    for (n, v) in &first[..4] {
        assert!(
            v.starts_with("hmac-sha256:") && v.len() == "hmac-sha256:".len() + 8 + 1 + 64,
            "{n} = {v}"
        );
    }
    assert_eq!(first[4].1, "debug", "env_clear names are recorded in clear");
    assert_eq!(first[5].1, "<unset>");
    // the key lives in the user's state directory, private
    use std::os::unix::fs::PermissionsExt;
    let key = state.join("glidepath/fingerprint.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    // the next release, same values but DB_PASS: only DB_PASS's fingerprint moves
    let v4 = env.release(Behaviour {
        version: "4".into(),
        error_rate: 0.0,
        latency_ms: 10.0,
        leak_after_s: None,
    });
    let second = run(&plan_for(&v4), "pw-4418");
    assert_ne!(second[0], first[0], "a changed value shows");
    assert_eq!(
        second[1..],
        first[1..],
        "unchanged values keep their fingerprint"
    );

    // no secret value anywhere in the journal file (nor in its WAL)
    let mut seen = 0;
    for f in std::fs::read_dir(state.join("glidepath")).unwrap() {
        let p = f.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if !name.starts_with("journal.db") {
            continue;
        }
        seen += 1;
        let bytes = std::fs::read(&p).unwrap();
        for v in secrets
            .iter()
            .map(|x| x.1)
            .chain(["pw-4418", "pw-4417", "pw-9921", "k3y-5531"])
        {
            assert!(
                !bytes.windows(v.len()).any(|w| w == v.as_bytes()),
                "`{v}` is in {name}"
            );
        }
    }
    assert!(seen > 0, "the journal's files were read");
}
