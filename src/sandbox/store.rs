//! The sandbox cluster's object store: every object as JSON, keyed by resource, namespace and
//! name, under one global resourceVersion counter, with a window of recent changes that a watch
//! resumes from.
//!
//! It knows nothing of HTTP or controllers; it checks what the API server itself checks on a
//! write (existence, name, resourceVersion preconditions) and fills in server-set metadata.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use serde_json::{Map, Value, json};
use tokio::sync::broadcast;

use super::resources::{self, ResourceType};
use super::status::ApiError;

/// How many changes a watch can resume across by default.
pub const HISTORY_LIMIT: usize = 20_000;

/// What happened to an object, as a watch event names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

impl ChangeKind {
    pub fn event_type(self) -> &'static str {
        match self {
            ChangeKind::Added => "ADDED",
            ChangeKind::Modified => "MODIFIED",
            ChangeKind::Deleted => "DELETED",
        }
    }
}

/// One write, as the history keeps it and watches receive it.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    /// The resource's plural.
    pub resource: &'static str,
    pub namespace: String,
    pub kind: ChangeKind,
    pub object: Arc<Stored>,
}

/// An object as the store keeps it, with its JSON text once a list or a watch has sent it:
/// an object sent again and again is encoded once per change.
#[derive(Debug)]
pub struct Stored {
    pub value: Arc<Value>,
    encoded: OnceLock<Vec<u8>>,
}

impl Stored {
    fn new(value: Arc<Value>) -> Arc<Stored> {
        Arc::new(Stored {
            value,
            encoded: OnceLock::new(),
        })
    }

    /// The object as JSON text.
    pub fn encoded(&self) -> &[u8] {
        self.encoded
            .get_or_init(|| serde_json::to_vec(&*self.value).unwrap_or_default())
    }
}

/// Namespace (empty for cluster-scoped objects) and name.
pub type Key = (String, String);

/// The objects and the history, behind one lock.
pub struct Inner {
    rv: u64,
    objects: HashMap<&'static str, BTreeMap<Key, Arc<Stored>>>,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    /// The newest resourceVersion whose change fell out of the history.
    dropped_through: u64,
    /// Watches from a resourceVersion older than this are answered 410.
    oldest_watchable: u64,
    /// Counts creations and deletions per resource, so a reader can tell the set of objects
    /// changed without looking at them.
    membership: HashMap<&'static str, u64>,
    /// The resourceVersion of each resource's latest write, so a reader can tell that none of
    /// its objects changed without looking at them.
    last_write: HashMap<&'static str, u64>,
    seed: u64,
}

impl Inner {
    /// The current resourceVersion.
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// Changes whenever an object of this resource is created or deleted.
    pub fn membership(&self, resource: &ResourceType) -> u64 {
        self.membership.get(resource.plural).copied().unwrap_or(0)
    }

    /// The resourceVersion of the latest write to an object of this resource (0 for none).
    pub fn last_write(&self, resource: &ResourceType) -> u64 {
        self.last_write.get(resource.plural).copied().unwrap_or(0)
    }

    /// Every object of one resource, in namespace and name order.
    pub fn objects(&self, resource: &ResourceType) -> impl Iterator<Item = &Arc<Value>> {
        self.objects
            .get(resource.plural)
            .into_iter()
            .flat_map(|m| m.values())
            .map(|stored| &stored.value)
    }

