//! The arithmetic of a rolling update, as the Kubernetes Deployment controller does it: how many
//! replicas of the new revision to create and how many of the old one to remove at each step,
//! so that the replicas never exceed `desired + maxSurge` and the ready ones never drop below
//! `desired - maxUnavailable`.
//!
//! Not for acting: nothing here starts, probes or stops a replica, reads a clock or talks to a
//! platform. The caller observes a [`Progress`], asks [`next_step`] what to do, does it, waits for
//! health checks and asks again.

use std::fmt;

/// What the Deployment controller takes for `maxSurge` when none is given.
pub const DEFAULT_MAX_SURGE: IntOrPercent = IntOrPercent::Percent(25);

/// What the Deployment controller takes for `maxUnavailable` when none is given.
pub const DEFAULT_MAX_UNAVAILABLE: IntOrPercent = IntOrPercent::Percent(25);

/// A `maxSurge` or `maxUnavailable` as written: a replica count (`2`) or a share of the desired
/// replicas (`25%`, at most 100%).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntOrPercent {
    Count(u32),
    Percent(u32),
}

impl IntOrPercent {
    /// Reads `2` or `25%`: digits only, no sign, no spaces, no fraction.
    pub fn parse(text: &str) -> Result<IntOrPercent, String> {
        const HINT: &str = "give a count like 2 or a percentage like 25%";
        if text.is_empty() {
            return Err(format!("empty value: {HINT}"));
        }
        if text.starts_with('-') {
            return Err(format!("{text:?} is negative: {HINT}"));
        }
        match text.strip_suffix('%') {
            Some("") => Err(format!("\"%\" alone has no number: {HINT}")),
            Some(number) => parse_percent(text, number, HINT),
            None => parse_count(text, HINT).map(IntOrPercent::Count),
        }
    }
}

/// Reads the number before a `%`; `text` is the whole value, for the message.
fn parse_percent(text: &str, number: &str, hint: &str) -> Result<IntOrPercent, String> {
    if !is_digits(number) {
        return Err(format!("{text:?} is not a number: {hint}"));
    }
    match number.parse::<u32>() {
        Ok(percent) if percent <= 100 => Ok(IntOrPercent::Percent(percent)),
        _ => Err(format!(
            "{text:?} is over 100%: give a percentage from 0% to 100%"
        )),
    }
}

/// Reads a bare replica count.
fn parse_count(text: &str, hint: &str) -> Result<u32, String> {
    if !is_digits(text) {
        return Err(format!("{text:?} is not a number: {hint}"));
    }
    text.parse::<u32>()
        .map_err(|_| format!("{text:?} is too large: a count is at most {}", u32::MAX))
}

/// True for one or more ASCII digits and nothing else (`u32::from_str` would also take `+2`).
fn is_digits(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

impl fmt::Display for IntOrPercent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrPercent::Count(count) => write!(f, "{count}"),
            IntOrPercent::Percent(percent) => write!(f, "{percent}%"),
        }
    }
}

/// `maxSurge` and `maxUnavailable` resolved to replica counts for one desired count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    /// Replicas allowed above the desired count while both revisions run.
    pub surge: u32,
    /// Replicas allowed below the desired count in ready replicas.
    pub unavailable: u32,
}

impl Bounds {
    /// The bounds for Kubernetes' defaults, 25% surge and 25% unavailable.
    pub fn default_for(replicas: u32) -> Bounds {
        resolve(replicas, DEFAULT_MAX_SURGE, DEFAULT_MAX_UNAVAILABLE)
    }
}

/// Resolves percentages of `replicas` (surge rounded up, unavailable down); when both come to 0,
/// one replica may be unavailable so the rollout can move. Both given as the count 0 is an error,
/// as the Kubernetes API refuses it.
pub fn bounds(
    replicas: u32,
    max_surge: IntOrPercent,
    max_unavailable: IntOrPercent,
) -> Result<Bounds, String> {
    if max_surge == IntOrPercent::Count(0) && max_unavailable == IntOrPercent::Count(0) {
        return Err("maxSurge and maxUnavailable cannot both be 0: \
                    set one of them to at least 1 so the rollout can make progress"
            .to_string());
    }
    Ok(resolve(replicas, max_surge, max_unavailable))
}

