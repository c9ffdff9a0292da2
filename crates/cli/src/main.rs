//! `weft`, the command line. Everything lives in the `weft_cli` library; see its docs.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    match weft_cli::run(weft_cli::Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => weft_cli::report(&err),
    }
}
