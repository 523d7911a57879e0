//! `pl flows --watch` clients: the program's flow events, decoded, fanned out as JSON lines.

use aya::maps::{MapData, RingBuf};
use pl_common::event::Event;

use crate::{control::Watcher, flows::WatchEvent};

/// The connected watchers.
#[derive(Default)]
pub struct Watchers(Vec<Watcher>);

impl Watchers {
    pub fn add(&mut self, w: Watcher) {
        self.0.push(w);
    }

    /// Writes `events` to every watcher, one JSON line each; a watcher that cannot take
    /// them at once (gone, or not reading) is dropped so it never holds up the loop. True
    /// when this dropped the last one (the program may stop writing events).
    pub fn broadcast(&mut self, events: &[WatchEvent]) -> bool {
        if events.is_empty() || self.0.is_empty() {
            return false;
        }
        let text = lines(events);
        self.0.retain(|w| {
            w.stream
                .try_write(text.as_bytes())
                .is_ok_and(|n| n == text.len())
        });
        self.0.is_empty()
    }
}

/// `events` as JSON lines.
fn lines(events: &[WatchEvent]) -> String {
    let mut text = String::new();
    for e in events {
        text.push_str(&serde_json::to_string(e).expect("an event serializes"));
        text.push('\n');
    }
    text
}

/// Every event waiting in `ring`, of either family (a record the program never writes,
/// too short for its family, is skipped).
pub fn drain(ring: &mut RingBuf<MapData>) -> Vec<Event> {
    let mut batch = Vec::new();
    while let Some(item) = ring.next() {
        batch.extend(Event::decode(&item));
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(kind: &str) -> WatchEvent {
        WatchEvent {
            time: Some("2026-12-02T05:01:02.123Z".to_owned()),
            event: kind.to_owned(),
            proto: "tcp".to_owned(),
            endpoint: "e".to_owned(),
            service: "s".to_owned(),
            network: "n".to_owned(),
            consumer: "10.0.0.1:1000".parse().expect("addr"),
            endpoint_addr: "10.0.0.2:80".parse().expect("addr"),
            nlb: None,
            target: None,
            reason: None,
            state: None,
        }
    }

    #[test]
    fn events_are_json_lines_that_read_back() {
        let events = [event("open"), event("close")];
        let text = lines(&events);
        // The time leads each line, where a reader of the raw stream looks first.
        assert!(
            text.lines()
                .all(|l| l.starts_with(r#"{"time":"2026-12-02T05:01:02.123Z","event":"#)),
            "{text}"
        );
        let back: Vec<WatchEvent> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("a line is one event"))
            .collect();
        assert_eq!(back, events);
    }
}
