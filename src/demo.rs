//! `pilothouse demo` and `pilothouse sandbox`: the sandbox cluster started in this process, for
//! a newcomer's console or for tests and benchmarks that need a Kubernetes API server.
//!
//! Not for the sandbox itself (see `pilothouse::sandbox`) or the console (see `main.rs`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use color_eyre::eyre::{Result, WrapErr, eyre};

use pilothouse::config::Config;
use pilothouse::paths::Paths;
use pilothouse::platform::kubernetes::config as kube_config;
use pilothouse::sandbox::{self, Sandbox};

/// The context name the demo's kubeconfig gives the sandbox.
const CONTEXT: &str = "sandbox";

/// What the demo's console says above the key hints of its workloads table.
pub const HINT: &str = "demo: traffic on shop/web rises within seconds and the autoscaler \
                        follows it (a: autoscaler view). To see a bad rollout roll back: select \
                        shop/web, press i, type sandbox/web:1.5-unhealthy, Enter.";

/// A demo ready to open: the sandbox running, its kubeconfig, rules and config in a temporary
/// directory that goes when the demo does.
pub struct Demo {
    pub paths: Paths,
    pub config: Config,
    pub target: kube_config::Target,
    /// The kubeconfig naming the sandbox, where `:ctx` looks for contexts.
    pub kubeconfig: PathBuf,
    // Kept for their lifetimes: the server stops and the directory is removed on drop.
    _sandbox: Sandbox,
    _dir: tempfile::TempDir,
}

impl Demo {
    /// Start the sandbox with the demo's workloads and write what the console reads; `speed`
    /// is in range already (the command line checks it).
    pub fn prepare(speed: Option<f64>) -> Result<Demo> {
        let speed = speed.unwrap_or(sandbox::demo::SPEED);
        let dir = tempfile::Builder::new()
            .prefix("pilothouse-demo-")
            .tempdir()
            .wrap_err("cannot make the demo's temporary directory")?;
        let paths = Paths::under(dir.path());
        let sandbox = Sandbox::spawn(sandbox::Options {
            speed,
            // The demo's day starts where its first burst of traffic comes within seconds.
            start_of_day: Some(sandbox::demo::START_SECONDS_OF_DAY),
            objects: sandbox::demo::objects(),
            ..sandbox::Options::default()
        })
        .wrap_err("cannot start the sandbox cluster")?;

        let rules_dir = paths.rules_dir();
        std::fs::create_dir_all(&rules_dir)
            .wrap_err_with(|| format!("cannot make {}", rules_dir.display()))?;
        for (file, text) in sandbox::demo::rules(CONTEXT) {
            let path = rules_dir.join(&file);
            pilothouse::fsutil::write_atomic(&path, text.as_bytes())
                .wrap_err_with(|| format!("cannot write {}", path.display()))?;
        }
        let kubeconfig = dir.path().join("kubeconfig");
        pilothouse::fsutil::write_atomic(&kubeconfig, sandbox.kubeconfig(CONTEXT, None).as_bytes())
            .wrap_err_with(|| format!("cannot write {}", kubeconfig.display()))?;
        let target = kube_config::resolve(&kube_config::Selection {
            kubeconfig: Some(kubeconfig.clone()),
            context: Some(CONTEXT.to_string()),
            namespace: None,
        })
        .map_err(|e| eyre!(e))?;

        let mut config = Config::default();
        config.autoscaler.prometheus = Some(sandbox.url());
        Ok(Demo {
            paths,
            config,
            target,
            kubeconfig,
            _sandbox: sandbox,
            _dir: dir,
        })
    }
}

/// What `pilothouse sandbox` was asked for.
pub struct SandboxArgs {
    pub listen: SocketAddr,
    pub demo: bool,
    pub pods: usize,
    pub kubeconfig_out: Option<PathBuf>,
    /// In range already (the command line checks it).
    pub speed: Option<f64>,
}

/// The most bare pods `pilothouse sandbox --pods` makes.
const MAX_PODS: usize = 100_000;

/// Serve the sandbox until SIGINT or SIGTERM; prints its URL on stdout once it listens.
pub fn serve_sandbox(args: SandboxArgs) -> Result<ExitCode> {
    if !args.listen.ip().is_loopback() {
        return Err(eyre!(
            "--listen {}: the sandbox listens on loopback addresses only (127.0.0.1, ::1)",
            args.listen
        ));
    }
    if args.pods > MAX_PODS {
        return Err(eyre!("--pods {}: at most {MAX_PODS}", args.pods));
    }
    let speed = args.speed.unwrap_or(1.0);
    let mut objects = if args.demo {
        sandbox::demo::objects()
    } else {
        Vec::new()
    };
    let start_of_day = args.demo.then_some(sandbox::demo::START_SECONDS_OF_DAY);
    if args.pods > 0 {
        objects.extend(bench_pods(args.pods));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .wrap_err("cannot start the async runtime")?;
    runtime.block_on(async {
        let sandbox = Sandbox::start(sandbox::Options {
            listen: args.listen,
            speed,
            start_of_day,
            objects,
            ..sandbox::Options::default()
        })
        .await
        .wrap_err_with(|| format!("cannot start the sandbox on {}", args.listen))?;
        if let Some(path) = &args.kubeconfig_out {
            pilothouse::fsutil::write_atomic(path, sandbox.kubeconfig(CONTEXT, None).as_bytes())
                .wrap_err_with(|| format!("cannot write {}", path.display()))?;
        }
        println!("{}", sandbox.url());
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .wrap_err("cannot listen for SIGTERM")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        sandbox.shutdown();
        Ok::<(), color_eyre::Report>(())
    })?;
    runtime.shutdown_timeout(Duration::from_millis(500));
    Ok(ExitCode::SUCCESS)
}

/// `n` bare pods (no controller) in namespace `bench`, as a benchmark lists them.
fn bench_pods(n: usize) -> Vec<serde_json::Value> {
    let mut objects = Vec::with_capacity(n + 1);
    objects.push(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": { "name": "bench" }
    }));
    for i in 0..n {
        objects.push(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": format!("bench-{i:05}"),
                "namespace": "bench",
                "labels": { "app": "bench", "shard": format!("s{}", i % 16) }
            },
            "spec": {
                "containers": [{
                    "name": "app",
                    "image": "sandbox/bench:1",
                    "ports": [{ "containerPort": 8080, "protocol": "TCP" }],
                    "resources": { "requests": { "cpu": "100m", "memory": "64Mi" } }
                }]
            }
        }));
    }
    objects
}
