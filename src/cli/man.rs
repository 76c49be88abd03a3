//! `gbdfl man`: the manual page (roff), made by clap_mangen from the same
//! definitions that parse the command line.

use clap::CommandFactory as _;

/// Print the manual page in roff: `gbdfl man > gbdfl.1` (see README, "Manual page")
#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    let cmd = super::Cli::command();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page)?;
    super::out(&String::from_utf8(page)?)
}
