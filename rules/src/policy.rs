//! What actions the operator allows: the programs an `exec` action may run
//! and the hosts a webhook or Alertmanager action may reach. Both lists
//! are empty by default, so a rule defined over the API cannot run a
//! command or reach an internal address unless the operator said so when
//! starting the server.
//!
//! # Invariants
//! - An exec action's program is a literal path on the allow-list (no
//!   template: data never picks the program). Row values reach it only as
//!   separate argv items and `FLEETLAKE_*` environment variables; nothing
//!   is ever run through a shell by fleetlake.
//! - A webhook or Alertmanager URL is http(s) to a host (or host:port) on
//!   the allow-list; `*` allows any.
//! - Checked when a rule is defined (a 400 naming the flag) and again
//!   before each action runs (rules from files, rules defined before the
//!   lists changed).
//!
//! ```
//! use fleetlake_rules::policy::ActionPolicy;
//! let p = ActionPolicy {
//!     exec_allow: vec!["/usr/local/bin/drain".into()],
//!     webhook_allow: vec!["hooks.internal".into(), "127.0.0.1:9093".into()],
//! };
//! assert!(p.check_command(&["/usr/local/bin/drain".into(), "{{ hostname }}".into()]).is_ok());
//! assert!(p.check_command(&["/usr/bin/touch".into(), "p".into()]).is_err());
//! assert!(p.check_url("https://hooks.internal/fire").is_ok());
//! assert!(p.check_url("http://169.254.169.254/latest").is_err());
//! ```

use std::path::PathBuf;

use crate::definition::{ActionDef, ActionKind};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ActionPolicy {
    /// Programs exec actions may run (`--rules-exec-allow`).
    pub exec_allow: Vec<PathBuf>,
    /// Hosts or host:port pairs webhooks may reach, or `*` (`--rules-webhook-allow`).
    pub webhook_allow: Vec<String>,
}

impl ActionPolicy {
    /// Whether `action` may run at all.
    ///
    /// # Errors
    /// A message naming what is not allowed and the flag that allows it.
    pub fn check(&self, action: &ActionDef) -> Result<(), String> {
        match action.kind {
            ActionKind::Exec => self.check_command(action.command.as_deref().unwrap_or_default()),
            ActionKind::Webhook | ActionKind::Alertmanager => {
                self.check_url(action.url.as_deref().unwrap_or_default())
            }
            ActionKind::Log | ActionKind::Diagnose => Ok(()),
        }
    }

    /// # Errors
    /// An empty command, a templated program, or one not on the list.
    pub fn check_command(&self, argv: &[String]) -> Result<(), String> {
        let Some(program) = argv.first() else {
            return Err("an exec action needs a command".into());
        };
        if program.contains("{{") {
            return Err(format!(
                "the program of an exec action must be a fixed path, not a template ({program:?}); \
                 pass row values as arguments"
            ));
        }
        if self.exec_allow.is_empty() {
            return Err("exec actions are disabled on this server; start it with \
                 --rules-exec-allow <program>[,<program>…] to allow specific programs"
                .into());
        }
        if !self
            .exec_allow
            .iter()
            .any(|p| p.as_os_str() == program.as_str())
        {
            return Err(format!(
                "{program:?} is not an allowed program (--rules-exec-allow: {})",
                self.exec_allow
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        Ok(())
    }

    /// # Errors
    /// A URL that does not parse, is not http(s), or names a host not on
    /// the list.
    pub fn check_url(&self, url: &str) -> Result<(), String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid URL {url:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("URL {url:?} must be http or https"));
        }
        let host = parsed.host_str().unwrap_or_default().to_ascii_lowercase();
        let host_port = match parsed.port_or_known_default() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let allowed = self.webhook_allow.iter().any(|a| {
            let a = a.trim().to_ascii_lowercase();
            a == "*" || a == host || a == host_port
        });
        if allowed {
            Ok(())
        } else if self.webhook_allow.is_empty() {
            Err(format!(
                "webhook and Alertmanager actions are disabled on this server; start it with \
                 --rules-webhook-allow {host} (hosts or host:port, comma-separated) to allow this URL"
            ))
        } else {
            Err(format!(
                "host {host_port} is not allowed (--rules-webhook-allow: {})",
                self.webhook_allow.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_runs_or_leaves_by_default() {
        let p = ActionPolicy::default();
        let e = p.check_command(&["/usr/bin/true".into()]).unwrap_err();
        assert!(e.contains("--rules-exec-allow"), "{e}");
        let e = p.check_url("http://127.0.0.1:9093").unwrap_err();
        assert!(e.contains("--rules-webhook-allow 127.0.0.1"), "{e}");
    }

    #[test]
    fn lists_are_exact() {
        let p = ActionPolicy {
            exec_allow: vec!["/opt/drain".into()],
            webhook_allow: vec!["Hooks.example:8080".into(), "alerts.example".into()],
        };
        assert!(
            p.check_command(&["/opt/drain".into(), "x;touch p".into()])
                .is_ok()
        );
        assert!(p.check_command(&["/opt/drain2".into()]).is_err());
        assert!(p.check_command(&["{{ cmd }}".into()]).is_err());
        assert!(p.check_command(&[]).is_err());
        assert!(p.check_url("http://hooks.example:8080/x").is_ok());
        assert!(p.check_url("http://hooks.example:8081/x").is_err());
        assert!(p.check_url("https://alerts.example/api").is_ok());
        assert!(p.check_url("http://alerts.example.evil/").is_err());
        assert!(p.check_url("file:///etc/passwd").is_err());
        assert!(p.check_url("not a url").is_err());
        let any = ActionPolicy {
            webhook_allow: vec!["*".into()],
            ..ActionPolicy::default()
        };
        assert!(any.check_url("http://10.0.0.1/").is_ok());
    }
}
