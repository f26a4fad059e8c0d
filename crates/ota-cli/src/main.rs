//! `ota`: the command-line front end. Each subcommand parses its arguments,
//! calls a library crate and prints the result.

mod admin;
mod agent;
mod android;
mod bundle;
mod client;
mod config;
mod delta;
mod devices;
mod jobs;
mod publish;
mod publish_android;
mod publish_target_files;
mod strategy;
mod update;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use config::Settings;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "ota", version, about = "Over-the-air update server and tools")]
struct Cli {
    /// TOML configuration file (also OTA_CONFIG); flags and OTA_* variables win over it.
    #[arg(long, global = true, env = "OTA_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the update server.
    Serve(ServeArgs),
    /// Manage publishers' API keys.
    Keys {
        #[command(flatten)]
        store: StoreArgs,
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Upload a package file with its content.json (PUT /update), or an
    /// Android OTA package to the ROM server (`ota publish android`).
    Publish(publish::PublishArgs),
    /// Update strategies every server applies (which version a client moves to).
    #[command(subcommand)]
    Strategy(strategy::StrategyCommand),
    /// Update a directory (or file) in place with the bundle protocol: request, confirm, apply.
    Update(update::UpdateArgs),
    /// Signed bundles of the bundle protocol: verify and apply one you already have.
    #[command(subcommand)]
    Bundle(bundle::BundleCommand),
    /// Pack jobs (building the deltas of newly published versions).
    Jobs(jobs::JobsArgs),
    /// The device agent: keep this device's packages up to date (`ota agent status`: what it is doing).
    Agent(agent::AgentArgs),
    /// The fleet: devices running the agent, their versions and last results.
    Devices(devices::DevicesArgs),
    /// Make a binary delta between two files (or two directory trees).
    Diff(delta::DiffArgs),
    /// Apply a delta made by `ota diff` (or by bsdiff 4.x).
    Patch(delta::PatchArgs),
    /// Print the digest of a version: a file's SHA-256, or a directory's Merkle root.
    Digest {
        /// A file or a directory tree.
        path: PathBuf,
    },
    /// Android file-based OTA packages: build, sign, verify, simulate.
    #[command(subcommand)]
    Android(android::AndroidCommand),
    /// Web admin accounts (`ota admin create-user NAME`).
    Admin(admin::AdminArgs),
}

/// Where the data lives (shared by `serve` and `keys`).
#[derive(Args, Clone, Default)]
pub struct StoreArgs {
    /// Data directory [default: ./ota-data]
    #[arg(long, env = "OTA_DATA", global = true)]
    pub data: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://… [default: SQLite in the data directory]
    #[arg(long, env = "OTA_DATABASE", global = true)]
    pub database: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "OTA_LISTEN")]
    listen: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
    /// Largest accepted package file: 8GiB (2^30 units), 500MB (10^6), 1048576 [default: 8GiB]
    #[arg(long, env = "OTA_MAX_UPLOAD")]
    max_upload: Option<String>,
    /// Base of the download URLs devices get (`remote`), e.g. https://ota.example.com
    /// [default: http://LISTEN_ADDRESS]
    #[arg(long, env = "OTA_PUBLIC_URL")]
    public_url: Option<String>,
    /// Without --public-url, build download URLs from each request's Host and
    /// X-Forwarded-Proto/-Host headers (only behind a proxy that sets them)
    #[arg(long, env = "OTA_URL_FROM_REQUEST", num_args = 0..=1, default_missing_value = "true",
          value_parser = clap::builder::BoolishValueParser::new())]
    url_from_request: Option<bool>,
    /// Time allowed for a request's headers; also ends idle keep-alive connections [default: 10s]
    #[arg(long, env = "OTA_HEADER_TIMEOUT")]
    header_timeout: Option<String>,
    /// An upload or download that moves no byte for this long is cut [default: 60s]
    #[arg(long, env = "OTA_STALL_TIMEOUT")]
    stall_timeout: Option<String>,
    /// On SIGTERM/SIGINT, how long in-flight requests may finish [default: 30s]
    #[arg(long, env = "OTA_DRAIN_TIMEOUT")]
    drain_timeout: Option<String>,
    /// Connections served at once [default: 4096]
    #[arg(long, env = "OTA_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Connections one client address may hold (0: no limit; loopback exempt) [default: 256]
    #[arg(long, env = "OTA_MAX_CONNECTIONS_PER_IP")]
    max_connections_per_ip: Option<usize>,
    /// Strategies file to check and put in force at start (see `ota strategy`)
    #[arg(long, env = "OTA_STRATEGY")]
    strategy: Option<PathBuf>,
    /// Ed25519 private key (PEM) packs are signed with [default: DATA/signing-key.pem, created on first start]
    #[arg(long, env = "OTA_SIGNING_KEY")]
    signing_key: Option<PathBuf>,
    /// Android release key (PKCS#8 DER or PEM) that ROM packages built from uploaded target-files are signed with [default: unsigned]
    #[arg(long, env = "OTA_ANDROID_KEY", requires = "android_cert")]
    android_key: Option<PathBuf>,
    /// Certificate of --android-key (PEM or DER, like releasekey.x509.pem)
    #[arg(long, env = "OTA_ANDROID_CERT", requires = "android_key")]
    android_cert: Option<PathBuf>,
    /// Jobs (packs, ROM builds from target-files) this server runs at once (0: it builds none) [default: 1]
    #[arg(long, env = "OTA_PACK_WORKERS")]
    pack_workers: Option<usize>,
    /// Memory the pack diffs running at once may use together [default: 2GiB]
    #[arg(long, env = "OTA_PACK_MEMORY")]
    pack_memory: Option<String>,
    /// A claimed pack job not renewed for this long is taken over by another worker [default: 60s]
    #[arg(long, env = "OTA_PACK_LEASE")]
    pack_lease: Option<String>,
    /// zstd level of pack patches, 1-22 (higher: smaller, slower) [default: 19]
    #[arg(long, env = "OTA_PACK_LEVEL")]
    pack_level: Option<i32>,
    /// Disk kept for built bundles (repeated and resumed downloads) [default: 2GiB]
    #[arg(long, env = "OTA_BUNDLE_CACHE")]
    bundle_cache: Option<String>,
    /// Publish versions dropped into DIR/<package>/<branch>/<version>/ (a tree)
    /// or DIR/<package>/<branch>/<version>.<ext> (a file)
    #[arg(long, env = "OTA_WATCH", value_name = "DIR")]
    watch: Option<PathBuf>,
    /// Where blobs are kept: `local` (the data directory) or an S3-compatible
    /// object store, s3://BUCKET[/PREFIX]?endpoint=http://HOST:PORT&region=REGION
    /// (credentials from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY); the data
    /// directory is then a cache [default: local]
    #[arg(long, env = "OTA_BLOBS", value_name = "URL")]
    blobs: Option<String>,
    /// With an object store: answer blob downloads with a redirect to a
    /// presigned URL valid this long (e.g. 300, 10m) instead of streaming them
    #[arg(long, env = "OTA_BLOBS_PRESIGN", value_name = "SECONDS")]
    blobs_presign: Option<String>,
}

