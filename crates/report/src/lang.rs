//! The words of the reports in Russian and English: labels, headings,
//! dates and the Russian CSV headers. Data (names, statuses) is never
//! translated: it is shown exactly as stored.

use chrono::{Datelike as _, NaiveDate};

/// The language of a report's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Russian.
    Ru,
    /// English.
    En,
}

impl Lang {
    /// `ru` or `en`, as `--lang` takes it.
    pub fn parse(s: &str) -> Result<Lang, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "ru" => Ok(Lang::Ru),
            "en" => Ok(Lang::En),
            _ => Err(format!("--lang {s:?}: give ru or en")),
        }
    }

    /// The language of the locale, as the C library picks it: `LC_ALL`,
    /// then `LC_MESSAGES`, then `LANG`; Russian if it starts with `ru`,
    /// English otherwise.
    pub fn from_locale(env: &dyn Fn(&str) -> Option<String>) -> Lang {
        let locale = ["LC_ALL", "LC_MESSAGES", "LANG"]
            .iter()
            .find_map(|k| env(k).filter(|v| !v.is_empty()));
        match locale {
            Some(l) if l.to_ascii_lowercase().starts_with("ru") => Lang::Ru,
            _ => Lang::En,
        }
    }

    /// The language's code: the page's `lang` attribute.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Ru => "ru",
            Lang::En => "en",
        }
    }

    /// Every word of the pages in this language.
    pub(crate) fn labels(self) -> &'static Labels {
        match self {
            Lang::Ru => &RU,
            Lang::En => &EN,
        }
    }

    /// `1 июля 2030 г.` or `1 July 2030`.
    pub fn date(self, d: NaiveDate) -> String {
        let m = d.month0() as usize;
        match self {
            Lang::Ru => format!("{} {} {} г.", d.day(), RU_MONTHS_OF[m], d.year()),
            Lang::En => format!("{} {} {}", d.day(), EN_MONTHS[m], d.year()),
        }
    }

    /// A short day for chart axes: `1 июл` or `1 Jul`.
    pub fn short_date(self, d: NaiveDate) -> String {
        let m = d.month0() as usize;
        match self {
            Lang::Ru => format!("{} {}", d.day(), RU_SHORT[m]),
            Lang::En => format!("{} {}", d.day(), &EN_MONTHS[m][..3]),
        }
    }

    /// `90 days`, `1 day`; `90 дней`, `21 день`, `3 дня`.
    pub fn days(self, n: i64) -> String {
        match self {
            Lang::En if n == 1 => "1 day".into(),
            Lang::En => format!("{n} days"),
            Lang::Ru => {
                let (m10, m100) = (n.rem_euclid(10), n.rem_euclid(100));
                let word = if m10 == 1 && m100 != 11 {
                    "день"
                } else if (2..=4).contains(&m10) && !(12..=14).contains(&m100) {
                    "дня"
                } else {
                    "дней"
                };
                format!("{n} {word}")
            }
        }
    }

    /// The CSV header of column `key` in this language (`--headers ru`);
    /// English keeps the stable keys.
    pub fn header(self, key: &'static str) -> &'static str {
        match self {
            Lang::En => key,
            Lang::Ru => ru_header(key).unwrap_or(key),
        }
    }
}

const EN_MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const RU_MONTHS_OF: [&str; 12] = [
    "января",
    "февраля",
    "марта",
    "апреля",
    "мая",
    "июня",
    "июля",
    "августа",
    "сентября",
    "октября",
    "ноября",
    "декабря",
];
const RU_SHORT: [&str; 12] = [
    "янв", "фев", "мар", "апр", "мая", "июн", "июл", "авг", "сен", "окт", "ноя", "дек",
];

/// Russian CSV headers of every report column (docs/reports.md lists the keys).
pub(crate) fn ru_header(key: &str) -> Option<&'static str> {
    Some(match key {
        "iin" => "ИИН",
        "full_name" => "ФИО",
        "document_type" => "Тип документа",
        "document_number" => "Номер документа",
        "expiry_date" => "Действует до",
        "days_left" => "Осталось дней",
        "document_status" => "Статус документа",
        "life_status" => "Статус жизни",
        "fetched_at" => "Получено (UTC)",
        "reasons" => "Причины",
        "note" => "Примечание",
        "requested_at" => "Время запроса (UTC)",
        "lookup_id" => "ID запроса",
        "operator" => "Оператор",
        "purpose" => "Цель",
        "source" => "Источник",
        "outcome" => "Итог",
        "status" => "Статус",
        "http_status" => "HTTP-статус",
        "failure_reason" => "Причина сбоя",
        "day" => "День (UTC)",
        "lookups" => "Запросов",
        "paid_calls" => "Платных запросов",
        "cache_hits" => "Ответов из кэша",
        "valid" => "VALID",
        "pending" => "PENDING",
        "invalid" => "INVALID",
        "timeout" => "TIMEOUT",
        "not_found" => "NOT_FOUND",
        "failed" => "FAILED",
        "unapproved" => "UNAPPROVED",
        "error_accepted" => "ERROR_ACCEPTED",
        "other_status" => "Другой статус",
        "refused" => "Отказано",
        "unavailable" => "Сервис недоступен",
        "garbled" => "Нечитаемый ответ",
        "not_sent" => "Не дошло до сервиса",
        "org_cache_hits" => "Ответов из кэша организации",
        _ => return None,
    })
}

