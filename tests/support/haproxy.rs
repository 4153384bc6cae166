//! Helpers for tests against a real HAProxy: an `haproxy` process of the test's own, with a
//! frontend on a free loopback port in front of an empty `backend web`, its runtime API on a
//! unix socket in a temporary directory and on a loopback TCP port; tiny HTTP servers to add to
//! it as replicas; and a plain HTTP/1.1 GET through the frontend.
//!
//! Not for mocking HAProxy: commands go to Debian's `haproxy` (2.6 in CI). Everything listens
//! on 127.0.0.1 only.
//!
//! HAProxy runs in the foreground (`-db`) under a small `sh` watchdog holding a pipe from the
//! test process: when the pipe closes (the [`TestHaproxy`] is dropped, or the test process ends
//! in any way) the watchdog kills HAProxy.

// Each test binary that includes this module uses a different part of it.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Where Debian installs HAProxy.
pub const HAPROXY_BINARY: &str = "/usr/sbin/haproxy";

/// The backend every test HAProxy has, with no servers at start.
pub const BACKEND: &str = "web";

/// A backend whose balance algorithm (`static-rr`) cannot take servers at run time.
pub const STATIC_BACKEND: &str = "fixed";

/// How long a test HAProxy may take to answer on its socket.
const START_WITHIN: Duration = Duration::from_secs(10);

/// An `haproxy` process of this test's own.
pub struct TestHaproxy {
    dir: tempfile::TempDir,
    frontend: SocketAddr,
    runtime_tcp: SocketAddr,
    /// The watchdog shell; HAProxy runs as its child.
    watchdog: Option<Child>,
    /// The pipe whose closing tells the watchdog to kill HAProxy.
    lifeline: Option<ChildStdin>,
}

/// A started HAProxy answering on its runtime socket; or `None` (with the reason printed) when
/// `/usr/sbin/haproxy` is not installed. With `PILOTHOUSE_REQUIRE_SERVICES=1` (CI) a missing
/// binary fails the test instead.
pub async fn haproxy_or_skip() -> Option<TestHaproxy> {
    if Path::new(HAPROXY_BINARY).is_file() {
        return Some(TestHaproxy::start().await);
    }
    let reason = format!("no {HAPROXY_BINARY} (install the Debian package `haproxy`)");
    if std::env::var("PILOTHOUSE_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("HAProxy required (PILOTHOUSE_REQUIRE_SERVICES=1): {reason}");
    }
    eprintln!("skipped: {reason}");
    None
}

impl TestHaproxy {
    async fn start() -> TestHaproxy {
        let dir = tempfile::Builder::new()
            .prefix("pilothouse-haproxy-")
            .tempdir()
            .expect("a temporary directory for HAProxy");
        let mut haproxy = TestHaproxy {
            dir,
            frontend: free_loopback_port(),
            runtime_tcp: free_loopback_port(),
            watchdog: None,
            lifeline: None,
        };

        // A free port can be taken between finding and binding it; try a few.
        for _attempt in 0..3 {
            haproxy.spawn();
            match haproxy.wait_until_answering().await {
                Ok(()) => return haproxy,
                Err(why) if why.contains("cannot bind") => {
                    haproxy.stop();
                    haproxy.frontend = free_loopback_port();
                    haproxy.runtime_tcp = free_loopback_port();
                }
                Err(why) => panic!("HAProxy did not start: {why}"),
            }
        }
        panic!("HAProxy found no free loopback ports in 3 attempts");
    }

    /// The runtime API's unix socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    /// The runtime API's TCP socket on loopback.
    pub fn runtime_tcp(&self) -> SocketAddr {
        self.runtime_tcp
    }

    /// The frontend that sends every request to [`BACKEND`].
    pub fn frontend(&self) -> SocketAddr {
        self.frontend
    }