    /// The objects of one resource in one namespace.
    pub fn in_namespace<'a>(
        &'a self,
        resource: &ResourceType,
        namespace: &'a str,
    ) -> impl Iterator<Item = &'a Arc<Value>> {
        let start = (namespace.to_string(), String::new());
        self.objects
            .get(resource.plural)
            .into_iter()
            .flat_map(move |m| m.range(start.clone()..))
            .take_while(move |((ns, _), _)| ns == namespace)
            .map(|(_, stored)| &stored.value)
    }

    pub fn get(&self, resource: &ResourceType, namespace: &str, name: &str) -> Option<&Arc<Value>> {
        let key = (namespace.to_string(), name.to_string());
        self.objects
            .get(resource.plural)
            .and_then(|m| m.get(&key))
            .map(|stored| &stored.value)
    }

    /// A pseudo-random number (SplitMix64) for uids and generated names.
    fn random(&mut self) -> u64 {
        self.seed = self.seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uid(&mut self) -> String {
        let (a, b) = (self.random(), self.random());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48 & 0x3fff),
            b & 0xffff_ffff_ffff
        )
    }

    /// Five characters as a real server appends to a `generateName`.
    fn name_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let mut n = self.random();
        (0..5)
            .map(|_| {
                let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
                n /= ALPHABET.len() as u64;
                c
            })
            .collect()
    }

    fn record(
        &mut self,
        sender: &broadcast::Sender<Arc<Change>>,
        resource: &'static ResourceType,
        namespace: &str,
        kind: ChangeKind,
        object: Arc<Stored>,
    ) {
        self.last_write.insert(resource.plural, self.rv);
        let change = Arc::new(Change {
            rv: self.rv,
            resource: resource.plural,
            namespace: namespace.to_string(),
            kind,
            object,
        });
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            if let Some(dropped) = self.history.pop_front() {
                self.dropped_through = dropped.rv;
            }
        }
        // No receiver is not an error: nobody is watching.
        let _ = sender.send(change);
    }
}

/// One page of a list.
#[derive(Debug)]
pub struct ListPage {
    pub items: Vec<Arc<Stored>>,
    /// The resourceVersion the list is consistent with (that of its first page).
    pub rv: u64,
    /// The `continue` token of the next page, when there is one.
    pub next: Option<String>,
}

/// What a watch starts with: the changes it missed, then the live feed.
pub struct WatchStart {
    pub replay: Vec<Arc<Change>>,
    /// The resourceVersion at which the live feed starts.
    pub rv: u64,
    pub live: broadcast::Receiver<Arc<Change>>,
}

/// The store, shared by the API server and the controllers.
pub struct Store {
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Arc<Change>>,
}

/// The time as object metadata carries it.
pub fn timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

