//! homespotd's command line: written out by hand (with `lexopt`) rather than derived with clap,
//! whose parser and generated code were ~0.2 MB of the static binary, all of it resident on a
//! router with 128 MB of RAM.

use std::ffi::OsString;
use std::path::PathBuf;

pub const DEFAULT_CONFIG: &str = "/etc/homespot/homespotd.toml";

pub const HELP: &str = "\
The HomeSpot access-point service: DHCP with WPAD, an HTTP proxy and (with a [handoff]
section) P-Handoff on every LAN link.

Each link in the config file is a radio or port with its own subnet and address pool.
Leases are written to a redb database before they are acknowledged.

Usage: homespotd [OPTIONS]            run the service
       homespotd [OPTIONS] status     show what the running homespotd is doing
       homespotd [OPTIONS] passwd     set the admin panel's password
       homespotd [OPTIONS] bluetooth pair   open Bluetooth pairing for a while

Commands:
  status  Show what the running homespotd is doing: links, devices (hostname, MAC,
          address per link, which radio now, P-Handoff global address) and counters.
          Needs root. `homespotd status --help` for its options.
  passwd  Set the web admin panel's password (10 characters or more), read from the
          terminal (asked twice, not shown) or from standard input; stored as an
          argon2id hash in admin.password_file (root only). Sessions of a running
          homespotd stay until they log out or idle out.
  bluetooth pair
          Open pairing on the Bluetooth links (those with bluez_adapter and
          pairing = \"button\") for their pairing_window (default 2 minutes): the
          adapter is discoverable and pairable, and a laptop can pair. Needs root.

Options:
  -c, --config <FILE>  Configuration file (TOML) [default: /etc/homespot/homespotd.toml]
                       A commented example: homespot/examples/homespotd.toml
      --check-config   Check the configuration (and that its interfaces exist), print a
                       summary, and exit
      --log <FILTER>   Log level or filter, e.g. \"info\" or \"homespot=debug\" (debug: a line
                       per DHCP packet) [default: info]; RUST_LOG is read when --log is not
                       given
  -h, --help           Print this help
  -V, --version        Print the version
";

pub const STATUS_HELP: &str = "\
Show what the running homespotd is doing: links, devices (hostname, MAC, address per link,
which radio now, P-Handoff global address) and counters. Needs root.

Usage: homespotd [-c FILE] status [OPTIONS]

Options:
      --json           Print JSON (one object; with --events one object per line) instead
                       of text
      --events         Follow events as they happen (leases, P-Handoff switches, links,
                       reloads) until interrupted
      --socket <PATH>  The status socket; default: server.status_socket from the config,
                       else /run/homespot/status.sock
  -h, --help           Print this help
";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
pub enum Command {
    /// Run the service (or only check its config).
    Run { check_config: bool },
    Status {
        json: bool,
        events: bool,
        socket: Option<PathBuf>,
    },
    /// Set the admin panel's password.
    Passwd,
    /// Open the Bluetooth pairing window of the running homespotd.
    BluetoothPair,
    /// Print this text to stdout and exit successfully.
    Print(String),
}

#[derive(Debug, PartialEq)]
pub struct Args {
    pub config: PathBuf,
    /// `None`: RUST_LOG, else "info".
    pub log: Option<String>,
    pub command: Command,
}

