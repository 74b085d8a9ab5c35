//! The agent's I/O loop behind `authwatch run`: it starts a reader thread per source
//! ([`crate::source::spawn_reader`]), the mail task and the metrics endpoint, then feeds the
//! [`Engine`] from one `select!` loop: batches of lines, finished actions, the policy's and the
//! health timers, checkpoint saves, and reloads (SIGHUP, see `reload.rs`). A batch takes one
//! path ([`Pipeline::batch`]) in the loop and in the shutdown drain: its alerts are staged in
//! the spool and committed before the source's checkpoint may move past its lines.
//!
//! SIGTERM and Ctrl-C stop the readers; what they read is still processed, alerts still
//! waiting for their actions go out when those end, the state is saved, queued mail gets a
//! short grace period, and the process exits 0.

use super::engine::Engine;
use super::health::{write_status, Health, HealthContextParts};
use super::holds::{run_actions, start_actions, ActionsDone, Holds};
use super::reload::reload_config;
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, SourceKind};
use crate::hostinfo::HostInfo;
use crate::mail::{run_mailer, Composer, Sender, Spool, SpoolWriter};
use crate::message::Rendered;
use crate::source::{spawn_reader, Batch, Position, Reader};
use crate::state::{self, Checkpointer, CursorState, SourceState, State};
use anyhow::{Context, Result};
use jiff::Timestamp;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// Stage an alert for the spool (see [`SpoolWriter`]): it becomes durable, and the mail task
/// is woken, at [`commit`], once per batch of lines or timer tick. An alert whose id was
/// spooled before (lines read again after a crash) is not sent again.
/// How long a stopping agent waits for its queued hits to reach the fleet store.
const FLEET_SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

fn queue(composer: &Composer, writer: &mut SpoolWriter, r: Rendered) {
    if let Some(id) = writer.seen_alert(&r) {
        info!(id = %id, subject = %r.subject, "alert already sent before a restart; not sending it again");
        return;
    }
    match composer.build(&r) {
        Ok(msg) => {
            if let Err(e) = writer.stage(&msg, &r) {
                error!(
                    dir = %writer.spool().dir().display(),
                    error = %e,
                    subject = %r.subject,
                    body = %r.text,
                    "cannot write the alert to the spool"
                );
            }
        }
        Err(e) => {
            error!(error = %format!("{e:#}"), subject = %r.subject, "cannot build the alert mail")
        }
    }
}

/// Make the staged alerts durable, then wake the mail task. Call before a checkpoint may move
/// past the lines that made them.
fn commit(writer: &mut SpoolWriter, notify: &tokio::sync::Notify) {
    if writer.commit() > 0 {
        notify.notify_one();
    }
}

/// How long saving the state may be put off while actions run (the saved detectors must not
/// be ahead of the saved checkpoints): longer than any one action may take
/// ([`crate::actions::MAX_TIMEOUT`]), so only an unbroken stream of overlapping actions
/// reaches it.
const MAX_SAVE_DEFERRAL: Duration = Duration::from_secs(900);

/// Make sure the state folder exists (created `0700`) and is writable, and take its lock (a
/// second agent on the same folder refuses to start, naming the first one's pid); a clear
/// error otherwise. The lock is held as long as the returned guard lives.
fn prepare_state_dir(cfg: &Config) -> Result<state::StateLock> {
    let d = &cfg.state_dir;
    state::create_private_dir(d)
        .with_context(|| format!("state_dir {}: cannot create the folder", d.display()))?;
    let probe = d.join(".authwatch-write-test");
    state::create_private(&probe)
        .with_context(|| format!("state_dir {}: not writable", d.display()))?;
    let _ = std::fs::remove_file(probe);
    state::lock_state_dir(d).map_err(|e| anyhow::anyhow!("{e}"))
}

/// How often evictions from the per-key maps are reported (once per interval, and at stop:
/// never silently).
const EVICTION_REPORT_INTERVAL: Duration = Duration::from_secs(60);

