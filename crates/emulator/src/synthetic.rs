//! The deterministic synthetic person the emulator returns for every valid
//! IIN that is not a fixture; benchmarks call it directly, without HTTP.
//!
//! Rule this module keeps: the answer is a pure function of (IIN, session id,
//! today). Birth date and sex come from the IIN itself; names, places and
//! document numbers from SHA-256 of the IIN; only the expiry dates move with
//! `today` (spread from 400 days ago to 5 years ahead, about a third within
//! the next 90 days), so expiry reports always have something to show.
//! Also here: the benchmark's synthetic IINs, and the samples the zstd
//! dictionary v2 was made from.

use chrono::{Months, NaiveDate, TimeDelta};
use serde_json::{Value, json};

use super::shape::{DOC_VALID, Face2Face, Picks, document, envelope, failure, uuid_from};
use gbdfl_core::iin::{Iin, Sex};

struct Group {
    nationality: &'static str,
    /// Male forms; the female form adds "а" to -ов/-ев/-ин.
    surnames: &'static [&'static str],
    male: &'static [&'static str],
    female: &'static [&'static str],
    /// (male, female) patronymic from the same father's name.
    patronymics: &'static [(&'static str, &'static str)],
}

#[rustfmt::skip]
const KAZAKH: Group = Group {
    nationality: "КАЗАХ",
    surnames: &[
        "Нурланов", "Ахметов", "Садыков", "Жумабаев", "Касымов", "Сулейменов", "Омаров", "Искаков",
        "Байжанов", "Кенжебаев", "Абенов", "Есимов", "Тулегенов", "Мукашев", "Сейткалиев",
        "Бекмухамбетов",
    ],
    male: &[
        "Асхат", "Ерлан", "Нурлан", "Данияр", "Айдос", "Бауыржан", "Серик", "Арман", "Тимур",
        "Алихан", "Ержан", "Санжар", "Ермек", "Дамир",
    ],
    female: &[
        "Айгерим", "Динара", "Жанар", "Асель", "Гульнара", "Мадина", "Аружан", "Сауле", "Камила",
        "Алия", "Жансая", "Акмарал",
    ],
    patronymics: &[
        ("Ерланович", "Ерлановна"),
        ("Серикович", "Сериковна"),
        ("Нурланович", "Нурлановна"),
        ("Болатович", "Болатовна"),
        ("Маратович", "Маратовна"),
        ("Кайратович", "Кайратовна"),
        ("Асланович", "Аслановна"),
        ("Бахытжанович", "Бахытжановна"),
    ],
};

#[rustfmt::skip]
const RUSSIAN: Group = Group {
    nationality: "РУССКИЙ",
    surnames: &[
        "Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов", "Михайлов",
        "Новиков", "Федоров", "Морозов", "Волков", "Никитин", "Ильин",
    ],
    male: &[
        "Александр", "Дмитрий", "Сергей", "Андрей", "Максим", "Иван", "Алексей", "Владимир",
    ],
    female: &[
        "Анна", "Елена", "Ольга", "Наталья", "Татьяна", "Мария", "Екатерина", "Ирина",
    ],
    patronymics: &[
        ("Александрович", "Александровна"),
        ("Сергеевич", "Сергеевна"),
        ("Владимирович", "Владимировна"),
        ("Николаевич", "Николаевна"),
        ("Андреевич", "Андреевна"),
        ("Викторович", "Викторовна"),
    ],
};

/// (region, district, city) of real places; district is empty where a city
/// is given without one.
const PLACES: &[(&str, &str, &str)] = &[
    ("Алматы", "Медеуский", "Алматы"),
    ("Алматы", "Бостандыкский", "Алматы"),
    ("Алматы", "Алмалинский", "Алматы"),
    ("Алматы", "Ауэзовский", "Алматы"),
    ("Астана", "Есильский", "Астана"),
    ("Астана", "Сарыаркинский", "Астана"),
    ("Шымкент", "Абайский", "Шымкент"),
    ("Алматинская область", "Талгарский", "Талгар"),
    ("Алматинская область", "Енбекшиказахский", "Есик"),
    ("Карагандинская область", "", "Караганда"),
    ("Павлодарская область", "", "Павлодар"),
    ("Восточно-Казахстанская область", "", "Усть-Каменогорск"),
    ("Актюбинская область", "", "Актобе"),
    ("Атырауская область", "", "Атырау"),
    ("Мангистауская область", "", "Актау"),
    ("Костанайская область", "", "Костанай"),
    ("Кызылординская область", "", "Кызылорда"),
    ("Жамбылская область", "", "Тараз"),
    ("Туркестанская область", "Сайрамский", "Аксукент"),
];

