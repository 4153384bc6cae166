//! Reaching a Docker engine: which address to use, a client with the API version negotiated,
//! failures worded for an operator, and the backoff between attempts.
//!
//! Not for what happens once connected: the worker in `mod.rs` owns the session.

use std::error::Error as _;
use std::io;
use std::time::Duration;

use bollard::errors::Error as BollardError;
use bollard::{API_DEFAULT_VERSION, Docker};

/// The socket a local engine listens on when nothing else is said.
pub const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// How long connecting (version, info) may take before the attempt counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Seconds a single request may wait for the engine's answer; a restart or stop waits for the
/// container's stop timeout, so this is generous.
const REQUEST_TIMEOUT_SECS: u64 = 120;

/// Where an engine listens, as the operator wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A unix socket; `address` keeps the `unix://` form for messages.
    Unix { address: String, path: String },
    /// Plain HTTP (`tcp://` or `http://`).
    Http { address: String },
}

impl Endpoint {
    /// The address as shown in messages, e.g. `unix:///var/run/docker.sock`.
    pub fn address(&self) -> &str {
        match self {
            Endpoint::Unix { address, .. } | Endpoint::Http { address } => address,
        }
    }
}

/// The endpoint for `host` (from `--docker-host` or config), else `docker_host_env`
/// (`DOCKER_HOST`), else the default local socket.
pub fn resolve_endpoint(
    host: Option<&str>,
    docker_host_env: Option<&str>,
) -> Result<Endpoint, String> {
    let raw = host
        .or(docker_host_env)
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .unwrap_or(DEFAULT_HOST);
    if let Some(path) = raw.strip_prefix("unix://") {
        return Ok(Endpoint::Unix {
            address: raw.to_string(),
            path: path.to_string(),
        });
    }
    if raw.starts_with('/') {
        return Ok(Endpoint::Unix {
            address: format!("unix://{raw}"),
            path: raw.to_string(),
        });
    }
    if raw.starts_with("tcp://") || raw.starts_with("http://") {
        return Ok(Endpoint::Http {
            address: raw.to_string(),
        });
    }
    Err(format!(
        "cannot use Docker host {raw}: only unix://, tcp:// and http:// addresses are supported \
         (set DOCKER_HOST or --docker-host to one of them)"
    ))
}

/// A client for the endpoint, speaking the newest API bollard knows until negotiated down.
pub fn client(endpoint: &Endpoint) -> Result<Docker, BollardError> {
    match endpoint {
        Endpoint::Unix { path, .. } => {
            Docker::connect_with_unix(path, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
        }
        Endpoint::Http { address } => {
            Docker::connect_with_http(address, REQUEST_TIMEOUT_SECS, API_DEFAULT_VERSION)
        }
    }
}

/// A message that says what failed, on what, and what to do.
pub fn describe_failure(address: &str, err: &BollardError) -> String {
    const HINT: &str = "is the daemon running? set DOCKER_HOST or --docker-host";
    if let BollardError::SocketNotFoundError(_) = err {
        return format!("cannot reach Docker at {address}: no such socket ({HINT})");
    }
    if let BollardError::RequestTimeoutError = err {
        return format!("cannot reach Docker at {address}: no answer in time ({HINT})");
    }
    if let BollardError::DockerResponseServerError {
        status_code,
        message,
    } = err
    {
        return format!(
            "Docker at {address} refused the request: {status_code} {message} (check the \
             engine's log; a proxy in front of it may not pass the Docker API)"
        );
    }
    match io_kind(err) {
        Some(io::ErrorKind::ConnectionRefused) => {
            format!("cannot reach Docker at {address}: connection refused ({HINT})")
        }
        Some(io::ErrorKind::NotFound) => {
            format!("cannot reach Docker at {address}: no such socket ({HINT})")
        }
        Some(io::ErrorKind::PermissionDenied) => format!(
            "cannot reach Docker at {address}: permission denied (add your user to the docker \
             group, or set DOCKER_HOST or --docker-host)"
        ),
        _ => format!("cannot reach Docker at {address}: {err} ({HINT})"),
    }
}

/// The kind of the I/O error at the root of a client error, if there is one.
fn io_kind(err: &BollardError) -> Option<io::ErrorKind> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = err.source();
    while let Some(current) = source {
        if let Some(io_err) = current.downcast_ref::<io::Error>() {
            return Some(io_err.kind());
        }
        source = current.source();
    }
    None
}

