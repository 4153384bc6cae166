//! The sandbox cluster's HTTP API: discovery, the verbs on every resource, the scale and status
//! subresources, watches and pod logs, answered as a Kubernetes API server answers them.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::Cluster;
use super::logs;
use super::patch::{self, PatchKind};
use super::resources::{self, ResourceType};
use super::selector::{FieldSelector, LabelSelector};
use super::status::ApiError;
use super::store::{self, Change};

/// The version the server reports.
pub const GIT_VERSION: &str = "v1.33.0-sandbox";
/// The largest request body accepted.
const BODY_LIMIT: usize = 16 * 1024 * 1024;
/// How long a watch without `timeoutSeconds` stays open.
const DEFAULT_WATCH_SECONDS: u64 = 1800;
/// How often a watch that asked for bookmarks gets one.
const BOOKMARK_EVERY: Duration = Duration::from_secs(5);

/// The router of the API server; every path goes through one handler.
pub fn router(cluster: Arc<Cluster>) -> Router {
    Router::new().fallback(handle).with_state(cluster)
}

/// What a request's path names.
#[derive(Debug, Clone)]
enum Target {
    Version,
    Health,
    CoreVersions,
    Groups,
    Group(String),
    Discovery(String, String),
    Collection {
        resource: &'static ResourceType,
        namespace: Option<String>,
    },
    Object {
        resource: &'static ResourceType,
        namespace: String,
        name: String,
        sub: Option<String>,
    },
}

type Query = HashMap<String, String>;

async fn handle(State(cluster): State<Arc<Cluster>>, request: Request) -> Response {
    let method = request.method().clone();
    let uri = request.uri().clone();
    let query: Query = uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_string();
    let verdict = cluster.faults.verdict(&method, &path_and_query);
    if let Some(delay) = verdict.delay {
        tokio::time::sleep(delay).await;
    }
    let target = match parse_path(uri.path()) {
        Ok(target) => target,
        Err(error) => return error_response(&error),
    };
    if let Some(code) = verdict.status {
        return error_response(&injected(code, &method, &target, &query));
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_string();
    let body = match axum::body::to_bytes(request.into_body(), BODY_LIMIT).await {
        Ok(body) => body,
        Err(e) => return error_response(&ApiError::bad_request(format!("cannot read body: {e}"))),
    };
    let call = Call {
        cluster,
        method,
        query,
        content_type,
        body,
    };
    match call.dispatch(target).await {
        Ok(response) => response,
        Err(error) => error_response(&error),
    }
}

fn parse_path(path: &str) -> Result<Target, ApiError> {
    let segments: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let not_found = || {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    };
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return Ok(Target::Version),
        ["healthz" | "readyz" | "livez", ..] => return Ok(Target::Health),
        ["api"] => return Ok(Target::CoreVersions),
        ["apis"] => return Ok(Target::Groups),
        ["apis", group] => return Ok(Target::Group(group.to_string())),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(not_found()),
    };
    if resources::in_group(group, version).is_empty() {
        return Err(not_found());
    }
    let find = |plural: &str| resources::find(group, version, plural).ok_or_else(not_found);
    let sub = |s: Option<&&str>| s.map(|s| s.to_string());
    match rest {
        [] => Ok(Target::Discovery(group.to_string(), version.to_string())),
        ["namespaces", namespace, plural, more @ ..]
            if resources::find(group, version, plural).is_some_and(|r| r.namespaced) =>
        {
            let resource = find(plural)?;
            match more {
                [] => Ok(Target::Collection {
                    resource,
                    namespace: Some(namespace.to_string()),
                }),
                [name] | [name, _] => Ok(Target::Object {
                    resource,
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                    sub: sub(more.get(1)),
                }),
                _ => Err(not_found()),
            }
        }
        [plural] => Ok(Target::Collection {
            resource: find(plural)?,
            namespace: None,
        }),
        [plural, name, more @ ..] if more.len() <= 1 => {
            let resource = find(plural)?;
            if resource.namespaced {
                return Err(not_found());
            }
            Ok(Target::Object {
                resource,
                namespace: String::new(),
                name: name.to_string(),
                sub: sub(more.first()),
            })
        }
        _ => Err(not_found()),
    }
}

