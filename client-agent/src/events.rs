//! Events of the Mobility API: JSON objects, one per line, with an `event` field.

use serde_json::{json, Value};

/// Broadcasts events to every API subscriber (and the log).
#[derive(Clone)]
pub struct Events {
    tx: tokio::sync::broadcast::Sender<String>,
}

impl Default for Events {
    fn default() -> Events {
        Events::new()
    }
}

impl Events {
    /// A new event bus.
    pub fn new() -> Events {
        Events {
            tx: tokio::sync::broadcast::channel(256).0,
        }
    }

    /// Sends `fields` as event `name`, stamped with the wall-clock time in milliseconds.
    pub fn emit(&self, name: &str, mut fields: Value) {
        if let Value::Object(m) = &mut fields {
            m.insert("event".into(), json!(name));
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            m.insert("time_ms".into(), json!(ms));
        }
        let line = fields.to_string();
        tracing::info!("event {line}");
        let _ = self.tx.send(line);
    }

    /// A new subscriber.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.tx.subscribe()
    }
}

/// Milliseconds of a duration, with microsecond precision.
pub fn ms(d: std::time::Duration) -> f64 {
    (d.as_micros() as f64 / 1000.0 * 1000.0).round() / 1000.0
}
