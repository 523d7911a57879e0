//! The key the nodes share: every flow-sync datagram carries an HMAC-SHA256 tag under it,
//! so only a node (not a local user on one, not another host on the management network)
//! can write flows into a peer's table or say which zones it serves.

use std::{
    io::Read as _,
    os::unix::fs::{MetadataExt as _, OpenOptionsExt as _},
    path::Path,
};

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// Bytes of tag at the end of a datagram (HMAC-SHA256 truncated, as RFC 4868 allows).
pub const TAG_LEN: usize = 16;
const MIN_KEY: usize = 16;
const MAX_KEY: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("[cluster] secret_file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("[cluster] secret_file {path}: {why}")]
    Unsafe { path: String, why: String },
}

/// The shared key, read once at start.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// Reads `path`: a regular file of 16 to 4096 bytes that only its owner (root or
    /// this user) can read or write; anything else is refused, naming the file.
    pub fn load(path: &Path) -> Result<Self, SecretError> {
        let shown = path.display().to_string();
        let unsafe_ = |why: String| SecretError::Unsafe {
            path: shown.clone(),
            why,
        };
        let read = |source| SecretError::Read {
            path: shown.clone(),
            source,
        };
        // One open, not following a link: what is checked is what is read.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .map_err(read)?;
        let meta = file.metadata().map_err(read)?;
        if !meta.file_type().is_file() {
            return Err(unsafe_("not a regular file".into()));
        }
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != 0 && meta.uid() != me {
            return Err(unsafe_(format!(
                "owned by uid {}: it must be root's (or this user's)",
                meta.uid()
            )));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(unsafe_(format!(
                "mode {:o}: others may read or change it (chmod 600)",
                meta.mode() & 0o7777
            )));
        }
        let mut key = Vec::new();
        file.by_ref()
            .take(MAX_KEY as u64 + 1)
            .read_to_end(&mut key)
            .map_err(read)?;
        Self::new(key).map_err(unsafe_)
    }

    /// A key of 16 to 4096 bytes.
    pub fn new(key: Vec<u8>) -> Result<Self, String> {
        if !(MIN_KEY..=MAX_KEY).contains(&key.len()) {
            return Err(format!(
                "{} bytes: a key is {MIN_KEY} to {MAX_KEY} bytes (e.g. `head -c 32 /dev/urandom`)",
                key.len()
            ));
        }
        Ok(Self(key))
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes a key of any length")
    }

    /// The tag of `data`.
    pub fn tag(&self, data: &[u8]) -> [u8; TAG_LEN] {
        let mut m = self.mac();
        m.update(data);
        let full = m.finalize().into_bytes();
        let mut out = [0; TAG_LEN];
        out.copy_from_slice(&full[..TAG_LEN]);
        out
    }

    /// Whether `tag` is `data`'s, compared in constant time.
    pub fn verify(&self, data: &[u8], tag: &[u8]) -> bool {
        // The left bytes of the full tag, all TAG_LEN of them: a shorter one is not ours.
        if tag.len() != TAG_LEN {
            return false;
        }
        let mut m = self.mac();
        m.update(data);
        m.verify_truncated_left(tag).is_ok()
    }
}

/// How far a datagram's send time may be from this node's clock: nodes' clocks must agree
/// within this (NTP does), and a datagram older than this is refused as a replay.
pub const FRESH_MS: u64 = 30_000;

/// Whether a datagram sent at `sent_ms` (the sender's clock) is fresh at `now_ms`.
pub fn fresh(sent_ms: u64, now_ms: u64) -> bool {
    sent_ms.abs_diff(now_ms) <= FRESH_MS
}

/// Which datagrams of a peer's run were taken: a datagram counter more than 64 behind
/// the highest seen, or seen already, is a replay (as IPsec's anti-replay window).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Replay {
    boot: u64,
    top: u64,
    /// Bit i: `top - i` was seen.
    seen: u64,
}

/// What [`Replay::accept`] made of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fresh {
    /// The run already known, a datagram not seen before.
    Yes,
    /// A later run of the peer (it restarted): it needs every flow again.
    NewRun,
    /// A datagram seen before, or of an earlier run.
    Replayed,
}

