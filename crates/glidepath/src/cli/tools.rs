//! `hash` (the sha256 a plan needs), `completions` and `man`: the commands
//! around the tool rather than the rollout.

use super::{print_json, Ctx};
use crate::{exit, Failure};
use clap::CommandFactory;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Serialize)]
struct Hashed {
    path: String,
    kind: &'static str,
    sha256: String,
}

#[derive(Serialize)]
struct HashList {
    artifacts: Vec<Hashed>,
}

/// `glidepath hash PATH…`: the sha256 of each artifact, as `validate` and
/// every deployer compute it (`sha256sum`'s layout); `--manifest` prints a
/// directory's manifest instead.
pub fn hash(ctx: &Ctx, paths: &[PathBuf], manifest: bool) -> Result<u8, Failure> {
    let fail = |p: &Path, e: std::io::Error| {
        Failure::new(
            exit::INVALID,
            format!(
                "{}: {e}\nhint: an artifact is a regular file or a directory",
                p.display()
            ),
        )
    };
    if manifest {
        for p in paths {
            let m = glidepath::artifact::dir_manifest(p).map_err(|e| fail(p, e))?;
            print!("{m}");
        }
        return Ok(exit::OK);
    }
    let mut out = Vec::new();
    for p in paths {
        let sha = glidepath::artifact::artifact_sha256(p).map_err(|e| fail(p, e))?;
        let kind = if p.is_dir() { "directory" } else { "file" };
        out.push(Hashed {
            path: p.display().to_string(),
            kind,
            sha256: sha,
        });
    }
    if ctx.json() {
        print_json(HashList { artifacts: out });
    } else {
        for h in &out {
            println!("{}  {}", h.sha256, h.path);
        }
    }
    Ok(exit::OK)
}

/// `glidepath completions SHELL`: the completion script, on stdout.
pub fn completions(shell: clap_complete::Shell) -> Result<u8, Failure> {
    let mut cmd = crate::Cli::command();
    clap_complete::generate(shell, &mut cmd, "glidepath", &mut std::io::stdout());
    Ok(exit::OK)
}

/// `glidepath man`: the man page on stdout; with `--dir`, `glidepath.1`
/// and one `glidepath-COMMAND.1` per command written there.
pub fn man(dir: Option<&Path>) -> Result<u8, Failure> {
    let cmd = crate::Cli::command();
    let render = |c: clap::Command| -> Result<Vec<u8>, Failure> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(c)
            .render(&mut buf)
            .map_err(|e| Failure::new(exit::INTERNAL, format!("man page: {e}")))?;
        Ok(buf)
    };
    let Some(dir) = dir else {
        use std::io::Write;
        let page = render(cmd)?;
        let _ = std::io::stdout().write_all(&page);
        return Ok(exit::OK);
    };
    let io =
        |p: &Path, e: std::io::Error| Failure::new(exit::INVALID, format!("{}: {e}", p.display()));
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut pages = vec![("glidepath".to_string(), cmd.clone())];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        // clap names are 'static: leaked once, in a command that then ends
        let name: &'static str =
            Box::leak(format!("glidepath-{}", sub.get_name()).into_boxed_str());
        pages.push((name.to_string(), sub.clone().name(name)));
    }
    for (name, c) in pages {
        let path = dir.join(format!("{name}.1"));
        std::fs::write(&path, render(c)?).map_err(|e| io(&path, e))?;
        println!("{}", path.display());
    }
    Ok(exit::OK)
}
