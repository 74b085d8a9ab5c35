//! `authwatch unblock IP`: take back what the actions did to an address, by running the `undo`
//! of every configured action that has one (argv, no shell, the same placeholders and limits
//! as the actions themselves), and print each result.

use super::{load, Exit};
use crate::actions::{ActionContext, ActionRunner};
use crate::control::decisions::parse_net;
use std::path::PathBuf;

/// `authwatch unblock IP [-c CONFIG]`: 0 when every undo succeeded, 1 when one failed, 64 for
/// a bad address, 78 when no action has an undo.
pub fn command(config: Option<PathBuf>, target: &str) -> Exit {
    let cfg = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let net = match parse_net(target) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("authwatch unblock: IP: {e}");
            return Exit::Usage;
        }
    };
    let undos: Vec<_> = cfg.actions.iter().filter_map(|a| a.undo_spec()).collect();
    if undos.is_empty() {
        eprintln!(
            "authwatch unblock: no action in {} has an `undo`; add one, e.g. `undo: [/usr/local/lib/authwatch/nft-block, --remove, \"{{network}}\"]` (see examples/actions/)",
            cfg.origin
        );
        return Exit::Config;
    }
    let is_host = net.prefix_len() == net.max_prefix_len();
    if !is_host {
        if let Some(u) = undos
            .iter()
            .find(|u| u.args.iter().any(|a| crate::actions::uses_ip(a)))
        {
            eprintln!(
                "authwatch unblock: {} takes `{{ip}}`: give one address, not the network {net}",
                u.name
            );
            return Exit::Usage;
        }
    }
    let runner = match ActionRunner::new(undos, 1) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("authwatch unblock: {}: undo: {e}", cfg.origin);
            return Exit::Config;
        }
    };
    let ctx = ActionContext {
        ip: net.addr(),
        network: (!is_host).then_some(net),
        prefix: None,
        account: None,
        count: 0,
        service: String::new(),
    };
    let results = runner.run(&ctx);
    let mut ok = true;
    for r in &results {
        ok &= r.success();
        let output = r.output.trim();
        if output.is_empty() {
            println!("{}: {}", r.name, r.status);
        } else {
            println!("{}: {} ({output})", r.name, r.status);
        }
    }
    if ok {
        Exit::Ok
    } else {
        Exit::Runtime
    }
}
