//! Reading the small files a plan names (gate inputs, signatures,
//! migrations, keys): a regular file only (a FIFO or a device is refused
//! without blocking), and never more than a stated size. It imports nothing
//! of the crate.

use std::io::Read;
use std::path::Path;

/// `dir` joined with `rel`, its `a/..` pairs removed when that names the
/// same file (`system/../plans/api.toml` → `plans/api.toml`): what a person
/// reads and pastes. Kept as joined when the tidy form would resolve
/// elsewhere (through a symbolic link) or either does not exist.
pub fn tidy_join(dir: &Path, rel: &str) -> std::path::PathBuf {
    use std::path::Component;
    let joined = dir.join(rel);
    let mut out = std::path::PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir
                if matches!(out.components().next_back(), Some(Component::Normal(_))) =>
            {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    match (std::fs::canonicalize(&joined), std::fs::canonicalize(&out)) {
        (Ok(a), Ok(b)) if a == b => out,
        _ => joined,
    }
}

/// This user's glidepath state directory: `$XDG_STATE_HOME/glidepath`, else
/// `~/.local/state/glidepath` (the journal, the fingerprint key). `None`
/// when neither variable names an absolute directory.
pub fn state_dir() -> Option<std::path::PathBuf> {
    let abs = |v: std::ffi::OsString| Some(std::path::PathBuf::from(v)).filter(|p| p.is_absolute());
    std::env::var_os("XDG_STATE_HOME")
        .and_then(abs)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(abs)
                .map(|h| h.join(".local/state"))
        })
        .map(|d| d.join("glidepath"))
}

/// The most glidepath reads of a file a plan names (config files, the
/// deprecation matrix, a signature, a migration).
pub const SMALL_MAX: u64 = 16 << 20;

/// Open `p` (following links) for reading if it is a regular file; a FIFO,
/// socket or device is refused at once, without waiting on it.
pub fn open_regular_following(p: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(p)?;
    let md = f.metadata()?;
    if !md.file_type().is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} is not a regular file", p.display()),
        ));
    }
    Ok(f)
}

/// The bytes of a regular file of at most `max` bytes.
pub fn read_bounded(p: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let f = open_regular_following(p)?;
    let mut out = Vec::new();
    f.take(max + 1).read_to_end(&mut out)?;
    if out.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} is larger than {max} bytes: refusing to read it",
                p.display()
            ),
        ));
    }
    Ok(out)
}

/// [`read_bounded`] as UTF-8 text.
pub fn read_text(p: &Path, max: u64) -> std::io::Result<String> {
    String::from_utf8(read_bounded(p, max)?).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{} is not UTF-8: {e}", p.display()),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifos_devices_and_huge_files_are_refused_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let fifo = tmp.path().join("f");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let t = std::time::Instant::now();
        assert!(read_bounded(&fifo, 10).is_err());
        assert!(read_bounded(Path::new("/dev/zero"), 10).is_err());
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
        let big = tmp.path().join("big");
        std::fs::write(&big, vec![b'x'; 11]).unwrap();
        let e = read_bounded(&big, 10).unwrap_err().to_string();
        assert!(e.contains("larger than 10 bytes"), "{e}");
        std::fs::write(&big, b"0123456789").unwrap();
        assert_eq!(read_text(&big, 10).unwrap(), "0123456789");
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&big, &link).unwrap();
        assert_eq!(
            read_text(&link, 10).unwrap(),
            "0123456789",
            "links are followed"
        );
    }
}

#[cfg(test)]
mod tidy_tests {
    use super::tidy_join;

    #[test]
    fn a_joined_path_loses_its_detours_only_when_it_names_the_same_file() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("system")).unwrap();
        std::fs::create_dir_all(root.join("plans")).unwrap();
        std::fs::write(root.join("plans/api.toml"), "").unwrap();
        assert_eq!(
            tidy_join(&root.join("system"), "../plans/api.toml"),
            root.join("plans/api.toml")
        );
        assert_eq!(
            tidy_join(&root.join("system"), "./../plans/./api.toml"),
            root.join("plans/api.toml")
        );
        // a missing file: left as written, for the error to name
        assert_eq!(
            tidy_join(&root.join("system"), "../plans/nope.toml"),
            root.join("system/../plans/nope.toml")
        );
        // through a symbolic link, `..` is the link target's parent: kept
        std::fs::create_dir_all(root.join("real/sub")).unwrap();
        std::fs::create_dir_all(root.join("real/plans")).unwrap();
        std::fs::write(root.join("real/plans/api.toml"), "").unwrap();
        std::os::unix::fs::symlink(root.join("real/sub"), root.join("link")).unwrap();
        assert_eq!(
            tidy_join(&root.join("link"), "../plans/api.toml"),
            root.join("link/../plans/api.toml")
        );
    }
}
