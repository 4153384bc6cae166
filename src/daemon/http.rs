//! A small HTTP/1.1 listener for the daemon's `/metrics` and `/healthz`.
//!
//! It reads one request head per connection (capped in size and time), answers `GET` and
//! `HEAD` through a synchronous handler, and closes the connection. It is for a scraper and a
//! health probe on a trusted network, not a general web server: no keep-alive, no request
//! bodies, no chunked encoding, no TLS, no percent-decoding of paths.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, timeout, timeout_at};

use super::exposition::METRICS_CONTENT_TYPE;

/// The `Content-Type` of the plain-text answers (`/healthz`, errors).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

/// What a handler answers for one path; the listener adds the status line and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// An HTTP status code, e.g. 200, 404 or 503.
    pub status: u16,
    /// Sent as `Content-Type`.
    pub content_type: &'static str,
    /// Sent for `GET`; for `HEAD` only its length is.
    pub body: String,
}

/// The function that answers a `GET` or `HEAD` for a path (the query string removed).
pub type Handler = Arc<dyn Fn(&str) -> Response + Send + Sync>;

/// The daemon's routes: `/metrics` is 200 with `metrics()`, `/healthz` is `health()`'s status
/// and body, anything else 404. Only the route taken calls its function.
pub fn route(
    path: &str,
    metrics: impl FnOnce() -> String,
    health: impl FnOnce() -> (u16, String),
) -> Response {
    match path {
        "/metrics" => Response {
            status: 200,
            content_type: METRICS_CONTENT_TYPE,
            body: metrics(),
        },
        "/healthz" => {
            let (status, body) = health();
            Response {
                status,
                content_type: TEXT_CONTENT_TYPE,
                body,
            }
        }
        _ => plain(404, "not found: try /metrics or /healthz\n"),
    }
}

/// Accept connections on `listener` and answer each in its own task, until `shutdown` is (or
/// becomes) true or its sender is dropped.
///
/// Connections still open then get 500 ms to finish before they are cut, so a silent or slow
/// client never holds the daemon's exit. At most 256 connections are open at once; one more
/// is closed unanswered.
pub async fn serve(listener: TcpListener, handler: Handler, shutdown: watch::Receiver<bool>) {
    serve_with(listener, handler, shutdown, Limits::default()).await;
}

/// How much a connection may send, how long it may take, and how long shutdown waits.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// The longest request head read; a longer one is answered 431.
    max_head: usize,
    /// The whole head must arrive within this; a client that takes longer is dropped.
    head_timeout: Duration,
    /// How long writing the answer may take.
    write_timeout: Duration,
    /// How long open connections may run on after shutdown.
    shutdown_grace: Duration,
    /// Connections answered at once; more are closed unanswered, so a flood of idle clients
    /// cannot take all the daemon's file descriptors.
    max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_head: 8 * 1024,
            head_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(5),
            shutdown_grace: Duration::from_millis(500),
            max_connections: 256,
        }
    }
}

/// [`serve`] with its limits given, so tests can shorten them.
async fn serve_with(
    listener: TcpListener,
    handler: Handler,
    mut shutdown: watch::Receiver<bool>,
    limits: Limits,
) {
    let mut connections = JoinSet::new();
    while !*shutdown.borrow_and_update() {
        tokio::select! {
            biased;
            // A dropped sender can never say "stop", so it means stop.
            changed = shutdown.changed() => if changed.is_err() { break },
            Some(joined) = connections.join_next(), if !connections.is_empty() => {
                if let Err(error) = joined {
                    tracing::warn!(%error, "an HTTP connection's task failed");
                }
            }
            accepted = listener.accept() => match accepted {
                Ok(_) if connections.len() >= limits.max_connections => {
                    tracing::debug!("closing an HTTP connection: too many open");
                }
                Ok((stream, _peer)) => {
                    connections.spawn(answer(stream, handler.clone(), limits));
                }
                Err(error) => accept_failed(error).await,
            },
        }
    }
    drop(listener);
    finish(connections, limits.shutdown_grace).await;
}

