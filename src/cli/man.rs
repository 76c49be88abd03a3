//! `gbdfl man`: the manual pages (roff), made by clap_mangen from the same
//! definitions that parse the command line.

use std::path::PathBuf;

use clap::CommandFactory as _;

use crate::exit::{Exit, ExitCode};

/// Print the manual page in roff, or write a page per command (see docs/administration.md, "gbdfl man")
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Write gbdfl.1 and a page per command (gbdfl-show.1, gbdfl-audit-log.1, ...) into this folder
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let cmd = super::Cli::command();
    let Some(dir) = args.dir else {
        let mut page = Vec::new();
        clap_mangen::Man::new(cmd).render(&mut page)?;
        return super::out(&String::from_utf8(page)?);
    };
    let written = std::fs::create_dir_all(&dir).and_then(|()| clap_mangen::generate_to(cmd, &dir));
    written.map_err(|e| {
        Exit::new(
            ExitCode::InvalidInput,
            format!(
                "cannot write the manual pages into {}: {e}; pass a folder you can write to",
                dir.display()
            ),
        )
    })?;
    eprintln!("Wrote the manual pages into {}.", dir.display());
    Ok(())
}
