//! The `gbdfl` binary: harden the process, parse, dispatch, map errors to
//! exit codes.

use std::process::ExitCode;

fn main() -> ExitCode {
    gbdfl::process::harden();
    gbdfl::process::install_panic_hook();
    gbdfl::process::test_panic_if_asked();
    let cli = gbdfl::cli::parse();
    match gbdfl::cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if gbdfl::exit::is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            let code = gbdfl::exit::code_for(&err);
            eprintln!("gbdfl: error: {}", chain_text(&err));
            ExitCode::from(code.code())
        }
    }
}

/// "context: cause: cause", without repeating a message its cause already says.
fn chain_text(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}
