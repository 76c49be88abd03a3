//! The `gbdfl` binary: harden the process, parse, dispatch, map errors to
//! exit codes.

use std::process::ExitCode;

fn main() -> ExitCode {
    gbdfl::process::harden();
    gbdfl::process::install_panic_hook();
    #[cfg(feature = "dev")]
    gbdfl::process::test_panic_if_asked();
    let cli = gbdfl::cli::parse();
    match gbdfl::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if gbdfl::exit::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            let code = gbdfl::exit::code_for(&err);
            // Messages quote text from outside (the service, files, flags):
            // shown safe, so it cannot rewrite the operator's screen.
            eprintln!(
                "gbdfl: error: {}",
                gbdfl_report::render::safe_lines(&chain_text(&err))
            );
            ExitCode::from(code.code())
        }
    }
}

/// "context: cause: cause.", without repeating a message its cause already
/// says, ending in exactly one full stop: each part is a clause (its own
/// final full stops dropped), and the whole gets one.
fn chain_text(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    let clauses: Vec<&str> = parts
        .iter()
        .map(|p| p.trim_end_matches(|c: char| c == '.' || c.is_whitespace()))
        .collect();
    let mut text = clauses.join(": ");
    // A message that ends in a list or a question stays as it is.
    if !text.contains('\n') && !text.ends_with(['?', '!']) {
        text.push('.');
    }
    text
}
