//! The console with 10,000 Kubernetes pods in one namespace, in two shapes: 10,000 bare pods
//! (10,000 rows, like a pods view) and 10,000 pods of 20 Deployments. Measured: applying the
//! snapshot, the first full frame, a filter keystroke with its redraw, moving the selection,
//! and 100 pod updates followed by a frame, on a 200x50 test terminal.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokio::sync::mpsc;

use pilothouse::actuator::{Actuator, AuditLog};
use pilothouse::config::Config;
use pilothouse::keymap::Keymap;
use pilothouse::model::{
    ConnState, Controller, CpuLimit, Health, PlatformKind, PortMapping, Replica, ReplicaDetails,
    Security, WorkloadKind,
};
use pilothouse::platform::Update;
use pilothouse::store::Store;
use pilothouse::theme::Theme;
use pilothouse::ui::app::App;

const TARGET: &str = "sandbox";
const NAMESPACE: &str = "bench";
const PODS: usize = 10_000;
const DEPLOYMENTS: usize = 20;

/// How the pods are owned.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// No controller: every pod is a workload (a row) of its own.
    BarePods,
    /// Pods spread evenly over [`DEPLOYMENTS`] Deployments.
    Deployments,
}

impl Shape {
    fn label(self) -> &'static str {
        match self {
            Shape::BarePods => "10000 bare pods",
            Shape::Deployments => "10000 pods of 20 deployments",
        }
    }
}

/// The fixed clock of the benchmark.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 12, 4, 31)
        .single()
        .unwrap_or_default()
}

fn deployment_name(i: usize) -> String {
    format!("svc{:02}", i % DEPLOYMENTS)
}

