//! `[balancer]`, or `[[balancer]]` for several balancers per node: one
//! reader per kind (`haproxy`, `http`, `command`, `none`).

use super::reader::{did_you_mean, Reader};
use super::BalancerCfg;
use crate::template::{NODE_PLACEHOLDERS, PLACEHOLDERS};
use std::path::PathBuf;
use std::time::Duration;
use toml_span::value::{Table, ValueInner};
use toml_span::Span;

/// Every balancer of the plan (`nodes`: the fleet's node names, which
/// `servers` may map); `None` when the plan has no `[balancer]`.
pub(super) fn read(r: &mut Reader, root: &Table<'_>, nodes: &[&str]) -> Option<Vec<BalancerCfg>> {
    let Some(v) = root.get("balancer") else {
        r.missing_section(
            "missing [balancer] section",
            "add [balancer] with kind = \"haproxy\", \"http\", \"command\" or \"none\"",
        );
        return None;
    };
    let mut balancers = Vec::new();
    match v.as_ref() {
        ValueInner::Table(t) => balancers.extend(read_one(r, t, v.span, nodes)),
        ValueInner::Array(arr) if arr.is_empty() => r.err(
            v.span,
            "no balancer",
            "empty",
            Some("use [balancer] kind = \"none\" for nodes without a load balancer".into()),
        ),
        ValueInner::Array(arr) => {
            for item in arr {
                match item.as_table() {
                    Some(t) => balancers.extend(read_one(r, t, item.span, nodes)),
                    None => r.type_err(item, "balancer", "a table", "[[balancer]]"),
                }
            }
        }
        _ => r.type_err(
            v,
            "balancer",
            "a table ([balancer]) or an array of tables ([[balancer]])",
            "[balancer] section",
        ),
    }
    Some(balancers)
}

/// One balancer table.
fn read_one(r: &mut Reader, t: &Table<'_>, at: Span, nodes: &[&str]) -> Option<BalancerCfg> {
    let (kind, kspan) = r.req_str(t, at, "[balancer]", "kind", "\"haproxy\"")?;
    match kind.as_str() {
        "none" => {
            r.known_keys(t, "[balancer] (kind = \"none\")", &["kind"]);
            Some(BalancerCfg::None)
        }
        "http" => {
            r.known_keys(
                t,
                "[balancer] (kind = \"http\")",
                &["kind", "drain", "ready", "state", "timeout"],
            );
            let url = |r: &mut Reader, key: &str, ex: &str| {
                r.req_template(t, at, "[balancer]", key, ex, NODE_PLACEHOLDERS)
                    .map(|x| x.0)
            };
            let drain = url(r, "drain", "\"http://{address}/admin/drain\"");
            let ready = url(r, "ready", "\"http://{address}/admin/ready\"");
            let state = url(r, "state", "\"http://{address}/admin/state\"");
            let timeout = r.duration(t, "timeout", Some(Duration::from_secs(5)));
            Some(BalancerCfg::Http {
                drain: drain?,
                ready: ready?,
                state: state?,
                timeout: timeout?,
            })
        }
        "haproxy" => {
            r.known_keys(
                t,
                "[balancer] (kind = \"haproxy\")",
                &[
                    "kind", "socket", "address", "backend", "servers", "frontend", "timeout",
                ],
            );
            let socket = r.str(t, "socket", "\"/run/haproxy/admin.sock\"");
            let address = r.str(t, "address", "\"127.0.0.1:9999\"");
            if socket.is_some() == address.is_some() {
                let s = address.as_ref().map_or(at, |a| a.1);
                r.err(s, "a haproxy balancer needs exactly one of `socket` or `address`", "the runtime API endpoint", Some("socket = \"/run/haproxy/admin.sock\" (stats socket … level admin), or address = \"127.0.0.1:9999\" for a TCP stats socket".into()));
            }
            let backend = r
                .req_str(t, at, "[balancer]", "backend", "\"api_pool\"")
                .map(|x| x.0);
            let mut servers = std::collections::BTreeMap::new();
            if let Some((st, _)) = r.table(t, "servers") {
                for (k, v) in st.iter() {
                    if !nodes.is_empty() && !nodes.contains(&k.name.as_ref()) {
                        let hint = did_you_mean(&k.name, nodes.iter().copied())
                            .unwrap_or_else(|| format!("fleet nodes: {}", nodes.join(", ")));
                        r.err(
                            k.span,
                            format!("`servers` maps `{}`, which is not a fleet node", k.name),
                            "not in [fleet].nodes",
                            Some(hint),
                        );
                    }
                    match v.as_str() {
                        Some(sv) => {
                            servers.insert(k.name.to_string(), sv.to_string());
                        }
                        None => r.type_err(v, &k.name, "a server name", "\"srv1\""),
                    }
                }
            }
            let frontend = r
                .str(t, "frontend", "\"http://127.0.0.1:8080/health\"")
                .map(|x| x.0);
            let timeout = r.duration(t, "timeout", Some(Duration::from_secs(5)));
            Some(BalancerCfg::Haproxy {
                socket: socket.map(|s| PathBuf::from(s.0)),
                address: address.map(|a| a.0),
                backend: backend?,
                servers,
                frontend,
                timeout: timeout?,
            })
        }
        "command" => {
            r.known_keys(
                t,
                "[balancer] (kind = \"command\")",
                &["kind", "drain", "enable", "active", "check", "timeout"],
            );
            let cmd = |r: &mut Reader, key: &str, ex: &str, required: bool| {
                let v = if required {
                    r.req_template(t, at, "[balancer]", key, ex, PLACEHOLDERS)
                } else {
                    r.template_str(t, key, ex, PLACEHOLDERS)
                };
                v.map(|x| x.0)
            };
            let drain = cmd(r, "drain", "\"lbctl drain {node}\"", true);
            let enable = cmd(r, "enable", "\"lbctl enable {node}\"", true);
            let active = cmd(r, "active", "\"lbctl connections {node}\"", true);
            let check = cmd(r, "check", "\"lbctl is-up {node}\"", false);
            let timeout = r.duration(t, "timeout", Some(Duration::from_secs(30)));
            Some(BalancerCfg::Command {
                drain: drain?,
                enable: enable?,
                active: active?,
                check,
                timeout: timeout?,
            })
        }
        other => {
            r.err(
                kspan,
                format!("unknown balancer kind `{other}`"),
                "unknown kind",
                Some(
                    did_you_mean(other, ["haproxy", "http", "command", "none"]).unwrap_or_else(
                        || "kinds: \"haproxy\", \"http\", \"command\", \"none\"".into(),
                    ),
                ),
            );
            None
        }
    }
}
