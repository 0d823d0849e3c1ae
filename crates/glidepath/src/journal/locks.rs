//! This machine's locks on the nodes a run drives.

use super::{default_path, JournalError};
use std::path::{Path, PathBuf};

/// This machine's locks on the nodes a run drives: one `flock` per resolved
/// node address (`localhost:8080` and `127.0.0.1:8080` are the same node), in
/// a directory shared by every user of the machine ([`lock_dir`]). They close
/// the gap the per-journal lease leaves: two journals (two plan copies, two
/// `--journal`s, two users) on one machine rolling out the same nodes. The
/// kernel drops a lock when its process dies, so a lock is never stale.
#[derive(Debug, Default)]
pub struct NodeLocks {
    _files: Vec<std::fs::File>,
}

impl NodeLocks {
    /// Lock every `(node, address)` for `run` of `journal` (a SQLite path,
    /// or a PostgreSQL URL without its password, as `Store::location` gives
    /// it). A node locked by this same run (a takeover after a stopped
    /// holder) is left to the fleet's lease; one locked by another run, of
    /// this journal (another fleet name on the same nodes) or of another
    /// journal, is refused.
    pub fn acquire(
        nodes: &[(String, String)],
        run: &str,
        journal: &str,
    ) -> Result<NodeLocks, JournalError> {
        use std::io::{Read, Seek, Write};
        use std::os::unix::io::AsRawFd;
        let io = |path: &Path, source| JournalError::NodeLock {
            path: path.to_path_buf(),
            source,
        };
        let dir = lock_dir().map_err(|(d, e)| io(&d, e))?;
        let me = journal_key(journal);
        let mut files = Vec::new();
        let keys: Vec<(&String, &String, String)> = nodes
            .iter()
            .flat_map(|(node, address)| {
                node_keys(address)
                    .into_iter()
                    .map(move |k| (node, address, k))
            })
            .collect();
        for (node, address, key) in keys {
            let path = key_path(&dir, &key, "lock");
            use std::os::unix::fs::OpenOptionsExt;
            let opened = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .open(&path);
            // another user's lock file: lockable read-only all the same
            let mut f = match opened {
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    std::fs::File::open(&path).map_err(|e| io(&path, e))?
                }
                other => other.map_err(|e| io(&path, e))?,
            };
            // SAFETY: flock on a descriptor we own.
            let got = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
            if !got {
                let mut held = String::new();
                let _ = f.read_to_string(&mut held);
                let mut parts = held.lines();
                let (other_run, pid, other_journal) = (
                    parts.next().unwrap_or("?").to_string(),
                    parts.next().and_then(|p| p.parse().ok()).unwrap_or(0),
                    parts.next().unwrap_or("?").to_string(),
                );
                if other_journal == me && other_run == run {
                    continue; // this run, taken over: its fleet's lease decides
                }
                if other_journal == me {
                    // another fleet's run of this journal (a plan copied
                    // under another name): its lease is not ours
                    return Err(JournalError::NodeBusy {
                        node: node.clone(),
                        address: address.clone(),
                        run: other_run,
                        pid,
                    });
                }
                return Err(JournalError::OtherJournal {
                    node: node.clone(),
                    address: address.clone(),
                    run: other_run,
                    pid,
                    journal: other_journal,
                });
            }
            let _ = f.set_len(0);
            let _ = f.rewind();
            let _ = write!(f, "{run}\n{}\n{me}\n", std::process::id());
            let _ = f.flush();
            files.push(f);
        }
        Ok(NodeLocks { _files: files })
    }
}

/// How a lock names its journal: a SQLite file by its canonical path (two
/// spellings of one file meet), a database by its URL as given (already
/// without a password; never a path to resolve).
fn journal_key(journal: &str) -> String {
    if super::postgres::is_url(journal) {
        return journal.trim().to_string();
    }
    let path = Path::new(journal);
    path.canonicalize()
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// Where the node locks live: `GLIDEPATH_LOCK_DIR`, else
/// `/var/tmp/glidepath-locks` (sticky and writable by every user, so two
/// users' runs see each other), else the user's state directory.
pub fn lock_dir() -> Result<PathBuf, (PathBuf, std::io::Error)> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(d) = std::env::var_os("GLIDEPATH_LOCK_DIR").filter(|d| !d.is_empty()) {
        let d = PathBuf::from(d);
        std::fs::create_dir_all(&d).map_err(|e| (d.clone(), e))?;
        return Ok(d);
    }
    let shared = PathBuf::from("/var/tmp/glidepath-locks");
    let made = std::fs::create_dir(&shared)
        .and_then(|_| std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)));
    if made.is_ok() || shared.is_dir() {
        return Ok(shared);
    }
    let d = default_path()
        .parent()
        .map(|p| p.join("nodes"))
        .unwrap_or_else(|| PathBuf::from("nodes"));
    std::fs::create_dir_all(&d).map_err(|e| (d.clone(), e))?;
    Ok(d)
}

