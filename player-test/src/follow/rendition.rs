//! One followed rendition: the HTTP requests every kind of playlist needs (playlist,
//! init segment, the deadline), and the choice between following it as LL-HLS (`live`)
//! or as a recorded playlist (`recorded`).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::{StatusCode, Url};
use tokio::time::timeout_at;

use super::{Fetched, FollowContext, Outcome, describe, get, playlist_text};
use crate::check::{Arrival, RenditionChecker};
use crate::playlist::{self, MediaPlaylist, PlaylistType};

/// The deadline passed: stop following, not an error.
pub(super) struct DeadlineReached;

/// What a `Follower` fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// A media playlist: live (LL-HLS) or recorded.
    Media,
    /// An I-frame playlist (EXT-X-I-FRAMES-ONLY), checked beside a recorded variant.
    IFrames,
}

/// Far enough to fetch any finished recording to its end.
const NO_DEADLINE: Duration = Duration::from_secs(365 * 24 * 3600);

pub(super) struct Follower<'a> {
    pub(super) context: &'a FollowContext<'a>,
    pub(super) role: Role,
    pub(super) playlist_url: Url,
    pub(super) start: Instant,
    pub(super) deadline: tokio::time::Instant,
    pub(super) checker: RenditionChecker,
    /// The init segment the checker currently decodes with.
    pub(super) init_url: Option<Url>,
    /// The variant's I-frame playlist, checked if the variant is recorded.
    iframe_url: Option<Url>,
    iframes: Option<Outcome>,
}

impl<'a> Follower<'a> {
    pub(super) fn new(
        context: &'a FollowContext<'a>,
        name: &str,
        playlist_url: Url,
        iframe_url: Option<Url>,
    ) -> Self {
        Self {
            context,
            role: Role::Media,
            checker: RenditionChecker::new(name, playlist_url.as_str()),
            playlist_url,
            start: context.start,
            deadline: context.deadline.into(),
            init_url: None,
            iframe_url,
            iframes: None,
        }
    }

    /// Follows until the deadline or the end of the stream.
    pub(super) async fn run(mut self) -> Outcome {
        let ended = self.follow().await.unwrap_or(false);
        let now = Instant::now();
        let stopped = now.min(self.deadline.into_std()) - self.start;
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        let end = Arrival {
            since_start: stopped,
            unix_ms,
        };
        self.checker.finish(end, ended);
        Outcome {
            checker: self.checker,
            ended,
            stopped,
            iframes: self.iframes.map(Box::new),
        }
    }

    async fn follow(&mut self) -> Result<bool, DeadlineReached> {
        let url = self.playlist_url.clone();
        let (playlist, loaded_at) = loop {
            let loading = Instant::now();
            if let Some(playlist) = self.fetch_playlist(&url).await? {
                break (playlist, loading);
            }
            self.pause(Duration::from_millis(500)).await?;
        };
        if self.role == Role::IFrames {
            if !playlist.iframes_only {
                self.checker
                    .error("the I-frame playlist lacks EXT-X-I-FRAMES-ONLY (RFC 8216bis §4.4.3.6)");
                return Ok(false);
            }
            self.checker.observe_recorded_playlist(&playlist, true);
            return self.follow_recorded(playlist, loaded_at).await;
        }
        if playlist.is_recorded() {
            return self.follow_recorded_media(playlist, loaded_at).await;
        }
        if self.context.expect_recorded {
            self.checker.error(
                "the master URL asks for a start-over or time-shift range (?start=) but the media \
                 playlist is neither EXT-X-PLAYLIST-TYPE EVENT or VOD nor finished",
            );
        }
        self.checker.observe_playlist(&playlist, None, false);
        self.follow_live(playlist).await
    }

