//! Which git repository URLs and revisions a project may name. They end up as arguments of
//! `git` (through Ansible's git module) on the control node, so only plain forms are accepted:
//! `https://host/path`, `ssh://[user@]host[:port]/path`, scp-like `user@host:path`, and
//! `file:///absolute/path` when the coordinator allows local repositories
//! (`[projects] allow_file_urls`, off by default: a `file://` URL reads the control node's own
//! disk). Nothing may start with `-` (it would read as an option), contain white space, control
//! characters or `{`/`}` (the values travel as Ansible extra vars, which are templated).

use std::path::{Component, Path, PathBuf};

/// Longest URL accepted.
const MAX_URL: usize = 2048;
/// Longest branch, tag or commit accepted.
const MAX_BRANCH: usize = 255;

/// Why a URL or revision is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScmUrlError {
    /// The URL is not one of the accepted forms.
    #[error("scm_url {url:?} refused: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The branch, tag or commit is not a plain ref name.
    #[error("scm_branch {branch:?} refused: {reason}")]
    Branch {
        /// The value.
        branch: String,
        /// Why.
        reason: &'static str,
    },
}

/// An accepted repository URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScmUrl {
    /// The URL as given.
    pub url: String,
    /// For `file://` URLs, the repository's path on the control node.
    pub local_path: Option<PathBuf>,
}

fn host_ok(host: &str) -> bool {
    !host.is_empty()
        && !host.starts_with(['-', '.'])
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_[]:".contains(c))
}

fn user_ok(user: &str) -> bool {
    !user.is_empty()
        && !user.starts_with('-')
        && user
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// Checks `url`; `allow_file` says whether `file://` URLs are accepted.
pub fn check_url(url: &str, allow_file: bool) -> Result<ScmUrl, ScmUrlError> {
    let refuse = |reason: &str| ScmUrlError::Url {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    if url.is_empty() {
        return Err(refuse("it is empty"));
    }
    if url.len() > MAX_URL {
        return Err(refuse("it is too long"));
    }
    if url.starts_with('-') {
        return Err(refuse("it starts with '-'"));
    }
    if url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '{' || c == '}')
    {
        return Err(refuse(
            "it contains white space, control characters or braces",
        ));
    }
    let plain = |rest: &str, with_user: bool| -> Result<ScmUrl, ScmUrlError> {
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| refuse("it has no path"))?;
        let host = match authority.rsplit_once('@') {
            Some((user, host)) if with_user && user_ok(user) => host,
            Some(_) => return Err(refuse("its user part is not allowed")),
            None => authority,
        };
        if !host_ok(host) {
            return Err(refuse("its host is not a plain host name"));
        }
        if path.is_empty() {
            return Err(refuse("it has no path"));
        }
        Ok(ScmUrl {
            url: url.to_string(),
            local_path: None,
        })
    };
    if let Some(rest) = url.strip_prefix("https://") {
        return plain(rest, false);
    }
    if let Some(rest) = url.strip_prefix("ssh://") {
        return plain(rest, true);
    }
    if let Some(path) = url.strip_prefix("file://") {
        if !allow_file {
            return Err(refuse(
                "file:// URLs are off on this coordinator ([projects] allow_file_urls)",
            ));
        }
        let p = Path::new(path);
        let clean = p.is_absolute()
            && p.components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !clean || path.contains(':') {
            return Err(refuse(
                "a file:// URL needs an absolute path without '.', '..' or ':'",
            ));
        }
        return Ok(ScmUrl {
            url: url.to_string(),
            local_path: Some(p.to_path_buf()),
        });
    }
    if url.contains("://") {
        return Err(refuse(
            "only https://, ssh://, user@host:path and file:// are accepted",
        ));
    }
    // scp-like: user@host:path.
    let (user, rest) = url
        .split_once('@')
        .ok_or_else(|| refuse("only https://, ssh://, user@host:path and file:// are accepted"))?;
    let (host, path) = rest
        .split_once(':')
        .ok_or_else(|| refuse("a user@host:path URL needs ':' after the host"))?;
    if !user_ok(user) || !host_ok(host) || host.contains(':') {
        return Err(refuse("its user or host is not a plain name"));
    }
    if path.is_empty() || path.starts_with('-') {
        return Err(refuse("its path is empty or starts with '-'"));
    }
    Ok(ScmUrl {
        url: url.to_string(),
        local_path: None,
    })
}

/// Checks a branch, tag or commit (empty: the remote's HEAD).
pub fn check_branch(branch: &str) -> Result<(), ScmUrlError> {
    let refuse = |reason| ScmUrlError::Branch {
        branch: branch.to_string(),
        reason,
    };
    if branch.len() > MAX_BRANCH {
        return Err(refuse("it is too long"));
    }
    if branch.starts_with('-') {
        return Err(refuse("it starts with '-'"));
    }
    if branch.contains("..") {
        return Err(refuse("it contains '..'"));
    }
    if !branch
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c))
    {
        return Err(refuse(
            "only letters, digits, '.', '_', '/' and '-' are accepted",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_forms_are_accepted() {
        for url in [
            "https://github.com/ansible/ansible-examples.git",
            "ssh://git@example.com:2222/team/repo.git",
            "ssh://example.com/repo",
            "git@github.com:team/repo.git",
        ] {
            let u = check_url(url, false).unwrap();
            assert_eq!(u.url, url);
            assert_eq!(u.local_path, None);
        }
        let u = check_url("file:///srv/git/repo.git", true).unwrap();
        assert_eq!(u.local_path, Some(PathBuf::from("/srv/git/repo.git")));
    }

    #[test]
    fn options_spaces_templates_and_other_schemes_are_refused() {
        for url in [
            "",
            "-uhttps://x/y",
            "--upload-pack=touch /tmp/x",
            "https://host/a b",
            "https://host/a\nb",
            "https://host/{{ lookup('pipe','id') }}",
            "https://-host/x",
            "https://host",
            "https://user@host/x",
            "http://host/x",
            "ext::sh -c touch% /tmp/pwned",
            "ext::sh",
            "git://host/x",
            "ftp://host/x",
            "file://relative/x",
            "file:///srv/../etc",
            "git@host:-oProxyCommand=x",
            "git@:x",
            "/srv/repo.git",
            "host:path",
        ] {
            assert!(check_url(url, true).is_err(), "{url:?} was accepted");
        }
    }

    #[test]
    fn file_urls_need_the_setting() {
        let e = check_url("file:///srv/repo.git", false).unwrap_err();
        assert!(e.to_string().contains("allow_file_urls"), "{e}");
    }

    #[test]
    fn branches_are_plain_ref_names() {
        for ok in ["", "main", "release/1.2", "v1.0.0", "0123abcd"] {
            check_branch(ok).unwrap();
        }
        for bad in ["-f", "a..b", "a b", "x{{y}}", "a;b", "~1"] {
            assert!(check_branch(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
