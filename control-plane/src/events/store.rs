//! Events as stored: creating, reading and listing them (with their filters and keyset
//! cursor), changing their settings, and moving them along their lifecycle with every
//! transition recorded; and what the reconciler notes about their publishers.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use time::OffsetDateTime;

use super::metrics::{EVENTS_CREATED, TRANSITIONS};
use super::model::{
    Event, EventAccess, EventId, EventState, GeoRules, IngestProtocol, IngestSettings, NewEvent,
    RtspSource, RtspTransport, Transition, TransitionError, Visibility,
};
use crate::audit::{Actor, AuditRecord, record_audit};
use crate::db::{
    InvalidCursor, Sql, Store, StoreError, from_unix_micros, parse_time_id_cursor, query_failed,
    stored_time, unix_micros,
};

/// Which events a list shows. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// Any of these states.
    pub states: Vec<EventState>,
    /// `starts_at` at or after this (events without `starts_at` are left out).
    pub starts_from: Option<OffsetDateTime>,
    /// `starts_at` before this (events without `starts_at` are left out).
    pub starts_to: Option<OffsetDateTime>,
    /// Every one of these tags.
    pub tags: Vec<String>,
    /// Belonging to this principal.
    pub owner: Option<String>,
}

/// Position after which the next page of the newest-first event list starts. Clients
/// see it as an opaque string (`Display`/`FromStr`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventCursor {
    created_at_us: i64,
    id: EventId,
}

impl EventCursor {
    fn after(event: &Event) -> EventCursor {
        EventCursor {
            created_at_us: unix_micros(event.created_at),
            id: event.id.clone(),
        }
    }
}

impl fmt::Display for EventCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.created_at_us, self.id)
    }
}

impl FromStr for EventCursor {
    type Err = InvalidCursor;

    fn from_str(text: &str) -> Result<EventCursor, InvalidCursor> {
        let (created_at_us, id) = parse_time_id_cursor(text).ok_or(InvalidCursor)?;
        Ok(EventCursor {
            created_at_us,
            id: EventId(id),
        })
    }
}

/// One page of events, newest first.
#[derive(Debug)]
#[non_exhaustive]
pub struct EventPage {
    pub events: Vec<Event>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<EventCursor>,
}

pub(super) const EVENT_COLUMNS: &str = "events.id, events.title, events.description, \
     events.state, events.created_at, events.updated_at, events.starts_at, events.ends_at, \
     events.visibility, events.category, events.ladder, events.part_target_ms, \
     events.dvr_window_secs, events.ingest_protocols, events.backup_ingest, \
     events.srt_passphrase, events.srt_latency_ms, events.rtsp_url, events.rtsp_transport, \
     events.geo_allow, events.geo_deny, events.owner, events.record";

#[derive(sqlx::FromRow)]
pub(super) struct EventRow {
    id: String,
    title: String,
    description: Option<String>,
    state: String,
    created_at: i64,
    updated_at: Option<i64>,
    starts_at: Option<i64>,
    ends_at: Option<i64>,
    visibility: String,
    category: Option<String>,
    ladder: Option<String>,
    part_target_ms: Option<i64>,
    dvr_window_secs: Option<i64>,
    ingest_protocols: Option<String>,
    backup_ingest: i64,
    srt_passphrase: Option<String>,
    srt_latency_ms: Option<i64>,
    rtsp_url: Option<String>,
    rtsp_transport: Option<String>,
    geo_allow: Option<String>,
    geo_deny: Option<String>,
    owner: Option<String>,
    record: i64,
}

fn optional_time(micros: Option<i64>) -> Result<Option<OffsetDateTime>, StoreError> {
    micros.map(from_unix_micros).transpose()
}

fn optional_u32(what: &'static str, value: Option<i64>) -> Result<Option<u32>, StoreError> {
    value
        .map(|value| {
            u32::try_from(value).map_err(|_| StoreError::CorruptRow {
                what,
                value: value.to_string(),
            })
        })
        .transpose()
}

fn split_list(text: Option<&str>) -> Vec<String> {
    text.unwrap_or_default()
        .split(',')
        .filter(|item| !item.is_empty())
        .map(str::to_string)
        .collect()
}