    /// What HAProxy has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("haproxy.log")).unwrap_or_default()
    }

    /// Writes the config and starts HAProxy under the watchdog shell.
    fn spawn(&mut self) {
        let config = self.dir.path().join("haproxy.cfg");
        let text = config_text(&self.socket(), self.runtime_tcp, self.frontend);
        std::fs::write(&config, text).expect("write the HAProxy config");
        let log = std::fs::File::create(self.dir.path().join("haproxy.log")).expect("log file");
        let log_err = log.try_clone().expect("clone the log file");
        // `$0` is HAProxy and `$@` its arguments; `read` returns when the pipe closes.
        let watchdog = r#""$0" "$@" </dev/null & server=$!
read -r _ || true
kill -KILL "$server" 2>/dev/null
wait "$server" 2>/dev/null
exit 0"#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(watchdog)
            .arg(HAPROXY_BINARY)
            .arg("-db")
            .arg("-f")
            .arg(&config)
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .expect("start haproxy under sh");
        self.lifeline = child.stdin.take();
        self.watchdog = Some(child);
    }

    /// Polls the unix socket with `show info`; on failure says why, with HAProxy's log.
    async fn wait_until_answering(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_WITHIN;
        while Instant::now() < deadline {
            let log = self.log();
            if log.contains("cannot bind") {
                return Err(format!("its port was taken\n{log}"));
            }
            if let Some(Ok(Some(status))) = self.watchdog.as_mut().map(|w| w.try_wait()) {
                return Err(format!("it exited with {status}\n{log}"));
            }
            if show_info(&self.socket()).is_some_and(|info| info.contains("Name: HAProxy")) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "its socket did not answer within {START_WITHIN:?}\n{}",
            self.log()
        ))
    }

    /// Closes the lifeline, so the watchdog kills HAProxy, and waits for both to end.
    fn stop(&mut self) {
        drop(self.lifeline.take());
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }
}

impl Drop for TestHaproxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The config of a test HAProxy. `retries` and `option redispatch 1` are the zero-downtime
/// settings that `src/lb/haproxy.rs` documents for users.
fn config_text(socket: &Path, runtime_tcp: SocketAddr, frontend: SocketAddr) -> String {
    format!(
        "global
    stats socket {socket} mode 600 level admin
    stats socket {runtime_tcp} level admin

defaults
    mode http
    timeout connect 1s
    timeout client 5s
    timeout server 5s

frontend fe
    bind {frontend}
    default_backend {BACKEND}

backend {BACKEND}
    balance roundrobin
    option redispatch 1
    retries 2

backend {STATIC_BACKEND}
    balance static-rr
",
        socket = socket.display()
    )
}

