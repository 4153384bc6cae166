//! The patch formats a client may send: JSON merge patch, strategic merge patch, JSON patch,
//! and server-side apply (taken as a merge patch).

use serde_json::{Map, Value};

/// How a PATCH body is to be applied, from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Merge,
    Strategic,
    Json,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(content_type: &str) -> Option<PatchKind> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/merge-patch+json" => Some(PatchKind::Merge),
            "application/strategic-merge-patch+json" => Some(PatchKind::Strategic),
            "application/json-patch+json" => Some(PatchKind::Json),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchKind::Apply)
            }
            _ => None,
        }
    }
}

/// Applies `patch` to `target`; an error says what in the patch could not be applied.
pub fn apply(kind: PatchKind, target: &mut Value, patch: &Value) -> Result<(), String> {
    match kind {
        PatchKind::Merge | PatchKind::Apply => {
            json_patch::merge(target, patch);
            Ok(())
        }
        PatchKind::Strategic => {
            strategic_merge(target, patch);
            Ok(())
        }
        PatchKind::Json => {
            let operations: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| format!("not a JSON patch (a list of operations): {e}"))?;
            json_patch::patch(target, &operations).map_err(|e| e.to_string())
        }
    }
}

/// The field by which a list under this key is merged in a strategic merge patch.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => Some("name"),
        "ports" => Some("containerPort"),
        "volumeMounts" => Some("mountPath"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "hostAliases" => Some("ip"),
        _ => None,
    }
}

/// A merge patch whose lists of named things (containers, env, ports...) are merged by their
/// key instead of replaced; `$patch: delete` removes a list element and `$patch: replace`
/// replaces an object, other directives are ignored.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if patch.get("$patch").and_then(Value::as_str) == Some("replace") {
        *target = Value::Object(without_directives(patch));
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let Value::Object(fields) = target else {
        return;
    };
    for (key, value) in patch {
        if key.starts_with('$') {
            continue;
        }
        match value {
            Value::Null => {
                fields.remove(key);
            }
            Value::Array(items) => {
                let merged = match (merge_key(key), fields.get_mut(key)) {
                    (Some(merge_key), Some(Value::Array(existing))) => {
                        merge_list(existing, items, merge_key)
                    }
                    _ => false,
                };
                if !merged {
                    let items = items.iter().filter(|i| !is_delete(i)).map(clean).collect();
                    fields.insert(key.clone(), Value::Array(items));
                }
            }
            Value::Object(_) => {
                strategic_merge(fields.entry(key.clone()).or_insert(Value::Null), value);
            }
            other => {
                fields.insert(key.clone(), other.clone());
            }
        }
    }
}

/// Merges `patch` into `existing` by `key`; false (nothing changed) when an element of the
/// patch has no such key, so the caller replaces the list instead.
fn merge_list(existing: &mut Vec<Value>, patch: &[Value], key: &str) -> bool {
    if patch.iter().any(|item| item.get(key).is_none()) {
        return false;
    }
    for item in patch {
        let position = existing.iter().position(|e| e.get(key) == item.get(key));
        match (position, is_delete(item)) {
            (Some(i), true) => {
                existing.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic_merge(&mut existing[i], item),
            (None, false) => existing.push(clean(item)),
        }
    }
    true
}

fn is_delete(item: &Value) -> bool {
    item.get("$patch").and_then(Value::as_str) == Some("delete")
}

fn clean(item: &Value) -> Value {
    match item {
        Value::Object(fields) => Value::Object(without_directives(fields)),
        other => other.clone(),
    }
}

fn without_directives(fields: &Map<String, Value>) -> Map<String, Value> {
    fields
        .iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| (k.clone(), clean(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment() -> Value {
        json!({"spec": {"replicas": 2, "template": {"spec": {"containers": [
            {"name": "web", "image": "web:1", "env": [{"name": "A", "value": "1"}],
             "ports": [{"containerPort": 80}]},
            {"name": "sidecar", "image": "proxy:1"}
        ]}}}})
    }

    #[test]
    fn a_strategic_patch_merges_containers_by_name_and_env_by_name() {
        let mut target = deployment();
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "web:2", "env": [{"name": "B", "value": "2"}],
             "ports": [{"containerPort": 80, "name": "http"}]}
        ]}}}});
        apply(PatchKind::Strategic, &mut target, &patch).unwrap();
        let containers = &target["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers.as_array().map(Vec::len), Some(2));
        assert_eq!(containers[0]["image"], "web:2");
        assert_eq!(
            containers[0]["env"],
            json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])
        );
        assert_eq!(
            containers[0]["ports"],
            json!([{"containerPort": 80, "name": "http"}])
        );
        assert_eq!(containers[1]["image"], "proxy:1");
        assert_eq!(target["spec"]["replicas"], 2);
    }

    #[test]
    fn a_strategic_patch_deletes_an_element_and_nulls_remove_fields() {
        let mut target = deployment();
        let patch = json!({"spec": {"replicas": null, "template": {"spec": {"containers": [
            {"name": "sidecar", "$patch": "delete"}
        ]}}}});
        apply(PatchKind::Strategic, &mut target, &patch).unwrap();
        let containers = &target["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers.as_array().map(Vec::len), Some(1));
        assert!(target["spec"].get("replicas").is_none());
    }

    #[test]
    fn a_merge_patch_replaces_lists_whole() {
        let mut target = deployment();
        let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "only"}]}}}});
        apply(PatchKind::Merge, &mut target, &patch).unwrap();
        assert_eq!(
            target["spec"]["template"]["spec"]["containers"],
            json!([{"name": "only"}])
        );
    }

    #[test]
    fn a_json_patch_applies_operations_and_reports_a_failed_test() {
        let mut target = deployment();
        let patch = json!([{"op": "replace", "path": "/spec/replicas", "value": 5}]);
        apply(PatchKind::Json, &mut target, &patch).unwrap();
        assert_eq!(target["spec"]["replicas"], 5);
        let failing = json!([{"op": "test", "path": "/spec/replicas", "value": 1}]);
        assert!(apply(PatchKind::Json, &mut target, &failing).is_err());
        assert!(apply(PatchKind::Json, &mut target, &json!({"op": "add"})).is_err());
    }

    #[test]
    fn content_types_name_patch_kinds() {
        let kind = PatchKind::from_content_type;
        assert_eq!(kind("application/merge-patch+json"), Some(PatchKind::Merge));
        assert_eq!(
            kind("application/apply-patch+yaml; charset=utf-8"),
            Some(PatchKind::Apply)
        );
        assert_eq!(kind("application/json"), None);
    }
}
