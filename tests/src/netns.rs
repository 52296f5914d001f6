//! Network namespaces a test creates for its nodes. Each namespace is joined to the root
//! namespace by a veth pair carrying a private /30 (`10.213.N.0/30`: `.1` on the root side, `.2`
//! inside), and is removed when dropped, together with every process still inside it (all of
//! them were started by the test: the namespace is the test's own) and its veth pair.
//!
//! Processes are placed in a namespace with `nsenter --net=/run/netns/NAME` rather than
//! `ip netns exec`, which remounts `/sys` and hides the cgroup tree podman needs.
//!
//! Names are `meshrun-<pid>x<seq>-<node>`, unique per test process; the /30 is chosen under a
//! file lock from the `10.213.*` addresses no interface of the root namespace holds yet, so
//! test binaries running in parallel never pick the same one.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Serialises address allocation between test binaries (and threads of one).
const LOCK_FILE: &str = "/run/meshrun-netns.lock";
static SEQ: AtomicU32 = AtomicU32::new(0);

/// A network namespace with one veth link to the root namespace.
#[derive(Debug)]
pub struct NetNs {
    /// `meshrun-<pid>x<seq>-<node>`.
    pub name: String,
    /// The veth end in the root namespace.
    pub host_if: String,
    /// The root side's address (`10.213.N.1`): what the namespace reaches the test through.
    pub host_addr: Ipv4Addr,
    /// The namespace side's address (`10.213.N.2`).
    pub ns_addr: Ipv4Addr,
}

/// Runs `ip ARGS`, panicking with its stderr when it fails.
fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The third octets of every `10.213.*` address in the root namespace.
fn used_subnets() -> Vec<u8> {
    let out = Command::new("ip")
        .args(["-o", "-4", "addr", "show"])
        .output()
        .expect("ip addr show");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|w| w.strip_prefix("10.213."))
        .filter_map(|rest| rest.split('.').next()?.parse().ok())
        .collect()
}

impl NetNs {
    /// Creates the namespace for `node` with its veth pair, both ends up, loopback up inside.
    pub fn create(node: &str) -> NetNs {
        let pid = std::process::id();
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let short: String = node
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .take(12)
            .collect();
        let name = format!("meshrun-{pid}x{seq}-{short}");
        // Interface names have at most 15 characters.
        let host_if = format!("mr{pid}h{seq}");
        let ns_if = format!("mr{pid}n{seq}");
        assert!(host_if.len() <= 15, "interface name {host_if} is too long");
        ip(&["netns", "add", &name]);
        // From here on, dropping `ns` removes what exists of it.
        let mut ns = NetNs {
            name,
            host_if,
            host_addr: Ipv4Addr::UNSPECIFIED,
            ns_addr: Ipv4Addr::UNSPECIFIED,
        };
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(LOCK_FILE)
            .expect("netns lock file");
        lock.lock().expect("netns lock");
        let used = used_subnets();
        let n = (0..=255u8)
            .find(|n| !used.contains(n))
            .expect("a free 10.213.N.0/30");
        ns.host_addr = Ipv4Addr::new(10, 213, n, 1);
        ns.ns_addr = Ipv4Addr::new(10, 213, n, 2);
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &ns_if,
            "netns",
            &ns.name,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_addr),
            "dev",
            &ns.host_if,
        ]);
        drop(lock);
        ip(&["link", "set", &ns.host_if, "up"]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{}/30", ns.ns_addr),
            "dev",
            &ns_if,
        ]);
        ip(&["-n", &ns.name, "link", "set", &ns_if, "up"]);
        ns
    }

    /// `/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// A command that runs `program` inside the namespace (`nsenter` execs it: the child's PID
    /// is the program's).
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(program);
        cmd
    }

    /// A TCP socket listening on an ephemeral port of the namespace's own loopback: a thread
    /// enters the namespace just to make it (a socket stays in the namespace it was made in).
    /// Nodes inside dial it at `127.0.0.1`, the address every node certificate carries.
    pub fn bind_loopback(&self) -> std::net::TcpListener {
        let path = self.path();
        std::thread::spawn(move || {
            let ns = std::fs::File::open(&path)
                .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .unwrap_or_else(|e| panic!("enter {}: {e}", path.display()));
            std::net::TcpListener::bind("127.0.0.1:0").expect("listen inside the namespace")
        })
        .join()
        .expect("the namespace thread")
    }

    /// PIDs of the processes inside the namespace.
    pub fn pids(&self) -> Vec<i32> {
        Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Everything inside was started by this test; what the nodes left behind goes too.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let pids = self.pids();
            if pids.is_empty() || Instant::now() > deadline {
                break;
            }
            for p in pids {
                let _ = kill(Pid::from_raw(p), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
        // Gone with the namespace normally; deleted explicitly in case a process held it.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
    }
}