impl Store {
    pub fn new(history_limit: usize) -> Store {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x5eed);
        let inner = Inner {
            rv: 1,
            objects: HashMap::new(),
            history: VecDeque::new(),
            history_limit: history_limit.max(1),
            dropped_through: 0,
            oldest_watchable: 0,
            membership: HashMap::new(),
            last_write: HashMap::new(),
            seed,
        };
        let (changes, _) = broadcast::channel(65_536);
        Store {
            inner: Mutex::new(inner),
            changes,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves data that is still consistent JSON.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `read` over the objects under the lock; keep it short and free of writes.
    pub fn read<R>(&self, read: impl FnOnce(&Inner) -> R) -> R {
        read(&self.lock())
    }

    pub fn rv(&self) -> u64 {
        self.lock().rv
    }

    pub fn get(&self, resource: &ResourceType, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.lock().get(resource, namespace, name).cloned()
    }

    /// One page of the objects of `resource` (in `namespace`, or all) that pass `filter`.
    pub fn list(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        filter: &dyn Fn(&Value) -> bool,
        limit: Option<usize>,
        continue_token: Option<&str>,
    ) -> Result<ListPage, ApiError> {
        let inner = self.lock();
        let (rv, after) = match continue_token.filter(|t| !t.is_empty()) {
            Some(token) => {
                let (rv, key) = decode_continue(token)?;
                (rv, Some(key))
            }
            None => (inner.rv, None),
        };
        let Some(objects) = inner.objects.get(resource.plural) else {
            return Ok(ListPage {
                items: Vec::new(),
                rv,
                next: None,
            });
        };
        let start = match (&after, namespace) {
            (Some(key), _) => Bound::Excluded(key.clone()),
            (None, Some(ns)) => Bound::Included((ns.to_string(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        let mut matching = objects
            .range((start, Bound::Unbounded))
            .take_while(|((ns, _), _)| namespace.is_none_or(|wanted| ns == wanted))
            .filter(|(_, stored)| filter(&stored.value));
        let limit = limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
        let mut items = Vec::new();
        let mut last = None;
        for (key, object) in matching.by_ref() {
            items.push(object.clone());
            last = Some(key);
            if items.len() == limit {
                break;
            }
        }
        let more = items.len() == limit && matching.next().is_some();
        let next = last.filter(|_| more).map(|key| encode_continue(rv, key));
        Ok(ListPage { items, rv, next })
    }

    /// Creates an object; fills in uid, resourceVersion, creationTimestamp and generation.
    pub fn create(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        object: Value,
        manager: &str,
    ) -> Result<Arc<Value>, ApiError> {
        self.write(
            resource,
            namespace,
            None,
            manager,
            "Update",
            |current| match current {
                Some(existing) => {
                    let name = existing.pointer("/metadata/name").and_then(Value::as_str);
                    Err(ApiError::already_exists(resource, name.unwrap_or_default()))
                }
                None => Ok(object),
            },
        )
    }

    /// Writes one object: `change` gets the stored object (None when there is none) and gives
    /// the new one. An unchanged object is not written; a `metadata.resourceVersion` in the new
    /// object that is not the stored one is a 409 Conflict.
    pub fn write(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        name: Option<&str>,
        manager: &str,
        operation: &str,
        change: impl FnOnce(Option<&Value>) -> Result<Value, ApiError>,
    ) -> Result<Arc<Value>, ApiError> {
        let mut inner = self.lock();
        let namespace = if resource.namespaced { namespace } else { "" };
        let current = name.and_then(|n| inner.get(resource, namespace, n).cloned());
        let mut object = change(current.as_deref())?;
        if !object.is_object() {
            return Err(ApiError::bad_request(format!(
                "the body of a {} must be a JSON object",
                resource.kind
            )));
        }
        match current {
            Some(current) => {
                let name = name.unwrap_or_default();
                prepare_update(resource, &current, &mut object, name)?;
                if same_content(&current, &object) {
                    return Ok(current);
                }
                inner.rv += 1;
                finish(&mut object, inner.rv, manager, operation, resource);
                let object = Arc::new(object);
                let stored = Stored::new(object.clone());
                let key = (namespace.to_string(), name.to_string());
                inner
                    .objects
                    .entry(resource.plural)
                    .or_default()
                    .insert(key, stored.clone());
                inner.record(
                    &self.changes,
                    resource,
                    namespace,
                    ChangeKind::Modified,
                    stored,
                );
                Ok(object)
            }
            None => {
                let name = prepare_create(&mut inner, resource, namespace, name, &mut object)?;
                inner.rv += 1;
                finish(&mut object, inner.rv, manager, operation, resource);
                let object = Arc::new(object);
                let stored = Stored::new(object.clone());
                let key = (namespace.to_string(), name);
                inner
                    .objects
                    .entry(resource.plural)
                    .or_default()
                    .insert(key, stored.clone());
                *inner.membership.entry(resource.plural).or_default() += 1;
                inner.record(
                    &self.changes,
                    resource,
                    namespace,
                    ChangeKind::Added,
                    stored,
                );
                Ok(object)
            }
        }
    }

    /// Changes a stored object in place; a missing object is a 404 (nothing is created).
    pub fn update(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        manager: &str,
        change: impl FnOnce(&mut Value),
    ) -> Result<Arc<Value>, ApiError> {
        self.write(
            resource,
            namespace,
            Some(name),
            manager,
            "Update",
            |current| {
                let mut object = current
                    .cloned()
                    .ok_or_else(|| ApiError::not_found(resource, name))?;
                change(&mut object);
                Ok(object)
            },
        )
    }

    /// Deletes an object and returns it as it was last, with the deletion's resourceVersion.
    pub fn delete(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        let mut inner = self.lock();
        let namespace = if resource.namespaced { namespace } else { "" };
        let key = (namespace.to_string(), name.to_string());
        let removed = inner
            .objects
            .get_mut(resource.plural)
            .and_then(|m| m.remove(&key));
        let Some(removed) = removed else {
            return Err(ApiError::not_found(resource, name));
        };
        inner.rv += 1;
        *inner.membership.entry(resource.plural).or_default() += 1;
        let mut last = (*removed.value).clone();
        last["metadata"]["resourceVersion"] = Value::String(inner.rv.to_string());
        let last = Arc::new(last);
        inner.record(
            &self.changes,
            resource,
            namespace,
            ChangeKind::Deleted,
            Stored::new(last.clone()),
        );
        Ok(last)
    }

    /// Starts a watch of `resource` (in `namespace`, or all) after resourceVersion `from`; no
    /// `from` (or 0) replays every current object as ADDED. Too old a `from` is a 410.
    pub fn watch(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
        from: Option<u64>,
    ) -> Result<WatchStart, ApiError> {
        let inner = self.lock();
        let in_scope = |ns: &str| namespace.is_none_or(|wanted| wanted == ns);
        let replay = match from.filter(|rv| *rv > 0) {
            Some(rv) if rv < inner.dropped_through || rv < inner.oldest_watchable => {
                let oldest = inner.dropped_through.max(inner.oldest_watchable);
                return Err(ApiError::expired(format!(
                    "too old resource version: {rv} ({oldest})"
                )));
            }
            Some(rv) => {
                let start = inner.history.partition_point(|c| c.rv <= rv);
                inner
                    .history
                    .range(start..)
                    .filter(|c| c.resource == resource.plural && in_scope(&c.namespace))
                    .cloned()
                    .collect()
            }
            None => {
                let objects = inner.objects.get(resource.plural);
                objects
                    .into_iter()
                    .flat_map(|m| m.iter())
                    .filter(|((ns, _), _)| in_scope(ns))
                    .map(|((ns, _), stored)| {
                        Arc::new(Change {
                            rv: inner.rv,
                            resource: resource.plural,
                            namespace: ns.clone(),
                            kind: ChangeKind::Added,
                            object: stored.clone(),
                        })
                    })
                    .collect()
            }
        };
        Ok(WatchStart {
            replay,
            rv: inner.rv,
            live: self.changes.subscribe(),
        })
    }

    /// From now on, a watch from an older resourceVersion than the current one is a 410.
    pub fn expire_history(&self) {
        let mut inner = self.lock();
        inner.oldest_watchable = inner.rv;
    }
}

pub fn namespace_of(object: &Value) -> &str {
    object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

pub fn name_of(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

pub fn uid_of(object: &Value) -> &str {
    object
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn metadata_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    match object.get_mut("metadata") {
        Some(Value::Object(metadata)) => metadata,
        // Set to an object just above.
        _ => unreachable!("metadata was just made an object"),
    }
}

/// Checks a new object and gives it its name, uid and creation time.
fn prepare_create(
    inner: &mut Inner,
    resource: &'static ResourceType,
    namespace: &str,
    wanted: Option<&str>,
    object: &mut Value,
) -> Result<String, ApiError> {
    check_type(resource, object)?;
    let given = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .map(str::to_string);
    let generate = object
        .pointer("/metadata/generateName")
        .and_then(Value::as_str);
    let name = match (given.filter(|n| !n.is_empty()), generate) {
        (Some(name), _) => name,
        (None, Some(prefix)) => {
            let prefix = prefix.to_string();
            loop {
                let candidate = format!("{prefix}{}", inner.name_suffix());
                if inner.get(resource, namespace, &candidate).is_none() {
                    break candidate;
                }
            }
        }
        (None, None) => match wanted {
            Some(name) => name.to_string(),
            None => {
                return Err(ApiError::invalid(
                    resource,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
        },
    };
    check_name(resource, &name)?;
    if wanted.is_some_and(|w| w != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({name}) does not match the name on the URL ({})",
            wanted.unwrap_or_default()
        )));
    }
    if inner.get(resource, namespace, &name).is_some() {
        return Err(ApiError::already_exists(resource, &name));
    }
    if resource.namespaced && inner.get(&resources::NAMESPACES, "", namespace).is_none() {
        return Err(ApiError::not_found(&resources::NAMESPACES, namespace));
    }
    let uid = inner.uid();
    let metadata = metadata_mut(object);
    metadata.insert("name".into(), Value::String(name.clone()));
    if resource.namespaced {
        metadata.insert("namespace".into(), Value::String(namespace.to_string()));
    } else {
        metadata.remove("namespace");
    }
    metadata.insert("uid".into(), Value::String(uid));
    metadata.insert("creationTimestamp".into(), Value::String(timestamp()));
    metadata.insert("generation".into(), json!(1));
    metadata.remove("resourceVersion");
    Ok(name)
}

/// Checks a replacement against the stored object and keeps what the server owns.
fn prepare_update(
    resource: &'static ResourceType,
    current: &Value,
    object: &mut Value,
    name: &str,
) -> Result<(), ApiError> {
    check_type(resource, object)?;
    let given_rv = object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str);
    let current_rv = current
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str);
    if given_rv.is_some_and(|rv| !rv.is_empty() && Some(rv) != current_rv) {
        return Err(ApiError::conflict(resource, name));
    }
    let given_name = object.pointer("/metadata/name").and_then(Value::as_str);
    if given_name.is_some_and(|n| n != name) {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({}) does not match the name on the URL ({name})",
            given_name.unwrap_or_default()
        )));
    }
    let spec_changed = current.get("spec") != object.get("spec");
    let generation = current
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let metadata = metadata_mut(object);
    for field in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "managedFields",
    ] {
        match current.pointer(&format!("/metadata/{field}")) {
            Some(value) => metadata.insert(field.into(), value.clone()),
            None => metadata.remove(field),
        };
    }
    let generation = if spec_changed {
        generation + 1
    } else {
        generation
    };
    metadata.insert("generation".into(), json!(generation));
    Ok(())
}

fn check_type(resource: &ResourceType, object: &mut Value) -> Result<(), ApiError> {
    let api_version = resource.api_version();
    let kind = object.get("kind").and_then(Value::as_str);
    let version = object.get("apiVersion").and_then(Value::as_str);
    if kind.is_some_and(|k| k != resource.kind) || version.is_some_and(|v| v != api_version) {
        return Err(ApiError::bad_request(format!(
            "the body is a {} {}, but the URL is for {} {}",
            version.unwrap_or("?"),
            kind.unwrap_or("?"),
            api_version,
            resource.kind
        )));
    }
    object["apiVersion"] = Value::String(api_version);
    object["kind"] = Value::String(resource.kind.to_string());
    Ok(())
}

/// Object names are DNS subdomains: lower-case letters, digits, '-' and '.'.
fn check_name(resource: &ResourceType, name: &str) -> Result<(), ApiError> {
    let valid = crate::platform::kubernetes::convert::is_object_name(name);
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid(
            resource,
            name,
            format!(
                "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must \
                 consist of lower case alphanumeric characters, '-' or '.'"
            ),
        ))
    }
}

