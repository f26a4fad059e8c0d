//! The device agent: keeps a device's packages at the versions its update
//! server offers, and never leaves one half-installed.
//!
//! Each cycle, for every package of its config (the package API's daemon
//! configuration, [`config`]), the agent asks the server what to install
//! ([`protocol`]: the bundle protocol's strategies and delta bundles,
//! else the newest full package), verifies the server's signature, plans
//! the cycle by dependencies ([`deps`]), downloads with resumption across
//! restarts ([`download`]), stages the new version beside the installed
//! one and switches atomically, with the hooks around the switch
//! ([`install`], [`hooks`]); a failure after the switch switches back. The
//! config is rewritten with the new version ([`json_edit`]), and every
//! outcome is reported ([`report`]). A crash at any point leaves the old
//! or the new version, and the next start finishes or undoes the install.
//!
//! ```
//! use ota_agent::config::Config;
//! let text = r#"{"device": "kiosk-7", "description": "lobby screen",
//!   "public_key": "/etc/ota/server.pem",
//!   "package": [{"package": "app", "version": "1.4.0", "local": "/opt/app",
//!                "remote": "https://ota.example.com", "dependencies": {"libfoo": ">=1.2"}},
//!               {"package": "libfoo", "version": "1.2.0", "local": "/opt/libfoo",
//!                "remote": "https://ota.example.com"}]}"#;
//! let config = Config::parse(std::path::Path::new("/etc/ota/agent.json"), text)?;
//! assert_eq!(config.packages[0].branch, "main");
//! assert_eq!(config.poll_interval.as_secs(), 1800);
//! # Ok::<(), ota_agent::config::ConfigError>(())
//! ```

pub mod agent;
pub mod config;
pub mod deps;
pub mod download;
pub mod fsutil;
pub mod hooks;
pub mod install;
pub mod json_edit;
pub mod protocol;
pub mod report;
pub mod state;

pub use agent::{Agent, AgentOptions};
