//! The kinds of alert authwatch sends, as one enum instead of strings spread over several
//! modules. Each kind's name (`ip_burst`, `subnet_burst`, `account_attack`, `compromised`,
//! `digest`, `health`) is what `state.json`, the status file, the templates (`KIND.subject.txt`,
//! `KIND.body.txt`), `actions[].on` in the config and `authwatch render --sample KIND` use, so
//! the serde form is exactly that name. It imports no other module of the crate.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// One IP made too many failed logins.
    IpBurst,
    /// Many addresses of one network (a /24 or /64) together did.
    SubnetBurst,
    /// One account was attacked from many addresses.
    AccountAttack,
    /// A successful login after failures: the account may be compromised (urgent).
    Compromised,
    /// The periodic digest of open incidents and held-back alerts.
    Digest,
    /// A problem of authwatch itself (a source, mail delivery).
    Health,
}

impl AlertKind {
    /// Every kind, in the order templates and help texts list them.
    pub const ALL: [AlertKind; 6] = [
        AlertKind::IpBurst,
        AlertKind::SubnetBurst,
        AlertKind::AccountAttack,
        AlertKind::Compromised,
        AlertKind::Digest,
        AlertKind::Health,
    ];

    /// The kinds that can run actions (`actions[].on`): those about one address or network,
    /// and a compromised account.
    pub const ACTIONS: [AlertKind; 3] = [
        AlertKind::IpBurst,
        AlertKind::SubnetBurst,
        AlertKind::Compromised,
    ];

    /// The kind's name, as in templates, config and saved state.
    pub const fn as_str(self) -> &'static str {
        match self {
            AlertKind::IpBurst => "ip_burst",
            AlertKind::SubnetBurst => "subnet_burst",
            AlertKind::AccountAttack => "account_attack",
            AlertKind::Compromised => "compromised",
            AlertKind::Digest => "digest",
            AlertKind::Health => "health",
        }
    }

    /// The kind in words, for people (`status`, digests, `incidents`): "IP burst",
    /// "network burst", "account attack", "compromised account", "digest", "health".
    pub const fn label(self) -> &'static str {
        match self {
            AlertKind::IpBurst => "IP burst",
            AlertKind::SubnetBurst => "network burst",
            AlertKind::AccountAttack => "account attack",
            AlertKind::Compromised => "compromised account",
            AlertKind::Digest => "digest",
            AlertKind::Health => "health",
        }
    }

    /// The label of a kind given by name (saved state, digests); the name itself when it is
    /// not one of the kinds.
    pub fn label_of(name: &str) -> String {
        name.parse::<AlertKind>()
            .map(|k| k.label().to_string())
            .unwrap_or_else(|_| name.to_string())
    }

    /// Whether this is an alert about an attack (not a digest or a health alert): those carry
    /// an alert id, the commands to act on it and the service's advice.
    pub const fn is_alert(self) -> bool {
        matches!(
            self,
            AlertKind::IpBurst
                | AlertKind::SubnetBurst
                | AlertKind::AccountAttack
                | AlertKind::Compromised
        )
    }

    /// Whether actions can be attached to alerts of this kind (see [`AlertKind::ACTIONS`]).
    pub const fn takes_actions(self) -> bool {
        matches!(
            self,
            AlertKind::IpBurst | AlertKind::SubnetBurst | AlertKind::Compromised
        )
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AsRef<str> for AlertKind {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

/// A name that is not one of the kinds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown alert kind {0:?} (one of: ip_burst, subnet_burst, account_attack, compromised, digest, health)")]
pub struct UnknownAlertKind(pub String);

impl FromStr for AlertKind {
    type Err = UnknownAlertKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlertKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownAlertKind(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_str_and_serde() {
        let names = [
            "ip_burst",
            "subnet_burst",
            "account_attack",
            "compromised",
            "digest",
            "health",
        ];
        assert_eq!(AlertKind::ALL.map(AlertKind::as_str), names);
        for k in AlertKind::ALL {
            assert_eq!(k.as_str().parse::<AlertKind>(), Ok(k));
            assert_eq!(k.to_string(), k.as_str());
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<AlertKind>(&json).unwrap(), k);
        }
        let e = "ip-burst".parse::<AlertKind>().unwrap_err();
        assert!(e.to_string().contains("ip_burst"), "{e}");
    }

    #[test]
    fn labels_are_words_for_people() {
        let labels = AlertKind::ALL.map(AlertKind::label);
        assert_eq!(
            labels,
            [
                "IP burst",
                "network burst",
                "account attack",
                "compromised account",
                "digest",
                "health"
            ]
        );
        assert_eq!(AlertKind::label_of("subnet_burst"), "network burst");
        assert_eq!(AlertKind::label_of("other"), "other");
    }

    #[test]
    fn action_kinds_are_those_that_take_actions() {
        let with: Vec<AlertKind> = AlertKind::ALL
            .into_iter()
            .filter(|k| k.takes_actions())
            .collect();
        assert_eq!(with, AlertKind::ACTIONS);
    }
}
