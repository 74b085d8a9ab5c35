//! Alerts that wait for their actions, and what that means for the checkpoints: [`start_actions`]
//! runs each alert's actions in a task of its own (so no alert waits for another's), and
//! [`Holds`] keeps a source's saved position behind the batches whose alerts are still waiting,
//! releasing it in order as their actions finish ([`ActionsDone`]). Fleet alerts' actions
//! ([`Engine::take_fleet_pending`]) run the same way, without a hold: they come from the
//! store's totals, not from a batch's lines.

use super::engine::{Engine, PendingAlert};
use crate::actions::ActionResult;
use crate::message::Rendered;
use crate::source::Position;
use tokio::sync::mpsc;
use tracing::error;

/// An alert whose actions have finished, on its way back to the loop.
pub(super) struct ActionsDone {
    pub(super) alert: PendingAlert,
    pub(super) results: Vec<ActionResult>,
    /// (source, hold id) of the batch that made the alert; `None` for a fleet alert.
    pub(super) hold: Option<(usize, u64)>,
}

/// Start the actions of the alerts a batch made, each alert in a task of its own (its commands
/// under the runner's concurrency limit and timeouts); each sends its alert with the results
/// on `tx` when its own actions have finished, so that no alert (an URGENT one least of all)
/// waits for another's actions. Returns how many were started, and the alerts that need no
/// task (no runner) rendered at once.
pub(super) fn start_actions(
    engine: &mut Engine,
    tx: &mpsc::UnboundedSender<ActionsDone>,
    source: usize,
    hold: u64,
) -> (usize, Vec<Rendered>) {
    let pending = engine.take_pending();
    run_actions(engine, pending, tx, Some((source, hold)))
}

/// Start the actions of `pending` as [`start_actions`] does; `hold` goes back with each
/// [`ActionsDone`].
pub(super) fn run_actions(
    engine: &mut Engine,
    pending: Vec<PendingAlert>,
    tx: &mpsc::UnboundedSender<ActionsDone>,
    hold: Option<(usize, u64)>,
) -> (usize, Vec<Rendered>) {
    let Some(runner) = engine.action_runner() else {
        let mut out = Vec::new();
        for p in pending {
            out.extend(engine.finish_pending(p, Vec::new()));
        }
        return (0, out);
    };
    let n = pending.len();
    for alert in pending {
        let (runner, tx) = (runner.clone(), tx.clone());
        tokio::task::spawn_blocking(move || {
            let results = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                runner.run_named(&alert.action, &alert.names)
            }))
            .unwrap_or_else(|_| {
                error!(ip = %alert.action.ip, "an action task panicked; the alert goes out without results");
                Vec::new()
            });
            let _ = tx.send(ActionsDone {
                alert,
                results,
                hold,
            });
        });
    }
    (n, Vec::new())
}

/// Where each source's checkpoint may go while alerts wait for their actions. A batch whose
/// alerts' actions still run holds its source's checkpoint before it (after a crash the lines
/// are read again and the alerts made again; the shipped examples are idempotent, and the ids
/// of alerts already spooled are not sent twice); later batches queue behind it, and the
/// checkpoint moves on, in order, as the holds are released.
#[derive(Default)]
pub(super) struct Holds {
    per_source: Vec<std::collections::VecDeque<Hold>>,
    next: u64,
    pub(super) in_flight: usize,
}

struct Hold {
    id: u64,
    /// Where the source stands after this batch (and after later batches without alerts).
    position: Position,
    outstanding: usize,
}

impl Holds {
    pub(super) fn new(sources: usize) -> Holds {
        Holds {
            per_source: (0..sources).map(|_| Default::default()).collect(),
            ..Default::default()
        }
    }

    /// The id for the next batch's hold.
    pub(super) fn next_id(&self) -> u64 {
        self.next
    }

    /// A batch of `source` was processed; `started` of its alerts wait for their actions.
    pub(super) fn batch(
        &mut self,
        source: usize,
        position: Position,
        started: usize,
        positions: &mut [Position],
    ) {
        let Some(q) = self.per_source.get_mut(source) else {
            return;
        };
        if started > 0 {
            q.push_back(Hold {
                id: self.next,
                position,
                outstanding: started,
            });
            self.next += 1;
            self.in_flight += started;
        } else if let Some(last) = q.back_mut() {
            last.position = position;
        } else {
            positions[source] = position;
        }
    }

    /// One alert of hold `id` of `source` is done.
    pub(super) fn done(&mut self, source: usize, id: u64, positions: &mut [Position]) {
        let Some(q) = self.per_source.get_mut(source) else {
            return;
        };
        if let Some(h) = q.iter_mut().find(|h| h.id == id) {
            h.outstanding = h.outstanding.saturating_sub(1);
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        while q.front().is_some_and(|h| h.outstanding == 0) {
            if let Some(h) = q.pop_front() {
                positions[source] = h.position;
            }
        }
    }
}
