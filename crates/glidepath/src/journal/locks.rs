//! This machine's locks on the nodes a run drives.

use super::{default_path, JournalError};
use std::path::{Path, PathBuf};

/// This machine's locks on the nodes a run drives, one `flock` per node
/// address under the state directory (`…/glidepath/nodes/`). They close the
/// gap the per-journal lease leaves: two journals (two plan copies, two
/// `--journal`s) on one machine rolling out the same nodes. The kernel drops
/// a lock when its process dies, so a lock is never stale.
#[derive(Debug, Default)]
pub struct NodeLocks {
    _files: Vec<std::fs::File>,
}

impl NodeLocks {
    /// Lock every `(node, address)` for `run` of `journal`. A node locked by
    /// a run of the same journal is left to the lease (a takeover after a
    /// stopped holder); one locked from another journal is refused.
    pub fn acquire(
        nodes: &[(String, String)],
        run: &str,
        journal: &Path,
    ) -> Result<NodeLocks, JournalError> {
        use std::io::{Read, Seek, Write};
        use std::os::unix::io::AsRawFd;
        let dir = default_path()
            .parent()
            .map(|p| p.join("nodes"))
            .unwrap_or_else(|| PathBuf::from("nodes"));
        let io = |path: &Path, source| JournalError::NodeLock {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        let me = journal
            .canonicalize()
            .unwrap_or_else(|_| journal.to_path_buf())
            .display()
            .to_string();
        let mut files = Vec::new();
        for (node, address) in nodes {
            let key = &crate::plan::sha256_hex(address.as_bytes())[..24];
            let path = dir.join(format!("{key}.lock"));
            let mut f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| io(&path, e))?;
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
                if other_journal == me {
                    continue; // the same journal: its lease decides
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