/// Log a failed accept and pause, so a lack of file descriptors does not spin the loop.
async fn accept_failed(error: std::io::Error) {
    tracing::warn!(%error, "cannot accept an HTTP connection; retrying in 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

/// Let the open connections finish within `grace`, then cut the rest.
async fn finish(mut connections: JoinSet<()>, grace: Duration) {
    let drained = timeout(grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(
            open = connections.len(),
            "cutting HTTP connections still open at shutdown"
        );
        connections.shutdown().await;
    }
}

/// One connection: read the head, answer it, close.
async fn answer(mut stream: TcpStream, handler: Handler, limits: Limits) {
    let deadline = Instant::now() + limits.head_timeout;
    let reply = match timeout_at(deadline, read_head(&mut stream, limits.max_head)).await {
        Err(_elapsed) => return,
        Ok(Head::Closed) => return,
        Ok(Head::TooLarge) => Reply::error(
            431,
            &format!("request head larger than {} bytes\n", limits.max_head),
        ),
        Ok(Head::Complete(bytes)) => respond(&bytes, &handler),
    };
    let _ = timeout(limits.write_timeout, write_reply(&mut stream, &reply)).await;
    linger(&mut stream).await;
}

/// What reading a request head came to.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// The head up to its blank line, or a first line that is already malformed, or all
    /// that came before the client stopped sending.
    Complete(Vec<u8>),
    /// The head runs past the cap.
    TooLarge,
    /// The client closed without sending anything.
    Closed,
}

/// Read until the blank line that ends a head, at most `cap` bytes.
///
/// A first line that is complete and malformed ends the read early, so garbage is answered
/// at once rather than after the timeout.
async fn read_head(stream: &mut (impl AsyncRead + Unpin), cap: usize) -> Head {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            Err(_) if head.is_empty() => return Head::Closed,
            Err(_) => 0,
        };
        if n == 0 {
            return if head.is_empty() {
                Head::Closed
            } else {
                Head::Complete(head)
            };
        }
        head.extend_from_slice(&chunk[..n]);
        if let Some(end) = head_end(&head) {
            if end > cap {
                return Head::TooLarge;
            }
            head.truncate(end);
            return Head::Complete(head);
        }
        if first_line(&head).is_some_and(|line| parse_request_line(line).is_none()) {
            return Head::Complete(head);
        }
        if head.len() > cap {
            return Head::TooLarge;
        }
    }
}

/// Where the head ends (after `\r\n\r\n`, or a bare `\n\n`), if it has.
fn head_end(bytes: &[u8]) -> Option<usize> {
    let crlf = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4);
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    match (crlf, lf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The request line without its line ending, once it has fully arrived.
fn first_line(bytes: &[u8]) -> Option<&[u8]> {
    let end = bytes.iter().position(|&b| b == b'\n')?;
    let line = &bytes[..end];
    Some(line.strip_suffix(b"\r").unwrap_or(line))
}

/// A request line's method and path (the query string removed).
#[derive(Debug, PartialEq, Eq)]
struct RequestLine<'a> {
    method: &'a str,
    path: &'a str,
}

/// Split `METHOD TARGET HTTP/1.x`; `None` for anything else.
fn parse_request_line(line: &[u8]) -> Option<RequestLine<'_>> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return None;
    }
    if !matches!(version, "HTTP/1.0" | "HTTP/1.1") {
        return None;
    }
    let path = target_path(target)?;
    Some(RequestLine { method, path })
}

/// The path of an origin-form (`/metrics?x`) or absolute-form (`http://h/metrics`) target.
fn target_path(target: &str) -> Option<&str> {
    let path = if target.starts_with('/') {
        target
    } else {
        let rest = target
            .strip_prefix("http://")
            .or_else(|| target.strip_prefix("https://"))?;
        rest.find('/').map_or("/", |slash| &rest[slash..])
    };
    if path.bytes().any(|b| b.is_ascii_control()) {
        return None;
    }
    let end = path.find(['?', '#']).unwrap_or(path.len());
    Some(&path[..end])
}

/// Whether `b` may appear in a method name (an RFC 9110 token).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether every header line of the head starts with a name (a token) and a colon; the
/// values may hold any bytes but line breaks.
fn headers_well_formed(head: &[u8]) -> bool {
    head.split(|&b| b == b'\n')
        .skip(1)
        .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
        .take_while(|line| !line.is_empty())
        .all(|line| {
            let colon = line.iter().position(|&b| b == b':');
            colon.is_some_and(|at| at > 0 && line[..at].iter().all(|&b| is_token_byte(b)))
        })
}

/// What goes back on the wire.
#[derive(Debug)]
struct Reply {
    response: Response,
    /// `HEAD`: the headers only.
    head_only: bool,
    /// Sent as `Allow` (405 only).
    allow: Option<&'static str>,
}

