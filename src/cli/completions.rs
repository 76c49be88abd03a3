//! `gbdfl completions SHELL`: a tab-completion script, made by clap_complete
//! from the same definitions that parse the command line, so it cannot
//! drift from them.

use clap::CommandFactory as _;

/// Print a tab-completion script for your shell (see docs/administration.md, "gbdfl completions")
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete for
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let mut cmd = super::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "gbdfl", &mut script);
    super::out(&String::from_utf8(script)?)
}
