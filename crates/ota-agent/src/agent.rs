//! The agent's loop: recover interrupted installs, then every
//! `poll_interval` (with jitter) check every package, plan the cycle by
//! dependencies, and install each update — download (resuming), verify,
//! stage, `BeforeUpdate`, switch, `restore`, `AfterUpdate`, commit — or
//! switch back; report every outcome.

use crate::config::{record_installed, Config, PackageConfig};
use crate::deps::{plan, Node};
use crate::download::{self, Download, FetchError, RetryPolicy};
use crate::hooks::{self, HookEnv};
use crate::install::{self, Journal, StageError};
use crate::protocol::{Offer, Route, Server, Target};
use crate::report::{Outcome, Reporter, Result as Res};
use crate::state::{PackageStatus, StateDir};
use anyhow::{Context, Result};
use ota_core::signing::PublicKey;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Knobs that are not in the config file.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// Overrides the config's `state_dir`.
    pub state_dir: Option<PathBuf>,
    /// Draw progress bars (stderr is a terminal).
    pub progress: bool,
    /// Download retries.
    pub retry: RetryPolicy,
    /// Failed installs of one target before the agent stops trying it
    /// (until the server offers another).
    pub install_attempts: u32,
    /// Stall timeout for every read from the server.
    pub stall_timeout: Duration,
}

impl Default for AgentOptions {
    fn default() -> Self {
        AgentOptions {
            state_dir: None,
            progress: false,
            retry: RetryPolicy::default(),
            install_attempts: 3,
            stall_timeout: Duration::from_secs(30),
        }
    }
}

/// The device agent.
pub struct Agent {
    config_path: PathBuf,
    opts: AgentOptions,
    client: reqwest::Client,
    cancel: watch::Receiver<bool>,
}

