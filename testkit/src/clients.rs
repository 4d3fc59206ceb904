//! Real DHCP clients as the test bed drives them: a hook script that records what the client
//! learned and configures the address, and dhclient with its files kept in a scratch directory.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::Result;

use crate::Scratch;

/// The environment a client's hook script saw, one map per invocation, in order.
pub type HookCalls = Vec<HashMap<String, String>>;

/// A hook script that appends its environment to `out`, one `KEY=value` per line and a
/// `----` line after each call, and puts the address on the interface for the events where a
/// real hook would, so renewals (unicast from the address) work.
pub fn hook_script(dir: &Scratch, name: &str) -> Result<(PathBuf, PathBuf)> {
    let out = dir.join(&format!("{name}.env"));
    let script = dir.join(&format!("{name}.sh"));
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
env >> {out}
echo ---- >> {out}
IF="${{interface:-$IFACE}}"
case "$reason$1" in
  BOUND|RENEW|REBIND|REBOOT)
    ip addr replace "$new_ip_address/24" dev "$IF" ;;
  EXPIRE|FAIL|RELEASE|STOP)
    [ -n "$old_ip_address" ] && ip addr del "$old_ip_address/24" dev "$IF" ;;
  bound|renew)
    ip addr replace "$ip/24" dev "$IF" ;;
  deconfig)
    ip -4 addr flush dev "$IF" ;;
esac
exit 0
"#,
            out = out.display()
        ),
    )?;
    let mut perm = std::fs::metadata(&script)?.permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&script, perm)?;
    Ok((script, out))
}

/// Reads what the hook script recorded.
pub fn hook_calls(out: &PathBuf) -> HookCalls {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    text.split("----\n")
        .filter(|c| !c.trim().is_empty())
        .map(|c| {
            c.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('\'').to_string()))
                .collect()
        })
        .collect()
}

/// dhclient, configured to ask for option 252.
pub struct Dhclient {
    /// dhclient.conf asking for option 252.
    pub conf: PathBuf,
    /// Its pid file.
    pub pidfile: PathBuf,
    /// Its lease file.
    pub leases: PathBuf,
    /// The hook script.
    pub script: PathBuf,
    /// Where the hook script records.
    pub out: PathBuf,
}

impl Dhclient {
    /// Files for a dhclient named `name` in `dir`.
    pub fn new(dir: &Scratch, name: &str) -> Result<Dhclient> {
        let conf = dir.join(&format!("{name}.conf"));
        std::fs::write(
            &conf,
            "option wpad code 252 = text;\n\
             request subnet-mask, broadcast-address, routers, domain-name-servers, wpad;\n",
        )?;
        let (script, out) = hook_script(dir, name)?;
        Ok(Dhclient {
            conf,
            pidfile: dir.join(&format!("{name}.pid")),
            leases: dir.join(&format!("{name}.leases")),
            script,
            out,
        })
    }

    /// `dhclient` with our files and `args` (e.g. `-1`, `-r`, interface).
    pub fn args(&self, more: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = vec![
            "timeout".into(),
            "-s".into(),
            "KILL".into(),
            "20".into(),
            "dhclient".into(),
            "-4".into(),
            "-v".into(),
            "-cf".into(),
            self.conf.display().to_string(),
            "-pf".into(),
            self.pidfile.display().to_string(),
            "-lf".into(),
            self.leases.display().to_string(),
            "-sf".into(),
            self.script.display().to_string(),
        ];
        v.extend(more.iter().map(|s| s.to_string()));
        v
    }

    /// What its hook script recorded.
    pub fn calls(&self) -> HookCalls {
        hook_calls(&self.out)
    }
}