/// Warn about keys evicted from each map since the last report (`reported`: the running
/// totals then, updated).
fn report_evictions(engine: &Engine, reported: &mut [(&'static str, u64); 3], cap: usize) {
    for (now, last) in engine.evictions_by_map().iter().zip(reported.iter_mut()) {
        if now.1 > last.1 {
            let evicted = now.1 - last.1;
            match now.0 {
                "ips" => warn!(evicted, cap, "tracked IPs reached detect.max_tracked_ips; the least recently seen were forgotten"),
                "subnets" => warn!(evicted, cap, "tracked subnets reached detect.max_tracked_ips; the least recently seen were forgotten"),
                _ => warn!(evicted, cap, "tracked accounts reached detect.max_tracked_ips; the least recently seen were forgotten"),
            }
            *last = *now;
        }
    }
}

/// How long shutdown waits for spooled alerts to be sent before leaving them for the next start.
const SHUTDOWN_MAIL_GRACE: Duration = Duration::from_secs(5);

/// `authwatch run` on a fresh tokio runtime, until SIGTERM or Ctrl-C.
pub fn run_blocking(cfg: Config) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        // Register the handlers now, before any work: a SIGTERM that arrives while the first
        // lines are being read must still shut down cleanly.
        #[cfg(unix)]
        let shutdown = {
            use tokio::signal::unix::{signal, SignalKind};
            let term = signal(SignalKind::terminate());
            let int = signal(SignalKind::interrupt());
            async move {
                match (term, int) {
                    (Ok(mut term), Ok(mut int)) => {
                        tokio::select! {
                            _ = term.recv() => info!("SIGTERM received; shutting down"),
                            _ = int.recv() => info!("interrupt received; shutting down"),
                        }
                    }
                    (term, int) => {
                        let e = term.err().or(int.err()).map(|e| e.to_string()).unwrap_or_default();
                        warn!(error = %e, "cannot listen for SIGTERM/SIGINT; only Ctrl-C stops authwatch");
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            }
        };
        #[cfg(not(unix))]
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let (hup_tx, hup_rx) = mpsc::channel(1);
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            match signal(SignalKind::hangup()) {
                Ok(mut hup) => {
                    tokio::spawn(async move {
                        while hup.recv().await.is_some() {
                            info!("SIGHUP received; reloading the configuration");
                            let _ = hup_tx.try_send(());
                        }
                    });
                }
                Err(e) => warn!(error = %e, "cannot listen for SIGHUP; reload by restarting"),
            }
        }
        #[cfg(not(unix))]
        drop(hup_tx);
        run(cfg, Arc::new(SystemClock), shutdown, Some(hup_rx)).await
    })
}

/// The running mail task and its controls.
struct MailTask {
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
    status: tokio::sync::watch::Receiver<crate::mail::MailStatus>,
}

impl MailTask {
    fn start(
        sender: Sender,
        cfg: &Config,
        notify: Arc<tokio::sync::Notify>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<MailTask> {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (status_tx, status) = tokio::sync::watch::channel(crate::mail::MailStatus::default());
        let task = tokio::spawn(run_mailer(
            sender,
            Spool::open(&cfg.state_dir)?,
            notify,
            stop_rx,
            cfg.mail.retry.clone(),
            status_tx,
            metrics,
        ));
        Ok(MailTask { task, stop, status })
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        if let Err(e) = self.task.await {
            error!(error = %e, "mail task failed");
        }
    }
}

/// What a batch of lines, a finished action and a timer tick touch: the engine, the spool its
/// alerts are staged in, the health of the sources, and where each source may be saved.
struct Pipeline {
    engine: Engine,
    composer: Composer,
    writer: SpoolWriter,
    notify: Arc<tokio::sync::Notify>,
    health: Health,
    holds: Holds,
    /// Per source: the position to save (behind batches whose alerts wait for actions).
    positions: Vec<Position>,
    done_tx: mpsc::UnboundedSender<ActionsDone>,
    /// Fleet alerts whose actions run (no hold on a checkpoint; shutdown waits for them).
    fleet_in_flight: usize,
    /// Writes the checkpoints (journal lines or new generations; see `state::journal`).
    checkpointer: Checkpointer,
}

impl Pipeline {
    /// Stage an alert for the spool (see [`queue`]).
    fn queue(&mut self, r: Rendered) {
        queue(&self.composer, &mut self.writer, r);
    }

    /// Make the staged alerts durable and wake the mail task (see [`commit`]).
    fn commit(&mut self) {
        commit(&mut self.writer, &self.notify);
    }

