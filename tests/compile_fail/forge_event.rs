// Code outside the reload cannot build a TrustedEvent, so it cannot publish.
use paywatch::event::TrustedEvent;
use paywatch::hub::Hub;

fn main() {
    let hub = Hub::new(8);
    let forged = TrustedEvent {
        payment_id: 1.into(),
        xid: 1,
        rooms: Vec::new(),
        frame: "{\"type\":\"payment_received\"}".into(),
    };
    hub.publish(forged);
}