/// [`bounds`] without the check of literal zeros.
fn resolve(replicas: u32, max_surge: IntOrPercent, max_unavailable: IntOrPercent) -> Bounds {
    let surge = scaled(replicas, max_surge, Rounding::Up);
    let unavailable = scaled(replicas, max_unavailable, Rounding::Down);
    if surge == 0 && unavailable == 0 {
        return Bounds {
            surge: 0,
            unavailable: 1,
        };
    }
    Bounds { surge, unavailable }
}

/// Which way a percentage of replicas that is not whole goes.
#[derive(Clone, Copy)]
enum Rounding {
    Up,
    Down,
}

/// A count as is, or a percentage of `replicas` rounded as asked.
fn scaled(replicas: u32, value: IntOrPercent, rounding: Rounding) -> u32 {
    let percent = match value {
        IntOrPercent::Count(count) => return count,
        IntOrPercent::Percent(percent) => u64::from(percent),
    };
    let share = u64::from(replicas) * percent;
    let count = match rounding {
        Rounding::Up => share.div_ceil(100),
        Rounding::Down => share / 100,
    };
    // A percentage above 100 is refused by `parse` but can be built by hand; saturate then.
    u32::try_from(count).unwrap_or(u32::MAX)
}

/// The replicas of a workload during a rollout, as observed before a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Replicas the workload should have when the rollout is done.
    pub desired: u32,
    /// Replicas of the old revision that exist, ready or not.
    pub old: u32,
    /// Of `old`, those that pass their health check; more than `old` is read as `old`.
    pub old_ready: u32,
    /// Replicas of the new revision that exist, ready or not.
    pub new: u32,
    /// Of `new`, those that pass their health check; more than `new` is read as `new`.
    pub new_ready: u32,
}

/// What to do next; creating and removing in one step is safe, as both are counted from the
/// same [`Progress`] and created replicas are not ready yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Step {
    /// Replicas of the new revision to start.
    pub create_new: u32,
    /// Replicas of the old revision to drain and stop, those that are not ready first.
    pub remove_old: u32,
    /// The new revision has all desired replicas ready and no old replica is left.
    pub done: bool,
}

/// The next step of a rolling update; a step of nothing that is not done means wait for health
/// checks. More new replicas than desired is a scale-down, not a rollout step, and gets no action.
pub fn next_step(state: &Progress, bounds: Bounds) -> Step {
    let state = Progress {
        old_ready: state.old_ready.min(state.old),
        new_ready: state.new_ready.min(state.new),
        ..*state
    };
    if state.old == 0 && state.new == state.desired && state.new_ready == state.desired {
        return Step {
            create_new: 0,
            remove_old: 0,
            done: true,
        };
    }
    Step {
        create_new: creatable(&state, bounds),
        remove_old: removable(&state, bounds),
        done: false,
    }
}

/// New replicas that fit under `desired + surge` without going past `desired` new ones
/// (the controller's scale-up of the new ReplicaSet).
fn creatable(state: &Progress, bounds: Bounds) -> u32 {
    let max_total = state.desired.saturating_add(bounds.surge);
    let room = max_total.saturating_sub(state.old.saturating_add(state.new));
    room.min(state.desired.saturating_sub(state.new))
}

/// Old replicas that can go without ready replicas dropping below `desired - unavailable`
/// (the controller's scale-down of the old ReplicaSets). `old_ready <= old` is assumed.
fn removable(state: &Progress, bounds: Bounds) -> u32 {
    let min_available = state.desired.saturating_sub(bounds.unavailable);

    // Kubernetes first caps all scale-down at every replica minus the floor minus the new
    // replicas that are not ready yet: old + new_ready - min_available. Its cleanup of unhealthy
    // old pods then removes those up to that cap even when ready replicas are already at or below
    // the floor, since an old replica that is not ready serves nothing and costs no availability.
    let max_scaled_down = state
        .old
        .saturating_add(state.new_ready)
        .saturating_sub(min_available);
    let unhealthy = (state.old - state.old_ready).min(max_scaled_down);

    // Then ready old replicas go, down to the floor. The two sums never pass the cap: unhealthy
    // is at most old - old_ready, and this at most old_ready + new_ready - min_available.
    let available = state.old_ready.saturating_add(state.new_ready);
    let ready = available.saturating_sub(min_available).min(state.old_ready);

    unhealthy + ready
}

