//! `kind = "local"`: releases live in `<install_dir>/releases/<version>`,
//! `<install_dir>/current` is a symlink switched atomically (a new link
//! renamed over the old one), and the newest `keep_releases` are kept.
//!
//! Staging copies into a temporary directory, verifies the checksum of the
//! *copy*, and renames it into place, so a crash never leaves a
//! half-written `releases/<version>`.

use super::{reported_version, DResult, Deployer, DriverError, Installed, Target};
use crate::artifact::{artifact_sha256, open_regular, MARKER};
use crate::config::Release;
use async_trait::async_trait;
use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub struct LocalDeployer {
    keep: usize,
    /// Bounds staging (the copy and its hash) and every other step.
    timeout: Duration,
    /// The releases whose sha256 the plan gives: re-verified before a switch.
    known: Vec<Release>,
}

impl LocalDeployer {
    pub fn new(keep: usize) -> Self {
        LocalDeployer {
            keep: keep.max(2),
            timeout: Duration::from_secs(120),
            known: Vec::new(),
        }
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Releases to re-verify by hash before `current` is switched to them.
    pub fn with_releases(mut self, releases: Vec<Release>) -> Self {
        self.known = releases;
        self
    }
}

fn failed(what: &str, p: &Path, e: std::io::Error) -> DriverError {
    DriverError::Failed(format!("{what} {}: {e}", p.display()))
}

/// The version `current` points at (as found: see `Deployer::current` for
/// the checked value).
pub fn read_current(dir: &Path) -> DResult<Option<String>> {
    let link = dir.join("current");
    match fs::read_link(&link) {
        Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(failed("read", &link, e)),
    }
}

/// Copy a regular file without following a link or blocking on a FIFO, with
/// its permission bits.
fn copy_file(src: &Path, dst: &Path) -> std::io::Result<()> {
    let mut from = open_regular(src)?;
    let mut to = fs::File::create(dst)?;
    std::io::copy(&mut from, &mut to)?;
    to.set_permissions(from.metadata()?.permissions())?;
    Ok(())
}

/// Copy one entry: a symlink as a symlink, a directory with what it holds,
/// a regular file with its mode; anything else is refused by open_regular.
fn copy_entry(p: &Path, to: &Path) -> std::io::Result<()> {
    let ft = fs::symlink_metadata(p)?.file_type();
    if ft.is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(p)?, to)
    } else if ft.is_dir() {
        fs::create_dir(to)?;
        fs::set_permissions(to, fs::symlink_metadata(p)?.permissions())?;
        copy_dir(p, to)
    } else {
        copy_file(p, to)
    }
}

fn copy_dir(src: &Path, dst: &Path) -> std::io::Result<()> {
    for e in fs::read_dir(src)? {
        let e = e?;
        copy_entry(&e.path(), &dst.join(e.file_name()))?;
    }
    Ok(())
}

/// Copy an artifact: symlinks as symlinks, special files refused (the copy
/// is hashed afterwards, which also refuses links leaving the tree).
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dst)?;
    if fs::metadata(src)?.is_file() {
        return copy_file(
            src,
            &dst.join(src.file_name().expect("artifact file has a name")),
        );
    }
    copy_dir(src, dst)
}

/// Does the staged release at `dest` hold exactly `release`? Hashed now,
/// never taken from the marker. `Err` says why not.
pub fn verify_staged(dest: &Path, release: &Release) -> Result<(), String> {
    match fs::symlink_metadata(dest) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(format!("{} is not a directory", dest.display())),
        Err(e) => return Err(format!("{}: {e}", dest.display())),
    }
    let sum = if release.artifact.is_file() {
        let name = release
            .artifact
            .file_name()
            .expect("artifact file has a name");
        let extra: Vec<String> = fs::read_dir(dest)
            .map_err(|e| format!("{}: {e}", dest.display()))?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .filter(|n| n != name && n != MARKER)
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        if !extra.is_empty() {
            return Err(format!("it also holds {}", extra.join(", ")));
        }
        artifact_sha256(&dest.join(name))
    } else {
        artifact_sha256(dest)
    }
    .map_err(|e| format!("cannot hash it: {e}"))?;
    if sum != release.sha256 {
        return Err(format!("sha256 {sum}, the plan says {}", release.sha256));
    }
    Ok(())
}

