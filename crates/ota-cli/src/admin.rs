//! `ota admin create-user NAME` and `ota admin reset-password NAME`: web
//! admin accounts, written straight to the catalogue like `ota keys`. The
//! password comes from the terminal without echo (asked twice), or from
//! the first line of standard input when it is not a terminal; never from
//! a flag, where it would sit in shell history and `ps`.

use crate::config::Settings;
use crate::StoreArgs;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use std::io::{BufRead, IsTerminal, Write};

/// `ota admin …`.
#[derive(Args)]
pub struct AdminArgs {
    #[command(flatten)]
    store: StoreArgs,
    #[command(subcommand)]
    action: AdminAction,
}

/// What to do.
#[derive(Subcommand)]
pub enum AdminAction {
    /// Create a web admin user (password from a prompt, or stdin when piped).
    CreateUser {
        /// User name: letters, digits, '.', '_', '-', '@'.
        name: String,
    },
    /// Set a user's password, clear its lock-out and end its sessions.
    ResetPassword {
        /// User name.
        name: String,
    },
    /// List the web admin users.
    Users,
}

/// Reads a line from the terminal with echo off, restoring it afterwards.
fn read_hidden(prompt: &str) -> Result<String> {
    use rustix::termios::{tcgetattr, tcsetattr, LocalModes, OptionalActions};
    let stdin = std::io::stdin();
    eprint!("{prompt}");
    std::io::stderr().flush().ok();
    let saved = tcgetattr(&stdin).context("reading the terminal's settings")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    quiet.local_modes.insert(LocalModes::ECHONL);
    tcsetattr(&stdin, OptionalActions::Now, &quiet).context("turning echo off")?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    tcsetattr(&stdin, OptionalActions::Now, &saved).context("turning echo back on")?;
    read.context("reading the password")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// The new password: prompted twice on a terminal, else stdin's first line.
fn new_password() -> Result<String> {
    let password = if std::io::stdin().is_terminal() {
        let a = read_hidden("New password: ")?;
        let b = read_hidden("Again: ")?;
        if a != b {
            bail!("the two passwords differ; nothing was changed");
        }
        a
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_owned()
    };
    ota_store::check_password(&password).map_err(anyhow::Error::msg)?;
    Ok(password)
}

/// Runs the command.
pub async fn run(file: Settings, args: AdminArgs) -> Result<()> {
    let store = args.store;
    let url = file.database_url(&store);
    if url.starts_with("sqlite:") {
        ota_store::create_private_dir(&file.data_dir(&store))?;
    }
    match args.action {
        AdminAction::CreateUser { name } => {
            ota_store::check_user_name(&name).map_err(anyhow::Error::msg)?;
            let password = new_password()?;
            let catalogue = ota_store::Catalogue::open(&url).await?;
            if !catalogue.create_admin_user(&name, &password).await? {
                bail!("a web admin user named {name:?} already exists (ota admin reset-password {name})");
            }
            catalogue.audit("cli", "user.create", &name, "").await?;
            eprintln!("web admin user {name:?} created: sign in at /admin");
        }
        AdminAction::ResetPassword { name } => {
            let password = new_password()?;
            let catalogue = ota_store::Catalogue::open(&url).await?;
            if !catalogue.set_admin_password(&name, &password, None).await? {
                bail!("no web admin user named {name:?}");
            }
            catalogue
                .audit("cli", "user.password", &name, "reset; sessions ended")
                .await?;
            eprintln!("password of {name:?} set; its sessions were ended");
        }
        AdminAction::Users => {
            let catalogue = ota_store::Catalogue::open(&url).await?;
            for u in catalogue.admin_users().await? {
                println!("{}\tfailed sign-ins: {}", u.name, u.failed_count);
            }
        }
    }
    Ok(())
}