/// Runs a rollout of `desired` replicas from an old revision whose replicas are all ready, and
/// returns its steps up to the one that is done, or up to the first that does nothing (a stall).
/// With `ready_each_step`, created replicas are ready by the next step; without it they never
/// become ready, as with a new revision whose health check fails.
pub fn simulate(desired: u32, bounds: Bounds, ready_each_step: bool) -> Vec<Step> {
    let mut state = Progress {
        desired,
        old: desired,
        old_ready: desired,
        new: 0,
        new_ready: 0,
    };
    let mut steps = Vec::new();
    // A guard only: a rollout takes at most 2 * desired + 1 steps, which the tests check.
    let limit = 4 * u64::from(desired) + 8;
    for _ in 0..limit {
        let step = next_step(&state, bounds);
        steps.push(step);
        if step.done || step == Step::default() {
            break;
        }
        state = applied(&state, step);
        if ready_each_step {
            state.new_ready = state.new;
        }
    }
    steps
}

/// The replicas right after `step` is done: created ones not ready yet, removed old ones taken
/// from those that are not ready first.
fn applied(state: &Progress, step: Step) -> Progress {
    let remove = step.remove_old.min(state.old);
    let unready_removed = remove.min(state.old - state.old_ready.min(state.old));
    Progress {
        desired: state.desired,
        old: state.old - remove,
        old_ready: state.old_ready.min(state.old) - (remove - unready_removed),
        new: state.new.saturating_add(step.create_new),
        new_ready: state.new_ready,
    }
}

#[cfg(test)]
mod tests {
    use super::IntOrPercent::{Count, Percent};
    use super::*;

    #[test]
    fn values_are_read_as_counts_or_percentages_and_written_back_alike() {
        for (text, want) in [("2", Count(2)), ("0", Count(0)), ("25%", Percent(25))]
            .into_iter()
            .chain([
                ("0%", Percent(0)),
                ("100%", Percent(100)),
                ("007", Count(7)),
            ])
        {
            assert_eq!(IntOrPercent::parse(text), Ok(want), "{text}");
        }
        assert_eq!(Count(2).to_string(), "2");
        assert_eq!(Percent(25).to_string(), "25%");
    }

