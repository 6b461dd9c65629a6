//! `floodlight-player <master_url>... [--duration 20s] [--viewers N] [--json]`: follows an
//! LL-HLS stream like a low-latency player, or a recorded one (start-over, time-shift,
//! VOD) like a plain HLS player (or, with several viewers, runs a swarm of them) and
//! prints what it found. Exit status: 0 no errors, 1 errors found, 2 could not follow at
//! all.
#![forbid(unsafe_code)]

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use floodlight_player::{PlayerConfig, RecordedPace, SwarmConfig, VariantChoice, follow, swarm};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "Follow an LL-HLS stream like a low-latency player, or a recorded one like an HLS player; check and measure it"
)]
struct Args {
    /// Multivariant (master) playlist URL, e.g. http://127.0.0.1:8080/live/EVENT/master.m3u8;
    /// several for a swarm (viewer i follows the i-th modulo their number).
    #[arg(required = true)]
    master_urls: Vec<String>,
    /// Viewers to run at once (a swarm): even ones take the highest variant, odd ones the
    /// lowest; `--variant` applies to a single viewer only.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    viewers: u32,
    /// A swarm's viewers start evenly spread over this time.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    ramp: Duration,
    /// How long to follow a live or growing (EVENT) stream: `20s`, `500ms`, `2m` or plain
    /// seconds (`20`, `1.5`) [default: 20s]. A finished recording (VOD) is fetched to its
    /// EXT-X-ENDLIST unless this is given.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Print the report as JSON instead of text.
    #[arg(long)]
    json: bool,
    /// `highest` (default) or `lowest` BANDWIDTH, or text the variant URI contains.
    #[arg(long, default_value = "highest")]
    variant: String,
    /// Do not follow the variant's audio rendition.
    #[arg(long)]
    no_audio: bool,
    /// Timeout of each HTTP request.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Ask for a delta update (_HLS_skip=YES) on every n-th blocking reload; 0 = never.
    #[arg(long, default_value_t = 2)]
    delta_update_every: u32,
    /// Fetch a recording's segments at the pace of a player playing it at 1× instead of
    /// as fast as possible.
    #[arg(long)]
    realtime: bool,
    /// Do not check a recorded variant's I-frame playlist.
    #[arg(long)]
    no_iframes: bool,
}

/// Following time when `--duration` is not given.
const DEFAULT_DURATION: Duration = Duration::from_secs(20);

impl Args {
    /// The options every viewer shares.
    fn apply(&self, config: &mut PlayerConfig) {
        config.duration = self.duration.unwrap_or(DEFAULT_DURATION);
        config.finished_duration = self.duration;
        config.follow_audio = !self.no_audio;
        config.request_timeout = self.request_timeout;
        config.delta_update_every = self.delta_update_every;
        config.pace = if self.realtime {
            RecordedPace::RealTime
        } else {
            RecordedPace::AsFastAsPossible
        };
        config.check_iframes = !self.no_iframes;
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, scale) = if let Some(n) = text.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = text.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = text.strip_suffix('m') {
        (n, 60.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 20s, 500ms, 2m or 20"))?;
    Duration::try_from_secs_f64(value * scale).map_err(|e| format!("{text:?}: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    if args.viewers > 1 || args.master_urls.len() > 1 {
        return run_swarm(args).await;
    }
    let mut config = PlayerConfig::new(args.master_urls[0].clone());
    args.apply(&mut config);
    config.variant = match args.variant.as_str() {
        "highest" => VariantChoice::HighestBandwidth,
        "lowest" => VariantChoice::LowestBandwidth,
        other => VariantChoice::UriContains(other.to_owned()),
    };

    let report = match follow(config).await {
        Ok(report) => report,
        Err(e) => {
            // Name the causes too: reqwest's own message rarely says what failed.
            let mut message = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("floodlight-player: {message}");
            return ExitCode::from(2);
        }
    };
    if !print_report(&report, args.json) {
        ExitCode::from(2)
    } else if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn run_swarm(args: Args) -> ExitCode {
    let duration = args.duration.unwrap_or(DEFAULT_DURATION);
    let mut config = SwarmConfig::new(args.master_urls.clone(), args.viewers as usize, duration);
    config.ramp = args.ramp;
    args.apply(&mut config.player);
    let report = swarm(config).await;
    if !print_report(&report, args.json) || report.viewers == report.failed_viewers {
        ExitCode::from(2)
    } else if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints `report` as JSON or text; false if it could not be encoded.
fn print_report<R: serde::Serialize + std::fmt::Display>(report: &R, json: bool) -> bool {
    let text = if json {
        match serde_json::to_string_pretty(report) {
            Ok(json) => json + "\n",
            Err(e) => {
                eprintln!("floodlight-player: cannot encode the report: {e}");
                return false;
            }
        }
    } else {
        report.to_string()
    };
    // A closed stdout (`| head`) is no reason to fail: the exit status carries the verdict.
    let _ = std::io::stdout().write_all(text.as_bytes());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn duration_bounds_a_finished_recording_only_when_given() {
        let mut config = PlayerConfig::new("http://h/vod/a/master.m3u8");
        let args = Args::try_parse_from(["floodlight-player", "http://h/vod/a/master.m3u8"])
            .expect("parses");
        args.apply(&mut config);
        assert_eq!(config.duration, DEFAULT_DURATION);
        assert_eq!(config.finished_duration, None);
        assert_eq!(config.pace, RecordedPace::AsFastAsPossible);
        assert!(config.check_iframes);
        let args = Args::try_parse_from([
            "floodlight-player",
            "http://h/vod/a/master.m3u8",
            "--duration",
            "5s",
            "--realtime",
            "--no-iframes",
        ])
        .expect("parses");
        args.apply(&mut config);
        assert_eq!(config.duration, Duration::from_secs(5));
        assert_eq!(config.finished_duration, Some(Duration::from_secs(5)));
        assert_eq!(config.pace, RecordedPace::RealTime);
        assert!(!config.check_iframes);
    }
}
