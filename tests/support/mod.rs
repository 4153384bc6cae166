//! Helpers for tests against the real Docker engine: find the engine (or skip, or fail in CI),
//! build the local test image, label every container a test creates and remove them after, and
//! drive a platform worker through its channels.
//!
//! Not for mocking: everything here talks to the engine on this machine's local socket, and
//! touches only images, containers and networks that tests create.

// Each test binary includes this module and uses a different part of it.
#![allow(dead_code)]

pub mod pty;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bollard::Docker;
use bollard::container::{
    Config, CreateContainerOptions, ListContainersOptions, RemoveContainerOptions,
    StartContainerOptions,
};
use bollard::image::CreateImageOptions;
use bollard::network::{CreateNetworkOptions, ListNetworksOptions};
use futures::StreamExt;
use pilothouse::platform::{Request, Update};
use pilothouse::store::Store;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The image every test container runs: busybox-static imported as a root file system.
pub const TEST_IMAGE: &str = "pilothouse-test/busybox:1";

/// The label every test container and network carries; its value is a [`TestLabel`].
pub const TEST_LABEL_KEY: &str = "pilothouse.test";

/// A command that runs until stopped and stops at once on SIGTERM.
pub const SLEEP_FOREVER: &[&str] = &["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"];

/// The engine on this machine's local socket, or `None` (with the reason printed) when none
/// answers. With `PILOTHOUSE_REQUIRE_SERVICES=1` (CI) a missing engine fails the test instead.
pub async fn docker_or_skip() -> Option<Docker> {
    match connect().await {
        Ok(docker) => Some(docker),
        Err(reason) => {
            if std::env::var("PILOTHOUSE_REQUIRE_SERVICES").as_deref() == Ok("1") {
                panic!("Docker engine required (PILOTHOUSE_REQUIRE_SERVICES=1): {reason}");
            }
            eprintln!("skipped: no Docker engine: {reason}");
            None
        }
    }
}

async fn connect() -> Result<Docker, String> {
    let docker = Docker::connect_with_local_defaults().map_err(|e| e.to_string())?;
    let attempt = async {
        let docker = docker
            .negotiate_version()
            .await
            .map_err(|e| e.to_string())?;
        docker.ping().await.map_err(|e| e.to_string())?;
        Ok::<_, String>(docker)
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .map_err(|_| "the engine did not answer within 5 s".to_string())?
}

/// Serializes image builds within this test process.
static IMAGE_BUILD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Builds [`TEST_IMAGE`] once: `docker import` of a root file system holding `/bin/busybox`
/// (Debian's busybox-static) and a symlink per applet. Safe when tests in several processes
/// call it at once: a lock directory lets one of them build while the others wait.
pub async fn ensure_test_image(docker: &Docker) {
    let _guard = IMAGE_BUILD.lock().await;
    if docker.inspect_image(TEST_IMAGE).await.is_ok() {
        return;
    }
    let lock = ProcessLock::acquire(&std::env::temp_dir().join("pilothouse-test-image.lock"));
    if docker.inspect_image(TEST_IMAGE).await.is_ok() {
        return;
    }
    let root_fs = root_fs_tar();
    let (repo, tag) = TEST_IMAGE
        .split_once(':')
        .expect("the test image has a tag");
    let options = CreateImageOptions {
        from_src: "-",
        repo,
        tag,
        changes: vec!["CMD [\"sh\"]"],
        ..Default::default()
    };
    let mut progress = docker.create_image(Some(options), Some(root_fs.into()), None);
    while let Some(step) = progress.next().await {
        if let Err(err) = step {
            panic!("importing {TEST_IMAGE} failed: {err}");
        }
    }
    drop(lock);
    docker
        .inspect_image(TEST_IMAGE)
        .await
        .expect("the imported test image exists");
}

/// A tar of a root file system: busybox, its applet links, /tmp and a passwd file.
fn root_fs_tar() -> Vec<u8> {
    let busybox = static_busybox();
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    for sub in ["bin", "tmp", "etc"] {
        std::fs::create_dir_all(root.join(sub)).expect("root fs dir");
    }
    std::fs::copy(&busybox, root.join("bin/busybox")).expect("copy busybox");
    let applets = Command::new(&busybox)
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&applets.stdout).lines() {
        if !applet.is_empty() && applet != "busybox" {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet))
                .expect("applet link");
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n",
    )
    .expect("passwd");
    let tar = Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(root)
        .args(["-cf", "-", "."])
        .output()
        .expect("tar runs");
    assert!(
        tar.status.success(),
        "tar failed: {}",
        String::from_utf8_lossy(&tar.stderr)
    );
    tar.stdout
}