/// The Status an injected fault answers with, worded as a real server words it.
fn injected(code: u16, method: &Method, target: &Target, query: &Query) -> ApiError {
    let (resource, namespace, name, sub) = match target {
        Target::Collection {
            resource,
            namespace,
        } => (Some(*resource), namespace.clone(), None, None),
        Target::Object {
            resource,
            namespace,
            name,
            sub,
        } => {
            let namespace = Some(namespace.clone()).filter(|n| !n.is_empty());
            (Some(*resource), namespace, Some(name.clone()), sub.clone())
        }
        _ => (None, None, None, None),
    };
    let Some(resource) = resource else {
        return ApiError::new(code, ApiError::reason_for(code), "injected fault");
    };
    let subject = match &name {
        Some(name) => format!("{} \"{name}\"", resource.qualified()),
        None => resource.qualified(),
    };
    match code {
        403 => {
            let verb = verb(method, name.is_some(), query);
            let scope = match &namespace {
                Some(ns) => format!("in the namespace \"{ns}\""),
                None => "at the cluster scope".to_string(),
            };
            let resource_name = match &sub {
                Some(sub) => format!("{}/{sub}", resource.plural),
                None => resource.plural.to_string(),
            };
            let message = format!(
                "{subject} is forbidden: User \"sandbox\" cannot {verb} resource \
                 \"{resource_name}\" in API group \"{}\" {scope}",
                resource.group
            );
            ApiError::new(403, "Forbidden", message)
        }
        404 => ApiError::not_found(resource, name.as_deref().unwrap_or_default()),
        409 => ApiError::conflict(resource, name.as_deref().unwrap_or_default()),
        410 => ApiError::expired("too old resource version"),
        500 => ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {subject}"),
        ),
        _ => ApiError::new(
            code,
            ApiError::reason_for(code),
            format!("{subject}: injected fault"),
        ),
    }
}

/// The RBAC verb of a request.
fn verb(method: &Method, named: bool, query: &Query) -> &'static str {
    match (method.as_str(), named) {
        ("GET", true) => "get",
        ("GET", false) if is_true(query.get("watch")) => "watch",
        ("GET", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "get",
    }
}

fn is_true(value: Option<&String>) -> bool {
    value.is_some_and(|v| v == "1" || v == "true")
}

fn error_response(error: &ApiError) -> Response {
    let code = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &error.to_status())
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    bytes_response(code, serde_json::to_vec(value).unwrap_or_default())
}

