//! Artifacts: the sha256 of a release (a file's bytes, or a directory's
//! manifest), the shell recipe that gives the same answer on a node
//! ([`DIR_SHA256_PIPELINE`]), and the policy for what an artifact may hold:
//! regular files, directories and symlinks that stay inside it; special
//! files are refused without being opened.

use sha2::{Digest, Sha256};
use std::path::Path;

/// The hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The shell recipe that computes a directory artifact's sha256, run from
/// inside the directory (GNU find, od, awk, sort and sha256sum; the same
/// text is in the README). [`artifact_sha256`] gives the same answer, and
/// without its last `| sha256sum` it prints [`dir_manifest`].
pub const DIR_SHA256_PIPELINE: &str = r#"{ find . -mindepth 1 ! -path ./.glidepath-sha256 \( -type l -printf 'l %p\0%l\0' -o -type d -printf 'd %p\0' -o -type f -perm -u=x -printf 'x %p\0' -o -type f -printf 'f %p\0' -o -printf '? %p\0' \)
  find . -type f ! -path ./.glidepath-sha256 -exec sha256sum -z {} +
} | od -An -v -tx1 | LC_ALL=C awk '
  BEGIN { for (i = 32; i < 127; i++) c[sprintf("%02x", i)] = sprintf("%c", i) }
  { for (i = 1; i <= NF; i++) if ($i == "00") rec(); else b[n++] = $i }
  END { for (p in t) print p, t[p], d[p] }
  function hex(from,  s, i) { s = ""; for (i = from; i < n; i++) s = s b[i]; return s }
  function rec(  p, h, i) {
    if (l != "") { d[l] = hex(0); l = "" }
    else if (b[1] == "20") { p = hex(4); t[p] = c[b[0]]; d[p] = t[p] == "d" ? "-" : "?"; if (t[p] == "l") l = p }
    else { h = ""; for (i = 0; i < 64; i++) h = h c[b[i]]; d[hex(68)] = h }
    n = 0
  }' | LC_ALL=C sort | sha256sum"#;

/// The checksum marker a deployer writes into a staged release; it is not
/// part of the release (nor of its hash), and never trusted on its own.
pub const MARKER: &str = ".glidepath-sha256";

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// What a non-regular, non-directory, non-symlink entry is.
fn special_kind(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

/// Open a regular file for reading without following a symlink and
/// without blocking on a FIFO (what `lstat` said may have changed since):
/// anything but a regular file is refused, never read.
pub fn open_regular(p: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(p)?;
    let ft = f.metadata()?.file_type();
    if !ft.is_file() {
        return Err(invalid(format!(
            "{} is {}, not a regular file",
            p.display(),
            special_kind(&ft)
        )));
    }
    Ok(f)
}

fn file_sha(p: &Path) -> std::io::Result<String> {
    let mut f = open_regular(p)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h)?;
    Ok(hex::encode(h.finalize()))
}

/// sha256 of an artifact: a regular file's bytes, or for a directory the
/// sha256 of its [`dir_manifest`] (what [`DIR_SHA256_PIPELINE`] prints). A
/// symlink given as the artifact itself is followed; anything else that is
/// neither a file nor a directory is refused without being opened.
pub fn artifact_sha256(path: &Path) -> std::io::Result<String> {
    let md = std::fs::metadata(path)?;
    if md.is_file() {
        file_sha(path)
    } else if md.is_dir() {
        Ok(sha256_hex(dir_manifest(path)?.as_bytes()))
    } else {
        Err(invalid(format!(
            "artifact {} is {}: an artifact is a regular file or a directory",
            path.display(),
            special_kind(&md.file_type())
        )))
    }
}

/// One entry of a directory artifact.
#[derive(Debug, Clone, PartialEq)]
enum Entry {
    File { exec: bool, sha256: String },
    Dir,
    Symlink(Vec<u8>),
}