impl Reply {
    fn error(status: u16, body: &str) -> Reply {
        Reply {
            response: plain(status, body),
            head_only: false,
            allow: None,
        }
    }
}

/// The reply to a complete request head.
fn respond(head: &[u8], handler: &Handler) -> Reply {
    let Some(line) = first_line(head).and_then(parse_request_line) else {
        return Reply::error(400, "bad request: expected METHOD /path HTTP/1.1\n");
    };
    if !headers_well_formed(head) {
        return Reply::error(400, "bad request: a header line has no name and colon\n");
    }
    match line.method {
        "GET" | "HEAD" => Reply {
            response: handler(line.path),
            head_only: line.method == "HEAD",
            allow: None,
        },
        _ => Reply {
            response: plain(405, "method not allowed: use GET or HEAD\n"),
            head_only: false,
            allow: Some("GET, HEAD"),
        },
    }
}

/// A plain-text response.
fn plain(status: u16, body: &str) -> Response {
    Response {
        status,
        content_type: TEXT_CONTENT_TYPE,
        body: body.to_string(),
    }
}

/// The status line and headers of `reply`, then its body unless it answers a `HEAD`.
fn encode(reply: &Reply) -> Vec<u8> {
    let response = &reply.response;
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        response.status,
        reason(response.status),
        response.content_type,
        response.body.len(),
    );
    if let Some(allow) = reply.allow {
        head.push_str(&format!("Allow: {allow}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    if !reply.head_only {
        bytes.extend_from_slice(response.body.as_bytes());
    }
    bytes
}

async fn write_reply(stream: &mut (impl AsyncWrite + Unpin), reply: &Reply) -> std::io::Result<()> {
    stream.write_all(&encode(reply)).await?;
    stream.flush().await?;
    stream.shutdown().await
}

/// After answering, read and drop what the client still sends (briefly), so closing with
/// unread bytes does not reset the connection before the client has read the answer.
async fn linger(stream: &mut TcpStream) {
    let mut sink = [0u8; 4096];
    let mut left: usize = 64 * 1024;
    let _ = timeout(Duration::from_millis(500), async {
        while left > 0 {
            match stream.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// The reason phrase for the status codes this listener and the daemon's routes use.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Mutex;

    use tokio::task::JoinHandle;

    use super::*;

    const METRICS: &str =
        "# TYPE pilothouse_rule_load_errors gauge\npilothouse_rule_load_errors 0\n";

    /// A running listener on a loopback port, answering with [`route`].
    struct Server {
        addr: SocketAddr,
        stop: watch::Sender<bool>,
        task: JoinHandle<()>,
        paths: Arc<Mutex<Vec<String>>>,
    }

    async fn start(limits: Limits) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let paths = Arc::new(Mutex::new(Vec::new()));
        let seen = paths.clone();
        let handler: Handler = Arc::new(move |path: &str| {
            seen.lock().unwrap().push(path.to_string());
            route(
                path,
                || METRICS.to_string(),
                || (503, "docker local: FAILING refused\n".to_string()),
            )
        });
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(serve_with(listener, handler, shutdown, limits));
        Server {
            addr,
            stop,
            task,
            paths,
        }
    }

    /// Send `request` and read the whole answer, within 2 s.
    async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(request).await.unwrap();
        let mut answer = Vec::new();
        timeout(Duration::from_secs(2), stream.read_to_end(&mut answer))
            .await
            .expect("the server answered within 2 s")
            .unwrap();
        String::from_utf8(answer).unwrap()
    }

    fn status_line(answer: &str) -> &str {
        answer.split("\r\n").next().unwrap()
    }

    fn body(answer: &str) -> &str {
        answer.split_once("\r\n\r\n").unwrap().1
    }

    #[tokio::test]
    async fn get_metrics_answers_with_the_exposition_and_its_headers() {
        let server = start(Limits::default()).await;
        let answer = exchange(server.addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert_eq!(status_line(&answer), "HTTP/1.1 200 OK");
        assert!(
            answer.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            "{answer}"
        );
        assert!(answer.contains(&format!("\r\nContent-Length: {}\r\n", METRICS.len())));
        assert!(answer.contains("\r\nConnection: close\r\n"));
        assert_eq!(body(&answer), METRICS);
    }

    #[tokio::test]
    async fn the_handler_gets_the_path_without_the_query_string() {
        let server = start(Limits::default()).await;
        let answer = exchange(server.addr, b"GET /metrics?name[]=x&y=1 HTTP/1.0\r\n\r\n").await;
        assert_eq!(status_line(&answer), "HTTP/1.1 200 OK");
        let answer = exchange(
            server.addr,
            b"GET http://127.0.0.1/healthz?v HTTP/1.1\r\n\r\n",
        )
        .await;
        assert_eq!(status_line(&answer), "HTTP/1.1 503 Service Unavailable");
        assert_eq!(*server.paths.lock().unwrap(), ["/metrics", "/healthz"]);
    }

    #[tokio::test]
    async fn head_answers_with_the_length_and_no_body() {
        let server = start(Limits::default()).await;
        let answer = exchange(server.addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status_line(&answer), "HTTP/1.1 200 OK");
        assert!(answer.contains(&format!("\r\nContent-Length: {}\r\n", METRICS.len())));
        assert_eq!(body(&answer), "");
    }

    #[tokio::test]
    async fn healthz_passes_on_the_health_status_and_body() {
        let server = start(Limits::default()).await;
        let answer = exchange(server.addr, b"GET /healthz HTTP/1.1\r\n\r\n").await;
        assert_eq!(status_line(&answer), "HTTP/1.1 503 Service Unavailable");
        assert!(answer.contains("\r\nContent-Type: text/plain; charset=utf-8\r\n"));
        assert_eq!(body(&answer), "docker local: FAILING refused\n");
    }

    #[tokio::test]
    async fn an_unknown_path_is_404() {
        let server = start(Limits::default()).await;
        let answer = exchange(server.addr, b"GET /metricsx HTTP/1.1\r\n\r\n").await;
        assert_eq!(status_line(&answer), "HTTP/1.1 404 Not Found");
    }

    #[tokio::test]
    async fn another_method_is_405_naming_the_allowed_ones() {
        let server = start(Limits::default()).await;
        let answer = exchange(server.addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status_line(&answer), "HTTP/1.1 405 Method Not Allowed");
        assert!(answer.contains("\r\nAllow: GET, HEAD\r\n"), "{answer}");
        assert!(server.paths.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn garbage_is_400_at_once_without_reaching_the_handler() {
        let server = start(Limits::default()).await;
        for garbage in [
            &b"\x00\xff\xfe\x16\x03\x01 binary\r\n"[..],
            b"GET /metrics\r\n\r\n",
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/2.0\r\n\r\n",
            b"G(T /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n",
            b"\xc3\x28 / HTTP/1.1\r\n\r\n",
        ] {
            let answer = exchange(server.addr, garbage).await;
            assert_eq!(
                status_line(&answer),
                "HTTP/1.1 400 Bad Request",
                "{:?}",
                String::from_utf8_lossy(garbage)
            );
        }
        assert!(server.paths.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_head_cut_short_by_the_client_is_400() {
        let server = start(Limits::default()).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(b"GET /metr").await.unwrap();
        stream.shutdown().await.unwrap();
        let mut answer = String::new();
        timeout(Duration::from_secs(2), stream.read_to_string(&mut answer))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(status_line(&answer), "HTTP/1.1 400 Bad Request");
    }

    #[tokio::test]
    async fn an_oversize_head_is_431() {
        let server = start(Limits::default()).await;
        let mut request = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
        request.extend(std::iter::repeat_n(b'a', 9 * 1024));
        let answer = exchange(server.addr, &request).await;
        assert_eq!(
            status_line(&answer),
            "HTTP/1.1 431 Request Header Fields Too Large"
        );
    }

    #[tokio::test]
    async fn a_head_just_under_the_cap_is_answered() {
        let server = start(Limits::default()).await;
        let mut request = b"GET /metrics HTTP/1.1\r\nX-Big: ".to_vec();
        request.extend(std::iter::repeat_n(b'a', 8 * 1024 - request.len() - 4));
        request.extend_from_slice(b"\r\n\r\n");
        assert_eq!(request.len(), 8 * 1024);
        let answer = exchange(server.addr, &request).await;
        assert_eq!(status_line(&answer), "HTTP/1.1 200 OK");
    }

    #[tokio::test]
    async fn a_connection_past_the_cap_is_closed_unanswered_until_one_ends() {
        let limits = Limits {
            max_connections: 1,
            ..Limits::default()
        };
        let server = start(limits).await;
        let silent = TcpStream::connect(server.addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;

        let mut extra = TcpStream::connect(server.addr).await.unwrap();
        let mut answer = Vec::new();
        timeout(Duration::from_secs(1), extra.read_to_end(&mut answer))
            .await
            .expect("the extra connection was closed")
            .unwrap();
        assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));

        drop(silent);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let answer = exchange(server.addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status_line(&answer), "HTTP/1.1 200 OK");
    }

    #[tokio::test]
    async fn a_silent_client_does_not_block_another_request() {
        let server = start(Limits::default()).await;
        let _silent = TcpStream::connect(server.addr).await.unwrap();
        let answer = timeout(
            Duration::from_secs(1),
            exchange(server.addr, b"GET /metrics HTTP/1.1\r\n\r\n"),
        )
        .await
        .expect("answered while a silent client is connected");
        assert_eq!(status_line(&answer), "HTTP/1.1 200 OK");
    }

    #[tokio::test]
    async fn a_client_too_slow_with_its_head_is_dropped_at_the_timeout() {
        let limits = Limits {
            head_timeout: Duration::from_millis(200),
            ..Limits::default()
        };
        let server = start(limits).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let read = timeout(Duration::from_secs(2), stream.read_to_end(&mut answer)).await;
        assert!(read.is_ok(), "the connection was closed");
        assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    }

    #[tokio::test]
    async fn shutdown_returns_within_a_second_with_a_silent_client_connected() {
        let server = start(Limits::default()).await;
        let mut silent = TcpStream::connect(server.addr).await.unwrap();
        let answer = exchange(server.addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
        assert_eq!(status_line(&answer), "HTTP/1.1 200 OK");

        let asked = std::time::Instant::now();
        server.stop.send(true).unwrap();
        timeout(Duration::from_secs(1), server.task)
            .await
            .expect("serve returned within 1 s")
            .unwrap();
        assert!(asked.elapsed() < Duration::from_secs(1));

        let mut rest = Vec::new();
        let read = timeout(Duration::from_secs(1), silent.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "the silent client's connection was closed");
        assert!(
            TcpStream::connect(server.addr).await.is_err(),
            "still listening"
        );
    }

    #[tokio::test]
    async fn serve_returns_at_once_when_shutdown_was_already_asked_or_its_sender_is_gone() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (_stop, shutdown) = watch::channel(true);
        let handler: Handler = Arc::new(|_: &str| plain(200, ""));
        timeout(
            Duration::from_secs(1),
            serve(listener, handler.clone(), shutdown),
        )
        .await
        .expect("returned for a true shutdown");

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (stop, shutdown) = watch::channel(false);
        drop(stop);
        timeout(Duration::from_secs(1), serve(listener, handler, shutdown))
            .await
            .expect("returned for a dropped sender");
    }

    #[test]
    fn route_maps_metrics_healthz_and_everything_else() {
        let metrics = route("/metrics", || "m 1\n".into(), || unreachable!());
        assert_eq!(
            metrics,
            Response {
                status: 200,
                content_type: "text/plain; version=0.0.4; charset=utf-8",
                body: "m 1\n".into(),
            }
        );
        let health = route("/healthz", || unreachable!(), || (200, "ok\n".into()));
        assert_eq!((health.status, health.body.as_str()), (200, "ok\n"));
        assert_eq!(health.content_type, TEXT_CONTENT_TYPE);
        for other in ["/", "/metrics/", "/healthz/x", ""] {
            let response = route(other, || unreachable!(), || unreachable!());
            assert_eq!(response.status, 404, "{other}");
        }
    }

    #[test]
    fn request_lines_parse_only_in_their_one_shape() {
        assert_eq!(
            parse_request_line(b"GET /metrics?a=b HTTP/1.1"),
            Some(RequestLine {
                method: "GET",
                path: "/metrics"
            })
        );
        assert_eq!(
            parse_request_line(b"GET http://h:9/x#f HTTP/1.0").map(|l| l.path),
            Some("/x")
        );
        assert_eq!(
            parse_request_line(b"GET http://h HTTP/1.0").map(|l| l.path),
            Some("/")
        );
        for bad in [
            &b""[..],
            b"GET",
            b"GET /",
            b"GET / HTTP/1.1 extra",
            b"GET / http/1.1",
            b"GET * HTTP/1.1",
            b"GET /\x01 HTTP/1.1",
            b"GET ftp://h/ HTTP/1.1",
        ] {
            assert!(
                parse_request_line(bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
