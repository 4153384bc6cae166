//! HAProxy through its runtime API (the "stats socket"): a replica's server is added to a
//! backend when the replica is healthy, set to drain before the replica stops, waited on until
//! its sessions end, and removed. Each command opens one connection in non-interactive mode,
//! sends one line and reads the answer until HAProxy closes the connection.
//!
//! Not for writing or reloading HAProxy's configuration, for health checks (a replica is added
//! once Pilothouse has found it healthy) or for reading traffic metrics (Prometheus does that).
//!
//! # HAProxy settings for zero-downtime
//!
//! Checked against HAProxy 2.6 in `mode http`. The runtime API must be reachable at level
//! `admin` (`stats socket /run/haproxy/admin.sock mode 660 level admin`, or a loopback TCP
//! socket); at level `operator` HAProxy answers `Permission denied` to `add server`,
//! `set server` and `del server`. Each backend Pilothouse keeps in step needs:
//!
//! ```text
//! backend web
//!     balance roundrobin        # or leastconn, random, first; or a hash with
//!                               # `hash-type consistent`
//!     option redispatch 1       # every retry goes to another server
//!     retries 2                 # so a replica that just went away costs a retry, not a 503
//! ```
//!
//! Without `option redispatch`, a request that HAProxy sends to a replica whose port has just
//! closed (stopped between two steps, or crashed) is answered 503. `balance static-rr` and
//! hashes with the default `hash-type map-based` cannot take servers at run time (HAProxy
//! answers "Backend must use a dynamic load balancing to support dynamic servers."). The
//! backend may start with no servers at all. Servers added here have no health checks of their
//! own, and they live only as long as the HAProxy process: a reload or restart of HAProxy
//! forgets them, and they must be added again.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;

/// How long one command may take, connection included, unless [`Haproxy::with_timeout`] says
/// otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often [`Haproxy::wait_idle`] and [`Haproxy::remove_server`] ask again.
const POLL_EVERY: Duration = Duration::from_millis(50);

/// At most this much of an answer goes into an error message.
const ANSWER_IN_MESSAGE: usize = 300;

/// How the runtime API is reached: a unix socket path, or TCP on an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeAddress {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl fmt::Display for RuntimeAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuntimeAddress::Unix(path) => write!(f, "unix:{}", path.display()),
            RuntimeAddress::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

/// A client of one HAProxy's runtime API.
#[derive(Debug, Clone)]
pub struct Haproxy {
    address: RuntimeAddress,
    timeout: Duration,
}

/// What went wrong talking to HAProxy; every message names the socket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LbError {
    /// The socket could not be reached or the answer did not come in time (says which socket).
    #[error("{0}")]
    Unreachable(String),
    /// HAProxy answered with an error (says the command and the answer).
    #[error("{0}")]
    Refused(String),
}

/// One server of a backend as HAProxy reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerState {
    pub name: String,
    /// The IP address, as HAProxy prints it (`127.0.0.1`, `::1`).
    pub address: String,
    pub port: u16,
    pub admin: Admin,
    /// Whether HAProxy counts the server as up (running or starting); a server in maintenance
    /// is not.
    pub up: bool,
    /// Sessions in progress on the server (`scur` of `show stat`).
    pub sessions: u64,
}

/// A server's administrative state, as set through `set server ... state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admin {
    /// Takes new requests.
    Ready,
    /// Takes no new requests; sessions in progress go on.
    Drain,
    /// Takes no traffic at all.
    Maint,
}

impl Haproxy {
    /// "/run/haproxy/admin.sock", "unix:/path", "unix:///path" or "tcp://127.0.0.1:9999";
    /// anything else is an error saying what is accepted.
    pub fn new(address: &str) -> Result<Haproxy, String> {
        Ok(Haproxy {
            address: parse_address(address)?,
            timeout: DEFAULT_TIMEOUT,
        })
    }

    /// The same client with another bound on each command.
    pub fn with_timeout(mut self, timeout: Duration) -> Haproxy {
        self.timeout = timeout;
        self
    }

    /// The socket, as `unix:/path` or `tcp://IP:PORT`, for messages.
    pub fn address(&self) -> String {
        self.address.to_string()
    }