/// Equal but for resourceVersion and managedFields.
fn same_content(current: &Value, new: &Value) -> bool {
    let strip = |object: &Value| {
        let mut object = object.clone();
        if let Some(Value::Object(metadata)) = object.get_mut("metadata") {
            metadata.remove("resourceVersion");
            metadata.remove("managedFields");
        }
        object
    };
    strip(current) == strip(new)
}

/// Sets the resourceVersion and this write's managedFields entry.
fn finish(object: &mut Value, rv: u64, manager: &str, operation: &str, resource: &ResourceType) {
    let api_version = resource.api_version();
    let metadata = metadata_mut(object);
    metadata.insert("resourceVersion".into(), Value::String(rv.to_string()));
    let entry = json!({
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": timestamp(),
        "fieldsType": "FieldsV1",
        "fieldsV1": {},
    });
    let mut fields = match metadata.remove("managedFields") {
        Some(Value::Array(fields)) => fields,
        _ => Vec::new(),
    };
    let same = |f: &Value| f["manager"] == manager && f["operation"] == operation;
    match fields.iter_mut().find(|f| same(f)) {
        Some(existing) => *existing = entry,
        None => fields.push(entry),
    }
    metadata.insert("managedFields".into(), Value::Array(fields));
}

fn encode_continue(rv: u64, (namespace, name): &Key) -> String {
    let text = format!("{rv}/{namespace}/{name}");
    text.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_continue(token: &str) -> Result<(u64, Key), ApiError> {
    let invalid = || ApiError::bad_request(format!("invalid continue token {token:?}"));
    if !token.len().is_multiple_of(2) || !token.is_ascii() {
        return Err(invalid());
    }
    let bytes: Result<Vec<u8>, _> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
        .collect();
    let text = String::from_utf8(bytes.map_err(|_| invalid())?).map_err(|_| invalid())?;
    let mut parts = text.splitn(3, '/');
    let rv = parts
        .next()
        .and_then(|rv| rv.parse().ok())
        .ok_or_else(invalid)?;
    let namespace = parts.next().ok_or_else(invalid)?.to_string();
    let name = parts.next().ok_or_else(invalid)?.to_string();
    Ok((rv, (namespace, name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::resources::{DEPLOYMENTS, LEASES, NAMESPACES, PODS};

    fn store_with_namespace(limit: usize) -> Store {
        let store = Store::new(limit);
        store
            .create(
                &NAMESPACES,
                "",
                json!({"metadata": {"name": "shop"}}),
                "test",
            )
            .unwrap();
        store
    }

    fn pod(name: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {"app": "web"}}, "spec": {}})
    }

    fn rv_of(object: &Value) -> u64 {
        object["metadata"]["resourceVersion"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    #[test]
    fn every_write_takes_the_next_resource_version() {
        let store = store_with_namespace(100);
        let a = store.create(&PODS, "shop", pod("a"), "test").unwrap();
        let b = store.create(&PODS, "shop", pod("b"), "test").unwrap();
        assert_eq!(rv_of(&b), rv_of(&a) + 1);
        assert_eq!(store.rv(), rv_of(&b));
        assert_eq!(a["kind"], "Pod");
        assert_eq!(a["apiVersion"], "v1");
        assert_eq!(a["metadata"]["namespace"], "shop");
        assert_eq!(a["metadata"]["uid"].as_str().map(str::len), Some(36));
        assert_eq!(a["metadata"]["managedFields"][0]["manager"], "test");
        let deleted = store.delete(&PODS, "shop", "a").unwrap();
        assert_eq!(rv_of(&deleted), rv_of(&b) + 1);
        assert!(store.get(&PODS, "shop", "a").is_none());
    }

    #[test]
    fn an_unchanged_write_keeps_the_resource_version() {
        let store = store_with_namespace(100);
        let a = store.create(&PODS, "shop", pod("a"), "test").unwrap();
        let same = store
            .write(&PODS, "shop", Some("a"), "test", "Update", |c| {
                Ok(c.cloned().unwrap_or_default())
            })
            .unwrap();
        assert_eq!(rv_of(&same), rv_of(&a));
    }

    #[test]
    fn creating_twice_is_already_exists_and_a_missing_namespace_is_not_found() {
        let store = store_with_namespace(100);
        store.create(&PODS, "shop", pod("a"), "test").unwrap();
        let error = store.create(&PODS, "shop", pod("a"), "test").unwrap_err();
        assert_eq!((error.code, error.reason), (409, "AlreadyExists"));
        assert_eq!(error.message, "pods \"a\" already exists");
        let error = store
            .create(&PODS, "nowhere", pod("a"), "test")
            .unwrap_err();
        assert_eq!(
            (error.code, error.message.as_str()),
            (404, "namespaces \"nowhere\" not found")
        );
        let error = store
            .create(&PODS, "shop", pod("Bad_Name"), "test")
            .unwrap_err();
        assert_eq!(error.code, 422);
    }

    #[test]
    fn generate_name_appends_five_characters() {
        let store = store_with_namespace(100);
        let object = json!({"metadata": {"generateName": "web-"}});
        let created = store.create(&PODS, "shop", object, "test").unwrap();
        let name = name_of(&created);
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    }

    #[test]
    fn a_stale_resource_version_is_a_conflict() {
        let store = store_with_namespace(100);
        let lease = json!({"metadata": {"name": "leader"}, "spec": {"holderIdentity": "a"}});
        let created = store.create(&LEASES, "shop", lease, "test").unwrap();
        let mut mine = (*created).clone();
        mine["spec"]["holderIdentity"] = json!("b");
        let updated = store
            .write(&LEASES, "shop", Some("leader"), "b", "Update", |_| {
                Ok(mine.clone())
            })
            .unwrap();
        assert_eq!(updated["spec"]["holderIdentity"], "b");
        assert_eq!(updated["metadata"]["generation"], 2);
        let mut stale = (*created).clone();
        stale["spec"]["holderIdentity"] = json!("c");
        let error = store
            .write(&LEASES, "shop", Some("leader"), "c", "Update", |_| {
                Ok(stale.clone())
            })
            .unwrap_err();
        assert_eq!((error.code, error.reason), (409, "Conflict"));
        assert!(
            error.message.starts_with(
                "Operation cannot be fulfilled on leases.coordination.k8s.io \"leader\""
            )
        );
    }

    #[test]
    fn lists_page_with_limit_and_continue_at_one_resource_version() {
        let store = store_with_namespace(100);
        for i in 0..5 {
            store
                .create(&PODS, "shop", pod(&format!("p{i}")), "test")
                .unwrap();
        }
        let everything = |_: &Value| true;
        let first = store
            .list(&PODS, Some("shop"), &everything, Some(2), None)
            .unwrap();
        assert_eq!(first.items.len(), 2);
        store.create(&PODS, "shop", pod("p9"), "test").unwrap();
        let token = first.next.clone().unwrap();
        let second = store
            .list(&PODS, Some("shop"), &everything, Some(2), Some(&token))
            .unwrap();
        assert_eq!(second.rv, first.rv);
        let names: Vec<&str> = second.items.iter().map(|o| name_of(&o.value)).collect();
        assert_eq!(names, ["p2", "p3"]);
        let token = second.next.unwrap();
        let third = store
            .list(&PODS, Some("shop"), &everything, Some(2), Some(&token))
            .unwrap();
        assert_eq!(third.items.len(), 2);
        assert!(third.next.is_none());
        assert!(
            store
                .list(&PODS, None, &everything, None, Some("zz"))
                .is_err()
        );
    }

    #[test]
    fn lists_filter_by_namespace() {
        let store = store_with_namespace(100);
        store
            .create(&NAMESPACES, "", json!({"metadata": {"name": "other"}}), "t")
            .unwrap();
        store.create(&PODS, "shop", pod("a"), "test").unwrap();
        store.create(&PODS, "other", pod("b"), "test").unwrap();
        let everything = |_: &Value| true;
        let shop = store
            .list(&PODS, Some("shop"), &everything, None, None)
            .unwrap();
        assert_eq!(shop.items.len(), 1);
        let all = store.list(&PODS, None, &everything, None, None).unwrap();
        assert_eq!(all.items.len(), 2);
    }

    #[test]
    fn a_watch_resumes_from_history_and_misses_nothing() {
        let store = store_with_namespace(100);
        let a = store.create(&PODS, "shop", pod("a"), "test").unwrap();
        store
            .create(
                &DEPLOYMENTS,
                "shop",
                json!({"metadata": {"name": "web"}}),
                "t",
            )
            .unwrap();
        store.create(&PODS, "shop", pod("b"), "test").unwrap();
        store.delete(&PODS, "shop", "a").unwrap();
        let start = store.watch(&PODS, Some("shop"), Some(rv_of(&a))).unwrap();
        let kinds: Vec<(ChangeKind, &str)> = start
            .replay
            .iter()
            .map(|c| (c.kind, name_of(&c.object.value)))
            .collect();
        assert_eq!(
            kinds,
            [(ChangeKind::Added, "b"), (ChangeKind::Deleted, "a")]
        );
        let mut live = start.live;
        store.create(&PODS, "shop", pod("c"), "test").unwrap();
        let next = live.try_recv().unwrap();
        assert_eq!(
            (next.kind, name_of(&next.object.value)),
            (ChangeKind::Added, "c")
        );
    }

    #[test]
    fn a_watch_from_before_the_history_window_is_gone() {
        let store = store_with_namespace(3);
        let a = store.create(&PODS, "shop", pod("a"), "test").unwrap();
        for i in 0..5 {
            store
                .create(&PODS, "shop", pod(&format!("x{i}")), "test")
                .unwrap();
        }
        let error = store.watch(&PODS, None, Some(rv_of(&a))).err().unwrap();
        assert_eq!((error.code, error.reason), (410, "Expired"));
        assert!(error.message.starts_with("too old resource version"));
        assert!(store.watch(&PODS, None, Some(store.rv())).is_ok());
    }

    #[test]
    fn expiring_the_history_makes_older_watches_gone() {
        let store = store_with_namespace(100);
        let a = store.create(&PODS, "shop", pod("a"), "test").unwrap();
        store.create(&PODS, "shop", pod("b"), "test").unwrap();
        assert!(store.watch(&PODS, None, Some(rv_of(&a))).is_ok());
        store.expire_history();
        assert_eq!(
            store
                .watch(&PODS, None, Some(rv_of(&a)))
                .err()
                .map(|e| e.code),
            Some(410)
        );
        assert!(store.watch(&PODS, None, Some(store.rv())).is_ok());
    }

    #[test]
    fn a_watch_without_a_version_starts_with_every_object() {
        let store = store_with_namespace(100);
        store.create(&PODS, "shop", pod("a"), "test").unwrap();
        let start = store.watch(&PODS, None, None).unwrap();
        assert_eq!(start.replay.len(), 1);
        assert_eq!(start.replay[0].kind, ChangeKind::Added);
    }

    #[test]
    fn a_spec_change_bumps_the_generation_and_a_metadata_change_does_not() {
        let store = store_with_namespace(100);
        let d = json!({"metadata": {"name": "web"}, "spec": {"replicas": 1}});
        store.create(&DEPLOYMENTS, "shop", d, "t").unwrap();
        let edit = |f: &dyn Fn(&mut Value)| {
            store
                .write(&DEPLOYMENTS, "shop", Some("web"), "t", "Update", |c| {
                    let mut o = c.cloned().unwrap_or_default();
                    f(&mut o);
                    Ok(o)
                })
                .unwrap()
        };
        let labelled = edit(&|o| o["metadata"]["labels"] = json!({"a": "b"}));
        assert_eq!(labelled["metadata"]["generation"], 1);
        let scaled = edit(&|o| o["spec"]["replicas"] = json!(3));
        assert_eq!(scaled["metadata"]["generation"], 2);
    }
}
