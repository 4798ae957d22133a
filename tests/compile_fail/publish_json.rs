// The hub takes trusted events only: client JSON has no way in.
use paywatch::hub::Hub;

fn main() {
    let hub = Hub::new(8);
    let from_client = serde_json::json!({"type": "payment_received", "amount_sats": 1});
    hub.publish(from_client);
}
