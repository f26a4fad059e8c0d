//! Running a package's hook commands (`BeforeUpdate`, `restore`,
//! `AfterUpdate`): `/bin/sh -c COMMAND` in its own process group, with the
//! update's facts in the environment, a timeout after which the whole
//! group is killed, and the tail of its output kept for the report.
//!
//! Environment: `OTA_PACKAGE`, `OTA_FROM_VERSION`, `OTA_TO_VERSION`,
//! `OTA_LOCAL` (the install location), `OTA_PREVIOUS` (where the previous
//! version is kept while `restore` and `AfterUpdate` run), `OTA_HOOK`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// Bytes of a hook's output kept for the error text.
pub const OUTPUT_TAIL: usize = 2048;

/// What a hook gets to know.
pub struct HookEnv<'a> {
    /// Package name.
    pub package: &'a str,
    /// Installed version.
    pub from: &'a str,
    /// Version being installed.
    pub to: &'a str,
    /// Install location.
    pub local: &'a Path,
    /// The previous version's files, once switched.
    pub previous: Option<&'a Path>,
}

/// Why a hook failed.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// It could not be started.
    #[error("{hook}: could not run /bin/sh: {source}")]
    Spawn {
        /// The hook's name.
        hook: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// It exited unsuccessfully.
    #[error("{hook} exited with {status}{}", tail_text(.output))]
    Failed {
        /// The hook's name.
        hook: &'static str,
        /// Exit status.
        status: std::process::ExitStatus,
        /// The end of its output.
        output: String,
    },
    /// It ran too long and was killed.
    #[error("{hook} did not finish within {}s and was killed{}", .limit.as_secs(), tail_text(.output))]
    Timeout {
        /// The hook's name.
        hook: &'static str,
        /// The limit.
        limit: Duration,
        /// The end of its output.
        output: String,
    },
}

fn tail_text(output: &str) -> String {
    let t = output.trim();
    if t.is_empty() {
        String::new()
    } else {
        format!(": {t}")
    }
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(OUTPUT_TAIL);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Runs `command` as hook `hook`; Ok when it exits 0 within `limit`.
pub async fn run(
    hook: &'static str,
    command: &str,
    env: &HookEnv<'_>,
    limit: Duration,
) -> Result<(), HookError> {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .env("OTA_PACKAGE", env.package)
        .env("OTA_FROM_VERSION", env.from)
        .env("OTA_TO_VERSION", env.to)
        .env("OTA_LOCAL", env.local)
        .env("OTA_HOOK", hook)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(p) = env.previous {
        cmd.env("OTA_PREVIOUS", p);
    }
    tracing::info!(package = env.package, hook, command, "running hook");
    let mut child = cmd
        .spawn()
        .map_err(|source| HookError::Spawn { hook, source })?;
    let pid = child.id();
    let (mut out, mut err) = (child.stdout.take(), child.stderr.take());
    let collect = async {
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let ra = async {
            if let Some(o) = out.as_mut() {
                let _ = o.read_to_end(&mut a).await;
            }
        };
        let rb = async {
            if let Some(e) = err.as_mut() {
                let _ = e.read_to_end(&mut b).await;
            }
        };
        tokio::join!(ra, rb);
        a.extend_from_slice(&b);
        a
    };
    let run = async { tokio::join!(child.wait(), collect) };
    match tokio::time::timeout(limit, run).await {
        Ok((status, output)) => {
            let status = status.map_err(|source| HookError::Spawn { hook, source })?;
            if status.success() {
                Ok(())
            } else {
                Err(HookError::Failed {
                    hook,
                    status,
                    output: tail(&output),
                })
            }
        }
        Err(_) => {
            if let Some(pid) = pid.and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
                // The whole group: a hook's children must not outlive it.
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            let _ = child.kill().await;
            Err(HookError::Timeout {
                hook,
                limit,
                output: String::new(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(local: &Path) -> HookEnv<'_> {
        HookEnv {
            package: "app",
            from: "1.0",
            to: "1.1",
            local,
            previous: None,
        }
    }

    #[tokio::test]
    async fn success_failure_and_timeout() {
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("m");
        let cmd = format!(
            "echo \"$OTA_PACKAGE $OTA_FROM_VERSION $OTA_TO_VERSION $OTA_HOOK\" > {}",
            marker.display()
        );
        run("BeforeUpdate", &cmd, &env(d.path()), Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(&marker).unwrap(),
            "app 1.0 1.1 BeforeUpdate\n"
        );
        let e = run(
            "AfterUpdate",
            "echo nope >&2; exit 3",
            &env(d.path()),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("AfterUpdate exited with exit status: 3: nope"),
            "{e}"
        );
        let started = std::time::Instant::now();
        let e = run(
            "restore",
            "sleep 30 & sleep 30",
            &env(d.path()),
            Duration::from_millis(300),
        )
        .await
        .unwrap_err();
        assert!(matches!(e, HookError::Timeout { .. }), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
