//! Session slots without locks: each session's slot counts are atomics in
//! its [`Seat`], and the seats of each queue are indexed in a map that is
//! replaced whole when a session opens or closes. The kernel's eager
//! dispatch reserves a slot from inside a store transaction, so reserving
//! takes no lock that the rest of the dispatcher holds.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use super::{Dispatcher, OUTBOX_RESERVE, Outgoing, State};
use crate::kernel::{ClaimedAttempt, Slot, SlotProvider};

/// One session's slots and outbox.
pub(super) struct Seat {
    pub(super) session_id: String,
    pub(super) worker_id: String,
    slots: AtomicU32,
    /// Slots taken: leases held plus slots reserved for offers in flight.
    in_use: AtomicU32,
    pub(super) outbox: mpsc::Sender<Outgoing>,
}

impl Seat {
    pub(super) fn new(
        session_id: String,
        worker_id: String,
        slots: u32,
        outbox: mpsc::Sender<Outgoing>,
    ) -> Seat {
        Seat {
            session_id,
            worker_id,
            slots: AtomicU32::new(slots),
            in_use: AtomicU32::new(0),
            outbox,
        }
    }

    pub(super) fn slots(&self) -> u32 {
        self.slots.load(Ordering::Relaxed)
    }

    pub(super) fn set_slots(&self, slots: u32) {
        self.slots.store(slots, Ordering::Relaxed);
    }

    /// Slots free for offers: none while the outbox is nearly full (the
    /// worker is not reading fast enough).
    pub(super) fn free(&self) -> u32 {
        if self.outbox.capacity() < OUTBOX_RESERVE {
            return 0;
        }
        self.slots()
            .saturating_sub(self.in_use.load(Ordering::Acquire))
    }

    /// Reserves up to `most` free slots; returns how many.
    pub(super) fn take(&self, most: u32) -> u32 {
        if self.outbox.capacity() < OUTBOX_RESERVE {
            return 0;
        }
        let slots = self.slots();
        let taken = self
            .in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |in_use| {
                let take = slots.saturating_sub(in_use).min(most);
                (take > 0).then_some(in_use + take)
            });
        match taken {
            Ok(in_use) => slots.saturating_sub(in_use).min(most),
            Err(_) => 0,
        }
    }

    /// Takes a slot whether or not one is free (a lease re-attached or
    /// held again).
    pub(super) fn hold(&self) {
        self.in_use.fetch_add(1, Ordering::AcqRel);
    }

    /// Frees `count` slots.
    pub(super) fn give_back(&self, count: u32) {
        let _ = self
            .in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |in_use| {
                Some(in_use.saturating_sub(count))
            });
    }
}

/// The seats serving each queue, in session id order.
type SeatIndex = HashMap<String, Vec<Arc<Seat>>>;

/// The seat index eager dispatch reads, and its round-robin turn.
#[derive(Default)]
pub(super) struct Seats {
    index: RwLock<Arc<SeatIndex>>,
    turn: AtomicUsize,
}

impl Seats {
    /// Rebuilds the index from the sessions (called with the state locked,
    /// so rebuilds apply in order).
    pub(super) fn reindex(&self, state: &State) {
        let mut sessions: Vec<_> = state.sessions.values().collect();
        sessions.sort_by(|a, b| a.info.session_id.cmp(&b.info.session_id));
        let mut index = SeatIndex::new();
        for session in sessions {
            for queue in &session.info.queues {
                index
                    .entry(queue.clone())
                    .or_default()
                    .push(session.seat.clone());
            }
        }
        *self.index.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(index);
    }

    /// Reserves a free slot of a session serving `queue`: sessions in id
    /// order from a rotating start, so offers spread evenly.
    fn reserve(&self, queue: &str) -> Option<Arc<Seat>> {
        let turn = self.turn.fetch_add(1, Ordering::Relaxed);
        // The read lock is held only to clone the index.
        let index = self.index.read().unwrap_or_else(|p| p.into_inner()).clone();
        let free: Vec<&Arc<Seat>> = index
            .get(queue)?
            .iter()
            .filter(|seat| seat.free() > 0)
            .collect();
        if free.is_empty() {
            return None;
        }
        let (after, before) = free.split_at(turn % free.len());
        before
            .iter()
            .chain(after)
            .find(|seat| seat.take(1) == 1)
            .map(|seat| Arc::clone(seat))
    }
}

/// Offers this replica's free worker slots to the kernel's eager dispatch.
pub(super) struct SessionSlots(pub(super) Dispatcher);

impl SlotProvider for SessionSlots {
    fn reserve(&self, queue: &str) -> Option<Box<dyn Slot>> {
        let seat = self.0.inner.seats.reserve(queue)?;
        Some(Box::new(SessionSlot {
            dispatcher: self.0.clone(),
            seat,
            delivered: false,
        }))
    }
}

struct SessionSlot {
    dispatcher: Dispatcher,
    seat: Arc<Seat>,
    delivered: bool,
}

impl Slot for SessionSlot {
    fn owner(&self) -> String {
        self.seat.worker_id.clone()
    }

    fn deliver(mut self: Box<Self>, attempt: ClaimedAttempt) {
        self.delivered = true;
        self.dispatcher
            .deliver(self.seat.session_id.clone(), attempt);
    }
}

impl Drop for SessionSlot {
    fn drop(&mut self) {
        if !self.delivered {
            self.seat.give_back(1);
        }
    }
}
