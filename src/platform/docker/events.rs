//! What an engine event means for the store: which replica or service to read again or drop,
//! and the [`EngineEvent`] the detail pane lists.
//!
//! Not for subscribing: the worker holds the events stream; these functions only classify.

use std::collections::HashMap;

use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::system::EventsOptions;
use chrono::{DateTime, Utc};

use crate::model::EngineEvent;

/// What the worker does about one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Read this container again (list entry and inspect) and send it.
    RefreshReplica(String),
    /// The container is gone.
    RemoveReplica(String),
    /// Read this Swarm service again.
    RefreshService(String),
    /// The Swarm service is gone.
    RemoveService(String),
    /// Nothing changes in the store (exec, attach, resize...).
    Nothing,
}

/// Container actions after which the container's state, name or health may differ.
const REFRESH_ACTIONS: &[&str] = &[
    "create", "start", "restart", "die", "stop", "kill", "pause", "unpause", "rename", "update",
    "oom",
];

/// The effect of one event on the store.
pub fn effect(event: &EventMessage) -> Effect {
    let id = event
        .actor
        .as_ref()
        .and_then(|a| a.id.clone())
        .unwrap_or_default();
    let action = event.action.as_deref().unwrap_or_default();
    if id.is_empty() {
        return Effect::Nothing;
    }
    match event.typ {
        Some(EventMessageTypeEnum::CONTAINER) => {
            if action == "destroy" {
                Effect::RemoveReplica(id)
            } else if REFRESH_ACTIONS.contains(&action) || action.starts_with("health_status") {
                Effect::RefreshReplica(id)
            } else {
                Effect::Nothing
            }
        }
        Some(EventMessageTypeEnum::SERVICE) => match action {
            "remove" => Effect::RemoveService(id),
            _ => Effect::RefreshService(id),
        },
        _ => Effect::Nothing,
    }
}

/// The container that runs again after this event (`start`, `restart`), for its log followers.
pub fn started(event: &EventMessage) -> Option<String> {
    let action = event.action.as_deref().unwrap_or_default();
    let is_start = matches!(action, "start" | "restart");
    if event.typ != Some(EventMessageTypeEnum::CONTAINER) || !is_start {
        return None;
    }
    event.actor.as_ref().and_then(|a| a.id.clone())
}

/// The event as the detail pane lists it; `None` for the noise of exec and attach sessions.
pub fn engine_event(event: &EventMessage) -> Option<EngineEvent> {
    let action = event.action.as_deref().unwrap_or_default();
    let noise = action.starts_with("exec_")
        || matches!(
            action,
            "attach" | "detach" | "resize" | "top" | "archive-path" | "export"
        );
    if action.is_empty() || noise {
        return None;
    }
    let actor = event.actor.as_ref();
    let name = actor
        .and_then(|a| a.attributes.as_ref())
        .and_then(|attrs| attrs.get("name"));
    let subject = match name {
        Some(name) => name.clone(),
        None => actor
            .and_then(|a| a.id.as_deref())
            .unwrap_or_default()
            .chars()
            .take(12)
            .collect(),
    };
    Some(EngineEvent {
        time: event_time(event),
        subject,
        action: action.to_string(),
    })
}

/// When the engine says the event happened; now if it did not say.
fn event_time(event: &EventMessage) -> DateTime<Utc> {
    let from_nanos = event.time_nano.map(DateTime::from_timestamp_nanos);
    let from_secs = event.time.and_then(|s| DateTime::from_timestamp(s, 0));
    from_nanos.or(from_secs).unwrap_or_else(Utc::now)
}

/// The subscription: container and service events from `since` on, so that nothing between
/// the snapshot's list and the subscription is missed.
pub fn options_since(since: DateTime<Utc>) -> EventsOptions<String> {
    let filters = HashMap::from([(
        "type".to_string(),
        vec!["container".to_string(), "service".to_string()],
    )]);
    EventsOptions {
        since: Some(engine_timestamp(since)),
        until: None,
        filters,
    }
}

/// The engine's `seconds.nanoseconds` form of a time.
pub fn engine_timestamp(time: DateTime<Utc>) -> String {
    format!("{}.{:09}", time.timestamp(), time.timestamp_subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(value: serde_json::Value) -> EventMessage {
        serde_json::from_value(value).expect("event JSON")
    }

    fn container(action: &str) -> EventMessage {
        event(json!({
            "Type": "container",
            "Action": action,
            "Actor": {"ID": "c1", "Attributes": {"name": "shop-web-1", "image": "web"}},
            "time": 1_700_000_000,
            "timeNano": 1_700_000_000_250_000_000i64
        }))
    }

    #[test]
    fn state_changes_refresh_the_replica() {
        for action in [
            "create", "start", "die", "stop", "kill", "restart", "rename", "update",
        ] {
            assert_eq!(
                effect(&container(action)),
                Effect::RefreshReplica("c1".into()),
                "{action}"
            );
        }
        assert_eq!(
            effect(&container("health_status: healthy")),
            Effect::RefreshReplica("c1".into())
        );
    }

    #[test]
    fn destroy_removes_the_replica_and_exec_changes_nothing() {
        assert_eq!(
            effect(&container("destroy")),
            Effect::RemoveReplica("c1".into())
        );
        assert_eq!(
            effect(&container("exec_start: sh -c true")),
            Effect::Nothing
        );
        assert_eq!(engine_event(&container("exec_die")), None);
    }

    #[test]
    fn start_and_restart_say_which_container_runs_again() {
        assert_eq!(started(&container("start")).as_deref(), Some("c1"));
        assert_eq!(started(&container("restart")).as_deref(), Some("c1"));
        assert_eq!(started(&container("die")), None);
        assert_eq!(started(&container("create")), None);
        let service = event(json!({"Type": "service", "Action": "start", "Actor": {"ID": "s1"}}));
        assert_eq!(started(&service), None);
    }

    #[test]
    fn service_events_refresh_or_remove_the_service() {
        let svc = |action: &str| {
            event(json!({"Type": "service", "Action": action, "Actor": {"ID": "s1"}}))
        };
        assert_eq!(effect(&svc("update")), Effect::RefreshService("s1".into()));
        assert_eq!(effect(&svc("create")), Effect::RefreshService("s1".into()));
        assert_eq!(effect(&svc("remove")), Effect::RemoveService("s1".into()));
    }

    #[test]
    fn an_engine_event_names_its_subject_and_keeps_nanoseconds() {
        let e = engine_event(&container("health_status: unhealthy")).expect("event");
        assert_eq!(e.subject, "shop-web-1");
        assert_eq!(e.action, "health_status: unhealthy");
        assert_eq!(e.time.timestamp(), 1_700_000_000);
        assert_eq!(e.time.timestamp_subsec_millis(), 250);
    }

    #[test]
    fn the_subscription_starts_at_the_snapshot_time() {
        let t = DateTime::from_timestamp(1_700_000_000, 5).expect("time");
        let o = options_since(t);
        assert_eq!(o.since.as_deref(), Some("1700000000.000000005"));
        assert_eq!(o.filters["type"], vec!["container", "service"]);
    }
}
