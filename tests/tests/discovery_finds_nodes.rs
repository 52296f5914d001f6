//! Discovery finds nodes that join a running mesh: with the control node and the coordinator
//! up first, a hop and two execution nodes started afterwards are registered from their
//! advertisements, health-checked through real receptor and `meshrun-agent worker
//! --worker-info`, and become `ready` with exactly the AWX capacity their own worker-info
//! implies (two different reservations give two different capacities); the hop is ready with
//! capacity 0, and the links of the mesh are stored. A node whose own worker-info reports a
//! problem is registered too, but `unavailable` with that problem as its error.

use std::time::Duration;

use meshrun_coordinator::store::{Instance, NodeState};
use meshrun_shared::capacity;
use meshrun_shared::node_type::NodeType;
use meshrun_tests::mesh::{Mesh, NodeSpec};
use meshrun_tests::wait::eventually;

const PATIENCE: Duration = Duration::from_secs(90);

fn ready(mesh: &Mesh, name: &str) -> Instance {
    eventually(&format!("{name} to be ready"), PATIENCE, || {
        mesh.instance(name).filter(|i| {
            i.node_state == NodeState::Ready
                && (i.node_type == NodeType::Hop || i.last_health_check.is_some())
        })
    })
}

#[test]
fn nodes_started_after_the_coordinator_are_registered_checked_and_linked() {
    let mut mesh = Mesh::start(&[NodeSpec::new("control", "control").listening()]);
    mesh.start_coordinator("control");
    mesh.add_node(&NodeSpec::new("hop", "hop").listening().dialing("control"));
    mesh.add_node(
        &NodeSpec::new("exec1", "execution")
            .dialing("hop")
            .agent_toml("[capacity]\nreserved_memory = \"4GiB\"\n"),
    );
    mesh.add_node(
        &NodeSpec::new("exec2", "execution")
            .dialing("hop")
            .agent_toml("[capacity]\nreserved_memory = \"1GiB\"\n"),
    );
    mesh.add_node(
        &NodeSpec::new("sick", "execution")
            .dialing("hop")
            .agent_toml("[capacity]\nreserved_memory = \"1000GiB\"\n"),
    );

    let hop = ready(&mesh, "hop");
    assert_eq!(hop.node_type, NodeType::Hop);
    assert_eq!((hop.capacity, hop.registered_by.as_str()), (0, "discovery"));

    let mut capacities = Vec::new();
    for name in ["exec1", "exec2"] {
        let inst = ready(&mesh, name);
        let info = mesh.worker_info(name);
        let want = capacity::instance_capacity(
            NodeType::Execution,
            true,
            info.cpu_count,
            info.mem_in_bytes,
            1.0,
        );
        let log = mesh.coordinator_log();
        assert_eq!(inst.node_type, NodeType::Execution, "{log}");
        assert_eq!(inst.registered_by, "discovery");
        assert_eq!(inst.errors, "", "{name} should be healthy");
        assert_eq!(inst.cpu, info.cpu_count, "{name}'s cpu");
        assert_eq!(
            u64::try_from(inst.memory).unwrap(),
            info.mem_in_bytes,
            "{name}'s memory"
        );
        assert_eq!(
            (inst.cpu_capacity, inst.mem_capacity, inst.capacity),
            (want.cpu_capacity, want.mem_capacity, want.capacity),
            "{name}'s capacity must be AWX's for its worker-info"
        );
        assert!(inst.capacity > 0);
        assert_eq!(inst.uuid, info.uuid, "{name}'s uuid");
        assert_eq!(inst.boot_id, info.boot_id, "{name}'s boot id");
        assert_eq!(
            inst.version,
            format!("ansible-runner-{}", info.runner_version)
        );
        // The harness gives every node mesh TLS; none of these verifies signed work.
        assert!(
            !inst.secure_work && inst.control_tls,
            "TLS test mesh, no signing"
        );
        let history = mesh.health_checks(name);
        assert!(history.iter().any(|h| h.ok), "{name}: {history:?}");
        capacities.push(inst.capacity);
    }
    assert_ne!(
        capacities[0], capacities[1],
        "4 GiB and 1 GiB reservations must give different capacities"
    );

    // The control node itself is registered with the type its config gives (control by
    // default) and checked through `local`.
    let control = ready(&mesh, "control");
    assert_eq!(control.node_type, NodeType::Control);
    assert!(control.capacity > 0, "{control:?}");

    let sick = eventually("the sick node to be checked", PATIENCE, || {
        mesh.instance("sick")
            .filter(|i| i.last_health_check.is_some())
    });
    let reported = mesh.worker_info("sick");
    assert!(!reported.errors.is_empty(), "{reported:?}");
    assert_eq!(sick.node_state, NodeState::Unavailable, "{sick:?}");
    assert_eq!(sick.errors, reported.errors.join("\n"));
    assert_eq!(sick.capacity, 0);

    let links = eventually("the links of the mesh", PATIENCE, || {
        let links: Vec<(String, String)> = mesh
            .links()
            .into_iter()
            .map(|l| (l.source, l.target))
            .collect();
        (links.len() == 4).then_some(links)
    });
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        links,
        [
            pair("exec1", "hop"),
            pair("exec2", "hop"),
            pair("hop", "control"),
            pair("sick", "hop"),
        ],
        "each link points from the dialling node toward the control node"
    );

    // Every health-check unit is released, on the control node and on the nodes checked.
    for node in ["control", "exec1", "exec2", "sick"] {
        eventually(
            &format!("no work units left on {node}"),
            Duration::from_secs(30),
            || mesh.work_list(node).is_empty().then_some(()),
        );
    }
}
