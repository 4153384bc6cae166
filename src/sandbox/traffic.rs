//! Simulated load for the sandbox cluster: a request rate per workload that follows a daily
//! curve with bursts, spread over the workload's Ready pods as requests, CPU and memory.
//!
//! Time here is simulated: a [`Clock`] maps wall time to seconds of a simulated day that may run
//! faster than the wall clock. A workload's [`Profile`] comes from its
//! `sandbox.pilothouse.dev/traffic` annotation and gives its rate at any simulated second, and the
//! exact number of requests between any two instants, so a rate over a window is an integral and
//! not a guess from samples. [`Counters`] keep each Ready pod's request counter as a real exporter
//! would: it starts at zero when the pod is first seen and is gone when the pod leaves.
//!
//! Not for serving anything: the query endpoint and the pod metrics API live in `promql`.
//! Nothing here runs in the background; every number is computed when asked.

use std::collections::HashMap;
use std::f64::consts::TAU;
use std::time::{SystemTime, UNIX_EPOCH};

use chrono::Timelike;

use super::WorkloadView;

/// The annotation a workload's traffic profile is read from.
pub const ANNOTATION: &str = "sandbox.pilothouse.dev/traffic";

/// Seconds in a simulated day.
pub const DAY_SECONDS: f64 = 86_400.0;

/// The fastest a clock may run: a simulated day per wall second.
pub const MAX_SPEED: f64 = DAY_SECONDS;

/// CPU one request per second costs a pod, in millicores, unless the profile says `cost=`.
pub const DEFAULT_COST_MILLICORES: f64 = 2.0;

/// CPU a Ready pod uses with no traffic at all, in millicores.
pub const IDLE_MILLICORES: f64 = 5.0;

/// Memory a Ready pod holds with no traffic at all.
pub const BASE_MEMORY_BYTES: f64 = 48.0 * 1024.0 * 1024.0;

/// Memory a pod holds for each request per second it serves.
pub const MEMORY_BYTES_PER_RPS: f64 = 256.0 * 1024.0;

/// The largest base or peak rate a profile accepts, in requests per second.
const MAX_RATE: f64 = 1_000_000.0;

/// The shortest time between the starts of two bursts, in simulated seconds.
const MIN_BURST_EVERY: f64 = 10.0;

/// A simulated clock: a start second of the day plus the wall time since then times `speed`.
///
/// Simulated seconds keep counting past midnight (86 400 is the next day's 00:00), so they are
/// monotonic; a profile reads the time of day from them itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Clock {
    /// The wall time (Unix seconds) at which the simulated time was `start`.
    anchor_unix: f64,
    /// Simulated seconds at the anchor.
    start: f64,
    /// Simulated seconds per wall second.
    speed: f64,
}

/// A clock speed or start that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClockError {
    /// The speed is not a number above 0 and at most [`MAX_SPEED`].
    #[error("traffic speed {0} is not usable: give a number above 0 and at most {MAX_SPEED}")]
    Speed(f64),
    /// The start is not a second of the day.
    #[error("start {0} is not a second of the day: give a number from 0 to below 86400")]
    Start(f64),
}

impl Clock {
    /// A clock that starts now at the local time of day and runs `speed` times the wall clock.
    pub fn new(speed: f64) -> Result<Clock, ClockError> {
        let now = chrono::Local::now();
        let second_of_day = f64::from(now.num_seconds_from_midnight());
        Clock::anchored(unix_now(), second_of_day, speed)
    }

    /// A clock that is at `seconds_of_day` now and runs `speed` times the wall clock.
    pub fn starting_at(seconds_of_day: f64, speed: f64) -> Result<Clock, ClockError> {
        Clock::anchored(unix_now(), seconds_of_day, speed)
    }

    /// A clock that was at `seconds_of_day` at the wall time `anchor_unix` (Unix seconds), so a
    /// test can name wall times and know the simulated ones.
    pub fn anchored(
        anchor_unix: f64,
        seconds_of_day: f64,
        speed: f64,
    ) -> Result<Clock, ClockError> {
        if !(speed > 0.0 && speed <= MAX_SPEED) {
            return Err(ClockError::Speed(speed));
        }
        if !(0.0..DAY_SECONDS).contains(&seconds_of_day) {
            return Err(ClockError::Start(seconds_of_day));
        }
        Ok(Clock {
            anchor_unix,
            start: seconds_of_day,
            speed,
        })
    }

