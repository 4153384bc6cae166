//! A console with made-up but realistic workloads, for snapshot tests and the render
//! benchmark. Everything is fixed: names, numbers and the clock, so screens are repeatable.

#![allow(dead_code)] // each test binary uses a different part of the fixture

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use tokio::sync::mpsc;

use pilothouse::actuator::{Actuator, AuditLog};
use pilothouse::config::Config;
use pilothouse::keymap::Keymap;
use pilothouse::model::{
    ConnState, CpuLimit, EngineEvent, Health, PlatformKind, PortMapping, Replica, ReplicaDetails,
    Security, StatsSample,
};
use pilothouse::platform::{LogRecord, Update};
use pilothouse::store::Store;
use pilothouse::text;
use pilothouse::theme::Theme;
use pilothouse::ui::app::App;

/// The fixed "now" of every fixture screen.
pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 4, 12, 4, 31)
        .single()
        .unwrap()
}

fn labels(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// A running replica of a Compose service, started `age_secs` before [`now`].
pub fn compose_replica(
    project: &str,
    service: &str,
    n: u32,
    image: &str,
    age_secs: i64,
) -> Replica {
    let name = format!("{project}-{service}-{n}");
    Replica {
        id: format!("{name}-id"),
        name,
        image: image.to_string(),
        state: "running".to_string(),
        status: "Up".to_string(),
        health: Some(Health::Healthy),
        created: Some(now() - chrono::TimeDelta::seconds(age_secs + 5)),
        started_at: Some(now() - chrono::TimeDelta::seconds(age_secs)),
        restart_count: 0,
        ports: Vec::new(),
        labels: labels(&[
            ("com.docker.compose.project", project.to_string()),
            ("com.docker.compose.service", service.to_string()),
            ("com.docker.compose.container-number", n.to_string()),
        ]),
        details: Some(ReplicaDetails {
            env: vec![
                ("PATH".to_string(), "/usr/bin:/bin".to_string()),
                ("DATABASE_PASSWORD".to_string(), "hunter2".to_string()),
                ("API_TOKEN".to_string(), "tok-123".to_string()),
                ("LOG_LEVEL".to_string(), "info".to_string()),
            ],
            security: Security {
                user: "app".to_string(),
                ..Security::default()
            },
            command: vec!["/bin/web".to_string()],
        }),
        cpu_limit: Some(CpuLimit::Unlimited),
        workload: None,
    }
}

/// The small host of the snapshot tests: a web service of three, a worker, a database with a
/// fixed port and risky settings, a stopped container and an unhealthy one.
pub fn small_host() -> Vec<Replica> {
    let mut replicas = vec![
        compose_replica("shop", "web", 1, "shop/web:1.4", 3 * 3600),
        compose_replica("shop", "web", 2, "shop/web:1.4", 3 * 3600),
        compose_replica("shop", "web", 3, "shop/web:1.4", 600),
        compose_replica("shop", "worker", 1, "shop/worker:2.0", 86_400 * 2),
    ];
    let mut db = compose_replica("shop", "db", 1, "postgres:16", 86_400 * 9);
    db.ports = vec![PortMapping {
        container_port: 5432,
        protocol: "tcp".to_string(),
        host_port: Some(5432),
        host_ip: Some("127.0.0.1".to_string()),
    }];
    if let Some(d) = db.details.as_mut() {
        d.security = Security {
            privileged: true,
            user: String::new(),
            cap_add: vec!["SYS_ADMIN".to_string()],
            ..Security::default()
        };
    }
    replicas.push(db);
    let mut stopped = compose_replica("batch", "report", 1, "batch/report:7", 0);
    stopped.state = "exited".to_string();
    stopped.health = None;
    stopped.started_at = None;
    replicas.push(stopped);
    let mut sick = compose_replica("edge", "proxy", 1, "haproxy:2.8", 7200);
    sick.health = Some(Health::Unhealthy);
    sick.restart_count = 4;
    replicas.push(sick);
    // A label that tries to act on the terminal: it must show as inert text.
    let mut evil = compose_replica("evil", "name", 1, "evil:1", 60);
    evil.labels.insert(
        "com.docker.compose.service".to_string(),
        "x\u{1b}]0;pwned\u{7}\u{1b}[2J".to_string(),
    );
    replicas.push(evil);
    replicas
}

/// `count` workloads of one replica each, for the render benchmark.
pub fn many_workloads(count: usize) -> Vec<Replica> {
    (0..count)
        .map(|i| {
            compose_replica(
                &format!("project{:03}", i / 50),
                &format!("service{:04}", i),
                1,
                &format!("registry.local/team{}/svc:{}.{}", i % 7, i % 5, i % 3),
                (i as i64 * 37) % 90_000,
            )
        })
        .collect()
}

/// Stats for every replica: `points` samples each, numbers derived from the index.
pub fn stats_updates(replicas: &[Replica], points: usize) -> Vec<Update> {
    let mut out = Vec::new();
    for (i, r) in replicas.iter().enumerate() {
        for p in 0..points {
            out.push(Update::Stats {
                target: "local".to_string(),
                id: r.id.clone(),
                sample: StatsSample {
                    cpu_percent: ((i * 13 + p * 7) % 90) as f64 + 0.5,
                    mem_bytes: (64 + (i * 31 + p * 3) % 400) as u64 * 1024 * 1024,
                    mem_limit: 1024 * 1024 * 1024,
                    net_rx: 1000 * (p as u64 + 1),
                    net_tx: 500 * (p as u64 + 1),
                },
            });
        }
    }
    out
}

/// A console over `replicas` on one connected target named `local`, with the dark theme.
pub fn app_with(replicas: Vec<Replica>) -> App {
    app_with_theme(replicas, Theme::dark())
}

/// The same with a chosen theme.
pub fn app_with_theme(replicas: Vec<Replica>, theme: Theme) -> App {
    let mut store = Store::new(60);
    store.add_target("local", PlatformKind::Docker);
    let updates = [
        Update::Connection {
            target: "local".to_string(),
            state: ConnState::Connected {
                version: "20.10.24".to_string(),
                api_version: "1.41".to_string(),
                engine_id: "TEST:ENGINE".to_string(),
            },
        },
        Update::Snapshot {
            target: "local".to_string(),
            replicas: replicas.clone(),
            services: Vec::new(),
        },
    ];
    for u in &updates {
        store.apply(u);
    }
    for u in stats_updates(&replicas, 30) {
        store.apply(&u);
    }
    store.apply(&Update::Event {
        target: "local".to_string(),
        event: EngineEvent {
            time: now() - chrono::TimeDelta::seconds(16),
            subject: "shop-web-3".to_string(),
            action: "start".to_string(),
        },
    });
    let (outcomes, _) = mpsc::unbounded_channel();
    let audit = AuditLog::new(std::env::temp_dir().join("pilothouse-fixture-audit.jsonl"));
    let actuator = Actuator::new(false, audit, HashMap::new(), outcomes);
    let mut app = App::new(
        Config::default(),
        theme,
        Keymap::default_bindings(),
        store,
        actuator,
        HashMap::new(),
    );
    app.now = now();
    app.clock_offset = FixedOffset::east_opt(0).unwrap();
    app
}

/// Log lines as a worker would send them, from raw bytes.
pub fn log_records(replica: &str, lines: &[&[u8]]) -> Vec<LogRecord> {
    lines
        .iter()
        .enumerate()
        .map(|(i, raw)| LogRecord {
            replica: replica.to_string(),
            stderr: i % 4 == 3,
            timestamp: Some(now() + chrono::TimeDelta::milliseconds(i as i64 * 250)),
            line: text::sanitize(raw),
        })
        .collect()
}

/// Draw the app once on a test terminal of `width` × `height`.
pub fn draw(app: &mut App, width: u16, height: u16) -> Terminal<TestBackend> {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|f| pilothouse::ui::draw(f, app)).unwrap();
    terminal
}

/// The screen as plain text, one line per row, trailing spaces kept.
pub fn screen_text(terminal: &Terminal<TestBackend>) -> String {
    let buffer = terminal.backend().buffer();
    let mut out = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            out.push_str(buffer[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}
