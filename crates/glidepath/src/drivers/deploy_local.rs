//! `kind = "local"`: releases live in `<install_dir>/releases/<version>`,
//! `<install_dir>/current` is a symlink switched atomically (a new link
//! renamed over the old one), and the newest `keep_releases` are kept.
//!
//! Staging copies into a temporary directory, verifies the checksum of the
//! *copy*, and renames it into place, so a crash never leaves a
//! half-written `releases/<version>`.

use super::{DResult, Deployer, DriverError, Target};
use crate::plan::{artifact_sha256, Release};
use async_trait::async_trait;
use std::fs;
use std::path::{Path, PathBuf};

pub struct LocalDeployer {
    keep: usize,
}

const MARKER: &str = ".glidepath-sha256";

impl LocalDeployer {
    pub fn new(keep: usize) -> Self {
        LocalDeployer { keep: keep.max(2) }
    }
}

fn failed(what: &str, p: &Path, e: std::io::Error) -> DriverError {
    DriverError::Failed(format!("{what} {}: {e}", p.display()))
}

/// The version `current` points at.
pub fn read_current(dir: &Path) -> DResult<Option<String>> {
    let link = dir.join("current");
    match fs::read_link(&link) {
        Ok(target) => Ok(target.file_name().map(|n| n.to_string_lossy().into_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(failed("read", &link, e)),
    }
}

fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    if src.is_file() {
        fs::create_dir_all(dst)?;
        fs::copy(
            src,
            dst.join(src.file_name().expect("artifact file has a name")),
        )?;
        return Ok(());
    }
    fs::create_dir_all(dst)?;
    for e in fs::read_dir(src)? {
        let e = e?;
        let p = e.path();
        let to = dst.join(e.file_name());
        if p.is_dir() {
            copy_tree(&p, &to)?;
        } else {
            fs::copy(&p, &to)?;
        }
    }
    Ok(())
}

/// Stage `release` into `dir/releases/<version>`; returns a description.
pub fn stage_sync(dir: &Path, release: &Release) -> DResult<String> {
    let releases = dir.join("releases");
    let dest = releases.join(&release.version);
    if let Ok(sum) = fs::read_to_string(dest.join(MARKER)) {
        if sum.trim() == release.sha256 {
            return Ok(format!(
                "{} already staged, sha256 verified earlier",
                dest.display()
            ));
        }
        fs::remove_dir_all(&dest).map_err(|e| failed("remove stale", &dest, e))?;
    }
    fs::create_dir_all(&releases).map_err(|e| failed("create", &releases, e))?;
    let tmp = releases.join(format!(
        ".{}.staging-{}",
        release.version,
        std::process::id()
    ));
    let _ = fs::remove_dir_all(&tmp);
    copy_tree(&release.artifact, &tmp).map_err(|e| failed("copy artifact into", &tmp, e))?;
    let copied: PathBuf = if release.artifact.is_file() {
        tmp.join(release.artifact.file_name().expect("file name"))
    } else {
        tmp.clone()
    };
    let sum = artifact_sha256(&copied).map_err(|e| failed("hash", &copied, e))?;
    if sum != release.sha256 {
        let _ = fs::remove_dir_all(&tmp);
        return Err(DriverError::Failed(format!(
            "checksum mismatch after copying to {}: got {sum}, the plan says {}",
            dest.display(),
            release.sha256
        )));
    }
    fs::write(tmp.join(MARKER), &sum).map_err(|e| failed("write", &tmp, e))?;
    if dest.exists() {
        fs::remove_dir_all(&dest).map_err(|e| failed("remove incomplete", &dest, e))?;
    }
    fs::rename(&tmp, &dest).map_err(|e| failed("rename into", &dest, e))?;
    Ok(format!(
        "staged {}, sha256 {}… verified",
        dest.display(),
        &sum[..12]
    ))
}

/// Point `current` at `releases/<version>` atomically, then prune.
pub fn switch_sync(dir: &Path, version: &str, keep: usize) -> DResult<String> {
    let target = dir.join("releases").join(version);
    if !target.is_dir() {
        return Err(DriverError::Failed(format!(
            "release {version} is not on the node ({} missing)",
            target.display()
        )));
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

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> DResult<T> + Send + 'static,
) -> DResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| DriverError::Failed(format!("deploy task failed: {e}")))?
}

#[async_trait]
impl Deployer for LocalDeployer {
    async fn current(&self, t: &Target) -> DResult<Option<String>> {
        let dir = t.install_dir.clone();
        blocking(move || read_current(&dir)).await
    }
    async fn stage(&self, t: &Target, release: &Release) -> DResult<String> {
        let (dir, rel) = (t.install_dir.clone(), release.clone());
        blocking(move || stage_sync(&dir, &rel)).await
    }
    async fn switch(&self, t: &Target, version: &str) -> DResult<String> {
        let (dir, v, keep) = (t.install_dir.clone(), version.to_string(), self.keep);
        blocking(move || switch_sync(&dir, &v, keep)).await
    }
    async fn check_writable(&self, t: &Target) -> DResult<String> {
        let dir = t.install_dir.join("releases");
        blocking(move || {
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
            switch_sync(&node, v, 2).unwrap();
            assert_eq!(
                switch_sync(&node, v, 2).unwrap(),
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
        assert!(switch_sync(&node, "3", 2)
            .unwrap()
            .starts_with("current → 3 (was 4)"));
        assert!(switch_sync(&node, "1", 2)
            .unwrap_err()
            .to_string()
            .contains("release 1 is not on the node"));
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
