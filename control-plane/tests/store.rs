//! The store on SQLite and on a real PostgreSQL (a fresh database per test): the same
//! migrations and the same queries must behave the same on both.

mod common;

use common::TestDb;
use floodlight_control::{
    Actor, Bootstrap, EventId, EventState, NewApiKey, NewEvent, RevokeApiKeyError, Role, Visibility,
};
use time::OffsetDateTime;
use time::macros::datetime;

fn ops() -> Actor {
    Actor {
        id: "ops-key".to_string(),
        role: "ops".to_string(),
    }
}

store_test!(migrations_apply_once_and_reopen, |db: TestDb| async move {
    let store = db.open().await;
    store.ping().await.unwrap();
    drop(store);
    // A second open finds every migration applied and unchanged.
    let store = db.open().await;
    store.ping().await.unwrap();
});

store_test!(
    event_access_reads_what_was_created,
    |db: TestDb| async move {
        let store = db.open().await;
        let mut settings = NewEvent::titled("Cup final");
        settings.visibility = Visibility::Entitled;
        settings.category = Some("football".to_string());
        settings.starts_at = Some(datetime!(2026-12-01 18:00 UTC));
        settings.ends_at = Some(datetime!(2026-12-01 21:00 UTC));
        settings.geo.allow = vec!["US".to_string(), "CA".to_string()];
        settings.tags = vec!["cup".to_string(), "final".to_string()];
        let created = store
            .create_event(&settings, &ops(), OffsetDateTime::now_utc())
            .await
            .unwrap();
        let id = created.event.id.clone();
        let access = store.event_access(&id).await.unwrap().unwrap();
        assert_eq!(access.state, EventState::Scheduled);
        assert_eq!(access.visibility, Visibility::Entitled);
        assert_eq!(access.category.as_deref(), Some("football"));
        assert_eq!(access.geo.allow, ["US", "CA"]);
        assert!(access.geo.deny.is_empty());
        assert_eq!(access.starts_at, settings.starts_at);
        assert_eq!(access.ends_at, settings.ends_at);
        assert!(access.geo.permits(Some("us")));
        assert!(!access.geo.permits(Some("DE")));
        assert!(!access.geo.permits(None));

        let event = store.event(id.as_str()).await.unwrap().unwrap();
        assert_eq!(event, created.event);
        assert_eq!(event.settings.tags, ["cup", "final"]);

        let unknown = EventId::parse("0123456789abcdef").unwrap();
        assert!(store.event_access(&unknown).await.unwrap().is_none());
    }
);

