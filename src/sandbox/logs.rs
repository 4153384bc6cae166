//! What a sandbox pod's containers print, made up on demand from when each instance of the
//! container ran, so that ten thousand pods cost nothing until someone reads their logs.

use chrono::{DateTime, Duration, Utc};

/// How a container behaves, from its image tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Becomes Ready and serves.
    Healthy,
    /// Runs, but its readiness probe never passes (tag contains `unhealthy`).
    Unhealthy,
    /// Exits with code 1 soon after it starts, and restarts with back-off (tag contains `crash`).
    Crash,
}

impl Behaviour {
    /// Reads the behaviour from the image's tag.
    pub fn of_image(image: &str) -> Behaviour {
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        let tag = if tag.contains('/') { "" } else { tag };
        if tag.contains("unhealthy") {
            Behaviour::Unhealthy
        } else if tag.contains("crash") {
            Behaviour::Crash
        } else {
            Behaviour::Healthy
        }
    }
}

/// One run of a container, from start to exit.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub started: DateTime<Utc>,
    /// When it exited and with which code.
    pub finished: Option<(DateTime<Utc>, i32)>,
}

/// Seconds between two access-log lines of a serving container.
const ACCESS_INTERVAL_SECONDS: i64 = 2;
/// At most this many lines are made up for one instance (the newest ones).
const MAX_LINES: i64 = 5_000;

/// Everything the instance printed up to `now`, oldest first.
pub fn lines(
    pod: &str,
    image: &str,
    behaviour: Behaviour,
    instance: &Instance,
    now: DateTime<Utc>,
) -> Vec<(DateTime<Utc>, String)> {
    let start = instance.started;
    let end = instance.finished.map(|(at, _)| at).unwrap_or(now).min(now);
    let at = |ms: i64| start + Duration::milliseconds(ms);
    let mut out = vec![
        (at(0), format!("starting {image}")),
        (
            at(20),
            "loading configuration from /etc/app/config.yaml".to_string(),
        ),
        (at(40), "listening on :8080".to_string()),
    ];
    match behaviour {
        Behaviour::Healthy => out.push((at(60), "ready to serve requests".to_string())),
        Behaviour::Unhealthy => out.push((
            at(60),
            "warning: cannot reach dependency db:5432, not ready".to_string(),
        )),
        Behaviour::Crash => out.push((at(60), "connecting to db:5432".to_string())),
    }
    out.retain(|(t, _)| *t <= end);
    let first_second = (end - start).num_seconds() / ACCESS_INTERVAL_SECONDS - MAX_LINES;
    let mut tick = first_second.max(1);
    loop {
        let t = start + Duration::seconds(tick * ACCESS_INTERVAL_SECONDS);
        if t > end {
            break;
        }
        out.push((t, periodic_line(pod, behaviour, tick)));
        tick += 1;
    }
    if let Some((at, code)) = instance.finished.filter(|(at, _)| *at <= now) {
        out.push((at, "fatal: connection to db:5432 refused".to_string()));
        out.push((at, format!("exiting with code {code}")));
    }
    out
}

fn periodic_line(pod: &str, behaviour: Behaviour, tick: i64) -> String {
    let seed = pod.bytes().fold(tick as u64, |h, b| {
        h.wrapping_mul(31).wrapping_add(b as u64)
    });
    match behaviour {
        Behaviour::Healthy => {
            let paths = ["/", "/api/items", "/api/cart", "/healthz", "/api/items/42"];
            let path = paths[(seed % paths.len() as u64) as usize];
            let status = if seed % 50 == 0 { 500 } else { 200 };
            let ip = 10 + seed % 200;
            format!(
                "10.1.0.{ip} \"GET {path} HTTP/1.1\" {status} {} {}ms",
                200 + seed % 4000,
                1 + seed % 40
            )
        }
        Behaviour::Unhealthy => "readiness check failed: dependency db:5432 unavailable".into(),
        Behaviour::Crash => "retrying connection to db:5432".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_decides_the_behaviour() {
        assert_eq!(Behaviour::of_image("shop/web:1.2"), Behaviour::Healthy);
        assert_eq!(
            Behaviour::of_image("shop/web:1.3-unhealthy"),
            Behaviour::Unhealthy
        );
        assert_eq!(Behaviour::of_image("shop/web:crash"), Behaviour::Crash);
        assert_eq!(
            Behaviour::of_image("registry:5000/crash/web"),
            Behaviour::Healthy
        );
    }

    #[test]
    fn a_crashed_instance_ends_with_its_exit() {
        let started = Utc::now() - Duration::seconds(10);
        let finished = started + Duration::seconds(3);
        let instance = Instance {
            started,
            finished: Some((finished, 1)),
        };
        let lines = lines(
            "web-0",
            "web:crash",
            Behaviour::Crash,
            &instance,
            Utc::now(),
        );
        assert_eq!(lines[0].1, "starting web:crash");
        assert_eq!(
            lines.last().map(|l| l.1.as_str()),
            Some("exiting with code 1")
        );
        assert!(lines.iter().all(|(t, _)| *t <= finished));
    }

    #[test]
    fn a_serving_instance_prints_access_lines_as_time_passes() {
        let started = Utc::now() - Duration::seconds(9);
        let instance = Instance {
            started,
            finished: None,
        };
        let lines = lines("web-0", "web:1", Behaviour::Healthy, &instance, Utc::now());
        assert_eq!(lines.len(), 4 + 4);
        assert!(lines[4].1.contains("HTTP/1.1"));
    }
}