#[derive(Subcommand)]
enum KeysAction {
    /// Create a key; it is printed once and only its hash is stored.
    Create {
        /// A name to recognise the key by (e.g. the CI job).
        name: String,
        /// What the key may do: `publish:PATTERN` (publish and delete
        /// versions of matching packages, `*` matches anything),
        /// `hooks:PATTERN` (set BeforeUpdate/AfterUpdate/restore), `admin`.
        /// Repeat or separate with spaces. [default: publish:*]
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
    },
    /// List keys (names, ids, dates; never secrets).
    List,
    /// Revoke a key by name.
    Revoke {
        /// The key's name.
        name: String,
    },
    /// Print the public key (PEM) packs are signed with, for devices.
    SigningPublic {
        /// The private key file [default: DATA/signing-key.pem]
        #[arg(long)]
        signing_key: Option<PathBuf>,
    },
}

/// Logs to stderr: coloured only on a terminal, JSON lines with
/// `OTA_LOG_FORMAT=json` (the agent's default when stderr is not a
/// terminal, e.g. under systemd), filtered by `OTA_LOG` (tracing's
/// env-filter syntax).
fn init_logging(agent: bool) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("OTA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = match std::env::var("OTA_LOG_FORMAT").as_deref() {
        Ok("json") => true,
        Ok(_) => false,
        Err(_) => agent && !std::io::stderr().is_terminal(),
    };
    match json {
        true => builder.json().init(),
        false => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging(matches!(cli.command, Command::Agent(_)));
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    let config = cli.config;
    // Deltas need neither the configuration file nor an async runtime.
    let setup = || -> Result<(Settings, tokio::runtime::Runtime)> {
        let file = Settings::load(config.as_deref())?;
        let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
        Ok((file, rt))
    };
    match cli.command {
        Command::Diff(args) => delta::diff(args),
        Command::Patch(args) => delta::patch(args),
        Command::Android(cmd) => android::run(cmd),
        Command::Bundle(cmd) => bundle::run(cmd),
        Command::Digest { path } => {
            let d = ota_core::digest::digest_path(&path)
                .with_context(|| format!("computing the digest of {}", path.display()))?;
            println!("{d}");
            Ok(())
        }
        Command::Serve(args) => {
            let (file, rt) = setup()?;
            rt.block_on(serve(file, args))
        }
        Command::Keys { store, action } => {
            let (file, rt) = setup()?;
            rt.block_on(keys(file, store, action))
        }
        Command::Publish(args) => {
            let (file, rt) = setup()?;
            rt.block_on(publish::run(file, args))
        }
        Command::Strategy(cmd) => {
            let (file, rt) = setup()?;
            rt.block_on(strategy::run(file, cmd))
        }
        Command::Update(args) => {
            let (_, rt) = setup()?;
            rt.block_on(update::run(args))
        }
        Command::Jobs(args) => {
            let (file, rt) = setup()?;
            rt.block_on(jobs::run(file, args))
        }
        Command::Agent(args) => agent::run(args),
        Command::Devices(args) => {
            let (file, rt) = setup()?;
            rt.block_on(devices::run(file, args))
        }
        Command::Admin(args) => {
            let (file, rt) = setup()?;
            rt.block_on(admin::run(file, args))
        }
    }
}