/// The loaded pieces of one cycle.
struct Ctx {
    config: Config,
    state: StateDir,
    key: Option<PublicKey>,
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Agent {
    /// An agent for the config at `config_path`; `cancel` turning true
    /// (SIGTERM) stops it after the step in progress.
    pub fn new(
        config_path: &Path,
        opts: AgentOptions,
        cancel: watch::Receiver<bool>,
    ) -> Result<Agent> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(opts.stall_timeout)
            .user_agent(concat!("ota-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("building the HTTP client")?;
        Ok(Agent {
            config_path: config_path.to_owned(),
            opts,
            client,
            cancel,
        })
    }

    fn load(&self) -> Result<Ctx> {
        let config = Config::load(&self.config_path)?;
        let root = self
            .opts
            .state_dir
            .clone()
            .unwrap_or_else(|| config.state_dir.clone());
        let state = StateDir::open(&root)
            .with_context(|| format!("opening the state directory {}", root.display()))?;
        let key = match &config.public_key {
            Some(p) => {
                let pem = std::fs::read_to_string(p)
                    .with_context(|| format!("reading public_key {}", p.display()))?;
                Some(
                    PublicKey::from_pem(&pem)
                        .with_context(|| format!("public_key {}", p.display()))?,
                )
            }
            None => None,
        };
        Ok(Ctx { config, state, key })
    }

    /// Runs until cancelled (or one cycle with `once`).
    pub async fn run(&mut self, once: bool) -> Result<()> {
        let ctx = self.load()?;
        let _lock = ctx.state.lock()?;
        self.recover(&ctx)?;
        let mut ctx = Some(ctx);
        loop {
            let c = match ctx.take() {
                Some(c) => c,
                None => match self.load() {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!("{e:#}; keeping the previous schedule");
                        if self.wait(Duration::from_secs(60)).await {
                            return Ok(());
                        }
                        continue;
                    }
                },
            };
            let summary = self.cycle(&c).await;
            for o in &summary {
                tracing::info!(
                    package = o.package,
                    result = o.result.as_str(),
                    "{}",
                    o.line()
                );
            }
            if once || *self.cancel.borrow() {
                return Ok(());
            }
            let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), 0.9..=1.1);
            if self.wait(c.config.poll_interval.mul_f64(jitter)).await {
                return Ok(());
            }
        }
    }

    /// Finishes or undoes installs a crash interrupted, then returns (what
    /// the agent does first when it starts; `ota agent recover` at boot).
    pub fn recover_only(&self) -> Result<()> {
        let ctx = self.load()?;
        let _lock = ctx.state.lock()?;
        self.recover(&ctx)
    }

    /// Sleeps; true when cancelled meanwhile.
    async fn wait(&mut self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => *self.cancel.borrow(),
            _ = self.cancel.changed() => true,
        }
    }

    fn recover(&self, ctx: &Ctx) -> Result<()> {
        crate::fsutil::remove_stale_temps(&ctx.config.path);
        let recovered = install::recover(&ctx.state, |name| {
            ctx.config
                .package(name)
                .map(|p| p.version.as_str().to_owned())
        })
        .context("recovering an interrupted install")?;
        let reporter = Reporter::new(&ctx.config, &ctx.state);
        for r in recovered {
            match r {
                install::Recovered::Committed { package, version } => {
                    tracing::info!(
                        package,
                        version,
                        "finished an install interrupted after its commit"
                    );
                }
                install::Recovered::RolledBack {
                    package,
                    version,
                    abandoned,
                } => {
                    tracing::warn!(package, version, abandoned, "an install was interrupted before its commit: the previous version is back");
                    let mut o = Outcome::new(&package, &version, &abandoned);
                    o.result = Res::RolledBack;
                    o.error = Some(
                        "interrupted (crash or power loss) before the update committed".into(),
                    );
                    reporter.queue(&o, &ctx.config);
                }
            }
        }
        Ok(())
    }

    /// One check-and-install round over every package.
    async fn cycle(&self, ctx: &Ctx) -> Vec<Outcome> {
        let server = Server {
            client: &self.client,
            key: ctx.key.as_ref(),
            allow_unsigned: ctx.config.allow_unsigned,
        };
        let mut status = ctx.state.status();
        let mut offers: BTreeMap<String, (Target, Route)> = BTreeMap::new();
        let mut outcomes = Vec::new();
        for p in &ctx.config.packages {
            let st = status.packages.entry(p.name.clone()).or_default();
            st.last_check = now();
            match server
                .check(p, &ctx.config.client_type, ctx.config.take_optional)
                .await
            {
                Ok(Offer::UpToDate) => {}
                Ok(Offer::Declined(v)) => {
                    tracing::info!(
                        package = p.name,
                        "optional update to {} not taken (take_optional is false)",
                        v.as_str()
                    );
                }
                Ok(Offer::Install { target, route }) => {
                    offers.insert(p.name.clone(), (target, route));
                }
                Err(e) => {
                    tracing::warn!(package = p.name, "check failed: {e}");
                    st.last_error = Some(e.to_string());
                }
            }
        }
        let _ = ctx.state.save_status(&status);
        let nodes: Vec<Node> = ctx
            .config
            .packages
            .iter()
            .map(|p| match offers.get(&p.name) {
                Some((t, _)) => Node {
                    name: p.name.clone(),
                    version: t.version.clone(),
                    deps: t.dependencies.clone(),
                },
                None => Node {
                    name: p.name.clone(),
                    version: p.version.clone(),
                    deps: p.dependencies.clone(),
                },
            })
            .collect();
        let planned = plan(&nodes);
        let reporter = Reporter::new(&ctx.config, &ctx.state);
        for (name, why) in &planned.refused {
            if let (Some((t, _)), Some(p)) = (offers.get(name), ctx.config.package(name)) {
                let mut o = Outcome::new(name, p.version.as_str(), t.version.as_str());
                o.result = Res::Failure;
                o.error = Some(format!("not applied: {why}"));
                if self.note_failure(ctx, &o, &t.sha256) {
                    reporter.queue(&o, &ctx.config);
                }
                outcomes.push(o);
            }
        }
        let mut failed: Vec<String> = Vec::new();
        for name in &planned.order {
            let Some((target, route)) = offers.get(name) else {
                continue;
            };
            let Some(p) = ctx.config.package(name) else {
                continue;
            };
            if *self.cancel.borrow() {
                break;
            }
            if let Some(dep) = p_deps_failed(target, &failed) {
                let mut o = Outcome::new(name, p.version.as_str(), target.version.as_str());
                o.result = Res::Skipped;
                o.error = Some(format!("skipped: its dependency {dep} failed to update"));
                reporter.queue(&o, &ctx.config);
                outcomes.push(o);
                failed.push(name.clone());
                continue;
            }
            let o = self.update(ctx, &server, p, target, route).await;
            if o.result == Res::Interrupted {
                outcomes.push(o);
                break;
            }
            if o.result != Res::Success {
                failed.push(name.clone());
            }
            if o.result != Res::GaveUp {
                reporter.queue(&o, &ctx.config);
            }
            outcomes.push(o);
        }
        if *self.cancel.borrow() {
            return outcomes; // queued reports go out next time
        }
        if offers.is_empty() {
            // Only a device with nothing to install is "up-to-date".
            reporter.heartbeat_if_due(&ctx.config);
        }
        reporter.flush(&server).await;
        outcomes
    }

    /// Counts a failed attempt at a target; false once the target has
    /// failed `install_attempts` times (the agent then stops reporting it).
    fn note_failure(&self, ctx: &Ctx, o: &Outcome, sha256: &str) -> bool {
        let mut status = ctx.state.status();
        let st = status.packages.entry(o.package.clone()).or_default();
        let key = format!("{} {sha256}", o.to);
        let n = st.failures.entry(key).or_insert(0);
        *n += 1;
        let fresh = *n <= self.opts.install_attempts;
        st.last_result = Some(o.result.as_str().into());
        st.last_error = o.error.clone();
        let _ = ctx.state.save_status(&status);
        fresh
    }

    fn gave_up(&self, ctx: &Ctx, package: &str, t: &Target) -> bool {
        let status = ctx.state.status();
        let key = format!("{} {}", t.version.as_str(), t.sha256);
        status
            .packages
            .get(package)
            .and_then(|s| s.failures.get(&key))
            .is_some_and(|n| *n >= self.opts.install_attempts)
    }

    fn set_phase(&self, ctx: &Ctx, package: &str, f: impl FnOnce(&mut PackageStatus)) {
        let mut status = ctx.state.status();
        f(status.packages.entry(package.to_owned()).or_default());
        let _ = ctx.state.save_status(&status);
    }

    /// Updates one package; never panics, always returns what happened.
    async fn update(
        &self,
        ctx: &Ctx,
        server: &Server<'_>,
        p: &PackageConfig,
        target: &Target,
        route: &Route,
    ) -> Outcome {
        let mut o = Outcome::new(&p.name, p.version.as_str(), target.version.as_str());
        if self.gave_up(ctx, &p.name, target) {
            o.result = Res::GaveUp;
            tracing::debug!(
                package = p.name,
                "not retrying {} (failed too often)",
                target.version.as_str()
            );
            return o;
        }
        let started = Instant::now();
        self.set_phase(ctx, &p.name, |s| {
            s.phase = "downloading".into();
            s.target = Some(target.version.as_str().into());
            s.bytes = 0;
            s.total = None;
        });
        let result = self
            .download_and_stage(ctx, server, p, target, route, &mut o)
            .await;
        o.timings.download_ms = started.elapsed().as_millis() as u64;
        let staged = match result {
            Ok(new) => new,
            Err(e) => return self.finish_outcome(ctx, o, target, e),
        };
        self.set_phase(ctx, &p.name, |s| s.phase = "installing".into());
        let t_install = Instant::now();
        let r = self.switch_and_commit(ctx, p, target, &staged).await;
        o.timings.install_ms = t_install.elapsed().as_millis() as u64;
        o.timings.total_ms = started.elapsed().as_millis() as u64;
        match r {
            Ok(()) => {
                let _ = ctx.state.prune_downloads(&p.name, None);
                o.result = Res::Success;
                self.set_phase(ctx, &p.name, |s| {
                    *s = PackageStatus {
                        phase: "idle".into(),
                        last_result: Some("success".into()),
                        last_check: s.last_check,
                        ..Default::default()
                    }
                });
                o
            }
            Err(e) => self.finish_outcome(ctx, o, target, e),
        }
    }

    fn finish_outcome(&self, ctx: &Ctx, mut o: Outcome, t: &Target, e: Failure) -> Outcome {
        match e {
            Failure::Interrupted => {
                o.result = Res::Interrupted;
                self.set_phase(ctx, &o.package, |s| s.phase = "idle".into());
                return o;
            }
            Failure::Network(msg) => {
                o.result = Res::Failure;
                tracing::warn!(
                    package = o.package,
                    "update to {} not finished: {msg}",
                    o.to
                );
                self.set_phase(ctx, &o.package, |s| {
                    s.phase = "idle".into();
                    s.last_result = Some("failure".into());
                    s.last_error = Some(msg.clone());
                });
                o.error = Some(msg);
                return o;
            }
            Failure::Before(msg) => {
                o.result = Res::Failure;
                o.error = Some(msg);
            }
            Failure::After(msg) => {
                o.result = Res::RolledBack;
                o.error = Some(msg);
            }
        }
        tracing::warn!(
            package = o.package,
            "update to {} failed: {}",
            o.to,
            o.error.as_deref().unwrap_or("")
        );
        self.note_failure(ctx, &o, &t.sha256);
        self.set_phase(ctx, &o.package, |s| s.phase = "idle".into());
        o
    }

    async fn download_and_stage(
        &self,
        ctx: &Ctx,
        server: &Server<'_>,
        p: &PackageConfig,
        target: &Target,
        route: &Route,
        o: &mut Outcome,
    ) -> Result<PathBuf, Failure> {
        if let (Route::Bundle { .. }, Some(key)) = (route, ctx.key.as_ref()) {
            if p.local.exists() {
                match self.via_bundle(ctx, server, p, target, route, key, o).await {
                    Ok(new) => return Ok(new),
                    Err(Failure::Before(why)) if why.starts_with(NOT_APPLICABLE) => {
                        tracing::warn!(package = p.name, "{why}; taking the full package");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        o.method = "full".into();
        let dl = Download {
            url: &target.url,
            sha256: &target.sha256,
            path: ctx.state.download_path(&p.name, &target.sha256),
        };
        let _ = ctx.state.prune_downloads(&p.name, Some(&target.sha256));
        let file = self.fetch(ctx, &p.name, &dl, None, o).await?;
        let local = p.local.clone();
        tokio::task::spawn_blocking(move || install::stage_full(&file, &local))
            .await
            .map_err(|e| Failure::Before(format!("staging: {e}")))?
            .map_err(|e| Failure::Before(e.to_string()))
    }

    #[allow(clippy::too_many_arguments)]
    async fn via_bundle(
        &self,
        ctx: &Ctx,
        server: &Server<'_>,
        p: &PackageConfig,
        target: &Target,
        route: &Route,
        key: &PublicKey,
        o: &mut Outcome,
    ) -> Result<PathBuf, Failure> {
        o.method = "delta".into();
        let (first, url, sha) = server
            .confirm(p, &ctx.config.client_type, route, target.version.as_str())
            .await
            .map_err(|e| match e {
                crate::protocol::CheckError::Transient(m) => Failure::Network(m),
                crate::protocol::CheckError::Refused(m) => Failure::Before(m),
            })?;
        let _ = ctx.state.prune_downloads(&p.name, Some(&sha));
        let dl = Download {
            url: &url,
            sha256: &sha,
            path: ctx.state.download_path(&p.name, &sha),
        };
        let bundle = self.fetch(ctx, &p.name, &dl, Some(first), o).await?;
        let (local, key, to) = (
            p.local.clone(),
            key.clone(),
            target.version.as_str().to_owned(),
        );
        let staged =
            tokio::task::spawn_blocking(move || install::stage_delta(&bundle, &local, &key, &to))
                .await
                .map_err(|e| Failure::Before(format!("staging: {e}")))?;
        match staged {
            Ok(new) => Ok(new),
            Err(e @ StageError::NotApplicable { .. }) => {
                download::discard(&dl.path);
                Err(Failure::Before(format!("{NOT_APPLICABLE}{e}")))
            }
            Err(e) => {
                // A bundle that fails verification is not kept.
                download::discard(&dl.path);
                Err(Failure::Before(e.to_string()))
            }
        }
    }

    async fn fetch(
        &self,
        ctx: &Ctx,
        package: &str,
        dl: &Download<'_>,
        first: Option<reqwest::Response>,
        o: &mut Outcome,
    ) -> Result<PathBuf, Failure> {
        let bar = self.opts.progress.then(|| {
            let b = indicatif::ProgressBar::new(0);
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{msg} {bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b.set_message(package.to_owned());
            b
        });
        let last_save = Mutex::new(Instant::now() - Duration::from_secs(10));
        let progress = |have: u64, total: Option<u64>| {
            if let Some(b) = &bar {
                if let Some(t) = total {
                    b.set_length(t);
                }
                b.set_position(have);
            }
            let Ok(mut last) = last_save.lock() else {
                return;
            };
            if last.elapsed() >= Duration::from_secs(1) || total == Some(have) {
                *last = Instant::now();
                self.set_phase(ctx, package, |s| {
                    s.bytes = have;
                    s.total = total;
                });
            }
        };
        let mut cancel = self.cancel.clone();
        let r = download::fetch(
            &self.client,
            dl,
            first,
            &self.opts.retry,
            &progress,
            &mut cancel,
        )
        .await;
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        match r {
            Ok(f) => {
                o.bytes = f.received;
                o.resumed_from = f.resumed_from;
                if f.resumed_from > 0 {
                    tracing::info!(package, offset = f.resumed_from, "resumed the download");
                }
                Ok(f.path)
            }
            Err(FetchError::Interrupted) => Err(Failure::Interrupted),
            Err(e @ (FetchError::Exhausted { .. } | FetchError::Refused { .. })) => {
                Err(Failure::Network(e.to_string()))
            }
            Err(e) => Err(Failure::Before(e.to_string())),
        }
    }

    /// `BeforeUpdate`, the switch, `restore` and `AfterUpdate`, the commit.
    async fn switch_and_commit(
        &self,
        ctx: &Ctx,
        p: &PackageConfig,
        target: &Target,
        staged: &Path,
    ) -> Result<(), Failure> {
        let hooks = target.hooks.clone().or(&p.hooks);
        let journal = Journal {
            package: p.name.clone(),
            local: p.local.clone(),
            work: install::work_dir(&p.local),
            from: p.version.as_str().to_owned(),
            to: target.version.as_str().to_owned(),
            old_id: crate::fsutil::identity(&p.local)
                .map_err(|e| Failure::Before(e.to_string()))?,
            new_id: crate::fsutil::identity(staged).map_err(|e| Failure::Before(e.to_string()))?,
        };
        let limit = ctx.config.hook_timeout;
        let mut env = HookEnv {
            package: &p.name,
            from: &journal.from,
            to: &journal.to,
            local: &p.local,
            previous: None,
        };
        if let Some(cmd) = &hooks.before_update {
            if let Err(e) = hooks::run("BeforeUpdate", cmd, &env, limit).await {
                let _ = crate::fsutil::remove_any(&journal.work);
                return Err(Failure::Before(format!("{e}; nothing was changed")));
            }
        }
        let state = ctx.state.clone();
        let j = journal.clone();
        let switched = tokio::task::spawn_blocking(move || {
            install::begin(&state, &j)?;
            install::switch(&j)
        })
        .await
        .map_err(|e| Failure::Before(e.to_string()))?;
        if let Err(e) = switched {
            let _ = install::roll_back(&ctx.state, &journal);
            return Err(Failure::Before(format!(
                "switching to the new version: {e}"
            )));
        }
        let previous = journal.work.join("new");
        env.previous = journal.old_id.is_some().then_some(previous.as_path());
        let mut after = Ok(());
        for (name, cmd) in [
            ("restore", &hooks.restore),
            ("AfterUpdate", &hooks.after_update),
        ] {
            if let Some(cmd) = cmd {
                if let Err(e) = hooks::run(name, cmd, &env, limit).await {
                    after = Err(e.to_string());
                    break;
                }
            }
        }
        if after.is_ok() {
            after = record_installed(&ctx.config.path, p.index, &journal.to, Some(&target.sha256))
                .map_err(|e| {
                    format!(
                        "recording the new version in {}: {e}",
                        ctx.config.path.display()
                    )
                });
        }
        if let Err(why) = after {
            return match install::roll_back(&ctx.state, &journal) {
                Ok(()) => Err(Failure::After(format!(
                    "{why}; {} is back at {}",
                    p.name, journal.from
                ))),
                Err(e) => Err(Failure::After(format!(
                    "{why}; switching back failed too: {e} (the next start retries)"
                ))),
            };
        }
        install::finish(&ctx.state, &journal)
            .map_err(|e| tracing::warn!(package = p.name, "cleaning up after the update: {e}"))
            .ok();
        Ok(())
    }
}

const NOT_APPLICABLE: &str = "delta not applicable: ";

/// How an update attempt failed.
enum Failure {
    /// The agent is stopping.
    Interrupted,
    /// The network or the server failed (reported, not counted against
    /// the target: the next cycle goes on from the partial download).
    Network(String),
    /// Before the switch: nothing changed.
    Before(String),
    /// After the switch: rolled back.
    After(String),
}

fn p_deps_failed<'a>(t: &Target, failed: &'a [String]) -> Option<&'a str> {
    failed
        .iter()
        .find(|f| t.dependencies.contains_key(f.as_str()))
        .map(String::as_str)
}
