//! Where the plan meets the gates (`plan → gates` is the one direction of
//! their dependency): the plan parser's [`Reader`] as the gates'
//! [`Reading`], and what a run hands the declared gates ([`Inputs::of`] a
//! plan) and the built-in ones ([`BuiltinInputs::of`] a plan).

use super::{Plan, Reader};
use crate::diag::Diag;
use crate::drivers::Target;
use crate::gates::builtin::BuiltinInputs;
use crate::gates::{Inputs, NodeVars, Reading};
use std::time::Duration;
use toml_span::value::Table;
use toml_span::Span;

impl Reading for Reader<'_> {
    fn push(&mut self, d: Diag) {
        self.diags.push(d);
    }
    fn known_keys(&mut self, t: &Table<'_>, section: &str, allowed: &[&str]) {
        Reader::known_keys(self, t, section, allowed)
    }
    fn missing(&mut self, at: Span, section: &str, key: &str, example: &str) {
        Reader::missing(self, at, section, key, example)
    }
    fn str(&mut self, t: &Table<'_>, key: &str, example: &str) -> Option<(String, Span)> {
        Reader::str(self, t, key, example)
    }
    fn req_str(
        &mut self,
        t: &Table<'_>,
        at: Span,
        section: &str,
        key: &str,
        example: &str,
    ) -> Option<(String, Span)> {
        Reader::req_str(self, t, at, section, key, example)
    }
    fn str_list(&mut self, t: &Table<'_>, key: &str, example: &str) -> Option<Vec<(String, Span)>> {
        Reader::str_list(self, t, key, example)
    }
    fn duration(
        &mut self,
        t: &Table<'_>,
        key: &str,
        default: Option<Duration>,
    ) -> Option<Duration> {
        Reader::duration(self, t, key, default)
    }
    fn template(&mut self, s: &str, span: Span, key: &str, allowed: &[&str]) {
        Reader::template(self, s, span, key, allowed)
    }
}

impl Inputs {
    /// What the declared gates need of a plan: its directory, the release,
    /// and each node's placeholders (the plan's own, plus `{install_dir}`).
    pub fn of(plan: &Plan) -> Inputs {
        Inputs {
            plan_dir: plan.dir.clone(),
            version: plan.release.version.clone(),
            artifact: plan.release.artifact.clone(),
            manifest: crate::artifact::dir_manifest,
            nodes: plan
                .nodes
                .iter()
                .map(|n| {
                    let dir = plan.install_dir(n).display().to_string();
                    let vars = plan.vars(n).with("install_dir", dir);
                    NodeVars {
                        name: n.name.clone(),
                        fill: Box::new(move |t: &str| vars.fill(t)),
                    }
                })
                .collect(),
            task_migrations: plan
                .tasks
                .iter()
                .flat_map(|t| match &t.action {
                    crate::config::TaskAction::Migrate { files, .. } => files
                        .iter()
                        .map(|f| (f.path.clone(), t.phase))
                        .collect::<Vec<_>>(),
                    _ => vec![],
                })
                .collect(),
        }
    }
}

impl BuiltinInputs {
    /// What the built-in gates need of a plan: the release and `[rollback]`
    /// artifacts, `[deploy] check`, the nodes (in name order) and how many
    /// balancers it declares.
    pub fn of(plan: &Plan) -> BuiltinInputs {
        let mut targets: Vec<Target> = plan
            .nodes
            .iter()
            .map(|n| Target {
                // `{version}` of a preflight command: the release to roll out
                release: plan.release.version.clone(),
                ..plan.target(n)
            })
            .collect();
        targets.sort_by(|a, b| a.name.cmp(&b.name));
        BuiltinInputs {
            release: plan.release.clone(),
            rollback: plan.rollback_release.clone(),
            check: plan.deploy.check.clone(),
            targets,
            balancers: plan
                .balancers
                .iter()
                .filter(|b| !matches!(b, crate::config::BalancerCfg::None))
                .count(),
        }
    }
}
