//! `meshrun-dist-docs OUT_DIR`: the man pages and shell completions the packages ship, rendered
//! from the same clap definitions the binaries parse (so they cannot drift from `--help`).
//! Lives here, not in the product binaries, to keep those lean; `packaging/dist/build.sh` runs it.
//!
//! Writes `OUT_DIR/man/<command>/<command>[-<sub>...].1` for every command and subcommand, and
//! `OUT_DIR/completions/{bash,zsh,fish}/` for `meshrun-agent`, `meshrun-coordinator`, `meshrun`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: meshrun-dist-docs OUT_DIR");
        return ExitCode::from(64);
    };
    match generate(&out) {
        Ok(count) => {
            println!("{count} files in {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("meshrun-dist-docs: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The packaged commands, each with the version of the workspace (the packages' version).
fn commands() -> Vec<clap::Command> {
    vec![
        meshrun_agent::cli::Cli::command(),
        meshrun_coordinator::service_cli::Cli::command(),
        meshrun_coordinator::cli::Cli::command(),
    ]
}

fn generate(out: &Path) -> anyhow::Result<usize> {
    let man = out.join("man");
    for cmd in commands() {
        let dir = man.join(cmd.get_name());
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        clap_mangen::generate_to(cmd, &dir)
            .with_context(|| format!("cannot write man pages into {}", dir.display()))?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let dir = out.join("completions").join(shell.to_string());
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        for mut cmd in commands() {
            let name = cmd.get_name().to_string();
            clap_complete::generate_to(shell, &mut cmd, name, &dir).with_context(|| {
                format!("cannot write {shell} completions into {}", dir.display())
            })?;
        }
    }
    let mut count = 0;
    for dir in [man, out.join("completions")] {
        count += count_files(&dir)?;
    }
    Ok(count)
}

fn count_files(dir: &Path) -> anyhow::Result<usize> {
    let mut n = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            n += count_files(&entry.path())?;
        } else {
            n += 1;
        }
    }
    Ok(n)
}
