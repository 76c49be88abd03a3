//! `gbdfl export`: every stored answer as JSON lines, for `gbdfl import`
//! elsewhere or an archive.

use std::path::PathBuf;

use anyhow::Context as _;

use super::Ctx;
use gbdfl_report::AtomicFile;
use gbdfl_store::Store;
use gbdfl_store::archive;

/// Write every stored answer of the service (any GBDFL status), oldest
/// first, one JSON object per line: the answer's bytes as received (keys
/// in their order, values as written), its line breaks turned into spaces,
/// and a `fetched_at` field put first when it has none. The output holds
/// personal data in plaintext: keep it as safe as the database.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The output format
    #[arg(long, value_enum, default_value = "jsonl")]
    pub format: Format,
    /// Write to this file (created owner-only, complete or not at all)
    /// instead of standard output
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// JSON lines, as `gbdfl import` reads them
    Jsonl,
}

pub fn run(args: Args, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let Format::Jsonl = args.format;
    // Counted and then read in one snapshot: the audit entry, written
    // before the first line goes out, says exactly how many answers.
    let snapshot = store.snapshot()?;
    let count = snapshot.count_answers()?;
    let n = match &args.out {
        Some(path) => {
            let mut file = AtomicFile::create(path)?;
            ctx.release(store, count)?;
            let n = archive::export(&snapshot, &mut file)
                .with_context(|| format!("exporting to {}", path.display()))?;
            file.commit()?;
            eprintln!("exported {n} answers to {}", path.display());
            n
        }
        None => {
            ctx.release(store, count)?;
            let stdout = std::io::stdout();
            let w = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
            archive::export(&snapshot, w).context("writing to standard output")?
        }
    };
    if n != count {
        anyhow::bail!(
            "exported {n} answers where {count} were counted and recorded in the audit trail: run `gbdfl check`"
        );
    }
    Ok(())
}
