//! Node loss and return, through real receptor: an execution node whose processes are all
//! killed becomes `unavailable` (capacity 0, an error saying since when it is unroutable) once
//! the grace period has passed, and `ready` with its capacity again when it is started with the
//! same name and config. A node whose link stays up is never marked unavailable, sampled every
//! second for three minutes with periodic re-checks running.

use std::time::{Duration, Instant};

use meshrun_coordinator::discovery::reconcile::parse_stamp;
use meshrun_coordinator::store::{Instance, NodeState};
use meshrun_tests::mesh::{Mesh, NodeSpec};
use meshrun_tests::wait::eventually;

const PATIENCE: Duration = Duration::from_secs(90);
const GRACE_SECS: f64 = 3.0;

fn mesh_with_exec(coordinator_extra: &str) -> Mesh {
    let mut mesh = Mesh::start(&[NodeSpec::new("control", "control").listening()]);
    mesh.start_coordinator_with("control", coordinator_extra);
    mesh.add_node(&NodeSpec::new("hop", "hop").listening().dialing("control"));
    mesh.add_node(
        &NodeSpec::new("exec1", "execution")
            .dialing("hop")
            .agent_toml("[capacity]\nreserved_memory = \"2GiB\"\n"),
    );
    mesh
}

fn wait_for(mesh: &Mesh, what: &str, ok: impl Fn(&Instance) -> bool) -> Instance {
    eventually(what, PATIENCE, || mesh.instance("exec1").filter(|i| ok(i)))
}

#[test]
fn a_killed_node_is_unavailable_after_the_grace_and_ready_when_back() {
    let mut mesh = mesh_with_exec(&format!("[discovery]\ngrace_secs = {GRACE_SECS}\n"));
    let before = wait_for(&mesh, "exec1 to be ready", |i| {
        i.node_state == NodeState::Ready && i.capacity > 0
    });

    mesh.stop_node("exec1");
    // A health check cut short by the kill may briefly write its own error first.
    let lost = wait_for(&mesh, "exec1 to be unavailable as unroutable", |i| {
        i.node_state == NodeState::Unavailable && i.errors.starts_with("not routable from")
    });
    let log = mesh.coordinator_log();
    assert_eq!(lost.capacity, 0, "{lost:?}");
    let since = lost
        .unroutable_since
        .clone()
        .expect("unroutable_since is set");
    assert_eq!(
        lost.errors,
        format!("not routable from control since {since}"),
        "{log}"
    );
    // The state changed only after the grace period, counted from the first reading without
    // the node (a property of the stored times, not of how fast this machine is).
    let since_t = parse_stamp(&since).expect("a time");
    let changed_t = parse_stamp(&lost.modified).expect("a time");
    assert!(
        (changed_t - since_t).as_seconds_f64() > GRACE_SECS,
        "marked unavailable at {} though unroutable only since {since}",
        lost.modified
    );
    let last_seen = parse_stamp(lost.last_seen.as_deref().expect("last_seen")).expect("a time");
    assert!(last_seen <= since_t, "last seen before it was missed");

    mesh.restart_node("exec1");
    let back = wait_for(&mesh, "exec1 to be ready again", |i| {
        i.node_state == NodeState::Ready
    });
    assert_eq!(back.errors, "");
    assert_eq!(back.unroutable_since, None);
    assert_eq!(
        (back.cpu_capacity, back.mem_capacity, back.capacity),
        (before.cpu_capacity, before.mem_capacity, before.capacity),
        "same node, same capacity"
    );
    assert_eq!(back.uuid, before.uuid, "same node, same uuid");
    assert_eq!(back.id, before.id, "not registered twice");
    assert!(mesh.health_checks("exec1").len() >= 2);
}

#[test]
fn a_node_whose_link_stays_up_is_never_unavailable_for_three_minutes() {
    // A short grace and frequent re-checks make any flapping show.
    let mesh = mesh_with_exec(&format!(
        "[discovery]\ngrace_secs = {GRACE_SECS}\nhealth_check_interval_secs = 10\n"
    ));
    wait_for(&mesh, "exec1 to be ready", |i| {
        i.node_state == NodeState::Ready && i.capacity > 0
    });
    let checks_before = mesh.health_checks("exec1").len();
    let start = Instant::now();
    let mut samples = 0;
    while start.elapsed() < Duration::from_secs(180) {
        for inst in mesh.instances() {
            assert_eq!(
                inst.node_state,
                NodeState::Ready,
                "{} left ready after {:?} ({samples} samples): {inst:?}\n{}",
                inst.hostname,
                start.elapsed(),
                mesh.coordinator_log()
            );
            assert_eq!(inst.unroutable_since, None, "{inst:?}");
        }
        samples += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(samples >= 100, "only {samples} samples");
    let history = mesh.health_checks("exec1");
    assert!(
        history.len() >= checks_before + 10,
        "periodic re-checks ran: {} before, {} after",
        checks_before,
        history.len()
    );
    assert!(history.iter().all(|h| h.ok), "{history:?}");
    assert_eq!(mesh.instances().len(), 3, "control, hop, exec1");
}
