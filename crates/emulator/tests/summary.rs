//! Document summaries against the whole answers they come from, over the
//! emulator's synthetic people (here because the core cannot name the
//! emulator).

use chrono::{NaiveDate, TimeZone, Utc};
use gbdfl_core::api::{Document, Person};
use gbdfl_core::expiry::{Rules, check};
use gbdfl_core::summary::Summary;

#[test]
fn a_summary_gives_the_rows_the_whole_answer_gives() {
    let today = NaiveDate::from_ymd_opt(2030, 7, 1).unwrap();
    let rules = Rules {
        as_of: today,
        within_days: 90,
    };
    let at = Utc.with_ymd_and_hms(2030, 6, 1, 10, 0, 0).unwrap();
    let mut listed = 0;
    let mut previous = Summary {
        iin: "1".repeat(12),
        person: Some(Person {
            surname: Some("Долгое Имя Человека С Шестью Документами".into()),
            documents: vec![Document::default(); 6],
            ..Person::default()
        }),
    }
    .encode();
    for n in 0..300u32 {
        let Some(iin) = gbdfl_core::iin::complete(&format!("8805{:02}4{:04}", 10 + n % 18, n))
        else {
            continue;
        };
        let mut body = gbdfl_emulator::synthetic_response(&iin, "s", today);
        if n % 7 == 0 {
            body["result_json"]["life_status"] = "Умерший".into();
            body["result_json"]["documents"][0]["expiry_date"] = "бессрочно".into();
            body["result_json"]["surname"] = format!("  {}", "Ж".repeat(n as usize)).into();
        }
        if n % 11 == 0 {
            body["result_json"] = serde_json::Value::Null;
        }
        let bytes = body.to_string().into_bytes();
        let whole = gbdfl_core::api::parse_response(&bytes).unwrap().result_json;
        let packed = Summary::of_body(&iin, &bytes).encode();
        let back = Summary::decode(&packed).unwrap();
        // Decoding into a summary that held another person gives the same.
        let mut reused = Summary::decode(&previous).unwrap();
        reused.decode_into(&packed).unwrap();
        assert_eq!(format!("{reused:?}"), format!("{back:?}"));
        previous = packed.clone();
        assert_eq!(back.iin, iin);
        let a = check(&iin, whole.as_ref(), at, &rules);
        let b = check(&back.iin, back.person.as_ref(), at, &rules);
        assert_eq!(a, b, "{body}");
        listed += a.len();
    }
    assert!(listed > 50, "the sample lists rows: {listed}");
    assert!(Summary::decode(b"\x02").is_none());
    assert!(Summary::decode(b"\x01\x01\x05ab").is_none());
}
