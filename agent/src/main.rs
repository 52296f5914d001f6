//! `meshrun-agent`: parse the command line and hand over to the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    meshrun_agent::cli::main()
}
