//! What checking a config found: its errors, and what only this host lacks (an interface),
//! which is an error for `pl run` and a warning for `pl check` without `--strict`.

use crate::config::{ConfigError, Unparsed};

/// Whether a lookup on this host (an interface: its ifindex, MAC, MTU) that fails is an
/// error (`pl run`, `pl reload`, `pl check --strict`) or a warning (`pl check`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostChecks {
    Errors,
    Warnings,
}

/// The result of checking a config in full: the model if it is valid, every error, and
/// the warnings.
#[derive(Debug)]
pub struct Check {
    /// Valid: no errors. With host warnings its interfaces are placeholders (ifindex 0):
    /// it describes the config and is not for running.
    pub model: Option<super::Model>,
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
}

/// Collects errors and warnings while the model is built, so one bad entry does not hide
/// the next.
pub(super) struct Found<'a> {
    pub errors: Vec<ConfigError>,
    pub warnings: Vec<ConfigError>,
    host: HostChecks,
    /// Entries whose types were wrong: a reference to one is not an error of its own.
    pub unparsed: &'a Unparsed,
}

impl<'a> Found<'a> {
    pub fn new(host: HostChecks, unparsed: &'a Unparsed) -> Self {
        Self {
            errors: Vec::new(),
            warnings: Vec::new(),
            host,
            unparsed,
        }
    }

    /// The value, or None with its error recorded.
    pub fn keep<T>(&mut self, r: Result<T, ConfigError>) -> Option<T> {
        r.map_err(|e| self.errors.push(e)).ok()
    }

    /// A problem only this host has: an error or a warning, as asked.
    pub fn host_problem(&mut self, e: ConfigError) {
        match self.host {
            HostChecks::Errors => self.errors.push(e),
            HostChecks::Warnings => self.warnings.push(e),
        }
    }

    /// Errors and warnings in file order.
    pub fn into_check(mut self, model: Option<super::Model>) -> Check {
        self.errors.sort_by_key(|e| e.line);
        self.warnings.sort_by_key(|e| e.line);
        Check {
            model: model.filter(|_| self.errors.is_empty()),
            errors: self.errors,
            warnings: self.warnings,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        Model,
        testing::{EXAMPLE, Fixed, build_all, source},
    };

    /// The messages of `text`'s errors, or a panic if it has none.
    fn errors(text: &str) -> Vec<String> {
        build_all(text)
            .map(|_| ())
            .expect_err("the config was accepted")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn every_error_is_reported_across_sections_in_file_order() {
        let text = EXAMPLE
            .replace("interface = \"fw-prov\"", "interface = \"fw-nope\"")
            .replace(
                "{ protocol = \"udp\", port = 53 }",
                "{ protocol = \"sctp\", port = 53 }",
            )
            .replace(
                "allowed_sources = [\"10.0.0.0/24\"]",
                "allowed_sources = [\"10.0.0.1/24\"]",
            )
            + "\n[limits]\nflow_table_size = 0\nsnat_port_min = 0\n";
        let errs = errors(&text);
        let want = [
            "[[network]] \"billing-prod\": interface: fw-nope",
            "[[service]] \"billing\": listeners.protocol: \"sctp\"",
            "[[endpoint]] \"acme-billing\": allowed_sources",
            "[limits]: flow_table_size",
            "[limits]: snat_port_min",
        ];
        assert_eq!(errs.len(), want.len(), "{errs:#?}");
        for (e, w) in errs.iter().zip(want) {
            assert!(e.contains(w), "{e:?} lacks {w:?} (all: {errs:#?})");
        }
    }

    #[test]
    fn one_bad_entry_does_not_make_others_refer_to_nothing() {
        // The service's network has an error, and its listener: the endpoints of the
        // service are still checked, and none says the service or network is unknown.
        let text = EXAMPLE
            .replace("interface = \"fw-prov\"", "interface = \"fw-acme\"")
            .replace("port = 443,", "port = 0,")
            .replace(
                "allowed_sources = [\"10.0.0.0/24\"]",
                "allowed_sources = [\"x\"]",
            );
        let errs = errors(&text);
        assert_eq!(errs.len(), 3, "{errs:#?}");
        assert!(
            errs[0].contains("interface: fw-acme is already"),
            "{errs:#?}"
        );
        assert!(errs[1].contains("listeners.port: port 0"), "{errs:#?}");
        assert!(errs[2].contains("allowed_sources"), "{errs:#?}");
        // A service whose types are wrong: its endpoints do not call it unknown, its
        // accepted endpoints are still known, and the rest is still checked.
        let text = EXAMPLE
            .replace("cross_zone = false", "cross_zone = \"no\"")
            .replace(
                "allowed_sources = [\"10.0.0.0/24\"]",
                "allowed_sources = [\"x\"]",
            );
        let errs = errors(&text);
        assert_eq!(errs.len(), 2, "{errs:#?}");
        assert!(
            errs[0].contains("[[service]] \"billing\": cross_zone: invalid type: string \"no\", expected a boolean"),
            "{errs:#?}"
        );
        assert!(
            errs[1].contains("[[endpoint]] \"acme-billing\": allowed_sources"),
            "{errs:#?}"
        );
    }

    #[test]
    fn a_missing_interface_is_a_warning_only_when_asked() {
        let text = EXAMPLE.replace("interface = \"fw-prov\"", "interface = \"fw-nope\"");
        let src = source(&text);
        let check = Model::check(&src, &Fixed, HostChecks::Warnings);
        assert!(check.errors.is_empty(), "{:#?}", check.errors);
        assert_eq!(check.warnings.len(), 1, "{:#?}", check.warnings);
        assert_eq!(check.warnings[0].field, "interface");
        assert!(check.warnings[0].message.contains("fw-nope"));
        assert!(check.model.is_some(), "a valid config has its model");
        let strict = Model::check(&src, &Fixed, HostChecks::Errors);
        assert_eq!(strict.errors, check.warnings);
        assert!(strict.model.is_none() && strict.warnings.is_empty());
        // Not every interface problem is the host's: one interface for two networks is not.
        let twice = EXAMPLE.replace("interface = \"fw-prov\"", "interface = \"fw-acme\"");
        let check = Model::check(&source(&twice), &Fixed, HostChecks::Warnings);
        assert_eq!(check.errors.len(), 1, "{:#?}", check.errors);
    }
}