fn remove_any(p: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Stage `release` into `dir/releases/<version>`; returns a description.
pub fn stage_sync(dir: &Path, release: &Release) -> DResult<String> {
    static STAGING: AtomicU64 = AtomicU64::new(0);
    let releases = dir.join("releases");
    let dest = releases.join(&release.version);
    let mut note = String::new();
    if fs::symlink_metadata(&dest).is_ok() {
        match verify_staged(&dest, release) {
            Ok(()) => {
                return Ok(format!(
                    "{} already staged, sha256 re-verified",
                    dest.display()
                ))
            }
            Err(why) => {
                remove_any(&dest).map_err(|e| failed("remove changed", &dest, e))?;
                note = format!("; the copy already there did not match ({why}) and was replaced");
            }
        }
    }
    fs::create_dir_all(&releases).map_err(|e| failed("create", &releases, e))?;
    let tmp = releases.join(format!(
        ".{}.staging-{}-{}",
        release.version,
        std::process::id(),
        STAGING.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = fs::remove_dir_all(&tmp);
    if let Err(e) = copy_tree(&release.artifact, &tmp) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(failed("copy artifact into", &tmp, e));
    }
    if let Err(why) = verify_staged(&tmp, release) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(DriverError::Failed(format!(
            "checksum mismatch after copying to {}: {why}",
            dest.display()
        )));
    }
    fs::write(tmp.join(MARKER), &release.sha256).map_err(|e| failed("write", &tmp, e))?;
    remove_any(&dest).map_err(|e| failed("remove incomplete", &dest, e))?;
    fs::rename(&tmp, &dest).map_err(|e| failed("rename into", &dest, e))?;
    Ok(format!(
        "staged {}, sha256 {}… verified{note}",
        dest.display(),
        &release.sha256[..12]
    ))
}

/// Point `current` at `releases/<version>` atomically, then prune.
/// When the plan gives the release's sha256 (`known`), the release is
/// hashed again first, and a release changed since staging is refused.
pub fn switch_sync(
    dir: &Path,
    version: &str,
    keep: usize,
    known: Option<&Release>,
) -> DResult<String> {
    let target = dir.join("releases").join(version);
    if !target.is_dir() {
        return Err(DriverError::Failed(format!(
            "release {version} is not on the node ({} missing)",
            target.display()
        )));
    }
    if let Some(r) = known {
        verify_staged(&target, r).map_err(|why| {
            DriverError::Failed(format!(
                "{} changed after staging ({why}): refusing to switch to it",
                target.display()
            ))
        })?;
    }
    let previous = read_current(dir)?;
    if previous.as_deref() == Some(version) {
        return Ok(format!("current already → {version}"));
    }
    let tmp = dir.join(format!(".current.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(Path::new("releases").join(version), &tmp)
        .map_err(|e| failed("symlink", &tmp, e))?;
    fs::rename(&tmp, dir.join("current"))
        .map_err(|e| failed("rename over", &dir.join("current"), e))?;
    let pruned = prune(dir, keep, version, previous.as_deref());
    let mut msg = format!(
        "current → {version} (was {})",
        previous.as_deref().unwrap_or("none")
    );
    if !pruned.is_empty() {
        msg.push_str(&format!("; pruned {}", pruned.join(", ")));
    }
    Ok(msg)
}

/// What `dir` holds before glidepath deployed it (see
/// [`Deployer::installed`]).
pub fn installed_sync(dir: &Path, exclude: &[String]) -> DResult<Installed> {
    let link = dir.join("current");
    if fs::symlink_metadata(&link).is_ok_and(|m| !m.file_type().is_symlink()) {
        return Err(not_a_link(&link.display().to_string()));
    }
    let current = read_current(dir)?;
    let current_present = current
        .as_ref()
        .is_some_and(|v| dir.join("releases").join(v).is_dir());
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Installed::default());
        }
        Err(e) => return Err(failed("read", dir, e)),
    };
    let mut entries: Vec<String> = rd
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            !n.starts_with('.') && n != "releases" && n != "current" && !exclude.contains(n)
        })
        .collect();
    entries.sort();
    Ok(Installed {
        current,
        current_present,
        entries,
    })
}

