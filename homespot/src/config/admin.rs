//! The `[admin]` section: the web admin panel (DESIGN.md section 9).

use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    enabled: Option<bool>,
    port: Option<u16>,
    password_file: Option<PathBuf>,
    setup_code_file: Option<PathBuf>,
}

/// The panel's port unless the config says otherwise: not 80 or 443, which LuCI's web server
/// holds on OpenWrt, and not the proxy's 3128.
pub const DEFAULT_PORT: u16 = 8088;
/// The admin password's hash, unless the config says otherwise: beside the lease database
/// (`/var/lib/homespot/admin.password` by default).
pub const DEFAULT_PASSWORD_FILE: &str = "admin.password";
/// The one-time setup code, written while no password is set: beside the lease database.
pub const DEFAULT_SETUP_CODE_FILE: &str = "admin.setup-code";

/// The validated `[admin]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Whether to serve the panel at all.
    pub enabled: bool,
    /// Its TCP port on every LAN link address (never the WAN).
    pub port: u16,
    /// The admin password's argon2id hash (root-only; written by `homespotd passwd` or the
    /// first visit).
    pub password_file: PathBuf,
    /// The one-time setup code, written at start while no password is set (root-only).
    pub setup_code_file: PathBuf,
}

pub(super) fn validate(
    raw: RawAdmin,
    proxy: &super::ProxyConfig,
    lease_db: &std::path::Path,
) -> Result<AdminConfig, (String, String)> {
    let state_dir = lease_db.parent().unwrap_or(std::path::Path::new("."));
    let port = raw.port.unwrap_or(DEFAULT_PORT);
    let enabled = raw.enabled.unwrap_or(true);
    if port == 0 {
        return Err(("port".into(), "must not be 0".into()));
    }
    if enabled && proxy.enabled && (port == proxy.port || Some(port) == proxy.pac_port) {
        return Err((
            "port".into(),
            format!("{port} is the proxy's port (proxy.port or proxy.pac_port)"),
        ));
    }
    let password_file = raw
        .password_file
        .unwrap_or_else(|| state_dir.join(DEFAULT_PASSWORD_FILE));
    let setup_code_file = raw
        .setup_code_file
        .unwrap_or_else(|| state_dir.join(DEFAULT_SETUP_CODE_FILE));
    if password_file == setup_code_file {
        return Err((
            "setup_code_file".into(),
            "must differ from admin.password_file".into(),
        ));
    }
    Ok(AdminConfig {
        enabled,
        port,
        password_file,
        setup_code_file,
    })
}
