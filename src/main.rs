//! The `pilothouse` binary: parses the command line and starts the console.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use color_eyre::eyre::{Result, WrapErr, eyre};
use tokio::sync::mpsc;

use pilothouse::actuator::{Actuator, AuditLog};
use pilothouse::autoscaler::{self, observe, setup};
use pilothouse::cli::{self, Cli, Command};
use pilothouse::config::Config;
use pilothouse::daemon::service;
use pilothouse::keymap::Keymap;
use pilothouse::logging;
use pilothouse::metrics::PrometheusSource;
use pilothouse::paths::Paths;
use pilothouse::platform::kubernetes::config as kube_config;
use pilothouse::platform::kubernetes::prom::PodQueries;
use pilothouse::store::Store;
use pilothouse::theme::{self, Theme};
use pilothouse::ui::rules_ctl::Link;
use pilothouse::ui::{app::App, tui};

mod demo;

/// How long leaving the console waits for the autoscaler's cycles in flight.
const ENGINE_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
/// How long leaving the console waits for actions in flight (a scale, a restart) to finish.
const ACTION_GRACE: std::time::Duration = std::time::Duration::from_secs(20);

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(report) => {
            eprintln!("pilothouse: {}", describe(&report));
            ExitCode::from(1)
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    // One-shot subcommands need no config and no terminal.
    match &cli.command {
        Some(Command::Completions { shell }) => {
            let mut out = Vec::new();
            cli::write_completions(*shell, &mut out);
            return print_all(&out);
        }
        Some(Command::Man) => {
            let mut out = Vec::new();
            cli::write_man_page(&mut out)?;
            return print_all(&out);
        }
        Some(Command::Rules { command }) => return Ok(pilothouse::rules::run(command)),
        Some(Command::Sandbox {
            listen,
            demo,
            pods,
            kubeconfig_out,
            speed,
        }) => {
            let options = demo::SandboxArgs {
                listen: *listen,
                demo: *demo,
                pods: *pods,
                kubeconfig_out: kubeconfig_out.clone(),
                speed: *speed,
            };
            return demo::serve_sandbox(options);
        }
        Some(Command::Demo { speed }) => {
            let speed = *speed;
            return console_main(cli, Some(speed));
        }
        _ => {}
    }

    // Paths and config: a bad file stops here, before the terminal is taken.
    let paths = Paths::from_env()?;
    if cli.version {
        print_version(&paths);
        return Ok(ExitCode::SUCCESS);
    }
    let mut config = Config::load(&paths)?;
    let kube = kube_selection(&cli);
    if let Some(mut command) = cli.command {
        command.take_docker_host(cli.docker_host.as_deref());
        // One-shot commands read `--read-only` from the config they are given.
        config.read_only |= cli.read_only;
        if cli.prometheus.is_some() {
            config.autoscaler.prometheus = cli.prometheus.clone();
        }
        return Ok(one_shot(command, &paths, &config, &kube));
    }
    if let Some(address) = &cli.prometheus {
        PrometheusSource::new(address).wrap_err("--prometheus")?;
    }
    if cli.daemon {
        return daemon(cli, config, paths);
    }
    console_main(cli, None)
}

/// Open the console: on the targets of the command line and config.toml, or (`demo` set, with
/// its speed) on a sandbox cluster of its own with files in a temporary directory.
fn console_main(cli: Cli, demo: Option<Option<f64>>) -> Result<ExitCode> {
    // Paths and config: a bad file stops here, before the terminal is taken.
    let demo = demo.map(demo::Demo::prepare).transpose()?;
    let paths = match &demo {
        Some(demo) => demo.paths.clone(),
        None => Paths::from_env()?,
    };
    let config = match &demo {
        Some(demo) => demo.config.clone(),
        None => Config::load(&paths)?,
    };
    let theme_name = cli.theme.clone().unwrap_or_else(|| config.theme.clone());
    let theme = Theme::resolve(&theme_name, &paths, theme::no_color_requested())?;
    let keymap_name = cli.keymap.clone().unwrap_or_else(|| config.keymap.clone());
    let keymap = Keymap::resolve(&keymap_name, &paths)?;

    // The console needs a terminal of its own.
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        return Err(eyre!(
            "the console needs a terminal on stdin and stdout; run it in a terminal, or use a \
             subcommand (see --help)"
        ));
    }

    // Hooks: a panic gives the terminal back before anything is printed.
    install_hooks()?;
    let _log_guard = logging::init(&paths.log_file())
        .wrap_err_with(|| format!("cannot open the log file {}", paths.log_file().display()))?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "console starting");

    // One thread runs the console and its workers: they spend their time waiting on sockets, and
    // handing wake-ups between threads cost more CPU than the work itself on an idle console.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .wrap_err("cannot start the async runtime")?;
    let launch = match &demo {
        Some(demo) => Launch {
            docker: Vec::new(),
            kube: vec![demo.target.clone()],
            kube_source: Some(kube_config::Selection {
                kubeconfig: Some(demo.kubeconfig.clone()),
                ..kube_config::Selection::default()
            }),
            rules_dir: demo.paths.rules_dir(),
            hint: Some(demo::HINT.to_string()),
        },
        None => Launch {
            docker: setup::docker_targets(cli.docker_host.as_deref(), &config),
            kube: setup::kube_targets(kube_selection(&cli), &config).map_err(|e| eyre!(e))?,
            kube_source: setup::kube_source(kube_selection(&cli), &config),
            rules_dir: cli.rules.clone().unwrap_or_else(|| paths.rules_dir()),
            hint: None,
        },
    };
    let exit = runtime.block_on(console(cli, launch, config, theme, keymap, paths))?;
    drop(demo);
    tracing::info!(?exit, "console stopped");
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    Ok(ExitCode::SUCCESS)
}