fn bytes_response(code: StatusCode, bytes: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn ok(value: &Value) -> Response {
    json_response(StatusCode::OK, value)
}

/// One request being answered.
struct Call {
    cluster: Arc<Cluster>,
    method: Method,
    query: Query,
    content_type: String,
    body: Bytes,
}

impl Call {
    async fn dispatch(self, target: Target) -> Result<Response, ApiError> {
        let method = self.method.clone();
        match (method.as_str(), target) {
            ("GET", Target::Version) => Ok(ok(&version())),
            ("GET", Target::Health) => Ok(text_response("ok".to_string())),
            ("GET", Target::CoreVersions) => Ok(ok(&core_versions(&self.cluster))),
            ("GET", Target::Groups) => Ok(ok(&group_list())),
            ("GET", Target::Group(group)) => group_object(&group).map(|g| ok(&g)),
            ("GET", Target::Discovery(group, version)) => Ok(ok(&resource_list(&group, &version))),
            (
                "GET",
                Target::Collection {
                    resource,
                    namespace,
                },
            ) => {
                if is_true(self.query.get("watch")) {
                    self.watch(resource, namespace)
                } else {
                    self.list(resource, namespace.as_deref())
                }
            }
            (
                "POST",
                Target::Collection {
                    resource,
                    namespace,
                },
            ) => self.create(resource, namespace.as_deref().unwrap_or_default()),
            (
                "DELETE",
                Target::Collection {
                    resource,
                    namespace,
                },
            ) => self.delete_collection(resource, namespace.as_deref()),
            (
                _,
                Target::Object {
                    resource,
                    namespace,
                    name,
                    sub,
                },
            ) => {
                self.object(resource, &namespace, &name, sub.as_deref())
                    .await
            }
            (method, _) => Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource: {method}"
            ))),
        }
    }

    async fn object(
        self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        sub: Option<&str>,
    ) -> Result<Response, ApiError> {
        let store = &self.cluster.store;
        let unknown_sub = || {
            ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        };
        match (self.method.as_str(), sub) {
            ("GET", None | Some("status")) => {
                if sub.is_some() && !resource.has_status {
                    return Err(unknown_sub());
                }
                let object = store.get(resource, namespace, name);
                object
                    .map(|o| ok(&o))
                    .ok_or_else(|| ApiError::not_found(resource, name))
            }
            ("GET", Some("scale")) if resource.has_scale => {
                let object = store.get(resource, namespace, name);
                let object = object.ok_or_else(|| ApiError::not_found(resource, name))?;
                Ok(ok(&scale_of(&object)))
            }
            ("GET", Some("log")) if resource.plural == "pods" => self.logs(namespace, name).await,
            ("PUT", None | Some("status")) => {
                let body = self.json_body()?;
                let part = Part::from(resource, sub).ok_or_else(unknown_sub)?;
                let manager = self.manager();
                let written = store.write(
                    resource,
                    namespace,
                    Some(name),
                    &manager,
                    "Update",
                    |current| {
                        let current = current.ok_or_else(|| ApiError::not_found(resource, name))?;
                        Ok(part.merge(current, body))
                    },
                )?;
                Ok(ok(&written))
            }
            ("PATCH", None | Some("status")) => {
                let part = Part::from(resource, sub).ok_or_else(unknown_sub)?;
                self.patch(resource, namespace, name, part)
            }
            ("PUT" | "PATCH", Some("scale")) if resource.has_scale => {
                self.write_scale(resource, namespace, name)
            }
            ("DELETE", None) => {
                let deleted = self.cluster.delete(resource, namespace, name)?;
                Ok(ok(&deleted))
            }
            _ => Err(unknown_sub()),
        }
    }

    fn manager(&self) -> String {
        self.query
            .get("fieldManager")
            .cloned()
            .unwrap_or_else(|| "unknown".to_string())
    }

    fn json_body(&self) -> Result<Value, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            ApiError::bad_request(format!(
                "the body is not JSON ({e}); the sandbox cluster reads JSON bodies only"
            ))
        })
    }

    fn list(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
    ) -> Result<Response, ApiError> {
        let (labels, fields) = self.selectors()?;
        let filter = |o: &Value| labels.matches_object(o) && fields.matches(o);
        let limit = match self.query.get("limit") {
            Some(limit) => Some(limit.parse::<usize>().map_err(|_| {
                ApiError::bad_request(format!("limit must be a whole number, not {limit:?}"))
            })?),
            None => None,
        };
        let token = self.query.get("continue").map(String::as_str);
        let page = self
            .cluster
            .store
            .list(resource, namespace, &filter, limit, token)?;
        let mut metadata = json!({"resourceVersion": page.rv.to_string()});
        if let Some(next) = &page.next {
            metadata["continue"] = Value::String(next.clone());
        }
        let head = json!({
            "kind": format!("{}List", resource.kind),
            "apiVersion": resource.api_version(),
            "metadata": metadata,
        });
        let mut bytes = serde_json::to_vec(&head).unwrap_or_default();
        bytes.pop();
        bytes.extend_from_slice(b",\"items\":[");
        for (i, item) in page.items.iter().enumerate() {
            if i > 0 {
                bytes.push(b',');
            }
            bytes.extend_from_slice(item.encoded());
        }
        bytes.extend_from_slice(b"]}");
        Ok(bytes_response(StatusCode::OK, bytes))
    }

    fn selectors(&self) -> Result<(LabelSelector, FieldSelector), ApiError> {
        let labels = self
            .query
            .get("labelSelector")
            .map(String::as_str)
            .unwrap_or("");
        let labels = LabelSelector::parse(labels)
            .map_err(|e| ApiError::bad_request(format!("invalid labelSelector: {e}")))?;
        let fields = self
            .query
            .get("fieldSelector")
            .map(String::as_str)
            .unwrap_or("");
        let fields = FieldSelector::parse(fields)
            .map_err(|e| ApiError::bad_request(format!("invalid fieldSelector: {e}")))?;
        Ok((labels, fields))
    }

    fn create(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
    ) -> Result<Response, ApiError> {
        let body = self.json_body()?;
        let body_namespace = store::namespace_of(&body);
        if resource.namespaced && !body_namespace.is_empty() && body_namespace != namespace {
            return Err(ApiError::bad_request(format!(
                "the namespace of the object ({body_namespace}) does not match the namespace on \
                 the URL ({namespace})"
            )));
        }
        let created = self
            .cluster
            .store
            .create(resource, namespace, body, &self.manager())?;
        Ok(json_response(StatusCode::CREATED, &created))
    }

    fn delete_collection(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
    ) -> Result<Response, ApiError> {
        let (labels, fields) = self.selectors()?;
        let filter = |o: &Value| labels.matches_object(o) && fields.matches(o);
        let page = self
            .cluster
            .store
            .list(resource, namespace, &filter, None, None)?;
        let mut deleted = Vec::new();
        for stored in page.items {
            let object = &stored.value;
            let (ns, name) = (store::namespace_of(object), store::name_of(object));
            if let Ok(gone) = self.cluster.delete(resource, ns, name) {
                deleted.push((*gone).clone());
            }
        }
        Ok(ok(&json!({
            "kind": format!("{}List", resource.kind),
            "apiVersion": resource.api_version(),
            "metadata": {"resourceVersion": self.cluster.store.rv().to_string()},
            "items": deleted,
        })))
    }

    fn patch(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
        part: Part,
    ) -> Result<Response, ApiError> {
        let kind = PatchKind::from_content_type(&self.content_type).ok_or_else(|| {
            ApiError::new(
                415,
                "UnsupportedMediaType",
                format!(
                    "the body of the request was in an unknown format: {}",
                    self.content_type
                ),
            )
        })?;
        let body = self.json_body()?;
        let operation = if kind == PatchKind::Apply {
            "Apply"
        } else {
            "Update"
        };
        let manager = self.manager();
        let written = self.cluster.store.write(
            resource,
            namespace,
            Some(name),
            &manager,
            operation,
            |current| {
                let start = match (current, kind) {
                    (Some(current), _) => current.clone(),
                    (None, PatchKind::Apply) => json!({"metadata": {"name": name}}),
                    (None, _) => return Err(ApiError::not_found(resource, name)),
                };
                let mut patched = start.clone();
                patch::apply(kind, &mut patched, &body)
                    .map_err(|e| ApiError::invalid(resource, name, e))?;
                Ok(match current {
                    Some(current) => part.merge(current, patched),
                    None => patched,
                })
            },
        )?;
        Ok(ok(&written))
    }

    fn write_scale(
        &self,
        resource: &'static ResourceType,
        namespace: &str,
        name: &str,
    ) -> Result<Response, ApiError> {
        let body = self.json_body()?;
        let kind = match self.method.as_str() {
            "PATCH" => Some(
                PatchKind::from_content_type(&self.content_type).ok_or_else(|| {
                    ApiError::new(
                        415,
                        "UnsupportedMediaType",
                        "unknown patch format for a Scale",
                    )
                })?,
            ),
            _ => None,
        };
        let manager = self.manager();
        let written = self.cluster.store.write(resource, namespace, Some(name), &manager, "Update", |current| {
            let current = current.ok_or_else(|| ApiError::not_found(resource, name))?;
            let scale = match kind {
                Some(kind) => {
                    let mut scale = scale_of(current);
                    patch::apply(kind, &mut scale, &body)
                        .map_err(|e| ApiError::invalid(resource, name, e))?;
                    scale
                }
                None => body.clone(),
            };
            let replicas = scale.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(0);
            if replicas < 0 {
                return Err(ApiError::invalid(
                    resource,
                    name,
                    format!("spec.replicas: Invalid value: {replicas}: must be greater than or equal to 0"),
                ));
            }
            let mut updated = current.clone();
            updated["spec"]["replicas"] = json!(replicas);
            let given_rv = scale.pointer("/metadata/resourceVersion").cloned();
            if let Some(rv) = given_rv.filter(|rv| rv.as_str().is_some_and(|s| !s.is_empty())) {
                updated["metadata"]["resourceVersion"] = rv;
            }
            Ok(updated)
        })?;
        Ok(ok(&scale_of(&written)))
    }

    fn watch(
        &self,
        resource: &'static ResourceType,
        namespace: Option<String>,
    ) -> Result<Response, ApiError> {
        let (labels, fields) = self.selectors()?;
        let from = match self.query.get("resourceVersion").filter(|v| !v.is_empty()) {
            Some(rv) => Some(rv.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("resourceVersion must be a number, not {rv:?}"))
            })?),
            None => None,
        };
        let timeout = self
            .query
            .get("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(DEFAULT_WATCH_SECONDS);
        let watch = Watch {
            cluster: self.cluster.clone(),
            resource,
            namespace,
            labels,
            fields,
            from,
            bookmarks: is_true(self.query.get("allowWatchBookmarks")),
            timeout: Duration::from_secs(timeout),
        };
        let (sender, receiver) = mpsc::channel::<Bytes>(256);
        tokio::spawn(watch.run(sender));
        Ok(stream_response(receiver, "application/json"))
    }

    async fn logs(&self, namespace: &str, name: &str) -> Result<Response, ApiError> {
        let pod = self.cluster.store.get(&resources::PODS, namespace, name);
        let pod = pod.ok_or_else(|| ApiError::not_found(&resources::PODS, name))?;
        let request = LogRequest::from_query(&self.query)?;
        let container = pick_container(&pod, name, request.container.as_deref())?;
        let key = (namespace.to_string(), name.to_string());
        let sim = self.cluster.pods.container(&key, &container);
        let Some(sim) = sim.filter(|s| !s.instances.is_empty()) else {
            return Err(ApiError::bad_request(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"
            )));
        };
        let running = sim.instances.last().is_some_and(|i| i.finished.is_none());
        let index = if request.previous {
            let finished = sim.instances.iter().rposition(|i| i.finished.is_some());
            match finished {
                Some(i) => i,
                None => {
                    return Err(ApiError::bad_request(format!(
                        "previous terminated container \"{container}\" in pod \"{name}\" not found"
                    )));
                }
            }
        } else {
            sim.instances.len() - 1
        };
        let instance = sim.instances[index].clone();
        let now = chrono::Utc::now();
        let mut lines = logs::lines(name, &sim.image, sim.behaviour, &instance, now);
        if let Some(seconds) = request.since_seconds {
            let since = now - chrono::Duration::seconds(seconds);
            lines.retain(|(t, _)| *t >= since);
        }
        if let Some(tail) = request.tail_lines {
            let skip = lines.len().saturating_sub(tail);
            lines.drain(..skip);
        }
        let mut text = String::new();
        for line in &lines {
            text.push_str(&request.format(line));
        }
        if let Some(limit) = request.limit_bytes {
            let mut cut = limit.min(text.len());
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        let follow =
            request.follow && !request.previous && running && index == sim.instances.len() - 1;
        if !follow {
            return Ok(text_response(text));
        }
        let (sender, receiver) = mpsc::channel::<Bytes>(64);
        let last = lines
            .last()
            .map(|(t, _)| *t)
            .unwrap_or(instance.started - chrono::Duration::seconds(1));
        let follower = Follower {
            cluster: self.cluster.clone(),
            key,
            container,
            pod: name.to_string(),
            index,
            last,
            request,
        };
        tokio::spawn(follower.run(sender, text));
        Ok(stream_response(receiver, "text/plain"))
    }
}

