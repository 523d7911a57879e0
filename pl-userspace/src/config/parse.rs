//! Text -> [`Config`], with every type error found (serde stops at the first): each
//! `[[network]]`, `[[service]]`, `[[endpoint]]` and `[limits]` entry is read on its own,
//! and an error's span is mapped back to the section and key path it is in
//! (`[[service]] "billing": listeners[1].port`).

use serde::Deserialize as _;
use toml::{
    Spanned,
    de::{DeTable, DeValue, ValueDeserializer},
};

use super::{Config, ConfigError, Source};

/// What [`Source::parse_entries`] read: the entries that parsed, the errors of those that
/// did not, and their names (so the model does not call a reference to one unknown).
#[derive(Debug, Default)]
pub struct Parsed {
    pub config: Config,
    pub errors: Vec<ConfigError>,
    pub unparsed: Unparsed,
}

/// Names of the entries whose types were wrong, by section.
#[derive(Debug, Default)]
pub struct Unparsed {
    pub networks: Vec<String>,
    pub services: Vec<String>,
    pub endpoints: Vec<String>,
    pub nodes: Vec<String>,
}

impl Source {
    /// Parses the text, entry by entry: a syntax error ends it, a type error only its entry.
    pub fn parse_entries(&self) -> Parsed {
        let root = match DeTable::parse(&self.text) {
            Ok(root) => root,
            Err(e) => {
                return Parsed {
                    errors: vec![self.syntax(&e)],
                    ..Parsed::default()
                };
            }
        };
        // The schema's own derive decides what is valid; the entries are read one by one
        // only to find every error and where it is.
        let whole = Config::deserialize(toml::de::Deserializer::from(root.clone()));
        let whole_err = match whole {
            Ok(config) => {
                return Parsed {
                    config,
                    ..Parsed::default()
                };
            }
            Err(e) => e,
        };
        let mut p = Parsed::default();
        for (key, value) in root.get_ref() {
            self.entry_kind(key, value, &mut p);
        }
        if p.errors.is_empty() {
            // The entries parsed on their own: keep what serde said of the whole.
            p.errors.push(self.syntax(&whole_err));
        }
        p.errors.sort_by_key(|e| e.line);
        p
    }

    fn entry_kind(
        &self,
        key: &Spanned<toml::de::DeString<'_>>,
        value: &Spanned<DeValue<'_>>,
        p: &mut Parsed,
    ) {
        let c = &mut p.config;
        let u = &mut p.unparsed;
        let errors = &mut p.errors;
        match key.get_ref().as_ref() {
            "network" => self.entries("network", value, &mut c.network, &mut u.networks, errors),
            "service" => self.entries("service", value, &mut c.service, &mut u.services, errors),
            "endpoint" => {
                self.entries("endpoint", value, &mut c.endpoint, &mut u.endpoints, errors);
            }
            "limits" => match Spanned::deserialize(ValueDeserializer::from(value.clone())) {
                Ok(l) => c.limits = Some(l),
                Err(e) => errors.push(self.located(&e, "[limits]".to_owned(), value)),
            },
            "cluster" => match Spanned::deserialize(ValueDeserializer::from(value.clone())) {
                Ok(l) => c.cluster = Some(l),
                Err(e) => errors.push(self.located(&e, "[cluster]".to_owned(), value)),
            },
            "node" => self.entries("node", value, &mut c.node, &mut u.nodes, errors),
            "dns" => match Spanned::deserialize(ValueDeserializer::from(value.clone())) {
                Ok(d) => c.dns = Some(d),
                Err(e) => errors.push(self.located(&e, "[dns]".to_owned(), value)),
            },
            other => errors.push(self.error(
                Some(key.span().start),
                "file",
                "",
                format!(
                    "unknown section `{other}`, expected one of `network`, `service`, `endpoint`, `limits`, `cluster`, `node`, `dns`"
                ),
            )),
        }
    }

    /// The `[[kind]]` entries of `value`, each on its own.
    fn entries<T: for<'de> serde::Deserialize<'de>>(
        &self,
        kind: &str,
        value: &Spanned<DeValue<'_>>,
        out: &mut Vec<Spanned<T>>,
        unparsed: &mut Vec<String>,
        errors: &mut Vec<ConfigError>,
    ) {
        let Some(list) = value.get_ref().as_array() else {
            let e = Vec::<Spanned<T>>::deserialize(ValueDeserializer::from(value.clone()))
                .err()
                .map_or_else(
                    || "expected an array of tables".to_owned(),
                    |e| first_line(&e),
                );
            errors.push(self.error(Some(value.span().start), "file", kind, e));
            return;
        };
        for (i, entry) in list.iter().enumerate() {
            match Spanned::<T>::deserialize(ValueDeserializer::from(entry.clone())) {
                Ok(v) => out.push(v),
                Err(e) => {
                    let name = entry
                        .get_ref()
                        .get("name")
                        .and_then(|n| n.get_ref().as_str())
                        .unwrap_or_default();
                    errors.push(self.located(&e, super::section_label(kind, i, name), entry));
                    unparsed.push(name.to_owned());
                }
            }
        }
    }

    /// `e`, raised inside `entry` (section `label`), naming the key path it points at.
    fn located(
        &self,
        e: &toml::de::Error,
        label: String,
        entry: &Spanned<DeValue<'_>>,
    ) -> ConfigError {
        let at = e.span().map_or(entry.span().start, |s| s.start);
        let mut path = String::new();
        key_path(entry, at, &mut path);
        self.error(Some(at), &label, &path, first_line(e))
    }

