//! Whether a new replica may take traffic: its Docker HEALTHCHECK, or an HTTP or TCP probe sent
//! to its address, or (with neither) that it runs.
//!
//! Not for the load balancer's own checks, nor for deciding what a failed gate does: the
//! rollout reads a [`Gate`] and acts.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bollard::models::ContainerInspectResponse;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long one probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often a replica that has not passed yet is probed.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);
/// Failed probes in a row, after a replica has started, that fail the rollout (10 s at
/// [`PROBE_EVERY`]).
pub const PROBE_RETRIES: u32 = 20;

/// A readiness probe given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Probe {
    /// `http://:PORT/PATH`: a GET answered with 2xx or 3xx passes.
    Http { port: u16, path: String },
    /// `tcp://:PORT`: a connection accepted passes.
    Tcp { port: u16 },
}

impl Probe {
    /// `http://:8080/healthz` or `tcp://:5432`. The host is left out: each replica is probed
    /// at its own address.
    pub fn parse(text: &str) -> Result<Probe, String> {
        let shape = "write it as http://:PORT/PATH or tcp://:PORT (the host is each replica's \
                     own address)";
        let (scheme, rest) = text
            .split_once("://")
            .ok_or_else(|| format!("probe {text:?}: {shape}"))?;
        let rest = rest
            .strip_prefix(':')
            .ok_or_else(|| format!("probe {text:?}: {shape}"))?;
        let (port, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("probe {text:?}: {port:?} is not a port (1-65535)"))?;
        match scheme {
            "http" => {
                let path = if path.is_empty() { "/" } else { path };
                if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                    return Err(format!(
                        "probe {text:?}: the path holds a space or a control character"
                    ));
                }
                Ok(Probe::Http {
                    port,
                    path: path.to_string(),
                })
            }
            "tcp" if path.is_empty() || path == "/" => Ok(Probe::Tcp { port }),
            "tcp" => Err(format!("probe {text:?}: a TCP probe has no path")),
            other => Err(format!("probe {text:?}: unknown scheme {other:?}; {shape}")),
        }
    }

    /// The port probed, which is also the port a load balancer sends traffic to when no
    /// other is given.
    pub fn port(&self) -> u16 {
        match self {
            Probe::Http { port, .. } | Probe::Tcp { port } => *port,
        }
    }

    /// Probes the replica at `ip` once; the error says what failed.
    pub async fn check(&self, ip: IpAddr) -> Result<(), String> {
        let address = SocketAddr::new(ip, self.port());
        let attempt = async {
            let mut stream = TcpStream::connect(address)
                .await
                .map_err(|e| format!("connecting to {address} failed: {e}"))?;
            let Probe::Http { path, .. } = self else {
                return Ok(());
            };
            let request =
                format!("GET {path} HTTP/1.0\r\nHost: {address}\r\nConnection: close\r\n\r\n");
            stream
                .write_all(request.as_bytes())
                .await
                .map_err(|e| format!("sending to {address} failed: {e}"))?;
            let mut head = vec![0u8; 256];
            let mut filled = 0;
            while filled < head.len() && !head[..filled].contains(&b'\n') {
                let n = stream
                    .read(&mut head[filled..])
                    .await
                    .map_err(|e| format!("reading from {address} failed: {e}"))?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            let line = String::from_utf8_lossy(&head[..filled]);
            let status = status_code(line.lines().next().unwrap_or(""));
            match status {
                Some(code) if (200..400).contains(&code) => Ok(()),
                Some(code) => Err(format!("GET http://{address}{path} answered {code}")),
                None => Err(format!(
                    "GET http://{address}{path} gave no HTTP status line"
                )),
            }
        };
        match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "{address} did not answer within {} ms",
                PROBE_TIMEOUT.as_millis()
            )),
        }
    }
}

/// The status code of an HTTP status line such as `HTTP/1.1 200 OK`.
fn status_code(line: &str) -> Option<u16> {
    let mut parts = line.split_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/") {
        return None;
    }
    parts.next()?.parse().ok()
}

/// What a container's state says about its readiness, before any probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Not ready yet: starting, or its health check has not passed.
    Waiting(String),
    /// Ready by Docker's word: healthy, or running without a health check.
    Passed,
    /// It will not become ready: exited, or unhealthy past its health check's retries.
    Failed(String),
}

