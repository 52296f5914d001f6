//! Hostile API bodies against a real coordinator (one control node, real receptor): every bad
//! body is answered 4xx with a message that names what was wrong, and nothing is created — the
//! lists stay as they were and the project-archive store holds exactly what it held before.
//! Part of the hostile-input corpus (the other cases are in `hostile_input.rs`).
//!
//! | #  | Case                                                           |
//! |----|----------------------------------------------------------------|
//! | 1  | inventory with an unknown field                                |
//! | 2  | inventory whose name is a number                               |
//! | 3  | inventory body that is not JSON                                |
//! | 4  | inventory body that is a JSON string, not an object             |
//! | 5  | inventory body without `Content-Type: application/json`        |
//! | 6  | inventory body of 3 MB (over the JSON body limit)              |
//! | 7  | inventory `content` that is not the `ansible-inventory` shape  |
//! | 8  | inventory `variables` that are JSON text of a list             |
//! | 9  | job with an unknown field                                      |
//! | 10 | job whose `forks` is a string                                  |
//! | 11 | inventory `variables` nested 10 000 deep                       |
//! | 12 | instance group with an unknown field                           |
//! | 13 | instance group whose name is a list                            |
//! | 14 | ad hoc command with an unknown field                           |
//! | 15 | project with an unknown field                                  |
//! | 16 | project archive with `../evil`                                 |
//! | 17 | project archive with an escaping symlink                       |
//! | 18 | project archive zstd bomb (96 MiB of zeros in ~10 KiB)         |
//! | 19 | project archive that is not zstd                               |
//! | 20 | project archive over `max_upload_bytes`                        |
//! | 21 | empty project archive body                                     |
//!
//! 21 cases.

use meshrun_tests::api;
use meshrun_tests::hostile::{TarItem, snapshot, tar_of, zst, zstd_zero_file};
use meshrun_tests::mesh::{Mesh, NodeSpec};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use serde_json::Value;

const MAX_UPLOAD: usize = 1 << 20;

struct Case {
    name: &'static str,
    path: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    wanted: &'static str,
}

fn json_case(name: &'static str, path: &'static str, body: &str, wanted: &'static str) -> Case {
    Case {
        name,
        path,
        content_type: "application/json",
        body: body.as_bytes().to_vec(),
        wanted,
    }
}

fn archive_case(name: &'static str, body: Vec<u8>, wanted: &'static str) -> Case {
    Case {
        name,
        path: "/api/v2/project_archives/",
        content_type: "application/zstd",
        body,
        wanted,
    }
}

fn count(mesh: &Mesh, path: &str) -> i64 {
    let (status, body) = api::get(mesh, path);
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body["count"]
        .as_i64()
        .unwrap_or_else(|| panic!("{path}: no count in {body}"))
}

