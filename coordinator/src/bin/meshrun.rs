//! `meshrun`: the people's command line.

use std::process::ExitCode;

fn main() -> ExitCode {
    meshrun_coordinator::cli::main()
}