/// Which part of an object a write replaces.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Part {
    /// Everything but the status (for resources that have a status subresource).
    Main {
        keep_status: bool,
    },
    Status,
}

impl Part {
    fn from(resource: &ResourceType, sub: Option<&str>) -> Option<Part> {
        match sub {
            None => Some(Part::Main {
                keep_status: resource.has_status,
            }),
            Some("status") if resource.has_status => Some(Part::Status),
            _ => None,
        }
    }

    /// The object to store, from the stored one and the written one.
    fn merge(self, current: &Value, mut written: Value) -> Value {
        match self {
            Part::Main { keep_status: false } => written,
            Part::Main { keep_status: true } => {
                match current.get("status") {
                    Some(status) => written["status"] = status.clone(),
                    None => {
                        if let Some(map) = written.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
                written
            }
            Part::Status => {
                let mut object = current.clone();
                object["status"] = written.get("status").cloned().unwrap_or(Value::Null);
                if let Some(rv) = written.pointer("/metadata/resourceVersion") {
                    object["metadata"]["resourceVersion"] = rv.clone();
                }
                object
            }
        }
    }
}

/// The `autoscaling/v1` Scale of a workload.
pub fn scale_of(object: &Value) -> Value {
    let selector = object
        .pointer("/spec/selector")
        .and_then(|s| LabelSelector::from_object(s).ok())
        .map(|s| s.to_query())
        .unwrap_or_default();
    let metadata = &object["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": metadata["name"],
            "namespace": metadata["namespace"],
            "uid": metadata["uid"],
            "resourceVersion": metadata["resourceVersion"],
            "creationTimestamp": metadata["creationTimestamp"],
        },
        "spec": {"replicas": object.pointer("/spec/replicas").and_then(Value::as_i64).unwrap_or(1)},
        "status": {
            "replicas": object.pointer("/status/replicas").and_then(Value::as_i64).unwrap_or(0),
            "selector": selector,
        },
    })
}

