//! Reads the first line of a job stream (`{"kwargs": {...}}`), takes out what concerns the
//! container (image, options, mounts, registry auth) and rewrites the kwargs so the worker inside
//! the container does not try to start a container of its own.

use serde_json::{Map, Value};

/// kwargs keys that describe the container; the agent handles them, the inner worker must not.
const CONTAINER_KEYS: [&str; 11] = [
    "process_isolation",
    "process_isolation_executable",
    "process_isolation_path",
    "process_isolation_hide_paths",
    "process_isolation_show_paths",
    "process_isolation_ro_paths",
    "container_image",
    "container_options",
    "container_volume_mounts",
    "container_auth_data",
    "container_workdir",
];

/// A job's container request and the kwargs line to hand to the inner worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    /// The rewritten first line, newline included.
    pub kwargs_line: Vec<u8>,
    /// The image to run.
    pub image: String,
    /// `container_options`.
    pub options: Vec<String>,
    /// `container_volume_mounts`.
    pub mounts: Vec<String>,
    /// Whether the job carried registry credentials (never logged; not used: no pulls).
    pub had_auth_data: bool,
}

/// The first line is not what a job stream starts with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KwargsError {
    /// Not JSON, or not `{"kwargs": {...}}`.
    #[error("the job stream does not start with a kwargs line: {0}")]
    NotKwargs(String),
    /// A container field has the wrong type.
    #[error("kwargs field {field} must be {expected}")]
    BadField {
        /// The field.
        field: &'static str,
        /// What it must be.
        expected: &'static str,
    },
    /// No image named and no default.
    #[error(
        "the job names no execution environment image (container_image) and this node has no podman.default_image"
    )]
    NoImage,
    /// An image reference that could be taken for a podman option or is malformed.
    #[error("container_image {0:?} is not a valid image reference")]
    BadImage(String),
}

fn strings(kwargs: &Map<String, Value>, field: &'static str) -> Result<Vec<String>, KwargsError> {
    match kwargs.get(field) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or(KwargsError::BadField {
                field,
                expected: "a list of strings",
            }),
        Some(_) => Err(KwargsError::BadField {
            field,
            expected: "a list of strings",
        }),
    }
}

fn valid_image(image: &str) -> bool {
    !image.is_empty()
        && image.len() <= 512
        && !image.starts_with('-')
        && image
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "./:@_-".contains(c))
}

/// Parses and rewrites the first line of a job stream.
pub fn rewrite(line: &[u8], default_image: Option<&str>) -> Result<JobRequest, KwargsError> {
    let mut doc: Map<String, Value> =
        serde_json::from_slice(line).map_err(|e| KwargsError::NotKwargs(e.to_string()))?;
    let Some(Value::Object(mut kwargs)) = doc.remove("kwargs") else {
        return Err(KwargsError::NotKwargs("no \"kwargs\" object".into()));
    };
    let image = match kwargs.get("container_image") {
        None | Some(Value::Null) => default_image.map(str::to_string),
        Some(Value::String(s)) if s.is_empty() => default_image.map(str::to_string),
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(KwargsError::BadField {
                field: "container_image",
                expected: "a string",
            });
        }
    }
    .ok_or(KwargsError::NoImage)?;
    if !valid_image(&image) {
        return Err(KwargsError::BadImage(image));
    }
    let options = strings(&kwargs, "container_options")?;
    let mounts = strings(&kwargs, "container_volume_mounts")?;
    let had_auth_data = kwargs
        .get("container_auth_data")
        .is_some_and(|v| !v.is_null());
    for key in CONTAINER_KEYS {
        kwargs.remove(key);
    }
    doc.insert("kwargs".into(), Value::Object(kwargs));
    let mut kwargs_line =
        serde_json::to_vec(&doc).map_err(|e| KwargsError::NotKwargs(e.to_string()))?;
    kwargs_line.push(b'\n');
    Ok(JobRequest {
        kwargs_line,
        image,
        options,
        mounts,
        had_auth_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn awx_kwargs_are_rewritten_for_the_inner_worker() {
        let line = br#"{"kwargs": {"ident": "7", "playbook": "p.yml", "process_isolation": true, "process_isolation_executable": "podman", "container_image": "quay.io/ansible/awx-ee:latest", "container_options": ["--user=root", "--pull=missing"], "container_volume_mounts": ["/srv/a:/a:ro"], "container_auth_data": {"host": "h", "username": "u", "password": "secret"}, "envvars": {"X": "1"}}}"#;
        let r = rewrite(line, Some("localhost/meshrun-ee:latest")).unwrap();
        assert_eq!(r.image, "quay.io/ansible/awx-ee:latest");
        assert_eq!(r.options, ["--user=root", "--pull=missing"]);
        assert_eq!(r.mounts, ["/srv/a:/a:ro"]);
        assert!(r.had_auth_data);
        assert!(r.kwargs_line.ends_with(b"}\n"));
        let back: Value = serde_json::from_slice(&r.kwargs_line).unwrap();
        let k = back["kwargs"].as_object().unwrap();
        assert_eq!(k.len(), 3, "only ident, playbook and envvars stay: {k:?}");
        assert_eq!(k["envvars"]["X"], "1");
        assert!(!String::from_utf8_lossy(&r.kwargs_line).contains("secret"));
    }

    #[test]
    fn the_default_image_is_used_and_needed() {
        let r = rewrite(br#"{"kwargs": {"ident": "1"}}"#, Some("localhost/ee:1")).unwrap();
        assert_eq!(r.image, "localhost/ee:1");
        assert_eq!(
            rewrite(br#"{"kwargs": {"ident": "1"}}"#, None),
            Err(KwargsError::NoImage)
        );
        assert_eq!(
            rewrite(br#"{"kwargs": {"container_image": ""}}"#, None),
            Err(KwargsError::NoImage)
        );
    }

    #[test]
    fn hostile_first_lines_are_refused() {
        assert!(matches!(
            rewrite(b"garbage\n", None),
            Err(KwargsError::NotKwargs(_))
        ));
        assert!(matches!(
            rewrite(b"{\"zipfile\": 3}\n", None),
            Err(KwargsError::NotKwargs(_))
        ));
        assert!(matches!(
            rewrite(br#"{"kwargs": []}"#, None),
            Err(KwargsError::NotKwargs(_))
        ));
        assert_eq!(
            rewrite(br#"{"kwargs": {"container_image": "--privileged"}}"#, None),
            Err(KwargsError::BadImage("--privileged".into()))
        );
        assert_eq!(
            rewrite(br#"{"kwargs": {"container_image": "a b"}}"#, None),
            Err(KwargsError::BadImage("a b".into()))
        );
        assert!(matches!(
            rewrite(
                br#"{"kwargs": {"container_options": "--privileged"}}"#,
                Some("i")
            ),
            Err(KwargsError::BadField {
                field: "container_options",
                ..
            })
        ));
        assert!(matches!(
            rewrite(
                br#"{"kwargs": {"container_volume_mounts": [1]}}"#,
                Some("i")
            ),
            Err(KwargsError::BadField {
                field: "container_volume_mounts",
                ..
            })
        ));
    }
}
