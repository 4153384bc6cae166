//! Answers a test can inject into the sandbox cluster: errors, slow answers, dropped and
//! expired watches. They apply to the metrics endpoints (the Prometheus query API and the pod
//! metrics API) as to the API server's own requests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Json, Response};
use tokio::sync::watch;

use super::Cluster;
use super::status::ApiError;
use super::store::Store;

/// One injected failure: requests that match get `status` instead of their answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Only requests with this method; None for any.
    pub method: Option<Method>,
    /// Matches when the request's path and query contain this text.
    pub path_contains: String,
    /// The HTTP code to answer with (403, 409, 410, 500...), in a `Status` object.
    pub status: u16,
    /// How many requests it answers before it stops; None for every one.
    pub times: Option<u32>,
    /// Waits this long before answering.
    pub delay: Option<Duration>,
}

/// What the API server does about one request, from the faults in force.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Verdict {
    pub delay: Option<Duration>,
    pub status: Option<u16>,
}

/// The faults in force; shared by the API server and the test that sets them.
pub struct Faults {
    failures: Mutex<Vec<Fault>>,
    slow: Mutex<Vec<(String, Duration)>>,
    drops: watch::Sender<u64>,
    expiries: watch::Sender<u64>,
    store: Arc<Store>,
}

impl Faults {
    pub(crate) fn new(store: Arc<Store>) -> Faults {
        Faults {
            failures: Mutex::new(Vec::new()),
            slow: Mutex::new(Vec::new()),
            drops: watch::channel(0).0,
            expiries: watch::channel(0).0,
            store,
        }
    }

    /// Answers matching requests with an error `Status`.
    pub fn fail(&self, fault: Fault) {
        lock(&self.failures).push(fault);
    }

    /// Delays every request whose path and query contain `path_contains`.
    pub fn slow(&self, path_contains: &str, delay: Duration) {
        lock(&self.slow).push((path_contains.to_string(), delay));
    }

    /// Ends every open watch stream now, in the middle of the stream.
    pub fn drop_watches(&self) {
        self.drops.send_modify(|n| *n += 1);
    }

    /// Sends every open watch an ERROR event with a 410 Status and ends it; a watch from an
    /// older resourceVersion than the current one is answered 410 from now on.
    pub fn expire_watches(&self) {
        self.store.expire_history();
        self.expiries.send_modify(|n| *n += 1);
    }

    /// Removes every failure and delay (expired history stays expired).
    pub fn clear(&self) {
        lock(&self.failures).clear();
        lock(&self.slow).clear();
    }

    /// What to do about a request; counts it against a fault's `times`.
    pub fn verdict(&self, method: &Method, path_and_query: &str) -> Verdict {
        let mut verdict = Verdict::default();
        for (path, delay) in lock(&self.slow).iter() {
            if path_and_query.contains(path.as_str()) {
                verdict.delay = Some(verdict.delay.unwrap_or_default().max(*delay));
            }
        }
        let mut failures = lock(&self.failures);
        let matches = |fault: &Fault| {
            fault.method.as_ref().is_none_or(|m| m == method)
                && path_and_query.contains(fault.path_contains.as_str())
                && fault.times != Some(0)
        };
        if let Some(fault) = failures.iter_mut().find(|f| matches(f)) {
            if let Some(times) = fault.times.as_mut() {
                *times -= 1;
            }
            verdict.status = Some(fault.status);
            if let Some(delay) = fault.delay {
                verdict.delay = Some(verdict.delay.unwrap_or_default().max(delay));
            }
        }
        failures.retain(|f| f.times != Some(0));
        verdict
    }

    /// Changes each time watches are dropped.
    pub(crate) fn drops(&self) -> watch::Receiver<u64> {
        self.drops.subscribe()
    }

    /// Changes each time watches are expired.
    pub(crate) fn expiries(&self) -> watch::Receiver<u64> {
        self.expiries.subscribe()
    }
}

/// Applies the faults in force to a request the metrics endpoints serve, as the API server
/// applies them to its own: a delay, then a matching failure answered with a `Status` of its
/// code instead of the endpoint's answer.
pub(crate) async fn apply(
    State(cluster): State<Arc<Cluster>>,
    request: Request,
    next: Next,
) -> Response {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let verdict = cluster.faults.verdict(request.method(), &path_and_query);
    if let Some(delay) = verdict.delay {
        tokio::time::sleep(delay).await;
    }
    match verdict.status {
        Some(code) => {
            let error = ApiError::new(code, ApiError::reason_for(code), "injected fault");
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, Json(error.to_status())).into_response()
        }
        None => next.run(request).await,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The lists stay consistent even if a holder panicked.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_answers_its_count_of_matching_requests() {
        let faults = Faults::new(Arc::new(Store::new(10)));
        faults.fail(Fault {
            method: Some(Method::PATCH),
            path_contains: "/scale".into(),
            status: 403,
            times: Some(2),
            delay: None,
        });
        let path = "/apis/apps/v1/namespaces/shop/deployments/web/scale";
        assert_eq!(faults.verdict(&Method::GET, path).status, None);
        assert_eq!(faults.verdict(&Method::PATCH, path).status, Some(403));
        assert_eq!(faults.verdict(&Method::PATCH, path).status, Some(403));
        assert_eq!(faults.verdict(&Method::PATCH, path).status, None);
    }

    #[test]
    fn slow_paths_are_delayed_until_cleared() {
        let faults = Faults::new(Arc::new(Store::new(10)));
        faults.slow("/pods", Duration::from_millis(300));
        let verdict = faults.verdict(&Method::GET, "/api/v1/pods");
        assert_eq!(verdict.delay, Some(Duration::from_millis(300)));
        faults.clear();
        assert_eq!(
            faults.verdict(&Method::GET, "/api/v1/pods"),
            Verdict::default()
        );
    }
}
