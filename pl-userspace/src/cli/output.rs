//! `-o table|wide|json` and `--json`, shared by every command that prints a report.

use clap::Args;
use pl_userspace::output::Format;

#[derive(Args, Clone, Copy, Debug, Default)]
pub struct OutputArgs {
    /// Output format: table (fits 100 columns), wide (every column) or json.
    #[arg(short = 'o', long = "output", value_enum, value_name = "FORMAT")]
    pub output: Option<Format>,
    /// Same as `-o json`.
    #[arg(long, conflicts_with = "output")]
    pub json: bool,
}

impl OutputArgs {
    pub fn format(self) -> Format {
        if self.json {
            Format::Json
        } else {
            self.output.unwrap_or_default()
        }
    }
}