    /// One batch from a source: the one path for the main loop and the shutdown drain. Its
    /// lines go through the engine, the alerts due are staged, those with actions start them,
    /// the staged alerts are committed, and only then may the source's checkpoint move past
    /// the lines (not past alerts still waiting for their actions; see [`Holds`]).
    fn batch(&mut self, cfg: &Config, batch: Batch, now: Timestamp) {
        self.health.batch(&batch, now);
        let name = cfg.sources.get(batch.source).map(|s| s.name());
        if let Some(name) = &name {
            self.engine
                .metrics
                .add_lines_read(name, batch.lines.len() as u64);
        }
        self.engine.refresh_clock();
        let ids = match self.engine.fleet() {
            Some(_) => crate::fleet::line_ids(&batch),
            None => Vec::new(),
        };
        for (i, l) in batch.lines.iter().enumerate() {
            self.engine.set_line_id(ids.get(i).copied());
            for r in self.engine.line(batch.source, l) {
                self.queue(r);
            }
        }
        let _ = self.fleet_poll();
        let hold = self.holds.next_id();
        let (started, ready) = start_actions(&mut self.engine, &self.done_tx, batch.source, hold);
        for r in ready {
            self.queue(r);
        }
        // Caught up (the source holds nothing more now): no lag, however old the last line.
        if let (Some(name), true) = (&name, batch.caught_up) {
            self.engine.metrics.set_lag_seconds(name, 0.0);
        } else if let (Some(name), Some(last)) = (&name, batch.lines.last()) {
            if let Some(lag) = self.engine.lag_of(last) {
                self.engine.metrics.set_lag_seconds(name, lag);
            }
        }
        // The batch's alerts without actions are durable in the spool (one commit per batch,
        // not per alert); only now may the checkpoint move past them.
        self.commit();
        self.holds
            .batch(batch.source, batch.position, started, &mut self.positions);
    }

    /// An alert's actions are done: it goes out now, and its batch's hold on the checkpoint is
    /// released.
    fn finish(&mut self, d: ActionsDone) {
        for r in self.engine.finish_pending(d.alert, d.results) {
            self.queue(r);
        }
        self.commit();
        match d.hold {
            Some((source, hold)) => self.holds.done(source, hold, &mut self.positions),
            None => self.fleet_in_flight = self.fleet_in_flight.saturating_sub(1),
        }
    }

    /// Fleet totals and claims ([`Engine::fleet_poll`]): the mails due are staged (not
    /// committed), and the actions of fleet alerts are started. Returns whether anything was.
    fn fleet_poll(&mut self) -> bool {
        let due = self.engine.fleet_poll();
        let pending = self.engine.take_fleet_pending();
        let any = !due.is_empty() || !pending.is_empty();
        for r in due {
            self.queue(r);
        }
        if !pending.is_empty() {
            let (started, ready) = run_actions(&mut self.engine, pending, &self.done_tx, None);
            self.fleet_in_flight += started;
            for r in ready {
                self.queue(r);
            }
        }
        any
    }

    /// Alerts still waiting for their actions (local and fleet).
    fn actions_running(&self) -> usize {
        self.holds.in_flight + self.fleet_in_flight
    }

    /// Health alerts that are due and the policy's timers; returns whether alerts went out.
    fn tick(&mut self, mail: &crate::mail::MailStatus, now: Timestamp) -> bool {
        for parts in self.health.due(mail, now) {
            let r = self.engine.render_health(parts);
            self.queue(r);
        }
        let due = self.engine.tick();
        let mut any = !due.is_empty();
        for r in due {
            self.queue(r);
        }
        any |= self.fleet_poll();
        self.commit();
        any
    }