    /// A recorded media playlist: fetched to its end when finished (unless
    /// `finished_duration` bounds it), with the variant's I-frame playlist beside it.
    async fn follow_recorded_media(
        &mut self,
        playlist: MediaPlaylist,
        loaded_at: Instant,
    ) -> Result<bool, DeadlineReached> {
        let config = self.context.config;
        if playlist.ended || playlist.playlist_type == Some(PlaylistType::Vod) {
            let limit = config.finished_duration.unwrap_or(NO_DEADLINE);
            self.deadline = (self.start + limit).into();
        }
        self.checker
            .observe_recorded_playlist(&playlist, self.context.master_independent);
        let iframes = self.iframe_url.take().map(|url| Follower {
            role: Role::IFrames,
            deadline: self.deadline,
            ..Follower::new(self.context, "iframes", url, None)
        });
        let (ended, iframes) = tokio::join!(self.follow_recorded(playlist, loaded_at), async {
            match iframes {
                // Boxed: `run` is what called this.
                Some(follower) => Some(Box::pin(follower.run()).await),
                None => None,
            }
        });
        self.iframes = iframes;
        ended
    }

    pub(super) async fn fetch_playlist(
        &mut self,
        url: &Url,
    ) -> Result<Option<MediaPlaylist>, DeadlineReached> {
        let response = timeout_at(self.deadline, get(self.context.client, url))
            .await
            .map_err(|_| DeadlineReached)?;
        match response {
            Ok(f) if f.status == StatusCode::OK => {
                self.checker.add_bytes(f.body.len());
                match playlist_text(&f.body).and_then(playlist::parse_media) {
                    Ok(playlist) => return Ok(Some(playlist)),
                    Err(e) => self.checker.error(format!("{url}: {e}")),
                }
            }
            Ok(f) => self.checker.error(format!("{url}: HTTP {}", f.status)),
            Err(e) => self.checker.error(format!("{url}: {}", describe(&e))),
        }
        Ok(None)
    }

    /// Fetches one listed part, from the pending preload-hint request if it is that part,
    /// and checks it. Returns the hint request if it was for another part.
    pub(super) async fn get_before_deadline(
        &self,
        url: &Url,
    ) -> Result<Result<Fetched, String>, DeadlineReached> {
        timeout_at(self.deadline, get(self.context.client, url))
            .await
            .map(|r| r.map_err(|e| describe(&e)))
            .map_err(|_| DeadlineReached)
    }

    /// Fetches and checks the init segment of the part's segment when it is not the one in
    /// use (RFC 8216bis §4.4.4.5: EXT-X-MAP applies until the next EXT-X-MAP).
    pub(super) async fn ensure_init(
        &mut self,
        map_uri: Option<&str>,
        msn: u64,
    ) -> Result<(), DeadlineReached> {
        let Some(uri) = map_uri else {
            if self.init_url.is_none() {
                self.checker.error(format!(
                    "segment {msn} has no EXT-X-MAP: fMP4 media needs an init segment (RFC 8216bis §4.4.4.5)"
                ));
            }
            return Ok(());
        };
        let Some(url) = self.resolve(uri) else {
            return Ok(());
        };
        if self.init_url.as_ref() == Some(&url) {
            return Ok(());
        }
        match self.get_before_deadline(&url).await? {
            Ok(f) if f.status == StatusCode::OK => {
                self.checker.add_bytes(f.body.len());
                self.checker.set_init(url.as_str(), &f.body);
            }
            Ok(f) => self
                .checker
                .error(format!("init segment {url}: HTTP {}", f.status)),
            Err(e) => self.checker.error(format!("init segment {url}: {e}")),
        }
        self.init_url = Some(url);
        Ok(())
    }

    pub(super) fn resolve(&mut self, uri: &str) -> Option<Url> {
        match self.playlist_url.join(uri) {
            Ok(url) => Some(url),
            Err(e) => {
                self.checker
                    .error(format!("URI {uri:?} does not resolve: {e}"));
                None
            }
        }
    }

    pub(super) async fn pause(&self, wait: Duration) -> Result<(), DeadlineReached> {
        self.pause_until(Instant::now() + wait).await
    }

    /// Sleeps until `until`, or fails at the deadline if that comes first.
    pub(super) async fn pause_until(&self, until: Instant) -> Result<(), DeadlineReached> {
        let until = tokio::time::Instant::from_std(until);
        tokio::time::sleep_until(until.min(self.deadline)).await;
        if until >= self.deadline {
            return Err(DeadlineReached);
        }
        Ok(())
    }
}
