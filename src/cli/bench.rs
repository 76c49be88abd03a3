//! `gbdfl bench` (hidden): the pieces of the benchmark in bench/run that
//! need gbdfl's own code: synthetic archives and the floor measurements.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use rayon::prelude::*;

use super::{Ctx, out};
use gbdfl_core::clock::Clock;
use gbdfl_store::Store;

/// Benchmark helpers (see BENCHMARKS.md).
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub what: What,
}

#[derive(Debug, clap::Subcommand)]
pub enum What {
    /// Write N synthetic answers (the emulator's persons, shaped like the
    /// API page's example) as JSON lines with a `fetched_at` field
    Gen {
        /// How many answers
        #[arg(default_value_t = 1_000_000)]
        n: u64,
        /// Where to write them
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Read and open every stored answer, then every person's summary, once,
    /// on one thread, and print the time each took
    Floor,
    /// Write the v2 zstd dictionary (crates/store/src/zstd-dict-v2.bin): the v1
    /// content with entropy tables from 1,000 synthetic answers
    Dict {
        /// Where to write it
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

impl Args {
    /// The name in the audit trail: `floor` opens personal data; `gen`
    /// makes up people and touches no database.
    pub fn name(&self) -> Option<&'static str> {
        match self.what {
            What::Gen { .. } | What::Dict { .. } => None,
            What::Floor => Some("bench floor"),
        }
    }
}

/// Writes `n` synthetic answers to `path`.
pub fn generate(n: u64, path: &PathBuf, clock: &dyn Clock) -> anyhow::Result<()> {
    let (now, today) = (clock.now(), clock.today());
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let (mut k, mut written) = (0u64, 0u64);
    while written < n {
        let keys: Vec<u64> = (k..k + 65_536).collect();
        k += 65_536;
        let lines: Vec<String> = keys
            .par_iter()
            .filter_map(|&k| {
                let iin = gbdfl_emulator::synthetic_iin(k)?;
                let session = uuid::Uuid::from_u128(
                    0x5e55_0000_0000_4000_8000_0000_0000_0000 | u128::from(k),
                );
                let mut v = gbdfl_emulator::synthetic_response(&iin, &session.to_string(), today);
                let at = now - chrono::TimeDelta::minutes((k % (365 * 24 * 60)) as i64);
                v["fetched_at"] = gbdfl_core::time::iso_millis(at).into();
                Some(v.to_string())
            })
            .collect();
        for line in lines {
            if written == n {
                break;
            }
            w.write_all(line.as_bytes())?;
            w.write_all(b"\n")?;
            written += 1;
        }
    }
    w.flush()?;
    Ok(())
}

pub fn run(args: Args, ctx: &Ctx, store: Option<&Store>) -> anyhow::Result<()> {
    match (args.what, store) {
        (What::Gen { n, out: path }, _) => generate(n, &path, ctx.clock.as_ref()),
        (What::Dict { out: path }, _) => {
            let dict = gbdfl_emulator::dictionary::dictionary(
                gbdfl_store::codec::DICT_V1,
                gbdfl_store::codec::LEVEL,
                gbdfl_store::codec::DICT_V2_ID,
                &gbdfl_emulator::dictionary_samples(),
            )
            .map_err(|why| anyhow::anyhow!("making the dictionary: {why}"))?;
            std::fs::write(&path, dict).with_context(|| format!("writing {}", path.display()))
        }
        (What::Floor, Some(store)) => {
            let answers = store.floor_answers()?;
            let summaries = store.floor_summaries()?;
            ctx.note_records(answers.values + summaries.values);
            out(&format!(
                "answers: {} values, {} bytes opened, {:.3} s\nsummaries: {} values, {} bytes opened, {:.3} s\n",
                answers.values,
                answers.bytes,
                answers.seconds,
                summaries.values,
                summaries.bytes,
                summaries.seconds
            ))
        }
        (What::Floor, None) => unreachable!("floor is audited and gets the store"),
    }
}
