//! The library's errors: what failed and why, in words a log or a person can use.

/// An error from the agent's library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// The agent's state on disk (its client key) could not be read or made.
    #[error("{path}: {reason}")]
    State {
        /// The file or folder.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// A PAC file could not be fetched.
    #[error("fetching {url}: {reason}")]
    Fetch {
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A route, rule or address could not be set (rtnetlink).
    #[error("{0}")]
    Netlink(String),
    /// The OS's randomness could not be read.
    #[error("no randomness from the OS: {0}")]
    Random(String),
    /// Any other I/O failure.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl AgentError {
    pub(crate) fn fetch(url: &str, reason: impl std::fmt::Display) -> AgentError {
        AgentError::Fetch {
            url: url.to_string(),
            reason: reason.to_string(),
        }
    }
}

impl From<rtnetlink::Error> for AgentError {
    fn from(e: rtnetlink::Error) -> AgentError {
        AgentError::Netlink(e.to_string())
    }
}