async fn serve(file: Settings, args: ServeArgs) -> Result<()> {
    let config = file.server_config(
        &args.store,
        config::ServeOptions {
            listen: args.listen,
            max_upload: args.max_upload,
            public_url: args.public_url,
            url_from_request: args.url_from_request.unwrap_or(false),
            header_timeout: args.header_timeout,
            stall_timeout: args.stall_timeout,
            drain_timeout: args.drain_timeout,
            max_connections: args.max_connections,
            max_connections_per_ip: args.max_connections_per_ip,
            blobs: args.blobs,
        },
    )?;
    let mut config = config;
    config.strategy_file = args.strategy;
    config.packs.signing_key = args.signing_key;
    config.packs.android_key = args.android_key.zip(args.android_cert);
    if let Some(n) = args.pack_workers {
        config.packs.workers = n;
    }
    if let Some(m) = &args.pack_memory {
        config.packs.memory_budget = ota_core::size::parse_size(m).context("--pack-memory")?;
    }
    if let Some(l) = args.pack_level {
        if !(1..=22).contains(&l) {
            anyhow::bail!("--pack-level must be from 1 to 22, got {l}");
        }
        config.packs.level = l;
    }
    config.watch = args.watch;
    if let Some(l) = &args.pack_lease {
        let d = humantime::parse_duration(l).with_context(|| format!("--pack-lease {l:?}"))?;
        anyhow::ensure!(d.as_secs() >= 3, "--pack-lease must be at least 3s");
        config.packs.lease = d;
    }
    if let Some(p) = &args.blobs_presign {
        let d = match p.parse::<u64>() {
            Ok(secs) => std::time::Duration::from_secs(secs),
            Err(_) => humantime::parse_duration(p)
                .with_context(|| format!("--blobs-presign {p:?} (seconds, or e.g. 10m)"))?,
        };
        // SigV4 presigned URLs live at most 7 days.
        anyhow::ensure!(
            (1..=7 * 24 * 3600).contains(&d.as_secs()),
            "--blobs-presign must be from 1 second to 7 days"
        );
        config.blobs_presign = Some(d);
    }
    if let Some(b) = &args.bundle_cache {
        config.bundle_cache = ota_core::size::parse_size(b).context("--bundle-cache")?;
    }
    let server = ota_server::Server::bind(config).await?;
    let addr = server.local_addr()?;
    let stop = ota_server::shutdown_signal();
    println!("listening on http://{addr}");
    server.run(stop).await?;
    tracing::info!("stopped");
    Ok(())
}

async fn keys(file: Settings, store: StoreArgs, action: KeysAction) -> Result<()> {
    if let KeysAction::SigningPublic { signing_key } = &action {
        let path = signing_key.clone().unwrap_or_else(|| {
            file.data_dir(&store)
                .join(ota_server::packs::signing_key::FILE_NAME)
        });
        let pem = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "reading {} (the server creates it on first start; or pass --signing-key)",
                path.display()
            )
        })?;
        let key = ota_core::signing::SecretKey::from_pem(&pem)
            .with_context(|| format!("signing key {}", path.display()))?;
        print!("{}", key.public().to_pem());
        return Ok(());
    }
    let url = file.database_url(&store);
    if url.starts_with("sqlite:") {
        ota_store::create_private_dir(&file.data_dir(&store))?;
    }
    let catalogue = ota_store::Catalogue::open(&url).await?;
    match action {
        KeysAction::Create { name, scopes } => {
            ota_core::name::check_name("key name", &name)?;
            let scopes = if scopes.is_empty() {
                ota_core::scope::Scopes::default_publisher()
            } else {
                scopes.join(" ").parse()?
            };
            let token = catalogue.create_key(&name, &scopes).await?;
            println!("{token}");
            eprintln!(
                "API key {name:?} ({scopes}) created. It is shown only now: store it in your CI secrets."
            );
        }
        KeysAction::List => {
            let keys = catalogue.list_keys().await?;
            if keys.is_empty() {
                eprintln!("no API keys; create one with `ota keys create NAME`");
            }
            for k in keys {
                let state = match k.revoked_at {
                    Some(t) => format!("revoked {}", config::iso8601(t)),
                    None => "active".to_owned(),
                };
                let used = k
                    .last_used_at
                    .map_or_else(|| "never".to_owned(), config::iso8601);
                println!(
                    "{:<24} ota_{}_…  {:<8} created {}  last used {:<20}  {}",
                    k.name,
                    k.key_id,
                    state,
                    config::iso8601(k.created_at),
                    used,
                    k.scopes
                );
            }
        }
        KeysAction::Revoke { name } => {
            if catalogue.revoke_key(&name).await? {
                println!("revoked {name}");
            } else {
                anyhow::bail!("no active API key named {name:?}");
            }
        }
        KeysAction::SigningPublic { .. } => {}
    }
    catalogue.close().await;
    Ok(())
}