/// `current` is there, and not glidepath's link.
pub(crate) fn not_a_link(path: &str) -> DriverError {
    DriverError::Failed(format!(
        "{path} is not a symlink: glidepath's `current` links to releases/<version>; move it aside (adopt records what the install dir holds)"
    ))
}

/// Make what `dir` holds its first release `version` (see
/// [`Deployer::adopt`]): copied through a temporary directory renamed into
/// `releases/<version>`, then `current` pointed at it atomically.
pub fn adopt_sync(dir: &Path, version: &str, exclude: &[String]) -> DResult<String> {
    let found = installed_sync(dir, exclude)?;
    if let Some(v) = &found.current {
        return Ok(format!("already adopted (current -> releases/{v})"));
    }
    let releases = dir.join("releases");
    let dest = releases.join(version);
    let copied = if dest.is_dir() {
        format!("{} was already there", dest.display())
    } else {
        if found.entries.is_empty() {
            return Err(DriverError::Failed(format!(
                "nothing is installed in {}",
                dir.display()
            )));
        }
        fs::create_dir_all(&releases).map_err(|e| failed("create", &releases, e))?;
        let tmp = releases.join(format!(".{version}.adopting-{}", std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir(&tmp).map_err(|e| failed("create", &tmp, e))?;
        for name in &found.entries {
            if let Err(e) = copy_entry(&dir.join(name), &tmp.join(name)) {
                let _ = fs::remove_dir_all(&tmp);
                return Err(failed("copy", &dir.join(name), e));
            }
        }
        fs::rename(&tmp, &dest).map_err(|e| failed("rename into", &dest, e))?;
        format!(
            "copied {} into {}",
            found.entries.join(", "),
            dest.display()
        )
    };
    switch_sync(dir, version, usize::MAX, None)?;
    Ok(format!("{copied}; current -> releases/{version}"))
}

/// Keep the newest `keep` releases; never the current or previous one.
fn prune(dir: &Path, keep: usize, current: &str, previous: Option<&str>) -> Vec<String> {
    let Ok(rd) = fs::read_dir(dir.join("releases")) else {
        return vec![];
    };
    let mut all: Vec<(std::time::SystemTime, String)> = rd
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') {
                return None;
            }
            Some((e.metadata().and_then(|m| m.modified()).ok()?, name))
        })
        .collect();
    all.sort_by(|a, b| b.cmp(a));
    let mut pruned = Vec::new();
    for (i, (_, name)) in all.iter().enumerate() {
        if i < keep || name == current || Some(name.as_str()) == previous {
            continue;
        }
        if fs::remove_dir_all(dir.join("releases").join(name)).is_ok() {
            pruned.push(name.clone());
        }
    }
    pruned
}

impl LocalDeployer {
    /// Run blocking filesystem work off the runtime, bounded by the timeout.
    async fn blocking<T: Send + 'static>(
        &self,
        what: &str,
        f: impl FnOnce() -> DResult<T> + Send + 'static,
    ) -> DResult<T> {
        match tokio::time::timeout(self.timeout, tokio::task::spawn_blocking(f)).await {
            Err(_) => Err(DriverError::Failed(format!(
                "{what} timed out after {:?} (command_timeout)",
                self.timeout
            ))),
            Ok(r) => r.map_err(|e| DriverError::Failed(format!("deploy task failed: {e}")))?,
        }
    }
}

