//! Following an LL-HLS rendition as a low-latency player does: start PART-HOLD-BACK from
//! the edge, then blocking reloads with the preload-hinted part requested alongside.

use std::time::{Duration, Instant};

use reqwest::{StatusCode, Url};
use tokio::task::JoinHandle;
use tokio::time::timeout_at;

use super::rendition::{DeadlineReached, Follower};
use super::{Fetched, blocking_reload_url, describe, get, playlist_text};
use crate::check::{
    Arrival, PartPosition, PartRef, PartSource, has_reached, listed_parts, next_position,
    parts_after, start_position,
};
use crate::playlist::{self, MediaPlaylist};

/// A request for the EXT-X-PRELOAD-HINT part, sent before the part is listed
/// (RFC 8216bis §4.4.5.3); the server holds it until the part exists. Aborted when dropped.
struct PendingHint {
    url: Url,
    handle: JoinHandle<Result<Fetched, reqwest::Error>>,
}

impl Drop for PendingHint {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

impl Follower<'_> {
    /// Follows from the first playlist (already fetched and checked) until the deadline or
    /// EXT-X-ENDLIST; whether the stream ended.
    pub(super) async fn follow_live(
        &mut self,
        mut playlist: MediaPlaylist,
    ) -> Result<bool, DeadlineReached> {
        let low_latency =
            playlist.server_control.can_block_reload && playlist.part_target.is_some();
        if !low_latency {
            // Already reported by the checker; there is no part to follow.
            return Ok(false);
        }
        let mut hint: Option<PendingHint> = None;
        let mut reloads = 0u32;
        loop {
            let (parts, source) = match self.checker.last_fetched() {
                None => match start_position(&playlist) {
                    Some(start) => {
                        let parts = listed_parts(&playlist)
                            .into_iter()
                            .filter(|p| p.position >= start)
                            .collect();
                        (parts, PartSource::StartupBacklog)
                    }
                    None => (Vec::new(), PartSource::Playlist),
                },
                Some(last) => {
                    let (parts, gap) = parts_after(&playlist, last);
                    if let Some(gap) = gap {
                        self.checker.error(gap);
                    }
                    (parts, PartSource::Playlist)
                }
            };
            for part in parts {
                hint = self.fetch_part(&part, source, hint).await?;
            }
            if playlist.ended {
                return Ok(true);
            }

            let next = next_position(&playlist, self.checker.last_fetched());
            hint = self.preload(&playlist, hint);
            reloads += 1;
            let every = self.context.config.delta_update_every;
            let skip = every > 0
                && reloads.is_multiple_of(every)
                && playlist.server_control.can_skip_until.is_some();
            if let Some(reloaded) = self.blocking_reload(next, skip).await? {
                playlist = reloaded;
            }
        }
    }

    /// Starts (or keeps) the request for the preload-hinted part.
    fn preload(
        &mut self,
        playlist: &MediaPlaylist,
        pending: Option<PendingHint>,
    ) -> Option<PendingHint> {
        let uri = playlist.preload_hint_part.as_deref()?;
        let url = self.resolve(uri)?;
        if let Some(pending) = pending
            && pending.url == url
        {
            return Some(pending);
        }
        let client = self.context.client.clone();
        let request_url = url.clone();
        Some(PendingHint {
            url,
            handle: tokio::spawn(async move { get(&client, &request_url).await }),
        })
    }

    /// One blocking reload for `next`; `None` when it brought no usable playlist.
    async fn blocking_reload(
        &mut self,
        next: PartPosition,
        skip: bool,
    ) -> Result<Option<MediaPlaylist>, DeadlineReached> {
        let url = blocking_reload_url(&self.playlist_url, next, skip);
        let sent = Instant::now();
        let response = timeout_at(self.deadline, get(self.context.client, &url))
            .await
            .map_err(|_| DeadlineReached)?;
        let retry_after = Duration::from_secs_f64(self.checker.part_target().unwrap_or(0.5));
        match response {
            Ok(f) if f.status == StatusCode::OK => {
                self.checker.record_blocking_reload(f.done - sent);
                self.checker.add_bytes(f.body.len());
                match playlist_text(&f.body).and_then(playlist::parse_media) {
                    Ok(playlist) => {
                        self.checker.observe_playlist(&playlist, Some(next), skip);
                        if !has_reached(&playlist, next) {
                            // Reported; do not hammer a server that does not block.
                            self.pause(retry_after).await?;
                        }
                        return Ok(Some(playlist));
                    }
                    Err(e) => self.checker.error(format!("{url}: {e}")),
                }
            }
            Ok(f) if f.status == StatusCode::SERVICE_UNAVAILABLE => {
                // RFC 8216bis §6.2.5.2: the server gave up waiting; ask again.
                self.checker.record_blocking_reload_timeout();
                return Ok(None);
            }
            Ok(f) => self.checker.error(format!("{url}: HTTP {}", f.status)),
            Err(e) => self.checker.error(format!("{url}: {}", describe(&e))),
        }
        self.pause(retry_after).await?;
        Ok(None)
    }

    async fn fetch_part(
        &mut self,
        part: &PartRef,
        listed: PartSource,
        hint: Option<PendingHint>,
    ) -> Result<Option<PendingHint>, DeadlineReached> {
        let Some(url) = self.resolve(&part.uri) else {
            return Ok(hint);
        };
        self.ensure_init(part.map_uri.as_deref(), part.position.0)
            .await?;
        let (msn, index) = part.position;
        let (fetched, hint, source) = match hint {
            Some(mut pending) if pending.url == url => {
                let answer = timeout_at(self.deadline, &mut pending.handle)
                    .await
                    .map_err(|_| DeadlineReached)?;
                match answer {
                    Ok(Ok(f)) if f.status == StatusCode::OK => {
                        (Ok(f), None, PartSource::PreloadHint)
                    }
                    Ok(Ok(f)) => {
                        self.checker.error(format!(
                            "preload hint request {url} answered HTTP {} instead of waiting for part {msn}.{index} \
                             (RFC 8216bis §4.4.5.3)",
                            f.status
                        ));
                        (self.get_before_deadline(&url).await?, None, listed)
                    }
                    Ok(Err(e)) => (Err(describe(&e)), None, listed),
                    Err(join) => (Err(join.to_string()), None, listed),
                }
            }
            other => (self.get_before_deadline(&url).await?, other, listed),
        };
        match fetched {
            Ok(f) if f.status == StatusCode::OK => {
                let arrival = Arrival {
                    since_start: f.done - self.start,
                    unix_ms: f.unix_ms,
                };
                self.checker
                    .check_part(part, url.as_str(), &f.body, arrival, source);
            }
            Ok(f) => {
                self.checker
                    .error(format!("part {msn}.{index} {url}: HTTP {}", f.status));
                self.checker.skip_part(part.position);
            }
            Err(e) => {
                self.checker.error(format!("part {msn}.{index} {url}: {e}"));
                self.checker.skip_part(part.position);
            }
        }
        Ok(hint)
    }
}
