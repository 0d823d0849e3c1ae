//! `[deploy]`: where releases go and how (`kind = "local"`, `"ssh"`,
//! `"command"`), the restart command, the preflight check and the
//! timeouts.

use super::reader::{did_you_mean, Keys, Reader};
use super::{DeployCfg, DeployKind, Node};
use crate::template::{
    DEPLOY_PLACEHOLDERS, INSTALL_DIR_PLACEHOLDERS, NODE_PLACEHOLDERS, PLACEHOLDERS,
};
use std::path::Path;
use std::time::Duration;
use toml_span::value::Table;
use toml_span::Span;

/// The keys of every kind, then each kind's own.
const KEYS: &[&str] = &[
    "kind",
    "install_dir",
    "keep_releases",
    "restart",
    "restart_timeout",
    "command_timeout",
    "check",
];
const SSH_KEYS: &[&str] = &["host", "user", "port", "identity_file", "ssh_options"];
const COMMAND_KEYS: &[&str] = &["current", "stage", "switch"];

pub(super) fn read(
    r: &mut Reader,
    root: &Table<'_>,
    nodes: &[Node],
    dir: &Path,
) -> Option<DeployCfg> {
    let (t, at) = r.required_section(
        root,
        "deploy",
        Keys::ByReader,
        "add [deploy] with kind = \"local\" (or \"ssh\", \"command\"), install_dir and restart",
    )?;
    let kind_s = r.str(t, "kind", "\"local\"");
    let kind_name = kind_s
        .as_ref()
        .map_or("local", |k| k.0.as_str())
        .to_string();
    let mut allowed = KEYS.to_vec();
    match kind_name.as_str() {
        "ssh" => allowed.extend(SSH_KEYS),
        "command" => allowed.extend(COMMAND_KEYS),
        _ => {}
    }
    r.known_keys(t, &format!("[deploy] (kind = \"{kind_name}\")"), &allowed);
    let kind = match kind_name.as_str() {
        "local" => Some(DeployKind::Local),
        "ssh" => Some(ssh(r, t, dir)),
        "command" => command(r, t, at),
        other => {
            let span = kind_s.as_ref().map_or(at, |k| k.1);
            r.err(
                span,
                format!("unknown deploy kind `{other}`"),
                "unknown kind",
                Some(
                    did_you_mean(other, ["local", "ssh", "command"])
                        .unwrap_or_else(|| "kinds: \"local\", \"ssh\", \"command\"".into()),
                ),
            );
            None
        }
    };
    let dir_t = if matches!(kind, Some(DeployKind::Command { .. })) {
        r.str(t, "install_dir", "\"/opt/api\"")
            .or_else(|| Some((String::new(), at)))
    } else {
        r.req_str(t, at, "[deploy]", "install_dir", "\"/opt/api/{node}\"")
    };
    if let Some((d, s)) = &dir_t {
        let before = r.diags.len();
        r.template(d, *s, "install_dir", INSTALL_DIR_PLACEHOLDERS);
        let per_host = matches!(
            kind,
            Some(DeployKind::Ssh { .. }) | Some(DeployKind::Command { .. })
        );
        if r.diags.len() == before
            && !per_host
            && nodes.len() > 1
            && !d.contains("{node}")
            && !d.contains("{address}")
        {
            r.err(
                *s,
                "every node would share this install_dir",
                "no {node} or {address}",
                Some(
                    "the local deployer keeps releases per node: use e.g. \"/opt/api/{node}\""
                        .into(),
                ),
            );
        }
    }
    let restart = r.req_template(
        t,
        at,
        "[deploy]",
        "restart",
        "\"systemctl restart api\"",
        PLACEHOLDERS,
    );
    let check = r
        .template_str(t, "check", "\"systemctl cat api\"", PLACEHOLDERS)
        .map(|c| c.0);
    let keep = r
        .int(t, "keep_releases", 2, "3")
        .map(|x| x.0 as usize)
        .unwrap_or(3);
    let restart_timeout = r.duration(t, "restart_timeout", Some(Duration::from_secs(60)));
    let command_timeout = r.duration(t, "command_timeout", Some(Duration::from_secs(120)));
    let (Some(kind), Some((d, _)), Some((c, _)), Some(rt), Some(ct)) =
        (kind, dir_t, restart, restart_timeout, command_timeout)
    else {
        return None;
    };
    Some(DeployCfg {
        kind,
        install_dir: d,
        keep_releases: keep,
        restart: c,
        restart_timeout: rt,
        command_timeout: ct,
        check,
    })
}

/// `kind = "ssh"`: the system OpenSSH client.
fn ssh(r: &mut Reader, t: &Table<'_>, dir: &Path) -> DeployKind {
    let host = r
        .template_str(t, "host", "\"{host}\"", NODE_PLACEHOLDERS)
        .map(|h| h.0);
    let user = r.str(t, "user", "\"deploy\"").map(|x| x.0);
    let port = r.int(t, "port", 1, "22").and_then(|(p, sp_)| {
        if p > 65535 {
            r.err(
                sp_,
                format!("port {p} is out of range"),
                "1..65535",
                Some("leave it out to use 22 (or your ssh config's Port)".into()),
            );
            None
        } else {
            Some(p as u16)
        }
    });
    let identity_file = r
        .str(t, "identity_file", "\"~/.ssh/deploy_ed25519\"")
        .map(|x| dir.join(x.0));
    let options = r
        .str_list(
            t,
            "ssh_options",
            "[\"-o\", \"UserKnownHostsFile=/etc/glidepath/known_hosts\"]",
        )
        .map(|l| l.into_iter().map(|x| x.0).collect())
        .unwrap_or_default();
    DeployKind::Ssh {
        host: host.unwrap_or_else(|| "{host}".into()),
        user,
        port,
        identity_file,
        options,
    }
}

/// `kind = "command"`: a shell command template for every step.
fn command(r: &mut Reader, t: &Table<'_>, at: Span) -> Option<DeployKind> {
    let mut cmd = |key: &str, ex: &str| {
        r.req_template(t, at, "[deploy]", key, ex, DEPLOY_PLACEHOLDERS)
            .map(|x| x.0)
    };
    let current = cmd(
        "current",
        "\"incus exec {node} -- readlink /opt/api/current\"",
    );
    let stage = cmd(
        "stage",
        "\"incus file push {artifact} {node}/opt/api/releases/{version}/\"",
    );
    let switch = cmd(
        "switch",
        "\"incus exec {node} -- ln -sfn releases/{version} /opt/api/current\"",
    );
    Some(DeployKind::Command {
        current: current?,
        stage: stage?,
        switch: switch?,
    })
}