/// Every entry under `root` (relative path bytes, no `./`), symlinks not
/// followed, the root's checksum marker left out. Special files are refused.
fn walk_tree(root: &Path) -> std::io::Result<std::collections::BTreeMap<Vec<u8>, Entry>> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    fn walk(
        root: &Path,
        rel: &Path,
        out: &mut std::collections::BTreeMap<Vec<u8>, Entry>,
    ) -> std::io::Result<()> {
        for e in std::fs::read_dir(root.join(rel))? {
            let e = e?;
            let r = rel.join(e.file_name());
            if rel.as_os_str().is_empty() && e.file_name() == MARKER {
                // glidepath's own staging marker, a regular file it writes:
                // anything else under that name would be hashed as absent
                // and then written through (a link) or trip the staging
                if std::fs::symlink_metadata(root.join(MARKER))?.is_file() {
                    continue;
                }
                return Err(std::io::Error::other(format!(
                    "{MARKER:?} is not a regular file: the name is reserved for glidepath's staging marker (rename it)"
                )));
            }
            let p = root.join(&r);
            let md = std::fs::symlink_metadata(&p)?;
            let ft = md.file_type();
            let key = r.as_os_str().as_bytes().to_vec();
            // the manifest records the type and the owner's exec bit; the
            // mode bits it does not record must not change what a release
            // can do, so setuid/setgid/sticky and world-writable are refused
            let mode = md.permissions().mode();
            if !ft.is_symlink() && mode & 0o7002 != 0 {
                return Err(invalid(format!(
                    "artifact entry {:?} has mode {:o}: setuid, setgid, sticky and world-writable entries are refused (the checksum would not cover them)",
                    Path::new(".").join(&r),
                    mode & 0o7777
                )));
            }
            if ft.is_symlink() {
                let target = std::fs::read_link(&p)?;
                out.insert(key, Entry::Symlink(target.as_os_str().as_bytes().to_vec()));
            } else if ft.is_dir() {
                out.insert(key, Entry::Dir);
                walk(root, &r, out)?;
            } else if ft.is_file() {
                let exec = md.permissions().mode() & 0o100 != 0;
                out.insert(
                    key,
                    Entry::File {
                        exec,
                        sha256: file_sha(&p)?,
                    },
                );
            } else {
                return Err(invalid(format!(
                    "artifact entry {:?} is {}: an artifact holds only regular files, directories and symlinks",
                    Path::new(".").join(&r),
                    special_kind(&ft)
                )));
            }
        }
        Ok(())
    }
    let mut out = std::collections::BTreeMap::new();
    walk(root, Path::new(""), &mut out)?;
    for (at, e) in &out {
        if let Entry::Symlink(target) = e {
            if let Some(why) = link_escapes(&out, at, target) {
                return Err(invalid(format!(
                    "artifact entry {:?} is a symlink to {:?}, {why}: links must stay inside the artifact",
                    Path::new(".").join(std::ffi::OsStr::from_bytes(at)),
                    std::ffi::OsStr::from_bytes(target)
                )));
            }
        }
    }
    Ok(out)
}

/// Why the symlink at `at` (relative to the artifact root) pointing at
/// `target` would leave the artifact, if it would: resolved the way the
/// kernel does, through the other links of the tree.
fn link_escapes(
    entries: &std::collections::BTreeMap<Vec<u8>, Entry>,
    at: &[u8],
    target: &[u8],
) -> Option<String> {
    if target.first() == Some(&b'/') {
        return Some("an absolute path".into());
    }
    // resolution starts in the link's own directory
    let mut path: Vec<Vec<u8>> = at.split(|b| *b == b'/').map(<[u8]>::to_vec).collect();
    path.pop();
    let mut queue: std::collections::VecDeque<Vec<u8>> =
        target.split(|b| *b == b'/').map(<[u8]>::to_vec).collect();
    let mut hops = 0;
    while let Some(c) = queue.pop_front() {
        match c.as_slice() {
            b"" | b"." => {}
            b".." => {
                if path.pop().is_none() {
                    return Some("which resolves outside the artifact".into());
                }
            }
            _ => {
                path.push(c);
                if let Some(Entry::Symlink(t)) = entries.get(&path.join(&b'/')) {
                    hops += 1;
                    if hops > 40 {
                        return Some("which loops".into());
                    }
                    if t.first() == Some(&b'/') {
                        return Some("which goes through a link to an absolute path".into());
                    }
                    path.pop();
                    for part in t.split(|b| *b == b'/').rev() {
                        queue.push_front(part.to_vec());
                    }
                }
            }
        }
    }
    None
}

