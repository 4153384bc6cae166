//! Core v1 Events as the cluster's components write them: one object per involved object,
//! reason and message, its count and lastTimestamp bumped when it repeats.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

use crate::sandbox::resources::EVENTS;
use crate::sandbox::store::{self, Store, timestamp};

/// `Normal` or `Warning`, as the Event's `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

/// Writes Events and remembers which it wrote, to count repeats.
#[derive(Default)]
pub struct Recorder {
    written: Mutex<HashMap<(String, String, String), String>>,
    sequence: AtomicU64,
}

impl Recorder {
    /// Records that `reason` happened to `involved`, written by `component`.
    pub fn record(
        &self,
        store: &Store,
        involved: &Value,
        severity: Severity,
        reason: &str,
        message: &str,
        component: &str,
    ) {
        let namespace = store::namespace_of(involved).to_string();
        let key = (
            store::uid_of(involved).to_string(),
            reason.to_string(),
            message.to_string(),
        );
        let existing = self.lock().get(&key).cloned();
        if let Some(name) = existing {
            let bumped = store.update(&EVENTS, &namespace, &name, component, |event| {
                let count = event["count"].as_i64().unwrap_or(1);
                event["count"] = json!(count + 1);
                event["lastTimestamp"] = json!(timestamp());
            });
            if bumped.is_ok() {
                return;
            }
        }
        let sequence = self.sequence.fetch_add(1, Ordering::Relaxed);
        let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64;
        let name = format!(
            "{}.{:016x}",
            store::name_of(involved),
            nanos.wrapping_add(sequence)
        );
        let now = timestamp();
        let event = json!({
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {
                "apiVersion": involved["apiVersion"],
                "kind": involved["kind"],
                "name": store::name_of(involved),
                "namespace": namespace,
                "uid": store::uid_of(involved),
                "resourceVersion": involved["metadata"]["resourceVersion"],
            },
            "reason": reason,
            "message": message,
            "source": {"component": component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "type": match severity { Severity::Normal => "Normal", Severity::Warning => "Warning" },
            "reportingComponent": component,
            "reportingInstance": "sandbox",
        });
        if store.create(&EVENTS, &namespace, event, component).is_ok() {
            self.lock().insert(key, name);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String, String), String>> {
        // The map stays usable even if a holder panicked.
        self.written
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
