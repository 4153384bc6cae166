//! The command line: flags of the console and its subcommands.
//!
//! Not for running anything: `main.rs` acts on what is parsed here.

use clap::{Parser, Subcommand};

/// A keyboard-driven terminal console for containers on Kubernetes clusters and Docker hosts.
#[derive(Debug, Parser)]
#[command(
    name = "pilothouse",
    version,
    disable_version_flag = true,
    about,
    long_about = None
)]
pub struct Cli {
    /// Print the version and the paths of the files in use, then exit.
    #[arg(short = 'V', long)]
    pub version: bool,

    /// Docker host to use instead of the targets in config.toml (unix://, tcp://, http://).
    /// Without it and without targets in config.toml, DOCKER_HOST or the local socket is used.
    #[arg(long, value_name = "URL")]
    pub docker_host: Option<String>,

    /// A kubeconfig file to read instead of KUBECONFIG or ~/.kube/config.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<std::path::PathBuf>,

    /// The kubeconfig context to open (default: the current context); `*` opens every one.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,

    /// Only this Kubernetes namespace (default: the context's namespace, else all).
    #[arg(long, short = 'n', value_name = "NAMESPACE")]
    pub namespace: Option<String>,

    /// Refuse every action (scale, restart, ...) at the actuator; look, don't touch.
    #[arg(long)]
    pub read_only: bool,

    /// Theme name: dark, light, high-contrast, or themes/NAME.toml in the config directory.
    #[arg(long, value_name = "NAME")]
    pub theme: Option<String>,

    /// Keymap name: keymaps/NAME.toml in the config directory, over the default.
    #[arg(long, value_name = "NAME")]
    pub keymap: Option<String>,

    /// Run the autoscaler without a terminal: JSON log lines on stdout, /metrics and /healthz
    /// on --listen, SIGHUP reloads the rules, SIGTERM stops.
    #[arg(long)]
    pub daemon: bool,

    /// The directory of rule files (default: rules/ in the config directory).
    #[arg(long, value_name = "DIR")]
    pub rules: Option<std::path::PathBuf>,

    /// The Prometheus server for rules without a serverAddress, instead of config.toml's.
    #[arg(long, value_name = "URL")]
    pub prometheus: Option<String>,

    /// With --daemon: serve /metrics and /healthz at this address (such as 127.0.0.1:9464;
    /// port 0 picks a free one and logs it).
    #[arg(long, value_name = "ADDR", requires = "daemon")]
    pub listen: Option<std::net::SocketAddr>,

