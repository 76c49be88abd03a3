//! Tests of the emulator over real HTTP on 127.0.0.1.
//!
//! Rule these tests keep: each starts its own emulator on port 0, so they run
//! in parallel and never touch the network beyond loopback.

use std::time::{Duration, Instant};

use chrono::NaiveDate;
use reqwest::blocking::{Client, Response};
use serde_json::{Value, json};

use super::*;
use gbdfl_core::iin::{self, Iin};

const KEY: &str = "test-key";
const SESSION: &str = "3e9b7d42-6c1a-4f8e-a2d5-9b4c8e1f7a3d";

fn today() -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, 1).expect("date")
}

fn emulator() -> Emulator {
    let config = EmulatorConfig {
        api_key: Some(KEY.into()),
        today: Some(today()),
        faults: Faults::default(),
    };
    Emulator::start("127.0.0.1:0", config).expect("emulator starts")
}

/// One client for all tests: building one costs tens of milliseconds.
fn client() -> Client {
    static CLIENT: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("client")
        })
        .clone()
}

/// reqwest's `json` feature is off in this crate, so JSON is sent by hand.
fn post_json(url: &str, body: &Value) -> Response {
    client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .expect("request")
}

fn call_with(emu: &Emulator, body: Value) -> Response {
    post_json(&emu.url(), &body)
}

fn call(emu: &Emulator, iin: &str) -> Response {
    call_with(
        emu,
        json!({ "api_key": KEY, "iin": iin, "face2face_backend_session_id": SESSION }),
    )
}

fn json_of(r: Response) -> (u16, Value) {
    let code = r.status().as_u16();
    (
        code,
        serde_json::from_str(&r.text().expect("body")).expect("JSON body"),
    )
}

#[test]
fn fixture_iins_are_valid_unique_and_complete_their_prefix() {
    let mut seen = std::collections::HashSet::new();
    for f in fixtures() {
        let parsed = Iin::parse(f.iin).unwrap_or_else(|e| panic!("{}: {e}", f.iin));
        assert_eq!(iin::complete(&f.iin[..11]).as_deref(), Some(f.iin));
        assert_eq!(parsed.birth_date(), NaiveDate::from_ymd_opt(1995, 2, 15));
        assert!(seen.insert(f.iin), "duplicate {}", f.iin);
    }
    assert_eq!(seen.len(), 30);
}

#[test]
fn every_fixture_answers_its_documented_outcome() {
    let emu = emulator();
    for f in fixtures() {
        let r = call(&emu, f.iin);
        let code = r.status().as_u16();
        let text = r.text().expect("body");
        if let Some(rest) = f.outcome.strip_prefix("HTTP_") {
            assert_eq!(code.to_string(), rest[..3], "{}", f.iin);
            let v: Value = serde_json::from_str(&text).expect("JSON error body");
            assert_eq!(
                f.description.split(" (").next(),
                v["detail"].as_str(),
                "{}",
                f.iin
            );
            continue;
        }
        assert_eq!(code, 200, "{}", f.iin);
        if f.outcome == "GARBAGE" {
            assert!(serde_json::from_str::<Value>(&text).is_err());
            continue;
        }
        let v: Value = serde_json::from_str(&text).expect("JSON");
        let status = v["status"].as_str().expect("status");
        let expected = match f.outcome {
            o if o.starts_with("REASON_") => f.description.split(',').next().unwrap_or(""),
            o if o.starts_with("VALID") => "VALID",
            o => o,
        };
        assert_eq!(status, expected, "{}", f.outcome);
        assert_eq!(v["result"], json!(status == "VALID"));
        assert_eq!(v["iin"], json!(f.iin));
        assert!(
            v["backend_session_id"]
                .as_str()
                .is_some_and(|s| uuid::Uuid::parse_str(s).is_ok())
        );
        if status == "VALID" {
            assert!(v["failure_reason"].is_null());
            assert_eq!(v["result_json"]["iin"], json!(f.iin));
        } else {
            assert!(v["result_json"].is_null());
        }
        if let Some(reason) = v["failure_reason"].as_object() {
            let described = format!(
                "{} / {}",
                reason["type"].as_str().unwrap_or(""),
                reason["detail"].as_str().unwrap_or("")
            );
            assert!(
                f.description.contains(&described),
                "{}: {described}",
                f.outcome
            );
        }
    }
    let labels: std::collections::HashSet<_> = fixtures().iter().map(|f| f.outcome).collect();
    assert_eq!(labels.len(), fixtures().len(), "outcome labels are unique");
    let fixtures_answered_200 = fixtures()
        .iter()
        .filter(|f| !f.outcome.starts_with("HTTP") && f.outcome != "GARBAGE")
        .count();
    assert_eq!(emu.calls(), fixtures().len() as u64);
    assert_eq!(emu.answered(), fixtures_answered_200 as u64);
}

