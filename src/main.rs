//! `floodlight`: the one binary. `floodlight up` runs every service in one process with
//! embedded defaults; `floodlight <service>` runs one service.

mod archive;
mod assignment;
mod config;
mod services;
mod up;
mod vod;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

use crate::config::Config;

/// mimalloc instead of glibc malloc: glibc keeps what a burst of connections freed in
/// its per-thread arenas (issue 10: three floods of 2,000 blocked playlist reloads left
/// the origin 80 MB larger, of which `malloc_trim` could return 73 MB), while mimalloc
/// returns freed pages to the system shortly after.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "floodlight",
    version,
    about = "Live ingest, transcoding and LL-HLS distribution"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run everything in one process: RTMP ingest, packager, origin and control API.
    Up(Args),
    /// Run only the origin (LL-HLS playback and the part push API).
    Origin(Args),
    /// Run only the ingest service.
    Ingest(Args),
    /// Run only the transcoder service.
    Transcoder(Args),
    /// Run only the control plane (HTTP API).
    ControlPlane(Args),
}

#[derive(clap::Args)]
struct Args {
    /// TOML config file; every key can also be set with FLOODLIGHT_* env vars.
    #[arg(long, env = "FLOODLIGHT_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory (SQLite database, archive). Overrides `data_dir` in the config.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl Args {
    fn load(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref(), std::env::vars())?;
        if let Some(dir) = &self.data_dir {
            config.data_dir = dir.clone();
        }
        Ok(config)
    }
}

/// How often histogram samples are folded into the exporter's summaries.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The recorder keeps every histogram sample until it is folded into its summary, which
/// happens on a scrape of `/metrics` or here: without this, a process nobody scrapes grew
/// by every blocking reload's wait time (4 MB a minute under 200 viewers in bench/soak.sh).
async fn metrics_upkeep(metrics: PrometheusHandle) {
    let mut tick = tokio::time::interval(METRICS_UPKEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        metrics.run_upkeep();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (args, service) = match &cli.command {
        Command::Up(a) => (a, None),
        Command::Origin(a) => (a, Some("origin")),
        Command::Ingest(a) => (a, Some("ingest")),
        Command::Transcoder(a) => (a, Some("transcoder")),
        Command::ControlPlane(a) => (a, Some("control-plane")),
    };
    let config = args.load()?;
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&config.log).context("log: invalid filter")?)
        .init();
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .context("installing the metrics recorder")?;
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async move {
        tokio::spawn(metrics_upkeep(metrics.clone()));
        match service {
            None => up::up(config, metrics).await,
            Some("origin") => up::origin_only(config, metrics).await,
            Some("transcoder") => services::transcoder(config, metrics).await,
            Some("ingest") => services::ingest(config, metrics).await,
            // The control API runs inside `floodlight up` until the shared live state
            // lands; say so rather than start a service that cannot do its job.
            Some("control-plane") => anyhow::bail!(
                "`floodlight control-plane` as a separate process needs the shared live state \
                 (which ingest session and origin serve each event, kept in Redis), which is not \
                 built yet; run `floodlight up` (its store can be PostgreSQL: \
                 control.database_url)"
            ),
            Some(name) => anyhow::bail!("unknown service {name}"),
        }
    })
}