/// The names one node address goes by, for its locks: every address it
/// resolves to (with its port), so that `localhost:8080`, `127.0.0.1:8080`
/// and `[::1]:8080` meet. A name that does not resolve (within 2 s) is
/// locked under its lowercase spelling.
pub fn node_keys(address: &str) -> Vec<String> {
    use std::net::ToSocketAddrs;
    let host = crate::template::host_of(address).to_ascii_lowercase();
    let port = address
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(0);
    let canon = |ip: std::net::IpAddr| match ip {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map_or(std::net::IpAddr::V6(v6), std::net::IpAddr::V4),
        v4 => v4,
    };
    let mut keys: Vec<String> = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => vec![format!("{}:{port}", canon(ip))],
        Err(_) => {
            let (tx, rx) = std::sync::mpsc::channel();
            let query = (host.clone(), port);
            std::thread::spawn(move || {
                let _ = tx.send(query.to_socket_addrs().map(|a| a.collect::<Vec<_>>()));
            });
            match rx.recv_timeout(std::time::Duration::from_secs(2)) {
                Ok(Ok(addrs)) if !addrs.is_empty() => addrs
                    .into_iter()
                    .map(|a| format!("{}:{port}", canon(a.ip())))
                    .collect(),
                _ => vec![format!("{host}:{port}")],
            }
        }
    };
    keys.sort();
    keys.dedup();
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_node_under_different_spellings_has_a_common_key() {
        let a = node_keys("127.0.0.1:8080");
        let b = node_keys("localhost:8080");
        let c = node_keys("[::ffff:127.0.0.1]:8080");
        assert!(b.iter().any(|k| a.contains(k)), "{a:?} {b:?}");
        assert_eq!(a, c);
        assert_ne!(node_keys("127.0.0.1:8081"), a);
    }

    #[test]
    fn a_database_is_named_as_given_and_a_file_by_its_canonical_path() {
        let url = "postgres://glide@db.example:5432/journal";
        assert_eq!(journal_key(url), url);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("j.db"), "").unwrap();
        let canon = dir.path().join("j.db").canonicalize().unwrap();
        let spelled = format!("{}/./j.db", dir.path().display());
        assert_eq!(journal_key(&spelled), canon.display().to_string());
    }
}

/// A marker of this machine's lock directory: a run left this node for a
/// person ([`hold`]), until `resolve` removes it ([`release_held`]).
#[derive(Debug, Clone)]
pub struct HeldMark {
    pub node: String,
    pub address: String,
    pub run: String,
    pub fleet: String,
    /// The journal of that run, as [`journal_key`] spells it.
    pub journal: String,
    pub path: PathBuf,
}

/// The file of a node address key in the lock directory: `.lock` (the
/// `flock`) or `.held` (the marker).
fn key_path(dir: &Path, key: &str, ext: &str) -> PathBuf {
    dir.join(format!(
        "{}.{ext}",
        &crate::artifact::sha256_hex(key.as_bytes())[..24]
    ))
}

/// [`lock_dir`], its error as the journal's.
fn dir() -> Result<PathBuf, JournalError> {
    lock_dir().map_err(|(path, source)| JournalError::NodeLock { path, source })
}

/// Mark each `(node, address)` as left for a person by `run` of `fleet` in
/// `journal`. The marker survives the process (unlike a lock): only
/// [`release_held`] or a person removes it.
pub fn hold(
    nodes: &[(String, String)],
    run: &str,
    fleet: &str,
    journal: &str,
) -> Result<(), JournalError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = dir()?;
    let me = journal_key(journal);
    for (node, address) in nodes {
        for key in node_keys(address) {
            let path = key_path(&dir, &key, "held");
            let body = format!("{run}\n{fleet}\n{me}\n{node}\n{address}\n");
            let tmp = path.with_extension(format!("held.{}", std::process::id()));
            std::fs::write(&tmp, body)
                .and_then(|_| {
                    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644))
                })
                .and_then(|_| std::fs::rename(&tmp, &path))
                .map_err(|source| {
                    let _ = std::fs::remove_file(&tmp);
                    JournalError::NodeLock {
                        path: path.clone(),
                        source,
                    }
                })?;
        }
    }
    Ok(())
}

/// The markers on these nodes (one per node at most: the first address
/// key that has one).
pub fn held(nodes: &[(String, String)]) -> Result<Vec<HeldMark>, JournalError> {
    let dir = dir()?;
    let mut out = Vec::new();
    for (node, address) in nodes {
        for key in node_keys(address) {
            let path = key_path(&dir, &key, "held");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let mut l = text.lines().map(str::to_string);
            let mut next = || l.next().unwrap_or_else(|| "?".to_string());
            let (run, fleet, journal) = (next(), next(), next());
            out.push(HeldMark {
                node: node.clone(),
                address: address.clone(),
                run,
                fleet,
                journal,
                path,
            });
            break;
        }
    }
    Ok(out)
}

/// Remove this machine's markers of `run` of `journal` (after `resolve`):
/// how many were removed, and those that could not be (another user's
/// file in the sticky directory), for the caller to name.
pub fn release_held(run: &str, journal: &str) -> Result<(usize, Vec<PathBuf>), JournalError> {
    let dir = dir()?;
    let me = journal_key(journal);
    let (mut removed, mut left) = (0, Vec::new());
    let entries = std::fs::read_dir(&dir).map_err(|source| JournalError::NodeLock {
        path: dir.clone(),
        source,
    })?;
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("held") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let l: Vec<&str> = text.lines().collect();
        if l.first() == Some(&run) && l.get(2) == Some(&me.as_str()) {
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(_) => left.push(path),
            }
        }
    }
    Ok((removed, left))
}

/// Do two journal locations name the same journal (as the locks spell it)?
pub fn same_journal(a: &str, b: &str) -> bool {
    journal_key(a) == journal_key(b)
}
