//! What the `ota` binary's test files share: running it, and a server.
#![allow(dead_code)]

use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

pub const OTA: &str = env!("CARGO_BIN_EXE_ota");

pub fn sha(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A running `ota serve`, killed when dropped.
pub struct Serve {
    pub child: Child,
    pub base: String,
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `ota serve ARGS` with extra environment and waits for its
/// "listening on" line.
pub fn serve_with(args: &[&str], envs: &[(&str, &str)], stderr: Stdio) -> Serve {
    let mut cmd = Command::new(OTA);
    cmd.arg("serve")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(stderr);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn ota serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read listening line");
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    Serve { child, base }
}

/// Runs `ota ARGS` to completion.
pub fn ota(args: &[&str]) -> std::process::Output {
    Command::new(OTA).args(args).output().expect("run ota")
}

/// Everything a run printed.
pub fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub mod fleet;
pub mod proxy;