/// Run the autoscaler headless until SIGTERM; logs go to stdout as JSON lines.
fn daemon(cli: Cli, config: Config, paths: Paths) -> Result<ExitCode> {
    logging::init_json_stdout();
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "daemon starting");
    let options = service::Options {
        kube: kube_selection(&cli),
        leader_election: cli.leader_election.clone(),
        rules_dir: cli.rules,
        docker_host: cli.docker_host,
        prometheus: cli.prometheus,
        listen: cli.listen,
        read_only: cli.read_only,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .wrap_err("cannot start the async runtime")?;
    let result = runtime.block_on(service::run(options, config, paths));
    // Scales cut short by the stop are audited already; their tasks are not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    result?;
    Ok(ExitCode::SUCCESS)
}

/// The commands that connect to a target, do one thing and exit with its code.
fn one_shot(
    command: Command,
    paths: &Paths,
    config: &Config,
    kube: &kube_config::Selection,
) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pilothouse: cannot start the async runtime: {e}");
            return ExitCode::from(pilothouse::ops::exit::FAILED);
        }
    };
    let code = runtime.block_on(async {
        match command {
            Command::Rollout { .. } | Command::Rollback { .. } | Command::History { .. } => {
                pilothouse::rollout::cli::run(command, paths, config, kube).await
            }
            other => pilothouse::ops::run(other, paths, config, kube).await,
        }
    });
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    ExitCode::from(code)
}

/// What the console opens: its targets, its rules, and a line for a newcomer.
struct Launch {
    docker: Vec<pilothouse::config::DockerTarget>,
    kube: Vec<kube_config::Target>,
    /// Where `:ctx` finds the contexts that are not open (see `setup::kube_source`).
    kube_source: Option<kube_config::Selection>,
    rules_dir: std::path::PathBuf,
    hint: Option<String>,
}

/// The Kubernetes contexts the command line chose.
fn kube_selection(cli: &Cli) -> kube_config::Selection {
    kube_config::Selection {
        kubeconfig: cli.kubeconfig.clone(),
        context: cli.context.clone(),
        namespace: cli.namespace.clone(),
    }
}