#[rustfmt::skip]
const STREETS: &[&str] = &[
    "Абая", "Толе би", "Сатпаева", "Жибек жолы", "Райымбека", "Кабанбай батыра", "Достык",
    "Байтурсынова", "Ауэзова", "Гоголя", "Пушкина", "Момышулы",
];

fn feminine(surname: &str) -> String {
    if ["ов", "ев", "ин"].iter().any(|end| surname.ends_with(end)) {
        format!("{surname}а")
    } else {
        surname.to_owned()
    }
}

fn place(p: &mut Picks) -> (&'static str, Value, &'static str) {
    let &(region, district, city) = p.pick(PLACES);
    let district = if district.is_empty() {
        Value::Null
    } else {
        json!(district)
    };
    (region, district, city)
}

fn days(d: NaiveDate, n: i64) -> NaiveDate {
    d.checked_add_signed(TimeDelta::days(n)).unwrap_or(d)
}

/// Issued ten years before expiry, but never before birth nor after expiry.
fn issued(expiry: NaiveDate, birth: NaiveDate) -> NaiveDate {
    expiry
        .checked_sub_months(Months::new(120))
        .unwrap_or(expiry)
        .max(birth)
        .min(expiry)
}

fn expiry(p: &mut Picks, today: NaiveDate) -> NaiveDate {
    let offset = if p.chance(30) {
        p.below(90) as i64
    } else {
        p.below(400 + 5 * 365) as i64 - 400
    };
    days(today, offset)
}

/// (surname, name, patronymic) from `group`, in the form for the sex.
fn names(p: &mut Picks, group: &Group, male: bool) -> (String, &'static str, &'static str) {
    let surname = *p.pick(group.surnames);
    let (name, surname) = if male {
        (*p.pick(group.male), surname.to_owned())
    } else {
        (*p.pick(group.female), feminine(surname))
    };
    let &(pm, pf) = p.pick(group.patronymics);
    (surname, name, if male { pm } else { pf })
}

/// An ID card; maybe a passport; for an adult, maybe a driving licence.
fn documents(p: &mut Picks, birth: NaiveDate, adult: bool, today: NaiveDate) -> Vec<Value> {
    let mut documents = Vec::with_capacity(3);
    let mut add = |p: &mut Picks, kind: &str, number: String| {
        let exp = expiry(p, today);
        documents.push(document(
            kind,
            &number,
            &issued(exp, birth).to_string(),
            &exp.to_string(),
            DOC_VALID,
        ));
    };
    let id = format!("0{:08}", p.below(100_000_000));
    add(p, "УДОСТОВЕРЕНИЕ РК", id);
    if p.chance(60) {
        let n = format!("N{:08}", p.below(100_000_000));
        add(p, "ПАСПОРТ", n);
    }
    if adult && p.chance(35) {
        let n = format!("BN{:06}", p.below(1_000_000));
        add(p, "ВОДИТЕЛЬСКОЕ УДОСТОВЕРЕНИЕ", n);
    }
    documents
}