fn stream_response(receiver: mpsc::Receiver<Bytes>, content_type: &'static str) -> Response {
    let mut receiver = receiver;
    let stream = futures::stream::poll_fn(move |cx| {
        receiver
            .poll_recv(cx)
            .map(|chunk| chunk.map(Ok::<Bytes, Infallible>))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn text_response(text: String) -> Response {
    let mut response = Response::new(Body::from(text));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    response
}

/// One open watch stream.
struct Watch {
    cluster: Arc<Cluster>,
    resource: &'static ResourceType,
    namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    from: Option<u64>,
    bookmarks: bool,
    timeout: Duration,
}

impl Watch {
    async fn run(self, out: mpsc::Sender<Bytes>) {
        let mut drops = self.cluster.faults.drops();
        let mut expiries = self.cluster.faults.expiries();
        let mut shutdown = self.cluster.shutdown.subscribe();
        let start =
            match self
                .cluster
                .store
                .watch(self.resource, self.namespace.as_deref(), self.from)
            {
                Ok(start) => start,
                Err(error) => {
                    let _ = out.send(error_event(&error)).await;
                    return;
                }
            };
        let mut last_rv = self.from.unwrap_or(0);
        for change in &start.replay {
            last_rv = last_rv.max(change.rv);
            if let Some(event) = self.event(change)
                && out.send(event).await.is_err()
            {
                return;
            }
        }
        last_rv = last_rv.max(start.rv);
        let mut live = start.live;
        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        let mut bookmark = tokio::time::interval(BOOKMARK_EVERY);
        bookmark.tick().await;
        loop {
            tokio::select! {
                received = live.recv() => match received {
                    Ok(change) => {
                        if change.rv <= last_rv {
                            continue;
                        }
                        last_rv = change.rv;
                        if let Some(event) = self.event(&change)
                            && out.send(event).await.is_err()
                        {
                            return;
                        }
                    }
                    // Lagged or closed: end the stream; the client resumes from its last
                    // resourceVersion, which the history still holds.
                    Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => return,
                },
                _ = bookmark.tick(), if self.bookmarks => {
                    if out.send(self.bookmark(last_rv)).await.is_err() {
                        return;
                    }
                }
                _ = drops.changed() => return,
                _ = expiries.changed() => {
                    let error = ApiError::expired("too old resource version: the watch was expired");
                    let _ = out.send(error_event(&error)).await;
                    return;
                }
                _ = shutdown.changed() => return,
                _ = &mut deadline => return,
                _ = out.closed() => return,
            }
        }
    }

    fn event(&self, change: &Change) -> Option<Bytes> {
        let in_scope = change.resource == self.resource.plural
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == change.namespace);
        let matches = in_scope
            && self.labels.matches_object(&change.object.value)
            && self.fields.matches(&change.object.value);
        matches.then(|| {
            let mut bytes =
                format!("{{\"type\":\"{}\",\"object\":", change.kind.event_type()).into_bytes();
            bytes.extend_from_slice(change.object.encoded());
            bytes.extend_from_slice(b"}\n");
            Bytes::from(bytes)
        })
    }

    fn bookmark(&self, rv: u64) -> Bytes {
        let event = json!({
            "type": "BOOKMARK",
            "object": {
                "kind": self.resource.kind,
                "apiVersion": self.resource.api_version(),
                "metadata": {"resourceVersion": rv.to_string()},
            },
        });
        line(&event)
    }
}

fn line(value: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(value).unwrap_or_default();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

fn error_event(error: &ApiError) -> Bytes {
    line(&json!({"type": "ERROR", "object": error.to_status()}))
}

/// The parameters of a pod log request.
#[derive(Debug, Clone, Default)]
struct LogRequest {
    container: Option<String>,
    follow: bool,
    previous: bool,
    timestamps: bool,
    tail_lines: Option<usize>,
    since_seconds: Option<i64>,
    limit_bytes: Option<usize>,
}

impl LogRequest {
    fn from_query(query: &Query) -> Result<LogRequest, ApiError> {
        fn number<T: std::str::FromStr>(query: &Query, key: &str) -> Result<Option<T>, ApiError> {
            match query.get(key) {
                Some(value) => value.parse().map(Some).map_err(|_| {
                    ApiError::bad_request(format!("{key} must be a whole number, not {value:?}"))
                }),
                None => Ok(None),
            }
        }
        Ok(LogRequest {
            container: query.get("container").cloned().filter(|c| !c.is_empty()),
            follow: is_true(query.get("follow")),
            previous: is_true(query.get("previous")),
            timestamps: is_true(query.get("timestamps")),
            tail_lines: number(query, "tailLines")?,
            since_seconds: number(query, "sinceSeconds")?,
            limit_bytes: number(query, "limitBytes")?,
        })
    }

    fn format(&self, (at, text): &(chrono::DateTime<chrono::Utc>, String)) -> String {
        if self.timestamps {
            let at = at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            format!("{at} {text}\n")
        } else {
            format!("{text}\n")
        }
    }
}

fn pick_container(pod: &Value, name: &str, wanted: Option<&str>) -> Result<String, ApiError> {
    let names: Vec<&str> = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    match (wanted, names.as_slice()) {
        (Some(wanted), _) if names.contains(&wanted) => Ok(wanted.to_string()),
        (Some(wanted), _) => Err(ApiError::bad_request(format!(
            "container {wanted} is not valid for pod {name}"
        ))),
        (None, [only]) => Ok(only.to_string()),
        (None, []) => Err(ApiError::bad_request(format!(
            "pod {name} has no containers"
        ))),
        (None, many) => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            many.join(" ")
        ))),
    }
}