/// A pod as the Kubernetes platform reports it: labels, a container port, a CPU limit, its
/// workload, and what its spec tells of env and security.
fn pod(shape: Shape, i: usize) -> Replica {
    let app = deployment_name(i);
    let hash = format!(
        "{:08x}",
        (i / DEPLOYMENTS).wrapping_mul(2_654_435_761) % 0xffff_ffff
    );
    let name = format!("{app}-{}-{:05}", &hash[..6], i);
    let workload = match shape {
        Shape::BarePods => (WorkloadKind::Pod, format!("{NAMESPACE}/{name}")),
        Shape::Deployments => (WorkloadKind::Deployment, format!("{NAMESPACE}/{app}")),
    };
    let labels: BTreeMap<String, String> = [
        ("app", app.clone()),
        ("pod-template-hash", hash),
        (
            "tier",
            if i.is_multiple_of(3) {
                "backend"
            } else {
                "frontend"
            }
            .to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let started = now() - TimeDelta::seconds(600 + (i as i64 * 37) % 90_000);
    Replica {
        id: format!("0b6f{i:04x}-5c2e-4f7a-9d1b-{i:012x}"),
        name,
        image: format!("registry.local/team{}/{app}:1.{}", i % 7, i % 5),
        state: "running".to_string(),
        status: "Running".to_string(),
        health: Some(if i.is_multiple_of(97) {
            Health::Unhealthy
        } else {
            Health::Healthy
        }),
        created: Some(started - TimeDelta::seconds(4)),
        started_at: Some(started),
        restart_count: u64::from(i.is_multiple_of(11)),
        ports: vec![PortMapping {
            container_port: 8080,
            protocol: "tcp".to_string(),
            host_port: None,
            host_ip: None,
        }],
        labels,
        details: Some(ReplicaDetails {
            env: vec![
                ("LOG_LEVEL".to_string(), "info".to_string()),
                ("DATABASE_PASSWORD".to_string(), "hunter2".to_string()),
            ],
            security: Security {
                user: "1000".to_string(),
                read_only_rootfs: true,
                ..Security::default()
            },
            command: vec!["/app/server".to_string()],
        }),
        cpu_limit: Some(CpuLimit::Cores(0.5)),
        workload: Some(workload),
    }
}

fn pods(shape: Shape) -> Vec<Replica> {
    (0..PODS).map(|i| pod(shape, i)).collect()
}

fn controllers(shape: Shape) -> Vec<Controller> {
    let Shape::Deployments = shape else {
        return Vec::new();
    };
    (0..DEPLOYMENTS)
        .map(|i| Controller {
            kind: WorkloadKind::Deployment,
            name: format!("{NAMESPACE}/{}", deployment_name(i)),
            desired: (PODS / DEPLOYMENTS) as u64,
            image: format!(
                "registry.local/team{}/{}:1.{}",
                i % 7,
                deployment_name(i),
                i % 5
            ),
            revision: Some(3),
            paused: false,
            rollout: None,
            scaled_by: None,
            revisions: Vec::new(),
        })
        .collect()
}

/// What a Kubernetes worker sends on connecting: its state, the pods, the controllers.
fn first_updates(shape: Shape) -> Vec<Update> {
    vec![
        Update::Connection {
            target: TARGET.to_string(),
            state: ConnState::Connected {
                version: "v1.33.0".to_string(),
                api_version: "v1".to_string(),
                engine_id: "sandbox".to_string(),
            },
        },
        Update::Snapshot {
            target: TARGET.to_string(),
            replicas: pods(shape),
            services: Vec::new(),
        },
        Update::Controllers {
            target: TARGET.to_string(),
            controllers: controllers(shape),
        },
    ]
}

fn store_with(updates: &[Update]) -> Store {
    let mut store = Store::new(60);
    store.add_target(TARGET, PlatformKind::Kubernetes);
    for u in updates {
        store.apply(u);
    }
    store
}

fn app_over(store: Store) -> App {
    let (outcomes, _) = mpsc::unbounded_channel();
    let audit = AuditLog::new(std::env::temp_dir().join("pilothouse-bench-kube-audit.jsonl"));
    let actuator = Actuator::new(false, audit, HashMap::new(), outcomes);
    let mut app = App::new(
        Config::default(),
        Theme::dark(),
        Keymap::default_bindings(),
        store,
        actuator,
        HashMap::new(),
    );
    app.now = now();
    app
}

fn frame(terminal: &mut Terminal<TestBackend>, app: &mut App) {
    if let Err(e) = terminal.draw(|f| pilothouse::ui::draw(f, app)) {
        panic!("drawing on the test terminal failed: {e}");
    }
}

fn terminal() -> Terminal<TestBackend> {
    match Terminal::new(TestBackend::new(200, 50)) {
        Ok(t) => t,
        Err(e) => panic!("no test terminal: {e}"),
    }
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

/// An app that has drawn its first frame, as the operator first sees it.
fn drawn_app(shape: Shape, terminal: &mut Terminal<TestBackend>) -> App {
    let mut app = app_over(store_with(&first_updates(shape)));
    frame(terminal, &mut app);
    app
}

fn snapshot(c: &mut Criterion, shape: Shape) {
    c.bench_function(&format!("apply the snapshot, {}", shape.label()), |b| {
        b.iter_batched(
            || first_updates(shape),
            |updates| store_with(&updates),
            BatchSize::LargeInput,
        )
    });
}

fn first_frame(c: &mut Criterion, shape: Shape) {
    c.bench_function(&format!("first full frame, {}", shape.label()), |b| {
        b.iter_batched(
            || (store_with(&first_updates(shape)), terminal()),
            |(store, mut terminal)| {
                let mut app = app_over(store);
                frame(&mut terminal, &mut app);
                app
            },
            BatchSize::LargeInput,
        )
    });
}

/// `/` then one character per iteration, with the redraw after each: the filter is typed
/// one character longer, then shortened again by Backspace, so every keystroke re-filters.
fn filter_keystroke(c: &mut Criterion, shape: Shape) {
    let mut terminal = terminal();
    let mut app = drawn_app(shape, &mut terminal);
    app.on_key(key(KeyCode::Char('/')));
    for ch in "svc1".chars() {
        app.on_key(key(KeyCode::Char(ch)));
    }
    frame(&mut terminal, &mut app);
    let mut longer = false;
    c.bench_function(
        &format!("filter keystroke and redraw, {}", shape.label()),
        |b| {
            b.iter(|| {
                longer = !longer;
                let code = if longer {
                    KeyCode::Char('2')
                } else {
                    KeyCode::Backspace
                };
                app.on_key(key(code));
                frame(&mut terminal, &mut app);
            })
        },
    );
}

/// `/` and a first character typed from no filter at all, with its redraw.
fn first_filter_keystroke(c: &mut Criterion, shape: Shape) {
    let mut terminal = terminal();
    let mut app = drawn_app(shape, &mut terminal);
    c.bench_function(
        &format!("/ then one character and redraw, {}", shape.label()),
        |b| {
            b.iter(|| {
                app.on_key(key(KeyCode::Char('/')));
                frame(&mut terminal, &mut app);
                app.on_key(key(KeyCode::Char('3')));
                frame(&mut terminal, &mut app);
                app.on_key(key(KeyCode::Esc));
            })
        },
    );
}

/// `j` and the redraw, wrapping to the top with `g` now and then so the cursor keeps moving.
fn move_selection(c: &mut Criterion, shape: Shape) {
    let mut terminal = terminal();
    let mut app = drawn_app(shape, &mut terminal);
    let mut moved = 0usize;
    c.bench_function(
        &format!("move the selection and redraw, {}", shape.label()),
        |b| {
            b.iter(|| {
                moved += 1;
                let code = if moved.is_multiple_of(200) {
                    KeyCode::Char('g')
                } else {
                    KeyCode::Char('j')
                };
                app.on_key(key(code));
                frame(&mut terminal, &mut app);
            })
        },
    );
}

/// 100 pods changed (restarted, readiness flipped) as a watch reports them, then a frame.
fn pod_updates(c: &mut Criterion, shape: Shape) {
    let mut terminal = terminal();
    let mut app = drawn_app(shape, &mut terminal);
    let mut round = 0usize;
    c.bench_function(
        &format!("100 pod updates then a frame, {}", shape.label()),
        |b| {
            b.iter_batched(
                || {
                    round += 1;
                    (0..100)
                        .map(|k| {
                            let mut p = pod(shape, (round * 100 + k * 97) % PODS);
                            p.restart_count = round as u64;
                            p.health = Some(if round.is_multiple_of(2) {
                                Health::Healthy
                            } else {
                                Health::Starting
                            });
                            Update::Replica {
                                target: TARGET.to_string(),
                                replica: p,
                            }
                        })
                        .collect::<Vec<_>>()
                },
                |updates| {
                    for u in updates {
                        app.on_update(u);
                    }
                    frame(&mut terminal, &mut app);
                },
                BatchSize::SmallInput,
            )
        },
    );
}

fn bare_pods(c: &mut Criterion) {
    run_all(c, Shape::BarePods);
}

fn deployments(c: &mut Criterion) {
    run_all(c, Shape::Deployments);
}

fn run_all(c: &mut Criterion, shape: Shape) {
    snapshot(c, shape);
    first_frame(c, shape);
    filter_keystroke(c, shape);
    first_filter_keystroke(c, shape);
    move_selection(c, shape);
    pod_updates(c, shape);
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bare_pods, deployments
}
criterion_main!(benches);
