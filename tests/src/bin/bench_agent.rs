//! `make bench-agent`: what meshrun-agent adds to a job, measured against the real alternative on
//! the same machine in the same run.
//!
//! - Overhead: the same job stream through `podman run -i --init <EE> ansible-runner worker`
//!   directly, and through `meshrun-agent worker` in podman mode (same image, same base options),
//!   interleaved; medians of the wall times and their difference.
//! - The agent's peak RSS (VmHWM it logs when a job ends).
//! - `--worker-info`: meshrun-agent against `ansible-runner worker --worker-info`.
//! - The release binary's size.
//!
//! Run with a release build: `cargo run --release -p meshrun-tests --bin bench-agent [RUNS]`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meshrun_shared::runner_stream::{RunnerKwargs, write_transmit_stream};
use meshrun_tests::env;
use meshrun_tests::mesh::agent_config;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn timed(cmd: &mut Command, stdin: &Path) -> Duration {
    let t = Instant::now();
    let out = cmd
        .stdin(std::fs::File::open(stdin).expect("stream"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run");
    let took = t.elapsed();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("\"status\": \"successful\"") || text.contains("\"status\":\"successful\""),
        "the job did not succeed: {}\n{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10);
    let image = env::ee_image();
    let work = tempfile::tempdir().expect("temp dir");
    let pdd = work.path().join("pdd");
    std::fs::create_dir_all(pdd.join("project")).unwrap();
    std::fs::create_dir_all(pdd.join("inventory")).unwrap();
    std::fs::write(
        pdd.join("inventory/hosts"),
        "localhost ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\"\n",
    )
    .unwrap();
    std::fs::write(
        pdd.join("project/p.yml"),
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.debug: {msg: bench}\n",
    )
    .unwrap();
    let stream = work.path().join("stream");
    let kwargs = RunnerKwargs {
        playbook: Some("p.yml".into()),
        ..RunnerKwargs::new("1")
    };
    write_transmit_stream(
        std::fs::File::create(&stream).unwrap(),
        &kwargs.to_map(),
        Some(&pdd),
        None,
    )
    .expect("stream");
    let agent_dir = work.path().join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    let config = agent_dir.join("agent.toml");
    std::fs::write(&config, agent_config("bench", &agent_dir, true, "")).unwrap();
    let agent = env::bin("meshrun-agent");

    let direct = || {
        let mut c = Command::new("podman");
        c.env("CONTAINERS_CONF", env::containers_conf()).args([
            "run",
            "--rm",
            "--interactive",
            "--init",
            "--log-driver=none",
            "--pull=never",
            "--network=host",
            image,
            "ansible-runner",
            "worker",
            "--private-data-dir=/runner",
            "--delete",
        ]);
        c
    };
    let through_agent = || {
        let mut c = Command::new(&agent);
        c.arg("--config").arg(&config).args(["worker", "--delete"]);
        c
    };
    // Warm up podman's and the image's caches once each.
    timed(&mut direct(), &stream);
    timed(&mut through_agent(), &stream);
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        a.push(timed(&mut direct(), &stream));
        b.push(timed(&mut through_agent(), &stream));
    }
    let (ma, mb) = (median(a), median(b));
    let log = std::fs::read_to_string(agent_dir.join("agent.log")).unwrap_or_default();
    let peak: Vec<u64> = log
        .lines()
        .filter_map(|l| l.split("peak_rss_kib=").nth(1))
        .filter_map(|v| v.split_whitespace().next()?.parse().ok())
        .collect();
    let peak_max = peak.iter().max().copied().unwrap_or(0);

    let info_runs = runs * 2;
    let time_n = |cmd: &mut dyn FnMut() -> Command| -> Duration {
        let mut v = Vec::new();
        for _ in 0..info_runs {
            let t = Instant::now();
            let out = cmd().stdin(Stdio::null()).output().expect("worker-info");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stdout)
            );
            v.push(t.elapsed());
        }
        median(v)
    };
    let runner_info = time_n(&mut || {
        let mut c = Command::new(env::ansible_runner());
        c.args(["worker", "--worker-info"]);
        c
    });
    let agent_info = time_n(&mut || {
        let mut c = Command::new(&agent);
        c.arg("--config")
            .arg(&config)
            .args(["worker", "--worker-info"]);
        c
    });
    let size = std::fs::metadata(&agent).map(|m| m.len()).unwrap_or(0);

    println!(
        "meshrun-agent benchmark ({runs} interleaved runs, medians; {})",
        agent.display()
    );
    println!("| measure | podman/ansible-runner alone | through meshrun-agent | difference |");
    println!("|---|---|---|---|");
    println!(
        "| job wall time | {:.1} ms | {:.1} ms | {:+.1} ms ({:.3}x) |",
        ms(ma),
        ms(mb),
        ms(mb) - ms(ma),
        mb.as_secs_f64() / ma.as_secs_f64()
    );
    println!(
        "| --worker-info | {:.1} ms | {:.1} ms | {:.1}x faster |",
        ms(runner_info),
        ms(agent_info),
        runner_info.as_secs_f64() / agent_info.as_secs_f64()
    );
    println!(
        "| agent peak RSS | | {:.1} MiB (max of {} jobs) | |",
        peak_max as f64 / 1024.0,
        peak.len()
    );
    println!(
        "| agent binary size | | {:.2} MiB | |",
        size as f64 / (1024.0 * 1024.0)
    );
}