/// A directory's manifest, the text its sha256 is taken of: one line per
/// entry (files, directories and symlinks, the root's checksum marker left
/// out), `<path> <type> <data>`, sorted. `<path>` is the path relative to
/// the directory, hex-encoded byte by byte (so no name can forge a line or
/// collide with another); `<type>` is `f` (a file), `x` (a file whose owner
/// may execute it), `d` (a directory) or `l` (a symlink, kept as a link);
/// `<data>` is the file's sha256, `-` for a directory, or the link's target,
/// hex-encoded. Special files and links leaving the directory are refused.
pub fn dir_manifest(path: &Path) -> std::io::Result<String> {
    let mut manifest = String::new();
    for (rel, e) in walk_tree(path)? {
        let (t, data) = match e {
            Entry::File { exec, sha256 } => (if exec { "x" } else { "f" }, sha256),
            Entry::Dir => ("d", "-".to_string()),
            Entry::Symlink(target) => ("l", hex::encode(target)),
        };
        manifest.push_str(&format!("{} {t} {data}\n", hex::encode(rel)));
    }
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell_sha(dir: &Path) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(DIR_SHA256_PIPELINE)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_string()
    }

    /// A tree with every kind of awkward name.
    fn odd_tree(dir: &Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::create_dir_all(dir.join("bin/sub")).unwrap();
        std::fs::create_dir_all(dir.join("empty dir")).unwrap();
        std::fs::write(dir.join("bin/app"), "binary").unwrap();
        std::fs::set_permissions(dir.join("bin/app"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        std::fs::write(dir.join("bin/sub/Z.conf"), "z").unwrap();
        std::fs::write(dir.join("a b.txt"), "spaces").unwrap();
        std::fs::write(dir.join("new\nline"), "newline").unwrap();
        std::fs::write(dir.join("back\\slash"), "backslash").unwrap();
        std::fs::write(dir.join("ünïcødé ✓"), "unicode").unwrap();
        std::fs::write(dir.join("-dash"), "").unwrap();
        std::fs::write(dir.join("bin/sub/.glidepath-sha256"), "not the root one").unwrap();
        std::os::unix::fs::symlink("bin/app", dir.join("app link")).unwrap();
        std::os::unix::fs::symlink("../a b.txt", dir.join("bin/sub/up\nlink")).unwrap();
        std::fs::write(dir.join(".glidepath-sha256"), "ignored").unwrap();
    }

    #[test]
    fn directory_hash_matches_the_documented_shell_recipe() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("art");
        odd_tree(&dir);
        let ours = artifact_sha256(&dir).unwrap();
        assert_eq!(ours, shell_sha(&dir), "the shell recipe gives our hash");
        let manifest = dir_manifest(&dir).unwrap();
        assert_eq!(manifest.lines().count(), 13, "{manifest}");
        assert!(manifest.contains(&format!(
            "{} x {}\n",
            hex::encode("bin/app"),
            sha256_hex(b"binary")
        )));
        assert!(manifest.contains(&format!(
            "{} l {}\n",
            hex::encode("app link"),
            hex::encode("bin/app")
        )));
        assert!(manifest.contains(&format!("{} d -\n", hex::encode("empty dir"))));
        assert!(!manifest.contains(&hex::encode(".glidepath-sha256\n")));
        // the README documents this very recipe
        let readme =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
                .unwrap();
        assert!(
            readme.contains(DIR_SHA256_PIPELINE),
            "README.md must carry DIR_SHA256_PIPELINE verbatim"
        );
        // the type, the exec bit and a link's target are part of the hash
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.join("bin/app"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        let no_exec = artifact_sha256(&dir).unwrap();
        assert_ne!(no_exec, ours, "the exec bit counts");
        assert_eq!(no_exec, shell_sha(&dir));
        std::fs::remove_file(dir.join("app link")).unwrap();
        std::os::unix::fs::symlink("bin/sub/Z.conf", dir.join("app link")).unwrap();
        assert_ne!(
            artifact_sha256(&dir).unwrap(),
            no_exec,
            "a link's target counts"
        );
        assert_eq!(artifact_sha256(&dir).unwrap(), shell_sha(&dir));
        std::fs::remove_dir(dir.join("empty dir")).unwrap();
        assert_eq!(artifact_sha256(&dir).unwrap(), shell_sha(&dir));
    }

    #[test]
    fn no_name_can_forge_a_manifest_line() {
        // Under a `sha256sum` manifest (`<hex>  ./<path>` lines), tree B's one
        // file, a directory named "a\n<sha(b)>  ." holding `b`, printed the
        // same two lines as tree A's `a` and `b`.
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("A");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::write(a.join("a"), "first").unwrap();
        std::fs::write(a.join("b"), "second").unwrap();
        let b = tmp.path().join("B");
        let forged = b.join(format!("a\n{}  .", sha256_hex(b"second")));
        std::fs::create_dir_all(&forged).unwrap();
        std::fs::write(forged.join("b"), "first").unwrap();
        let old_style = |root: &Path, files: &[&str]| -> String {
            files
                .iter()
                .map(|f| {
                    let body = std::fs::read(root.join(f)).unwrap();
                    format!("{}  ./{f}\n", sha256_hex(&body))
                })
                .collect()
        };
        let forged_name = format!("a\n{}  ./b", sha256_hex(b"second"));
        assert_eq!(
            old_style(&a, &["a", "b"]),
            old_style(&b, &[forged_name.as_str()]),
            "the attack this test guards against"
        );
        assert_ne!(dir_manifest(&a).unwrap(), dir_manifest(&b).unwrap());
        assert_ne!(artifact_sha256(&a).unwrap(), artifact_sha256(&b).unwrap());
        assert_eq!(artifact_sha256(&b).unwrap(), shell_sha(&b));
    }

    /// Runs `f` on another thread; a hang fails the test instead of
    /// hanging it.
    fn within_5s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(5))
            .expect("hashing hung instead of refusing")
    }

    #[test]
    fn special_files_are_refused_without_being_opened() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("art");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("ok"), "x").unwrap();
        let fifo = dir.join("pipe");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let d = dir.clone();
        let err = within_5s(move || artifact_sha256(&d))
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"./pipe\" is a FIFO"), "{err}");
        // the artifact itself a FIFO
        let err = within_5s(move || artifact_sha256(&fifo))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is a FIFO (named pipe): an artifact is a regular file or a directory"),
            "{err}"
        );
        // a device node (needs root: /dev/zero's numbers) and a link to one
        let dev = tmp.path().join("dev");
        std::fs::create_dir_all(&dev).unwrap();
        let c = std::ffi::CString::new(dev.join("zero").as_os_str().as_encoded_bytes()).unwrap();
        if unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o644, libc::makedev(1, 5)) } == 0 {
            let d = dev.clone();
            let err = within_5s(move || artifact_sha256(&d))
                .unwrap_err()
                .to_string();
            assert!(err.contains("\"./zero\" is a character device"), "{err}");
        }
        std::fs::remove_dir_all(&dev).unwrap();
        std::fs::create_dir_all(&dev).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dev.join("zero")).unwrap();
        let err = within_5s(move || artifact_sha256(&dev))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("is a symlink to \"/dev/zero\", an absolute path"),
            "{err}"
        );
    }

    #[test]
    fn symlinks_are_kept_inside_the_artifact() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("art");
        std::fs::create_dir_all(dir.join("d/e")).unwrap();
        std::fs::write(dir.join("d/f"), "x").unwrap();
        let link = |at: &str, to: &str| {
            let _ = std::fs::remove_file(dir.join(at));
            std::os::unix::fs::symlink(to, dir.join(at)).unwrap();
            artifact_sha256(&dir).map_err(|e| e.to_string())
        };
        // inside: fine, and the link (not what it points at) is hashed
        link("up", "d/e/..").unwrap();
        link("d/e/top", "../..").unwrap();
        link("d/e/sib", "../f").unwrap();
        link("dangling", "d/nothing").unwrap();
        link("x", "d/e/top/d/f").unwrap();
        let err = link("passwd", "/etc/passwd").unwrap_err();
        assert!(err.contains("\"./passwd\" is a symlink to \"/etc/passwd\", an absolute path: links must stay inside the artifact"), "{err}");
        std::fs::remove_file(dir.join("passwd")).unwrap();
        let err = link("d/out", "../../outside").unwrap_err();
        assert!(err.contains("which resolves outside the artifact"), "{err}");
        std::fs::remove_file(dir.join("d/out")).unwrap();
        // each link alone stays inside; through the other one, it leaves
        let err = link("through", "d/e/top/..").unwrap_err();
        assert!(err.contains("\"./through\""), "{err}");
        assert!(err.contains("which resolves outside the artifact"), "{err}");
        std::fs::remove_file(dir.join("through")).unwrap();
        let err = link("loop", "loop/x").unwrap_err();
        assert!(err.contains("which loops"), "{err}");
    }

    /// The staging marker's name cannot carry a link or a directory into a
    /// release: such an artifact is refused (it used to hash as if the entry
    /// were absent, and the marker was then written through the link).
    #[test]
    fn a_link_or_directory_named_like_the_marker_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::write(a.join("f"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", a.join(MARKER)).unwrap();
        let err = artifact_sha256(&a).unwrap_err().to_string();
        assert!(err.contains("reserved"), "{err}");
        std::fs::remove_file(a.join(MARKER)).unwrap();
        std::fs::create_dir_all(a.join(MARKER).join("payload")).unwrap();
        assert!(artifact_sha256(&a).is_err());
        std::fs::remove_dir_all(a.join(MARKER)).unwrap();
        // the marker glidepath writes (a regular file) is left out as before
        let clean = artifact_sha256(&a).unwrap();
        std::fs::write(a.join(MARKER), "abc").unwrap();
        assert_eq!(artifact_sha256(&a).unwrap(), clean);
    }

    /// Mode bits the manifest does not record cannot slip in: 0755 and 4777
    /// used to hash the same.
    #[test]
    fn setuid_and_world_writable_entries_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::write(a.join("bin"), "x").unwrap();
        std::fs::set_permissions(a.join("bin"), std::fs::Permissions::from_mode(0o755)).unwrap();
        artifact_sha256(&a).unwrap();
        for bad in [0o4755, 0o2755, 0o777] {
            std::fs::set_permissions(a.join("bin"), std::fs::Permissions::from_mode(bad)).unwrap();
            let e = artifact_sha256(&a).unwrap_err().to_string();
            assert!(e.contains(&format!("mode {bad:o}")), "{e}");
        }
    }
}
