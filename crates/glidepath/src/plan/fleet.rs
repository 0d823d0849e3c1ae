//! `[fleet]`: the fleet's name and its nodes (unique names and addresses).

use super::reader::{Keys, Reader};
use super::Node;
use crate::names::{check_address, check_node_name};
use toml_span::value::Table;

const KEYS: &[&str] = &["name", "nodes"];

/// What `[fleet]` says: its name (default: the plan file's name) and the
/// valid nodes.
#[derive(Debug, Default)]
pub(super) struct Fleet {
    pub name: Option<String>,
    pub nodes: Vec<Node>,
}

pub(super) fn read(r: &mut Reader, root: &Table<'_>) -> Option<Fleet> {
    let (t, at) = r.required_section(
        root,
        "fleet",
        Keys::Only(KEYS),
        "add [fleet] with nodes = [ { name = \"api-1\", address = \"10.0.0.11:8080\" } ]",
    )?;
    let mut fleet = Fleet {
        name: r.str(t, "name", "\"api\"").map(|n| n.0),
        nodes: Vec::new(),
    };
    let nodes = &mut fleet.nodes;
    match t.get("nodes") {
        None => r.missing(
            at,
            "[fleet]",
            "nodes",
            "[ { name = \"api-1\", address = \"10.0.0.11:8080\" } ]",
        ),
        Some(v) => match v.as_array() {
            None => r.type_err(
                v,
                "nodes",
                "an array of tables",
                "[ { name = \"api-1\", address = \"10.0.0.11:8080\" } ]",
            ),
            Some(arr) if arr.is_empty() => r.err(
                v.span,
                "the fleet has no nodes",
                "empty",
                Some(
                    "list at least one node: { name = \"api-1\", address = \"10.0.0.11:8080\" }"
                        .into(),
                ),
            ),
            Some(arr) => {
                for item in arr {
                    let Some(nt) = item.as_table() else {
                        r.type_err(
                            item,
                            "nodes",
                            "a table { name, address }",
                            "{ name = \"api-1\", address = \"10.0.0.11:8080\" }",
                        );
                        continue;
                    };
                    r.known_keys(nt, "a fleet node", &["name", "address"]);
                    let name = r.req_str(nt, item.span, "a fleet node", "name", "\"api-1\"");
                    let addr = r.req_str(
                        nt,
                        item.span,
                        "a fleet node",
                        "address",
                        "\"10.0.0.11:8080\"",
                    );
                    if let (Some((n, ns)), Some((a, as_))) = (name, addr) {
                        if let Err(why) = check_node_name(&n) {
                            r.err(ns, format!("invalid node name: {why}"), "not a node name", Some("node names become directory names, command arguments and API paths: start with a letter or digit, then letters, digits, `.`, `-`, `_`".into()));
                        } else if let Err(why) = check_address(&a) {
                            r.err(as_, format!("invalid address {a:?} of node `{n}`: {why}"), "not host:port", Some("write host:port, e.g. \"10.0.0.11:8080\", \"api-1.internal:8080\" or \"[fd00::11]:8080\"".into()));
                        } else if nodes.iter().any(|x| x.name == n) {
                            r.err(
                                ns,
                                format!("duplicate node name `{n}`"),
                                "already in the fleet",
                                Some("each node needs a unique name".into()),
                            );
                        } else if nodes.iter().any(|x| x.address == a) {
                            r.err(as_, format!("duplicate address `{a}`"), "another node has this address", Some("two nodes with one address would be drained and deployed twice".into()));
                        } else {
                            nodes.push(Node {
                                name: n,
                                address: a,
                            });
                        }
                    }
                }
            }
        },
    }
    Some(fleet)
}
