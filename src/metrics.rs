//! `GET /metrics`: Prometheus metrics in the OpenMetrics text format.
//!
//! The listener's counters live in [`ListenerStats`] and are registered here
//! as they are; gauges of the present (open connections, rooms) are read
//! when scraped.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::admission::Admission;
use crate::hub::Hub;
use crate::listener::ListenerStats;

/// The registry and the gauges refreshed at each scrape.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    connections: Gauge,
    rooms: Gauge,
}

impl Metrics {
    /// Registers every metric.
    pub fn new(stats: &ListenerStats) -> Self {
        let mut registry = Registry::with_prefix("paywatch");
        let connections = Gauge::default();
        let rooms = Gauge::default();
        registry.register(
            "websocket_connections",
            "WebSocket connections open",
            connections.clone(),
        );
        registry.register("rooms", "Rooms with at least one subscriber", rooms.clone());
        let counters = [
            (
                "events_published",
                "Payments handed to the hub",
                &stats.published,
            ),
            (
                "frames_queued",
                "Event frames queued to subscribers",
                &stats.frames_queued,
            ),
            (
                "notifications",
                "Notifications received on the channel",
                &stats.notifications,
            ),
            (
                "notifications_malformed",
                "Notifications dropped: payload is not a payment id",
                &stats.malformed,
            ),
            (
                "notifications_unknown",
                "Notifications dropped: id names no payment",
                &stats.unknown,
            ),
            (
                "notifications_duplicate",
                "Notifications dropped: payment already delivered",
                &stats.duplicates,
            ),
            (
                "catch_up_recovered",
                "Payments delivered without a notification (lost, or found by a sweep)",
                &stats.recovered,
            ),
            (
                "listener_reconnects",
                "Times the LISTEN connection was re-established",
                &stats.reconnects,
            ),
            (
                "slow_client_disconnects",
                "Subscribers dropped because their queue was full",
                &stats.evicted,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "commit_to_queue_seconds",
            "Delay from a payment's paid_at to its frame being queued",
            stats.delay.clone(),
        );
        Metrics {
            registry,
            connections,
            rooms,
        }
    }

    /// The text exposition, with the gauges read now.
    pub fn render(&self, hub: &Hub, admission: &Admission) -> Result<String, std::fmt::Error> {
        self.connections.set(admission.open_connections() as i64);
        self.rooms.set(hub.room_count() as i64);
        let mut text = String::new();
        encode(&mut text, &self.registry)?;
        Ok(text)
    }
}
