//! How the CLI prints: one table style for every human output (fits 100 columns, text
//! left-aligned, numbers right-aligned) and the `-o table|wide|json` choice.

use std::time::{SystemTime, UNIX_EPOCH};

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};

/// Human output fits this many columns unless `-o wide` asks for the full width.
pub const WIDTH: u16 = 100;

/// What a command prints: `table` (default, fits 100 columns), `wide` (every column, no
/// width limit) or `json`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    #[default]
    Table,
    Wide,
    Json,
}

impl Format {
    pub fn is_json(self) -> bool {
        self == Self::Json
    }
}

/// Whether a column holds text (left-aligned) or numbers (right-aligned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Col {
    Text,
    Num,
}

/// A table with `columns` (header, kind): no borders, two spaces between columns, and at most
/// [`WIDTH`] columns wide unless `format` is `Wide` (long cells wrap).
pub fn table(format: Format, columns: &[(&str, Col)]) -> Table {
    let mut t = Table::new();
    t.load_preset(presets::NOTHING);
    t.set_header(columns.iter().map(|(h, _)| *h));
    if format == Format::Wide {
        t.set_content_arrangement(ContentArrangement::Disabled);
    } else {
        t.set_content_arrangement(ContentArrangement::Dynamic);
        t.set_width(WIDTH);
    }
    for (i, (_, kind)) in columns.iter().enumerate() {
        if let Some(c) = t.column_mut(i) {
            // Two spaces between columns, none before the first or after the last (which
            // would cost two of the 100 columns).
            c.set_padding((0, if i + 1 == columns.len() { 0 } else { 2 }));
            c.set_cell_alignment(match kind {
                Col::Text => CellAlignment::Left,
                Col::Num => CellAlignment::Right,
            });
        }
    }
    t
}

/// `table` rendered with a trailing newline and no trailing spaces on any line.
pub fn render(t: &Table) -> String {
    let mut out = String::new();
    for line in t.lines() {
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// `secs` for a human: `42s`, `4m05s`, `1h02m`, `3d04h` (two units at most).
pub fn duration(secs: u64) -> String {
    let (m, h, d) = (secs / 60, secs / 3600, secs / 86_400);
    if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 {
        format!("{m}m{:02}s", secs % 60)
    } else if secs < 86_400 {
        format!("{h}h{:02}m", m % 60)
    } else {
        format!("{d}d{:02}h", h % 24)
    }
}

/// `t` in RFC 3339, UTC, with milliseconds: `2026-12-02T05:01:02.123Z` (times before 1970
/// read as 1970).
pub fn rfc3339_millis(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (y, m, d) = civil_from_days(secs / 86_400);
    let s = secs % 86_400;
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        s / 3600,
        s / 60 % 60,
        s % 60,
        since.subsec_millis()
    )
}

/// The Gregorian (year, month, day) `days` after 1970-01-01. Counted from 0000-03-01, so
/// a leap day is the last day of its year, in eras of 400 years (146 097 days) that repeat.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    // Months from March, 153 days every 5.
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (era * 400 + yoe + u64::from(m <= 2), m, d)
}

/// Now, as [`rfc3339_millis`] writes it.
pub fn now_rfc3339() -> String {
    rfc3339_millis(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn durations_read_in_two_units() {
        for (secs, want) in [
            (0, "0s"),
            (59, "59s"),
            (60, "1m00s"),
            (245, "4m05s"),
            (3_725, "1h02m"),
            (86_399, "23h59m"),
            (273_600, "3d04h"),
        ] {
            assert_eq!(duration(secs), want, "{secs}");
        }
    }

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        // Checked against `date -u -d @SECS`.
        for (secs, ms, want) in [
            (0, 0, "1970-01-01T00:00:00.000Z"),
            (951_782_400, 5, "2000-02-29T00:00:00.005Z"),
            (951_868_799, 999, "2000-02-29T23:59:59.999Z"),
            (1_798_761_599, 0, "2026-12-31T23:59:59.000Z"),
            (1_798_761_600, 0, "2027-01-01T00:00:00.000Z"),
            (1_796_187_662, 123, "2026-12-02T05:01:02.123Z"),
            (4_107_542_400, 0, "2100-03-01T00:00:00.000Z"),
        ] {
            let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_millis(ms);
            assert_eq!(rfc3339_millis(t), want, "{secs}.{ms:03}");
        }
        assert_eq!(now_rfc3339().len(), "2026-12-02T05:01:02.123Z".len());
    }

    #[test]
    fn every_day_follows_the_one_before_for_three_centuries() {
        let month_len = |y: u64, m: u64| match m {
            2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
            2 => 28,
            4 | 6 | 9 | 11 => 30,
            _ => 31,
        };
        let mut prev = civil_from_days(0);
        assert_eq!(prev, (1970, 1, 1));
        for days in 1..300 * 366 {
            let (y, m, d) = prev;
            let next = if d < month_len(y, m) {
                (y, m, d + 1)
            } else if m < 12 {
                (y, m + 1, 1)
            } else {
                (y + 1, 1, 1)
            };
            prev = civil_from_days(days);
            assert_eq!(prev, next, "day {days}");
        }
    }

    #[test]
    fn a_table_fits_100_columns_and_aligns_by_kind() {
        let mut t = table(Format::Table, &[("name", Col::Text), ("value", Col::Num)]);
        t.add_row(vec!["a".repeat(150), "7".to_owned()]);
        t.add_row(vec!["b".to_owned(), "1234".to_owned()]);
        let text = render(&t);
        assert!(
            text.lines()
                .all(|l| l.chars().count() <= usize::from(WIDTH)),
            "{text}"
        );
        let last = text.lines().last().unwrap();
        assert!(last.starts_with('b') && last.ends_with("1234"), "{text}");
        let wide = render(&{
            let mut t = table(Format::Wide, &[("name", Col::Text)]);
            t.add_row(vec!["a".repeat(150)]);
            t
        });
        assert!(wide.lines().any(|l| l.len() >= 150), "{wide}");
    }
}
