//! How the CLI prints: one table style for every human output (fits 100 columns, text
//! left-aligned, numbers right-aligned) and the `-o table|wide|json` choice.

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
            // Two spaces between columns, none before the first.
            c.set_padding((0, 2));
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

#[cfg(test)]
mod tests {
    use super::*;

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