/// Start one worker per target and the autoscaler, then run the console until it ends.
async fn console(
    cli: Cli,
    launch: Launch,
    config: Config,
    theme: Theme,
    keymap: Keymap,
    paths: Paths,
) -> Result<tui::Exit> {
    // Workers, and the one task that hands their updates to the engine's store and the console.
    let lb = setup::load_balancer(&config).map_err(|e| eyre!(e))?;
    let state_dir = Some(paths.state_dir.clone());
    let platforms = setup::start(launch.docker, launch.kube, lb, state_dir);
    let mut store = Store::new(config.ui.stats_history);
    platforms.register(&mut store);
    let observed = setup::observed_store(&platforms, config.ui.stats_history);
    let pod_usage = PodQueries::configured(&config.kubernetes).map_err(|e| eyre!(e))?;
    let contexts = setup::ContextOpener::new(
        launch.kube_source,
        platforms.spawner.clone(),
        Arc::clone(&observed),
    )
    .with_pod_usage(pod_usage);
    let (console_tx, updates) = mpsc::channel(setup::UPDATE_QUEUE);
    tokio::spawn(observe::fan_out(
        platforms.updates,
        Arc::clone(&observed),
        Some(console_tx),
    ));

    // The actuator, shared by the operator and the autoscaler.
    let (outcomes_tx, outcomes) = mpsc::unbounded_channel();
    let read_only = cli.read_only || config.read_only;
    let audit = AuditLog::new(paths.audit_log());
    let actuator = Actuator::new(read_only, audit, platforms.workers.clone(), outcomes_tx);

    // The autoscaler, unless config.toml leaves scaling to a daemon.
    let rules_dir = launch.rules_dir;
    let engine = config.autoscaler.enabled.then(|| {
        let (rules, errors) = autoscaler::load_dir(&rules_dir);
        let settings = setup::settings(
            &config,
            &paths,
            rules_dir.clone(),
            cli.prometheus.clone(),
            platforms.endpoints.clone(),
            "console",
        );
        autoscaler::start(settings, rules, errors, observed, actuator.clone())
    });
    let (previews_tx, previews) = mpsc::unbounded_channel();
    let link = engine.as_ref().map(|engine| Link {
        commands: engine.commands(),
        previews: previews_tx,
    });

    // The console.
    let mut feeds = tui::Feeds {
        updates,
        outcomes,
        rules: engine.as_ref().map(|engine| engine.status.clone()),
        previews,
    };
    let mut app = App::new(config, theme, keymap, store, actuator, platforms.workers);
    app.attach_rollouts(paths.state_dir.clone(), platforms.endpoints);
    if engine.is_none() {
        // The rules are still shown (and found by `e`), each saying why it does not run here.
        app.on_rules(Arc::new(idle_rules(&rules_dir)));
    }
    app.attach_autoscaler(rules_dir, link);
    app.attach_contexts(contexts);
    if let Some(hint) = launch.hint {
        app.hint = Some(hint);
    }
    let exit = tui::run(&mut app, &mut feeds).await?;
    if let Some(engine) = engine {
        engine.stop(ENGINE_GRACE).await;
    }
    settle_actions(&app.actuator).await;
    Ok(exit)
}

/// The rules of `dir` as a console without an autoscaler shows them.
fn idle_rules(dir: &std::path::Path) -> autoscaler::Status {
    let (rules, load_errors) = autoscaler::load_dir(dir);
    let why = "the autoscaler is off in this console ([autoscaler] enabled = false)";
    let rules = rules
        .into_iter()
        .map(|loaded| {
            let state = autoscaler::RuleState::Unsupported(why.to_string());
            autoscaler::RuleStatus::new(loaded.file, Arc::new(loaded.rule), state)
        })
        .collect();
    autoscaler::Status {
        rules,
        load_errors,
        metric_servers: Vec::new(),
    }
}

/// Let actions in flight finish before the workers stop, for a bounded time; what is still
/// running then is recorded as interrupted. The terminal is already given back, so this talks
/// on stderr (which may be gone after a hangup: write errors are ignored).
async fn settle_actions(actuator: &Actuator) {
    use std::io::Write;
    let pending = actuator.in_flight();
    if pending.is_empty() {
        return;
    }
    let mut stderr = std::io::stderr();
    let _ = writeln!(
        stderr,
        "pilothouse: waiting up to {}s for: {}",
        ACTION_GRACE.as_secs(),
        pending.join("; ")
    );
    for req in actuator.settle(ACTION_GRACE).await {
        let _ = writeln!(
            stderr,
            "pilothouse: {} did not finish; the audit log records it as interrupted",
            req.describe()
        );
    }
}

fn install_hooks() -> Result<()> {
    let (panic_hook, eyre_hook) = color_eyre::config::HookBuilder::default().into_hooks();
    eyre_hook.install()?;
    let panic_hook = panic_hook.into_panic_hook();
    std::panic::set_hook(Box::new(move |info| {
        tui::restore();
        panic_hook(info);
    }));
    Ok(())
}

/// An error and its causes on one line, each cause only where it adds to what came before:
/// a config error already quotes its parser's message, and a parser's snippet of the file
/// (several lines ending in the message) is left out.
fn describe(report: &color_eyre::Report) -> String {
    let mut out = String::new();
    for cause in report.chain() {
        let full = cause.to_string();
        let text = full
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        if text.trim().is_empty() || out.contains(text.trim()) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(text.trim());
    }
    out
}

/// Write `bytes` to stdout; a reader that stops early (`| head`) is not an error.
fn print_all(bytes: &[u8]) -> Result<ExitCode> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(e) => Err(e).wrap_err("cannot write to stdout"),
    }
}

fn print_version(paths: &Paths) {
    println!("pilothouse {}", env!("CARGO_PKG_VERSION"));
    println!("config file: {}", paths.config_file().display());
    println!("themes:      {}", paths.themes_dir().display());
    println!("keymaps:     {}", paths.keymaps_dir().display());
    println!("rules:       {}", paths.rules_dir().display());
    println!("log file:    {}", paths.log_file().display());
    println!("audit log:   {}", paths.audit_log().display());
    println!(
        "state dir:   {} (host locks in locks/ unless [autoscaler] lock_dir says otherwise)",
        paths.state_dir.display()
    );
}