    /// Save checkpoints, detectors and the policy (`state_dir/state.json` and the detector
    /// files it names).
    fn save_state(&mut self, cfg: &Config) {
        let positions = &self.positions;
        let sources = cfg
            .sources
            .iter()
            .zip(positions)
            .filter_map(|(s, pos)| match (s.file(), pos) {
                (Some(path), Position::File(cp)) => Some(SourceState {
                    path: path.to_path_buf(),
                    checkpoint: cp.clone(),
                }),
                _ => None,
            })
            .collect();
        let cursors = cfg
            .sources
            .iter()
            .zip(positions)
            .filter_map(|(s, pos)| match pos {
                Position::Cursor(c) => Some(CursorState {
                    source: s.name(),
                    cursor: c.clone(),
                }),
                _ => None,
            })
            .collect();
        let r = self
            .checkpointer
            .checkpoint(&cfg.state_dir, sources, cursors, &mut self.engine);
        if let Err(e) = r {
            error!(dir = %cfg.state_dir.display(), error = %e, "cannot save the state (checkpoints, windows); a restart would re-read lines");
        }
    }
}

/// Where each source continues: its saved checkpoint or journal cursor, if any.
fn saved_positions(cfg: &Config, saved: Option<&State>) -> Vec<Position> {
    cfg.sources
        .iter()
        .map(|s| match &s.kind {
            SourceKind::File(p) => saved
                .and_then(|st| st.checkpoint_for(p))
                .map_or(Position::None, Position::File),
            SourceKind::Journal(_) => saved
                .and_then(|st| st.cursor_for(&s.name()))
                .map_or(Position::None, Position::Cursor),
            SourceKind::Stdin => Position::None,
        })
        .collect()
}

/// The agent: follow the sources, alert, until `shutdown` completes. Each message on `reload`
/// (SIGHUP) reads the config file again: thresholds, templates, mail settings and the policy
/// change without losing windows, incidents or history; a broken config is logged and the old
/// one kept. Sources and `state_dir` need a restart to change.
pub async fn run(
    cfg: Config,
    clock: Arc<dyn Clock>,
    shutdown: impl std::future::Future<Output = ()>,
    reload: Option<mpsc::Receiver<()>>,
) -> Result<()> {
    let mut cfg = cfg;
    let _lock = prepare_state_dir(&cfg)?;
    crate::config::log_permission_warnings(&cfg);
    let host = HostInfo::discover(&cfg.host);
    let mut engine = Engine::new(&cfg, &host, clock.clone())?;
    // The administrator's decisions (`authwatch silence | allow | ack`): loaded now, changed
    // live through the control socket.
    let decisions = match crate::control::Decisions::load(&cfg.state_dir, clock.now()) {
        Ok(d) => d,
        Err(e) => {
            error!(error = %e, "cannot load the decisions of `authwatch silence | allow | ack`; starting without them");
            crate::control::Decisions::default()
        }
    };
    if !decisions.is_empty() {
        info!(
            silences = decisions.silences.len(),
            allows = decisions.allows.len(),
            acks = decisions.acks.len(),
            "decisions of `authwatch silence | allow | ack` loaded"
        );
    }
    engine.set_decisions(Arc::new(std::sync::Mutex::new(decisions)));
    if let Some(fc) = &cfg.fleet {
        let windows = crate::fleet::Windows::from_detect(&cfg.detect);
        engine.set_fleet(
            crate::fleet::FleetHandle::start(fc, windows)?,
            fc.down_alert_after,
        );
        info!(store = %fc.url.masked(), name = %fc.name, "fleet mode: thresholds apply to the fleet's totals");
    }
    let clock_now = || clock.now();
    let composer = Composer::new(&cfg.mail)?.with_domain(&host.name);
    let sender = Sender::new(&cfg.mail, &host.name)?;
    let mut reload = reload;
    let mut mail_target = sender.target().to_string();
    let writer = SpoolWriter::open(&cfg.state_dir).with_context(|| {
        format!(
            "state_dir {}: cannot open the spool",
            cfg.state_dir.display()
        )
    })?;
    let spooled = writer.spool().pending().map(|v| v.len()).unwrap_or(0);
    info!(
        config = %cfg.origin,
        host = %host.name,
        host_ip = %host.ip_text(),
        mail = %sender.target(),
        sources = cfg.sources.len(),
        spooled,
        "authwatch started"
    );
    let notify = Arc::new(tokio::sync::Notify::new());
    let health = Health::new(&cfg, &mail_target, clock_now());
    let mut mailer = MailTask::start(sender, &cfg, notify.clone(), engine.metrics.clone())?;
    let metrics_server = match cfg.metrics_listen {
        Some(addr) => match crate::metrics::serve(addr, engine.metrics.clone()) {
            Ok(srv) => {
                info!(listen = %srv.local_addr(), "metrics endpoint serving /metrics");
                Some(srv)
            }
            Err(e) => {
                error!(listen = %addr, error = %e, "cannot serve metrics; continuing without");
                None
            }
        },
        None => None,
    };
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<ActionsDone>();
    let (query_tx, mut query_rx) = mpsc::channel::<crate::control::server::IncidentsQuery>(8);
    // Fleet mode: silences and allows taken here go to the store, and the fleet's are merged
    // into this agent's (off the tailing path: a task of the fleet module).
    let on_change = engine.fleet().map(|f| {
        let sync = crate::fleet::DecisionSync::start(f, engine.decisions());
        let hook: crate::control::server::OnChange = Arc::new(move |req, d| {
            if let Some(c) = crate::fleet::shared::change_of(req, d) {
                sync.publish(c);
            }
        });
        hook
    });
    let control = match crate::control::server::start(
        &cfg.state_dir,
        engine.decisions(),
        query_tx,
        cfg.time_zone.clone(),
        on_change,
    ) {
        Ok(srv) => Some(srv),
        Err(e) => {
            error!(dir = %cfg.state_dir.display(), error = %e, "cannot open the control socket; `authwatch silence | allow | ack | incidents` will not reach this agent");
            None
        }
    };
    let mut p = Pipeline {
        engine,
        composer,
        writer,
        notify: notify.clone(),
        health,
        holds: Holds::new(cfg.sources.len()),
        positions: Vec::new(),
        done_tx,
        fleet_in_flight: 0,
        checkpointer: Checkpointer::default(),
    };

    let loaded = state::load_checked(&cfg.state_dir);
    p.checkpointer = Checkpointer::resume(&cfg.state_dir, &loaded);
    let saved = loaded.state;
    if let Some(problem) = loaded.problem {
        // Never silently: the windows (and maybe the offsets) of the last run are gone.
        error!(problem = %problem, "the saved state was corrupt");
        let now = clock_now();
        let r = p.engine.render_health(HealthContextParts {
            title: "saved state was corrupt".into(),
            what: cfg.state_dir.join("state.json").display().to_string(),
            detail: problem,
            since: now,
            until: None,
            advice: "The unusable file was kept as state.json.bad-<time> for a look. Check the disk and whether something else writes into state_dir; attacks in progress are counted afresh.".into(),
        });
        p.queue(r);
        p.commit();
    }
    p.positions = saved_positions(&cfg, saved.as_ref());
    if let Some(st) = saved {
        let sources = st.sources.len();
        p.engine.restore(st.detector);
        p.engine.apply_journal(st.journal);
        p.engine.restore_policy(st.policy);
        // Counted after the journal is applied: the snapshot alone misses the keys added
        // since the last full generation.
        let t = p.engine.tracking(cfg.detect.max_tracked_ips);
        info!(
            sources,
            tracked_ips = t.ips,
            tracked_subnets = t.subnets,
            tracked_accounts = t.accounts,
            "continuing from the saved state"
        );
    }

    let stop = Arc::new(AtomicBool::new(false));
    let (line_tx, mut line_rx) = mpsc::channel::<Batch>(64);
    let mut threads = Vec::new();
    for (i, s) in cfg.sources.iter().enumerate() {
        info!(source = %s.name(), services = ?s.services, start = ?s.start, "following");
        let reader = Reader::open(
            s,
            p.positions[i].clone(),
            cfg.follow.max_line_bytes,
            &cfg.time_zone,
        )?;
        threads.push(spawn_reader(
            i,
            reader,
            cfg.follow.poll_interval,
            stop.clone(),
            line_tx.clone(),
        )?);
    }
    // With only finite sources (stdin), authwatch ends when they have.
    let finite = cfg
        .sources
        .iter()
        .all(|s| matches!(s.kind, SourceKind::Stdin));
    let mut ended = vec![false; cfg.sources.len()];
    drop(line_tx);

    tokio::pin!(shutdown);
    let mut save_tick = tokio::time::interval(cfg.follow.checkpoint_interval);
    save_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dirty = false;
    let mut policy_tick = tokio::time::interval(Duration::from_secs(1));
    policy_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first report is one interval after start (a plain `interval` fires at once, which
    // split one batch's evictions between two warnings depending on which branch ran first).
    let mut eviction_tick = tokio::time::interval_at(
        tokio::time::Instant::now() + EVICTION_REPORT_INTERVAL,
        EVICTION_REPORT_INTERVAL,
    );
    let mut evictions_reported = p.engine.evictions_by_map();
    let mut save_deferred_since: Option<std::time::Instant> = None;
    let fleet = p.engine.fleet().cloned();
    loop {
        tokio::select! {
            _ = async {
                match &fleet {
                    Some(f) => f.ready().await,
                    None => std::future::pending().await,
                }
            } => {
                let _ = p.fleet_poll();
                p.commit();
            }
            Some(()) = async {
                match reload.as_mut() {
                    Some(r) => r.recv().await,
                    None => std::future::pending().await,
                }
            } => {
                match reload_config(&cfg, &host, &mut p.engine) {
                    Ok((new_cfg, sender)) => {
                        p.composer = Composer::new(&new_cfg.mail)?.with_domain(&host.name);
                        mail_target = sender.target().to_string();
                        let old = std::mem::replace(
                            &mut mailer,
                            MailTask::start(sender, &new_cfg, notify.clone(), p.engine.metrics.clone())?,
                        );
                        old.stop().await;
                        notify.notify_one();
                        p.health.cfg = new_cfg.health.clone();
                        // The detectors were rebuilt: their changes are no longer marked.
                        p.checkpointer.force_full();
                        info!(config = %new_cfg.origin, "configuration reloaded; windows and incidents kept");
                        cfg = new_cfg;
                    }
                    Err(e) => error!(error = %format!("{e:#}"), "configuration reload failed; keeping the running configuration"),
                }
            }
            _ = policy_tick.tick() => {
                let status = mailer.status.borrow().clone();
                if p.tick(&status, clock_now()) {
                    dirty = true;
                }
            }
            _ = eviction_tick.tick() => {
                report_evictions(&p.engine, &mut evictions_reported, cfg.detect.max_tracked_ips);
            }
            batch = line_rx.recv() => {
                let Some(batch) = batch else { break };
                let (source, done) = (batch.source, batch.done);
                p.batch(&cfg, batch, clock_now());
                dirty = true;
                if done {
                    if let Some(e) = ended.get_mut(source) {
                        *e = true;
                    }
                    if finite && ended.iter().all(|e| *e) {
                        info!("end of input; finishing");
                        break;
                    }
                }
            }
            Some(d) = done_rx.recv() => {
                p.finish(d);
                dirty = true;
            }
            Some(q) = query_rx.recv() => {
                let _ = q.reply.send(p.engine.incidents());
            }
            _ = save_tick.tick() => {
                if dirty {
                    // While actions run, the detectors are ahead of the held checkpoints: a
                    // state saved now would, after a crash, count the held lines twice.
                    let in_flight = p.holds.in_flight;
                    let deferred = save_deferred_since.map_or(Duration::ZERO, |t| t.elapsed());
                    if in_flight == 0 || deferred >= MAX_SAVE_DEFERRAL {
                        if in_flight > 0 {
                            warn!(running = in_flight, "actions have kept running for a long time; saving the state anyway");
                        }
                        p.save_state(&cfg);
                        dirty = false;
                        save_deferred_since = None;
                    } else {
                        save_deferred_since.get_or_insert_with(std::time::Instant::now);
                    }
                }
                let status = mailer.status.borrow().clone();
                write_status(&cfg, &p.engine, &p.health, &status, &mail_target, p.writer.spool());
            }
            _ = &mut shutdown => break,
        }
    }
    if let Some(srv) = control {
        srv.stop();
    }
    // Stop the readers; each makes one last poll, and what they read is still processed, on
    // the same path as in the loop.
    stop.store(true, Ordering::SeqCst);
    let joiner = tokio::task::spawn_blocking(move || {
        for t in threads {
            let _ = t.join();
        }
    });
    while let Some(batch) = line_rx.recv().await {
        p.batch(&cfg, batch, clock_now());
    }
    let _ = joiner.await;
    // Alerts still waiting for their actions go out when those end (each is under its
    // timeout, so this wait is bounded).
    if p.actions_running() > 0 {
        info!(
            running = p.actions_running(),
            "waiting for running actions before stopping"
        );
    }
    while p.actions_running() > 0 {
        let Some(d) = done_rx.recv().await else { break };
        p.finish(d);
    }
    if let Some(f) = p.engine.fleet() {
        // Hits not yet in the store are sent if it answers now (lines after the checkpoint are
        // read and sent again at the next start anyway: the store counts them once).
        f.flush(FLEET_SHUTDOWN_GRACE).await;
        f.stop();
    }
    p.save_state(&cfg);
    // Give the mail task a short while to send what was just spooled, then stop it; whatever
    // is left stays in the spool for the next start.
    notify.notify_one();
    let drain = async {
        while p
            .writer
            .spool()
            .pending()
            .map(|v| !v.is_empty())
            .unwrap_or(false)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let _ = tokio::time::timeout(SHUTDOWN_MAIL_GRACE, drain).await;
    mailer.stop().await;
    if let Some(srv) = metrics_server {
        srv.shutdown();
    }
    // Evictions since the last minute's report are not left unsaid.
    let engine = &p.engine;
    report_evictions(engine, &mut evictions_reported, cfg.detect.max_tracked_ips);
    let [(_, ev_ips), (_, ev_subnets), (_, ev_accounts)] = engine.evictions_by_map();
    info!(
        lines = engine.lines_seen,
        hits = engine.hits_seen,
        tracked_ips = engine.tracked_ips(),
        evicted_ips = ev_ips,
        evicted_subnets = ev_subnets,
        evicted_accounts = ev_accounts,
        "authwatch stopped"
    );
    Ok(())
}
