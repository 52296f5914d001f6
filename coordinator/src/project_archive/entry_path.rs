//! The naming rules an archive entry must follow: what a safe entry path is, and which symlink
//! targets stay inside the project. Pure functions over bytes, shared by packing (so we never
//! produce an archive we would refuse) and unpacking.

use super::Refusal;

/// Longest entry name or symlink target accepted: Linux's PATH_MAX. It also bounds the work
/// and memory spent per entry on a hostile archive.
pub(super) const MAX_NAME_BYTES: usize = 4096;

fn check_length(raw: &[u8]) -> Result<(), Refusal> {
    if raw.len() > MAX_NAME_BYTES {
        return Err(Refusal::NameTooLong {
            len: raw.len(),
            limit: MAX_NAME_BYTES,
        });
    }
    Ok(())
}

/// Splits a raw entry name into its components, refusing anything that could name a place
/// outside the project. `.` and empty components (`./a`, `a//b`, `a/`) are dropped; `None`
/// means the name designates the project root itself (`.`, `./`).
pub(super) fn parse_entry_path(raw: &[u8]) -> Result<Option<Vec<&str>>, Refusal> {
    if raw.is_empty() {
        return Err(Refusal::EmptyName);
    }
    check_length(raw)?;
    if raw.contains(&0) {
        return Err(Refusal::NulByte);
    }
    let text = std::str::from_utf8(raw).map_err(|_| Refusal::NotUtf8)?;
    if text.starts_with('/') {
        return Err(Refusal::AbsolutePath);
    }
    let mut components = Vec::new();
    for component in text.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(Refusal::ParentComponent),
            name => components.push(name),
        }
    }
    Ok((!components.is_empty()).then_some(components))
}

/// Checks the target of a symlink whose own path is `link` (components, as returned by
/// [`parse_entry_path`]) and returns it as text.
///
/// `..` is allowed only before the first named component, and never more often than the
/// link's directory is deep. A `..` after a name is refused even when it looks harmless
/// lexically: the name before it may itself be a symlink (`r -> sub/q/..` with
/// `sub/q -> ..` climbs above the root). With that rule every link resolves to an ancestor
/// of its own (real) directory and then only descends, through names that are either real
/// directories or links that, by the same rule, stay inside.
pub(super) fn check_link_target<'t>(link: &[&str], raw: &'t [u8]) -> Result<&'t str, Refusal> {
    if raw.is_empty() {
        return Err(Refusal::EmptyLinkTarget);
    }
    check_length(raw)?;
    if raw.contains(&0) {
        return Err(Refusal::NulByte);
    }
    let target = std::str::from_utf8(raw).map_err(|_| Refusal::NotUtf8)?;
    if target.starts_with('/') {
        return Err(Refusal::AbsoluteLinkTarget {
            target: target.to_string(),
        });
    }
    // The link's directory is `link` minus its last component.
    let mut climbable = link.len().saturating_sub(1);
    let mut seen_name = false;
    for component in target.split('/') {
        match component {
            "" | "." => {}
            ".." if seen_name => {
                return Err(Refusal::LinkParentAfterName {
                    target: target.to_string(),
                });
            }
            ".." => {
                climbable = climbable.checked_sub(1).ok_or(Refusal::LinkEscapes {
                    target: target.to_string(),
                })?;
            }
            _ => seen_name = true,
        }
    }
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_normalised_or_refused() {
        assert_eq!(parse_entry_path(b"a/b"), Ok(Some(vec!["a", "b"])));
        assert_eq!(parse_entry_path(b"./a//b/"), Ok(Some(vec!["a", "b"])));
        assert_eq!(parse_entry_path(b"./"), Ok(None));
        assert_eq!(parse_entry_path(b""), Err(Refusal::EmptyName));
        assert_eq!(parse_entry_path(b"/etc/passwd"), Err(Refusal::AbsolutePath));
        assert_eq!(parse_entry_path(b"a/../b"), Err(Refusal::ParentComponent));
        assert_eq!(parse_entry_path(b".."), Err(Refusal::ParentComponent));
        assert_eq!(parse_entry_path(b"a\0b"), Err(Refusal::NulByte));
        assert_eq!(parse_entry_path(b"a\xffb"), Err(Refusal::NotUtf8));
        let long = "a/".repeat(2049);
        assert!(matches!(
            parse_entry_path(long.as_bytes()),
            Err(Refusal::NameTooLong { len: 4098, .. })
        ));
    }

    #[test]
    fn link_targets_may_climb_only_as_deep_as_the_link_and_only_first() {
        assert_eq!(check_link_target(&["a", "l"], b"../b"), Ok("../b"));
        assert_eq!(check_link_target(&["a", "l"], b"./x/./y"), Ok("./x/./y"));
        assert_eq!(check_link_target(&["l"], b"."), Ok("."));
        assert!(matches!(
            check_link_target(&["a", "l"], b"../../b"),
            Err(Refusal::LinkEscapes { .. })
        ));
        assert!(matches!(
            check_link_target(&["l"], b".."),
            Err(Refusal::LinkEscapes { .. })
        ));
        assert!(matches!(
            check_link_target(&["a", "l"], b"x/../y"),
            Err(Refusal::LinkParentAfterName { .. })
        ));
        assert!(matches!(
            check_link_target(&["l"], b"/etc"),
            Err(Refusal::AbsoluteLinkTarget { .. })
        ));
        assert_eq!(
            check_link_target(&["l"], b""),
            Err(Refusal::EmptyLinkTarget)
        );
    }
}
