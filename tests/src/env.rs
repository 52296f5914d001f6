//! Where the things under test are.

use std::path::PathBuf;

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `target/debug` (or whichever profile built the running test or bench binary).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // Tests live in target/<profile>/deps/, binaries in target/<profile>/.
    let dir = exe.parent().expect("binary has a folder");
    match dir.file_name() {
        Some(name) if name == "deps" => dir.parent().expect("target/<profile>").to_path_buf(),
        _ => dir.to_path_buf(),
    }
}

/// A workspace binary; panics with the command to run when it has not been built.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace` (make test does) before the integration tests",
        p.display()
    );
    p
}

/// The real receptor binary (absolute path).
pub fn receptor() -> PathBuf {
    let p = std::env::var_os("MESHRUN_RECEPTOR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".tools/bin/receptor"));
    assert!(
        p.is_file(),
        "receptor not found at {}: run `make receptor` or set MESHRUN_RECEPTOR",
        p.display()
    );
    std::fs::canonicalize(&p).expect("canonical receptor path")
}

/// The venv holding the pinned ansible-runner and ansible-core.
pub fn venv() -> PathBuf {
    let p = std::env::var_os("MESHRUN_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv"));
    assert!(
        p.join("bin/ansible-runner").is_file(),
        "no ansible-runner in {}: run `make venv` or set MESHRUN_VENV",
        p.display()
    );
    p
}

/// The venv's `ansible-runner`.
pub fn ansible_runner() -> PathBuf {
    venv().join("bin/ansible-runner")
}

/// `PATH` with the venv's `bin/` first, as the agent sets it for its worker.
pub fn venv_path() -> std::ffi::OsString {
    let mut dirs = vec![venv().join("bin")];
    dirs.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(dirs).expect("PATH")
}

/// The podman settings the project ships (runc, explicit ulimits).
pub fn containers_conf() -> PathBuf {
    repo_root().join("packaging/podman/containers.conf")
}

/// The execution-environment image; panics with the command to build it when it is missing.
pub fn ee_image() -> &'static str {
    const IMAGE: &str = "localhost/meshrun-ee:latest";
    let present = std::process::Command::new("podman")
        .args(["image", "exists", IMAGE])
        .env("CONTAINERS_CONF", containers_conf())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        present,
        "{IMAGE} is missing: run `make ee-image` (make test does)"
    );
    IMAGE
}