#[async_trait]
impl Deployer for LocalDeployer {
    async fn current(&self, t: &Target) -> DResult<Option<String>> {
        let dir = t.install_dir.clone();
        match self
            .blocking("reading current", move || read_current(&dir))
            .await?
        {
            Some(v) => reported_version(t, "the `current` link", &v).map(Some),
            None => Ok(None),
        }
    }
    async fn stage(&self, t: &Target, release: &Release) -> DResult<String> {
        let (dir, rel) = (t.install_dir.clone(), release.clone());
        self.blocking("staging", move || stage_sync(&dir, &rel))
            .await
    }
    async fn switch(&self, t: &Target, version: &str) -> DResult<String> {
        let (dir, v, keep) = (t.install_dir.clone(), version.to_string(), self.keep);
        let known = self.known.iter().find(|r| r.version == version).cloned();
        self.blocking("switching", move || {
            switch_sync(&dir, &v, keep, known.as_ref())
        })
        .await
    }
    async fn check_writable(&self, t: &Target) -> DResult<String> {
        let dir = t.install_dir.join("releases");
        self.blocking("checking the install dir", move || {
            std::fs::create_dir_all(&dir).map_err(|e| failed("create", &dir, e))?;
            let probe = dir.join(format!(".glidepath-write-test-{}", std::process::id()));
            std::fs::write(&probe, b"").map_err(|e| failed("write in", &dir, e))?;
            let _ = std::fs::remove_file(&probe);
            Ok(format!("{} is writable", dir.display()))
        })
        .await
    }

    async fn has_release(&self, t: &Target, version: &str) -> DResult<bool> {
        Ok(t.install_dir.join("releases").join(version).is_dir())
    }

    async fn installed(&self, t: &Target, exclude: &[String]) -> DResult<Installed> {
        let (dir, ex) = (t.install_dir.clone(), exclude.to_vec());
        let mut found = self
            .blocking("reading the install dir", move || installed_sync(&dir, &ex))
            .await?;
        if let Some(v) = &found.current {
            found.current = Some(reported_version(t, "the `current` link", v)?);
        }
        Ok(found)
    }