/// Every word of the pages, in one language.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Labels {
    pub(crate) expiring_title: &'static str,
    pub(crate) summary_title: &'static str,
    pub(crate) as_of: &'static str,
    pub(crate) window: &'static str,
    pub(crate) people_scanned: &'static str,
    pub(crate) people_listed: &'static str,
    pub(crate) documents_listed: &'static str,
    pub(crate) oldest_fetch: &'static str,
    pub(crate) no_records: &'static str,
    pub(crate) generated: &'static str,
    pub(crate) iins_masked: &'static str,
    pub(crate) iins_full: &'static str,
    pub(crate) chart_weeks: &'static str,
    pub(crate) chart_types: &'static str,
    pub(crate) bucket_expired: &'static str,
    pub(crate) bucket_week: &'static str,
    pub(crate) bucket_later: &'static str,
    /// In the order of `expiry::Reason::ALL`.
    pub(crate) reasons: [&'static str; 7],
    /// The chart's series: expired, expires soon, not valid, not living, other.
    pub(crate) series: [&'static str; 5],
    pub(crate) other_types: &'static str,
    pub(crate) no_document: &'static str,
    pub(crate) columns: [&'static str; 11],
    pub(crate) filter: &'static str,
    pub(crate) all_reasons: &'static str,
    pub(crate) per_page: &'static str,
    pub(crate) previous: &'static str,
    pub(crate) next: &'static str,
    pub(crate) page_of: &'static str,
    pub(crate) no_rows: &'static str,
    pub(crate) needs_script: &'static str,
    pub(crate) sort_hint: &'static str,
    pub(crate) period: &'static str,
    pub(crate) all_time: &'static str,
    pub(crate) lookups: &'static str,
    pub(crate) paid_calls: &'static str,
    pub(crate) cache_hits: &'static str,
    pub(crate) failures: &'static str,
    pub(crate) paid_answered: &'static str,
    pub(crate) spent: &'static str,
    pub(crate) saved: &'static str,
    pub(crate) price: &'static str,
    pub(crate) price_not_set: &'static str,
    pub(crate) chart_days: &'static str,
    pub(crate) failures_are: &'static str,
    pub(crate) no_lookups: &'static str,
}

static EN: Labels = Labels {
    expiring_title: "Documents needing attention",
    summary_title: "GBDFL lookups: summary",
    as_of: "As of",
    window: "Window",
    people_scanned: "People in the cache",
    people_listed: "People listed",
    documents_listed: "Documents listed",
    oldest_fetch: "Oldest record fetched",
    no_records: "no records",
    generated: "Generated",
    iins_masked: "IINs masked",
    iins_full: "FULL IINs",
    chart_weeks: "Documents per week of expiry, by reason",
    chart_types: "Documents by type",
    bucket_expired: "expired",
    bucket_week: "week of",
    bucket_later: "no date / later",
    reasons: [
        "expired",
        "expires soon",
        "document not valid",
        "person not living",
        "no expiry date",
        "expiry date unreadable",
        "record unreadable",
    ],
    series: [
        "expired",
        "expires soon",
        "document not valid",
        "person not living",
        "other",
    ],
    other_types: "other types",
    no_document: "(no document)",
    columns: [
        "IIN",
        "Full name",
        "Document type",
        "Number",
        "Expires",
        "Days left",
        "Document status",
        "Life status",
        "Fetched (UTC)",
        "Reasons",
        "Note",
    ],
    filter: "Filter",
    all_reasons: "all reasons",
    per_page: "Rows per page",
    previous: "Previous",
    next: "Next",
    page_of: "Page {page} of {pages}, {rows} rows",
    no_rows: "No rows match.",
    needs_script: "The table needs JavaScript; the header and charts above do not.",
    sort_hint: "Click a column heading to sort.",
    period: "Period",
    all_time: "all time",
    lookups: "Lookups",
    paid_calls: "Paid calls",
    cache_hits: "Cache answers",
    failures: "Failures",
    paid_answered: "Paid calls answered",
    spent: "Spent",
    saved: "Saved by the cache",
    price: "Price per call",
    price_not_set: "price not set (price_per_call and currency in the config file)",
    chart_days: "Lookups per day",
    failures_are: "Failures: paid calls refused, unanswered (service unavailable) or unreadable.",
    no_lookups: "No lookups in the period.",
};

static RU: Labels = Labels {
    expiring_title: "Документы, требующие внимания",
    summary_title: "Запросы в ГБДФЛ: сводка",
    as_of: "На дату",
    window: "Окно",
    people_scanned: "Людей в кэше",
    people_listed: "Людей в списке",
    documents_listed: "Документов в списке",
    oldest_fetch: "Самая старая запись получена",
    no_records: "записей нет",
    generated: "Сформирован",
    iins_masked: "ИИН скрыты частично",
    iins_full: "ИИН ПОЛНОСТЬЮ",
    chart_weeks: "Документы по неделям окончания срока, по причине",
    chart_types: "Документы по типу",
    bucket_expired: "истёк",
    bucket_week: "с",
    bucket_later: "без даты / позже",
    reasons: [
        "срок истёк",
        "скоро истекает",
        "документ недействителен",
        "лицо не числится живым",
        "нет срока действия",
        "срок действия не читается",
        "запись не читается",
    ],
    series: [
        "срок истёк",
        "скоро истекает",
        "документ недействителен",
        "лицо не числится живым",
        "другое",
    ],
    other_types: "другие типы",
    no_document: "(нет документа)",
    columns: [
        "ИИН",
        "ФИО",
        "Тип документа",
        "Номер",
        "Действует до",
        "Осталось дней",
        "Статус документа",
        "Статус жизни",
        "Получено (UTC)",
        "Причины",
        "Примечание",
    ],
    filter: "Фильтр",
    all_reasons: "все причины",
    per_page: "Строк на странице",
    previous: "Назад",
    next: "Вперёд",
    page_of: "Страница {page} из {pages}, строк: {rows}",
    no_rows: "Нет подходящих строк.",
    needs_script: "Для таблицы нужен JavaScript; заголовок и графики выше работают без него.",
    sort_hint: "Нажмите на заголовок столбца, чтобы отсортировать.",
    period: "Период",
    all_time: "всё время",
    lookups: "Запросов",
    paid_calls: "Платных запросов",
    cache_hits: "Ответов из кэша",
    failures: "Сбоев",
    paid_answered: "Платных с ответом",
    spent: "Потрачено",
    saved: "Сэкономлено кэшем",
    price: "Цена запроса",
    price_not_set: "цена не задана (price_per_call и currency в файле настроек)",
    chart_days: "Запросы по дням",
    failures_are: "Сбои: платные запросы, которые сервис отклонил, оставил без ответа (недоступен) или ответил нечитаемо.",
    no_lookups: "За период запросов нет.",
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_csv_column_has_a_russian_header() {
        use crate::{EXPIRING_COLUMNS, LOOKUPS_COLUMNS, SUMMARY_COLUMNS};
        for k in EXPIRING_COLUMNS
            .iter()
            .chain(LOOKUPS_COLUMNS)
            .chain(SUMMARY_COLUMNS)
        {
            assert!(ru_header(k).is_some(), "{k}");
        }
    }

    #[test]
    fn russian_plurals_and_dates() {
        let d = |n| Lang::Ru.days(n);
        assert_eq!(d(1), "1 день");
        assert_eq!(d(3), "3 дня");
        assert_eq!(d(11), "11 дней");
        assert_eq!(d(21), "21 день");
        assert_eq!(d(90), "90 дней");
        assert_eq!(d(112), "112 дней");
        let day = NaiveDate::from_ymd_opt(2030, 7, 1).unwrap();
        assert_eq!(Lang::Ru.date(day), "1 июля 2030 г.");
        assert_eq!(Lang::En.date(day), "1 July 2030");
    }

    #[test]
    fn the_locale_picks_the_language() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            Lang::from_locale(&env(&[("LANG", "ru_RU.UTF-8")])),
            Lang::Ru
        );
        assert_eq!(
            Lang::from_locale(&env(&[("LANG", "ru_RU.UTF-8"), ("LC_ALL", "C")])),
            Lang::En
        );
        assert_eq!(
            Lang::from_locale(&env(&[("LC_MESSAGES", "ru_KZ")])),
            Lang::Ru
        );
        assert_eq!(Lang::from_locale(&env(&[])), Lang::En);
    }
}
