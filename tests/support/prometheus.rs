//! Helpers for tests against a real Prometheus: a metrics endpoint the test controls, and a
//! `prometheus` process that scrapes it every second.
//!
//! Not for mocking the Prometheus API: queries go to the real server (Debian's `prometheus`),
//! started on a free loopback port with a generated config and a temporary data directory.
//! Everything listens on 127.0.0.1 only.
//!
//! Prometheus 2.x hands new scrape targets to its scrape loop on a fixed 5 s tick, so a fresh
//! server takes about 6 s to land its first scrape. Tests that only read therefore share one
//! server per test binary ([`shared_prometheus_or_skip`]) and keep apart by using metric names
//! of their own; a test that stops or restarts the server starts its own
//! ([`prometheus_or_skip`]).
//!
//! Every server runs under a small `sh` watchdog holding a pipe from the test process: when
//! the pipe closes (the owner is dropped, or the test process ends in any way, which is how the
//! shared server ends) the watchdog kills Prometheus and removes its directory.

// Each test binary that includes this module uses a different part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OnceCell, oneshot};

/// The scrape job every test Prometheus runs; its series carry `job="pilothouse-test"`.
pub const JOB: &str = "pilothouse-test";

/// How long a test Prometheus may take to become ready and land its first scrape.
const START_WITHIN: Duration = Duration::from_secs(20);

