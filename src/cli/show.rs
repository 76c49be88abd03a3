//! `gbdfl show`: the latest VALID record of a person, from the cache only.

use super::{Ctx, out};
use crate::exit::{Exit, ExitCode};
use gbdfl_report::render;
use gbdfl_store::Store;

/// Show the latest VALID record of a person from the cache (never calls the service).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The subject's IIN (12 digits)
    pub iin: String,
    /// Accept an IIN that fails the published checks
    #[arg(long)]
    pub skip_iin_check: bool,
}

pub fn run(args: Args, ctx: &Ctx, store: &Store) -> anyhow::Result<()> {
    let iin = super::parse_iin(&args.iin, args.skip_iin_check, ctx.clock.today())?;
    ctx.note_subject(store, &iin);
    let Some(gbdfl_store::Record { lookup, body }) = store.latest_valid(&iin)? else {
        return Err(Exit::new(
            ExitCode::NotCached,
            format!(
                "no VALID record of {} in the cache ({}): fetch it with `gbdfl fetch IIN --session UUID`, or see `gbdfl history IIN` for earlier attempts",
                iin.masked(),
                store.path().display()
            ),
        )
        .into());
    };
    ctx.note_lookup(&lookup.id);
    if ctx.settings.json {
        let text = super::json::raw(&body);
        ctx.release(store, 1)?;
        return out(&text);
    }
    let Some(resp) = gbdfl_core::api::parse_response(&body).ok() else {
        return Err(Exit::new(
            ExitCode::KeyOrIntegrity,
            format!(
                "lookup {}: the stored answer is not readable JSON; run `gbdfl check`",
                lookup.id
            ),
        )
        .into());
    };
    let text = render::person(iin.as_str(), &resp, &lookup, ctx.clock.today());
    ctx.release(store, 1)?;
    out(&text)
}
