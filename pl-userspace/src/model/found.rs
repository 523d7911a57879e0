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