    /// With --daemon: take part in the election of this coordination.k8s.io Lease
    /// (NAMESPACE/NAME) on the Kubernetes context, and let the rules act only while holding
    /// it; the other daemons stand by.
    #[arg(long, value_name = "NAMESPACE/NAME", requires = "daemon")]
    pub leader_election: Option<crate::daemon::leader::LeaseName>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands that do one thing and exit.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open the console on a built-in sandbox cluster with simulated traffic: no cluster, no
    /// Docker and nothing of yours is touched (its files live in a temporary directory).
    Demo {
        /// How much faster than the clock the simulated day runs (above 0, at most 86400).
        #[arg(long, value_name = "FACTOR", value_parser = parse_speed)]
        speed: Option<f64>,
    },
    /// Serve the sandbox cluster's Kubernetes API on a loopback port until interrupted (for
    /// tests and benchmarks).
    #[command(hide = true)]
    Sandbox {
        /// The address to listen on; port 0 picks a free one.
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// Start with the demo's namespaces and workloads.
        #[arg(long)]
        demo: bool,
        /// Start with this many bare pods in namespace `bench`.
        #[arg(long, value_name = "N", default_value_t = 0)]
        pods: usize,
        /// Write a kubeconfig for the server to this file (context `sandbox`).
        #[arg(long, value_name = "FILE")]
        kubeconfig_out: Option<std::path::PathBuf>,
        /// How much faster than the clock the simulated day runs (above 0, at most 86400).
        #[arg(long, value_name = "FACTOR", value_parser = parse_speed)]
        speed: Option<f64>,
    },
    /// Print a shell completion script to stdout.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) to stdout.
    Man,
    /// Check and replay scaling rules.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Roll a workload out to a new image, replica by replica, rolling back by itself when a
    /// health gate fails; or act on a rollout in progress (status, pause, resume, abort).
    ///
    /// Exit codes: 0 done, 1 failed, 2 usage error, 3 could not reach the target, 4 failed and
    /// rolled back.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Rollout {
        #[command(subcommand)]
        command: Option<RolloutCommand>,
        #[command(flatten)]
        start: RolloutArgs,
    },
    /// Roll a workload back to its previous revision, or to --to-revision N, with the same
    /// safety as a rollout.
    Rollback {
        #[command(flatten)]
        target: TargetArgs,
        /// The revision to return to (see `pilothouse history`); default: the one before the
        /// current.
        #[arg(long, value_name = "N")]
        to_revision: Option<u32>,
        #[command(flatten)]
        run: RunArgs,
    },
    /// List the recorded revisions of a workload.
    History {
        #[command(flatten)]
        target: TargetArgs,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Set the replica count of a workload.
    Scale {
        #[command(flatten)]
        target: TargetArgs,
        /// The replica count to set.
        #[arg(value_name = "N")]
        replicas: u64,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// List the workloads of the targets with their replicas, revision and any rollout.
    Status {
        /// Docker host to use instead of the targets in config.toml.
        #[arg(long, value_name = "URL")]
        docker_host: Option<String>,
        /// A target of config.toml by name (default: all of them).
        #[arg(long, value_name = "NAME")]
        target: Option<String>,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
}

impl Command {
    /// Gives the command the global `--docker-host` when it names none of its own, so
    /// `pilothouse --docker-host URL rollout ...` reaches the same engine as
    /// `pilothouse rollout ... --docker-host URL`.
    pub fn take_docker_host(&mut self, global: Option<&str>) {
        let Some(global) = global else {
            return;
        };
        let slot = match self {
            Command::Rollout {
                command: Some(sub), ..
            } => match sub {
                RolloutCommand::Status { target, .. }
                | RolloutCommand::Pause { target }
                | RolloutCommand::Resume { target }
                | RolloutCommand::Abort { target } => &mut target.docker_host,
            },
            Command::Rollout {
                command: None,
                start,
            } => match start.target.as_mut() {
                Some(target) => &mut target.docker_host,
                None => return,
            },
            Command::Rollback { target, .. }
            | Command::History { target, .. }
            | Command::Scale { target, .. } => &mut target.docker_host,
            Command::Status { docker_host, .. } => docker_host,
            Command::Completions { .. }
            | Command::Man
            | Command::Rules { .. }
            | Command::Demo { .. }
            | Command::Sandbox { .. } => return,
        };
        if slot.is_none() {
            *slot = Some(global.to_string());
        }
    }
}

/// The workload a one-shot command works on, and where it runs.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// The workload: PROJECT/SERVICE for a Compose service, NAME for a Pilothouse group; with
    /// --context or --kubeconfig, deployment/NAME, statefulset/NAME (deploy/, sts/) or NAME.
    #[arg(value_name = "WORKLOAD")]
    pub workload: String,
    /// Docker host to use instead of the targets in config.toml (unix://, tcp://, http://).
    #[arg(long, value_name = "URL")]
    pub docker_host: Option<String>,
    /// A target of config.toml by name, when it has several.
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
}

/// How a rollout or rollback runs.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// Stay until the rollout ends and exit with its outcome; without it the rollout runs on
    /// in the background and the command returns once it has started.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: roll back and exit 4 if the rollout has not finished within this time
    /// (such as 90s, 10m).
    #[arg(long, value_name = "DURATION", requires = "wait")]
    pub timeout: Option<String>,
    /// At most this many replicas over the count while rolling (a count or a percentage).
    #[arg(long, value_name = "N|P%")]
    pub max_surge: Option<String>,
    /// At most this many replicas not ready while rolling (a count or a percentage).
    #[arg(long, value_name = "N|P%")]
    pub max_unavailable: Option<String>,
    /// Fail the rollout when a step does not advance within this time (default 10m).
    #[arg(long, value_name = "DURATION")]
    pub progress_deadline: Option<String>,
    /// Readiness probe when the image has no HEALTHCHECK: http://:PORT/PATH or tcp://:PORT,
    /// sent to each new replica's address.
    #[arg(long, value_name = "URL")]
    pub probe: Option<String>,
    /// The HAProxy backend to keep in step (needs [loadbalancer] in config.toml or
    /// --haproxy-socket), as BACKEND:PORT where PORT is the replicas' port.
    #[arg(long, value_name = "BACKEND:PORT")]
    pub backend: Option<String>,
    /// HAProxy's runtime API socket, instead of config.toml's.
    #[arg(long, value_name = "PATH|tcp://ADDR")]
    pub haproxy_socket: Option<String>,
    /// A Prometheus query checked during the rollout, with its condition, such as
    /// "sum(rate(errors[1m])) < 0.01"; read from --prometheus or [autoscaler] prometheus in
    /// config.toml. A reading that breaks it rolls back.
    #[arg(long, value_name = "QUERY OP NUMBER")]
    pub analysis: Option<String>,
    /// Time between analysis readings (default 10s).
    #[arg(long, value_name = "DURATION", requires = "analysis")]
    pub analysis_interval: Option<String>,
    /// Passing analysis readings needed before the rollout is done (default 3).
    #[arg(long, value_name = "N", requires = "analysis")]
    pub analysis_count: Option<u32>,
    /// Inconclusive analysis readings (empty, NaN, no answer) allowed; one more fails the
    /// rollout (default 3).
    #[arg(long, value_name = "N", requires = "analysis")]
    pub analysis_inconclusive: Option<u32>,
    /// Why: recorded as the revision's change cause and in the audit log.
    #[arg(long, value_name = "TEXT")]
    pub cause: Option<String>,
    /// Output: text (a live view on a terminal, one line per step in a pipe) or json (one
    /// object per line, then the outcome).
    #[arg(long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// `pilothouse rollout WORKLOAD --image IMAGE`.
#[derive(Debug, Clone, clap::Args)]
pub struct RolloutArgs {
    #[command(flatten)]
    pub target: Option<TargetArgs>,
    /// The image of the new revision.
    #[arg(long, value_name = "IMAGE", required = true)]
    pub image: Option<String>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `pilothouse rollout status|pause|resume|abort WORKLOAD`.
#[derive(Debug, Clone, Subcommand)]
pub enum RolloutCommand {
    /// Show the rollout in progress, or how the last one ended.
    Status {
        #[command(flatten)]
        target: TargetArgs,
        /// Wait until the rollout ends, and exit with its outcome.
        #[arg(long)]
        wait: bool,
        #[arg(long, value_enum, default_value_t = Output::Text)]
        output: Output,
    },
    /// Pause the rollout in progress after its current step.
    Pause {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Resume a paused rollout.
    Resume {
        #[command(flatten)]
        target: TargetArgs,
    },
    /// Stop the rollout in progress and roll back to the revision it started from.
    Abort {
        #[command(flatten)]
        target: TargetArgs,
    },
}

/// Output formats of the one-shot commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// For people.
    Text,
    /// For programs: stable field names, documented in docs/cli.md.
    Json,
}

/// `pilothouse rules ...`: work with rule files without touching any workload.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Validate rule files; print every error as FILE:LINE:COLUMN: MESSAGE and exit 1 on any.
    Check {
        /// Rule files (YAML, one rule or a list each), or directories whose *.yaml and *.yml
        /// files are checked (drafts skipped).
        #[arg(required = true, value_name = "FILE|DIR")]
        files: Vec<std::path::PathBuf>,
    },
    /// Replay a rule over a metric series (a CSV file, or range queries of a Prometheus) and
    /// print the replica timeline.
    #[command(group(
        clap::ArgGroup::new("series_source")
            .required(true)
            .args(["series", "prometheus"])
    ))]
    Simulate {
        /// A rule file holding one rule.
        #[arg(value_name = "RULE")]
        rule: std::path::PathBuf,
        /// CSV with a header `t,<metric name>...`; t in seconds; an empty cell is a failed query.
        /// At most 100000 evaluations (t / pollingInterval + 1); a longer series exits 1.
        #[arg(long, value_name = "FILE.csv")]
        series: Option<std::path::PathBuf>,
        /// Read the series from this Prometheus instead: one range query per metric, t in seconds
        /// from --from, a step with no sample a failed reading. A metric's own serverAddress wins
        /// over it. A rule with a CPU metric cannot be replayed this way (exit 1).
        #[arg(long, value_name = "URL", requires = "from")]
        prometheus: Option<String>,
        /// Start of the range: RFC 3339 (2024-05-01T12:00:00Z), `now`, or a time ago such as
        /// -30m, -1h, -2d (units s, m, h, d).
        #[arg(
            long,
            value_name = "TIME",
            requires = "prometheus",
            allow_hyphen_values = true
        )]
        from: Option<String>,
        /// End of the range, written as --from is.
        #[arg(
            long,
            value_name = "TIME",
            requires = "prometheus",
            default_value = "now",
            allow_hyphen_values = true
        )]
        to: String,
        /// Time between samples of the range queries, such as 1s or 1m (default: the rule's
        /// pollingInterval). The rule is still evaluated every pollingInterval.
        #[arg(long, value_name = "DURATION", requires = "prometheus")]
        step: Option<String>,
        /// Replicas at t=0 (default: the rule's minReplicas).
        #[arg(long, value_name = "N")]
        initial_replicas: Option<u32>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = RulesOutput::Csv)]
        output: RulesOutput,
    },
}

