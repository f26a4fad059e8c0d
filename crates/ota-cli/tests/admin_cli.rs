//! `ota admin create-user` and `reset-password` with the password on
//! standard input (never as a flag), against the embedded database.

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn ota(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ota"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_user_and_reset_password() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data = data.to_str().unwrap();
    let o = ota(
        &["admin", "create-user", "alice", "--data", data],
        "a long password\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // Taken name, short password, bad name, a password flag: refused.
    let o = ota(
        &["admin", "create-user", "alice", "--data", data],
        "a long password\n",
    );
    assert!(
        !o.status.success() && stderr(&o).contains("already exists"),
        "{}",
        stderr(&o)
    );
    let o = ota(&["admin", "create-user", "bob", "--data", data], "short\n");
    assert!(
        !o.status.success() && stderr(&o).contains("too short"),
        "{}",
        stderr(&o)
    );
    let o = ota(
        &["admin", "create-user", "<b>", "--data", data],
        "a long password\n",
    );
    assert!(
        !o.status.success() && stderr(&o).contains("invalid user name"),
        "{}",
        stderr(&o)
    );
    let o = ota(
        &[
            "admin",
            "create-user",
            "bob",
            "--password",
            "a long password",
            "--data",
            data,
        ],
        "",
    );
    assert!(!o.status.success());
    let o = ota(
        &["admin", "reset-password", "nobody", "--data", data],
        "a long password\n",
    );
    assert!(
        !o.status.success() && stderr(&o).contains("no web admin user"),
        "{}",
        stderr(&o)
    );
    let o = ota(
        &["admin", "reset-password", "alice", "--data", data],
        "another long one\n",
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let url = ota_store::Catalogue::sqlite_url_for(&dir.path().join("data"));
    let cat = ota_store::Catalogue::open(&url).await.unwrap();
    let users = cat.admin_users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert!(cat
        .check_admin_password("alice", "another long one")
        .await
        .unwrap());
    assert!(!cat
        .check_admin_password("alice", "a long password")
        .await
        .unwrap());
    let log = cat.audit_log(10, None).await.unwrap();
    assert!(log
        .iter()
        .any(|e| e.actor == "cli" && e.action == "user.create"));
    cat.close().await;
}
