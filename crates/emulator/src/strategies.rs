//! Generators of answer-shaped JSON for property tests (proptest).

use proptest::prelude::*;
use serde_json::{Value, json};

/// A JSON value shaped like a GBDFL answer: known field names at every
/// level, values of every JSON type (numbers beyond i64, texts that read
/// as flags), nesting a few levels deep. Also used by the import's
/// properties (`archive`).
pub fn answer_like() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::from),
        Just(json!("2030-08-15")),
        Just(json!("VALID")),
        Just(json!("true")),
    ];
    let keys = prop_oneof![
        Just("status"),
        Just("result"),
        Just("result_json"),
        Just("failure_reason"),
        Just("documents"),
        Just("expiry_date"),
        Just("birth_date"),
        Just("surname"),
        Just("name"),
        Just("type"),
        Just("detail"),
        Just("life_status"),
        Just("addresses"),
        Just("backend_session_id"),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((keys.clone(), inner), 0..8).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}
