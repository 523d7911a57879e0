//! `pl accept` and `pl reject` edit the config file in place: an endpoint's name moves
//! between its service's `accepted_endpoints` and `rejected_endpoints`. The edit goes
//! through `toml_edit`, so comments, order and layout stay as written, and the file is
//! replaced atomically (a temporary file beside it, renamed over it) with its mode and
//! owner kept.

use std::{
    io::Write as _,
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use toml_edit::{Array, DocumentMut, Item, RawString, Table, Value};

/// What to do with an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Accept,
    Reject,
}

impl Decision {
    /// The list the endpoint goes to, and the one it leaves.
    fn lists(self) -> (&'static str, &'static str) {
        match self {
            Self::Accept => ("accepted_endpoints", "rejected_endpoints"),
            Self::Reject => ("rejected_endpoints", "accepted_endpoints"),
        }
    }

    pub fn verb(self) -> &'static str {
        match self {
            Self::Accept => "accepted",
            Self::Reject => "rejected",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{}: not valid TOML: {message}", file.display())]
    Parse { file: PathBuf, message: String },
    #[error("{}: no [[endpoint]] named {endpoint:?} (endpoints here: {})", file.display(), known.join(", "))]
    UnknownEndpoint {
        file: PathBuf,
        endpoint: String,
        known: Vec<String>,
    },
    #[error("{}: endpoint {endpoint:?} names service {service:?}, which has no [[service]] here", file.display())]
    UnknownService {
        file: PathBuf,
        endpoint: String,
        service: String,
    },
    #[error("{}: {what}", file.display())]
    Layout { file: PathBuf, what: String },
    #[error("{}: {action}: {source}", file.display())]
    Io {
        file: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
}

/// The file's text after an edit.
#[derive(Debug, PartialEq, Eq)]
pub struct Edited {
    pub text: String,
    /// The service whose lists hold the endpoint.
    pub service: String,
    /// False if the endpoint already stood as asked (the text is then unchanged).
    pub changed: bool,
}

/// Moves `endpoint` into its service's list for `decision` (creating the list if absent)
/// and out of the other, in `text` (read from `file`, which errors name).
pub fn decide(
    file: &Path,
    text: &str,
    endpoint: &str,
    decision: Decision,
) -> Result<Edited, EditError> {
    let layout = |what: String| EditError::Layout {
        file: file.to_owned(),
        what,
    };
    let mut doc: DocumentMut =
        text.parse()
            .map_err(|e: toml_edit::TomlError| EditError::Parse {
                file: file.to_owned(),
                message: e.message().to_owned(),
            })?;
    let name_of = |t: &Table| t.get("name").and_then(Item::as_str).map(str::to_owned);
    let endpoints = tables(&doc, "endpoint").map_err(layout)?;
    let service = endpoints
        .iter()
        .find(|t| name_of(t).as_deref() == Some(endpoint))
        .ok_or_else(|| EditError::UnknownEndpoint {
            file: file.to_owned(),
            endpoint: endpoint.to_owned(),
            known: endpoints.iter().filter_map(|t| name_of(t)).collect(),
        })?
        .get("service")
        .and_then(Item::as_str)
        .ok_or_else(|| layout(format!("endpoint {endpoint:?} names no service")))?
        .to_owned();
    let table = doc
        .get_mut("service")
        .and_then(Item::as_array_of_tables_mut)
        .and_then(|a| {
            a.iter_mut()
                .find(|t| name_of(t).as_deref() == Some(service.as_str()))
        })
        .ok_or_else(|| EditError::UnknownService {
            file: file.to_owned(),
            endpoint: endpoint.to_owned(),
            service: service.clone(),
        })?;
    let (to, from) = decision.lists();
    let mut changed = false;
    if let Some(list) = list_mut(table, from, &service).map_err(layout)? {
        while let Some(i) = position(list, endpoint) {
            remove(list, i);
            changed = true;
        }
    }
    match list_mut(table, to, &service).map_err(layout)? {
        Some(list) if position(list, endpoint).is_some() => {}
        Some(list) => {
            push(list, endpoint);
            changed = true;
        }
        None => {
            insert_after(table, to, from, Array::from_iter([endpoint]));
            changed = true;
        }
    }
    Ok(Edited {
        text: if changed {
            doc.to_string()
        } else {
            text.to_owned()
        },
        service,
        changed,
    })
}

/// The `[[key]]` tables of `doc` (none if absent).
fn tables<'a>(doc: &'a DocumentMut, key: &str) -> Result<Vec<&'a Table>, String> {
    match doc.get(key) {
        None => Ok(Vec::new()),
        Some(item) => item
            .as_array_of_tables()
            .map(|a| a.iter().collect())
            .ok_or_else(|| {
                format!(
                    "`{key}` is not written as [[{key}]] tables, which pl accept and pl reject edit"
                )
            }),
    }
}

