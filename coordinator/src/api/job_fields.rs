//! Checks of the fields every kind of work takes when it is created (inventory, limit, forks,
//! verbosity, where it runs and in which image), shared by `POST /api/v2/jobs/` and
//! `POST /api/v2/ad_hoc_commands/` so both refuse the same things with the same words.

use meshrun_shared::node_id::NodeId;

use super::{ApiError, AppState};

/// Largest inventory text accepted.
pub const MAX_INVENTORY_BYTES: usize = 1 << 20;

/// The run settings a creation body carries, borrowed from it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunFields<'a> {
    /// Inventory text (INI or YAML).
    pub inventory: Option<&'a str>,
    /// Host pattern / `--limit`.
    pub limit: Option<&'a str>,
    /// `--forks`.
    pub forks: Option<i64>,
    /// Verbosity 0-5.
    pub verbosity: Option<i64>,
    /// The execution node asked for.
    pub execution_node: Option<&'a str>,
    /// The instance group asked for.
    pub instance_group: Option<&'a str>,
    /// The execution-environment image asked for.
    pub execution_environment: Option<&'a str>,
}

/// Checks inventory text sent with a request (INI or YAML).
pub fn check_inventory_text(text: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("inventory must not be empty"));
    }
    if text.len() > MAX_INVENTORY_BYTES {
        return Err(ApiError::bad_request(format!(
            "inventory is {} bytes; at most {MAX_INVENTORY_BYTES} are accepted",
            text.len()
        )));
    }
    if text.contains('\0') {
        return Err(ApiError::bad_request(
            "inventory must not contain NUL bytes",
        ));
    }
    Ok(())
}

impl RunFields<'_> {
    /// Checks every field; returns the requested execution node, parsed.
    pub fn check(&self) -> Result<Option<NodeId>, ApiError> {
        let node = self
            .execution_node
            .map(|n| NodeId::new(n.to_string()))
            .transpose()
            .map_err(|e| ApiError::bad_request(format!("execution_node: {e}")))?;
        if let Some(image) = self.execution_environment
            && (image.is_empty()
                || image.len() > 512
                || image.starts_with('-')
                || !image
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "./:@_-".contains(c)))
        {
            return Err(ApiError::bad_request(format!(
                "execution_environment {image:?} is not a valid image reference"
            )));
        }
        if let Some(g) = self.instance_group
            && (g.is_empty() || g.len() > 128 || g.contains(['\n', '\r', '\0']))
        {
            return Err(ApiError::bad_request(
                "instance_group must be a non-empty single-line name",
            ));
        }
        if let Some(text) = self.inventory {
            check_inventory_text(text)?;
        }
        if let Some(f) = self.forks
            && !(1..=500).contains(&f)
        {
            return Err(ApiError::bad_request(format!(
                "forks must be between 1 and 500, got {f}"
            )));
        }
        if let Some(v) = self.verbosity
            && !(0..=5).contains(&v)
        {
            return Err(ApiError::bad_request(format!(
                "verbosity must be between 0 and 5, got {v}"
            )));
        }
        if let Some(l) = self.limit
            && (l.is_empty() || l.contains(['\n', '\r', '\0']))
        {
            return Err(ApiError::bad_request(
                "limit must be a non-empty single line",
            ));
        }
        Ok(node)
    }
}

/// The instance group the work goes to (`default` unless named), refused when it does not exist.
pub async fn existing_group(state: &AppState, asked: Option<&str>) -> Result<String, ApiError> {
    let group = asked.unwrap_or("default");
    if state
        .store
        .instance_groups()
        .await?
        .iter()
        .any(|g| g.name == group)
    {
        Ok(group.to_string())
    } else {
        Err(ApiError::bad_request(format!(
            "instance_group {group:?} does not exist"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INV: &str = "localhost ansible_connection=local\n";

    fn ok() -> RunFields<'static> {
        RunFields {
            inventory: Some(INV),
            ..RunFields::default()
        }
    }

    fn refused(fields: RunFields<'_>, words: &str) {
        let e = fields.check().expect_err("must be refused");
        let text = e.detail();
        assert!(text.contains(words), "{text} should say {words:?}");
    }

    #[test]
    fn good_fields_pass_and_the_node_is_parsed() {
        assert!(ok().check().unwrap().is_none());
        let node = RunFields {
            execution_node: Some("exec1"),
            execution_environment: Some("quay.io/ansible/awx-ee:24.6.1"),
            instance_group: Some("default"),
            forks: Some(500),
            verbosity: Some(0),
            limit: Some("web:&prod"),
            ..ok()
        }
        .check()
        .unwrap();
        assert_eq!(node.map(|n| n.to_string()).as_deref(), Some("exec1"));
    }

    #[test]
    fn each_bad_field_is_named() {
        refused(
            RunFields {
                inventory: Some("  \n"),
                ..ok()
            },
            "inventory must not be empty",
        );
        let huge = "h\n".repeat(MAX_INVENTORY_BYTES);
        refused(
            RunFields {
                inventory: Some(&huge),
                ..ok()
            },
            "bytes; at most",
        );
        refused(
            RunFields {
                inventory: Some("a\0b"),
                ..ok()
            },
            "NUL",
        );
        for f in [0, 501, -1] {
            refused(
                RunFields {
                    forks: Some(f),
                    ..ok()
                },
                "forks",
            );
        }
        refused(
            RunFields {
                verbosity: Some(6),
                ..ok()
            },
            "verbosity",
        );
        for l in ["", "a\nb"] {
            refused(
                RunFields {
                    limit: Some(l),
                    ..ok()
                },
                "limit",
            );
        }
        for image in ["", "-rm", "image with space"] {
            refused(
                RunFields {
                    execution_environment: Some(image),
                    ..ok()
                },
                "execution_environment",
            );
        }
        refused(
            RunFields {
                instance_group: Some("a\nb"),
                ..ok()
            },
            "instance_group",
        );
        refused(
            RunFields {
                execution_node: Some(""),
                ..ok()
            },
            "execution_node",
        );
    }
}