/// A `/metrics` endpoint on a loopback port, serving the series the test sets. It runs on a
/// thread of its own, so it outlives the runtime of the test that started it.
pub struct MetricsEndpoint {
    address: SocketAddr,
    series: Arc<Mutex<BTreeMap<String, f64>>>,
    scrapes: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl MetricsEndpoint {
    /// Starts serving `series` (each a sample name with labels, such as `ph_rps{pod="a"}`).
    pub fn start(series: &[(&str, f64)]) -> MetricsEndpoint {
        let listener = StdListener::bind("127.0.0.1:0").expect("bind the endpoint on loopback");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking listener");
        let address = listener.local_addr().expect("the endpoint's address");
        let series = Arc::new(Mutex::new(
            series.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        ));
        let scrapes = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = oneshot::channel();
        let thread = {
            let (series, scrapes) = (series.clone(), scrapes.clone());
            std::thread::spawn(move || run_endpoint(listener, series, scrapes, stopped))
        };
        MetricsEndpoint {
            address,
            series,
            scrapes,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// `host:port` for a scrape config.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Serves `value` for `series` from the next scrape on.
    pub fn set(&self, series: &str, value: f64) {
        self.series
            .lock()
            .expect("the series lock")
            .insert(series.to_string(), value);
    }

    /// Stops serving `series`.
    pub fn remove(&self, series: &str) {
        self.series.lock().expect("the series lock").remove(series);
    }

    /// How many times `/metrics` has been served.
    pub fn scrapes(&self) -> u64 {
        self.scrapes.load(Ordering::SeqCst)
    }
}

impl Drop for MetricsEndpoint {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The endpoint's thread: serves until told to stop.
fn run_endpoint(
    listener: StdListener,
    series: Arc<Mutex<BTreeMap<String, f64>>>,
    scrapes: Arc<AtomicU64>,
    stopped: oneshot::Receiver<()>,
) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async move {
        let Ok(listener) = TcpListener::from_std(listener) else {
            return;
        };
        tokio::select! {
            () = serve(listener, series, scrapes) => {}
            _ = stopped => {}
        }
    });
}

async fn serve(
    listener: TcpListener,
    series: Arc<Mutex<BTreeMap<String, f64>>>,
    scrapes: Arc<AtomicU64>,
) {
    while let Ok((stream, _)) = listener.accept().await {
        let series = series.clone();
        let scrapes = scrapes.clone();
        tokio::spawn(async move {
            let answer = answer(stream, &series, &scrapes);
            let _ = tokio::time::timeout(Duration::from_secs(5), answer).await;
        });
    }
}

/// Reads one request and answers it: the exposition for `/metrics`, 404 for anything else.
async fn answer(
    mut stream: TcpStream,
    series: &Mutex<BTreeMap<String, f64>>,
    scrapes: &AtomicU64,
) -> std::io::Result<()> {
    let head = read_head(&mut stream).await?;
    let path = head.split_whitespace().nth(1).unwrap_or("");
    let (status, body) = if path == "/metrics" || path.starts_with("/metrics?") {
        let body = exposition(&series.lock().expect("the series lock"));
        scrapes.fetch_add(1, Ordering::SeqCst);
        ("200 OK", body)
    } else {
        ("404 Not Found", "not found\n".to_string())
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// The request line and headers, up to the blank line (at most 16 KiB).
async fn read_head(stream: &mut TcpStream) -> std::io::Result<String> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        let read = stream.read(&mut chunk).await?;
        if read == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..read]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The series in the Prometheus text format, with NaN and infinities spelled as it expects.
fn exposition(series: &BTreeMap<String, f64>) -> String {
    series
        .iter()
        .map(|(name, value)| format!("{name} {}\n", format_value(*value)))
        .collect()
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_string()
    } else if value == f64::INFINITY {
        "+Inf".to_string()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        format!("{value}")
    }
}

/// A `prometheus` process scraping a [`MetricsEndpoint`] every second.
pub struct TestPrometheus {
    /// The endpoint it scrapes; set values here.
    pub endpoint: MetricsEndpoint,
    address: SocketAddr,
    dir: PathBuf,
    /// The watchdog shell; Prometheus runs as its child.
    watchdog: Option<Child>,
    /// The pipe whose closing tells the watchdog to kill Prometheus and clean up.
    lifeline: Option<ChildStdin>,
}

/// A Prometheus of this test's own, scraping an endpoint that serves `series`, ready and with
/// its first scrape landed; or `None` (with the reason printed) when the `prometheus` binary is
/// not installed. With `PILOTHOUSE_REQUIRE_SERVICES=1` (CI) a missing binary fails the test.
pub async fn prometheus_or_skip(series: &[(&str, f64)]) -> Option<TestPrometheus> {
    let binary = binary_or_skip()?;
    Some(TestPrometheus::start(&binary, MetricsEndpoint::start(series)).await)
}

/// The Prometheus shared by the tests of this binary (started by the first that asks), or
/// `None` as for [`prometheus_or_skip`]. Use metric names no other test uses, and never stop it.
pub async fn shared_prometheus_or_skip() -> Option<&'static TestPrometheus> {
    static SHARED: OnceCell<Option<TestPrometheus>> = OnceCell::const_new();
    let shared = SHARED
        .get_or_init(|| async {
            let binary = binary_or_skip()?;
            Some(TestPrometheus::start(&binary, MetricsEndpoint::start(&[])).await)
        })
        .await;
    if shared.is_none() {
        // Say why in every test that skips, not only in the first.
        let _ = binary_or_skip();
    }
    shared.as_ref()
}

/// The `prometheus` binary, or `None` after printing why; panics under
/// `PILOTHOUSE_REQUIRE_SERVICES=1`.
fn binary_or_skip() -> Option<PathBuf> {
    if let Some(binary) = find_binary("prometheus") {
        return Some(binary);
    }
    let reason = "no `prometheus` binary on PATH (install the Debian package `prometheus`)";
    if std::env::var("PILOTHOUSE_REQUIRE_SERVICES").as_deref() == Ok("1") {
        panic!("Prometheus required (PILOTHOUSE_REQUIRE_SERVICES=1): {reason}");
    }
    eprintln!("skipped: {reason}");
    None
}

/// The first file called `name` in a directory on PATH.
fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

impl TestPrometheus {
    async fn start(binary: &Path, endpoint: MetricsEndpoint) -> TestPrometheus {
        let dir = tempfile::Builder::new()
            .prefix("pilothouse-prometheus-")
            .tempdir()
            .expect("a temporary directory for Prometheus")
            .keep();
        let mut prometheus = TestPrometheus {
            endpoint,
            address: free_loopback_port(),
            dir,
            watchdog: None,
            lifeline: None,
        };

        // A free port can be taken between finding and binding it; try a few.
        for _attempt in 0..3 {
            prometheus.spawn(binary);
            match prometheus.wait_until_ready().await {
                Ok(()) => {
                    prometheus.wait_for_first_scrape().await;
                    return prometheus;
                }
                Err(why) if why.contains("address already in use") => {
                    prometheus.stop_server();
                    prometheus.address = free_loopback_port();
                }
                Err(why) => panic!("Prometheus did not become ready: {why}"),
            }
        }
        panic!("Prometheus found no free loopback port in 3 attempts");
    }

    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Kills the server (as a crash would), waits until it is gone and removes its files.
    pub fn stop(&mut self) {
        self.stop_server();
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Starts the server again after [`TestPrometheus::stop`], on the same port and with a
    /// fresh data directory (so with no samples from before), and waits until it is ready and
    /// its first scrape has landed, as a server that came back from a crash would.
    pub async fn restart(&mut self) {
        let binary = find_binary("prometheus").expect("the prometheus binary it started from");
        self.spawn(&binary);
        if let Err(why) = self.wait_until_ready().await {
            panic!("Prometheus did not come back on {}: {why}", self.address);
        }
        self.wait_for_first_scrape().await;
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Writes the config and starts Prometheus under the watchdog shell.
    fn spawn(&mut self, binary: &Path) {
        std::fs::create_dir_all(&self.dir).expect("the Prometheus directory");
        let config = self.dir.join("prometheus.yml");
        let scrape = scrape_config(self.endpoint.address());
        std::fs::write(&config, scrape).expect("write the Prometheus config");
        let log = std::fs::File::create(self.dir.join("prometheus.log")).expect("the log file");
        let log_err = log.try_clone().expect("clone the log file");
        // `$0` is Prometheus and `$@` its arguments; `read` returns when the pipe closes.
        let watchdog = r#""$0" "$@" </dev/null & server=$!
read -r _ || true
kill -KILL "$server" 2>/dev/null
wait "$server" 2>/dev/null
[ -n "$PH_REMOVE_DIR" ] && rm -rf "$PH_REMOVE_DIR"
exit 0"#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(watchdog)
            .arg(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                self.dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={}", self.address))
            .arg("--log.level=warn")
            .env("PH_REMOVE_DIR", &self.dir)
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .expect("start prometheus under sh");
        self.lifeline = child.stdin.take();
        self.watchdog = Some(child);
    }

    /// Polls `/-/ready`; on failure says why, with the server's log.
    async fn wait_until_ready(&mut self) -> Result<(), String> {
        let ready = format!("{}/-/ready", self.url());
        let deadline = Instant::now() + START_WITHIN;
        while Instant::now() < deadline {
            if self.log().contains("address already in use") {
                return Err(format!("its port was taken\n{}", self.log()));
            }
            let exited = self.watchdog.as_mut().map(|w| w.try_wait());
            if let Some(Ok(Some(status))) = exited {
                return Err(format!("it exited with {status}\n{}", self.log()));
            }
            let answer = http().get(&ready).send().await;
            if answer.is_ok_and(|response| response.status().is_success()) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(format!(
            "it was not ready within {START_WITHIN:?}\n{}",
            self.log()
        ))
    }

    /// Waits until `up{job="pilothouse-test"}` is 1: a scrape of the endpoint has landed.
    async fn wait_for_first_scrape(&self) {
        let query = format!("{}/api/v1/query", self.url());
        let up = format!("up{{job={JOB:?}}}");
        let deadline = Instant::now() + START_WITHIN;
        while Instant::now() < deadline {
            if up_is_one(&query, &up).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "Prometheus landed no scrape of {} within {START_WITHIN:?} ({} served)\n{}",
            self.endpoint.address(),
            self.endpoint.scrapes(),
            self.log()
        );
    }

    /// Closes the lifeline and waits for the watchdog to kill Prometheus, remove its
    /// directory and exit.
    fn stop_server(&mut self) {
        drop(self.lifeline.take());
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.wait();
        }
    }
}

impl Drop for TestPrometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether the instant query `up` at the API URL `query` answers with the value 1.
async fn up_is_one(query: &str, up: &str) -> bool {
    let Ok(response) = http().get(query).query(&[("query", up)]).send().await else {
        return false;
    };
    let Ok(body) = response.json::<serde_json::Value>().await else {
        return false;
    };
    body["data"]["result"][0]["value"][1] == "1"
}

/// A config scraping `target` every second, and nothing else.
fn scrape_config(target: SocketAddr) -> String {
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
         scrape_configs:\n  - job_name: {JOB}\n    static_configs:\n      - targets: ['{target}']\n"
    )
}

/// A loopback port that was free a moment ago.
fn free_loopback_port() -> SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("the port's address")
}

/// A client for the helper's own checks: short timeout, no proxy.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(1))
        .no_proxy()
        .build()
        .expect("an HTTP client")
}
