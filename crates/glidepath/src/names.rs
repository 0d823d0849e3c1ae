//! The grammars of the names that end up in paths and commands: node
//! names, release versions and node addresses.

/// Longest node name or version accepted.
pub const MAX_NAME_LEN: usize = 128;

fn check_word(what: &str, s: &str, extra: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("the {what} is empty"));
    }
    if s.len() > MAX_NAME_LEN {
        return Err(format!("{} bytes long (at most {MAX_NAME_LEN})", s.len()));
    }
    if !s.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(format!("{s:?} must start with a letter or a digit"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c) || extra.contains(*c)))
    {
        return Err(format!(
            "{s:?} contains {c:?}: only letters, digits and {}are allowed",
            "._-"
                .chars()
                .chain(extra.chars())
                .map(|c| format!("`{c}` "))
                .collect::<String>()
        ));
    }
    Ok(())
}

/// A node name: `[A-Za-z0-9][A-Za-z0-9._-]*`, at most 128 bytes (so never
/// `.` or `..`): it becomes a directory name and a command argument.
pub fn check_node_name(s: &str) -> Result<(), String> {
    check_word("node name", s, "")
}

/// A release version: `[A-Za-z0-9][A-Za-z0-9._+~-]*`, at most 128 bytes
/// (no `/`, space, newline or shell character; never `.` or `..`). The
/// release a node reports is checked against it before any use.
pub fn check_version(s: &str) -> Result<(), String> {
    check_word("version", s, "+~")
}

/// A node address: `host` or `host:port`, where host is a hostname
/// (letters, digits, `-`, `_`, dot-separated labels), an IPv4 address, or
/// an IPv6 address in brackets (`[::1]:8080`), and port is 1..65535.
pub fn check_address(s: &str) -> Result<(), String> {
    let bad = |why: String| Err(why);
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((h, after)) = rest.split_once(']') else {
            return bad("`[` without a closing `]`".into());
        };
        if h.parse::<std::net::Ipv6Addr>().is_err() {
            return bad(format!("`{h}` is not an IPv6 address"));
        }
        match after {
            "" => (None, None),
            p => match p.strip_prefix(':') {
                Some(p) => (None, Some(p)),
                None => return bad("expected `:port` after `]`".into()),
            },
        }
    } else {
        match s.split_once(':') {
            None => (Some(s), None),
            Some((h, p)) if !p.contains(':') => (Some(h), Some(p)),
            Some(_) => return bad("an IPv6 address goes in brackets: [::1]:8080".into()),
        }
    };
    if let Some(p) = port {
        if p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit()) || p.len() > 5 {
            return bad(format!("port `{p}` is not a number"));
        }
        if !(1..=65535).contains(&p.parse::<u32>().unwrap_or(0)) {
            return bad(format!("port {p} is out of range (1..65535)"));
        }
    }
    if let Some(h) = host {
        if h.is_empty() {
            return bad("the host is empty".into());
        }
        if h.len() > 253 {
            return bad("the host name is longer than 253 bytes".into());
        }
        let labels: Vec<&str> = h.split('.').collect();
        let all_numeric = labels
            .iter()
            .all(|l| !l.is_empty() && l.bytes().all(|c| c.is_ascii_digit()));
        if all_numeric && h.parse::<std::net::Ipv4Addr>().is_err() {
            return bad(format!("`{h}` is not an IPv4 address"));
        }
        for l in labels {
            if l.is_empty() || l.len() > 63 {
                return bad(format!("`{h}` has an empty or over-long label"));
            }
            if l.starts_with('-') || l.ends_with('-') {
                return bad(format!("a label of `{h}` starts or ends with `-`"));
            }
            if let Some(c) = l
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
            {
                return bad(format!(
                    "{c:?} in the host: a host name has letters, digits, `-`, `_` and dots"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammars_of_names_versions_and_addresses() {
        for ok in ["api-1", "a", "A.b_c-9", "10"] {
            assert_eq!(check_node_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "-x",
            ".hidden",
            "a/b",
            "a b",
            "a;b",
            "ü",
            &"a".repeat(129),
        ] {
            assert!(check_node_name(bad).is_err(), "{bad:?}");
        }
        for ok in ["1.0.10", "2", "1.0.0-rc.1+build.5", "1.2~beta"] {
            assert_eq!(check_version(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "2\nrm -rf /",
            "1;touch PWNED",
            "a/b",
            "1 2",
            "-1",
            "$(x)",
            "1'",
        ] {
            assert!(check_version(bad).is_err(), "{bad:?}");
        }
        for ok in [
            "127.0.0.1:9001",
            "10.0.0.1",
            "api-1.internal:8080",
            "[::1]:80",
            "[fd00::11]",
            "my_host:1",
        ] {
            assert_eq!(check_address(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "127.0.0.1;touch /tmp/x",
            "127.0.0.1:0",
            "127.0.0.1:65536",
            "127.0.0.1:",
            "300.1.1.1:80",
            "::1",
            "[::1",
            "[nope]:80",
            "host:80x",
            "-host:80",
            "a..b",
            "$(id):80",
            "a b:80",
        ] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
    }
}
