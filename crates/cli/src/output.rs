//! The `-o/--output` flag shared by every command whose output is a table or a record, so that
//! scripts can ask for JSON everywhere the same way (`weft identity inspect -o json`, and later
//! `weft check -o json`, `weft viz stat -o json`).

use std::io::Write;

use clap::{Args, ValueEnum};
use serde::Serialize;

/// How a command prints its result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text for people.
    #[default]
    Table,
    /// One JSON document, for scripts and `jq`.
    Json,
}

/// `-o/--output table|json`, to `#[command(flatten)]` into a command's arguments.
#[derive(Clone, Copy, Debug, Default, Args)]
pub struct OutputArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t)]
    pub output: Format,
}

/// Writes `value` as pretty JSON followed by a newline.
pub fn write_json<T: Serialize>(out: &mut dyn Write, value: &T) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    Ok(())
}