    #[test]
    fn a_value_that_is_not_a_count_or_a_percentage_is_refused_saying_why() {
        let rows = [
            ("", "empty value"),
            ("-1", "\"-1\" is negative"),
            ("-5%", "\"-5%\" is negative"),
            ("101%", "\"101%\" is over 100%"),
            ("99999999999%", "is over 100%"),
            ("abc", "\"abc\" is not a number"),
            ("2.5", "\"2.5\" is not a number"),
            ("+2", "\"+2\" is not a number"),
            (" 2", "\" 2\" is not a number"),
            ("25 %", "\"25 %\" is not a number"),
            ("%", "\"%\" alone has no number"),
            ("4294967296", "\"4294967296\" is too large"),
        ];
        for (text, want) in rows {
            let err = IntOrPercent::parse(text).expect_err(text);
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn bounds_round_surge_up_and_unavailable_down_and_never_leave_both_at_zero() {
        let rows = [
            // 25% of 10 is 2.5: surge up to 3, unavailable down to 2.
            (10, Percent(25), Percent(25), 3, 2),
            // 25% of 1 is 0.25: surge up to 1, unavailable down to 0.
            (1, Percent(25), Percent(25), 1, 0),
            // 0% of 3 is 0 both ways: unavailable becomes 1 so the rollout can move.
            (3, Percent(0), Percent(0), 0, 1),
            (10, Percent(100), Count(0), 10, 0),
            // 50% of 7 is 3.5: unavailable down to 3; a count stays as given.
            (7, Count(2), Percent(50), 2, 3),
            // 10% of 5 is 0.5: surge up to 1, unavailable down to 0.
            (5, Percent(10), Percent(10), 1, 0),
            // Nothing of 0 replicas: both 0, so unavailable becomes 1.
            (0, Percent(25), Percent(25), 0, 1),
            // One zero a count and one a percentage is not the refused literal 0 / 0.
            (3, Count(0), Percent(0), 0, 1),
        ];
        for (replicas, surge, unavailable, want_surge, want_unavailable) in rows {
            let want = Bounds {
                surge: want_surge,
                unavailable: want_unavailable,
            };
            assert_eq!(
                bounds(replicas, surge, unavailable),
                Ok(want),
                "{replicas} {surge}"
            );
        }
    }

    #[test]
    fn both_bounds_given_as_zero_counts_are_refused() {
        let err = bounds(4, Count(0), Count(0)).expect_err("0 / 0");
        assert!(
            err.contains("maxSurge and maxUnavailable cannot both be 0"),
            "{err}"
        );
    }

    #[test]
    fn the_default_bounds_are_a_quarter_each_way() {
        assert_eq!(
            Bounds::default_for(10),
            Bounds {
                surge: 3,
                unavailable: 2
            }
        );
        assert_eq!(
            Bounds::default_for(4),
            Bounds {
                surge: 1,
                unavailable: 1
            }
        );
        assert_eq!(
            Bounds::default_for(1),
            Bounds {
                surge: 1,
                unavailable: 0
            }
        );
    }

    fn progress(desired: u32, old: (u32, u32), new: (u32, u32)) -> Progress {
        Progress {
            desired,
            old: old.0,
            old_ready: old.1,
            new: new.0,
            new_ready: new.1,
        }
    }

    #[test]
    fn each_step_creates_and_removes_as_far_as_the_bounds_allow() {
        // (desired, surge, unavailable, (old, ready), (new, ready), create, remove)
        let rows = [
            // Fresh start: 12 allowed, 10 exist: create 2; ready must stay at 10: remove none.
            (10, 2, 0, (10, 10), (0, 0), 2, 0),
            // The 2 new are not ready: 12 exist, 10 ready: wait.
            (10, 2, 0, (10, 10), (2, 0), 0, 0),
            // The 2 new are ready: 12 ready, floor 10: remove 2.
            (10, 2, 0, (10, 10), (2, 2), 0, 2),
            // 10 exist again: create 2.
            (10, 2, 0, (8, 8), (2, 2), 2, 0),
            // Defaults on 10 (3 / 2): 13 allowed: create 3; floor 8 of 10 ready: remove 2.
            (10, 3, 2, (10, 10), (0, 0), 3, 2),
            // The last 2 old go once all 10 new are ready: 12 ready, floor 10.
            (10, 2, 0, (2, 2), (10, 10), 0, 2),
            // A floor below the old count still removes only the old replica there is.
            (10, 0, 5, (1, 1), (10, 10), 0, 1),
            // Surge 10 would allow 13, but only 1 more new is wanted; 5 ready, floor 3: remove 2.
            (3, 10, 0, (3, 3), (2, 2), 1, 2),
            // old_ready above old is read as old: 3 ready, floor 3, nothing to remove.
            (3, 1, 0, (2, 5), (1, 1), 1, 0),
        ];
        for (desired, surge, unavailable, old, new, create_new, remove_old) in rows {
            let state = progress(desired, old, new);
            let step = next_step(&state, Bounds { surge, unavailable });
            let want = Step {
                create_new,
                remove_old,
                done: false,
            };
            assert_eq!(
                step, want,
                "{state:?} surge {surge} unavailable {unavailable}"
            );
        }
    }

    #[test]
    fn old_replicas_that_are_not_ready_are_removed_first_even_at_the_floor() {
        // (desired, surge, unavailable, (old, ready), (new, ready), create, remove)
        let rows = [
            // Floor 3, 3 ready: no ready one may go, but the 1 not ready may; 5 allowed: create 1.
            (4, 1, 1, (4, 3), (0, 0), 1, 1),
            // Floor 3, only 2 ready: the cap is 4 + 0 - 3 = 1, so 1 of the 2 not ready goes.
            (4, 1, 1, (4, 2), (0, 0), 1, 1),
            // Floor 8, 6 ready: cap 10 + 0 - 8 = 2, 2 of the 4 not ready go; 13 allowed: create 3.
            (10, 3, 2, (10, 6), (0, 0), 3, 2),
            // Cap 8 + 3 - 8 = 3: the 2 not ready, then 1 ready (9 ready, floor 8); create 2.
            (10, 3, 2, (8, 6), (3, 3), 2, 3),
        ];
        for (desired, surge, unavailable, old, new, create_new, remove_old) in rows {
            let state = progress(desired, old, new);
            let step = next_step(&state, Bounds { surge, unavailable });
            let want = Step {
                create_new,
                remove_old,
                done: false,
            };
            assert_eq!(
                step, want,
                "{state:?} surge {surge} unavailable {unavailable}"
            );
        }
    }

    #[test]
    fn removing_old_replicas_takes_those_that_are_not_ready_first() {
        let state = progress(10, (8, 6), (3, 3));
        let after = applied(
            &state,
            Step {
                create_new: 2,
                remove_old: 3,
                done: false,
            },
        );
        assert_eq!(after, progress(10, (5, 5), (5, 3)));
    }

    #[test]
    fn a_rollout_is_done_only_with_every_new_replica_ready_and_no_old_one_left() {
        let bounds = Bounds {
            surge: 2,
            unavailable: 0,
        };
        let done = Step {
            create_new: 0,
            remove_old: 0,
            done: true,
        };
        assert_eq!(next_step(&progress(10, (0, 0), (10, 10)), bounds), done);
        assert_eq!(
            next_step(&progress(10, (0, 0), (10, 9)), bounds),
            Step::default()
        );
        assert_eq!(next_step(&progress(0, (0, 0), (0, 0)), bounds), done);
        let last_old = next_step(&progress(10, (1, 0), (10, 10)), bounds);
        assert_eq!(
            last_old,
            Step {
                create_new: 0,
                remove_old: 1,
                done: false
            }
        );
    }

    #[test]
    fn a_rollout_of_ten_with_surge_two_takes_five_rounds_of_two_steps() {
        let steps = simulate(
            10,
            Bounds {
                surge: 2,
                unavailable: 0,
            },
            true,
        );
        let create = Step {
            create_new: 2,
            remove_old: 0,
            done: false,
        };
        let remove = Step {
            create_new: 0,
            remove_old: 2,
            done: false,
        };
        let mut want = [create, remove].repeat(5);
        want.push(Step {
            create_new: 0,
            remove_old: 0,
            done: true,
        });
        assert_eq!(steps, want);
    }

    /// Pairs of `maxSurge` and `maxUnavailable` the property checks run over.
    const BOUNDS: [(IntOrPercent, IntOrPercent); 7] = [
        (Percent(25), Percent(25)),
        (Count(0), Count(1)),
        (Count(1), Count(0)),
        (Count(2), Count(0)),
        (Percent(100), Count(0)),
        (Percent(0), Percent(100)),
        (Percent(0), Percent(0)),
    ];

    /// Replays `steps` from an all-ready old revision and checks, after every step, the limits a
    /// rolling update promises; returns the replicas at the end.
    fn replay(desired: u32, bounds: Bounds, steps: &[Step], ready: bool) -> Progress {
        let mut state = progress(desired, (desired, desired), (0, 0));
        let floor = desired.saturating_sub(bounds.unavailable);
        for step in steps {
            assert!(
                step.remove_old <= state.old,
                "{desired} {bounds:?} {step:?} {state:?}"
            );
            state = applied(&state, *step);
            assert!(
                state.old + state.new <= desired + bounds.surge,
                "{desired} {bounds:?}"
            );
            assert!(
                state.old_ready + state.new_ready >= floor,
                "{desired} {bounds:?}"
            );
            assert!(state.new <= desired, "{desired} {bounds:?} {state:?}");
            if ready {
                state.new_ready = state.new;
            }
        }
        state
    }

    #[test]
    fn every_rollout_with_healthy_replicas_ends_within_bounds_in_at_most_two_steps_a_replica() {
        for desired in 1..=20 {
            for (surge, unavailable) in BOUNDS {
                let bounds = bounds(desired, surge, unavailable).expect("valid bounds");
                let steps = simulate(desired, bounds, true);
                assert!(
                    steps.len() as u32 <= 2 * desired + 2,
                    "{desired} {bounds:?} {steps:?}"
                );
                assert!(
                    steps.last().is_some_and(|step| step.done),
                    "{desired} {bounds:?}"
                );
                let end = replay(desired, bounds, &steps, true);
                assert_eq!(end, progress(desired, (0, 0), (desired, desired)));
            }
        }
    }

    #[test]
    fn a_rollout_whose_new_replicas_never_get_ready_stalls_above_the_floor() {
        for desired in 1..=20 {
            for (surge, unavailable) in BOUNDS {
                let bounds = bounds(desired, surge, unavailable).expect("valid bounds");
                let steps = simulate(desired, bounds, false);
                assert!(
                    steps.len() as u32 <= 2 * desired + 2,
                    "{desired} {bounds:?} {steps:?}"
                );
                assert_eq!(steps.last(), Some(&Step::default()), "{desired} {bounds:?}");
                let end = replay(desired, bounds, &steps, false);
                assert_eq!(end.old_ready, desired.saturating_sub(bounds.unavailable));
            }
        }
    }
}