    /// The socket, parsed.
    pub fn runtime_address(&self) -> &RuntimeAddress {
        &self.address
    }

    /// One command, one connection (non-interactive mode), answer text; bounded by a timeout
    /// (5 s unless set otherwise). Answers that HAProxy gives to any command it will not run
    /// ("Unknown command", "Permission denied") are `Refused`; what else counts as an error
    /// depends on the command, so other answers come back as they are.
    pub async fn command(&self, line: &str) -> Result<String, LbError> {
        if line.contains(['\n', '\r']) {
            return Err(LbError::Refused(format!(
                "HAProxy at {}: not sending {line:?}: a command must be one line",
                self.address
            )));
        }
        tracing::debug!(socket = %self.address, command = line, "HAProxy command");
        let exchange = self.exchange(line);
        let answer = match tokio::time::timeout(self.timeout, exchange).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(err)) => {
                return Err(LbError::Unreachable(format!(
                    "cannot reach HAProxy's runtime API at {}: {err} (is HAProxy running with \
                     this `stats socket`?)",
                    self.address
                )));
            }
            Err(_) => {
                return Err(LbError::Unreachable(format!(
                    "HAProxy's runtime API at {} did not answer `{line}` within {:?}",
                    self.address, self.timeout
                )));
            }
        };
        let first = answer.trim_start();
        if first.starts_with("Unknown command") || first.starts_with("Permission denied") {
            return Err(self.refused(line, &answer));
        }
        Ok(answer)
    }

    /// Adds `server` to `backend` at `addr` and makes it ready (added servers start in
    /// maintenance). Already there at the same address: just make it ready. Already there at
    /// another address: move it (maint, set addr, ready).
    pub async fn add_server(
        &self,
        backend: &str,
        server: &str,
        addr: SocketAddr,
    ) -> Result<(), LbError> {
        self.check_names(backend, server)?;
        let existing = self.servers(backend).await?;
        match existing.iter().find(|s| s.name == server) {
            None => {
                let line = format!("add server {backend}/{server} {}", haproxy_addr(addr));
                let answer = self.command(&line).await?;
                if !answer.trim_start().starts_with("New server registered.") {
                    return Err(self.refused(&line, &answer));
                }
                tracing::info!(socket = %self.address, backend, server, %addr, "server added");
            }
            Some(found) if same_addr(found, addr) => {}
            Some(found) => {
                self.set_state(backend, server, "maint").await?;
                self.set_addr(backend, server, addr).await?;
                tracing::info!(
                    socket = %self.address, backend, server, %addr,
                    from = %format!("{}:{}", found.address, found.port),
                    "server moved"
                );
            }
        }
        self.set_state(backend, server, "ready").await
    }

    /// Sets the server to drain: no new requests, sessions in progress finish.
    pub async fn drain(&self, backend: &str, server: &str) -> Result<(), LbError> {
        self.check_names(backend, server)?;
        self.set_state(backend, server, "drain").await?;
        tracing::info!(socket = %self.address, backend, server, "server draining");
        Ok(())
    }

    /// Polls until the server has no current sessions and no requests queued for it (every
    /// ~50 ms); Ok(true) when idle, Ok(false) when `timeout` passed first. A server that does
    /// not exist is idle.
    pub async fn wait_idle(
        &self,
        backend: &str,
        server: &str,
        timeout: Duration,
    ) -> Result<bool, LbError> {
        self.check_names(backend, server)?;
        let deadline = Instant::now() + timeout;
        loop {
            let idle = self
                .load(backend, server)
                .await?
                .is_none_or(|load| load.is_idle());
            if idle {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Maintenance, shut any remaining sessions, delete. A server that does not exist is Ok.
    /// HAProxy refuses to delete a server while connections to it are still closing; that is
    /// asked again until the client's timeout has passed.
    pub async fn remove_server(&self, backend: &str, server: &str) -> Result<(), LbError> {
        self.check_names(backend, server)?;
        let target = format!("{backend}/{server}");

        let line = format!("set server {target} state maint");
        let answer = self.command(&line).await?;
        if is_no_such_server(&answer) {
            return Ok(());
        }
        if !answer.trim().is_empty() {
            return Err(self.refused(&line, &answer));
        }

        let line = format!("shutdown sessions server {target}");
        let answer = self.command(&line).await?;
        if !answer.trim().is_empty() && !is_no_such_server(&answer) {
            return Err(self.refused(&line, &answer));
        }

        self.delete(&target).await?;
        tracing::info!(socket = %self.address, backend, server, "server removed");
        Ok(())
    }

    /// The servers of `backend` as HAProxy reports them; an unknown backend is Refused naming
    /// it.
    pub async fn servers(&self, backend: &str) -> Result<Vec<ServerState>, LbError> {
        self.check_name("backend", backend)?;
        let line = format!("show servers state {backend}");
        let answer = self.command(&line).await?;
        if answer.trim_start().starts_with("Can't find backend") {
            return Err(LbError::Refused(format!(
                "HAProxy at {} has no backend {backend:?}: `{line}` answered {:?}",
                self.address,
                shorten(&answer)
            )));
        }
        let mut servers =
            parse_servers_state(&answer).map_err(|why| self.unreadable(&line, &why))?;
        let loads = self.loads(backend).await?;
        for server in &mut servers {
            if let Some((_, load)) = loads.iter().find(|(name, _)| *name == server.name) {
                server.sessions = load.sessions;
            }
        }
        Ok(servers)
    }

    /// Sessions and queue of one server, or `None` when the backend has no such server.
    async fn load(&self, backend: &str, server: &str) -> Result<Option<Load>, LbError> {
        let loads = self.loads(backend).await?;
        Ok(loads
            .into_iter()
            .find(|(name, _)| name == server)
            .map(|(_, load)| load))
    }

    /// Sessions and queue of every server of `backend`, from `show stat`.
    async fn loads(&self, backend: &str) -> Result<Vec<(String, Load)>, LbError> {
        // Type 4 asks for the servers only, without the backend's and frontend's own rows.
        let line = format!("show stat {backend} 4 -1");
        let answer = self.command(&line).await?;
        if answer.trim_start().starts_with("No such proxy") {
            return Err(LbError::Refused(format!(
                "HAProxy at {} has no backend {backend:?}: `{line}` answered {:?}",
                self.address,
                shorten(&answer)
            )));
        }
        parse_stat(&answer, backend).map_err(|why| self.unreadable(&line, &why))
    }

    /// `set server B/S state STATE`, which answers nothing when it worked.
    async fn set_state(&self, backend: &str, server: &str, state: &str) -> Result<(), LbError> {
        let line = format!("set server {backend}/{server} state {state}");
        let answer = self.command(&line).await?;
        if answer.trim().is_empty() {
            Ok(())
        } else {
            Err(self.refused(&line, &answer))
        }
    }

    /// `set server B/S addr IP port PORT`, which says what changed (or that nothing had to).
    async fn set_addr(&self, backend: &str, server: &str, addr: SocketAddr) -> Result<(), LbError> {
        let line = format!(
            "set server {backend}/{server} addr {} port {}",
            addr.ip(),
            addr.port()
        );
        let answer = self.command(&line).await?;
        let answer_start = answer.trim_start();
        if answer_start.starts_with("IP changed from")
            || answer_start.starts_with("no need to change")
        {
            Ok(())
        } else {
            Err(self.refused(&line, &answer))
        }
    }

    /// `del server B/S`, asked again while HAProxy says connections are still attached.
    async fn delete(&self, target: &str) -> Result<(), LbError> {
        let line = format!("del server {target}");
        let deadline = Instant::now() + self.timeout;
        loop {
            let answer = self.command(&line).await?;
            let answer_start = answer.trim_start();
            if answer_start.starts_with("Server deleted.") || is_no_such_server(&answer) {
                return Ok(());
            }
            let busy = answer_start.starts_with("Server still has connections attached");
            if !busy || Instant::now() >= deadline {
                return Err(self.refused(&line, &answer));
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Connects, sends the line and reads until HAProxy closes the connection.
    async fn exchange(&self, line: &str) -> std::io::Result<String> {
        match &self.address {
            RuntimeAddress::Unix(path) => talk(UnixStream::connect(path).await?, line).await,
            RuntimeAddress::Tcp(addr) => talk(TcpStream::connect(addr).await?, line).await,
        }
    }

    fn check_names(&self, backend: &str, server: &str) -> Result<(), LbError> {
        self.check_name("backend", backend)?;
        self.check_name("server", server)
    }

    /// Refuses, without sending anything, a name that would not reach HAProxy as one word.
    fn check_name(&self, what: &str, name: &str) -> Result<(), LbError> {
        if valid_server_name(name) {
            Ok(())
        } else {
            Err(LbError::Refused(format!(
                "HAProxy at {}: {name:?} cannot be a {what} name (HAProxy takes letters, digits, \
                 '-', '_', '.' and ':')",
                self.address
            )))
        }
    }

    fn refused(&self, line: &str, answer: &str) -> LbError {
        LbError::Refused(format!(
            "HAProxy at {} refused `{line}`: {}",
            self.address,
            shorten(answer)
        ))
    }

    fn unreadable(&self, line: &str, why: &str) -> LbError {
        LbError::Refused(format!(
            "HAProxy at {} answered `{line}` with something this client cannot read: {why}",
            self.address
        ))
    }
}

/// Whether `name` can be an HAProxy server name (HAProxy accepts letters, digits, '-', '_',
/// '.', ':'); Docker container names fit.
pub fn valid_server_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// Sessions in progress and requests queued on one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Load {
    sessions: u64,
    queued: u64,
}

impl Load {
    fn is_idle(&self) -> bool {
        self.sessions == 0 && self.queued == 0
    }
}

fn parse_address(address: &str) -> Result<RuntimeAddress, String> {
    let unsupported = || {
        format!(
            "{address:?} is not an HAProxy runtime API address: use a socket path \
             (/run/haproxy/admin.sock), unix:/path, unix:///path or tcp://IP:PORT"
        )
    };
    if let Some(rest) = address.strip_prefix("tcp://") {
        let addr = rest.parse::<SocketAddr>().map_err(|_| {
            format!(
                "{address:?}: tcp:// takes an IP address and a port, such as tcp://127.0.0.1:9999"
            )
        })?;
        return Ok(RuntimeAddress::Tcp(addr));
    }
    let path = address
        .strip_prefix("unix://")
        .or_else(|| address.strip_prefix("unix:"))
        .unwrap_or(address);
    if path.starts_with('/') && !path.starts_with("//") {
        Ok(RuntimeAddress::Unix(PathBuf::from(path)))
    } else {
        Err(unsupported())
    }
}

/// An address as `add server` takes it: `IP:PORT`, or `[IP]:PORT` for IPv6.
fn haproxy_addr(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(v4) => v4.to_string(),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

fn same_addr(server: &ServerState, addr: SocketAddr) -> bool {
    server.port == addr.port() && server.address.parse::<IpAddr>().ok() == Some(addr.ip())
}

/// "No such server." is HAProxy's answer for a server the backend does not have.
fn is_no_such_server(answer: &str) -> bool {
    answer.trim_start().starts_with("No such server")
}

/// An answer for a message: trimmed, and cut short when long.
fn shorten(answer: &str) -> String {
    let trimmed = answer.trim();
    match trimmed.char_indices().nth(ANSWER_IN_MESSAGE) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_string(),
    }
}

async fn talk<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    line: &str,
) -> std::io::Result<String> {
    stream.write_all(format!("{line}\n").as_bytes()).await?;
    stream.flush().await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// The servers in a `show servers state` answer (format version 1), read by column name.
fn parse_servers_state(answer: &str) -> Result<Vec<ServerState>, String> {
    let mut lines = answer.lines().map(str::trim).filter(|l| !l.is_empty());
    match lines.next() {
        Some("1") => {}
        Some(other) => {
            return Err(format!(
                "expected format version 1, got {:?}",
                shorten(other)
            ));
        }
        None => return Err("the answer is empty".to_string()),
    }
    let header: Vec<&str> = match lines.next() {
        Some(line) if line.starts_with('#') => {
            line.trim_start_matches('#').split_whitespace().collect()
        }
        _ => return Err("no header line".to_string()),
    };
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| format!("no {name} column"))
    };
    let name_at = column("srv_name")?;
    let addr_at = column("srv_addr")?;
    let port_at = column("srv_port")?;
    let op_at = column("srv_op_state")?;
    let admin_at = column("srv_admin_state")?;

    let mut servers = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let field = |at: usize| {
            fields
                .get(at)
                .copied()
                .ok_or_else(|| format!("a line is short of columns: {:?}", shorten(line)))
        };
        let number = |at: usize| -> Result<u64, String> {
            let text = field(at)?;
            text.parse()
                .map_err(|_| format!("{:?} is not a number in {:?}", text, shorten(line)))
        };
        let port = number(port_at)?;
        let port = u16::try_from(port).map_err(|_| format!("port {port} is out of range"))?;
        servers.push(ServerState {
            name: field(name_at)?.to_string(),
            address: field(addr_at)?.to_string(),
            port,
            admin: admin_from_flags(number(admin_at)?),
            up: matches!(number(op_at)?, OP_STARTING | OP_RUNNING),
            sessions: 0,
        });
    }
    Ok(servers)
}

/// `srv_op_state` values meaning the server takes traffic (HAProxy's SRV_ST_STARTING and
/// SRV_ST_RUNNING).
const OP_STARTING: u64 = 1;
const OP_RUNNING: u64 = 2;

/// `srv_admin_state` bits of maintenance: forced, inherited, from the configuration, from a
/// failed address resolution, from a resolved host name (FMAINT, IMAINT, CMAINT, RMAINT,
/// HMAINT).
const ADMIN_MAINT_BITS: u64 = 0x01 | 0x02 | 0x04 | 0x20 | 0x40;
/// `srv_admin_state` bits of drain: forced, inherited (FDRAIN, IDRAIN).
const ADMIN_DRAIN_BITS: u64 = 0x08 | 0x10;

fn admin_from_flags(flags: u64) -> Admin {
    if flags & ADMIN_MAINT_BITS != 0 {
        Admin::Maint
    } else if flags & ADMIN_DRAIN_BITS != 0 {
        Admin::Drain
    } else {
        Admin::Ready
    }
}

/// Each server's sessions (`scur`) and queue (`qcur`) from a `show stat` CSV answer, read by
/// column name; rows of other proxies and the FRONTEND and BACKEND rows are left out.
fn parse_stat(answer: &str, backend: &str) -> Result<Vec<(String, Load)>, String> {
    let mut lines = answer.lines().filter(|l| !l.trim().is_empty());
    let header = match lines.next() {
        Some(line) if line.starts_with("# ") => csv_fields(line.trim_start_matches("# ")),
        Some(other) => return Err(format!("expected a CSV header, got {:?}", shorten(other))),
        None => return Err("the answer is empty".to_string()),
    };
    let column = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| format!("no {name} column"))
    };
    let proxy_at = column("pxname")?;
    let name_at = column("svname")?;
    let sessions_at = column("scur")?;
    let queued_at = column("qcur")?;

    let mut loads = Vec::new();
    for line in lines {
        let fields = csv_fields(line);
        let field = |at: usize| fields.get(at).map(String::as_str).unwrap_or("");
        let name = field(name_at);
        if field(proxy_at) != backend || name == "FRONTEND" || name == "BACKEND" {
            continue;
        }
        let count = |at: usize| -> Result<u64, String> {
            let text = field(at);
            if text.is_empty() {
                return Ok(0);
            }
            text.parse()
                .map_err(|_| format!("{text:?} is not a count in {:?}", shorten(line)))
        };
        let load = Load {
            sessions: count(sessions_at)?,
            queued: count(queued_at)?,
        };
        loads.push((name.to_string(), load));
    }
    Ok(loads)
}