#[test]
fn bad_bodies_are_refused_and_nothing_is_created() {
    let mut mesh = Mesh::start(&[NodeSpec::new("control", "control").listening()]);
    mesh.start_coordinator_with("control", &format!("max_upload_bytes = {MAX_UPLOAD}\n"));
    // A settled coordinator: discovery may still create the control node's group otherwise.
    mesh.wait_discovered(&["control"]);
    let store = mesh.dir().join("control/coordinator/projects");
    let lists = [
        "/api/v2/inventories/",
        "/api/v2/unified_jobs/",
        "/api/v2/instance_groups/",
        "/api/v2/projects/",
    ];
    let counts_before: Vec<i64> = lists.iter().map(|p| count(&mesh, p)).collect();
    let store_before = snapshot(&store);

    let huge = format!(
        r#"{{"name": "big", "description": "{}"}}"#,
        "x".repeat(3 << 20)
    );
    let deep = format!(
        r#"{{"name": "deep", "variables": {}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let cases = vec![
        json_case(
            "unknown field",
            "/api/v2/inventories/",
            r#"{"name": "inv", "bogus": 1}"#,
            "unknown field `bogus`",
        ),
        json_case(
            "number for name",
            "/api/v2/inventories/",
            r#"{"name": 5}"#,
            "invalid type: integer `5`, expected a string",
        ),
        json_case(
            "not JSON",
            "/api/v2/inventories/",
            "{\"name\": ",
            "invalid inventory",
        ),
        json_case(
            "string",
            "/api/v2/inventories/",
            "\"an inventory\"",
            "invalid type: string \"an inventory\", expected struct CreateInventory",
        ),
        Case {
            content_type: "text/plain",
            ..json_case(
                "no content type",
                "/api/v2/inventories/",
                r#"{"name": "inv"}"#,
                "Content-Type: application/json",
            )
        },
        Case {
            body: huge.into_bytes(),
            ..json_case(
                "3 MB body",
                "/api/v2/inventories/",
                "",
                "length limit exceeded",
            )
        },
        json_case(
            "bad content",
            "/api/v2/inventories/",
            r#"{"name": "inv", "content": {"all": {"hosts": 7}}}"#,
            "does not have the `ansible-inventory --list` shape: \"all\".hosts must be a list",
        ),
        json_case(
            "variables list",
            "/api/v2/inventories/",
            r#"{"name": "inv", "variables": "[1, 2]"}"#,
            "variables must be a JSON object",
        ),
        json_case(
            "job unknown field",
            "/api/v2/jobs/",
            r#"{"playbook": "site.yml", "sudo": true}"#,
            "unknown field `sudo`",
        ),
        json_case(
            "job forks string",
            "/api/v2/jobs/",
            r#"{"playbook": "site.yml", "forks": "many"}"#,
            "invalid type: string \"many\"",
        ),
        Case {
            body: deep.into_bytes(),
            ..json_case(
                "deep variables",
                "/api/v2/inventories/",
                "",
                "recursion limit exceeded",
            )
        },
        json_case(
            "group unknown field",
            "/api/v2/instance_groups/",
            r#"{"name": "g", "policy": "all"}"#,
            "unknown field `policy`",
        ),
        json_case(
            "group name list",
            "/api/v2/instance_groups/",
            r#"{"name": ["g"]}"#,
            "invalid type: sequence, expected a string",
        ),
        json_case(
            "ad hoc unknown field",
            "/api/v2/ad_hoc_commands/",
            r#"{"module_name": "ping", "become_root": true}"#,
            "unknown field `become_root`",
        ),
        json_case(
            "project unknown field",
            "/api/v2/projects/",
            r#"{"name": "p", "scm_url": "https://example.invalid/r.git", "scm_password": "x"}"#,
            "unknown field `scm_password`",
        ),
        archive_case(
            "zip-slip archive",
            zst(&tar_of(&[TarItem::file("../evil", b"pwned")])),
            "project archive entry \"../evil\" refused: the name has a `..` component",
        ),
        archive_case(
            "escaping link",
            zst(&tar_of(&[TarItem::symlink("l", "../../etc")])),
            "the symlink target \"../../etc\" leaves the project",
        ),
        archive_case(
            "zstd bomb",
            zstd_zero_file("zeros.bin", 96 << 20),
            "(a zstd bomb?)",
        ),
        archive_case(
            "not zstd",
            b"PK\x03\x04 not a tar.zst".to_vec(),
            "corrupt or truncated",
        ),
        archive_case(
            "over max_upload_bytes",
            vec![0u8; MAX_UPLOAD + 1],
            "length limit exceeded",
        ),
        archive_case("empty", Vec::new(), "the body is empty"),
    ];
    assert_eq!(cases.len(), 21);
    let client = api::client(&mesh);
    for case in cases {
        let response = client
            .post(format!("{}{}", mesh.api(), case.path))
            .header(CONTENT_TYPE, case.content_type)
            .body(case.body)
            .send()
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        let status = response.status();
        let text = response.text().unwrap_or_default();
        assert!(
            status.is_client_error(),
            "{}: answered {status}: {text}",
            case.name
        );
        // JSON routes answer {"detail": ...}; axum's own refusals (a body over the limit) are text.
        let detail = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_string))
            .unwrap_or(text);
        assert!(
            detail.contains(case.wanted),
            "{}: {status} does not say {:?}: {detail}",
            case.name,
            case.wanted
        );
        let counts: Vec<i64> = lists.iter().map(|p| count(&mesh, p)).collect();
        assert_eq!(
            counts, counts_before,
            "{}: something was created",
            case.name
        );
        assert_eq!(
            snapshot(&store),
            store_before,
            "{}: the project store changed",
            case.name
        );
    }
    // The coordinator is still answering.
    let (status, _) = api::get(&mesh, "/api/v2/ping/");
    assert_eq!(status, StatusCode::OK);
}