/// The list `field` of a service, if present.
fn list_mut<'a>(
    table: &'a mut Table,
    field: &str,
    service: &str,
) -> Result<Option<&'a mut Array>, String> {
    match table.get_mut(field) {
        None => Ok(None),
        Some(item) => item
            .as_array_mut()
            .map(Some)
            .ok_or_else(|| format!("[[service]] {service:?}: {field} is not a list")),
    }
}

fn position(list: &Array, name: &str) -> Option<usize> {
    list.iter().position(|v| v.as_str() == Some(name))
}

fn raw(r: Option<&RawString>) -> String {
    r.and_then(RawString::as_str).unwrap_or_default().to_owned()
}

/// Removes entry `i`, keeping every comment around it. A comment on the line of the entry
/// before stays there; comments on the removed entry's own line become lines of their own
/// before what follows (the next entry, or the list's end).
fn remove(list: &mut Array, i: usize) {
    let gone = list.remove(i);
    let before = raw(gone.decor().prefix());
    let own_suffix = raw(gone.decor().suffix());
    let after = match list.get(i) {
        Some(next) => raw(next.decor().prefix()),
        None => raw(Some(list.trailing())),
    };
    let merged = rejoin(&before, &own_suffix, &after);
    match list.get_mut(i) {
        Some(next) => next.decor_mut().set_prefix(merged),
        None => list.set_trailing(merged),
    }
}

/// The whitespace and comments that replace `before` + (removed entry) + `suffix` + `,` +
/// `after`.
fn rejoin(before: &str, suffix: &str, after: &str) -> String {
    let plain = |s: &str| !s.contains('\n') && !s.contains('#');
    if plain(before) && plain(suffix) && plain(after) {
        // One line, no comments: the removed entry's spacing stays.
        return if after.is_empty() {
            String::new()
        } else {
            before.to_owned()
        };
    }
    // `before` up to its last line break (a comment of the previous line stays there),
    // then the indentation entries have.
    let (kept, indent) = before.rsplit_once('\n').unwrap_or((before, ""));
    let (same_line, rest) = after
        .split_once('\n')
        .map_or((after, None), |(h, r)| (h, Some(r)));
    let mut out = kept.to_owned();
    for c in [suffix, same_line] {
        if c.contains('#') {
            out.push('\n');
            out.push_str(indent);
            out.push_str(c.trim());
        }
    }
    out.push('\n');
    out.push_str(rest.unwrap_or(indent));
    out
}

/// Appends `name`, laid out as the entries before it (one a line stays one a line).
fn push(list: &mut Array, name: &str) {
    let Some(last) = list.iter().last() else {
        list.push(name);
        return;
    };
    let prefix = raw(last.decor().prefix());
    // Only the layout of the last entry's prefix, not a comment in it.
    let mut prefix = match prefix.rfind('\n') {
        Some(at) => format!("\n{}", &prefix[at + 1..]),
        None => " ".to_owned(),
    };
    // A comment on the last entry's line stays on that line, before the new entry.
    let trailing = raw(Some(list.trailing()));
    if let Some((same_line, rest)) = trailing.split_once('\n')
        && same_line.contains('#')
    {
        prefix = format!("{same_line}{prefix}");
        list.set_trailing(format!("\n{rest}"));
    }
    let mut v = Value::from(name);
    v.decor_mut().set_prefix(prefix);
    list.push_formatted(v);
}

/// Inserts `field = list` right after `anchor` (or at the end when there is none), so a
/// new `rejected_endpoints` sits beside `accepted_endpoints`.
fn insert_after(table: &mut Table, field: &str, anchor: &str, list: Array) {
    let keys: Vec<String> = table.iter().map(|(k, _)| k.to_owned()).collect();
    let after: Vec<String> = match keys.iter().position(|k| k == anchor) {
        Some(at) => keys[at + 1..]
            .iter()
            .filter(|k| table.get(k).is_some_and(Item::is_value))
            .cloned()
            .collect(),
        None => Vec::new(),
    };
    let moved: Vec<_> = after.iter().filter_map(|k| table.remove_entry(k)).collect();
    table.insert(field, toml_edit::value(list));
    for (k, v) in moved {
        table.insert_formatted(&k, v);
    }
}