#[test]
fn failure_fixtures_shape_face2face_as_documented() {
    let emu = emulator();
    let (_, v) = json_of(call(&emu, iins::FACE2FACE_FAILED));
    assert_eq!(v["face2face_result"]["result"], json!(false));
    let (_, v) = json_of(call(&emu, iins::SOURCE_SESSIONS_MISSING));
    assert!(v["face2face_result"]["source_session_1"].is_null());
    assert!(v["face2face_result"]["source_session_2"].is_null());
    let (_, v) = json_of(call(&emu, iins::FACE2FACE_RESULT_MISSING));
    assert!(v["face2face_result"].is_null());
    let (_, v) = json_of(call(&emu, iins::VALID));
    assert_eq!(v["face2face_result"]["backend_session_id"], json!(SESSION));
    assert_eq!(
        v["face2face_result"]["source_session_1"]["technology"]["code"],
        json!("LDSH")
    );
    assert_eq!(v["result_json"]["surname"], json!("Нурланов"));
}

#[test]
fn tolerance_fixtures_carry_their_quirks() {
    let emu = emulator();
    let (_, v) = json_of(call(&emu, iins::SPARSE));
    let p = &v["result_json"];
    assert!(p["patronymic"].is_null() && p["birth_place"].is_null());
    assert!(p.get("registration_address").is_none());
    assert_eq!(p["documents"], json!([]));
    assert!(v.get("request_trace").is_some() && p.get("extra_v2").is_some());

    let (_, v) = json_of(call(&emu, iins::OFFSET_DATES));
    assert_eq!(v["result_json"]["gender"], json!("Женский"));
    assert_eq!(
        v["result_json"]["documents"][1]["expiry_date"],
        json!("2030-08-15T00:00:00+06:00")
    );
    assert_eq!(
        v["result_json"]["registration_address"]["begin_date"],
        json!("2017-10-16+06:00")
    );

    let (_, v) = json_of(call(&emu, iins::ENGLISH_GENDER_FEMALE));
    assert_eq!(v["result_json"]["gender"], json!("female"));
    assert!(
        v["result_json"]["documents"][0]
            .get("expiry_date")
            .is_none()
    );
    assert_eq!(
        v["result_json"]["documents"][1]["expiry_date"],
        json!("бессрочно")
    );
    let (_, v) = json_of(call(&emu, iins::ENGLISH_GENDER_MALE));
    assert_eq!(v["result_json"]["gender"], json!("male"));

    let (_, v) = json_of(call(&emu, iins::HOSTILE_TEXT));
    assert!(
        v["result_json"]["surname"]
            .as_str()
            .is_some_and(|s| s.starts_with('='))
    );
    assert!(
        v["result_json"]["name"]
            .as_str()
            .is_some_and(|s| s.contains(',') && s.contains('"'))
    );
    assert_eq!(
        v["result_json"]["registration_address"]["flat"],
        json!("-1")
    );

    let (_, v) = json_of(call(&emu, iins::DECEASED));
    assert_eq!(v["result_json"]["life_status"], json!("Умерший"));

    let (_, v) = json_of(call(&emu, iins::EXPIRING_SOON));
    let soon = v["result_json"]["documents"]
        .as_array()
        .expect("documents")
        .iter()
        .filter_map(|d| d["expiry_date"].as_str()?.parse::<NaiveDate>().ok())
        .filter(|d| (*d - today()).num_days() <= 30)
        .count();
    assert_eq!(soon, 2);
}