fn join_list(items: &[String]) -> Option<String> {
    (!items.is_empty()).then(|| items.join(","))
}

impl EventRow {
    /// The event, with `tags` from the tag table.
    pub(super) fn into_event(self, tags: Vec<String>) -> Result<Event, StoreError> {
        let protocols = self
            .ingest_protocols
            .as_deref()
            .map(|text| {
                split_list(Some(text))
                    .iter()
                    .map(|name| {
                        name.parse::<IngestProtocol>()
                            .map_err(|()| StoreError::CorruptRow {
                                what: "ingest protocol",
                                value: name.clone(),
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?;
        let rtsp_source = match (self.rtsp_url, self.rtsp_transport.as_deref()) {
            (Some(url), transport) => Some(RtspSource {
                url,
                transport: match transport {
                    Some("udp") => RtspTransport::Udp,
                    _ => RtspTransport::Tcp,
                },
            }),
            (None, _) => None,
        };
        let created_at = from_unix_micros(self.created_at)?;
        Ok(Event {
            id: EventId(self.id),
            state: EventState::from_column(&self.state)?,
            created_at,
            updated_at: optional_time(self.updated_at)?.unwrap_or(created_at),
            settings: NewEvent {
                title: self.title,
                description: self.description,
                starts_at: optional_time(self.starts_at)?,
                ends_at: optional_time(self.ends_at)?,
                visibility: Visibility::from_column(&self.visibility)?,
                category: self.category,
                tags,
                ladder: self.ladder,
                part_target_ms: optional_u32("part_target_ms", self.part_target_ms)?,
                dvr_window_secs: optional_u32("dvr_window_secs", self.dvr_window_secs)?,
                ingest: IngestSettings {
                    protocols,
                    backup: self.backup_ingest != 0,
                    srt_passphrase: self.srt_passphrase,
                    srt_latency_ms: optional_u32("srt_latency_ms", self.srt_latency_ms)?,
                    rtsp_source,
                },
                geo: GeoRules {
                    allow: split_list(self.geo_allow.as_deref()),
                    deny: split_list(self.geo_deny.as_deref()),
                },
                owner: self.owner,
                record: self.record != 0,
            },
        })
    }
}

/// A settings column's value, so that INSERT and UPDATE bind the same list.
enum Column {
    Text(Option<String>),
    Int(Option<i64>),
}

impl Column {
    fn bind_to(self, sql: &mut Sql) {
        match self {
            Column::Text(value) => sql.bind(value),
            Column::Int(value) => sql.bind(value),
        };
    }
}

/// The settings columns and their values.
fn settings_columns(settings: &NewEvent) -> [(&'static str, Column); 19] {
    let ingest = &settings.ingest;
    let protocols = ingest.protocols.as_ref().map(|protocols| {
        protocols
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(",")
    });
    let rtsp = ingest.rtsp_source.as_ref();
    let text = |value: Option<&str>| Column::Text(value.map(str::to_string));
    [
        ("title", text(Some(&settings.title))),
        ("description", text(settings.description.as_deref())),
        (
            "starts_at",
            Column::Int(settings.starts_at.map(unix_micros)),
        ),
        ("ends_at", Column::Int(settings.ends_at.map(unix_micros))),
        ("visibility", text(Some(settings.visibility.as_str()))),
        ("category", text(settings.category.as_deref())),
        ("ladder", text(settings.ladder.as_deref())),
        (
            "part_target_ms",
            Column::Int(settings.part_target_ms.map(i64::from)),
        ),
        (
            "dvr_window_secs",
            Column::Int(settings.dvr_window_secs.map(i64::from)),
        ),
        ("ingest_protocols", Column::Text(protocols)),
        ("backup_ingest", Column::Int(Some(i64::from(ingest.backup)))),
        ("srt_passphrase", text(ingest.srt_passphrase.as_deref())),
        (
            "srt_latency_ms",
            Column::Int(ingest.srt_latency_ms.map(i64::from)),
        ),
        ("rtsp_url", text(rtsp.map(|s| s.url.as_str()))),
        ("rtsp_transport", text(rtsp.map(|s| s.transport.as_str()))),
        ("geo_allow", Column::Text(join_list(&settings.geo.allow))),
        ("geo_deny", Column::Text(join_list(&settings.geo.deny))),
        ("owner", text(settings.owner.as_deref())),
        ("record", Column::Int(Some(i64::from(settings.record)))),
    ]
}

async fn insert_tags(
    conn: &mut sqlx::AnyConnection,
    id: &EventId,
    tags: &[String],
) -> Result<(), StoreError> {
    for tag in tags {
        sqlx::query("INSERT INTO event_tags (event_id, tag) VALUES ($1, $2)")
            .bind(id.as_str())
            .bind(tag.as_str())
            .execute(&mut *conn)
            .await
            .map_err(query_failed("insert event tag"))?;
    }
    Ok(())
}

/// Records a transition with the next sequence number. The caller's transaction has
/// already changed (and so locked) the event row, which serializes concurrent writers.
pub(super) async fn record_transition(
    conn: &mut sqlx::AnyConnection,
    id: &EventId,
    from: Option<EventState>,
    to: EventState,
    at: i64,
    cause: &str,
    actor: &Actor,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO event_transitions (event_id, seq, from_state, to_state, at, cause, actor) \
         SELECT $1, COALESCE(MAX(seq), -1) + 1, $2, $3, $4, $5, $6 \
         FROM event_transitions WHERE event_id = $1",
    )
    .bind(id.as_str())
    .bind(from.map(EventState::as_str))
    .bind(to.as_str())
    .bind(at)
    .bind(cause)
    .bind(actor.id.as_str())
    .execute(&mut *conn)
    .await
    .map_err(query_failed("insert transition"))?;
    metrics::counter!(TRANSITIONS, "to" => to.as_str(), "cause" => cause.to_string()).increment(1);
    Ok(())
}

/// What the store knows of a live event's publisher, for the reconciler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PublisherTimes {
    /// Since when the publisher has been gone (reported, or noticed by the reconciler).
    pub(crate) gone_since: Option<OffsetDateTime>,
    /// When the reconciler last saw it on air.
    pub(crate) last_seen: Option<OffsetDateTime>,
}

impl Store {
    /// Inserts the event row, its tags, its first transition and the audit entry; the
    /// caller owns the transaction (creation also issues the first stream key).
    pub(super) async fn insert_event(
        conn: &mut sqlx::AnyConnection,
        settings: &NewEvent,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<Event, StoreError> {
        let now = stored_time(now);
        let at = unix_micros(now);
        let event = Event {
            id: EventId::generate(),
            state: EventState::Scheduled,
            created_at: now,
            updated_at: now,
            settings: settings.clone(),
        };
        let columns = settings_columns(settings);
        let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
        let mut sql = Sql::new("INSERT INTO events (id, state, created_at, updated_at, ");
        sql.push(&names.join(", "))
            .push(") VALUES (")
            .bind(event.id.as_str())
            .push(", ")
            .bind(event.state.as_str())
            .push(", ")
            .bind(at)
            .push(", ")
            .bind(at);
        for (_, value) in columns {
            sql.push(", ");
            value.bind_to(&mut sql);
        }
        sql.push(")");
        sql.query()
            .execute(&mut *conn)
            .await
            .map_err(query_failed("insert event"))?;
        insert_tags(conn, &event.id, &settings.tags).await?;
        record_transition(conn, &event.id, None, event.state, at, "created", actor).await?;
        record_audit(
            conn,
            &AuditRecord {
                actor,
                action: "event.create",
                target_kind: "event",
                target_id: event.id.as_str(),
                detail: Some(serde_json::json!({ "title": settings.title })),
            },
            at,
        )
        .await?;
        metrics::counter!(EVENTS_CREATED).increment(1);
        Ok(event)
    }

    /// The event with this id, if any.
    pub async fn event(&self, id: &str) -> Result<Option<Event>, StoreError> {
        let row = sqlx::query_as::<_, EventRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(query_failed("select event"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut tags = self.tags_of(std::slice::from_ref(&row.id)).await?;
        let tags = tags.remove(&row.id).unwrap_or_default();
        row.into_event(tags).map(Some)
    }

    /// What deciding playback access needs: state, visibility, category, geo rules and
    /// window. `None` for an unknown event.
    pub async fn event_access(&self, id: &EventId) -> Result<Option<EventAccess>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            state: String,
            visibility: String,
            category: Option<String>,
            geo_allow: Option<String>,
            geo_deny: Option<String>,
            starts_at: Option<i64>,
            ends_at: Option<i64>,
        }
        let row = sqlx::query_as::<_, Row>(
            "SELECT state, visibility, category, geo_allow, geo_deny, starts_at, ends_at \
             FROM events WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(self.pool())
        .await
        .map_err(query_failed("select event access"))?;
        row.map(|row| {
            Ok(EventAccess {
                id: id.clone(),
                state: EventState::from_column(&row.state)?,
                visibility: Visibility::from_column(&row.visibility)?,
                category: row.category,
                geo: GeoRules {
                    allow: split_list(row.geo_allow.as_deref()),
                    deny: split_list(row.geo_deny.as_deref()),
                },
                starts_at: optional_time(row.starts_at)?,
                ends_at: optional_time(row.ends_at)?,
            })
        })
        .transpose()
    }

    /// Tags per event id.
    async fn tags_of(&self, ids: &[String]) -> Result<HashMap<String, Vec<String>>, StoreError> {
        let mut tags: HashMap<String, Vec<String>> = HashMap::new();
        if ids.is_empty() {
            return Ok(tags);
        }
        let mut sql = Sql::new("SELECT event_id, tag FROM event_tags WHERE event_id IN (");
        sql.bind_list(ids.iter().cloned())
            .push(") ORDER BY event_id, tag");
        let rows: Vec<(String, String)> = sql
            .query_as()
            .fetch_all(self.pool())
            .await
            .map_err(query_failed("select event tags"))?;
        for (id, tag) in rows {
            tags.entry(id).or_default().push(tag);
        }
        Ok(tags)
    }

    /// Events with their tags, in the order of `rows`.
    pub(super) async fn with_tags(&self, rows: Vec<EventRow>) -> Result<Vec<Event>, StoreError> {
        let ids: Vec<String> = rows.iter().map(|row| row.id.clone()).collect();
        let mut tags = self.tags_of(&ids).await?;
        rows.into_iter()
            .map(|row| {
                let tags = tags.remove(&row.id).unwrap_or_default();
                row.into_event(tags)
            })
            .collect()
    }

    /// Up to `limit` events matching `filter`, newest first, starting after `after`
    /// (keyset pagination on `(created_at, id)`, so pages stay consistent while events
    /// are added).
    pub async fn list_events(
        &self,
        filter: &EventFilter,
        limit: u32,
        after: Option<&EventCursor>,
    ) -> Result<EventPage, StoreError> {
        let mut sql = Sql::new(&format!("SELECT {EVENT_COLUMNS} FROM events WHERE 1 = 1"));
        if !filter.states.is_empty() {
            sql.push(" AND state IN (")
                .bind_list(filter.states.iter().map(|s| s.as_str()))
                .push(")");
        }
        if let Some(from) = filter.starts_from {
            sql.push(" AND starts_at >= ").bind(unix_micros(from));
        }
        if let Some(to) = filter.starts_to {
            sql.push(" AND starts_at < ").bind(unix_micros(to));
        }
        if !filter.tags.is_empty() {
            sql.push(" AND id IN (SELECT event_id FROM event_tags WHERE tag IN (")
                .bind_list(filter.tags.iter().cloned())
                .push(") GROUP BY event_id HAVING COUNT(*) = ")
                .bind(filter.tags.len() as i64)
                .push(")");
        }
        if let Some(owner) = &filter.owner {
            sql.push(" AND owner = ").bind(owner.clone());
        }
        sql.newest_first_page(after.map(|c| (c.created_at_us, c.id.0.clone())), limit);
        let rows: Vec<EventRow> = sql
            .query_as()
            .fetch_all(self.pool())
            .await
            .map_err(query_failed("list events"))?;
        let more = rows.len() > limit as usize;
        let events = self
            .with_tags(rows.into_iter().take(limit as usize).collect())
            .await?;
        let next = if more {
            events.last().map(EventCursor::after)
        } else {
            None
        };
        Ok(EventPage { events, next })
    }

    /// Replaces the settings of an open (scheduled or live) event, unless someone changed
    /// it since `seen_updated_at`. `Ok(None)`: it changed meanwhile or is no longer open;
    /// read it again.
    pub async fn update_event(
        &self,
        id: &EventId,
        seen_updated_at: OffsetDateTime,
        settings: &NewEvent,
        actor: &Actor,
        now: OffsetDateTime,
    ) -> Result<Option<Event>, StoreError> {
        let at = unix_micros(stored_time(now));
        let mut tx = self.write_tx().await?;
        let mut sql = Sql::new("UPDATE events SET updated_at = ");
        sql.bind(at);
        for (name, value) in settings_columns(settings) {
            sql.push(", ").push(name).push(" = ");
            value.bind_to(&mut sql);
        }
        sql.push(" WHERE id = ")
            .bind(id.as_str())
            .push(" AND updated_at = ")
            .bind(unix_micros(seen_updated_at))
            .push(" AND state IN ('scheduled', 'live')");
        let done = sql
            .query()
            .execute(&mut *tx)
            .await
            .map_err(query_failed("update event"))?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        sqlx::query("DELETE FROM event_tags WHERE event_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(query_failed("delete event tags"))?;
        insert_tags(&mut tx, id, &settings.tags).await?;
        record_audit(
            &mut tx,
            &AuditRecord {
                actor,
                action: "event.update",
                target_kind: "event",
                target_id: id.as_str(),
                detail: None,
            },
            at,
        )
        .await?;
        tx.commit().await.map_err(query_failed("commit"))?;
        self.event(id.as_str()).await
    }

    /// Moves the event to `to` if its current state allows it (see
    /// [`EventState::next_states`]), recording the transition and, when `audit_action`
    /// is given, an audit entry. A live event that ends with `record` set owes its
    /// recording from then on (`recording_owed`, in the same transaction; the asset jobs
    /// pay it).
    pub async fn transition(
        &self,
        id: &EventId,
        to: EventState,
        cause: &str,
        actor: &Actor,
        audit_action: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Event, TransitionError> {
        // Read, then change only if the state is still the one read: a concurrent
        // transition makes the UPDATE match nothing, and the loop looks again.
        loop {
            let from: Option<String> = sqlx::query_scalar("SELECT state FROM events WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(self.pool())
                .await
                .map_err(query_failed("select event state"))?;
            let from = EventState::from_column(&from.ok_or(TransitionError::NotFound)?)?;
            if !from.next_states().contains(&to) {
                return Err(TransitionError::NotAllowed { from, to });
            }
            let at = unix_micros(stored_time(now));
            let ends_on_air = from == EventState::Live && to == EventState::Ended;
            let mut tx = self.write_tx().await?;
            let done = sqlx::query(
                "UPDATE events SET state = $1, updated_at = $2, publisher_gone_at = NULL, \
                 recording_owed = CASE WHEN $5 = 1 THEN record ELSE recording_owed END \
                 WHERE id = $3 AND state = $4",
            )
            .bind(to.as_str())
            .bind(at)
            .bind(id.as_str())
            .bind(from.as_str())
            .bind(i64::from(ends_on_air))
            .execute(&mut *tx)
            .await
            .map_err(query_failed("update event state"))?;
            if done.rows_affected() == 0 {
                continue;
            }
            record_transition(&mut tx, id, Some(from), to, at, cause, actor).await?;
            if let Some(action) = audit_action {
                record_audit(
                    &mut tx,
                    &AuditRecord {
                        actor,
                        action,
                        target_kind: "event",
                        target_id: id.as_str(),
                        detail: Some(serde_json::json!({
                            "from": from.as_str(),
                            "to": to.as_str(),
                            "cause": cause,
                        })),
                    },
                    at,
                )
                .await?;
            }
            tx.commit().await.map_err(query_failed("commit"))?;
            tracing::info!(event_id = %id, %from, %to, cause, "event state changed");
            return self
                .event(id.as_str())
                .await?
                .ok_or(TransitionError::NotFound);
        }
    }

    /// The event's transitions, oldest first.
    pub async fn transitions(&self, id: &EventId) -> Result<Vec<Transition>, StoreError> {
        let rows: Vec<(i64, Option<String>, String, i64, String, String)> = sqlx::query_as(
            "SELECT seq, from_state, to_state, at, cause, actor FROM event_transitions \
             WHERE event_id = $1 ORDER BY seq",
        )
        .bind(id.as_str())
        .fetch_all(self.pool())
        .await
        .map_err(query_failed("select transitions"))?;
        rows.into_iter()
            .map(|(seq, from, to, at, cause, actor)| {
                Ok(Transition {
                    seq,
                    from: from.as_deref().map(EventState::from_column).transpose()?,
                    to: EventState::from_column(&to)?,
                    at: from_unix_micros(at)?,
                    cause,
                    actor,
                })
            })
            .collect()
    }

    /// Notes when a live event's publisher went away (`Some`) or came back (`None`), for
    /// the reconciler's grace period. Keeps an earlier "gone since".
    pub(crate) async fn set_publisher_gone(
        &self,
        id: &EventId,
        since: Option<OffsetDateTime>,
    ) -> Result<(), StoreError> {
        let query = match since {
            Some(since) => sqlx::query(
                "UPDATE events SET publisher_gone_at = $1 \
                 WHERE id = $2 AND publisher_gone_at IS NULL",
            )
            .bind(unix_micros(since))
            .bind(id.as_str()),
            None => sqlx::query("UPDATE events SET publisher_gone_at = NULL WHERE id = $1")
                .bind(id.as_str()),
        };
        query
            .execute(self.pool())
            .await
            .map_err(query_failed("update publisher gone"))?;
        Ok(())
    }

    /// What the reconciler looks at: live events, and scheduled or live events whose
    /// `ends_at` is before `ends_before`; with what is known of their publisher.
    pub(crate) async fn reconcile_candidates(
        &self,
        ends_before: OffsetDateTime,
    ) -> Result<Vec<(Event, PublisherTimes)>, StoreError> {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            event: EventRow,
            publisher_gone_at: Option<i64>,
            publisher_seen_at: Option<i64>,
        }
        let rows: Vec<Row> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS}, events.publisher_gone_at, events.publisher_seen_at \
             FROM events WHERE state = 'live' OR (state = 'scheduled' AND ends_at < $1)"
        )))
        .bind(unix_micros(ends_before))
        .fetch_all(self.pool())
        .await
        .map_err(query_failed("select events to reconcile"))?;
        let times: Vec<(Option<i64>, Option<i64>)> = rows
            .iter()
            .map(|row| (row.publisher_gone_at, row.publisher_seen_at))
            .collect();
        let events = self
            .with_tags(rows.into_iter().map(|row| row.event).collect())
            .await?;
        events
            .into_iter()
            .zip(times)
            .map(|(event, (gone, seen))| {
                let times = PublisherTimes {
                    gone_since: optional_time(gone)?,
                    last_seen: optional_time(seen)?,
                };
                Ok((event, times))
            })
            .collect()
    }

    /// Notes that `event_id`'s publisher is on air at `at` (the reconciler's lease).
    pub(crate) async fn note_publisher_seen(
        &self,
        event_id: &EventId,
        at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE events SET publisher_seen_at = $1 WHERE id = $2")
            .bind(unix_micros(stored_time(at)))
            .bind(event_id.as_str())
            .execute(self.pool())
            .await
            .map_err(query_failed("note the publisher seen"))?;
        Ok(())
    }

    /// Scheduled and live events with an RTSP source (window not yet checked).
    pub(crate) async fn events_with_rtsp_source(&self) -> Result<Vec<Event>, StoreError> {
        let rows: Vec<EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM events \
             WHERE rtsp_url IS NOT NULL AND state IN ('scheduled', 'live')"
        )))
        .fetch_all(self.pool())
        .await
        .map_err(query_failed("select RTSP sources"))?;
        self.with_tags(rows).await
    }
}
