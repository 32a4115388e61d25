//! The pure bookkeeping of the gateway: which sequence numbers one connection received and
//! what its next heartbeat asks for again ([`Sequence`]), and which events already reached the
//! application ([`Dedupe`]). No I/O, no clock: the task feeds them numbers and acts on answers.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeSet, HashSet, VecDeque};
use std::hash::{Hash, Hasher};

use fugue_proto::gateway::{CORE, Envelope, MAX_EXCEPT, NumberList};

/// The sequence numbers one connection received, and what its next heartbeat says.
#[derive(Debug, Default)]
pub(super) struct Sequence {
    /// Every number up to and including this one arrived.
    contiguous: Option<u64>,
    /// Numbers that arrived above a gap.
    above: BTreeSet<u64>,
    /// Lowest and highest number received since the last heartbeat.
    window: Option<(u64, u64)>,
}

impl Sequence {
    /// Records `s`; false if it had arrived before.
    pub(super) fn record(&mut self, s: u64) -> bool {
        let next = match self.contiguous {
            None => 0,
            Some(c) if s <= c => return false,
            Some(c) => c + 1,
        };
        if s == next {
            let mut top = s;
            while top < u64::MAX && self.above.remove(&(top + 1)) {
                top += 1;
            }
            self.contiguous = Some(top);
        } else if !self.above.insert(s) {
            return false;
        }
        self.window = Some(match self.window {
            None => (s, s),
            Some((lo, hi)) => (lo.min(s), hi.max(s)),
        });
        true
    }

    pub(super) fn has(&self, s: u64) -> bool {
        self.contiguous.is_some_and(|c| s <= c) || self.above.contains(&s)
    }

    pub(super) fn contiguous(&self) -> Option<u64> {
        self.contiguous
    }

    /// How many numbers arrived above a gap.
    pub(super) fn above_gap(&self) -> usize {
        self.above.len()
    }

    /// Where a resume continues: every frame up to here arrived. Hello (0) always did.
    pub(super) fn resume_point(&self) -> u64 {
        self.contiguous.unwrap_or(0)
    }

    fn highest(&self) -> Option<u64> {
        self.above.last().copied().or(self.contiguous)
    }

    fn next_expected(&self) -> u64 {
        self.contiguous.map_or(0, |c| c.saturating_add(1))
    }

    /// How many numbers below the highest one received did not arrive.
    pub(super) fn missing_count(&self) -> u64 {
        match self.above.last() {
            Some(&top) => top - self.next_expected() + 1 - self.above.len() as u64,
            None => 0,
        }
    }

    /// The missing numbers, ascending, at most [`MAX_EXCEPT`].
    fn missing(&self) -> Vec<u64> {
        let Some(&top) = self.above.last() else {
            return Vec::new();
        };
        (self.next_expected()..top)
            .filter(|s| !self.above.contains(s))
            .take(MAX_EXCEPT)
            .collect()
    }

    /// The next heartbeat's number list: the range received since the last heartbeat,
    /// widened to cover every number still missing, which go into `except`.
    pub(super) fn heartbeat(&mut self) -> NumberList {
        let highest = self.highest().unwrap_or(0);
        let (mut from, mut to) = self.window.take().unwrap_or((highest, highest));
        let except = self.missing();
        if !except.is_empty() {
            // The number just below the first gap arrived (or the gap starts at 0).
            from = from.min(self.resume_point());
            to = highest;
        }
        NumberList { from, to, except }
    }
}

/// Passes each event on once. An event's `id` is its position in the stream it lives in
/// (docs/ARCHITECTURE.md, "Delivery: streams"), and frames do not name the stream: core
/// events all live in the actor's own stream, so for them only an `id` above the last one
/// passed on goes through; service events come from several streams (each guild's), so they
/// are recognised by `(n, op, id, d)` among the last [`RECENT_SERVICE_EVENTS`] passed on.
/// Frames without `id` (control frames, ephemeral events) always go through.
#[derive(Debug, Default)]
pub(super) struct Dedupe {
    last: Option<u64>,
    recent: HashSet<u64>,
    order: VecDeque<u64>,
}

/// How many service events [`Dedupe`] remembers: far more than a resume replays at once.
pub(super) const RECENT_SERVICE_EVENTS: usize = 4096;

impl Dedupe {
    pub(super) fn admit(&mut self, frame: &Envelope) -> bool {
        let Some(id) = frame.id else {
            return true;
        };
        if frame.n != CORE {
            return self.admit_service(frame, id);
        }
        if self.last.is_some_and(|last| id <= last) {
            return false;
        }
        self.last = Some(id);
        true
    }