    /// The simulated time now, in seconds since the simulated day 0 began.
    pub fn now(&self) -> f64 {
        self.sim_at(unix_now())
    }

    /// The simulated time at the wall time `unix` (Unix seconds); a time before the clock
    /// started maps backwards, to before its start.
    pub fn sim_at(&self, unix: f64) -> f64 {
        self.start + (unix - self.anchor_unix) * self.speed
    }

    /// Simulated seconds per wall second.
    pub fn speed(&self) -> f64 {
        self.speed
    }
}

/// The wall time now in Unix seconds (0 if the system clock is before 1970).
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs_f64())
        .unwrap_or(0.0)
}

/// A workload's traffic: a daily curve from `base` at night to `peak` at `peak_hour`, times a
/// burst factor while a burst lasts.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Requests per second at the quietest moment, twelve hours from the peak.
    pub base: f64,
    /// Requests per second at `peak_hour`, before any burst.
    pub peak: f64,
    /// The hour of the simulated day (0 to below 24, fractions allowed) the curve peaks at.
    pub peak_hour: f64,
    /// Bursts, if the profile has them.
    pub burst: Option<Burst>,
    /// Chooses the burst times; the same seed gives the same times.
    pub seed: u64,
    /// Millicores of CPU one request per second costs a pod.
    pub cost_millicores: f64,
}

/// Bursts: the rate is multiplied by `factor` for `duration` seconds once in every `every`
/// seconds of simulated time, at a pseudo-random moment of each such period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Burst {
    /// At least 1.
    pub factor: f64,
    /// Simulated seconds a burst lasts; shorter than `every`.
    pub duration: f64,
    /// Simulated seconds per period; each period holds exactly one burst.
    pub every: f64,
}

/// A traffic annotation that does not parse: the key, its value and what is wrong with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("bad {ANNOTATION} annotation: {key}={value:?}: {reason}")]
pub struct ProfileError {
    /// The key as written (the whole item when it has no `=`).
    pub key: String,
    /// The value as written.
    pub value: String,
    /// What is wrong and what to write instead.
    pub reason: String,
}

/// What one Ready pod of a workload serves and uses at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodLoad {
    /// Requests per second this pod serves.
    pub rps: f64,
    /// CPU in use, in millicores.
    pub cpu_millicores: f64,
    /// Memory in use, in bytes.
    pub memory_bytes: f64,
}

/// The keys a traffic annotation may have, for error messages.
const KEYS: &str = "base, peak, peakHour, burst, seed, cost";

impl Profile {
    /// The profile of a workload without a traffic annotation: no requests, idle pods.
    pub fn idle() -> Profile {
        Profile {
            base: 0.0,
            peak: 0.0,
            peak_hour: 14.0,
            burst: None,
            seed: 0,
            cost_millicores: DEFAULT_COST_MILLICORES,
        }
    }

    /// Parses an annotation such as `base=20,peak=400,peakHour=14,burst=3x/90s/600s,seed=7`.
    ///
    /// Every key is optional: `base` 0, `peak` the base, `peakHour` 14, no bursts, `seed` 0,
    /// `cost` [`DEFAULT_COST_MILLICORES`]. A key given twice, an unknown key or a bad value is
    /// an error naming it.
    pub fn parse(text: &str) -> Result<Profile, ProfileError> {
        let mut profile = Profile::idle();
        let mut peak = None;
        let mut seen: Vec<&str> = Vec::new();
        for item in text.split(',').map(str::trim) {
            let Some((key, value)) = item.split_once('=') else {
                return Err(error(item, "", "write KEY=VALUE items separated by commas"));
            };
            let (key, value) = (key.trim(), value.trim());
            if seen.contains(&key) {
                return Err(error(key, value, "the key is given twice"));
            }
            seen.push(key);
            match key {
                "base" => profile.base = parse_rate(key, value)?,
                "peak" => peak = Some(parse_rate(key, value)?),
                "peakHour" => profile.peak_hour = parse_hour(value)?,
                "burst" => profile.burst = Some(parse_burst(value)?),
                "seed" => profile.seed = parse_seed(value)?,
                "cost" => profile.cost_millicores = parse_cost(value)?,
                _ => {
                    return Err(error(
                        key,
                        value,
                        &format!("unknown key; the keys are {KEYS}"),
                    ));
                }
            }
        }
        profile.peak = peak.unwrap_or(profile.base);
        if profile.peak < profile.base {
            let reason = format!("the peak is below the base rate {}", profile.base);
            return Err(error("peak", &profile.peak.to_string(), &reason));
        }
        Ok(profile)
    }