/// `show info` over the unix socket, or `None` while nothing answers there.
fn show_info(socket: &Path) -> Option<String> {
    use std::io::{Read, Write};
    let mut stream = StdUnixStream::connect(socket).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream.write_all(b"show info\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

/// A loopback address with a port nothing listened on a moment ago.
pub fn free_loopback_port() -> SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    listener.local_addr().expect("the free port's address")
}

/// An HTTP server on a loopback port standing in for a replica: it answers every request with
/// `200` and its name as the body, after `delay`, and keeps the connection open unless the
/// request asks to close it.
pub struct TestBackend {
    pub name: String,
    address: SocketAddr,
    answered: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl TestBackend {
    /// Starts answering at once.
    pub async fn start(name: &str) -> TestBackend {
        TestBackend::start_slow(name, Duration::ZERO).await
    }

    /// Starts answering each request after `delay`.
    pub async fn start_slow(name: &str, delay: Duration) -> TestBackend {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a test backend on loopback");
        let address = listener.local_addr().expect("the backend's address");
        let answered = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(serve(listener, name.to_string(), delay, answered.clone()));
        TestBackend {
            name: name.to_string(),
            address,
            answered,
            task,
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// How many requests it has answered.
    pub fn answered(&self) -> u64 {
        self.answered.load(Ordering::SeqCst)
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, name: String, delay: Duration, answered: Arc<AtomicU64>) {
    while let Ok((stream, _)) = listener.accept().await {
        let name = name.clone();
        let answered = answered.clone();
        tokio::spawn(async move {
            let _ = answer(stream, &name, delay, &answered).await;
        });
    }
}

/// Answers the requests of one connection, keeping it open until a request asks to close it
/// or the peer does.
async fn answer(
    mut stream: TcpStream,
    name: &str,
    delay: Duration,
    answered: &AtomicU64,
) -> std::io::Result<()> {
    loop {
        let head = read_head(&mut stream).await?;
        if head.is_empty() {
            return Ok(());
        }
        let close = String::from_utf8_lossy(&head)
            .to_ascii_lowercase()
            .contains("connection: close");
        tokio::time::sleep(delay).await;
        let connection = if close { "close" } else { "keep-alive" };
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
             Connection: {connection}\r\n\r\n{name}",
            name.len()
        );
        stream.write_all(response.as_bytes()).await?;
        answered.fetch_add(1, Ordering::SeqCst);
        if close {
            return stream.shutdown().await;
        }
    }
}

/// The request line and headers, up to the blank line (at most 16 KiB).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
    }
    Ok(head)
}

/// An answer through the frontend: the status code and the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

/// `GET /` through `frontend` on a connection of its own; panics when no answer comes within
/// 10 s or it is not HTTP.
pub async fn get(frontend: SocketAddr) -> Answer {
    try_get(frontend)
        .await
        .unwrap_or_else(|why| panic!("GET through {frontend}: {why}"))
}

/// `GET /` through `frontend`, or why no HTTP answer came within 10 s.
pub async fn try_get(frontend: SocketAddr) -> Result<Answer, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(frontend).await?;
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: pilothouse-test\r\nConnection: close\r\n\r\n")
            .await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        Ok::<_, std::io::Error>(String::from_utf8_lossy(&raw).into_owned())
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .map_err(|_| "no answer within 10 s".to_string())?
        .map_err(|e| e.to_string())?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not an HTTP answer: {raw:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no status in {head:?}"))?;
    Ok(Answer {
        status,
        body: body.to_string(),
    })
}

/// A client connection to the frontend that stays open between requests, as a browser's does.
pub struct KeepAliveClient {
    stream: TcpStream,
    frontend: SocketAddr,
}

impl KeepAliveClient {
    pub async fn connect(frontend: SocketAddr) -> KeepAliveClient {
        let stream = TcpStream::connect(frontend)
            .await
            .unwrap_or_else(|e| panic!("connecting to {frontend} failed: {e}"));
        KeepAliveClient { stream, frontend }
    }

    /// `GET /` on this connection; panics unless an answer with a `Content-Length` comes
    /// within 10 s.
    pub async fn get(&mut self) -> Answer {
        let frontend = self.frontend;
        tokio::time::timeout(Duration::from_secs(10), self.exchange())
            .await
            .unwrap_or_else(|_| panic!("no answer from {frontend} within 10 s"))
            .unwrap_or_else(|why| panic!("GET through {frontend} on a kept connection: {why}"))
    }

    async fn exchange(&mut self) -> Result<Answer, String> {
        let request = b"GET / HTTP/1.1\r\nHost: pilothouse-test\r\n\r\n";
        self.stream
            .write_all(request)
            .await
            .map_err(|e| e.to_string())?;
        let mut raw = read_head(&mut self.stream)
            .await
            .map_err(|e| e.to_string())?;
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(|| format!("not an HTTP answer: {:?}", String::from_utf8_lossy(&raw)))?;
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| format!("no status in {head:?}"))?;
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .ok_or_else(|| format!("no Content-Length in {head:?}"))?;
        let mut body = raw.split_off(end + 4);
        while body.len() < length {
            let mut chunk = [0u8; 1024];
            let read = self
                .stream
                .read(&mut chunk)
                .await
                .map_err(|e| e.to_string())?;
            if read == 0 {
                return Err("the connection closed inside the body".to_string());
            }
            body.extend_from_slice(&chunk[..read]);
        }
        Ok(Answer {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}