    fn admit_service(&mut self, frame: &Envelope, id: u64) -> bool {
        let mut hasher = DefaultHasher::new();
        (&frame.n, frame.op, id, frame.d.to_string()).hash(&mut hasher);
        let key = hasher.finish();
        if !self.recent.insert(key) {
            return false;
        }
        self.order.push_back(key);
        if self.order.len() > RECENT_SERVICE_EVENTS
            && let Some(old) = self.order.pop_front()
        {
            self.recent.remove(&old);
        }
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use fugue_proto::gateway::{CORE, Envelope, Style, op};

    use super::*;

    fn list(from: u64, to: u64, except: &[u64]) -> NumberList {
        NumberList {
            from,
            to,
            except: except.to_vec(),
        }
    }

    #[test]
    fn in_order_numbers_make_a_plain_range_per_heartbeat() {
        let mut seq = Sequence::default();
        for s in 0..=4 {
            assert!(seq.record(s));
        }
        assert!(!seq.record(3), "a duplicate is reported");
        assert_eq!(seq.heartbeat(), list(0, 4, &[]));
        assert!(seq.record(5));
        assert!(seq.record(6));
        assert_eq!(seq.heartbeat(), list(5, 6, &[]));
        // Nothing new: the last number again, never an empty range.
        assert_eq!(seq.heartbeat(), list(6, 6, &[]));
        assert_eq!(seq.resume_point(), 6);
        assert_eq!(seq.missing_count(), 0);
    }

    #[test]
    fn gaps_are_asked_for_until_they_arrive() {
        let mut seq = Sequence::default();
        for s in [0, 1, 2, 5, 7] {
            assert!(seq.record(s));
        }
        assert_eq!(seq.missing_count(), 3);
        assert_eq!(seq.heartbeat(), list(0, 7, &[3, 4, 6]));
        assert_eq!(seq.resume_point(), 2);
        // Only 8 arrives: the range still reaches back to the gaps.
        assert!(seq.record(8));
        assert_eq!(seq.heartbeat(), list(2, 8, &[3, 4, 6]));
        // A re-send fills 3 and 4; 6 is still missing.
        assert!(seq.record(4));
        assert!(seq.record(3));
        assert!(!seq.record(5));
        assert_eq!(seq.contiguous(), Some(5));
        assert_eq!(seq.heartbeat(), list(3, 8, &[6]));
        assert!(seq.record(6));
        assert_eq!(seq.contiguous(), Some(8));
        assert!(seq.has(7) && !seq.has(9));
        assert_eq!(seq.heartbeat(), list(6, 6, &[]));
    }

    #[test]
    fn a_huge_jump_is_counted_without_listing_it() {
        let mut seq = Sequence::default();
        seq.record(0);
        seq.record(1_000_000);
        assert_eq!(seq.missing_count(), 999_999);
        assert_eq!(seq.missing().len(), MAX_EXCEPT);
    }

    #[test]
    fn heartbeat_lists_are_rendered_as_strings() {
        let mut seq = Sequence::default();
        for s in [0, 2] {
            seq.record(s);
        }
        let frame = Envelope::new(CORE, op::HEARTBEAT, seq.heartbeat().to_value());
        assert_eq!(
            frame.render(Style::Numbers),
            r#"{"d":{"except":["1"],"from":"0","to":"2"},"n":"core","op":0}"#
        );
    }

    #[test]
    fn dedupe_passes_each_id_once_and_control_frames_always() {
        let mut dedupe = Dedupe::default();
        let frame = |id: Option<u64>| Envelope {
            id,
            ..Envelope::new(CORE, op::NEW_SESSION, serde_json::json!({}))
        };
        let passed: Vec<Option<u64>> = [Some(3), Some(3), None, Some(2), Some(7), None, Some(7)]
            .into_iter()
            .filter(|&id| dedupe.admit(&frame(id)))
            .collect();
        assert_eq!(passed, [Some(3), None, Some(7), None]);
    }

    #[test]
    fn service_events_of_several_streams_pass_once_each() {
        let mut dedupe = Dedupe::default();
        let event = |guild: u64, id: u64| Envelope {
            id: Some(id),
            ..Envelope::new(
                "chat",
                0,
                serde_json::json!({"guild_id": guild.to_string()}),
            )
        };
        // Core is far ahead; guild streams start low and overlap each other.
        assert!(dedupe.admit(&Envelope {
            id: Some(50),
            ..Envelope::new(CORE, op::NEW_SESSION, serde_json::json!({}))
        }));
        assert!(dedupe.admit(&event(1, 1)));
        assert!(dedupe.admit(&event(2, 1)));
        assert!(dedupe.admit(&event(1, 2)));
        assert!(!dedupe.admit(&event(1, 1)), "a replay passed twice");
        assert!(!dedupe.admit(&event(2, 1)), "a replay passed twice");
        // Old ones are forgotten, within bounds.
        for id in 10..10 + RECENT_SERVICE_EVENTS as u64 {
            assert!(dedupe.admit(&event(3, id)));
        }
        assert!(dedupe.order.len() <= RECENT_SERVICE_EVENTS);
        assert!(dedupe.admit(&event(1, 1)));
    }
}
