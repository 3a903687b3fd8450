//! Dates and times typed into form fields, in the page's language rather
//! than the browser's (a `<input type=date>` follows the browser's locale,
//! so a Russian page on an English system showed `mm/dd/yyyy`): Russian
//! writes `ДД.ММ.ГГГГ` and `ДД.ММ.ГГГГ ЧЧ:ММ`, English the unambiguous
//! ISO order `YYYY-MM-DD` and `YYYY-MM-DD HH:MM`. Times are UTC, as the
//! node stores them. Either language also reads the other's form and the
//! API's (ISO dates, RFC 3339 instants), so a pasted value is understood.

use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, Timelike, Utc};

use super::Lang;

/// Date layouts read, in order: the page's own first.
fn date_layouts(lang: Lang) -> [&'static str; 2] {
    match lang {
        Lang::Ru => ["%d.%m.%Y", "%Y-%m-%d"],
        Lang::En => ["%Y-%m-%d", "%d.%m.%Y"],
    }
}

fn date_layout(lang: Lang) -> &'static str {
    date_layouts(lang)[0]
}

/// A stored `YYYY-MM-DD` date as the field shows it; anything else (what
/// someone typed, shown again after a refusal) as it is.
pub fn date_input(lang: Lang, value: &str) -> String {
    match NaiveDate::parse_from_str(value, "%Y-%m-%d") {
        Ok(date) if value.len() == 10 => date.format(date_layout(lang)).to_string(),
        _ => value.to_owned(),
    }
}

/// What was typed in a date field as the API's `YYYY-MM-DD`; `None` when it
/// is not a date.
pub fn parse_date(lang: Lang, typed: &str) -> Option<String> {
    let typed = typed.trim();
    // Four-digit years only: chrono reads "1.2.26" as year 26.
    date_layouts(lang).iter().find_map(|layout| {
        let date = NaiveDate::parse_from_str(typed, layout).ok()?;
        (1000..=9999)
            .contains(&chrono::Datelike::year(&date))
            .then(|| date.format("%Y-%m-%d").to_string())
    })
}

/// A stored RFC 3339 instant as a date-time field shows it (UTC); seconds
/// and milliseconds only when there are some, so that saving the form
/// unchanged writes nothing.
pub fn datetime_input(lang: Lang, value: &str) -> String {
    let Ok(at) = DateTime::parse_from_rfc3339(value) else {
        return value.to_owned();
    };
    let at = at.with_timezone(&Utc);
    let mut text = at
        .format(&format!("{} %H:%M", date_layout(lang)))
        .to_string();
    let millis = at.nanosecond() / 1_000_000;
    if at.second() != 0 || millis != 0 {
        text.push_str(&format!(":{:02}", at.second()));
    }
    if millis != 0 {
        text.push_str(&format!(".{millis:03}"));
    }
    text
}

/// What was typed in a date-time field (UTC) as the API's RFC 3339; `None`
/// when it is not a date and time.
pub fn parse_datetime(lang: Lang, typed: &str) -> Option<String> {
    let typed = typed.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(typed) {
        return Some(
            at.with_timezone(&Utc)
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        );
    }
    let times = ["%H:%M", "%H:%M:%S", "%H:%M:%S%.f"];
    date_layouts(lang)
        .iter()
        .flat_map(|date| times.iter().map(move |time| format!("{date} {time}")))
        .find_map(|layout| NaiveDateTime::parse_from_str(typed, &layout).ok())
        .filter(|at| (1000..=9999).contains(&chrono::Datelike::year(at)))
        .map(|at| at.and_utc().to_rfc3339_opts(SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_typed_in_the_pages_language() {
        assert_eq!(date_input(Lang::Ru, "2026-05-01"), "01.05.2026");
        assert_eq!(date_input(Lang::En, "2026-05-01"), "2026-05-01");
        assert_eq!(date_input(Lang::Ru, "31.02.2026"), "31.02.2026");
        assert_eq!(
            parse_date(Lang::Ru, " 01.05.2026 ").as_deref(),
            Some("2026-05-01")
        );
        assert_eq!(
            parse_date(Lang::Ru, "1.5.2026").as_deref(),
            Some("2026-05-01")
        );
        assert_eq!(
            parse_date(Lang::En, "2026-05-01").as_deref(),
            Some("2026-05-01")
        );
        // Each reads the other's form and the API's.
        assert_eq!(
            parse_date(Lang::Ru, "2026-05-01").as_deref(),
            Some("2026-05-01")
        );
        assert_eq!(
            parse_date(Lang::En, "01.05.2026").as_deref(),
            Some("2026-05-01")
        );
        for bad in [
            "31.02.2026",
            "05/01/2026",
            "1.5.26",
            "tomorrow",
            "",
            "2026-13-01",
        ] {
            assert_eq!(parse_date(Lang::Ru, bad), None, "{bad}");
            assert_eq!(parse_date(Lang::En, bad), None, "{bad}");
        }
    }

    #[test]
    fn date_times_round_trip_without_losing_seconds() {
        let stored = "2026-11-27T10:05:00.000Z";
        assert_eq!(datetime_input(Lang::Ru, stored), "27.11.2026 10:05");
        assert_eq!(datetime_input(Lang::En, stored), "2026-11-27 10:05");
        assert_eq!(
            parse_datetime(Lang::Ru, "27.11.2026 10:05").as_deref(),
            Some(stored)
        );
        let precise = "2026-11-27T10:05:07.250Z";
        for lang in [Lang::Ru, Lang::En] {
            let shown = datetime_input(lang, precise);
            assert_eq!(
                parse_datetime(lang, &shown).as_deref(),
                Some(precise),
                "{shown}"
            );
        }
        assert_eq!(
            parse_datetime(Lang::En, "2026-11-27T13:05:00+03:00").as_deref(),
            Some(stored)
        );
        assert_eq!(parse_datetime(Lang::Ru, "27.11.2026"), None);
        assert_eq!(parse_datetime(Lang::Ru, "32.11.2026 10:05"), None);
    }
}
