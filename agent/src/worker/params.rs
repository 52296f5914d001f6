//! The worker parameters the agent accepts: AWX's `ansible-runner worker` arguments and nothing
//! else, so a controller cannot smuggle options through receptor's runtime params.

use std::path::PathBuf;

/// What the unit asks the worker to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkerRequest {
    /// Run the job streamed on stdin.
    Run(RunParams),
    /// Print the node's capacity report (`--worker-info`).
    WorkerInfo,
    /// `cleanup ...` (not offered yet).
    Cleanup(Vec<String>),
}

/// Parameters of a job run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunParams {
    /// The private data dir the controller named. The agent never uses it as a path (the
    /// controller must not choose what gets deleted on this node); it is only logged.
    pub requested_private_data_dir: Option<PathBuf>,
    /// `--delete` was given.
    pub delete: bool,
    /// Seconds between keepalive lines, if any.
    pub keepalive_seconds: Option<u32>,
}

/// A parameter the agent does not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    /// Not one of the known parameters.
    #[error(
        "unknown worker parameter {0:?}: meshrun-agent accepts --private-data-dir=DIR, --delete, --keepalive-seconds=N, --worker-info and cleanup"
    )]
    Unknown(String),
    /// A parameter that needs a value got none.
    #[error("worker parameter {0} needs a value")]
    MissingValue(&'static str),
    /// `--keepalive-seconds` got something other than a whole number of seconds.
    #[error("worker parameter --keepalive-seconds must be a whole number of seconds, got {0:?}")]
    BadKeepalive(String),
    /// `--worker-info` mixed with job parameters.
    #[error("--worker-info cannot be combined with other worker parameters")]
    WorkerInfoWithOthers,
}

/// Parses the arguments that follow `worker`.
pub fn parse(args: &[String]) -> Result<WorkerRequest, ParamError> {
    if args.first().map(String::as_str) == Some("cleanup") {
        return Ok(WorkerRequest::Cleanup(args[1..].to_vec()));
    }
    let mut run = RunParams::default();
    let mut worker_info = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        match name {
            "--private-data-dir" => {
                let v = value(inline, &mut it, "--private-data-dir")?;
                run.requested_private_data_dir = Some(PathBuf::from(v));
            }
            "--keepalive-seconds" => {
                let v = value(inline, &mut it, "--keepalive-seconds")?;
                let secs = v.parse().map_err(|_| ParamError::BadKeepalive(v.clone()))?;
                run.keepalive_seconds = Some(secs);
            }
            "--delete" if inline.is_none() => run.delete = true,
            "--worker-info" if inline.is_none() => worker_info = true,
            _ => return Err(ParamError::Unknown(arg.clone())),
        }
    }
    if worker_info {
        if run != RunParams::default() {
            return Err(ParamError::WorkerInfoWithOthers);
        }
        return Ok(WorkerRequest::WorkerInfo);
    }
    Ok(WorkerRequest::Run(run))
}

fn value<'a>(
    inline: Option<String>,
    rest: &mut impl Iterator<Item = &'a String>,
    name: &'static str,
) -> Result<String, ParamError> {
    match inline {
        Some(v) if !v.is_empty() => Ok(v),
        Some(_) => Err(ParamError::MissingValue(name)),
        None => rest.next().cloned().ok_or(ParamError::MissingValue(name)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<WorkerRequest, ParamError> {
        parse(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn awx_params_are_accepted() {
        assert_eq!(
            p(&["--private-data-dir=/tmp/awx_1_x", "--delete"]).unwrap(),
            WorkerRequest::Run(RunParams {
                requested_private_data_dir: Some("/tmp/awx_1_x".into()),
                delete: true,
                keepalive_seconds: None,
            })
        );
        assert_eq!(
            p(&["--keepalive-seconds", "30"]).unwrap(),
            WorkerRequest::Run(RunParams {
                keepalive_seconds: Some(30),
                ..RunParams::default()
            })
        );
        assert_eq!(p(&["--worker-info"]).unwrap(), WorkerRequest::WorkerInfo);
        assert_eq!(p(&[]).unwrap(), WorkerRequest::Run(RunParams::default()));
        assert_eq!(
            p(&["cleanup", "--file-pattern=/tmp/x*"]).unwrap(),
            WorkerRequest::Cleanup(vec!["--file-pattern=/tmp/x*".into()])
        );
    }

    #[test]
    fn anything_else_is_refused_with_its_name() {
        assert_eq!(
            p(&["--delete", "--container-runtime=docker"]).unwrap_err(),
            ParamError::Unknown("--container-runtime=docker".into())
        );
        assert_eq!(
            p(&["--delete=yes"]).unwrap_err(),
            ParamError::Unknown("--delete=yes".into())
        );
        assert_eq!(
            p(&["--private-data-dir"]).unwrap_err(),
            ParamError::MissingValue("--private-data-dir")
        );
        assert_eq!(
            p(&["--keepalive-seconds=-1"]).unwrap_err(),
            ParamError::BadKeepalive("-1".into())
        );
        assert_eq!(
            p(&["--worker-info", "--delete"]).unwrap_err(),
            ParamError::WorkerInfoWithOthers
        );
    }
}