/// The `result_json` of a synthetic person, or `None` when the IIN fails
/// validation (the real service would not find it either).
pub fn synthetic_person(iin: &str, today: NaiveDate) -> Option<Value> {
    let parsed = Iin::parse(iin).ok()?;
    let birth = parsed.birth_date()?;
    let male = parsed.sex()? == Sex::Male;
    let mut p = Picks::new(&["person", parsed.as_str()]);

    let group = if p.chance(70) { &KAZAKH } else { &RUSSIAN };
    let (surname, name, patronymic) = names(&mut p, group, male);

    let (b_region, b_district, b_city) = place(&mut p);
    let (r_region, r_district, r_city) = place(&mut p);
    let adult = days(birth, 18 * 365);
    let begin = if adult > today {
        birth
    } else {
        days(adult, p.below(3650) as i64).min(today)
    };
    let flat = if p.chance(70) {
        json!((1 + p.below(250)).to_string())
    } else {
        Value::Null
    };
    let documents = documents(&mut p, birth, adult <= today, today);

    Some(json!({
        "iin": parsed.as_str(),
        "surname": surname,
        "name": name,
        "patronymic": patronymic,
        "birth_date": birth.to_string(),
        "gender": if male { "Мужской" } else { "Женский" },
        "nationality": group.nationality,
        "citizenship": "КАЗАХСТАН",
        "life_status": "Нормальный",
        "birth_place": {
            "country": "КАЗАХСТАН",
            "region": b_region,
            "district": b_district,
            "city": b_city,
        },
        "documents": documents,
        "registration_address": {
            "country": "КАЗАХСТАН",
            "region": r_region,
            "district": r_district,
            "city": r_city,
            "street": p.pick(STREETS),
            "building": (1 + p.below(150)).to_string(),
            "flat": flat,
            "begin_date": begin.to_string(),
        },
    }))
}

/// The full response object for any IIN: VALID with [`synthetic_person`] for
/// a valid IIN, NOT_FOUND (`CLIENT`/`NOT_FOUND`) otherwise. Every field,
/// `backend_session_id` included, is derived from the arguments.
pub fn synthetic_response(iin: &str, session_id: &str, today: NaiveDate) -> Value {
    let backend = uuid_from(&["gbdfl", iin, session_id]);
    let f2f = Face2Face::ok(session_id).to_json(today);
    match synthetic_person(iin, today) {
        Some(person) => envelope(backend, iin, "VALID", f2f, person, Value::Null),
        None => envelope(
            backend,
            iin,
            "NOT_FOUND",
            f2f,
            Value::Null,
            failure("CLIENT", "NOT_FOUND"),
        ),
    }
}

/// The `k`-th synthetic IIN: birth dates spread over 20,000 days from
/// 1950, serials above them; `None` when that prefix has no check digit.
pub fn synthetic_iin(k: u64) -> Option<String> {
    let birth = chrono::NaiveDate::from_ymd_opt(1950, 1, 1)?
        .checked_add_days(chrono::Days::new(k % 20_000))?;
    let century = if chrono::Datelike::year(&birth) < 2000 {
        3 + (k / 20_000) % 2
    } else {
        5 + (k / 20_000) % 2
    };
    let serial = (k / 40_000) % 10_000;
    gbdfl_core::iin::complete(&format!("{}{century}{serial:04}", birth.format("%y%m%d")))
}

/// The samples the v2 dictionary's entropy tables are computed from: 1,000
/// synthetic answers as the service sends them (compact JSON, no
/// `fetched_at`), of people the benchmark's archives never hold (serials
/// from 5,000 up; `gen` uses serials below 300 even at ten million answers), with
/// expiry dates as of a fixed day, so that they never change.
pub fn dictionary_samples() -> Vec<Vec<u8>> {
    let today = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("a date");
    (0u64..)
        .map(|i| 5_000 * 40_000 + i * 40_019)
        .filter_map(|k| {
            let iin = synthetic_iin(k)?;
            let session =
                uuid::Uuid::from_u128(0xd1c7_0000_0000_4000_8000_0000_0000_0000 | u128::from(k));
            let v = synthetic_response(&iin, &session.to_string(), today);
            Some(v.to_string().into_bytes())
        })
        .take(1_000)
        .collect()
}

/// An archive of up to `n` synthetic answers (the emulator's persons, born
/// on the days of `yymm`), one per line; fewer when a made-up IIN has no
/// check digit.
pub fn synthetic_archive(n: u32, yymm: &str) -> String {
    let today = chrono::Local::now().date_naive();
    (0..n)
        .filter_map(|k| {
            let iin = gbdfl_core::iin::complete(&format!("{yymm}{:02}4{k:04}", 1 + k % 28))?;
            let answer = synthetic_response(&iin, "session", today);
            Some(format!("{answer}\n"))
        })
        .collect()
}
