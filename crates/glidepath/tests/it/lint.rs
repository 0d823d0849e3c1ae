//! The migration-safety corpus: each case with its expected verdict.

use glidepath::lint::lint_sql;

const LT: &str = "SET lock_timeout = '2s';\n";

/// (name, file name, sql, rules that must fail, rules that must pass)
/// (name, file name, sql, rules that must fail, rules that must pass)
type Case = (
    &'static str,
    &'static str,
    String,
    Vec<&'static str>,
    Vec<&'static str>,
);

fn corpus() -> Vec<Case> {
    let c = |sql: &str| format!("{LT}{sql}\n");
    vec![
        // backward-incompatible while old and new binaries share the schema
        ("drop column", "m.sql", c("ALTER TABLE users DROP COLUMN nickname;"), vec!["ban-drop-column"], vec![]),
        ("drop table", "m.sql", c("DROP TABLE sessions;"), vec!["ban-drop-table"], vec![]),
        ("rename column", "m.sql", c("ALTER TABLE users RENAME COLUMN name TO full_name;"), vec!["renaming-column"], vec![]),
        ("rename table", "m.sql", c("ALTER TABLE users RENAME TO accounts;"), vec!["renaming-table"], vec![]),
        ("alter column type", "m.sql", c("ALTER TABLE users ALTER COLUMN age TYPE bigint;"), vec!["changing-column-type"], vec![]),
        ("add not null without default", "m.sql", c("ALTER TABLE users ADD COLUMN tenant_id bigint NOT NULL;"), vec!["adding-required-field"], vec![]),
        ("set not null", "m.sql", c("ALTER TABLE users ALTER COLUMN email SET NOT NULL;"), vec!["adding-not-nullable-field"], vec![]),
        ("drop not null", "m.sql", c("ALTER TABLE users ALTER COLUMN email DROP NOT NULL;"), vec!["ban-drop-not-null"], vec![]),
        ("drop default", "m.sql", c("ALTER TABLE users ALTER COLUMN status DROP DEFAULT;"), vec!["ban-drop-default"], vec![]),
        ("drop view", "m.sql", c("DROP VIEW active_users;"), vec!["ban-drop-view"], vec![]),
        ("drop function", "m.sql", c("DROP FUNCTION score(int);"), vec!["ban-drop-function"], vec![]),
        ("drop type", "m.sql", c("DROP TYPE mood;"), vec!["ban-drop-type"], vec![]),
        ("truncate cascade", "m.sql", c("TRUNCATE orders CASCADE;"), vec!["ban-truncate-cascade"], vec![]),
        ("drop schema", "m.sql", c("DROP SCHEMA reporting;"), vec!["ban-drop-schema"], vec![]),
        ("drop sequence", "m.sql", c("DROP SEQUENCE order_seq;"), vec!["ban-drop-sequence"], vec![]),
        // lock risks
        ("index without concurrently", "m.sql", c("CREATE INDEX idx_users_email ON users (email);"), vec!["require-concurrent-index-creation"], vec![]),
        ("drop index without concurrently", "m.sql", c("DROP INDEX idx_users_email;"), vec!["require-concurrent-index-deletion"], vec![]),
        ("check constraint validated under lock", "m.sql", c("ALTER TABLE users ADD CONSTRAINT age_pos CHECK (age > 0);"), vec!["constraint-missing-not-valid"], vec![]),
        ("foreign key validated under lock", "m.sql", c("ALTER TABLE orders ADD CONSTRAINT fk_user FOREIGN KEY (user_id) REFERENCES users (id);"), vec!["adding-foreign-key-constraint", "constraint-missing-not-valid"], vec![]),
        ("volatile default rewrites the table", "m.sql", c("ALTER TABLE users ADD COLUMN token uuid DEFAULT gen_random_uuid();"), vec!["adding-field-with-default"], vec![]),
        ("unique constraint builds an index under lock", "m.sql", c("ALTER TABLE users ADD CONSTRAINT email_uniq UNIQUE (email);"), vec!["constraint-missing-not-valid", "disallowed-unique-constraint"], vec![]),
        ("missing lock_timeout", "m.sql", "ALTER TABLE users ADD COLUMN note text;\n".into(), vec!["require-lock-timeout"], vec![]),
        ("concurrent index inside a transaction", "m.sql", c("BEGIN;\nCREATE INDEX CONCURRENTLY idx_a ON users (a);\nCOMMIT;"), vec!["ban-concurrent-index-creation-in-transaction"], vec![]),
        ("serial primary key", "m.sql", c("ALTER TABLE events ADD COLUMN id serial PRIMARY KEY;"), vec!["adding-serial-primary-key-field"], vec![]),
        // strong locks, table rewrites and data loss that squawk passes as clean
        ("lock table access exclusive", "m.sql", c("BEGIN;\nLOCK TABLE users IN ACCESS EXCLUSIVE MODE;\nCOMMIT;"), vec!["ban-strong-table-lock"], vec![]),
        ("lock table, default mode", "m.sql", c("BEGIN;\nLOCK users;\nCOMMIT;"), vec!["ban-strong-table-lock"], vec![]),
        ("lock table share row exclusive", "m.sql", c("BEGIN;\nLOCK TABLE users IN SHARE ROW EXCLUSIVE MODE;\nCOMMIT;"), vec!["ban-strong-table-lock"], vec![]),
        ("lock table exclusive", "m.sql", c("BEGIN;\nLOCK TABLE users IN EXCLUSIVE MODE;\nCOMMIT;"), vec!["ban-strong-table-lock"], vec![]),
        ("lock table share", "m.sql", c("BEGIN;\nLOCK TABLE users IN SHARE MODE;\nCOMMIT;"), vec!["ban-strong-table-lock"], vec![]),
        ("vacuum full", "m.sql", c("VACUUM FULL users;"), vec!["ban-vacuum-full"], vec![]),
        ("vacuum (full)", "m.sql", c("VACUUM (FULL, ANALYZE) users;"), vec!["ban-vacuum-full"], vec![]),
        ("cluster", "m.sql", c("CLUSTER users USING users_pkey;"), vec!["ban-cluster"], vec![]),
        ("plain truncate", "m.sql", c("TRUNCATE sessions;"), vec!["ban-truncate"], vec![]),
        ("truncate table restrict", "m.sql", c("TRUNCATE TABLE sessions RESTRICT;"), vec!["ban-truncate"], vec![]),
        ("refresh materialized view", "m.sql", c("REFRESH MATERIALIZED VIEW daily_totals;"), vec!["require-concurrent-refresh"], vec![]),
        // DDL inside DO blocks is checked like the migration's own; what cannot be checked is a finding
        ("DDL inside a DO block", "m.sql", c("DO $$\nBEGIN\n  IF NOT EXISTS (SELECT 1 FROM pg_attribute WHERE attname = 'x') THEN\n    ALTER TABLE users DROP COLUMN nickname;\n  END IF;\nEND\n$$;"), vec!["ban-drop-column"], vec![]),
        ("EXECUTE of a literal in a DO block", "m.sql", c("DO $$\nBEGIN\n  EXECUTE 'LOCK TABLE users IN ACCESS EXCLUSIVE MODE';\n  EXECUTE 'CREATE INDEX idx_a ON users (a)';\nEND\n$$;"), vec!["ban-strong-table-lock", "require-concurrent-index-creation"], vec![]),
        ("EXECUTE of a computed string in a DO block", "m.sql", c("DO $$\nDECLARE t text := 'users';\nBEGIN\n  EXECUTE format('ALTER TABLE %I DROP COLUMN nickname', t);\nEND\n$$;"), vec!["unverifiable-dynamic-sql"], vec![]),
        ("DO block in another language", "m.sql", c("DO LANGUAGE plpython3u $$ plpy.execute('DROP TABLE users') $$;"), vec!["unverifiable-dynamic-sql"], vec![]),
        ("DO block with DDL and no lock_timeout", "m.sql", "DO $$ BEGIN ALTER TABLE users ADD COLUMN note text; END $$;\n".into(), vec!["require-lock-timeout"], vec![]),
        // a lock_timeout of 0 disables the timeout
        ("lock_timeout = 0", "m.sql", "SET lock_timeout = 0;\nALTER TABLE users ADD COLUMN note text;\n".into(), vec!["require-lock-timeout"], vec![]),
        ("lock_timeout = '0'", "m.sql", "SET lock_timeout = '0';\nALTER TABLE users ADD COLUMN note text;\n".into(), vec!["require-lock-timeout"], vec![]),
        ("lock_timeout TO '0ms'", "m.sql", "SET lock_timeout TO '0ms';\nALTER TABLE users ADD COLUMN note text;\n".into(), vec!["require-lock-timeout"], vec![]),
        ("lock_timeout = '0s'", "m.sql", "SET LOCAL lock_timeout = '0s';\nALTER TABLE users ADD COLUMN note text;\n".into(), vec!["require-lock-timeout"], vec![]),
        ("lock_timeout back to 0 before the second DDL", "m.sql", c("ALTER TABLE users ADD COLUMN note text;\nSET lock_timeout = 0;\nALTER TABLE users ADD COLUMN memo text;"), vec!["require-lock-timeout"], vec![]),
        ("lock_timeout reset to the server default", "m.sql", c("RESET lock_timeout;\nALTER TABLE users ADD COLUMN note text;"), vec!["require-lock-timeout"], vec![]),
        // the safe alternatives lint clean
        ("lock table in a mode that lets traffic through", "m.sql", c("BEGIN;\nLOCK TABLE users IN ROW EXCLUSIVE MODE;\nCOMMIT;"), vec![], vec![]),
        ("plain vacuum", "m.sql", c("VACUUM (ANALYZE) users;"), vec![], vec![]),
        ("vacuum (full false)", "m.sql", c("VACUUM (FULL false) users;"), vec![], vec![]),
        ("delete in batches instead of truncate", "m.sql", c("DELETE FROM sessions WHERE id IN (SELECT id FROM sessions LIMIT 1000);"), vec![], vec![]),
        ("refresh concurrently", "m.sql", c("REFRESH MATERIALIZED VIEW CONCURRENTLY daily_totals;"), vec![], vec![]),
        ("DO block with safe DDL and a lock_timeout", "m.sql", c("DO $$\nBEGIN\n  ALTER TABLE users ADD COLUMN note text;\n  EXECUTE 'ALTER TABLE users ADD COLUMN memo text';\nEND\n$$;"), vec![], vec![]),
        ("DO block with DML only needs no lock_timeout", "m.sql", "DO $$ BEGIN UPDATE users SET status = 'active' WHERE status IS NULL; END $$;\n".into(), vec![], vec![]),
        ("a non-zero lock_timeout", "m.sql", "SET lock_timeout = '50ms';\nALTER TABLE users ADD COLUMN note text;\n".into(), vec![], vec![]),
        ("a numeric lock_timeout in milliseconds", "m.sql", "SET lock_timeout = 2000;\nALTER TABLE users ADD COLUMN note text;\n".into(), vec![], vec![]),
        ("suppressed dynamic SQL, with a reason", "m.sql", c("-- glidepath-ignore unverifiable-dynamic-sql: reviewed, adds a nullable column per tenant table\nDO $$ BEGIN EXECUTE format('ALTER TABLE %I ADD COLUMN note text', 't1'); END $$;"), vec![], vec!["unverifiable-dynamic-sql"]),
        ("index concurrently", "m.sql", c("CREATE INDEX CONCURRENTLY idx_users_email ON users (email);"), vec![], vec![]),
        ("drop index concurrently", "m.sql", c("DROP INDEX CONCURRENTLY idx_users_email;"), vec![], vec![]),
        ("nullable column", "m.sql", c("ALTER TABLE users ADD COLUMN tenant_id bigint;"), vec![], vec![]),
        ("constant default", "m.sql", c("ALTER TABLE users ADD COLUMN status text DEFAULT 'active';"), vec![], vec![]),
        ("check NOT VALID then VALIDATE", "m.sql", c("ALTER TABLE users ADD CONSTRAINT age_pos CHECK (age > 0) NOT VALID;\nALTER TABLE users VALIDATE CONSTRAINT age_pos;"), vec![], vec![]),
        ("foreign key NOT VALID", "m.sql", c("ALTER TABLE orders ADD CONSTRAINT fk_user FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;"), vec![], vec![]),
        ("unique index concurrently, constraint using it", "m.sql", c("CREATE UNIQUE INDEX CONCURRENTLY email_idx ON users (email);\nALTER TABLE users ADD CONSTRAINT email_uniq UNIQUE USING INDEX email_idx;"), vec![], vec![]),
        // expand/contract: the contract step passes in the post phase
        ("contract: drop column in a .post.sql", "0042_drop_nickname.post.sql", c("ALTER TABLE users DROP COLUMN nickname;"), vec![], vec!["ban-drop-column"]),
        ("contract: drop not null marked post", "m.sql", format!("-- glidepath: post\n{LT}ALTER TABLE users ALTER COLUMN email DROP NOT NULL;\n"), vec![], vec!["ban-drop-not-null"]),
        ("contract: drop table marked post", "m.sql", format!("-- glidepath: contract\n{LT}DROP TABLE legacy_sessions;\n"), vec![], vec!["ban-drop-table"]),
        ("expand: add nullable column in the rolling phase", "0041_add_full_name.sql", c("ALTER TABLE users ADD COLUMN full_name text;"), vec![], vec![]),
        ("a post phase does not excuse a rename", "m.post.sql", c("ALTER TABLE users RENAME COLUMN name TO full_name;"), vec!["renaming-column"], vec![]),
        // suppressions need a reason
        ("suppressed with a reason", "m.sql", c("-- glidepath-ignore ban-drop-column: unused since 1.0.8, checked in query logs\nALTER TABLE users DROP COLUMN nickname;"), vec![], vec!["ban-drop-column"]),
    ]
}