/// A client that answered, with the versions it reported.
#[derive(Debug, Clone)]
pub struct Connected {
    pub docker: Docker,
    /// The engine's version, e.g. `20.10.24`.
    pub version: String,
    /// The API version both sides speak after negotiation, e.g. `1.41`.
    pub api_version: String,
    /// The engine's own ID (`docker info`), the same however the engine is reached: the
    /// autoscaler's host lock is taken on it.
    pub engine_id: String,
}

/// Connects to the endpoint and negotiates the API version, within [`CONNECT_TIMEOUT`].
pub async fn open(endpoint: &Endpoint) -> Result<Connected, String> {
    let address = endpoint.address();
    let attempt = async {
        let docker = client(endpoint).map_err(|e| describe_failure(address, &e))?;
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| describe_failure(address, &e))?;
        // Both at once, so learning the engine's ID adds no round trip to connecting.
        let (version, info) = tokio::join!(docker.version(), docker.info());
        let version = version.map_err(|e| describe_failure(address, &e))?;
        let info = info.map_err(|e| describe_failure(address, &e))?;
        let api = docker.client_version();
        Ok(Connected {
            version: version.version.unwrap_or_default(),
            api_version: format!("{}.{}", api.major_version, api.minor_version),
            // An engine that reports no ID is locked by its address instead.
            engine_id: info
                .id
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| address.to_string()),
            docker,
        })
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_elapsed) => Err(describe_timeout(address)),
    }
}

/// The message for a connect attempt that took longer than [`CONNECT_TIMEOUT`].
pub fn describe_timeout(address: &str) -> String {
    format!(
        "cannot reach Docker at {address}: no answer within {} s (is the host reachable and the \
         daemon running? set DOCKER_HOST or --docker-host)",
        CONNECT_TIMEOUT.as_secs()
    )
}

/// Exponential backoff between connection attempts: 1 s doubling up to 30 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: u64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: Self::FIRST }
    }
}

impl Backoff {
    const FIRST: u64 = 1;
    const MAX: u64 = 30;

    /// Seconds to wait before the next attempt; each call doubles the wait after it.
    pub fn next_delay(&mut self) -> u64 {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    /// Back to the first delay, after a connection that worked.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_host_and_no_env_means_the_default_socket() {
        let e = resolve_endpoint(None, None).expect("endpoint");
        assert_eq!(
            e,
            Endpoint::Unix {
                address: "unix:///var/run/docker.sock".into(),
                path: "/var/run/docker.sock".into()
            }
        );
    }

    #[test]
    fn an_explicit_host_wins_over_docker_host() {
        let e = resolve_endpoint(Some("tcp://10.0.0.5:2375"), Some("unix:///x.sock"));
        assert_eq!(
            e,
            Ok(Endpoint::Http {
                address: "tcp://10.0.0.5:2375".into()
            })
        );
        let e = resolve_endpoint(None, Some("unix:///run/user/1000/docker.sock"));
        assert_eq!(
            e.map(|e| e.address().to_string()),
            Ok("unix:///run/user/1000/docker.sock".into())
        );
    }

    #[test]
    fn http_and_bare_paths_are_accepted_and_other_schemes_refused() {
        assert!(matches!(
            resolve_endpoint(Some("http://127.0.0.1:2375"), None),
            Ok(Endpoint::Http { .. })
        ));
        assert_eq!(
            resolve_endpoint(Some("/tmp/d.sock"), None).map(|e| e.address().to_string()),
            Ok("unix:///tmp/d.sock".into())
        );
        let err = resolve_endpoint(Some("ssh://me@host"), None).expect_err("ssh is refused");
        assert!(
            err.contains("ssh://me@host") && err.contains("DOCKER_HOST"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_socket_is_described_with_what_to_do() {
        let err = BollardError::SocketNotFoundError("/nope/docker.sock".into());
        assert_eq!(
            describe_failure("unix:///nope/docker.sock", &err),
            "cannot reach Docker at unix:///nope/docker.sock: no such socket (is the daemon \
             running? set DOCKER_HOST or --docker-host)"
        );
    }

    #[test]
    fn backoff_doubles_from_one_second_to_thirty() {
        let mut b = Backoff::default();
        let delays: Vec<u64> = (0..7).map(|_| b.next_delay()).collect();
        assert_eq!(delays, vec![1, 2, 4, 8, 16, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(), 1);
    }
}