/// Whether the container has a health check of its own that Docker runs.
pub fn has_healthcheck(inspect: &ContainerInspectResponse) -> bool {
    let test = inspect
        .config
        .as_ref()
        .and_then(|c| c.healthcheck.as_ref())
        .and_then(|h| h.test.as_ref());
    match test {
        Some(test) => !test.is_empty() && test.first().map(String::as_str) != Some("NONE"),
        None => false,
    }
}

/// The gate of one container from its inspect; `probed` says a probe decides instead of a
/// plain "running" when it has no health check.
pub fn gate(inspect: &ContainerInspectResponse, probed: bool) -> Gate {
    let name = inspect
        .name
        .as_deref()
        .unwrap_or_default()
        .trim_start_matches('/');
    let Some(state) = inspect.state.as_ref() else {
        return Gate::Waiting(format!("{name}: no state yet"));
    };
    if state.running != Some(true) {
        let status = state
            .status
            .map(|s| s.to_string())
            .unwrap_or_else(|| "unknown".to_string());
        if status == "created" {
            return Gate::Waiting(format!("{name} is created, not started yet"));
        }
        let code = state.exit_code.unwrap_or(0);
        let error = state.error.as_deref().filter(|e| !e.is_empty());
        return Gate::Failed(match error {
            Some(error) => format!("{name} is {status} (exit code {code}): {error}"),
            None => format!("{name} is {status} (exit code {code})"),
        });
    }
    if has_healthcheck(inspect) {
        let health = state.health.as_ref();
        let status = health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .unwrap_or_default();
        return match status.as_str() {
            "healthy" => Gate::Passed,
            "unhealthy" => {
                let last = health
                    .and_then(|h| h.log.as_ref())
                    .and_then(|log| log.last())
                    .and_then(|entry| entry.output.as_deref())
                    .map(|out| crate::text::sanitize_plain(out.trim()))
                    .filter(|out| !out.is_empty());
                Gate::Failed(match last {
                    Some(out) => format!("{name} is unhealthy: its health check said {out:?}"),
                    None => format!("{name} is unhealthy: its health check failed"),
                })
            }
            _ => Gate::Waiting(format!("{name}: health check starting")),
        };
    }
    if probed {
        Gate::Waiting(format!("{name}: probing"))
    } else {
        Gate::Passed
    }
}

