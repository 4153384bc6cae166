//! The run loop: the terminal set up and restored, and one loop that selects over terminal
//! events, worker updates, action outcomes, signals, a one-second tick and (while the rollout
//! view is open) the rollout poll, and draws only when something changed, at most once per
//! frame.
//!
//! Not for state changes: those are the app's; this only routes events to it.

use std::io::{self, Stdout};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use crossterm::event::{Event, EventStream};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures::StreamExt;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, MissedTickBehavior};

use crate::actuator::ActionOutcome;
use crate::autoscaler::{DecisionRecord, Status};
use crate::platform::Update;
use crate::store::Change;

use super::app::{App, View};
use super::rollouts::POLL_EVERY;

/// Updates applied in one go before the loop looks at the keyboard again.
const UPDATES_PER_TURN: usize = 256;

type Term = Terminal<CrosstermBackend<Stdout>>;

/// Put the terminal in raw mode on the alternate screen.
pub fn enter() -> io::Result<Term> {
    enable_raw_mode()?;
    let mut stdout = io::stdout();
    if let Err(e) = execute!(stdout, EnterAlternateScreen) {
        restore();
        return Err(e);
    }
    let mut terminal = Terminal::new(CrosstermBackend::new(stdout))?;
    terminal.hide_cursor()?;
    terminal.clear()?;
    Ok(terminal)
}

/// Give the terminal back as it was. Safe to call more than once and from a panic hook;
/// errors are ignored because the terminal may already be gone (a dropped SSH session).
pub fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, crossterm::cursor::Show);
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Quit,
    Hangup,
    Terminated,
    Interrupted,
    TerminalClosed,
}

/// Everything besides the terminal that the console listens to.
pub struct Feeds {
    /// Worker updates.
    pub updates: mpsc::Receiver<Update>,
    /// Outcomes of actions that ran.
    pub outcomes: mpsc::UnboundedReceiver<ActionOutcome>,
    /// The autoscaler's status; `None` when the autoscaler is off.
    pub rules: Option<watch::Receiver<Arc<Status>>>,
    /// Previews the rule editor asked for, by request number.
    pub previews: mpsc::UnboundedReceiver<(u64, Vec<DecisionRecord>)>,
}

/// Run the console until the operator quits or a signal ends it. The terminal is restored on
/// every path out.
pub async fn run(app: &mut App, feeds: &mut Feeds) -> color_eyre::Result<Exit> {
    let mut terminal = enter()?;
    let result = event_loop(&mut terminal, app, feeds).await;
    restore();
    Ok(result?)
}

/// The autoscaler's next status; never resolves while there is no autoscaler.
async fn next_status(rules: &mut Option<watch::Receiver<Arc<Status>>>) -> Arc<Status> {
    loop {
        let Some(rx) = rules.as_mut() else {
            return std::future::pending().await;
        };
        if rx.changed().await.is_ok() {
            return Arc::clone(&rx.borrow_and_update());
        }
        *rules = None;
    }
}

async fn event_loop(terminal: &mut Term, app: &mut App, feeds: &mut Feeds) -> io::Result<Exit> {
    let Feeds {
        updates,
        outcomes,
        rules,
        previews,
    } = feeds;
    let frame = Duration::from_millis(1000 / u64::from(app.config.ui.frame_rate.max(1)));
    let mut events = EventStream::new();
    let mut signals = Signals::new()?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut rollout_poll = tokio::time::interval(POLL_EVERY);
    rollout_poll.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let mut pending = Change::Structure;
    let mut last_draw: Option<Instant> = None;

    loop {
        let due = last_draw.is_none_or(|t| t.elapsed() >= frame);
        if pending == Change::Structure && due {
            app.now = Utc::now();
            terminal.draw(|f| super::draw(f, app))?;
            last_draw = Some(Instant::now());
            pending = Change::None;
        }
        let deadline = last_draw.map_or_else(Instant::now, |t| t + frame);

        tokio::select! {
            biased;
            exit = signals.next() => return Ok(exit),
            event = events.next() => match event {
                Some(Ok(Event::Key(key))) => {
                    if app.on_key(key) {
                        pending = Change::Structure;
                    }
                }
                Some(Ok(Event::Resize(..))) => pending = Change::Structure,
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Ok(Exit::TerminalClosed),
            },
            Some(update) = updates.recv() => {
                pending = pending.max(apply_batch(app, update, updates));
            }
            Some(outcome) = outcomes.recv() => {
                app.on_outcome(outcome);
                pending = Change::Structure;
            }
            status = next_status(rules) => pending = pending.max(app.on_rules(status)),
            Some((number, records)) = previews.recv() => {
                app.on_preview(number, &records);
                pending = Change::Structure;
            }
            _ = tick.tick() => pending = Change::Structure,
            // The rollout view reads its few state files while it is open, and only then.
            _ = rollout_poll.tick(), if app.view == View::Rollouts => {
                if app.poll_rollouts() {
                    pending = Change::Structure;
                }
            }
            _ = tokio::time::sleep_until(deadline), if pending == Change::Structure => {}
        }
        if app.quit {
            return Ok(Exit::Quit);
        }
    }
}

/// Apply one update and whatever else is already waiting, up to a limit, so a flood of log
/// lines is taken in batches and keys are still read between them. Numbers-only changes wait
/// for the next tick.
fn apply_batch(app: &mut App, first: Update, updates: &mut mpsc::Receiver<Update>) -> Change {
    let mut change = app.on_update(first);
    for _ in 0..UPDATES_PER_TURN {
        match updates.try_recv() {
            Ok(update) => change = change.max(app.on_update(update)),
            Err(_) => break,
        }
    }
    match change {
        Change::Numbers => Change::None,
        other => other,
    }
}

/// SIGHUP, SIGTERM and SIGINT, each ending the console cleanly.
struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> Exit {
        tokio::select! {
            _ = self.hup.recv() => Exit::Hangup,
            _ = self.term.recv() => Exit::Terminated,
            _ = self.int.recv() => Exit::Interrupted,
        }
    }
}