    /// A syntax error (or one serde found in the whole): file and line, no section.
    fn syntax(&self, e: &toml::de::Error) -> ConfigError {
        self.error(e.span().map(|s| s.start), "file", "", first_line(e))
    }
}

/// toml's message carries its own excerpt; its first line names the problem.
fn first_line(e: &toml::de::Error) -> String {
    e.message()
        .lines()
        .next()
        .unwrap_or("invalid TOML")
        .to_owned()
}

/// Appends to `path` the keys (and array indices) inside `v` whose span holds `at`:
/// `listeners[1].port`.
fn key_path(v: &Spanned<DeValue<'_>>, at: usize, path: &mut String) {
    match v.get_ref() {
        DeValue::Table(t) => {
            for (k, child) in t {
                let in_key = k.span().contains(&at);
                if in_key || child.span().contains(&at) {
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k.get_ref());
                    if !in_key {
                        key_path(child, at, path);
                    }
                    return;
                }
            }
        }
        DeValue::Array(a) => {
            if let Some(i) = a.iter().position(|x| x.span().contains(&at)) {
                path.push_str(&format!("[{i}]"));
                key_path(&a[i], at, path);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, Source};

    fn parse_errors(text: &str) -> Vec<ConfigError> {
        Source::from_text("pl.toml", text.to_owned())
            .parse()
            .map(|_| ())
            .expect_err("the types were accepted")
            .0
    }

    const SERVICE: &str = r#"
[[service]]
name = "billing"
network = "prov"
nlb_addresses = [{ ip = "10.9.0.250", zone = "z1" }]
listeners = [{ protocol = "tcp", port = 443 }, { protocol = "udp", port = 53 }]
targets = [{ ip = "10.9.0.11", zone = "z1" }]
"#;

    #[test]
    fn a_type_error_names_its_section_key_and_line() {
        // (replace, with, section, field, line, message)
        let cases = [
            (
                "port = 53",
                "port = \"53\"",
                "[[service]] \"billing\"",
                "listeners[1].port",
                6,
                "invalid type: string \"53\", expected u16",
            ),
            (
                "port = 443",
                "port = -1",
                "[[service]] \"billing\"",
                "listeners[0].port",
                6,
                "expected u16",
            ),
            (
                "zone = \"z1\" }]\nlisteners",
                "zone = 1 }]\nlisteners",
                "[[service]] \"billing\"",
                "nlb_addresses[0].zone",
                5,
                "expected a string",
            ),
            (
                "network = \"prov\"\n",
                "",
                "[[service]] \"billing\"",
                "",
                2,
                "missing field `network`",
            ),
            (
                "name = \"billing\"",
                "name = \"billing\"\ncolour = 1",
                "[[service]] \"billing\"",
                "colour",
                4,
                "unknown field `colour`",
            ),
            (
                "name = \"billing\"",
                "name = 7",
                "[[service]] #1",
                "name",
                3,
                "expected a string",
            ),
            (
                "targets = [",
                "targets = 5 #",
                "[[service]] \"billing\"",
                "targets",
                7,
                "invalid type: integer `5`",
            ),
        ];
        for (replace, with, section, field, line, message) in cases {
            assert!(
                SERVICE.contains(replace),
                "{replace:?} is not in the config"
            );
            let errs = parse_errors(&SERVICE.replacen(replace, with, 1));
            assert_eq!(errs.len(), 1, "{with:?}: {errs:#?}");
            let e = &errs[0];
            assert_eq!(
                (e.section.as_str(), e.field.as_str(), e.line),
                (section, field, Some(line)),
                "{with:?}: {e}"
            );
            assert!(e.message.contains(message), "{with:?}: {e}");
        }
    }

    #[test]
    fn every_entry_with_a_type_error_is_reported() {
        let text = format!(
            "{}{}\n[limits]\nflow_table_size = \"big\"\n[[endpoint]]\nname = \"e\"\n",
            SERVICE.replace("port = 53", "port = \"53\""),
            SERVICE
                .replace("name = \"billing\"", "name = \"ledger\"")
                .replace("cross", "x")
                .replace("targets", "target"),
        );
        let errs = parse_errors(&text);
        let got: Vec<String> = errs
            .iter()
            .map(|e| format!("{}: {}", e.section, e.field))
            .collect();
        assert_eq!(
            got,
            [
                "[[service]] \"billing\": listeners[1].port",
                "[[service]] \"ledger\": target",
                "[limits]: flow_table_size",
                "[[endpoint]] \"e\": ",
            ],
            "{errs:#?}"
        );
        // A syntax error is one error, with its line and no section.
        let errs = parse_errors("[[network]]\nname = \"a\nb\"\n");
        assert_eq!(errs.len(), 1, "{errs:#?}");
        assert_eq!(errs[0].section, "file");
        assert!(errs[0].line.is_some(), "{errs:#?}");
        // An unknown section, and a section of the wrong shape.
        let errs = parse_errors("[netwrk]\nname = \"a\"\n[[limits]]\n");
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert!(
            errs[0].message.contains("unknown section `netwrk`"),
            "{errs:#?}"
        );
        assert_eq!(errs[1].section, "[limits]", "{errs:#?}");
    }
}