/// The address other hosts and the load balancer reach a replica at: its IP on its first
/// network by name (the primary one when it has several is the one named by its network mode).
pub fn replica_ip(inspect: &ContainerInspectResponse) -> Option<IpAddr> {
    let mode = inspect
        .host_config
        .as_ref()
        .and_then(|h| h.network_mode.clone())
        .unwrap_or_default();
    let networks = inspect.network_settings.as_ref()?.networks.as_ref()?;
    let mut candidates: Vec<(bool, &String, IpAddr)> = networks
        .iter()
        .filter_map(|(name, ep)| {
            let ip = ep.ip_address.as_deref()?.parse().ok()?;
            Some((*name != mode, name, ip))
        })
        .collect();
    candidates.sort();
    candidates.first().map(|(_, _, ip)| *ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_parse_and_bad_ones_say_how_to_write_them() {
        assert_eq!(
            Probe::parse("http://:8080/healthz").unwrap(),
            Probe::Http {
                port: 8080,
                path: "/healthz".into()
            }
        );
        assert_eq!(
            Probe::parse("http://:80").unwrap(),
            Probe::Http {
                port: 80,
                path: "/".into()
            }
        );
        assert_eq!(
            Probe::parse("tcp://:5432").unwrap(),
            Probe::Tcp { port: 5432 }
        );
        for bad in [
            "http://web:80/",
            "http://:0/",
            "http://:99999/",
            "ftp://:21",
            "tcp://:1/x",
            ":80",
            "http://:80/a b",
        ] {
            let err = Probe::parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn status_lines_give_their_code() {
        assert_eq!(status_code("HTTP/1.1 200 OK"), Some(200));
        assert_eq!(status_code("HTTP/1.0 503 Service Unavailable"), Some(503));
        assert_eq!(status_code("SSH-2.0-OpenSSH"), None);
        assert_eq!(status_code(""), None);
    }

    fn inspect(
        state: serde_json::Value,
        healthcheck: Option<serde_json::Value>,
    ) -> ContainerInspectResponse {
        let mut value = serde_json::json!({
            "Name": "/web-4",
            "State": state,
            "Config": {},
            "NetworkSettings": {"Networks": {
                "shop_default": {"IPAddress": "172.20.0.5"},
                "bridge": {"IPAddress": "172.17.0.9"}
            }},
            "HostConfig": {"NetworkMode": "shop_default"}
        });
        if let Some(hc) = healthcheck {
            value["Config"]["Healthcheck"] = hc;
        }
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn the_gate_follows_docker_health_and_falls_back_to_running() {
        let hc = Some(serde_json::json!({"Test": ["CMD", "true"]}));
        let healthy = inspect(
            serde_json::json!({"Running": true, "Status": "running", "Health": {"Status": "healthy"}}),
            hc.clone(),
        );
        assert_eq!(gate(&healthy, true), Gate::Passed);
        let starting = inspect(
            serde_json::json!({"Running": true, "Status": "running", "Health": {"Status": "starting"}}),
            hc.clone(),
        );
        assert!(matches!(gate(&starting, false), Gate::Waiting(_)));
        let unhealthy = inspect(
            serde_json::json!({"Running": true, "Status": "running", "Health": {
                "Status": "unhealthy", "Log": [{"Output": "boom\u{1b}[2J\n"}]}}),
            hc,
        );
        let Gate::Failed(why) = gate(&unhealthy, false) else {
            panic!("unhealthy must fail");
        };
        assert!(
            why.contains("web-4 is unhealthy") && why.contains("boom"),
            "{why}"
        );
        assert!(!why.contains('\u{1b}'), "{why}");

        let plain = inspect(
            serde_json::json!({"Running": true, "Status": "running"}),
            None,
        );
        assert_eq!(gate(&plain, false), Gate::Passed);
        assert!(matches!(gate(&plain, true), Gate::Waiting(_)));
        let none = Some(serde_json::json!({"Test": ["NONE"]}));
        let disabled = inspect(
            serde_json::json!({"Running": true, "Status": "running"}),
            none,
        );
        assert_eq!(gate(&disabled, false), Gate::Passed);

        let exited = inspect(
            serde_json::json!({"Running": false, "Status": "exited", "ExitCode": 3}),
            None,
        );
        assert_eq!(
            gate(&exited, false),
            Gate::Failed("web-4 is exited (exit code 3)".into())
        );
        let created = inspect(
            serde_json::json!({"Running": false, "Status": "created"}),
            None,
        );
        assert!(matches!(gate(&created, false), Gate::Waiting(_)));
    }

    #[test]
    fn the_replica_address_is_on_its_primary_network() {
        let plain = inspect(serde_json::json!({"Running": true}), None);
        assert_eq!(replica_ip(&plain), Some("172.20.0.5".parse().unwrap()));
    }

    #[tokio::test]
    async fn an_http_probe_passes_on_2xx_and_fails_on_5xx_and_silence() {
        use tokio::net::TcpListener;
        async fn serve(answer: &'static str) -> u16 {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let port = listener.local_addr().unwrap().port();
            tokio::spawn(async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let mut buf = [0u8; 512];
                    let _ = stream.read(&mut buf).await;
                    if !answer.is_empty() {
                        let _ = stream.write_all(answer.as_bytes()).await;
                    } else {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                    }
                }
            });
            port
        }
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let ok = serve("HTTP/1.1 204 No Content\r\n\r\n").await;
        let probe = Probe::Http {
            port: ok,
            path: "/".into(),
        };
        probe.check(loopback).await.unwrap();
        Probe::Tcp { port: ok }.check(loopback).await.unwrap();
        let bad = serve("HTTP/1.1 503 Busy\r\n\r\n").await;
        let err = Probe::Http {
            port: bad,
            path: "/h".into(),
        }
        .check(loopback)
        .await
        .unwrap_err();
        assert!(err.contains("answered 503"), "{err}");
        let silent = serve("").await;
        let err = Probe::Http {
            port: silent,
            path: "/".into(),
        }
        .check(loopback)
        .await
        .unwrap_err();
        assert!(err.contains("did not answer"), "{err}");
    }
}
