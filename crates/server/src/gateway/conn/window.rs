//! The frames one connection sent: their numbers (`s`), the window of them kept for re-sends
//! and exact resumes, and the stream positions a client is at for any `s`.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::Value;

use crate::events::Event;
use crate::gateway::{KEPT_FRAMES, Positions};
use crate::ids::StreamId;

/// A frame as first sent, kept for re-sending. Small, since a connection keeps up to
/// [`KEPT_FRAMES`] of them: the rare control frame is boxed (an entry of the log is 24 bytes
/// rather than 48, half of a connection's memory once a thousand members got 600 messages).
pub(super) enum Sent {
    Event(Arc<Event>),
    Control(u16, Box<Value>),
}

#[derive(Default)]
pub(super) struct SentLog {
    /// The `s` of the next frame.
    pub next_s: u64,
    /// `(s, frame)` of the kept frames, ascending; at most [`KEPT_FRAMES`].
    pub frames: VecDeque<(u64, Sent)>,
    /// The `s` of the newest frame no longer kept, if any was dropped.
    pub evicted_s: Option<u64>,
    /// Per stream, the position of its newest event frame no longer kept.
    pub evicted: Positions,
    /// Per stream, the position before its first frame on this connection.
    pub base: Positions,
}

impl SentLog {
    /// Numbers the next frame.
    pub fn take_s(&mut self) -> u64 {
        let s = self.next_s;
        self.next_s += 1;
        s
    }

    /// The highest `s` sent (0 before the first frame).
    pub fn last_s(&self) -> u64 {
        self.next_s.saturating_sub(1)
    }

    /// Keeps a frame, dropping the oldest beyond [`KEPT_FRAMES`].
    pub fn keep(&mut self, s: u64, frame: Sent) {
        if self.frames.len() >= KEPT_FRAMES
            && let Some((old_s, old)) = self.frames.pop_front()
        {
            self.evicted_s = Some(old_s);
            if let Sent::Event(e) = old {
                self.evicted.insert(e.stream, e.seq);
            }
        }
        self.frames.push_back((s, frame));
    }

    /// `(s, stream, position)` of every kept event frame, ascending.
    pub fn events(&self) -> impl Iterator<Item = (u64, StreamId, u64)> + '_ {
        self.frames.iter().filter_map(|(s, f)| match f {
            Sent::Event(e) => Some((*s, e.stream, e.seq)),
            Sent::Control(..) => None,
        })
    }

    /// See [`crate::gateway::positions_at`]; computed on the kept frames.
    pub fn positions_at(&self, s: u64) -> Option<Positions> {
        crate::gateway::positions_at(
            self.events(),
            &self.base,
            self.evicted_s.map(|e| (e, &self.evicted)),
            self.last_s(),
            s,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_frame_is_three_words() {
        assert_eq!(std::mem::size_of::<(u64, Sent)>(), 24);
    }
}