/// Replaces `path` with `text` atomically: a new file beside it with the same mode and
/// owner, synced, then renamed over it. A symlink is followed (the file it names is
/// replaced, the link stays).
pub fn write_atomic(path: &Path, text: &str) -> Result<(), EditError> {
    let io = |action| {
        move |source| EditError::Io {
            file: path.to_owned(),
            action,
            source,
        }
    };
    let real = std::fs::canonicalize(path).map_err(io("cannot resolve"))?;
    let meta = std::fs::metadata(&real).map_err(io("cannot read its mode"))?;
    let dir = real.parent().unwrap_or(Path::new("/"));
    let name = real.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.pl-edit.{}", std::process::id()));
    // O_EXCL: a name someone else made first (a link in a sticky directory) is an error,
    // never followed, and not ours to remove.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(meta.mode() & 0o7777)
        .open(&tmp)
        .map_err(io("cannot create a temporary file beside it"))?;
    let result = (|| {
        // The umask may have narrowed the mode; ownership needs root unless it is ours.
        f.set_permissions(meta.permissions())
            .map_err(io("cannot set the mode of the new file"))?;
        std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()))
            .map_err(io("cannot give the new file the old one's owner"))?;
        f.write_all(text.as_bytes()).map_err(io("cannot write"))?;
        f.sync_all().map_err(io("cannot sync"))?;
        std::fs::rename(&tmp, &real).map_err(io("cannot rename the new file over it"))?;
        // The rename itself outlives a crash once the directory is synced.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("cannot sync its directory"))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    const ODD: &str = r#"# pl config: hand-written, keep my comments
[[network]]
name="acme"   # consumers
interface = "fw-acme"

[[network]]
name = "prov"
interface = "fw-prov"

[[service]]
name    = "billing"      # the one service
network = "prov"
nlb_addresses = [{ ip = "10.9.0.250", zone = "z1" }]
allowed_principals = ["*"]
accepted_endpoints = [
    "acme-billing",   # acme signed on 2024-01-01
    "acme-extra",     # trial
]
listeners = [{ protocol = "tcp", port = 443 }]   # https only
targets = [{ ip = "10.9.0.11", zone = "z1" }]

# Endpoints below.
[[endpoint]]
name = "acme-billing"
service = "billing"
network = "acme"
addresses = [{ ip = "10.0.0.100", zone = "z1" }]

[[endpoint]]
name = "acme-extra"
service = "billing"
network = "acme"
addresses = [{ ip = "10.0.0.101", zone = "z1" }]
"#;

    fn file() -> &'static Path {
        Path::new("/etc/pl/pl.toml")
    }

    fn edit(text: &str, ep: &str, d: Decision) -> Edited {
        decide(file(), text, ep, d).unwrap_or_else(|e| panic!("{e}"))
    }

    fn comments(text: &str) -> Vec<&str> {
        text.lines()
            .filter_map(|l| l.find('#').map(|at| l[at..].trim()))
            .collect()
    }

    fn lists(text: &str) -> (Vec<String>, Vec<String>) {
        let cfg: toml::Table = toml::from_str(text).expect("valid TOML");
        let list = |k: &str| {
            cfg["service"][0]
                .get(k)
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().expect("str").to_owned())
                        .collect()
                })
                .unwrap_or_default()
        };
        (list("accepted_endpoints"), list("rejected_endpoints"))
    }

    #[test]
    fn a_reject_moves_the_name_and_keeps_comments_and_layout() {
        let e = edit(ODD, "acme-billing", Decision::Reject);
        assert!(e.changed);
        assert_eq!(e.service, "billing");
        assert_eq!(
            lists(&e.text),
            (
                vec!["acme-extra".to_owned()],
                vec!["acme-billing".to_owned()]
            )
        );
        assert_eq!(comments(&e.text), comments(ODD), "{}", e.text);
        // The new list sits right after accepted_endpoints; the rest is as written.
        assert!(
            e.text.contains("]\nrejected_endpoints = [\"acme-billing\"]\nlisteners = [{ protocol = \"tcp\", port = 443 }]   # https only\n"),
            "{}",
            e.text
        );
        assert!(e.text.starts_with("# pl config: hand-written, keep my comments\n[[network]]\nname=\"acme\"   # consumers\n"));
        assert!(
            e.text
                .contains("name    = \"billing\"      # the one service\n")
        );
        let again = edit(&e.text, "acme-billing", Decision::Reject);
        assert!(!again.changed, "a second reject changes nothing");
        assert_eq!(again.text, e.text);
    }

    #[test]
    fn accept_after_reject_restores_membership_and_is_idempotent() {
        let rejected = edit(ODD, "acme-extra", Decision::Reject).text;
        assert_eq!(
            lists(&rejected),
            (
                vec!["acme-billing".to_owned()],
                vec!["acme-extra".to_owned()]
            )
        );
        assert_eq!(comments(&rejected), comments(ODD), "{rejected}");
        let accepted = edit(&rejected, "acme-extra", Decision::Accept);
        assert!(accepted.changed);
        assert_eq!(
            lists(&accepted.text),
            (
                vec!["acme-billing".to_owned(), "acme-extra".to_owned()],
                vec![]
            )
        );
        assert_eq!(comments(&accepted.text), comments(ODD), "{}", accepted.text);
        // One a line, as the list was written.
        assert!(
            accepted
                .text
                .contains("    \"acme-billing\",   # acme signed on 2024-01-01\n"),
            "{}",
            accepted.text
        );
        let again = edit(&accepted.text, "acme-extra", Decision::Accept);
        assert!(!again.changed);
        assert_eq!(
            edit(ODD, "acme-billing", Decision::Accept).text,
            ODD,
            "already accepted"
        );
    }

    #[test]
    fn a_missing_list_is_created_and_single_line_lists_stay_single_line() {
        let one_line = ODD.replace(
            "accepted_endpoints = [\n    \"acme-billing\",   # acme signed on 2024-01-01\n    \"acme-extra\",     # trial\n]",
            "accepted_endpoints = [\"acme-billing\", \"acme-extra\"]\nrejected_endpoints = []",
        );
        let e = edit(&one_line, "acme-billing", Decision::Reject).text;
        assert!(
            e.contains(
                "accepted_endpoints = [\"acme-extra\"]\nrejected_endpoints = [\"acme-billing\"]\n"
            ),
            "{e}"
        );
        let back = edit(&e, "acme-billing", Decision::Accept).text;
        assert!(
            back.contains(
                "accepted_endpoints = [\"acme-extra\", \"acme-billing\"]\nrejected_endpoints = []\n"
            ),
            "{back}"
        );
        let none = one_line.replace(
            "accepted_endpoints = [\"acme-billing\", \"acme-extra\"]\nrejected_endpoints = []\n",
            "",
        );
        let created = edit(&none, "acme-extra", Decision::Accept).text;
        assert_eq!(lists(&created), (vec!["acme-extra".to_owned()], vec![]));
    }

    #[test]
    fn an_unknown_endpoint_is_named_with_the_file() {
        let e = decide(file(), ODD, "nobody", Decision::Reject)
            .expect_err("no such endpoint")
            .to_string();
        assert_eq!(
            e,
            "/etc/pl/pl.toml: no [[endpoint]] named \"nobody\" (endpoints here: acme-billing, acme-extra)"
        );
        let broken = decide(file(), "[[service]\n", "x", Decision::Accept)
            .expect_err("bad TOML")
            .to_string();
        assert!(
            broken.starts_with("/etc/pl/pl.toml: not valid TOML"),
            "{broken}"
        );
        let orphan = ODD.replace(
            "service = \"billing\"\nnetwork = \"acme\"\naddresses = [{ ip = \"10.0.0.101\"",
            "service = \"payroll\"\nnetwork = \"acme\"\naddresses = [{ ip = \"10.0.0.101\"",
        );
        let e = decide(file(), &orphan, "acme-extra", Decision::Accept)
            .expect_err("no such service")
            .to_string();
        assert!(e.contains("names service \"payroll\""), "{e}");
    }

    #[test]
    fn the_file_is_replaced_with_its_mode_kept() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("pl-edit-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("pl.toml");
        std::fs::write(&path, ODD).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let link = dir.join("link.toml");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&path, &link).expect("symlink");
        write_atomic(&link, "[limits]\n").expect("write");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "[limits]\n");
        let meta = std::fs::metadata(&path).expect("stat");
        assert_eq!(meta.permissions().mode() & 0o7777, 0o640);
        assert!(
            std::fs::symlink_metadata(&link)
                .expect("lstat")
                .is_symlink(),
            "the link stays"
        );
        let left: Vec<_> = std::fs::read_dir(&dir).expect("ls").collect();
        assert_eq!(left.len(), 2, "no temporary file left: {left:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
