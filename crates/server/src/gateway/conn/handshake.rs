//! Identify and Resume: authenticating a new connection and continuing a session where it
//! was (docs/gateway.md, *Resuming*).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::Message;
use futures_util::StreamExt;
use tokio::time::{Instant, timeout};

use fugue_proto::gateway::{self as gw, CORE, ClientOp, Close, Envelope, Resume, op};

use super::{Conn, End, Followed, client_op_error, close, unreadable};
use crate::events::{Event, RootChange, collapse};
use crate::gateway::{Positions, Registration, SeesAll};
use crate::ids::{StreamId, to_store};
use crate::sessions::Authed;

impl Conn {
    pub(super) async fn handshake(
        &mut self,
        interval: Duration,
    ) -> Result<(Authed, Registration), End> {
        let identify = Duration::from_millis(self.gw.0.config.gateway.identify_timeout_ms.max(1));
        let deadline = Instant::now() + interval.min(identify);
        let frame = match timeout(deadline - Instant::now(), self.stream.next()).await {
            Err(_) => return Err(close(Close::NotAuthenticated, "no Identify in time")),
            Ok(Some(Err(e))) => return Err(unreadable(&e)),
            Ok(None | Some(Ok(Message::Close(_)))) => return Err(End::Gone),
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(_))) => {
                return Err(close(
                    Close::InvalidPayload,
                    "payloads are JSON text frames",
                ));
            }
        };
        let (env, style) = Envelope::parse(frame.as_str())
            .map_err(|e| close(Close::InvalidPayload, e.to_string()))?;
        self.style = style;
        self.note_payload()?;
        if env.n != CORE || !matches!(env.op, op::IDENTIFY | op::RESUME) {
            return Err(close(
                Close::NotAuthenticated,
                "send Identify or Resume first",
            ));
        }
        match ClientOp::parse(env.op, &env.d).map_err(client_op_error)? {
            ClientOp::Identify(i) => self.identify(&i.token).await,
            ClientOp::Resume(r) => self.resume(r).await,
            _ => Err(close(
                Close::NotAuthenticated,
                "send Identify or Resume first",
            )),
        }
    }

    pub(super) async fn authenticate(&self, token: &str) -> Result<Authed, End> {
        match self.gw.0.sessions.authenticate(Some(token)).await {
            Ok(a) => Ok(a),
            Err(e) if e.is_auth_failure() => {
                Err(close(Close::AuthenticationFailed, "invalid session token"))
            }
            Err(e) => {
                tracing::error!(error = %e, "gateway authentication failed");
                Err(close(Close::UnknownError, "internal error"))
            }
        }
    }

    pub(super) async fn start_session(&mut self, authed: &Authed) -> Result<(), End> {
        let g = &self.gw.0;
        // The session may have ended between authenticating and joining the hub, when its
        // end announcement found no connection to close.
        let Some(ends) = g
            .sessions
            .session_still_valid(authed)
            .await
            .map_err(Self::internal)?
        else {
            return Err(close(Close::NotAuthenticated, "the session has ended"));
        };
        self.schedule_session_check(ends);
        self.record_connection(authed).await?;
        self.last_heartbeat = Instant::now();
        Ok(())
    }

    /// Records this node, the root the session has been sent and its service channels, for a
    /// later Identify and for resuming after this node is gone.
    pub(super) async fn record_connection(&self, authed: &Authed) -> Result<(), End> {
        let g = &self.gw.0;
        let services = self.services.iter().cloned().collect::<Vec<_>>();
        g.store
            .record_connection(
                authed.session.pk.to_store(),
                g.events.bus().node(),
                self.root_serial,
                &services,
                to_store(g.config.clock.now()),
            )
            .await
            .map_err(Self::internal)
    }

    /// Joins the hub: the connection follows its actor's stream from here on.
    fn join_hub(&mut self, authed: &Authed) -> Registration {
        let reg = self.gw.register(authed.actor.id, authed.session.pk);
        self.handle = Some(reg.handle.clone());
        reg
    }

    /// Follows the actor's own stream from position `from` on (nothing sent yet).
    fn follow_own(&mut self, authed: &Authed, from: u64, next: u64) {
        let own = StreamId::of_actor(authed.actor.id);
        self.log.base.insert(own, from);
        self.acked.insert(own, from);
        self.follows.insert(
            own,
            Followed {
                next,
                view: std::sync::Arc::new(SeesAll),
                by: None,
            },
        );
    }

    /// Op 2: op 12, then what the session missed while away (core §4.4).
    pub(super) async fn identify(&mut self, token: &str) -> Result<(Authed, Registration), End> {
        let authed = self.authenticate(token).await?;
        self.own_serial = authed.session.cert_serial.map(|s| s.0);
        let g = self.gw.0.clone();
        let reg = self.join_hub(&authed);
        let own = StreamId::of_actor(authed.actor.id);
        let head = g.events.head(own).await.map_err(Self::internal)?;
        let stored = self.stored_positions(&authed).await?;
        let position = g
            .store
            .gateway_position(authed.session.pk.to_store())
            .await
            .map_err(Self::internal)?;
        let acked = stored.get(&own).copied().unwrap_or(head);
        let root_seen = position.and_then(|p| p.root_serial);
        self.root_serial = g.identity.root_serial();
        let ack = gw::IdentifyAck {
            token: token.to_owned(),
        };
        self.send_control(op::IDENTIFY_ACK, gw::payload(&ack), false)
            .await?;
        let missed = g
            .events
            .newest_after(own, acked, g.config.gateway.max_replay_events)
            .await
            .map_err(Self::internal)?;
        let next = missed.last().map_or(head, |e| e.seq.max(head)) + 1;
        self.follow_own(&authed, acked, next);
        for e in missed {
            if self.wants(&e, &authed) {
                self.send_event(Arc::new(e)).await?;
            }
        }
        if let Some(seen) = root_seen {
            self.send_root_changes_since(seen).await?;
        }
        self.start_session(&authed).await?;
        self.flush().await?;
        Ok((authed, reg))
    }

    pub(super) async fn send_root_changes_since(&mut self, seen: i64) -> Result<(), End> {
        for text in self.root_change_frames_since(seen) {
            self.write(text, false).await?;
        }
        Ok(())
    }

    /// Op 6 frames for every root after `seen`, numbered and kept.
    pub(super) fn root_change_frames_since(&mut self, seen: i64) -> Vec<String> {
        let mut before = seen;
        let mut frames = Vec::new();
        for change in self.gw.0.identity.roots_after(seen) {
            frames.push(self.root_change_frame(&change, before));
            before = change.root_serial;
        }
        frames
    }

    pub(super) async fn send_root_change(
        &mut self,
        c: &RootChange,
        before: i64,
    ) -> Result<(), End> {
        let text = self.root_change_frame(c, before);
        self.write(text, false).await
    }

    pub(super) fn root_change_frame(&mut self, c: &RootChange, before: i64) -> String {
        // Noted with its `s`: a resume from an earlier `s` must send it again.
        self.root_changes.push((self.log.next_s, before));
        self.root_serial = c.root_serial;
        let d = gw::ServerCertChange {
            cert: c.cert.clone(),
            old_invalid_since: c.old_invalid_since.secs(),
        };
        self.control_frame(op::SERVER_CERT_CHANGE, gw::payload(&d))
    }

    /// Op 5: continue the session's previous connection (docs/gateway.md, *Resuming*): for
    /// every stream the session may follow now, what it missed after the position it had
    /// reached (or after its membership began, for a stream it follows since).
    pub(super) async fn resume(&mut self, r: Resume) -> Result<(Authed, Registration), End> {
        let authed = self.authenticate(&r.token).await?;
        self.own_serial = authed.session.cert_serial.map(|s| s.0);
        let g = self.gw.0.clone();
        let pk = authed.session.pk;
        let position = g
            .store
            .gateway_position(pk.to_store())
            .await
            .map_err(Self::internal)?;
        let node = position.as_ref().and_then(|p| p.node.clone());
        let state = self.gw.find_state(pk, node.as_deref()).await;
        let reg = self.join_hub(&authed);
        let (at, services, root_seen): (Positions, _, _) = match (&state, &position) {
            (Some(st), _) => (
                st.positions_at(r.s).ok_or_else(|| {
                    close(
                        Close::Unresumeable,
                        "s is not a frame of the previous connection",
                    )
                })?,
                st.services.clone(),
                Some(st.root_at(r.s)),
            ),
            // The previous node is gone: continue from what the client acknowledged.
            (None, Some(p)) if p.node.is_some() => (
                self.stored_positions(&authed).await?,
                p.services.clone(),
                p.root_serial,
            ),
            _ => return Err(close(Close::Unresumeable, "nothing to resume")),
        };
        self.services = services
            .into_iter()
            .filter(|s| self.gw.offers(s))
            .chain([CORE.to_owned()])
            .collect();
        self.root_serial = g.identity.root_serial();
        let own = StreamId::of_actor(authed.actor.id);
        let subscribed: Vec<String> = self
            .services
            .iter()
            .filter(|s| *s != CORE)
            .cloned()
            .collect();
        let follows = self
            .gw
            .follows_on(&authed.actor, subscribed.iter().map(String::as_str))
            .await
            .map_err(super::refused)?;
        let max = g.config.gateway.max_replay_events;
        let mut frames = Vec::new();
        let mut revokes_own = false;
        for (f, by) in follows {
            let from = match at.get(&f.stream) {
                Some(p) => *p,
                None if f.stream == own => {
                    return Err(close(Close::Unresumeable, "nothing to resume"));
                }
                // Followed since the previous connection: from where the membership began.
                None => f.since.saturating_sub(1),
            }
            .max(f.since.saturating_sub(1));
            let head = g.events.head(f.stream).await.map_err(Self::internal)?;
            let missed = g
                .events
                .after(f.stream, from, max + 1)
                .await
                .map_err(Self::internal)?;
            if missed.len() as u64 > max {
                return Err(close(Close::Unresumeable, "too many missed events"));
            }
            let deleted = match missed.first() {
                Some(first) => first.seq != from + 1,
                None => head > from,
            };
            if deleted {
                return Err(close(
                    Close::Unresumeable,
                    "missed events are past retention",
                ));
            }
            self.log.base.insert(f.stream, from);
            self.acked.insert(f.stream, from);
            self.follows.insert(
                f.stream,
                Followed {
                    next: missed.last().map_or(head, |e| e.seq.max(head)) + 1,
                    view: f.view,
                    by,
                },
            );
            if let Some(h) = &self.handle
                && f.stream != own
            {
                self.gw.follow(h, f.stream);
            }
            let wanted: Vec<Event> = missed
                .into_iter()
                .filter(|e| self.wants(e, &authed))
                .collect();
            for e in collapse(wanted, |e| e.collapse_key.as_deref()) {
                let (text, own_revoked) = self.event_frame(Arc::new(e));
                revokes_own |= own_revoked;
                frames.push(text);
            }
        }
        if let Some(seen) = root_seen {
            frames.extend(self.root_change_frames_since(seen));
        }
        self.write_batch(op::RESUMED, frames).await?;
        if revokes_own {
            return Err(self.own_cert_revoked().await);
        }
        self.start_session(&authed).await?;
        self.flush().await?;
        Ok((authed, reg))
    }
}
