//! End to end: `pilothouse demo` in a pseudo-terminal, driven by keys only, as a newcomer on a
//! machine with no cluster meets it: the autoscaler scales a workload as its traffic rises, and
//! a rollout to an image that never becomes ready rolls back by itself.
//!
//! Nothing here needs Docker or a cluster: the demo runs its own sandbox on a loopback port.

mod support;

use std::time::Instant;

use support::pty::{Console, KillOnDrop};

/// The READY cell (`ready/desired`) of the row of `workload` on the workloads screen.
fn ready_of(screen: &str, workload: &str) -> Option<(u32, u32)> {
    // A row of the table, not the hint line that names the workload too.
    let line = screen
        .lines()
        .find(|l| l.starts_with('│') && l.split_whitespace().any(|w| w == workload))?;
    line.split_whitespace().find_map(|word| {
        let (ready, desired) = word.split_once('/')?;
        Some((ready.parse().ok()?, desired.parse().ok()?))
    })
}

#[test]
fn the_demo_shows_the_autoscaler_scaling_and_a_bad_rollout_rolling_back_with_keys_only() {
    let started = Instant::now();
    let mut console = KillOnDrop(Console::start(&["demo"]));
    let screen = console.wait_until("the row of shop/web", 30, |s| {
        ready_of(s, "shop/web").is_some()
    });
    assert!(screen.contains("sandbox ●"), "{screen}");
    let (_, desired_at_start) = ready_of(&screen, "shop/web").unwrap();

    // The traffic of shop/web rises, and its rule scales it up: the desired count grows.
    let screen = console.wait_until("a scale-up of shop/web", 90, |s| {
        ready_of(s, "shop/web").is_some_and(|(_, desired)| desired > desired_at_start)
    });
    let scaled_after = started.elapsed();
    let (_, desired) = ready_of(&screen, "shop/web").unwrap();
    eprintln!(
        "shop/web scaled {desired_at_start} -> {desired} after {:.1}s",
        scaled_after.as_secs_f64()
    );

    // A rollout to the image that never becomes ready: select the workload, i, the image, Enter.
    console.select("shop/web");
    console.keys("i");
    console.wait_for("roll shop/web out to image:", 10);
    console.keys(&"\u{7f}".repeat(60));
    console.keys("sandbox/web:1.5-unhealthy\r");
    // The rollout view opens on it, and the rollout fails and rolls back by itself.
    console.wait_for("rollouts ─ sandbox:shop/web", 10);
    let screen = console.wait_until("the rollout rolled back", 120, |s| {
        s.contains("rolled-back")
    });
    eprintln!(
        "rolled back after {:.1}s in all",
        started.elapsed().as_secs_f64()
    );
    assert!(screen.contains("shop/web"), "{screen}");

    // Back on the workloads screen, shop/web runs its old image again, every replica ready.
    console.keys("R");
    let screen = console.wait_until("shop/web back on 1.4 and ready", 60, |s| {
        s.lines()
            .any(|l| l.contains("shop/web") && l.contains("sandbox/web:1.4"))
            && ready_of(s, "shop/web").is_some_and(|(ready, desired)| ready == desired)
    });
    assert!(!screen.contains("1.5-unhealthy  "), "{screen}");
    console.quit_with("q");
}
