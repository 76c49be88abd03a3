//! `gbdfl mock-server`: the built-in emulator of the GBDFL API, in the foreground.

use gbdfl_emulator as emulator;
use gbdfl_emulator::{EmulatorConfig, Faults, Hostile};

/// Run the built-in emulator of the GBDFL API (for tests, training and the demo).
///
/// Fixture IINs give every status, failure reason and HTTP error: see
/// `--fixtures`. Any other valid IIN gets a synthetic person. Fault switches
/// can also be changed at run time: POST /__emulator/faults with a JSON body
/// of the same names; GET /__emulator/stats gives the call counts (in all, and per
/// IIN and session: `max_calls_per_request` 1 means nothing was sent twice).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (loopback unless you mean otherwise)
    #[arg(long, default_value = "127.0.0.1:8089")]
    pub addr: String,
    /// Accept only this API key (others get 404 Organization not found) [default: any non-empty key]
    #[arg(long, env = "GBDFL_EMULATOR_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// "Today" for synthetic expiry dates, YYYY-MM-DD [default: today]
    #[arg(long, value_name = "DATE")]
    pub today: Option<chrono::NaiveDate>,
    /// Delay every answer by this many milliseconds
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub latency_ms: u64,
    /// Answer the first N calls with HTTP 503
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub fail_first: u32,
    /// Answer the first N calls with HTTP 429 and Retry-After
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub rate_limit_first: u32,
    /// The Retry-After seconds sent with 429 (any u64: gbdfl waits at most an hour)
    #[arg(long, default_value_t = 1, value_name = "SECS")]
    pub retry_after: u64,
    /// Drop the connection mid-body (after HTTP 200 and headers) on the first N calls
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub drop_first: u32,
    /// Answer the first N calls with HTTP 200 and an HTML page (not JSON)
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub garbage_first: u32,
    /// Answer the first N calls with FAILED, SERVICE_ERROR "Can`t connect to GBDFL service"
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub service_error_first: u32,
    /// Make the first N calls slow by --slow-ms (slower than the client's timeout)
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub slow_first: u32,
    /// The extra delay of the --slow-first calls
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub slow_ms: u64,
    /// Read the first N calls in full, then close the connection without answering
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub hang_up_first: u32,
    /// Answer the first N calls with the hostile HTTP 200 answer --hostile
    #[arg(long, default_value_t = 0, value_name = "N")]
    pub hostile_first: u32,
    /// Which hostile answer --hostile-first sends (deep-nesting: JSON 100,000 arrays deep)
    #[arg(long, value_enum, default_value_t = Hostile::HugeBody, value_name = "KIND")]
    pub hostile: Hostile,
    /// Print the fixture IINs and what each gives, then exit
    #[arg(long)]
    pub fixtures: bool,
}

pub fn run(args: Args, json: bool) -> anyhow::Result<()> {
    if args.fixtures && json {
        let rows: Vec<serde_json::Value> = emulator::fixtures()
            .iter()
            .map(|f| serde_json::json!({ "iin": f.iin, "outcome": f.outcome, "description": f.description }))
            .collect();
        return super::json::print(&rows);
    }
    if json {
        return Err(super::json::refuse(
            "mock-server",
            "it serves the emulator until stopped (`mock-server --fixtures --json` lists the fixtures)",
        ));
    }
    if args.fixtures {
        let mut text =
            String::from("IIN           OUTCOME                             DESCRIPTION\n");
        for f in emulator::fixtures() {
            text.push_str(&format!(
                "{:<12}  {:<34}  {}\n",
                f.iin, f.outcome, f.description
            ));
        }
        return super::out(&text);
    }
    let config = EmulatorConfig {
        api_key: args.api_key,
        today: args.today,
        faults: Faults {
            latency_ms: args.latency_ms,
            fail_first: args.fail_first,
            rate_limit_first: args.rate_limit_first,
            retry_after_secs: args.retry_after,
            drop_first: args.drop_first,
            garbage_first: args.garbage_first,
            service_error_first: args.service_error_first,
            slow_first: args.slow_first,
            slow_ms: args.slow_ms,
            hang_up_first: args.hang_up_first,
            hostile_first: args.hostile_first,
            hostile: args.hostile,
        },
    };
    emulator::run_blocking(&args.addr, config, |addr| {
        eprintln!(
            "GBDFL emulator listening on http://{addr}/api/v1/backend/gbdfl/ (Ctrl-C to stop)"
        );
        eprintln!(
            "Point gbdfl at it: GBDFL_BASE_URL=http://{addr}/api/v1/backend/gbdfl/ GBDFL_API_KEY=any-key gbdfl fetch ..."
        );
    })?;
    Ok(())
}
