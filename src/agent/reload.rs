//! Configuration reload (SIGHUP): read the config file again and swap the settings of the
//! running agent while keeping all its state. [`reload_config`] refuses changes that need a
//! restart (the list of sources, `state_dir`, the `fleet` section); [`Engine::reload`] builds the new settings
//! (templates, thresholds, policy, actions) and carries across every piece of state: the
//! detectors' windows (the same instances when their settings did not change, else through a
//! snapshot), the policy's incidents and history, the compromise alerts already sent, the
//! attacked-login log, alerts waiting for their actions, the counters, and the rules
//! themselves (with their state, e.g. Dovecot's session pairing) when the rules did not change.

use super::engine::{account_settings, ip_settings, policy_settings, subnet_settings, Engine};
use crate::config::{Config, SourceKind};
use crate::hostinfo::HostInfo;
use crate::mail::Sender;
use anyhow::Result;
use std::fmt::Debug;

/// Read the config file again; check that it can replace `cfg` without a restart, then give the
/// running `engine` its settings. Returns the new config and a mail sender for it; on error
/// nothing has changed.
pub(super) fn reload_config(
    cfg: &Config,
    host: &HostInfo,
    engine: &mut Engine,
) -> Result<(Config, Sender)> {
    let Some(path) = &cfg.path else {
        anyhow::bail!("the embedded configuration cannot be reloaded; start with --config FILE");
    };
    let mut new = Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
    if cfg
        .sources
        .iter()
        .all(|s| matches!(s.kind, SourceKind::Stdin))
    {
        // `run --stdin`: the pipe stays the source, whatever the file lists.
        new.sources = cfg.sources.clone();
    }
    let same_sources = new.sources.len() == cfg.sources.len()
        && new
            .sources
            .iter()
            .zip(&cfg.sources)
            .all(|(a, b)| a.kind == b.kind && a.services == b.services);
    if !same_sources {
        anyhow::bail!("the sources changed: restart authwatch to follow the new list");
    }
    if new.state_dir != cfg.state_dir {
        anyhow::bail!("state_dir changed: restart authwatch to move it");
    }
    if new.fleet != cfg.fleet {
        // The store connection, the agent's name in the fleet and its key prefix belong to
        // the running fleet task; said, never silently kept.
        anyhow::bail!("the fleet section changed: restart authwatch to apply it");
    }
    let sender = Sender::new(&new.mail, &host.name)?;
    engine.reload(cfg, &new, host)?;
    Ok((new, sender))
}

/// Whether two settings values are the same. The settings types (owned by `config` and
/// `detect`) do not implement `PartialEq`; their `Debug` output lists every field (a regex as
/// its pattern), so equal output means equal settings. A false "changed" only costs the
/// lossless path (a fresh instance continued from a snapshot), never state.
fn same<T: Debug>(a: &T, b: &T) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

impl Engine {
    /// Swap in the settings of `new` (the running config being `old`), keeping every piece of
    /// state. Templates and actions are built first: on error the engine is unchanged.
    pub fn reload(&mut self, old: &Config, new: &Config, host: &HostInfo) -> Result<()> {
        let fresh = Engine::new(new, host, self.clock.clone())?;
        let prev = std::mem::replace(self, fresh);
        // Rules hold state across lines (Dovecot pairs per-attempt lines with the summary of
        // their session): keep them unless the rules themselves changed.
        let services = |c: &Config| c.sources.iter().map(|s| s.services.clone()).collect();
        let (old_services, new_services): (Vec<_>, Vec<_>) = (services(old), services(new));
        if old_services == new_services && same(&old.custom_rules, &new.custom_rules) {
            self.rules = prev.rules;
        }
        if same(&ip_settings(old), &ip_settings(new)) {
            self.detector = prev.detector;
        } else {
            self.detector.restore(prev.detector.snapshot());
        }
        match (&mut self.subnets, prev.subnets) {
            (Some(_), Some(p)) if same(&subnet_settings(old), &subnet_settings(new)) => {
                self.subnets = Some(p);
            }
            (Some((d, _)), Some((p, _))) => d.restore(p.snapshot()),
            _ => {}
        }
        match (&mut self.accounts, prev.accounts) {
            (Some(_), Some(p)) if same(&account_settings(old), &account_settings(new)) => {
                self.accounts = Some(p);
            }
            (Some((d, _)), Some((p, _))) => d.restore(p.snapshot()),
            _ => {}
        }
        self.policy = prev.policy;
        self.policy.set_settings(policy_settings(new));
        self.compromise_sent = prev.compromise_sent;
        self.attacked_login_logged = prev.attacked_login_logged;
        self.pending = prev.pending;
        // The administrator's decisions (`authwatch silence | allow | ack`) are not config.
        self.decisions = prev.decisions;
        self.incident_info = prev.incident_info;
        self.fleet = prev.fleet;
        self.metrics = prev.metrics;
        self.lines_seen = prev.lines_seen;
        self.hits_seen = prev.hits_seen;
        Ok(())
    }
}
