//! `homespotd passwd`: sets the admin panel's password as root, from the terminal (asked
//! twice, not echoed) or from standard input (one line), and removes the one-time setup code.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use crate::config::AdminConfig;

/// Errors of `homespotd passwd`, as one line each.
#[derive(Debug, thiserror::Error)]
pub enum PasswdError {
    /// Reading the password failed.
    #[error("reading the password: {0}")]
    Read(#[from] std::io::Error),
    /// The two entries differ.
    #[error("the two passwords differ; nothing changed")]
    Mismatch,
    /// Too short, too long.
    #[error("{0}")]
    Unacceptable(#[from] web_admin::password::PasswordError),
    /// The file could not be written.
    #[error("{0}")]
    File(#[from] web_admin::secret_file::FileError),
}

/// Reads the new password and writes its hash to `admin.password_file`.
pub fn run(admin: &AdminConfig) -> Result<(), PasswdError> {
    let stdin = std::io::stdin();
    let pw = if stdin.is_terminal() {
        let a = ask("New admin password: ")?;
        let b = ask("Again: ")?;
        if a != b {
            return Err(PasswdError::Mismatch);
        }
        a
    } else {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    web_admin::password::acceptable(&pw)?;
    let mut rng = rand_core::TryRngCore::unwrap_err(rand_core::OsRng);
    let hashed = web_admin::password::hash(&pw, &mut rng)?;
    web_admin::secret_file::write_private(&admin.password_file, &hashed)?;
    let _ = std::fs::remove_file(&admin.setup_code_file);
    Ok(())
}

/// One line from the terminal with echo off.
fn ask(prompt: &str) -> std::io::Result<String> {
    use nix::sys::termios::{tcgetattr, tcsetattr, LocalFlags, SetArg};
    let stdin = std::io::stdin();
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let saved = tcgetattr(&stdin).map_err(std::io::Error::from)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet).map_err(std::io::Error::from)?;
    let mut line = String::new();
    let r = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, SetArg::TCSANOW, &saved);
    eprintln!();
    r?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}