impl Replay {
    /// Takes datagram `seq` of run `boot` (its send time already found fresh). Runs are
    /// numbered by their start's wall clock, so a later run is a larger number; `silent`:
    /// the peer has not been heard for longer than a takeover, when an earlier number is
    /// taken as a new run too (a node whose clock was set back). A replay of an earlier
    /// run would have to be fresh as well: captured within the last [`FRESH_MS`].
    pub fn accept(&mut self, boot: u64, seq: u64, silent: bool) -> Fresh {
        if self.boot == 0 || boot > self.boot || (boot < self.boot && silent) {
            *self = Self {
                boot,
                top: seq,
                seen: 1,
            };
            return Fresh::NewRun;
        }
        if boot < self.boot {
            return Fresh::Replayed;
        }
        if seq > self.top {
            let shift = seq - self.top;
            self.seen = if shift >= 64 { 0 } else { self.seen << shift };
            self.seen |= 1;
            self.top = seq;
            return Fresh::Yes;
        }
        let back = self.top - seq;
        if back >= 64 || self.seen & (1 << back) != 0 {
            return Fresh::Replayed;
        }
        self.seen |= 1 << back;
        Fresh::Yes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_tell_a_changed_byte_and_another_key() {
        let k = Secret::new(vec![7; 32]).expect("key");
        let other = Secret::new(vec![8; 32]).expect("key");
        let t = k.tag(b"flows");
        assert!(k.verify(b"flows", &t));
        assert!(!k.verify(b"flowt", &t), "a changed byte");
        assert!(!other.verify(b"flows", &t), "another key");
        assert!(!k.verify(b"flows", &t[..8]), "a short tag");
        assert!(Secret::new(vec![1; 15]).is_err(), "15 bytes");
    }

    #[test]
    fn the_replay_window_takes_each_datagram_once() {
        let mut r = Replay::default();
        assert_eq!(r.accept(100, 5, false), Fresh::NewRun);
        assert_eq!(r.accept(100, 5, false), Fresh::Replayed, "seen");
        assert_eq!(r.accept(100, 7, false), Fresh::Yes);
        assert_eq!(r.accept(100, 6, false), Fresh::Yes, "late but not seen");
        assert_eq!(r.accept(100, 6, false), Fresh::Replayed);
        assert_eq!(r.accept(100, 200, false), Fresh::Yes);
        assert_eq!(r.accept(100, 136, false), Fresh::Replayed, "64 behind");
        assert_eq!(r.accept(100, 137, false), Fresh::Yes, "63 behind");
        assert_eq!(r.accept(99, 500, false), Fresh::Replayed, "an earlier run");
        assert_eq!(r.accept(101, 1, false), Fresh::NewRun, "a restart");
        assert_eq!(r.accept(100, 900, false), Fresh::Replayed);
        assert_eq!(
            r.accept(50, 1, true),
            Fresh::NewRun,
            "a silent peer back with its clock set back"
        );
    }

    #[test]
    fn only_datagrams_sent_within_the_freshness_window_are_taken() {
        let now = 1_700_000_000_000;
        assert!(fresh(now, now));
        assert!(fresh(now - FRESH_MS, now), "at the edge");
        assert!(fresh(now + FRESH_MS, now), "a sender's clock ahead");
        assert!(!fresh(now - FRESH_MS - 1, now), "old: a replay");
        assert!(!fresh(now + FRESH_MS + 1, now), "a clock too far ahead");
        assert!(!fresh(0, now));
    }

    #[test]
    fn a_key_file_others_can_read_is_refused_naming_it() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("pl-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("cluster.key");
        std::fs::write(&path, [3u8; 32]).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let e = Secret::load(&path).expect_err("0644 taken").to_string();
        assert!(e.contains("cluster.key") && e.contains("644"), "{e}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        Secret::load(&path).expect("0600 refused");
        std::fs::write(&path, [3u8; 4]).expect("write");
        let e = Secret::load(&path).expect_err("4 bytes taken").to_string();
        assert!(e.contains("4 bytes"), "{e}");
        let e = Secret::load(&dir.join("absent"))
            .expect_err("absent")
            .to_string();
        assert!(e.contains("absent"), "{e}");
        std::fs::write(&path, [3u8; 32]).expect("write");
        let link = dir.join("link.key");
        std::os::unix::fs::symlink(&path, &link).expect("symlink");
        let e = Secret::load(&link)
            .expect_err("a symlink taken")
            .to_string();
        assert!(e.contains("link.key"), "{e}");
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
