//! Temporary stub.
#![allow(dead_code, unused)]
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Faults {
    pub latency_ms: u64,
    pub fail_first: u32,
    pub rate_limit_first: u32,
    pub retry_after_secs: u64,
    pub drop_first: u32,
    pub garbage_first: u32,
}
pub struct EmulatorConfig {
    pub api_key: Option<String>,
    pub today: Option<chrono::NaiveDate>,
    pub faults: Faults,
}
pub struct Emulator;
impl Emulator {
    pub fn start(addr: &str, config: EmulatorConfig) -> std::io::Result<Emulator> {
        todo!()
    }
    pub fn addr(&self) -> std::net::SocketAddr {
        todo!()
    }
    pub fn url(&self) -> String {
        todo!()
    }
    pub fn calls(&self) -> u64 {
        todo!()
    }
    pub fn answered(&self) -> u64 {
        todo!()
    }
    pub fn set_faults(&self, faults: Faults) {}
    pub fn stop(self) {}
}
pub fn run_blocking(
    addr: &str,
    config: EmulatorConfig,
    on_ready: impl FnOnce(std::net::SocketAddr),
) -> std::io::Result<()> {
    todo!()
}
pub struct Fixture {
    pub iin: &'static str,
    pub outcome: &'static str,
    pub description: &'static str,
}
pub fn fixtures() -> &'static [Fixture] {
    &[]
}
pub fn synthetic_response(
    iin: &str,
    session_id: &str,
    today: chrono::NaiveDate,
) -> serde_json::Value {
    todo!()
}
