//! A watcher as an observer of leases: when to commit the expiry of a runtime whose lease
//! ran out, by whose time.
//!
//! In a stamped log a lease runs by the authority's clock (a hub's, or a local store's),
//! and the reducer judges an expiry at its stamp's time. An observer's own clock may be
//! seconds apart from the authority's, so the observer estimates the authority's time:
//! - from the log: the latest stamp it folded, plus the time that passed since, by its own
//!   clock (it only measures a duration with it). Never ahead of the authority's time;
//! - from its own clock, less what it learned of how far that clock runs ahead: an expiry
//!   the log refuses (stamped before the lease's end) shows that by at least the gap
//!   between the clock's time at the commit and the refusing stamp.
//!
//! It takes the later of the two. A clock that runs ahead costs at most a refused expiry or
//! two; one that runs behind still expires a dead runtime within a lease of the last entry
//! the observer saw. In an unstamped log (one process, one clock) it is the clock itself.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, Timestamp};
use crate::schema::{RuntimeSessionTerminated, SessionId, TerminationReason};
use crate::state::{Applied, Ignored, NotebookState, Seq};
use crate::store::{LogEntry, Store, StoreError};

/// How long past a lease's end an observer waits before it commits the expiry: room for a
/// renewal in flight and for the time a commit takes to reach the authority.
pub const EXPIRY_MARGIN: Duration = Duration::from_millis(500);

/// What a watcher needs to commit the expiry of a lease it sees run out.
pub(super) struct LeaseEnforcer {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    by: String,
    time: AuthorityTime,
    /// The expiry this watcher committed last, until the log refuses it: once is enough.
    expired: Option<CommittedExpiry>,
}

struct CommittedExpiry {
    session_id: SessionId,
    seq: Seq,
    /// This clock's time when it was committed.
    local_at: Timestamp,
}

impl LeaseEnforcer {
    pub(super) fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, by: String) -> Self {
        Self {
            store,
            clock,
            by,
            time: AuthorityTime::default(),
            expired: None,
        }
    }

    pub(super) fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// How long until the active session's lease (plus the margin) runs out, unless this
    /// watcher has expired that session already.
    pub(super) fn wait_for(&self, state: &NotebookState) -> Option<Duration> {
        let session = state.active_session()?;
        if self
            .expired
            .as_ref()
            .is_some_and(|expired| expired.session_id == session.session_id)
        {
            return None;
        }
        let deadline = session.lease_until.saturating_add(EXPIRY_MARGIN);
        Some(deadline.saturating_since(self.time.now(self.clock.now())))
    }

    /// Learns from an entry just folded: the authority's time, and whether it refused this
    /// watcher's expiry as too early.
    pub(super) fn observe(&mut self, entry: &LogEntry, applied: Applied) {
        let local = self.clock.now();
        if let Some(stamp) = &entry.stamp {
            self.time.saw(stamp.at, local);
        }
        let Some(expired) = &self.expired else {
            return;
        };
        if expired.seq != entry.seq {
            return;
        }
        if applied == Applied::Ignored(Ignored::LeaseStillValid) {
            if let Some(stamp) = &entry.stamp {
                self.time.learn_ahead(expired.local_at, stamp.at);
            }
            tracing::debug!(seq = entry.seq, "the log refused an expiry as early");
            self.expired = None; // try again when the estimate says so
        }
    }

    /// Commits the expiry of the active session, if its lease has run out by now.
    pub(super) async fn expire(&mut self, state: &NotebookState) -> Result<(), StoreError> {
        let local = self.clock.now();
        let now = self.time.now(local);
        let Some(session) = state.expired_session(now) else {
            return Ok(());
        };
        tracing::info!(session_id = %session.session_id, "a runtime's lease ran out; ending its session");
        let expiry = RuntimeSessionTerminated {
            session_id: session.session_id.clone(),
            reason: TerminationReason::Expired,
            by: self.by.clone(),
            at: now,
            detail: Some("its lease ran out without renewal".into()),
        };
        let session_id = session.session_id.clone();
        let seq = self.store.commit(vec![expiry.into()]).await?;
        // Only once it is committed: after a failed commit the next wait tries again.
        self.expired = Some(CommittedExpiry {
            session_id,
            seq,
            local_at: local,
        });
        Ok(())
    }
}

/// An estimate of the authority's time (see the module docs).
#[derive(Debug, Default, Clone, Copy)]
struct AuthorityTime {
    /// The latest stamp folded, and this clock's time when it was folded.
    seen: Option<(Timestamp, Timestamp)>,
    /// How far this clock runs ahead of the authority's, at least.
    ahead_ms: u64,
}

impl AuthorityTime {
    /// The authority's time when this clock says `local`.
    fn now(&self, local: Timestamp) -> Timestamp {
        let by_clock = Timestamp(local.as_millis().saturating_sub(self.ahead_ms));
        match self.seen {
            Some((stamp, seen_at)) => {
                by_clock.max(stamp.saturating_add(local.saturating_since(seen_at)))
            }
            None => by_clock,
        }
    }

    /// A stamp `stamp` folded when this clock said `local`: keeps the later estimate.
    fn saw(&mut self, stamp: Timestamp, local: Timestamp) {
        let by_log = |(seen, seen_at): (Timestamp, Timestamp)| {
            seen.saturating_add(local.saturating_since(seen_at))
        };
        if self.seen.is_none_or(|seen| stamp >= by_log(seen)) {
            self.seen = Some((stamp, local));
        }
    }

    /// A commit sent when this clock said `local_at` was stamped `stamp`, later than it was
    /// sent: this clock runs ahead by at least the difference.
    fn learn_ahead(&mut self, local_at: Timestamp, stamp: Timestamp) {
        let ahead = local_at.as_millis().saturating_sub(stamp.as_millis());
        self.ahead_ms = self.ahead_ms.max(ahead);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn the_estimate_follows_the_log_when_the_clock_runs_behind() {
        let mut time = AuthorityTime::default();
        // This clock says 1_000; the authority stamped 61_000: a minute behind.
        time.saw(Timestamp(61_000), Timestamp(1_000));
        assert_eq!(time.now(Timestamp(3_000)), Timestamp(63_000));
        // An older stamp folded later does not pull the estimate back.
        time.saw(Timestamp(50_000), Timestamp(4_000));
        assert_eq!(time.now(Timestamp(4_000)), Timestamp(64_000));
    }

    #[cfg_attr(target_arch = "wasm32", wasm_bindgen_test::wasm_bindgen_test)]
    #[test]
    fn a_refused_expiry_teaches_how_far_the_clock_runs_ahead() {
        let mut time = AuthorityTime::default();
        assert_eq!(time.now(Timestamp(100_000)), Timestamp(100_000));
        // Sent at 100_000 by this clock, stamped 40_000 by the authority.
        time.learn_ahead(Timestamp(100_000), Timestamp(40_000));
        assert_eq!(time.now(Timestamp(100_500)), Timestamp(40_500));
        // A smaller lesson does not undo a larger one.
        time.learn_ahead(Timestamp(100_000), Timestamp(90_000));
        assert_eq!(time.now(Timestamp(100_500)), Timestamp(40_500));
    }
}