/// The fields of one CSV line, with double-quoted fields (which may hold commas) unquoted.
fn csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_socket_paths_unix_urls_or_tcp() {
        let unix = |p: &str| Ok(RuntimeAddress::Unix(PathBuf::from(p)));
        assert_eq!(
            parse_address("/run/haproxy/admin.sock"),
            unix("/run/haproxy/admin.sock")
        );
        assert_eq!(parse_address("unix:/tmp/a.sock"), unix("/tmp/a.sock"));
        assert_eq!(parse_address("unix:///tmp/a.sock"), unix("/tmp/a.sock"));
        assert_eq!(
            parse_address("tcp://127.0.0.1:9999"),
            Ok(RuntimeAddress::Tcp("127.0.0.1:9999".parse().unwrap()))
        );
        assert_eq!(
            parse_address("tcp://[::1]:9999"),
            Ok(RuntimeAddress::Tcp("[::1]:9999".parse().unwrap()))
        );
    }

    #[test]
    fn other_addresses_are_refused_saying_what_is_accepted() {
        for bad in [
            "http://x",
            "admin.sock",
            "",
            "unix:",
            "unix://host/x",
            "tcp://localhost:1",
        ] {
            let err = parse_address(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
            assert!(err.contains("tcp://"), "{err}");
        }
        let err = parse_address("http://x").unwrap_err();
        assert!(
            err.contains("unix:///path") && err.contains("/run/haproxy/admin.sock"),
            "{err}"
        );
    }

    #[test]
    fn the_address_is_shown_as_a_url() {
        let unix = Haproxy::new("unix:///tmp/x/admin.sock").unwrap();
        assert_eq!(unix.address(), "unix:/tmp/x/admin.sock");
        let tcp = Haproxy::new("tcp://127.0.0.1:9999").unwrap();
        assert_eq!(tcp.address(), "tcp://127.0.0.1:9999");
    }

    #[test]
    fn server_names_are_letters_digits_and_four_marks() {
        for good in ["web-1", "shop_web.2", "a:b", "0", "pilothouse-web-7f3a"] {
            assert!(valid_server_name(good), "{good}");
        }
        for bad in ["", "a b", "a/b", "a;b", "a$", "a\nb", "é", "a,b"] {
            assert!(!valid_server_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn ipv6_addresses_are_bracketed_for_add_server() {
        assert_eq!(
            haproxy_addr("127.0.0.1:8080".parse().unwrap()),
            "127.0.0.1:8080"
        );
        assert_eq!(haproxy_addr("[::1]:8080".parse().unwrap()), "[::1]:8080");
    }

    /// `show servers state web`, lines as HAProxy 2.6.12 printed them: `a` ready, `b` in maintenance as added,
    /// `c` draining, `d` on IPv6 and in maintenance.
    const SERVERS_STATE: &str = "1\n\
# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight \
srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state \
srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl \
srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n\
3 web 1 a 127.0.0.1 2 0 1 1 0 1 0 0 0 0 0 0 - 18001 - 0 0 - - 0\n\
3 web 2 b 127.0.0.1 0 1 1 1 1 1 0 0 0 0 0 0 - 18001 - 0 0 - - 0\n\
3 web 3 c 127.0.0.1 2 8 1 1 0 1 0 0 0 0 0 0 - 18002 - 0 0 - - 0\n\
3 web 4 d ::1 0 1 1 1 0 1 0 0 0 0 0 0 - 18009 - 0 0 - - 0\n\n";

    #[test]
    fn show_servers_state_is_read_by_column_name() {
        let servers = parse_servers_state(SERVERS_STATE).unwrap();
        let summary: Vec<(&str, &str, u16, Admin, bool)> = servers
            .iter()
            .map(|s| (s.name.as_str(), s.address.as_str(), s.port, s.admin, s.up))
            .collect();
        assert_eq!(
            summary,
            vec![
                ("a", "127.0.0.1", 18001, Admin::Ready, true),
                ("b", "127.0.0.1", 18001, Admin::Maint, false),
                ("c", "127.0.0.1", 18002, Admin::Drain, true),
                ("d", "::1", 18009, Admin::Maint, false),
            ]
        );
    }

    #[test]
    fn show_servers_state_with_columns_in_another_order_reads_the_same() {
        let answer = "1\n# srv_port srv_admin_state srv_op_state srv_addr srv_name\n\
                      8080 8 2 10.0.0.5 web-2\n";
        let servers = parse_servers_state(answer).unwrap();
        assert_eq!(
            servers,
            vec![ServerState {
                name: "web-2".to_string(),
                address: "10.0.0.5".to_string(),
                port: 8080,
                admin: Admin::Drain,
                up: true,
                sessions: 0,
            }]
        );
    }

    #[test]
    fn an_empty_backend_has_no_servers() {
        let answer = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state \
                      srv_port\n\n";
        assert_eq!(parse_servers_state(answer), Ok(vec![]));
    }

    #[test]
    fn unreadable_server_states_say_why() {
        assert!(parse_servers_state("").unwrap_err().contains("empty"));
        assert!(
            parse_servers_state("2\n# srv_name\n")
                .unwrap_err()
                .contains("version 1")
        );
        let no_port = "1\n# srv_name srv_addr srv_op_state srv_admin_state\na 1.2.3.4 2 0\n";
        assert!(
            parse_servers_state(no_port)
                .unwrap_err()
                .contains("srv_port")
        );
        let short = "1\n# srv_name srv_addr srv_op_state srv_admin_state srv_port\na 1.2.3.4 2\n";
        assert!(parse_servers_state(short).unwrap_err().contains("short"));
        let bad = "1\n# srv_name srv_addr srv_op_state srv_admin_state srv_port\na 1 x 0 80\n";
        assert!(parse_servers_state(bad).unwrap_err().contains("\"x\""));
    }

    #[test]
    fn admin_flags_map_to_maint_before_drain() {
        assert_eq!(admin_from_flags(0), Admin::Ready);
        assert_eq!(admin_from_flags(0x08), Admin::Drain);
        assert_eq!(admin_from_flags(0x10), Admin::Drain);
        assert_eq!(admin_from_flags(0x01), Admin::Maint);
        assert_eq!(admin_from_flags(0x04 | 0x08), Admin::Maint);
        assert_eq!(admin_from_flags(0x20), Admin::Maint);
    }

    /// `show stat web 4 -1` from HAProxy 2.6.12, as captured while `k` served three slow
    /// requests and `idle-1` was in maintenance as added.
    const SHOW_STAT: &str = "# pxname,svname,qcur,qmax,scur,smax,slim,stot,bin,bout,dreq,dresp,ereq,econ,eresp,wretr,wredis,status,weight,act,bck,chkfail,chkdown,lastchg,downtime,qlimit,pid,iid,sid,throttle,lbtot,tracked,type,rate,rate_lim,rate_max,check_status,check_code,check_duration,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,hanafail,req_rate,req_rate_max,req_tot,cli_abrt,srv_abrt,comp_in,comp_out,comp_byp,comp_rsp,lastsess,last_chk,last_agt,qtime,ctime,rtime,ttime,agent_status,agent_code,agent_duration,check_desc,agent_desc,check_rise,check_fall,check_health,agent_rise,agent_fall,agent_health,addr,cookie,mode,algo,conn_rate,conn_rate_max,conn_tot,intercepted,dcon,dses,wrew,connect,reuse,cache_lookups,cache_hits,srv_icur,src_ilim,qtime_max,ctime_max,rtime_max,ttime_max,eint,idle_conn_cur,safe_conn_cur,used_conn_cur,need_conn_est,uweight,agg_server_status,agg_server_check_status,agg_check_status,-,ssl_sess,ssl_reused_sess,ssl_failed_handshake,h2_headers_rcvd,h2_data_rcvd,h2_settings_rcvd,h2_rst_stream_rcvd,h2_goaway_rcvd,h2_detected_conn_protocol_errors,h2_detected_strm_protocol_errors,h2_rst_stream_resp,h2_goaway_resp,h2_open_connections,h2_backend_open_streams,h2_total_connections,h2_backend_total_streams,h1_open_connections,h1_open_streams,h1_total_connections,h1_total_streams,h1_bytes_in,h1_bytes_out,h1_spliced_bytes_in,h1_spliced_bytes_out,
web,idle-1,0,0,0,0,,0,0,0,,0,,0,0,0,0,MAINT,1,1,0,,,1,,,1,3,1,,0,,2,0,,0,,,,0,0,0,0,0,0,,,,0,0,0,,,,,-1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:18003,,http,,,,,,,,0,0,0,,,0,0,0,0,0,0,0,0,0,0,0,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,
web,k,0,0,3,3,,3,0,0,,0,,0,0,0,0,no check,1,1,0,,,1,,,1,3,2,,3,,2,3,,3,,,,0,0,0,0,0,0,,,,0,0,0,,,,,1,,,0,0,0,0,,,,,,,,,,,,127.0.0.1:18001,,http,,,,,,,,0,3,0,,,0,0,0,0,0,0,0,0,0,3,3,1,,,,-,0,0,0,,,,,,,,,,,,,,,,,,,,,,

";

    fn named(name: &str, sessions: u64, queued: u64) -> (String, Load) {
        (name.to_string(), Load { sessions, queued })
    }

    #[test]
    fn show_stat_gives_sessions_and_queue_per_server_by_column_name() {
        let loads = parse_stat(SHOW_STAT, "web").unwrap();
        assert_eq!(loads, vec![named("idle-1", 0, 0), named("k", 3, 0)]);
    }

    #[test]
    fn show_stat_leaves_out_other_proxies_and_summary_rows() {
        let answer = "# svname,scur,pxname,qcur,status\n\
                      FRONTEND,9,fe,,OPEN\n\
                      web-1,2,web,1,UP\n\
                      BACKEND,2,web,0,UP\n\
                      web-1,7,other,0,UP\n\
                      web-2,,web,,MAINT\n";
        let loads = parse_stat(answer, "web").unwrap();
        assert_eq!(loads, vec![named("web-1", 2, 1), named("web-2", 0, 0)]);
    }

    #[test]
    fn unreadable_stats_say_why() {
        assert!(
            parse_stat("No such proxy.\n", "web")
                .unwrap_err()
                .contains("CSV header")
        );
        assert!(
            parse_stat("# pxname,svname,qcur\n", "web")
                .unwrap_err()
                .contains("scur")
        );
        let bad = "# pxname,svname,qcur,scur\nweb,a,0,lots\n";
        assert!(parse_stat(bad, "web").unwrap_err().contains("\"lots\""));
    }

    #[test]
    fn quoted_csv_fields_keep_their_commas() {
        assert_eq!(
            csv_fields(r#"web,a,"Layer4 timeout, again","say ""hi""",,"#),
            vec!["web", "a", "Layer4 timeout, again", r#"say "hi""#, "", ""]
        );
    }

    #[test]
    fn long_answers_are_cut_in_messages() {
        let long = "x".repeat(1000);
        let short = shorten(&format!("  {long}\n"));
        assert_eq!(short.chars().count(), ANSWER_IN_MESSAGE + 1);
        assert!(short.ends_with('…'));
        assert_eq!(shorten(" No such server.\n\n"), "No such server.");
    }

    #[tokio::test]
    async fn a_command_of_two_lines_is_not_sent() {
        let client = Haproxy::new("/nonexistent/pilothouse/admin.sock").unwrap();
        let err = client.command("show info\nshow stat").await.unwrap_err();
        assert!(
            matches!(&err, LbError::Refused(m) if m.contains("one line")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn bad_names_are_refused_before_anything_is_sent() {
        // Nothing listens there: reaching for the socket would be Unreachable instead.
        let client = Haproxy::new("/nonexistent/pilothouse/admin.sock").unwrap();
        let addr = "127.0.0.1:8080".parse().unwrap();
        let err = client.add_server("web", "a b", addr).await.unwrap_err();
        assert!(
            matches!(&err, LbError::Refused(m) if m.contains("\"a b\"")),
            "{err}"
        );
        let err = client.drain("web;x", "a").await.unwrap_err();
        assert!(
            matches!(&err, LbError::Refused(m) if m.contains("backend name")),
            "{err}"
        );
    }
}