/// A followed log: new lines of the running instance until it exits or the pod goes.
struct Follower {
    cluster: Arc<Cluster>,
    key: (String, String),
    container: String,
    pod: String,
    index: usize,
    last: chrono::DateTime<chrono::Utc>,
    request: LogRequest,
}

impl Follower {
    async fn run(mut self, out: mpsc::Sender<Bytes>, first: String) {
        if out.send(Bytes::from(first)).await.is_err() {
            return;
        }
        let mut shutdown = self.cluster.shutdown.subscribe();
        let mut poll = tokio::time::interval(Duration::from_millis(300));
        loop {
            tokio::select! {
                _ = poll.tick() => {}
                _ = shutdown.changed() => return,
                _ = out.closed() => return,
            }
            let Some(sim) = self.cluster.pods.container(&self.key, &self.container) else {
                return;
            };
            let Some(instance) = sim.instances.get(self.index).cloned() else {
                return;
            };
            let now = chrono::Utc::now();
            let lines = logs::lines(&self.pod, &sim.image, sim.behaviour, &instance, now);
            let mut text = String::new();
            let last = self.last;
            for line in lines.iter().filter(|(t, _)| *t > last) {
                text.push_str(&self.request.format(line));
                self.last = line.0;
            }
            if !text.is_empty() && out.send(Bytes::from(text)).await.is_err() {
                return;
            }
            if instance.finished.is_some() {
                return;
            }
        }
    }
}