    /// The profile in a workload's annotation; [`Profile::idle`] when it has none.
    pub fn of(workload: &WorkloadView) -> Result<Profile, ProfileError> {
        match &workload.traffic {
            Some(text) => Profile::parse(text),
            None => Ok(Profile::idle()),
        }
    }

    /// Total requests per second for the workload at simulated second `sim`.
    pub fn rps(&self, sim: f64) -> f64 {
        let factor = match self.burst {
            Some(burst) if self.burst_at(&burst, sim) => burst.factor,
            _ => 1.0,
        };
        self.daily(sim) * factor
    }

    /// The number of requests the workload gets from simulated second `from` to `to` (the
    /// integral of [`Profile::rps`]); negative when `to` is before `from`.
    ///
    /// Its cost grows with the number of burst periods between the two.
    pub fn requests_between(&self, from: f64, to: f64) -> f64 {
        if to < from {
            return -self.requests_between(to, from);
        }
        let mut total = self.daily_integral(from, to);
        if let Some(burst) = self.burst {
            let extra = burst.factor - 1.0;
            let first = (from / burst.every).floor() as i64;
            let last = (to / burst.every).floor() as i64;
            for period in first..=last {
                let start = self.burst_start(&burst, period);
                let (a, b) = (start.max(from), (start + burst.duration).min(to));
                if b > a {
                    total += extra * self.daily_integral(a, b);
                }
            }
        }
        total
    }

    /// How many burst periods the span from `from` to `to` touches: the work
    /// [`Profile::requests_between`] does for it (0 without bursts).
    pub fn burst_periods(&self, from: f64, to: f64) -> f64 {
        match self.burst {
            Some(burst) => ((to - from).abs() / burst.every).ceil() + 1.0,
            None => 0.0,
        }
    }

    /// The simulated seconds at which bursts start, from `from` up to (not including) `to`.
    pub fn burst_starts(&self, from: f64, to: f64) -> Vec<f64> {
        let Some(burst) = self.burst else {
            return Vec::new();
        };
        let first = (from / burst.every).floor() as i64;
        let last = (to / burst.every).floor() as i64;
        (first..=last)
            .map(|period| self.burst_start(&burst, period))
            .filter(|start| (from..to).contains(start))
            .collect()
    }

    /// What each of `ready_pods` Ready pods serves and uses at simulated second `sim`, the
    /// requests spread evenly; `None` when no pod is Ready.
    pub fn pod_load(&self, sim: f64, ready_pods: usize) -> Option<PodLoad> {
        if ready_pods == 0 {
            return None;
        }
        let rps = self.rps(sim) / ready_pods as f64;
        Some(PodLoad {
            rps,
            cpu_millicores: IDLE_MILLICORES + rps * self.cost_millicores,
            memory_bytes: BASE_MEMORY_BYTES + rps * MEMORY_BYTES_PER_RPS,
        })
    }

    /// The daily curve alone: `base` at night, `peak` at `peak_hour`, a cosine in between.
    fn daily(&self, sim: f64) -> f64 {
        let phase = TAU * (sim - self.peak_hour * 3600.0) / DAY_SECONDS;
        self.base + (self.peak - self.base) * (1.0 + phase.cos()) / 2.0
    }