    async fn adopt(&self, t: &Target, version: &str, exclude: &[String]) -> DResult<String> {
        let (dir, v, ex) = (t.install_dir.clone(), version.to_string(), exclude.to_vec());
        self.blocking("adopting", move || adopt_sync(&dir, &v, &ex))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release(dir: &Path, v: &str) -> Release {
        let f = dir.join(format!("art-{v}")).join("app.bin");
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(&f, format!("binary {v}")).unwrap();
        Release {
            version: v.into(),
            sha256: artifact_sha256(&f).unwrap(),
            artifact: f,
        }
    }

    #[test]
    fn stage_switch_keep_and_prune() {
        let tmp = tempfile::tempdir().unwrap();
        let node = tmp.path().join("node");
        let base = std::time::SystemTime::now() - std::time::Duration::from_secs(100);
        for (i, v) in ["1", "2", "3", "4"].into_iter().enumerate() {
            let r = release(tmp.path(), v);
            assert!(stage_sync(&node, &r).unwrap().contains("verified"));
            // distinct mtimes give the keep order without waiting on the clock
            let d = fs::File::open(node.join("releases").join(v)).unwrap();
            d.set_modified(base + std::time::Duration::from_secs(i as u64 * 10))
                .unwrap();
            assert!(
                stage_sync(&node, &r).unwrap().contains("already staged"),
                "staging is idempotent"
            );
            switch_sync(&node, v, 2, Some(&r)).unwrap();
            assert_eq!(
                switch_sync(&node, v, 2, Some(&r)).unwrap(),
                format!("current already → {v}")
            );
        }
        assert_eq!(read_current(&node).unwrap().as_deref(), Some("4"));
        let mut kept: Vec<String> = fs::read_dir(node.join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        kept.sort();
        assert_eq!(
            kept,
            ["3", "4"],
            "keep_releases = 2 keeps current and previous"
        );
        assert_eq!(
            fs::read_to_string(node.join("current/app.bin")).unwrap(),
            "binary 4"
        );
        // back to the previous release
        assert!(switch_sync(&node, "3", 2, None)
            .unwrap()
            .starts_with("current → 3 (was 4)"));
        assert!(switch_sync(&node, "1", 2, None)
            .unwrap_err()
            .to_string()
            .contains("release 1 is not on the node"));
    }

    /// `adopt_sync` copies the install (links as links, hidden entries,
    /// `releases`, `current` and the excluded ones left out), points
    /// `current` at it, leaves the originals, and is idempotent; a
    /// `current` that is not a link, or an empty dir, is refused.
    #[test]
    fn adopting_an_install_makes_it_the_first_release() {
        let tmp = tempfile::tempdir().unwrap();
        let node = tmp.path().join("node");
        fs::create_dir_all(node.join("bin")).unwrap();
        fs::write(node.join("bin/app"), "v1").unwrap();
        std::os::unix::fs::symlink("bin/app", node.join("app")).unwrap();
        fs::write(node.join(".hidden"), "x").unwrap();
        fs::write(node.join("app.log"), "log").unwrap();
        let ex = vec!["app.log".to_string()];
        assert_eq!(installed_sync(&node, &ex).unwrap().entries, ["app", "bin"]);
        let msg = adopt_sync(&node, "1.4", &ex).unwrap();
        assert!(msg.ends_with("current -> releases/1.4"), "{msg}");
        let r = node.join("releases/1.4");
        assert_eq!(fs::read_to_string(r.join("bin/app")).unwrap(), "v1");
        assert_eq!(fs::read_link(r.join("app")).unwrap(), Path::new("bin/app"));
        assert!(!r.join("app.log").exists() && !r.join(".hidden").exists());
        assert!(node.join("bin/app").is_file(), "the original stays");
        assert_eq!(read_current(&node).unwrap().as_deref(), Some("1.4"));
        assert_eq!(
            adopt_sync(&node, "9", &ex).unwrap(),
            "already adopted (current -> releases/1.4)"
        );
        let other = tmp.path().join("other");
        fs::create_dir_all(other.join("current")).unwrap();
        let err = installed_sync(&other, &[]).unwrap_err().to_string();
        assert!(err.contains("is not a symlink"), "{err}");
        let empty = tmp.path().join("empty");
        fs::create_dir_all(&empty).unwrap();
        let err = adopt_sync(&empty, "1", &[]).unwrap_err().to_string();
        assert!(err.contains("nothing is installed"), "{err}");
        assert!(!empty.join("current").exists());
    }

    #[test]
    fn a_copy_that_does_not_match_the_checksum_is_refused_and_cleaned_up() {
        let tmp = tempfile::tempdir().unwrap();
        let node = tmp.path().join("node");
        let mut r = release(tmp.path(), "2");
        r.sha256 = "0".repeat(64);
        let err = stage_sync(&node, &r).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch"), "{err}");
        assert!(!node.join("releases/2").exists());
        let leftovers: Vec<_> = fs::read_dir(node.join("releases")).unwrap().collect();
        assert!(leftovers.is_empty(), "no staging directory left behind");
    }

    #[test]
    fn a_tampered_staged_release_is_staged_again_and_never_switched_to() {
        let tmp = tempfile::tempdir().unwrap();
        let node = tmp.path().join("node");
        let a = tmp.path().join("art");
        fs::create_dir_all(a.join("bin")).unwrap();
        fs::write(a.join("bin/app"), "good").unwrap();
        let r = Release {
            version: "2".into(),
            sha256: artifact_sha256(&a).unwrap(),
            artifact: a,
        };
        stage_sync(&node, &r).unwrap();
        let app = node.join("releases/2/bin/app");
        // tampered after staging; the marker still says the right sha256
        fs::write(&app, "evil").unwrap();
        let msg = stage_sync(&node, &r).unwrap();
        assert!(msg.contains("did not match"), "{msg}");
        assert_eq!(fs::read_to_string(&app).unwrap(), "good");
        // an extra file planted next to the release counts too
        fs::write(node.join("releases/2/bin/evil.so"), "x").unwrap();
        let msg = stage_sync(&node, &r).unwrap();
        assert!(msg.contains("did not match"), "{msg}");
        assert!(!node.join("releases/2/bin/evil.so").exists());
        assert!(stage_sync(&node, &r)
            .unwrap()
            .contains("already staged, sha256 re-verified"));
        // tampered between stage and switch: the switch is refused
        fs::write(&app, "evil").unwrap();
        let err = switch_sync(&node, "2", 3, Some(&r))
            .unwrap_err()
            .to_string();
        assert!(err.contains("changed after staging"), "{err}");
        assert_eq!(
            read_current(&node).unwrap(),
            None,
            "current was not switched"
        );
        // a file artifact: only the file (and the marker) may be there
        let mut f = release(tmp.path(), "3");
        stage_sync(&node, &f).unwrap();
        fs::write(node.join("releases/3/extra"), "x").unwrap();
        let err = switch_sync(&node, "3", 3, Some(&f))
            .unwrap_err()
            .to_string();
        assert!(err.contains("it also holds extra"), "{err}");
        f.sha256 = "0".repeat(64);
        assert!(stage_sync(&node, &f).is_err());
    }

    #[test]
    fn symlinks_are_staged_as_links_and_special_files_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let node = tmp.path().join("node");
        let a = tmp.path().join("art");
        fs::create_dir_all(a.join("conf")).unwrap();
        fs::write(a.join("conf/app.toml"), "x = 1").unwrap();
        std::os::unix::fs::symlink("conf/app.toml", a.join("app.toml")).unwrap();
        let r = Release {
            version: "2".into(),
            sha256: artifact_sha256(&a).unwrap(),
            artifact: a.clone(),
        };
        stage_sync(&node, &r).unwrap();
        let staged = node.join("releases/2/app.toml");
        assert_eq!(
            fs::read_link(&staged).unwrap(),
            Path::new("conf/app.toml"),
            "kept as a link"
        );
        // a link out of the artifact is refused, its target never copied
        std::os::unix::fs::symlink("/etc/passwd", a.join("passwd")).unwrap();
        let r3 = Release {
            version: "3".into(),
            sha256: r.sha256.clone(),
            artifact: a.clone(),
        };
        let err = stage_sync(&node, &r3).unwrap_err().to_string();
        assert!(err.contains("an absolute path"), "{err}");
        assert!(!node.join("releases/3").exists());
        fs::remove_file(a.join("passwd")).unwrap();
        // a FIFO is refused, not read (this would hang)
        let c = std::ffi::CString::new(a.join("pipe").as_os_str().as_encoded_bytes()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        let (tx, rx) = std::sync::mpsc::channel();
        let n = node.clone();
        std::thread::spawn(move || {
            let _ = tx.send(stage_sync(&n, &r3).map_err(|e| e.to_string()));
        });
        let err = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .expect("staging hung on a FIFO")
            .unwrap_err();
        assert!(err.contains("FIFO"), "{err}");
        let leftovers: Vec<_> = fs::read_dir(node.join("releases"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, ["2"], "no staging directory left behind");
    }

    #[tokio::test]
    async fn a_current_link_that_is_not_a_version_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("node");
        fs::create_dir_all(dir.join("releases")).unwrap();
        std::os::unix::fs::symlink("releases/1;touch PWNED", dir.join("current")).unwrap();
        let t = Target {
            name: "api-1".into(),
            address: "127.0.0.1:1".into(),
            install_dir: dir,
            ..Default::default()
        };
        let err = LocalDeployer::new(3)
            .current(&t)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("node api-1 reports \"1;touch PWNED\""),
            "{err}"
        );
    }

    #[test]
    fn directory_artifacts_are_hashed_by_path_and_content() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        fs::create_dir_all(a.join("bin")).unwrap();
        fs::write(a.join("bin/app"), "x").unwrap();
        fs::write(a.join("config.toml"), "y").unwrap();
        let sum = artifact_sha256(&a).unwrap();
        let r = Release {
            version: "7".into(),
            artifact: a.clone(),
            sha256: sum.clone(),
        };
        stage_sync(&tmp.path().join("node"), &r).unwrap();
        assert_eq!(
            fs::read_to_string(tmp.path().join("node/releases/7/bin/app")).unwrap(),
            "x"
        );
        fs::rename(a.join("config.toml"), a.join("config2.toml")).unwrap();
        assert_ne!(
            artifact_sha256(&a).unwrap(),
            sum,
            "renaming a file changes the hash"
        );
    }
}