store_test!(api_keys_authenticate_and_revoke, |db: TestDb| async move {
    let store = db.open().await;
    // Each step a second apart, so the newest-first audit order is the step order.
    let start = OffsetDateTime::now_utc();
    let mut step = 0;
    let mut tick = move || {
        step += 1;
        start + time::Duration::seconds(step)
    };
    let now = tick();
    // A fresh database without a configured admin key gets a generated one, once.
    let Bootstrap::Generated(generated) = store.bootstrap_admin_key(None, now).await.unwrap()
    else {
        panic!("no key generated for an empty key table");
    };
    assert!(generated.expose_secret().starts_with("fl_api_"));
    assert!(matches!(
        store.bootstrap_admin_key(None, now).await.unwrap(),
        Bootstrap::Unchanged
    ));
    let admin = store
        .authenticate(generated.expose_secret())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(admin.role, Role::Admin);

    // Issue 10, finding 3: a configured key only bootstraps an empty key table; here it
    // is ignored, and says so.
    let configured = "a configured admin key of at least 32 characters";
    assert!(matches!(
        store
            .bootstrap_admin_key(Some(configured), tick())
            .await
            .unwrap(),
        Bootstrap::ConfiguredIgnored
    ));
    assert!(store.authenticate(configured).await.unwrap().is_none());
    let admin_actor = Actor::from(&admin);

    let (info, key) = store
        .create_api_key(
            &NewApiKey {
                role: Role::Broadcaster,
                principal: Some("acme".to_string()),
                label: Some("OBS".to_string()),
            },
            &admin_actor,
            tick(),
        )
        .await
        .unwrap();
    let caller = store
        .authenticate(key.expose_secret())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(caller.role, Role::Broadcaster);
    assert_eq!(caller.principal, "acme");
    assert_eq!(caller.key_id, info.id);
    assert!(store.authenticate("fl_api_nope").await.unwrap().is_none());

    let (keys, next) = store.list_api_keys(10, None).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert!(next.is_none());
    let (first, next) = store.list_api_keys(1, None).await.unwrap();
    let (second, last) = store.list_api_keys(1, next.as_ref()).await.unwrap();
    assert!(last.is_none());
    assert_ne!(first[0].id, second[0].id);

    let revoked = store
        .revoke_api_key(info.id.as_str(), &admin_actor, tick())
        .await
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(
        store
            .authenticate(key.expose_secret())
            .await
            .unwrap()
            .is_none()
    );

    // The only admin key stays.
    assert!(matches!(
        store
            .revoke_api_key(admin.key_id.as_str(), &admin_actor, now)
            .await,
        Err(RevokeApiKeyError::LastAdmin)
    ));
    assert!(
        store
            .authenticate(generated.expose_secret())
            .await
            .unwrap()
            .is_some()
    );
    assert!(matches!(
        store
            .revoke_api_key("nosuchkey0000000", &admin_actor, now)
            .await,
        Err(RevokeApiKeyError::NotFound)
    ));

    // Every change is in the audit log, newest first.
    let audit = store.audit_log(None, 50, None).await.unwrap();
    let actions: Vec<&str> = audit.entries.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        // One bootstrap: the ignored configured key changed nothing.
        ["api_key.revoke", "api_key.create", "api_key.bootstrap"]
    );
    assert_eq!(audit.entries[0].actor, admin.key_id.as_str());
    assert_eq!(audit.entries[0].actor_role, "admin");
});