/// Output formats of `rules simulate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RulesOutput {
    /// One CSV row per evaluation, with a header.
    Csv,
    /// One JSON array of evaluations.
    Json,
}

/// Write the man page of the whole command line to `out`.
pub fn write_man_page(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    use clap::CommandFactory;
    clap_mangen::Man::new(Cli::command()).render(out)
}

/// Write a completion script for `shell` to `out`.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    use clap::CommandFactory;
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "pilothouse", out);
}

/// The fastest the simulated clock runs: a day a second.
pub const MAX_SPEED: f64 = 86_400.0;

/// `--speed`: a finite number above 0 and at most [`MAX_SPEED`]; anything else is a usage
/// error that names the range.
fn parse_speed(text: &str) -> Result<f64, String> {
    let range = "give a number above 0 and at most 86400 (a day a second)";
    match text.trim().parse::<f64>() {
        Ok(speed) if speed.is_finite() && speed > 0.0 && speed <= MAX_SPEED => Ok(speed),
        Ok(_) => Err(format!("out of range: {range}")),
        Err(_) => Err(format!("not a number: {range}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_names_the_program_and_documents_read_only() {
        let mut out = Vec::new();
        write_man_page(&mut out).unwrap();
        let page = String::from_utf8(out).unwrap();
        assert!(page.contains(".TH pilothouse"), "{page}");
        assert!(
            page.contains(env!("CARGO_PKG_VERSION")),
            "the page names the version"
        );
        assert!(page.contains("read\\-only"), "{page}");
    }

    #[test]
    fn bash_completions_offer_the_subcommands() {
        let mut out = Vec::new();
        write_completions(clap_complete::Shell::Bash, &mut out);
        let script = String::from_utf8(out).unwrap();
        assert!(script.contains("completions") && script.contains("--docker-host"));
    }

    #[test]
    fn the_global_docker_host_reaches_the_one_shot_commands() {
        let parsed = |args: &[&str]| {
            let cli = Cli::parse_from(args);
            let mut command = cli.command.expect("a command");
            command.take_docker_host(cli.docker_host.as_deref());
            command
        };
        let Command::Scale { target, .. } = parsed(&[
            "pilothouse",
            "--docker-host",
            "unix:///a.sock",
            "scale",
            "web",
            "2",
        ]) else {
            panic!("scale");
        };
        assert_eq!(target.docker_host.as_deref(), Some("unix:///a.sock"));
        // The command's own flag wins.
        let Command::Rollout { start, .. } = parsed(&[
            "pilothouse",
            "--docker-host",
            "unix:///a.sock",
            "rollout",
            "web",
            "--image",
            "x",
            "--docker-host",
            "unix:///b.sock",
        ]) else {
            panic!("rollout");
        };
        let host = start.target.and_then(|t| t.docker_host);
        assert_eq!(host.as_deref(), Some("unix:///b.sock"));
        let Command::Status { docker_host, .. } =
            parsed(&["pilothouse", "--docker-host", "tcp://127.0.0.1:1", "status"])
        else {
            panic!("status");
        };
        assert_eq!(docker_host.as_deref(), Some("tcp://127.0.0.1:1"));
    }

    #[test]
    fn a_demo_speed_outside_its_range_is_a_usage_error_naming_the_flag_and_the_range() {
        for bad in ["0", "-1", "86401", "NaN", "inf", "fast"] {
            let flag = format!("--speed={bad}");
            let err = Cli::try_parse_from(["pilothouse", "demo", flag.as_str()]).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
            let text = err.to_string();
            assert!(text.contains("--speed <FACTOR>"), "{bad}: {text}");
            assert!(text.contains("above 0 and at most 86400"), "{bad}: {text}");
        }
        for good in ["0.5", "60", "86400"] {
            let cli = Cli::try_parse_from(["pilothouse", "sandbox", "--speed", good]).unwrap();
            let Some(Command::Sandbox { speed, .. }) = cli.command else {
                panic!("{good}: not the sandbox command");
            };
            assert_eq!(speed, Some(good.parse().unwrap()));
        }
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