/// The statically linked busybox from Debian's busybox-static package.
fn static_busybox() -> PathBuf {
    let found = ["/bin/busybox", "/usr/bin/busybox"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    let path = found.expect(
        "no /bin/busybox: install Debian's busybox-static (apt-get install busybox-static)",
    );
    let head = std::fs::read(&path).expect("read busybox");
    // A dynamic executable names its loader in the program interpreter near the file's start.
    let head = &head[..head.len().min(4096)];
    let dynamic = [&b"ld-linux"[..], b"ld-musl"]
        .iter()
        .any(|loader| head.windows(loader.len()).any(|w| w == *loader));
    assert!(
        !dynamic,
        "{} is dynamically linked; install busybox-static",
        path.display()
    );
    path
}

/// A lock between processes: a directory that only one can create. A lock older than two
/// minutes is taken to belong to a test that died.
struct ProcessLock(PathBuf);

impl ProcessLock {
    fn acquire(path: &Path) -> ProcessLock {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match std::fs::create_dir(path) {
                Ok(()) => return ProcessLock(path.to_path_buf()),
                Err(_) if Instant::now() > deadline => panic!("{} stays locked", path.display()),
                Err(_) => {
                    let stale = std::fs::metadata(path)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(120));
                    if stale {
                        let _ = std::fs::remove_dir(path);
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
}

impl Drop for ProcessLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A unique `pilothouse.test` value for one test. Every container and network the test creates
/// carries it, and dropping the guard force-removes all of them.
pub struct TestLabel {
    pub value: String,
}

static LABEL_COUNTER: AtomicU64 = AtomicU64::new(0);

impl TestLabel {
    pub fn new() -> TestLabel {
        let n = LABEL_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        TestLabel {
            value: format!("{}-{n}-{nanos}", std::process::id()),
        }
    }

    /// A short name unique among running tests, usable in container and project names.
    pub fn short(&self) -> String {
        let n = LABEL_COUNTER.fetch_add(1, Ordering::Relaxed);
        format!("ph{}n{n}", std::process::id())
    }

    /// `pilothouse.test=<value>` as a label map, plus `extra`.
    pub fn labels(&self, extra: &[(&str, &str)]) -> HashMap<String, String> {
        let mut labels = HashMap::from([(TEST_LABEL_KEY.to_string(), self.value.clone())]);
        labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        labels
    }

    fn filter(&self) -> HashMap<String, Vec<String>> {
        label_filter(&self.value)
    }

    /// Ids of the containers carrying this label.
    pub async fn containers(&self, docker: &Docker) -> Vec<String> {
        let options = ListContainersOptions {
            all: true,
            filters: self.filter(),
            ..Default::default()
        };
        let listed = docker
            .list_containers(Some(options))
            .await
            .expect("list test containers");
        listed.into_iter().filter_map(|c| c.id).collect()
    }

    /// Creates a network carrying this label.
    pub async fn network(&self, docker: &Docker, name: &str) -> String {
        let options = CreateNetworkOptions {
            name: name.to_string(),
            driver: "bridge".to_string(),
            labels: self.labels(&[]),
            ..Default::default()
        };
        let created = docker
            .create_network(options)
            .await
            .expect("create test network");
        created.id
    }
}

fn label_filter(value: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([(
        "label".to_string(),
        vec![format!("{TEST_LABEL_KEY}={value}")],
    )])
}

/// Force-removes every container, then every network, labelled `pilothouse.test=<value>`.
async fn remove_labelled(docker: &Docker, value: &str) {
    let options = ListContainersOptions {
        all: true,
        filters: label_filter(value),
        ..Default::default()
    };
    let force = RemoveContainerOptions {
        force: true,
        v: true,
        ..Default::default()
    };
    for container in docker
        .list_containers(Some(options))
        .await
        .unwrap_or_default()
    {
        if let Some(id) = container.id {
            let _ = docker.remove_container(&id, Some(force)).await;
        }
    }
    let options = ListNetworksOptions {
        filters: label_filter(value),
    };
    for network in docker
        .list_networks(Some(options))
        .await
        .unwrap_or_default()
    {
        if let Some(id) = network.id {
            let _ = docker.remove_network(&id).await;
        }
    }
}

impl Default for TestLabel {
    fn default() -> Self {
        TestLabel::new()
    }
}

impl Drop for TestLabel {
    fn drop(&mut self) {
        // Drop cannot await inside the test's runtime, so clean up on a thread of its own.
        let value = std::mem::take(&mut self.value);
        let cleanup = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(docker) = connect().await {
                    remove_labelled(&docker, &value).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// A container config on [`TEST_IMAGE`] with the test's label, a 1 s stop timeout and `cmd`.
pub fn busybox(label: &TestLabel, cmd: &[&str], extra_labels: &[(&str, &str)]) -> Config<String> {
    Config {
        image: Some(TEST_IMAGE.to_string()),
        cmd: Some(cmd.iter().map(|s| s.to_string()).collect()),
        labels: Some(label.labels(extra_labels)),
        stop_timeout: Some(1),
        ..Default::default()
    }
}

/// Creates and starts a container; returns its id.
pub async fn run_container(docker: &Docker, name: &str, config: Config<String>) -> String {
    let id = create_container(docker, name, config).await;
    docker
        .start_container(&id, None::<StartContainerOptions<String>>)
        .await
        .unwrap_or_else(|e| panic!("starting {name} failed: {e}"));
    id
}

/// Creates a container without starting it; returns its id.
pub async fn create_container(docker: &Docker, name: &str, config: Config<String>) -> String {
    let options = CreateContainerOptions {
        name: name.to_string(),
        platform: None,
    };
    let created = docker
        .create_container(Some(options), config)
        .await
        .unwrap_or_else(|e| panic!("creating {name} failed: {e}"));
    created.id
}

/// A platform worker under test, with its channels.
pub struct WorkerUnderTest {
    pub updates: mpsc::Receiver<Update>,
    pub requests: Option<mpsc::Sender<Request>>,
    pub task: JoinHandle<()>,
    /// Updates received while waiting for something else, in arrival order.
    backlog: VecDeque<Update>,
}

impl WorkerUnderTest {
    /// Spawns `pilothouse::platform::docker::run` for `target` on `host`.
    pub fn start(target: &str, host: Option<String>) -> WorkerUnderTest {
        let (updates_tx, updates) = mpsc::channel(1024);
        let (requests_tx, requests_rx) = mpsc::channel(16);
        let task = tokio::spawn(pilothouse::platform::docker::run(
            target.to_string(),
            host,
            updates_tx,
            requests_rx,
        ));
        WorkerUnderTest {
            updates,
            requests: Some(requests_tx),
            task,
            backlog: VecDeque::new(),
        }
    }

    /// The first update (backlog first, then new ones) that `pick` accepts; panics naming
    /// `what` when none comes `within` the time.
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        within: Duration,
        mut pick: impl FnMut(&Update) -> Option<T>,
    ) -> T {
        if let Some(index) = self.backlog.iter().position(|u| pick(u).is_some()) {
            let update = self
                .backlog
                .remove(index)
                .expect("the index was just found");
            return pick(&update).expect("the update was just picked");
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let next = tokio::time::timeout_at(deadline, self.updates.recv()).await;
            match next {
                Err(_) => panic!("timed out after {within:?} waiting for {what}"),
                Ok(None) => panic!("the worker closed its updates while waiting for {what}"),
                Ok(Some(update)) => match pick(&update) {
                    Some(found) => return found,
                    None => self.keep(update),
                },
            }
        }
    }

    /// Every update that arrives within `within`, for checking what did not come.
    pub async fn collect_for(&mut self, within: Duration) -> Vec<Update> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out: Vec<Update> = self.backlog.drain(..).collect();
        while let Ok(Some(update)) = tokio::time::timeout_at(deadline, self.updates.recv()).await {
            out.push(update);
        }
        out
    }

    /// Keeps an update for later waits; stats of other containers are not worth keeping.
    fn keep(&mut self, update: Update) {
        if !matches!(update, Update::Stats { .. }) {
            self.backlog.push_back(update);
        }
    }

    /// Sends a request that replies, and waits for the reply while keeping the updates.
    pub async fn ask(
        &mut self,
        within: Duration,
        make: impl FnOnce(oneshot::Sender<Result<String, String>>) -> Request,
    ) -> Result<String, String> {
        let (reply_tx, mut reply_rx) = oneshot::channel();
        self.send(make(reply_tx)).await;
        let deadline = tokio::time::Instant::now() + within;
        loop {
            tokio::select! {
                reply = &mut reply_rx => return reply.expect("the worker dropped the reply"),
                update = self.updates.recv() => match update {
                    Some(update) => self.keep(update),
                    None => panic!("the worker closed its updates before replying"),
                },
                () = tokio::time::sleep_until(deadline) => panic!("no reply within {within:?}"),
            }
        }
    }

    /// Sends a request that does not reply.
    pub async fn send(&self, request: Request) {
        let requests = self
            .requests
            .as_ref()
            .expect("the worker's requests are open");
        requests
            .send(request)
            .await
            .expect("the worker takes requests");
    }

    /// Applies every update (backlog first, then new ones) to `store` until `done` holds for
    /// it; panics naming `what` when it does not `within` the time.
    pub async fn feed_until(
        &mut self,
        store: &mut Store,
        what: &str,
        within: Duration,
        mut done: impl FnMut(&mut Store) -> bool,
    ) {
        for update in self.backlog.drain(..) {
            store.apply(&update);
        }
        let deadline = tokio::time::Instant::now() + within;
        while !done(store) {
            let next = tokio::time::timeout_at(deadline, self.updates.recv()).await;
            match next {
                Err(_) => panic!("timed out after {within:?} waiting for {what}"),
                Ok(None) => panic!("the worker closed its updates while waiting for {what}"),
                Ok(Some(update)) => {
                    store.apply(&update);
                }
            }
        }
    }

    /// Waits for the snapshot and returns its replicas.
    pub async fn snapshot(&mut self) -> Vec<pilothouse::model::Replica> {
        self.wait_for("the snapshot", Duration::from_secs(10), |u| match u {
            Update::Snapshot { replicas, .. } => Some(replicas.clone()),
            _ => None,
        })
        .await
    }

    /// Closes the requests (as the app does on quit) and waits for the worker to end.
    pub async fn stop(mut self) {
        self.requests = None;
        tokio::time::timeout(Duration::from_secs(5), &mut self.task)
            .await
            .expect("the worker ends within 5 s of its requests closing")
            .expect("the worker did not panic");
    }
}

pub mod autoscale;
pub mod prometheus;
pub mod rollout;

/// Where [`Signals`] appears inside a test container.
pub const SIGNALS_MOUNT: &str = "/signals";

/// A directory of this test's, bind-mounted into its containers at [`SIGNALS_MOUNT`], through
/// which the test tells a container's script when to go on and scripts take turns, so output
/// comes in an order the test decides rather than one the scheduler does.
pub struct Signals {
    dir: tempfile::TempDir,
}

impl Signals {
    pub fn new() -> Signals {
        Signals {
            dir: tempfile::tempdir().expect("signals dir"),
        }
    }

    /// Mounts the directory into a container's config.
    pub fn mount(&self, mut config: Config<String>) -> Config<String> {
        let bind = format!("{}:{SIGNALS_MOUNT}", self.dir.path().display());
        let host = config.host_config.get_or_insert_with(Default::default);
        host.binds.get_or_insert_with(Vec::new).push(bind);
        config
    }

    /// Raises signal `name` for the scripts waiting on it.
    pub fn raise(&self, name: &str) {
        std::fs::write(self.dir.path().join(name), b"").expect("raise a signal");
    }

    /// Waits until a script raised `name`; panics after `within`.
    pub async fn raised(&self, name: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.dir.path().join(name).exists() {
            assert!(
                Instant::now() < deadline,
                "no container raised {name} within {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Default for Signals {
    fn default() -> Self {
        Signals::new()
    }
}

/// A shell step that waits for signal `name` (see [`Signals`]).
pub fn wait_signal(name: &str) -> String {
    format!("while [ ! -e {SIGNALS_MOUNT}/{name} ]; do usleep 10000; done")
}

/// A shell step that raises signal `name` (see [`Signals`]).
pub fn raise_signal(name: &str) -> String {
    format!("touch {SIGNALS_MOUNT}/{name}")
}

/// Builds `tag` (a `pilothouse-test/...` name) from [`TEST_IMAGE`] and the Dockerfile lines
/// in `body`, with no registry: the build context holds only the Dockerfile. Safe across test
/// processes (the same lock as the test image); a rebuild of an unchanged body comes from the
/// engine's build cache.
pub async fn build_image(docker: &Docker, tag: &str, body: &str) {
    use bollard::image::BuildImageOptions;
    assert!(
        tag.starts_with("pilothouse-test/"),
        "test images are pilothouse-test/...: {tag}"
    );
    ensure_test_image(docker).await;
    let _guard = IMAGE_BUILD.lock().await;
    let lock = ProcessLock::acquire(&std::env::temp_dir().join("pilothouse-test-image.lock"));
    let dir = tempfile::tempdir().expect("context dir");
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM {TEST_IMAGE}\n{body}"),
    )
    .expect("write the Dockerfile");
    let tar = Command::new("tar")
        .args(["--numeric-owner", "-C"])
        .arg(dir.path())
        .args(["-cf", "-", "Dockerfile"])
        .output()
        .expect("tar runs");
    assert!(
        tar.status.success(),
        "tar failed: {}",
        String::from_utf8_lossy(&tar.stderr)
    );
    let options = BuildImageOptions {
        dockerfile: "Dockerfile".to_string(),
        t: tag.to_string(),
        rm: true,
        forcerm: true,
        ..Default::default()
    };
    let mut progress = docker.build_image(options, None, Some(tar.stdout.into()));
    while let Some(step) = progress.next().await {
        match step {
            Ok(info) => {
                if let Some(error) = info.error {
                    panic!("building {tag} failed: {error}");
                }
            }
            Err(err) => panic!("building {tag} failed: {err}"),
        }
    }
    drop(lock);
    docker
        .inspect_image(tag)
        .await
        .unwrap_or_else(|e| panic!("{tag} was not built: {e}"));
}