    /// The integral of [`Profile::daily`] from `from` to `to`, in closed form.
    fn daily_integral(&self, from: f64, to: f64) -> f64 {
        let peak_at = self.peak_hour * 3600.0;
        let sine = |t: f64| (TAU * (t - peak_at) / DAY_SECONDS).sin();
        let swing = (to - from) + DAY_SECONDS / TAU * (sine(to) - sine(from));
        self.base * (to - from) + (self.peak - self.base) / 2.0 * swing
    }

    /// Whether a burst lasts at simulated second `sim`.
    fn burst_at(&self, burst: &Burst, sim: f64) -> bool {
        let period = (sim / burst.every).floor() as i64;
        let start = self.burst_start(burst, period);
        (start..start + burst.duration).contains(&sim)
    }

    /// When the burst of period number `period` starts: somewhere in the period, early enough
    /// to end inside it, chosen by the seed.
    fn burst_start(&self, burst: &Burst, period: i64) -> f64 {
        let mixed = mix(self.seed ^ mix(period as u64));
        // The top 53 bits make a uniform fraction in [0, 1).
        let fraction = (mixed >> 11) as f64 / (1u64 << 53) as f64;
        period as f64 * burst.every + fraction * (burst.every - burst.duration)
    }
}

/// SplitMix64's finalizer: spreads the bits of `x` so that nearby inputs give unrelated outputs.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn error(key: &str, value: &str, reason: &str) -> ProfileError {
    ProfileError {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// A finite number that is not negative, as written in digits.
fn parse_number(key: &str, value: &str, what: &str) -> Result<f64, ProfileError> {
    let number: f64 = value
        .parse()
        .ok()
        .filter(|n: &f64| {
            n.is_finite() && *n >= 0.0 && value.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
        .ok_or_else(|| {
            error(
                key,
                value,
                &format!("write {what} in digits, such as 20 or 2.5"),
            )
        })?;
    Ok(number)
}

fn parse_rate(key: &str, value: &str) -> Result<f64, ProfileError> {
    let rate = parse_number(key, value, "a rate in requests per second")?;
    if rate > MAX_RATE {
        return Err(error(
            key,
            value,
            &format!("give at most {MAX_RATE} requests per second"),
        ));
    }
    Ok(rate)
}

fn parse_hour(value: &str) -> Result<f64, ProfileError> {
    let hour = parse_number("peakHour", value, "an hour of the day")?;
    if hour >= 24.0 {
        return Err(error("peakHour", value, "give an hour from 0 to below 24"));
    }
    Ok(hour)
}

fn parse_seed(value: &str) -> Result<u64, ProfileError> {
    value.parse().map_err(|_| {
        error(
            "seed",
            value,
            "write a whole number from 0 to 18446744073709551615",
        )
    })
}

fn parse_cost(value: &str) -> Result<f64, ProfileError> {
    let cost = parse_number("cost", value, "millicores per request per second")?;
    if cost > 1_000_000.0 {
        return Err(error(
            "cost",
            value,
            "give at most 1000000 millicores per request per second",
        ));
    }
    Ok(cost)
}

/// `FACTORx/DURATION/EVERY`, such as `3x/90s/600s`.
fn parse_burst(value: &str) -> Result<Burst, ProfileError> {
    const FORMAT: &str = "write FACTORx/DURATION/EVERY, such as 3x/90s/600s";
    let parts: Vec<&str> = value.split('/').collect();
    let [factor, duration, every] = parts.as_slice() else {
        return Err(error("burst", value, FORMAT));
    };
    let factor = factor
        .strip_suffix('x')
        .and_then(|digits| parse_number("burst", digits, "").ok())
        .filter(|factor| *factor >= 1.0 && *factor <= 1000.0)
        .ok_or_else(|| {
            error(
                "burst",
                value,
                "the factor must be from 1x to 1000x, such as 3x",
            )
        })?;
    let seconds = |text: &str| {
        crate::rules::parse_duration(text)
            .map(|duration| duration.as_secs_f64())
            .map_err(|reason| error("burst", value, &format!("`{text}` {reason}")))
    };
    let (duration, every) = (seconds(duration)?, seconds(every)?);
    if duration <= 0.0 || duration >= every {
        return Err(error(
            "burst",
            value,
            "a burst must last longer than 0s and less than its period",
        ));
    }
    if every < MIN_BURST_EVERY {
        let reason = format!("bursts may come at most once every {MIN_BURST_EVERY}s");
        return Err(error("burst", value, &reason));
    }
    Ok(Burst {
        factor,
        duration,
        every,
    })
}

/// One pod's request counter: its value at a wall time, and since when it counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodCounter {
    /// Requests counted up to `at_unix`.
    pub total: f64,
    /// The wall time `total` is for (Unix seconds).
    pub at_unix: f64,
    /// The wall time the pod was first seen Ready, when its counter started at 0.
    pub since_unix: f64,
}

/// The `requests_total` counters of every Ready pod, brought up to date when asked.
///
/// LIMITATION: between two updates a pod's share is the workload's requests divided by the
/// pods Ready at the later update, and a pod counts from the first update that sees it Ready,
/// not from the moment it became Ready; the cluster keeps no history of readiness.
#[derive(Debug, Default)]
pub struct Counters {
    /// By namespace and pod name.
    pods: HashMap<(String, String), PodCounter>,
}

impl Counters {
    /// Counters with no pods.
    pub fn new() -> Counters {
        Counters::default()
    }

    /// Adds to each Ready pod's counter its share of the requests since the last update, starts
    /// new pods at 0 and drops pods that are no longer Ready, as of wall time `now_unix`.
    pub fn advance(
        &mut self,
        clock: &Clock,
        now_unix: f64,
        workloads: &[(&WorkloadView, &Profile)],
    ) {
        let mut kept = HashMap::with_capacity(self.pods.len());
        for (workload, profile) in workloads {
            let ready = workload.ready_pods.len() as f64;
            for pod in &workload.ready_pods {
                let key = (workload.namespace.clone(), pod.clone());
                let counter = match self.pods.remove(&key) {
                    Some(counter) if now_unix > counter.at_unix => {
                        let requests = wall_requests(profile, clock, counter.at_unix, now_unix);
                        PodCounter {
                            total: counter.total + requests / ready,
                            at_unix: now_unix,
                            since_unix: counter.since_unix,
                        }
                    }
                    Some(counter) => counter,
                    None => PodCounter {
                        total: 0.0,
                        at_unix: now_unix,
                        since_unix: now_unix,
                    },
                };
                kept.insert(key, counter);
            }
        }
        self.pods = kept;
    }

    /// The counter of `pod` in `namespace`, as of the last update.
    pub fn get(&self, namespace: &str, pod: &str) -> Option<PodCounter> {
        self.pods
            .get(&(namespace.to_string(), pod.to_string()))
            .copied()
    }
}

/// The requests a workload gets between two wall times (Unix seconds): its counters rise by
/// its rate per wall second, so a rate over a wall window is the profile's average rate.
pub fn wall_requests(profile: &Profile, clock: &Clock, from_unix: f64, to_unix: f64) -> f64 {
    profile.requests_between(clock.sim_at(from_unix), clock.sim_at(to_unix)) / clock.speed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(text: &str) -> Profile {
        Profile::parse(text).unwrap()
    }

    /// A numeric integral of the rate, in steps of `step` simulated seconds.
    fn summed(profile: &Profile, from: f64, to: f64, step: f64) -> f64 {
        let steps = ((to - from) / step).round() as usize;
        (0..steps)
            .map(|i| profile.rps(from + (i as f64 + 0.5) * step) * step)
            .sum()
    }

    fn workload(namespace: &str, pods: &[&str]) -> WorkloadView {
        WorkloadView {
            namespace: namespace.to_string(),
            kind: "Deployment".to_string(),
            name: "web".to_string(),
            traffic: Some("base=10".to_string()),
            ready_pods: pods.iter().map(|p| p.to_string()).collect(),
            cpu_request_millicores: 100,
        }
    }

    #[test]
    fn the_curve_is_low_at_night_and_high_at_the_peak_hour() {
        let p = profile("base=20,peak=400,peakHour=14");
        assert!((p.rps(14.0 * 3600.0) - 400.0).abs() < 1e-9);
        assert!((p.rps(2.0 * 3600.0) - 20.0).abs() < 1e-9);
        let morning = p.rps(8.0 * 3600.0);
        assert!(morning > 20.0 && morning < 400.0, "{morning}");
        // The next day repeats the curve.
        assert!((p.rps(DAY_SECONDS + 14.0 * 3600.0) - 400.0).abs() < 1e-9);
    }

    #[test]
    fn bursts_multiply_the_rate_for_their_duration_at_the_seeds_times() {
        let p = profile("base=100,burst=3x/90s/600s,seed=7");
        let starts = p.burst_starts(0.0, 3000.0);
        assert_eq!(starts.len(), 5, "{starts:?}");
        for (period, start) in starts.iter().enumerate() {
            let period_start = period as f64 * 600.0;
            assert!(*start >= period_start && *start + 90.0 <= period_start + 600.0);
            assert_eq!(p.rps(*start + 1.0), 300.0);
            assert_eq!(p.rps(*start + 89.0), 300.0);
            assert_eq!(p.rps(*start + 91.0), 100.0);
        }
        // The same seed gives the same times; another seed other times.
        assert_eq!(
            profile("base=1,burst=3x/90s/600s,seed=7").burst_starts(0.0, 3000.0),
            starts
        );
        assert_ne!(
            profile("base=1,burst=3x/90s/600s,seed=8").burst_starts(0.0, 3000.0),
            starts
        );
    }

    #[test]
    fn burst_times_differ_from_one_period_to_the_next() {
        let p = profile("base=1,burst=2x/10s/600s,seed=1");
        let offsets: Vec<f64> = p
            .burst_starts(0.0, 6000.0)
            .iter()
            .enumerate()
            .map(|(period, start)| start - period as f64 * 600.0)
            .collect();
        let first = offsets[0];
        assert!(
            offsets.iter().any(|offset| (offset - first).abs() > 1.0),
            "{offsets:?}"
        );
    }

    #[test]
    fn requests_between_two_times_is_the_integral_of_the_rate() {
        let p = profile("base=20,peak=400,peakHour=14,burst=3x/90s/600s,seed=7");
        for (from, to) in [(0.0, 600.0), (40_000.0, 52_000.0), (-3_000.0, 100.0)] {
            let exact = p.requests_between(from, to);
            let numeric = summed(&p, from, to, 0.5);
            assert!(
                (exact - numeric).abs() / numeric < 1e-3,
                "{from}..{to}: {exact} vs {numeric}"
            );
        }
        assert_eq!(p.requests_between(10.0, 10.0), 0.0);
        assert_eq!(
            p.requests_between(600.0, 0.0),
            -p.requests_between(0.0, 600.0)
        );
    }

    #[test]
    fn a_pod_gets_its_share_of_the_rate_and_cpu_and_memory_from_it() {
        let p = profile("base=100,cost=3");
        let load = p.pod_load(0.0, 4).unwrap();
        assert_eq!(load.rps, 25.0);
        assert_eq!(load.cpu_millicores, IDLE_MILLICORES + 75.0);
        assert_eq!(
            load.memory_bytes,
            BASE_MEMORY_BYTES + 25.0 * MEMORY_BYTES_PER_RPS
        );
        assert_eq!(p.pod_load(0.0, 0), None);
    }

    #[test]
    fn missing_keys_take_their_defaults() {
        let p = profile("base=5");
        assert_eq!(
            (p.base, p.peak, p.peak_hour, p.burst, p.seed),
            (5.0, 5.0, 14.0, None, 0)
        );
        assert_eq!(p.cost_millicores, DEFAULT_COST_MILLICORES);
        assert_eq!(Profile::idle().rps(1000.0), 0.0);
    }

    #[test]
    fn bad_annotations_name_the_key_and_the_value() {
        for (text, key, value, reason) in [
            ("base=x", "base", "x", "in digits"),
            ("base=-1", "base", "-1", "in digits"),
            ("base=1e3", "base", "1e3", "in digits"),
            ("base=NaN", "base", "NaN", "in digits"),
            ("peak=inf", "peak", "inf", "in digits"),
            ("base=10,peak=5", "peak", "5", "below the base"),
            ("peakHour=24", "peakHour", "24", "below 24"),
            ("burst=3x/90s", "burst", "3x/90s", "FACTORx/DURATION/EVERY"),
            ("burst=3/90s/600s", "burst", "3/90s/600s", "1x to 1000x"),
            (
                "burst=0.5x/90s/600s",
                "burst",
                "0.5x/90s/600s",
                "1x to 1000x",
            ),
            (
                "burst=3x/90q/600s",
                "burst",
                "3x/90q/600s",
                "`90q` is not a duration",
            ),
            (
                "burst=3x/600s/600s",
                "burst",
                "3x/600s/600s",
                "less than its period",
            ),
            ("burst=3x/1s/5s", "burst", "3x/1s/5s", "once every 10s"),
            ("seed=-3", "seed", "-3", "whole number"),
            ("cost=lots", "cost", "lots", "millicores"),
            ("speed=2", "speed", "2", "unknown key"),
            ("base=1,base=2", "base", "2", "twice"),
            ("base=1,", "", "", "KEY=VALUE"),
            ("base", "base", "", "KEY=VALUE"),
        ] {
            let err = Profile::parse(text).unwrap_err();
            assert_eq!(
                (err.key.as_str(), err.value.as_str()),
                (key, value),
                "{text}: {err}"
            );
            assert!(err.to_string().contains(reason), "{text}: {err}");
            assert!(err.to_string().contains(ANNOTATION), "{text}: {err}");
        }
    }

    #[test]
    fn the_clock_maps_wall_time_to_simulated_time_forwards_and_backwards() {
        let clock = Clock::anchored(1_000.0, 3_600.0, 60.0).unwrap();
        assert_eq!(clock.sim_at(1_000.0), 3_600.0);
        assert_eq!(clock.sim_at(1_010.0), 4_200.0);
        assert_eq!(clock.sim_at(990.0), 3_000.0);
        assert_eq!(Clock::anchored(0.0, 0.0, 0.0), Err(ClockError::Speed(0.0)));
        assert!(Clock::anchored(0.0, 0.0, f64::NAN).is_err());
        assert_eq!(
            Clock::anchored(0.0, DAY_SECONDS, 1.0),
            Err(ClockError::Start(DAY_SECONDS))
        );
    }

    #[test]
    fn wall_requests_rise_by_the_rate_per_wall_second() {
        let clock = Clock::anchored(0.0, 0.0, 60.0).unwrap();
        let p = profile("base=10");
        assert!((wall_requests(&p, &clock, 0.0, 30.0) - 300.0).abs() < 1e-9);
    }

    #[test]
    fn counters_integrate_since_the_last_update_and_drop_pods_that_leave() {
        let clock = Clock::anchored(0.0, 0.0, 10.0).unwrap();
        let p = profile("base=10");
        let mut counters = Counters::new();

        let two = workload("shop", &["web-a", "web-b"]);
        counters.advance(&clock, 100.0, &[(&two, &p)]);
        assert_eq!(counters.get("shop", "web-a").map(|c| c.total), Some(0.0));

        counters.advance(&clock, 110.0, &[(&two, &p)]);
        let a = counters.get("shop", "web-a").unwrap();
        assert!((a.total - 50.0).abs() < 1e-9, "{a:?}");
        assert_eq!((a.at_unix, a.since_unix), (110.0, 100.0));

        let one = workload("shop", &["web-b"]);
        counters.advance(&clock, 120.0, &[(&one, &p)]);
        assert_eq!(counters.get("shop", "web-a"), None);
        let b = counters.get("shop", "web-b").unwrap();
        assert!((b.total - 150.0).abs() < 1e-9, "{b:?}");

        // An update at an earlier wall time leaves a counter as it is.
        counters.advance(&clock, 115.0, &[(&one, &p)]);
        assert_eq!(counters.get("shop", "web-b"), Some(b));
    }
}
