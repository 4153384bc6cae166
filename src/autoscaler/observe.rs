//! The engine's own view of the platforms: a store fed by the same worker updates as the
//! console's. One task takes every update from the workers, applies it to this store and passes
//! it on to the console unchanged, so the console keeps a store of its own and never waits on a
//! lock while it draws.
//!
//! Not for logs: log lines pass through to the console and are not kept here.

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use crate::platform::Update;
use crate::store::Store;

/// The store the rule tasks read; each holder locks it briefly and never across an await.
pub type Observed = Arc<Mutex<Store>>;

/// Apply every update from `updates` to `observed`, then hand it to `console` when there is
/// one. Ends when the workers have all stopped, or when the console is gone.
pub async fn fan_out(
    mut updates: mpsc::Receiver<Update>,
    observed: Observed,
    console: Option<mpsc::Sender<Update>>,
) {
    while let Some(update) = updates.recv().await {
        if !matches!(
            update,
            Update::Logs { .. } | Update::LogsEnded { .. } | Update::LogsPaused { .. }
        ) {
            // One step per update, so a panic elsewhere cannot leave the store half changed.
            let mut store = observed
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            store.apply(&update);
        }
        if let Some(console) = &console
            && console.send(update).await.is_err()
        {
            return;
        }
    }
}