fn version() -> Value {
    json!({
        "major": "1",
        "minor": "33",
        "gitVersion": GIT_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    })
}

fn core_versions(cluster: &Cluster) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": cluster.addr.to_string()}
        ],
    })
}

fn group_json(group: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": versions, "preferredVersion": versions[0]})
}

/// Groups another router serves on the same server (the pod metrics API).
const OTHER_GROUPS: [(&str, &[&str]); 1] = [("metrics.k8s.io", &["v1beta1"])];

fn all_groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut groups = resources::groups();
    groups.extend(OTHER_GROUPS.iter().map(|(g, vs)| (*g, vs.to_vec())));
    groups
}

fn group_list() -> Value {
    let groups: Vec<Value> = all_groups()
        .iter()
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn group_object(group: &str) -> Result<Value, ApiError> {
    let groups = all_groups();
    let (name, versions) = groups.iter().find(|(g, _)| *g == group).ok_or_else(|| {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    })?;
    let mut object = group_json(name, versions);
    object["kind"] = json!("APIGroup");
    object["apiVersion"] = json!("v1");
    Ok(object)
}

fn resource_list(group: &str, version: &str) -> Value {
    let mut list = Vec::new();
    for resource in resources::in_group(group, version) {
        let verbs = [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        list.push(json!({
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": verbs,
            "shortNames": resource.short_names,
        }));
        let sub = |name: &str, kind: &str, verbs: &[&str]| {
            json!({
                "name": format!("{}/{name}", resource.plural),
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": kind,
                "verbs": verbs,
            })
        };
        if resource.has_status {
            list.push(sub("status", resource.kind, &["get", "patch", "update"]));
        }
        if resource.has_scale {
            let mut scale = sub("scale", "Scale", &["get", "patch", "update"]);
            scale["group"] = json!("autoscaling");
            scale["version"] = json!("v1");
            list.push(scale);
        }
        if resource.plural == "pods" {
            list.push(sub("log", "Pod", &["get"]));
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": list})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_collections_objects_and_subresources() {
        let target = parse_path("/apis/apps/v1/namespaces/shop/deployments/web/scale").unwrap();
        assert!(
            matches!(target, Target::Object { resource, ref namespace, ref name, ref sub }
            if resource.plural == "deployments" && namespace == "shop" && name == "web"
               && sub.as_deref() == Some("scale"))
        );
        let target = parse_path("/api/v1/namespaces/shop").unwrap();
        assert!(matches!(target, Target::Object { resource, ref name, .. }
            if resource.plural == "namespaces" && name == "shop"));
        let target = parse_path("/api/v1/pods").unwrap();
        assert!(matches!(
            target,
            Target::Collection {
                namespace: None,
                ..
            }
        ));
        assert!(parse_path("/apis/apps/v9/deployments").is_err());
        assert!(parse_path("/api/v1/widgets").is_err());
    }

    #[test]
    fn an_injected_403_reads_like_an_rbac_refusal() {
        let target = parse_path("/apis/apps/v1/namespaces/shop/deployments/web/scale").unwrap();
        let error = injected(403, &Method::PATCH, &target, &Query::new());
        assert_eq!(
            error.message,
            "deployments.apps \"web\" is forbidden: User \"sandbox\" cannot patch resource \
             \"deployments/scale\" in API group \"apps\" in the namespace \"shop\""
        );
        let target = parse_path("/api/v1/pods").unwrap();
        let query = Query::from([("watch".to_string(), "1".to_string())]);
        let error = injected(403, &Method::GET, &target, &query);
        assert_eq!(
            error.message,
            "pods is forbidden: User \"sandbox\" cannot watch resource \"pods\" in API group \"\" \
             at the cluster scope"
        );
    }
}