store_test!(
    events_filter_page_update_and_transition,
    |db: TestDb| async move {
        use floodlight_control::{EventFilter, StreamKeyRole, TransitionError};
        let store = db.open().await;
        let start = OffsetDateTime::now_utc();
        let at = |secs: i64| start + time::Duration::seconds(secs);
        let mut ids = Vec::new();
        for (i, (tags, starts_in_hours)) in [
            (vec!["cup"], Some(1)),
            (vec!["cup", "final"], Some(30)),
            (vec!["final"], None),
        ]
        .into_iter()
        .enumerate()
        {
            let mut settings = NewEvent::titled(format!("Match {i}"));
            settings.tags = tags.into_iter().map(str::to_string).collect();
            settings.starts_at = starts_in_hours.map(|h| start + time::Duration::hours(h));
            settings.owner = Some(if i == 0 { "acme" } else { "rival" }.to_string());
            let created = store
                .create_event(&settings, &ops(), at(i as i64))
                .await
                .unwrap();
            ids.push(created.event.id);
        }
        let list = |filter: EventFilter| {
            let store = store.clone();
            async move {
                let page = store.list_events(&filter, 10, None).await.unwrap();
                page.events.into_iter().map(|e| e.id).collect::<Vec<_>>()
            }
        };
        // Newest first.
        assert_eq!(
            list(EventFilter::default()).await,
            [ids[2].clone(), ids[1].clone(), ids[0].clone()]
        );
        let tags = |t: &[&str]| EventFilter {
            tags: t.iter().map(|t| t.to_string()).collect(),
            ..EventFilter::default()
        };
        assert_eq!(list(tags(&["cup"])).await, [ids[1].clone(), ids[0].clone()]);
        assert_eq!(list(tags(&["cup", "final"])).await, [ids[1].clone()]);
        let window = EventFilter {
            starts_from: Some(start),
            starts_to: Some(start + time::Duration::hours(2)),
            ..EventFilter::default()
        };
        assert_eq!(list(window).await, [ids[0].clone()]);
        let owned = EventFilter {
            owner: Some("rival".to_string()),
            ..EventFilter::default()
        };
        assert_eq!(list(owned).await, [ids[2].clone(), ids[1].clone()]);
        // Keyset pages.
        let first = store
            .list_events(&EventFilter::default(), 2, None)
            .await
            .unwrap();
        let rest = store
            .list_events(&EventFilter::default(), 2, first.next.as_ref())
            .await
            .unwrap();
        assert_eq!(rest.events.len(), 1);
        assert!(rest.next.is_none());

        // Optimistic update: a second writer with the same view loses.
        let event = store.event(ids[0].as_str()).await.unwrap().unwrap();
        let mut changed = event.settings.clone();
        changed.title = "Renamed".to_string();
        let updated = store
            .update_event(&event.id, event.updated_at, &changed, &ops(), at(10))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(updated.settings.title, "Renamed");
        assert!(
            store
                .update_event(&event.id, event.updated_at, &changed, &ops(), at(11))
                .await
                .unwrap()
                .is_none()
        );

        // Transitions follow the state machine and are numbered.
        store
            .transition(
                &event.id,
                EventState::Live,
                "publish",
                &Actor::system(),
                None,
                at(12),
            )
            .await
            .unwrap();
        assert!(matches!(
            store
                .transition(&event.id, EventState::Archived, "api", &ops(), None, at(13))
                .await,
            Err(TransitionError::NotAllowed {
                from: EventState::Live,
                to: EventState::Archived
            })
        ));
        store
            .transition(
                &event.id,
                EventState::Ended,
                "publisher_gone",
                &Actor::system(),
                None,
                at(14),
            )
            .await
            .unwrap();
        let transitions = store.transitions(&event.id).await.unwrap();
        let seqs: Vec<(i64, EventState)> = transitions.iter().map(|t| (t.seq, t.to)).collect();
        assert_eq!(
            seqs,
            [
                (0, EventState::Scheduled),
                (1, EventState::Live),
                (2, EventState::Ended)
            ]
        );
        // Settings of an ended event no longer change.
        let ended = store.event(event.id.as_str()).await.unwrap().unwrap();
        assert!(
            store
                .update_event(&ended.id, ended.updated_at, &changed, &ops(), at(15))
                .await
                .unwrap()
                .is_none()
        );

        // Keys: a backup key, rotation and revocation.
        let (backup, key) = store
            .create_stream_key(&ids[1], StreamKeyRole::Backup, &ops(), at(16))
            .await
            .unwrap();
        let keyed = store
            .stream_key_event(key.expose_secret())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (keyed.role, keyed.event.id.clone()),
            (StreamKeyRole::Backup, ids[1].clone())
        );
        let (_, rotated) = store
            .rotate_stream_key(&ids[1], &backup.id, &ops(), at(17))
            .await
            .unwrap();
        assert!(
            store
                .stream_key_event(key.expose_secret())
                .await
                .unwrap()
                .is_none()
        );
        assert!(
            store
                .stream_key_event(rotated.expose_secret())
                .await
                .unwrap()
                .is_some()
        );
        let keys = store.stream_keys(&ids[1]).await.unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(keys.iter().filter(|k| k.revoked_at.is_none()).count(), 2);
    }
);

store_test!(
    a_revoked_configured_admin_key_stays_revoked,
    |db: TestDb| async move {
        // Issue 10, finding 3: revoke the bootstrap key, restart with the same
        // FLOODLIGHT_ADMIN_KEY, and it used to work again (audited as a new bootstrap).
        let store = db.open().await;
        let now = OffsetDateTime::now_utc();
        let configured = "a configured admin key of at least 32 characters";
        assert!(matches!(
            store
                .bootstrap_admin_key(Some(configured), now)
                .await
                .unwrap(),
            Bootstrap::Configured
        ));
        let bootstrap = store.authenticate(configured).await.unwrap().unwrap();
        let actor = Actor::from(&bootstrap);
        let (_, successor) = store
            .create_api_key(
                &NewApiKey {
                    role: Role::Admin,
                    principal: None,
                    label: Some("successor".to_string()),
                },
                &actor,
                now,
            )
            .await
            .unwrap();
        store
            .revoke_api_key(bootstrap.key_id.as_str(), &actor, now)
            .await
            .unwrap();
        // The restart.
        assert!(matches!(
            store
                .bootstrap_admin_key(Some(configured), now)
                .await
                .unwrap(),
            Bootstrap::ConfiguredIgnored
        ));
        assert!(store.authenticate(configured).await.unwrap().is_none());
        assert!(
            store
                .authenticate(successor.expose_secret())
                .await
                .unwrap()
                .is_some()
        );
    }
);
