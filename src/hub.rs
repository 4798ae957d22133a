//! The hub: which connection listens to which room, and the one way a frame
//! gets into a room, [`Hub::publish`], which only takes a [`TrustedEvent`].
//!
//! Each subscriber has its own bounded queue. Publishing never waits: a
//! subscriber whose queue is full is dropped from its room on the spot, its
//! queue closes once drained, and its connection closes with a documented
//! code, so a client that stops reading can neither delay others nor make the
//! server's memory grow, and is never left silently deaf.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::event::TrustedEvent;
use crate::rooms::Room;

/// The room registry.
#[derive(Debug)]
pub struct Hub {
    rooms: Mutex<HashMap<Room, Vec<Member>>>,
    next_id: AtomicU64,
    queue_capacity: usize,
    evictions: AtomicU64,
}

#[derive(Debug)]
struct Member {
    id: u64,
    queue: flume::Sender<Arc<TrustedEvent>>,
}

/// A connection's membership of one room. Dropping it leaves the room.
#[derive(Debug)]
pub struct Subscription {
    hub: Arc<Hub>,
    room: Room,
    id: u64,
    events: flume::Receiver<Arc<TrustedEvent>>,
}

/// What one publish did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Frames queued to subscribers.
    pub queued: usize,
    /// Subscribers dropped because their queue was full.
    pub evicted: usize,
}

impl Hub {
    /// A hub whose subscribers each have a queue of `queue_capacity` events.
    pub fn new(queue_capacity: usize) -> Arc<Self> {
        Arc::new(Hub {
            rooms: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            queue_capacity: queue_capacity.max(1),
            evictions: AtomicU64::new(0),
        })
    }

    fn rooms(&self) -> MutexGuard<'_, HashMap<Room, Vec<Member>>> {
        // A panic while holding this lock cannot leave the map half-updated
        // (every critical section is a single push, retain or remove), so a
        // poisoned lock is still sound to use.
        self.rooms
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Joins `room`. Events published after this returns reach the
    /// subscription; anything earlier must come from a snapshot.
    pub fn subscribe(self: &Arc<Self>, room: Room) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // flume rather than tokio's mpsc: its bounded channel allocates its
        // queue on first use, where tokio's takes about 800 bytes up front
        // (0.54 KB less RSS per idle connection, docs/BENCHMARKS.md).
        let (queue, events) = flume::bounded(self.queue_capacity);
        self.rooms()
            .entry(room.clone())
            .or_default()
            .push(Member { id, queue });
        Subscription {
            hub: Arc::clone(self),
            room,
            id,
            events,
        }
    }

    /// Queues `event` to every subscriber of each of its rooms.
    pub fn publish(&self, event: TrustedEvent) -> Delivery {
        let event = Arc::new(event);
        let mut delivery = Delivery::default();
        let mut rooms = self.rooms();
        for room in event.rooms() {
            let Some(members) = rooms.get_mut(room) else {
                continue;
            };
            members.retain(|member| match member.queue.try_send(Arc::clone(&event)) {
                Ok(()) => {
                    delivery.queued += 1;
                    true
                }
                Err(flume::TrySendError::Full(_)) => {
                    delivery.evicted += 1;
                    false
                }
                // The connection has gone and its Subscription drop is about
                // to remove it; nothing to count.
                Err(flume::TrySendError::Disconnected(_)) => false,
            });
            if members.is_empty() {
                rooms.remove(room);
            }
        }
        self.evictions
            .fetch_add(delivery.evicted as u64, Ordering::Relaxed);
        delivery
    }

    /// Events each subscriber's queue holds.
    pub fn queue_capacity(&self) -> usize {
        self.queue_capacity
    }

    /// Subscribers dropped so far because their queue was full.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Number of rooms with at least one subscriber.
    pub fn room_count(&self) -> usize {
        self.rooms().len()
    }

    /// Number of subscribers of `room`.
    pub fn subscriber_count(&self, room: &Room) -> usize {
        self.rooms().get(room).map_or(0, Vec::len)
    }
}

impl Subscription {
    /// The next event for this subscriber, in publish order; `None` once the
    /// hub has dropped the subscriber because its queue was full (after the
    /// events queued before that).
    pub async fn recv(&self) -> Option<Arc<TrustedEvent>> {
        self.events.recv_async().await.ok()
    }

    /// The next event if one is already queued.
    pub fn try_recv(&self) -> Option<Arc<TrustedEvent>> {
        self.events.try_recv().ok()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut rooms = self.hub.rooms();
        if let Some(members) = rooms.get_mut(&self.room) {
            members.retain(|member| member.id != self.id);
            if members.is_empty() {
                rooms.remove(&self.room);
            }
        }
    }
}