#[test]
fn migration_corpus_verdicts() {
    let mut failures = Vec::new();
    let cases = corpus();
    assert!(cases.len() >= 30);
    for (name, file, sql, fail, pass) in &cases {
        let r = lint_sql(file, sql);
        assert!(r.syntax_errors.is_empty(), "{name}: {:?}", r.syntax_errors);
        let mut failing: Vec<&str> = r
            .findings
            .iter()
            .filter(|f| f.fails())
            .map(|f| f.rule.as_str())
            .collect();
        let mut passing: Vec<&str> = r
            .findings
            .iter()
            .filter(|f| !f.fails())
            .map(|f| f.rule.as_str())
            .collect();
        failing.sort();
        failing.dedup();
        passing.sort();
        if failing != *fail || passing != *pass || (fail.is_empty() == r.failed()) {
            failures.push(format!(
                "{name}: failing {failing:?} (want {fail:?}), passing {passing:?} (want {pass:?})"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_corpus_reads_as_a_report() {
    let mut all = String::new();
    for (name, file, sql, ..) in corpus() {
        all.push_str(&format!(
            "## {name}\n{}",
            glidepath::lint::render_text(&[lint_sql(file, &sql)])
        ));
    }
    insta::assert_snapshot!("lint_corpus", all);
}

#[test]
fn suppression_without_reason_and_syntax_errors_are_reported_with_lines() {
    let r = lint_sql(
        "m.sql",
        &format!(
            "{LT}-- glidepath-ignore ban-drop-column\nALTER TABLE users DROP COLUMN nickname;\n"
        ),
    );
    assert!(r.failed());
    assert_eq!(r.problems, vec![(2, "a glidepath-ignore comment needs a reason: `-- glidepath-ignore RULE: why this is safe`".to_string())]);
    let r = lint_sql("m.sql", "SELECT 1;\n\nCREATE TABLE t (id int\n");
    assert_eq!(r.syntax_errors.len(), 1);
    assert_eq!(r.syntax_errors[0].0, 3, "{:?}", r.syntax_errors);
}

/// Pathological nesting is refused before the (recursive) parser sees it:
/// a syntax error naming the place, never a stack overflow. This runs on
/// the test's own thread, whose stack is small (2 MiB).
#[test]
fn deep_nesting_is_a_syntax_error_not_a_stack_overflow() {
    let n = 16_000;
    let cases = [
        (
            "parentheses",
            format!("SELECT {}1{};\n", "(".repeat(n), ")".repeat(n)),
        ),
        (
            "brackets",
            format!("SELECT ARRAY{}1{};\n", "[".repeat(n), "]".repeat(n)),
        ),
        ("NOT chain", format!("SELECT {}true;\n", "NOT ".repeat(n))),
        ("minus chain", format!("SELECT {}1;\n", "- ".repeat(n))),
        (
            "CASE chain",
            format!(
                "SELECT {}1{};\n",
                "CASE WHEN true THEN ".repeat(n),
                " END".repeat(n)
            ),
        ),
        (
            "DO blocks",
            format!(
                "{LT}DO $$ {}NULL;{} $$;\n",
                "BEGIN ".repeat(n),
                " END;".repeat(n)
            ),
        ),
        (
            "DO with IFs",
            format!(
                "{LT}DO $$ BEGIN {}NULL;{} END $$;\n",
                "IF true THEN ".repeat(n),
                " END IF;".repeat(n)
            ),
        ),
        (
            "EXECUTE of nested parentheses",
            format!(
                "{LT}DO $$ BEGIN EXECUTE 'SELECT {}1{}'; END $$;\n",
                "(".repeat(n),
                ")".repeat(n)
            ),
        ),
    ];
    for (name, sql) in &cases {
        let r = lint_sql("deep.sql", sql);
        assert!(
            r.invalid()
                && r.syntax_errors.len() == 1
                && r.syntax_errors[0]
                    .2
                    .contains("nests deeper than 1000 levels"),
            "{name}: {:?}",
            r.syntax_errors
        );
    }
    // a deep but reasonable expression still lints
    let r = lint_sql(
        "ok.sql",
        &format!("{LT}SELECT {}1{};\n", "(".repeat(200), ")".repeat(200)),
    );
    assert!(!r.failed(), "{r:?}");
}

/// A directory with a 32 KB file of nested parentheses and a file that is
/// not UTF-8: each is reported by name with a clear error, the others are
/// still linted and reported, and the exit code is 2 (invalid input).
#[test]
fn lint_reports_each_bad_file_and_lints_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, bytes: &[u8]| std::fs::write(dir.path().join(name), bytes).unwrap();
    w(
        "001_ok.sql",
        format!("{LT}CREATE INDEX CONCURRENTLY i ON t (a);\n").as_bytes(),
    );
    let deep = format!("SELECT {}1{};\n", "(".repeat(16_000), ")".repeat(16_000));
    assert!(deep.len() >= 32_000);
    w("002_deep.sql", deep.as_bytes());
    w("003_latin1.sql", b"-- caf\xe9\nSELECT 1;\n");
    w(
        "004_drop.sql",
        format!("{LT}ALTER TABLE users DROP COLUMN nickname;\n").as_bytes(),
    );
    let run = |args: &[&str]| {
        std::process::Command::new(crate::harness::BIN)
            .args(args)
            .output()
            .unwrap()
    };
    let d = dir.path().to_str().unwrap();
    let out = run(&["lint", d]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("002_deep.sql:1:") && text.contains("nests deeper than 1000 levels"),
        "{text}"
    );
    assert!(
        text.contains("003_latin1.sql: error: not valid UTF-8 at line 1, column 7 (byte 6)"),
        "{text}"
    );
    assert!(
        text.contains("004_drop.sql:2:19: error: backward-incompatible [ban-drop-column]"),
        "{text}"
    );
    assert!(
        text.contains("4 file(s) checked, 3 failing: 1 with 1 failing finding(s), 2 that could not be checked (unreadable or a syntax error)"),
        "{text}"
    );

    let out = run(&["lint", d, "--output", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["schema_version"], 1);
    let v = &doc["files"];
    assert_eq!(v.as_array().unwrap().len(), 4);
    assert!(v[0]["error"].is_null() && v[0]["findings"].as_array().unwrap().is_empty());
    assert!(
        v[2]["error"].as_str().unwrap().contains("not valid UTF-8"),
        "{v}"
    );
    assert_eq!(v[3]["findings"][0]["rule"], "ban-drop-column");

    let out = run(&["lint", d, "--reporter", "github"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("003_latin1.sql,title=not checked::not valid UTF-8"),
        "{text}"
    );

    // a single bad file named on the command line: the same, not an I/O error without a name
    let out = run(&[
        "lint",
        &format!("{d}/003_latin1.sql"),
        &format!("{d}/001_ok.sql"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("003_latin1.sql: error: not valid UTF-8"));
}

#[test]
fn lint_command_exit_codes_and_reporters() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("001.sql"),
        format!("{LT}CREATE INDEX CONCURRENTLY i ON t (a);\n"),
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(crate::harness::BIN)
            .args(args)
            .output()
            .unwrap()
    };
    let d = dir.path().to_str().unwrap();
    assert_eq!(run(&["lint", d]).status.code(), Some(0));
    std::fs::write(
        dir.path().join("002.sql"),
        format!("{LT}ALTER TABLE users DROP COLUMN nickname;\n"),
    )
    .unwrap();
    let out = run(&["lint", d]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a failing finding is a refused gate"
    );
    let out = run(&["lint", d, "--reporter", "github"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("::error file=")
            && text
                .contains("002.sql,line=2,col=19,title=backward-incompatible: ban-drop-column::"),
        "{text}"
    );
    let out = run(&["lint", d, "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["files"][1]["findings"][0]["class"],
        "backward_incompatible"
    );
    std::fs::write(dir.path().join("003.sql"), "CREATE TABLE (\n").unwrap();
    assert_eq!(
        run(&["lint", d]).status.code(),
        Some(2),
        "a syntax error is invalid input"
    );
    // the summary's counts add up: every failing file counted once, by why
    let out = run(&["lint", d]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.ends_with("3 file(s) checked, 2 failing: 1 with 1 failing finding(s), 1 that could not be checked (unreadable or a syntax error)\n"),
        "{text}"
    );
    // two outputs asked for: refused, not one of them silently chosen
    for r in ["github", "text"] {
        let out = run(&["lint", d, "--output", "json", "--reporter", r]);
        assert_eq!(out.status.code(), Some(2), "--reporter {r}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("--output json and --reporter {r}")),
            "{err}"
        );
    }
    let out = run(&["lint", d, "--output", "json", "--reporter", "json"]);
    assert!(serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok());
}

/// A typo in a keyword is pointed at, not the token where the parser gave
/// up, and the message names the text it found rather than a token kind.
#[test]
fn a_syntax_error_points_at_the_typo() {
    let r = lint_sql("001_add.sql", "ALTER TABLE users ADD COLUMM email TEXT;\n");
    assert_eq!(
        r.syntax_errors,
        [(
            1,
            23,
            "`COLUMM` is not a keyword: did you mean `COLUMN`? (the parser stopped at 1:36: expected command, found `TEXT`)".to_string()
        )]
    );
    let text = glidepath::lint::render_text(&[r]);
    assert!(
        text.starts_with("001_add.sql:1:23: error: syntax error: `COLUMM`"),
        "{text}"
    );
    // a statement later in the file: the typo's own line and column
    let r = lint_sql(
        "002.sql",
        "SET lock_timeout = '2s';\nCREATE INDX CONCURRENTLY i ON t (a);\n",
    );
    assert_eq!(r.syntax_errors.len(), 1, "{:?}", r.syntax_errors);
    let (l, c, m) = &r.syntax_errors[0];
    assert_eq!((*l, *c), (2, 8), "{m}");
    assert!(m.contains("did you mean `INDEX`?"), "{m}");
}

/// Artifact signatures: good, tampered, unknown key, and a directory.
#[test]
fn minisign_signature_gate() {
    use glidepath::gates::{verify_signature, Verdict};
    let dir = tempfile::tempdir().unwrap();
    let art = dir.path().join("api-1.0.10");
    std::fs::write(&art, "the reviewed binary").unwrap();
    let sign = |kp: &minisign::KeyPair, data: &[u8], out: &std::path::Path| {
        let sig = minisign::sign(
            Some(&kp.pk),
            &kp.sk,
            std::io::Cursor::new(data),
            Some("api 1.0.10"),
            Some("signature"),
        )
        .unwrap();
        std::fs::write(out, sig.into_string()).unwrap();
    };
    let trusted = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let stranger = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let keys = vec![trusted.pk.to_base64()];
    let sig = dir.path().join("api-1.0.10.minisig");
    sign(&trusted, b"the reviewed binary", &sig);
    let r = verify_signature(&art, &sig, &keys, glidepath::plan::dir_manifest);
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.reason);
    assert!(r.reason.contains("api 1.0.10"), "{}", r.reason);

    std::fs::write(&art, "the reviewed binary, plus a backdoor").unwrap();
    let r = verify_signature(&art, &sig, &keys, glidepath::plan::dir_manifest);
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(
        r.reason.contains("does not match the artifact"),
        "{}",
        r.reason
    );

    std::fs::write(&art, "the reviewed binary").unwrap();
    sign(&stranger, b"the reviewed binary", &sig);
    let r = verify_signature(&art, &sig, &keys, glidepath::plan::dir_manifest);
    assert_eq!(r.verdict, Verdict::Fail);
    let stranger_id = glidepath::gates::key_id(&stranger.pk.to_base64()).unwrap();
    assert!(
        r.reason
            .contains(&format!("signed by unknown key ID {stranger_id}")),
        "{}",
        r.reason
    );

    // a directory: the signature covers its manifest (hex-encoded paths)
    let d = dir.path().join("release");
    std::fs::create_dir_all(d.join("bin")).unwrap();
    std::fs::write(d.join("bin/api"), "x").unwrap();
    let manifest = glidepath::plan::dir_manifest(&d).unwrap();
    assert_eq!(
        manifest,
        format!(
            "{} d -\n{} f {}\n",
            hex("bin"),
            hex("bin/api"),
            glidepath::plan::sha256_hex(b"x")
        )
    );
    sign(
        &trusted,
        manifest.as_bytes(),
        &dir.path().join("release.minisig"),
    );
    assert_eq!(
        verify_signature(
            &d,
            &dir.path().join("release.minisig"),
            &keys,
            glidepath::plan::dir_manifest
        )
        .verdict,
        Verdict::Pass
    );
}

fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Tree A (`a`, `b`) and tree B (a directory named "a\n<sha(b)>  ." holding
/// `b`) printed the same `sha256sum` manifest: a signature over A verified B.
#[test]
fn a_signature_over_one_tree_does_not_verify_a_forged_one() {
    use glidepath::gates::{verify_signature, Verdict};
    use glidepath::plan::sha256_hex;
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("A");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("a"), "first").unwrap();
    std::fs::write(a.join("b"), "second").unwrap();
    let b = dir.path().join("B");
    let forged = b.join(format!("a\n{}  .", sha256_hex(b"second")));
    std::fs::create_dir_all(&forged).unwrap();
    std::fs::write(forged.join("b"), "first").unwrap();
    let kp = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
    let keys = vec![kp.pk.to_base64()];
    let sig = dir.path().join("A.minisig");
    let manifest = glidepath::plan::dir_manifest(&a).unwrap();
    let s = minisign::sign(
        Some(&kp.pk),
        &kp.sk,
        std::io::Cursor::new(manifest.as_bytes()),
        Some("tree A"),
        Some("signature"),
    )
    .unwrap();
    std::fs::write(&sig, s.into_string()).unwrap();
    let r = verify_signature(&a, &sig, &keys, glidepath::plan::dir_manifest);
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.reason);
    let r = verify_signature(&b, &sig, &keys, glidepath::plan::dir_manifest);
    assert_eq!(r.verdict, Verdict::Fail, "the forged tree B: {}", r.reason);
    assert_ne!(
        glidepath::plan::artifact_sha256(&a).unwrap(),
        glidepath::plan::artifact_sha256(&b).unwrap()
    );
}

/// The deprecation matrix against TOML, JSON, YAML and .env config files.
#[test]
fn config_deprecation_matrix() {
    use glidepath::gates::{check_config, config_keys, read_matrix, Verdict};
    let dir = tempfile::tempdir().unwrap();
    let w = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let matrix = w(
        "deprecations.toml",
        "[[key]]\nname = \"db.pool_size\"\ndeprecated_in = \"1.0.8\"\nremoved_in = \"1.0.10\"\nreplacement = \"database.pool.max\"\n\n[[key]]\nname = \"log.format\"\ndeprecated_in = \"1.0.9\"\nreplacement = \"logging.format\"\nnote = \"json is the default now\"\n\n[[key]]\nname = \"API_LEGACY_AUTH\"\ndeprecated_in = \"1.0.10\"\nremoved_in = \"1.1.0\"\n",
    );
    let m = read_matrix(&matrix).unwrap();
    assert_eq!(m.len(), 3);
    let toml = config_keys(&w(
        "config.toml",
        "[db]\npool_size = 10\n[log]\nformat = \"text\"\n",
    ))
    .unwrap();
    assert!(
        toml.contains(&"db.pool_size".to_string()) && toml.contains(&"log.format".to_string()),
        "{toml:?}"
    );
    let json = config_keys(&w("config.json", "{\"db\": {\"pool_size\": 10}}")).unwrap();
    assert!(json.contains(&"db.pool_size".to_string()));
    let yaml = config_keys(&w(
        "config.yaml",
        "db:\n  pool_size: 10\n  host: x\nlog:\n  format: text\n",
    ))
    .unwrap();
    assert_eq!(yaml, ["db", "db.pool_size", "db.host", "log", "log.format"]);
    let env = config_keys(&w(
        "app.env",
        "# comment\nexport API_LEGACY_AUTH=1\nAPI_MODE=fast\n",
    ))
    .unwrap();
    assert_eq!(env, ["API_LEGACY_AUTH", "API_MODE"]);

    // 1.0.10: pool_size removed (fail), log.format and API_LEGACY_AUTH deprecated
    let r = check_config(
        &m,
        "1.0.10",
        &[
            ("config.yaml".into(), yaml.clone()),
            ("app.env".into(), env.clone()),
        ],
    );
    assert_eq!(r.verdict, Verdict::Fail);
    assert!(
        r.reason.contains(
            "`db.pool_size` in config.yaml was removed in 1.0.10: use `database.pool.max`"
        ),
        "{}",
        r.reason
    );
    assert!(r.reason.contains("`log.format` in config.yaml is deprecated since 1.0.9: use `logging.format` (json is the default now)"), "{}", r.reason);
    // 1.0.9: only deprecations warn
    let r = check_config(&m, "1.0.9", &[("config.yaml".into(), yaml)]);
    assert_eq!(r.verdict, Verdict::Warn, "{}", r.reason);
    // nothing deprecated yet in 1.0.7
    let r = check_config(&m, "1.0.7", &[("app.env".into(), env)]);
    assert_eq!(r.verdict, Verdict::Pass, "{}", r.reason);
}

/// The migrations gate: a file that is not UTF-8, or nests too deep, fails
/// the gate naming that file (the other files are still checked), and the
/// gate on a deep file runs on a runtime worker thread without overflowing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_gate_names_each_bad_file() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/local");
    let dir = tempfile::tempdir().unwrap();
    let migrations = dir.path().join("migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::write(
        migrations.join("001_ok.sql"),
        format!("{LT}ALTER TABLE users ADD COLUMN note text;\n"),
    )
    .unwrap();
    std::fs::write(
        migrations.join("002_latin1.sql"),
        b"-- caf\xe9\nSELECT 1;\n",
    )
    .unwrap();
    std::fs::write(
        migrations.join("003_deep.sql"),
        format!("SELECT {}1{};\n", "(".repeat(16_000), ")".repeat(16_000)),
    )
    .unwrap();
    std::fs::write(
        migrations.join("004_drop.sql"),
        format!("{LT}ALTER TABLE users DROP COLUMN nickname;\n"),
    )
    .unwrap();
    let path = examples.join("plan.toml");
    let text = std::fs::read_to_string(&path).unwrap()
        + &format!("\n[gates.migrations]\ndir = \"{}\"\n", migrations.display());
    let (plan, report) = glidepath::plan::parse(&path, &text, &examples).unwrap();
    assert!(!report.has_errors(), "{}", report.render(false));
    let results = glidepath::gates::evaluate(
        &plan.gates,
        &glidepath::gates::Inputs::of(&plan),
        jiff::Timestamp::now(),
        None,
    )
    .await;
    let gate = results.iter().find(|r| r.gate == "migrations").unwrap();
    assert_eq!(gate.verdict, glidepath::gates::Verdict::Fail);
    assert!(
        gate.reason
            .contains("002_latin1.sql: not valid UTF-8 at line 1, column 7"),
        "{}",
        gate.reason
    );
    assert!(
        gate.reason
            .contains("003_deep.sql:1: syntax error: the file nests deeper than 1000 levels"),
        "{}",
        gate.reason
    );
    assert!(
        gate.reason.contains("004_drop.sql:2 ban-drop-column"),
        "{}",
        gate.reason
    );
}