#[test]
fn pending_then_valid_per_iin_and_session() {
    let emu = emulator();
    let status = |body: Value| json_of(call_with(&emu, body)).1["status"].clone();
    let req = |session: &str| json!({ "api_key": KEY, "iin": iins::PENDING_THEN_VALID, "face2face_backend_session_id": session });
    assert_eq!(status(req("a")), json!("PENDING"));
    assert_eq!(status(req("a")), json!("VALID"));
    assert_eq!(status(req("b")), json!("PENDING"));
    emu.reset();
    assert_eq!(status(req("a")), json!("PENDING"));
    assert_eq!(emu.calls(), 1);
}

#[test]
fn http_errors_for_key_session_and_bad_requests() {
    let emu = emulator();
    let (code, v) = json_of(call_with(
        &emu,
        json!({ "api_key": "wrong", "iin": iins::VALID, "face2face_backend_session_id": SESSION }),
    ));
    assert_eq!(
        (code, v),
        (404, json!({ "detail": "Organization not found" }))
    );
    let body = json!({ "api_key": KEY, "iin": iins::VALID, "face2face_backend_session_id": "00000000-0000-0000-0000-000000000000" });
    assert_eq!(
        json_of(call_with(&emu, body)),
        (
            404,
            json!({ "detail": "Face2Face backend session not found" })
        )
    );

    let (code, v) = json_of(call_with(&emu, json!({ "api_key": KEY, "iin": 5 })));
    assert_eq!(code, 422);
    assert_eq!(v["detail"].as_array().map(Vec::len), Some(2));
    assert!(!v.to_string().contains(KEY), "the key is never echoed");
    let r = client()
        .post(emu.url())
        .body("not json")
        .send()
        .expect("request");
    assert_eq!(r.status().as_u16(), 422);

    let no_slash = emu.url().trim_end_matches('/').to_owned();
    let body =
        json!({ "api_key": KEY, "iin": iins::VALID, "face2face_backend_session_id": SESSION });
    assert_eq!(post_json(&no_slash, &body).status().as_u16(), 200);

    let (code, v) = json_of(call(&emu, "950215301234"));
    assert_eq!(
        (code, &v["status"], &v["failure_reason"]["detail"]),
        (200, &json!("NOT_FOUND"), &json!("NOT_FOUND"))
    );
    assert_eq!((emu.calls(), emu.answered()), (6, 2));
}

#[test]
fn any_key_but_empty_is_accepted_without_configured_key() {
    let emu = Emulator::start("127.0.0.1:0", EmulatorConfig::default()).expect("start");
    let body = |key: &str| json!({ "api_key": key, "iin": iins::VALID, "face2face_backend_session_id": SESSION });
    assert_eq!(call_with(&emu, body("anything")).status().as_u16(), 200);
    assert_eq!(call_with(&emu, body("")).status().as_u16(), 404);
}

#[test]
fn synthetic_person_is_deterministic_and_follows_the_iin() {
    let female = iin::complete("88081245678").expect("check digit");
    let a = synthetic_response(&female, "s1", today());
    assert_eq!(a, synthetic_response(&female, "s1", today()));
    assert_ne!(
        a["backend_session_id"],
        synthetic_response(&female, "s2", today())["backend_session_id"]
    );
    let p = &a["result_json"];
    assert_eq!(p["birth_date"], json!("1988-08-12"));
    assert_eq!(p["gender"], json!("Женский"));
    assert!(
        p["surname"].as_str().is_some_and(|s| s.ends_with('а')),
        "{}",
        p["surname"]
    );
    assert!(p["patronymic"].as_str().is_some_and(|s| s.ends_with("вна")));

    let emu = emulator();
    let (_, over_http) = json_of(call(&emu, &female));
    assert_eq!(over_http, synthetic_response(&female, SESSION, today()));
}