/// Parses the arguments after the program name. The error is a one-line reason; the caller
/// adds "try --help".
pub fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Args, String> {
    use lexopt::prelude::*;
    let mut p = lexopt::Parser::from_args(args);
    let mut out = Args {
        config: PathBuf::from(DEFAULT_CONFIG),
        log: None,
        command: Command::Run {
            check_config: false,
        },
    };
    let (mut status, mut check_config, mut passwd) = (false, false, false);
    let mut bluetooth: Option<bool> = None;
    let (mut json, mut events, mut socket) = (false, false, None);
    let e = |e: lexopt::Error| e.to_string();
    while let Some(arg) = p.next().map_err(e)? {
        match arg {
            Short('c') | Long("config") => out.config = p.value().map_err(e)?.into(),
            Long("log") => out.log = Some(p.value().map_err(e)?.string().map_err(e)?),
            Long("check-config") if !status => check_config = true,
            Short('h') | Long("help") => {
                let text = if status { STATUS_HELP } else { HELP };
                out.command = Command::Print(text.to_string());
                return Ok(out);
            }
            Short('V') | Long("version") if !status => {
                out.command = Command::Print(format!("homespotd {}\n", env!("CARGO_PKG_VERSION")));
                return Ok(out);
            }
            Long("json") if status => json = true,
            Long("events") if status => events = true,
            Long("socket") if status => socket = Some(p.value().map_err(e)?.into()),
            Value(v) if !status && !passwd && v == "status" => status = true,
            Value(v) if !status && !passwd && v == "passwd" => passwd = true,
            Value(v) if !status && !passwd && bluetooth.is_none() && v == "bluetooth" => {
                bluetooth = Some(false)
            }
            Value(v) if bluetooth == Some(false) && v == "pair" => bluetooth = Some(true),
            Value(v) if !status && v == "help" => {
                out.command = Command::Print(HELP.to_string());
                return Ok(out);
            }
            Value(v) => return Err(format!("unexpected argument '{}'", v.to_string_lossy())),
            other => return Err(other.unexpected().to_string()),
        }
    }
    if (status || passwd) && check_config {
        let cmd = if status { "status" } else { "passwd" };
        return Err(format!("--check-config does not go with {cmd}"));
    }
    match bluetooth {
        Some(false) => return Err("bluetooth needs a command: bluetooth pair".to_string()),
        Some(true) if check_config => {
            return Err("--check-config does not go with bluetooth pair".to_string())
        }
        Some(true) => {
            out.command = Command::BluetoothPair;
            return Ok(out);
        }
        None => {}
    }
    out.command = if passwd {
        Command::Passwd
    } else if status {
        Command::Status {
            json,
            events,
            socket,
        }
    } else {
        Command::Run { check_config }
    };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Args, String> {
        parse(s.split_whitespace().map(OsString::from))
    }

    #[test]
    fn run_status_and_their_options() {
        let a = args("").expect("empty");
        assert_eq!(a.config, PathBuf::from(DEFAULT_CONFIG));
        assert_eq!(a.log, None);
        assert_eq!(
            a.command,
            Command::Run {
                check_config: false
            }
        );
        let a = args("-c /tmp/h.toml --log homespot=debug --check-config").expect("run");
        assert_eq!(a.config, PathBuf::from("/tmp/h.toml"));
        assert_eq!(a.log.as_deref(), Some("homespot=debug"));
        assert_eq!(a.command, Command::Run { check_config: true });
        let a = args("--config=/x.toml status --json --events --socket /s").expect("status");
        assert_eq!(a.config, PathBuf::from("/x.toml"));
        assert_eq!(
            a.command,
            Command::Status {
                json: true,
                events: true,
                socket: Some(PathBuf::from("/s"))
            }
        );
        // The global options may also follow the command.
        let a = args("status -c /y.toml").expect("status");
        assert_eq!(a.config, PathBuf::from("/y.toml"));
        let a = args("bluetooth pair").expect("pair");
        assert_eq!(a.command, Command::BluetoothPair);
        assert!(args("bluetooth").is_err() && args("bluetooth unpair").is_err());
        let a = args("-c /z.toml passwd").expect("passwd");
        assert_eq!(
            (a.config, a.command),
            (PathBuf::from("/z.toml"), Command::Passwd)
        );
    }

    #[test]
    fn help_version_and_mistakes() {
        for (line, first) in [
            ("--help", "The HomeSpot"),
            ("-h", "The HomeSpot"),
            ("help", "The HomeSpot"),
            ("status --help", "Show what"),
            ("-V", "homespotd 0."),
        ] {
            match args(line).expect(line).command {
                Command::Print(t) => assert!(t.starts_with(first), "{line}: {t}"),
                c => panic!("{line}: {c:?}"),
            }
        }
        for (line, reason) in [
            ("--json", "--json"),
            ("stats", "'stats'"),
            ("status status", "'status'"),
            ("--config", "--config"),
            ("status --check-config", "--check-config"),
            ("passwd --check-config", "passwd"),
            ("passwd status", "'status'"),
            ("-x", "-x"),
        ] {
            let err = args(line).expect_err(line);
            assert!(err.contains(reason), "{line}: {err}");
        }
    }
}
