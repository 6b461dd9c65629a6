//! One followed rendition: the HTTP requests every kind of playlist needs (playlist,
//! init segment, the deadline), and the choice between following it as LL-HLS (`live`)
//! or as a recorded playlist (`recorded`).

use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode, Url};
use tokio::time::timeout_at;

use super::{Fetched, PlayerConfig, describe, get, playlist_text};
use crate::check::RenditionChecker;
use crate::playlist::{self, MediaPlaylist};

/// The deadline passed: stop following, not an error.
pub(super) struct DeadlineReached;

pub(super) struct Follower<'a> {
    pub(super) client: &'a Client,
    pub(super) playlist_url: Url,
    pub(super) start: Instant,
    pub(super) deadline: tokio::time::Instant,
    pub(super) delta_update_every: u32,
    pub(super) checker: RenditionChecker,
    /// The init segment the checker currently decodes with.
    pub(super) init_url: Option<Url>,
}

impl<'a> Follower<'a> {
    pub(super) fn new(
        client: &'a Client,
        name: &str,
        playlist_url: Url,
        start: Instant,
        deadline: Instant,
        config: &PlayerConfig,
    ) -> Self {
        Self {
            client,
            checker: RenditionChecker::new(name, playlist_url.as_str()),
            playlist_url,
            start,
            deadline: deadline.into(),
            delta_update_every: config.delta_update_every,
            init_url: None,
        }
    }
    /// Follows until the deadline or the end of the stream; returns the checker and
    /// whether the stream ended.
    pub(super) async fn run(mut self) -> (RenditionChecker, bool) {
        let ended = self.follow().await.unwrap_or(false);
        let end = Instant::now().min(self.deadline.into_std()) - self.start;
        self.checker.finish(end, ended);
        (self.checker, ended)
    }

    async fn follow(&mut self) -> Result<bool, DeadlineReached> {
        let url = self.playlist_url.clone();
        let playlist = loop {
            if let Some(playlist) = self.fetch_playlist(&url).await? {
                break playlist;
            }
            self.pause(Duration::from_millis(500)).await?;
        };
        self.checker.observe_playlist(&playlist, None, false);
        self.follow_live(playlist).await
    }

    pub(super) async fn fetch_playlist(
        &mut self,
        url: &Url,
    ) -> Result<Option<MediaPlaylist>, DeadlineReached> {
        let response = timeout_at(self.deadline, get(self.client, url))
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
        timeout_at(self.deadline, get(self.client, url))
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
        let until = tokio::time::Instant::now() + wait;
        tokio::time::sleep_until(until.min(self.deadline)).await;
        if until >= self.deadline {
            return Err(DeadlineReached);
        }
        Ok(())
    }
}