#[test]
fn synthetic_expiry_dates_spread_around_today() {
    let (mut total, mut soon, mut counts) = (0, 0, [0; 4]);
    for n in 0..2000u32 {
        let Some(iin) = iin::complete(&format!("{:06}3{:04}", 800101 + n % 28, n)) else {
            continue;
        };
        let p = synthetic_person(&iin, today()).expect("valid IIN");
        let docs = p["documents"].as_array().expect("documents");
        counts[docs.len()] += 1;
        for d in docs {
            let exp: NaiveDate = d["expiry_date"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("date");
            let days = (exp - today()).num_days();
            assert!((-400..=5 * 365).contains(&days), "{days}");
            total += 1;
            soon += usize::from((0..90).contains(&days));
        }
    }
    assert_eq!(counts[0], 0);
    assert!(
        counts[1] > 0 && counts[2] > 0 && counts[3] > 0,
        "{counts:?}"
    );
    assert!(soon * 100 / total >= 25, "{soon} of {total} within 90 days");
}

#[test]
fn faults_are_consumed_in_order_and_counted() {
    let emu = emulator();
    emu.set_faults(Faults {
        rate_limit_first: 1,
        fail_first: 1,
        drop_first: 1,
        garbage_first: 1,
        ..Faults::default()
    });

    let r = call(&emu, iins::VALID);
    assert_eq!(r.status().as_u16(), 429);
    assert_eq!(
        r.headers().get("retry-after").and_then(|v| v.to_str().ok()),
        Some("1")
    );
    assert_eq!(
        json_of(call(&emu, iins::VALID)),
        (503, json!({ "detail": "Service Unavailable" }))
    );
    let r = call(&emu, iins::VALID);
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.bytes().is_err(), "the body is cut off");
    let r = call(&emu, iins::VALID);
    assert_eq!(r.status().as_u16(), 200);
    assert!(serde_json::from_slice::<Value>(&r.bytes().expect("body")).is_err());
    assert_eq!(call(&emu, iins::VALID).status().as_u16(), 200);
    assert_eq!((emu.calls(), emu.answered()), (5, 1));
}

#[test]
fn latency_delays_every_call() {
    let emu = emulator();
    emu.set_faults(Faults {
        latency_ms: 150,
        ..Faults::default()
    });
    let start = Instant::now();
    assert_eq!(call(&emu, iins::VALID).status().as_u16(), 200);
    assert!(start.elapsed() >= Duration::from_millis(150));
}

#[test]
fn control_endpoints_set_faults_report_and_reset() {
    let emu = emulator();
    let base = format!("http://{}", emu.addr());
    let c = client();
    let r = post_json(
        &format!("{base}/__emulator/faults"),
        &json!({ "rate_limit_first": 1, "retry_after_secs": 7 }),
    );
    assert!(r.status().is_success());
    let r = call(&emu, iins::VALID);
    assert_eq!(
        (r.status().as_u16(), r.headers().get("retry-after").cloned()),
        (429, Some("7".parse().expect("header")))
    );
    call(&emu, iins::VALID);
    let stats = json_of(
        c.get(format!("{base}/__emulator/stats"))
            .send()
            .expect("stats"),
    );
    assert_eq!(
        (&stats.1["calls"], &stats.1["answered"]),
        (&json!(2), &json!(1))
    );
    assert_eq!(stats.1["faults"]["retry_after_secs"], json!(7));
    c.post(format!("{base}/__emulator/reset"))
        .send()
        .expect("reset");
    assert_eq!((emu.calls(), emu.answered()), (0, 0));
}

#[test]
fn stop_closes_the_port() {
    let emu = emulator();
    let addr = emu.addr();
    call(&emu, iins::VALID);
    emu.stop();
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err());
}
