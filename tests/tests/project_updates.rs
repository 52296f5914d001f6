//! Git projects on a real mesh: the coordinator's own hybrid control node (podman mode, the EE
//! image) runs project updates as `local` work that checks a bare repository served over
//! `file://` out into the project cache, the coordinator stores the checkout as an archive, and
//! jobs launched from the project run that revision and record it. A job against a project
//! whose revision is stale waits for the update it started; a failed update leaves the
//! project's revision as it was and ends the jobs waiting for it as `error`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use meshrun_tests::api;
use meshrun_tests::mesh::Mesh;
use meshrun_tests::mesh::managed_control::ManagedOptions;
use reqwest::StatusCode;
use serde_json::{Value, json};

const INVENTORY: &str = "localhost ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\"\n";

/// Runs git in `dir` with a fixed identity; returns its stdout, trimmed.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "meshrun tests")
        .env("GIT_AUTHOR_EMAIL", "tests@meshrun.invalid")
        .env("GIT_COMMITTER_NAME", "meshrun tests")
        .env("GIT_COMMITTER_EMAIL", "tests@meshrun.invalid")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("git");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A bare repository and a working clone that pushes to it.
struct Repo {
    bare: PathBuf,
    work: PathBuf,
}

impl Repo {
    fn new(root: &Path) -> Repo {
        let bare = root.join("site.git");
        let work = root.join("work");
        std::fs::create_dir_all(&work).unwrap();
        git(
            root,
            &["init", "--bare", "--initial-branch=main", "site.git"],
        );
        git(&work, &["init", "--initial-branch=main"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        Repo { bare, work }
    }

    /// Commits `hello.yml` printing `marker` and pushes; returns the commit.
    fn commit(&self, marker: &str) -> String {
        std::fs::write(
            self.work.join("hello.yml"),
            format!(
                "- hosts: all\n  gather_facts: false\n  tasks:\n    - debug:\n        msg: \"{marker}\"\n"
            ),
        )
        .unwrap();
        git(&self.work, &["add", "hello.yml"]);
        git(&self.work, &["commit", "-q", "-m", marker]);
        git(&self.work, &["push", "-q", "origin", "main"]);
        git(&self.bare, &["rev-parse", "HEAD"])
    }

    fn url(&self) -> String {
        format!("file://{}", self.bare.display())
    }
}

fn create_project(mesh: &Mesh, name: &str, url: &str, cache_timeout: i64) -> i64 {
    let (status, p) = api::post(
        mesh,
        "/api/v2/projects/",
        &json!({"name": name, "scm_type": "git", "scm_url": url, "update_cache_timeout": cache_timeout}),
    );
    assert_eq!(status, StatusCode::CREATED, "{p:#}");
    p["id"].as_i64().unwrap()
}

fn project(mesh: &Mesh, id: i64) -> Value {
    let (status, p) = api::get(mesh, &format!("/api/v2/projects/{id}/"));
    assert_eq!(status, StatusCode::OK, "{p:#}");
    p
}

fn update_row(mesh: &Mesh, id: i64) -> Value {
    let (status, u) = api::get(mesh, &format!("/api/v2/project_updates/{id}/"));
    assert_eq!(status, StatusCode::OK, "{u:#}");
    u
}

fn update_stdout(mesh: &Mesh, id: i64) -> String {
    meshrun_tests::api::get_text(
        mesh,
        &format!("/api/v2/project_updates/{id}/stdout/?format=txt"),
    )
    .1
}

/// Waits for project update `id` to end and returns it.
fn wait_update(mesh: &Mesh, id: i64) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(180);
    loop {
        let u = update_row(mesh, id);
        if matches!(
            u["status"].as_str(),
            Some("successful" | "failed" | "error" | "canceled")
        ) {
            return u;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "project update {id} never ended: {u:#}\n--- coordinator log\n{}",
            mesh.coordinator_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn start_update(mesh: &Mesh, project: i64) -> i64 {
    let (status, u) = api::post(
        mesh,
        &format!("/api/v2/projects/{project}/update/"),
        &json!({}),
    );
    assert_eq!(status, StatusCode::CREATED, "{u:#}");
    assert_eq!(u["type"], "project_update", "{u:#}");
    u["id"].as_i64().unwrap()
}

fn assert_successful(mesh: &Mesh, u: &Value) {
    let id = u["id"].as_i64().unwrap();
    assert_eq!(
        u["status"],
        "successful",
        "{u:#}\n--- output\n{}\n--- coordinator log\n{}",
        update_stdout(mesh, id),
        mesh.coordinator_log()
    );
}

fn job_body(project: i64) -> Value {
    json!({"project_id": project, "playbook": "hello.yml", "inventory": INVENTORY})
}

fn run_job(mesh: &Mesh, project: i64) -> Value {
    let id = api::submit_job(mesh, &job_body(project));
    let job = api::wait_job_end(mesh, id);
    assert_eq!(
        job["status"],
        "successful",
        "{job:#}\n--- output\n{}",
        api::job_stdout(mesh, id)
    );
    job
}

#[test]
fn git_projects_are_checked_out_on_the_control_node_and_jobs_run_their_revision() {
    let mut mesh = Mesh::start(&[]);
    let repos = mesh.dir().join("repos");
    std::fs::create_dir_all(&repos).unwrap();
    let repo = Repo::new(&repos);
    let first = repo.commit("marker-one");
    mesh.start_managed_control_with(
        "control",
        "hybrid",
        ManagedOptions {
            podman: true,
            // The repository is read through a read-only mount, which the node must allow.
            agent_extra: format!("volume_roots = [\"{}\"]\n", repos.display()),
            coordinator_extra: "[projects]\nallow_file_urls = true\n".into(),
            ..ManagedOptions::default()
        },
    );
    api::wait_ready(&mesh, "control");

    // Refused URLs never become projects.
    for bad in [
        "ext::sh -c touch% /tmp/x",
        "--upload-pack=touch /tmp/x",
        "http://h/x",
    ] {
        let (status, body) = api::post(
            &mesh,
            "/api/v2/projects/",
            &json!({"name": "bad", "scm_type": "git", "scm_url": bad}),
        );
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body:#}");
    }

    // A first update checks the repository's HEAD out and stores it.
    let site = create_project(&mesh, "site", &repo.url(), 3600);
    assert_eq!(project(&mesh, site)["scm_revision"], "");
    let u1 = start_update(&mesh, site);
    let done = wait_update(&mesh, u1);
    assert_successful(&mesh, &done);
    assert_eq!(done["execution_node"], "control", "{done:#}");
    assert_eq!(done["controller_node"], "control", "{done:#}");
    assert_eq!(done["scm_revision"], first.as_str(), "{done:#}");
    let out = update_stdout(&mesh, u1);
    assert!(out.contains(&format!("checked out {first}")), "{out}");
    // It ran in the EE image, as podman-mode `local` work of the control node.
    let agent_log = std::fs::read_to_string(mesh.dir().join("control/agent.log")).unwrap();
    assert!(
        agent_log.contains("starting the job container")
            && agent_log.contains("image=localhost/meshrun-ee:latest"),
        "{agent_log}"
    );
    let p = project(&mesh, site);
    assert_eq!(p["scm_revision"], first.as_str(), "{p:#}");
    assert_eq!(p["last_update_id"], u1, "{p:#}");
    let archive = p["archive_sha256"].as_str().unwrap().to_string();
    assert_eq!(archive.len(), 64, "{p:#}");
    let (_, updates) = api::get(&mesh, "/api/v2/project_updates/");
    assert!(
        updates["results"]
            .as_array()
            .unwrap()
            .iter()
            .any(|u| u["id"] == u1),
        "{updates:#}"
    );

    // A job from the project runs that revision (fresh: no second update) and records it.
    let job = run_job(&mesh, site);
    let stdout = api::job_stdout(&mesh, job["id"].as_i64().unwrap());
    assert!(stdout.contains("marker-one"), "{stdout}");
    assert_eq!(job["scm_revision"], first.as_str(), "{job:#}");
    assert_eq!(job["project_sha256"], archive.as_str(), "{job:#}");
    assert_eq!(job["project_id"], site, "{job:#}");
    assert_eq!(project(&mesh, site)["last_update_id"], u1);

    // A second commit and an update (through the CLI) change the revision.
    let second = repo.commit("marker-two");
    assert_ne!(first, second);
    let out = mesh.meshrun(&["project", "update", &site.to_string(), "--follow"]);
    assert!(
        out.status.success(),
        "meshrun project update: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let p = project(&mesh, site);
    assert_eq!(p["scm_revision"], second.as_str(), "{p:#}");
    assert_ne!(p["archive_sha256"], archive.as_str(), "{p:#}");
    let list = mesh.meshrun(&["project", "list"]);
    assert!(
        String::from_utf8_lossy(&list.stdout).contains(&second[..12]),
        "{}",
        String::from_utf8_lossy(&list.stdout)
    );
    let inventory = mesh.dir().join("hosts");
    std::fs::write(&inventory, INVENTORY).unwrap();
    let out = mesh.meshrun(&[
        "job",
        "run",
        "--project-id",
        &site.to_string(),
        "hello.yml",
        "-i",
        inventory.to_str().unwrap(),
        "--follow",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("marker-two"),
        "meshrun job run --project-id: {text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A project never updated: the job starts an update, waits for it, then runs its revision.
    let fresh = create_project(&mesh, "fresh", &repo.url(), 0);
    let (status, job) = api::post(&mesh, "/api/v2/jobs/", &job_body(fresh));
    assert_eq!(status, StatusCode::CREATED, "{job:#}");
    let waiting_for = project(&mesh, fresh)["last_update_id"].as_i64().unwrap();
    assert_eq!(
        job["job_explanation"],
        format!("waiting for project update {waiting_for}"),
        "{job:#}"
    );
    assert_eq!(job["project_sha256"], "", "{job:#}");
    let id = job["id"].as_i64().unwrap();
    let job = api::wait_job_end(&mesh, id);
    assert_eq!(
        job["status"],
        "successful",
        "{job:#}\n{}",
        api::job_stdout(&mesh, id)
    );
    assert_successful(&mesh, &update_row(&mesh, waiting_for));
    assert_eq!(job["scm_revision"], second.as_str(), "{job:#}");
    assert!(api::job_stdout(&mesh, id).contains("marker-two"));

    // A playbook the updated revision does not have: the job ends as error once it is known.
    let id = api::submit_job(
        &mesh,
        &json!({"project_id": fresh, "playbook": "missing.yml", "inventory": INVENTORY}),
    );
    let job = api::wait_job_end(&mesh, id);
    assert_eq!(job["status"], "error", "{job:#}");
    assert!(
        job["job_explanation"]
            .as_str()
            .unwrap()
            .contains(&format!("\"missing.yml\" is not in revision {second}")),
        "{job:#}"
    );

    // The repository breaks: the update fails and the project keeps the revision it had.
    let kept = repos.join("site.git.kept");
    std::fs::rename(&repo.bare, &kept).unwrap();
    std::fs::create_dir_all(&repo.bare).unwrap();
    let u3 = start_update(&mesh, site);
    let failed = wait_update(&mesh, u3);
    // git's own failure: the playbook fails.
    assert_eq!(failed["status"], "failed", "{failed:#}");
    let p = project(&mesh, site);
    assert_eq!(p["scm_revision"], second.as_str(), "{p:#}");
    assert_eq!(p["last_update_id"], u3, "{p:#}");
    std::fs::remove_dir(&repo.bare).unwrap();
    std::fs::rename(&kept, &repo.bare).unwrap();

    // A project whose repository does not exist: the job waiting for its update ends as error
    // naming that update.
    let gone = create_project(
        &mesh,
        "gone",
        &format!("file://{}", repos.join("nonexistent.git").display()),
        0,
    );
    let id = api::submit_job(&mesh, &job_body(gone));
    let job = api::wait_job_end(&mesh, id);
    let update = project(&mesh, gone)["last_update_id"].as_i64().unwrap();
    assert_eq!(job["status"], "error", "{job:#}");
    let explanation = job["job_explanation"].as_str().unwrap();
    assert!(
        explanation.contains(&format!("project update {update}")),
        "{explanation}"
    );
    // In podman mode the node refuses to mount a repository path that does not exist.
    assert_eq!(update_row(&mesh, update)["status"], "error");
    assert!(explanation.contains("cannot be resolved"), "{explanation}");
    assert_eq!(project(&mesh, gone)["scm_revision"], "");
}
