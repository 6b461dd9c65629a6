//! The entitlement tables on SQLite and on a real PostgreSQL (a fresh database per test):
//! accounts, plans, subscriptions, purchases and the grants they add up to.

mod common;

use common::TestDb;
use floodlight_control::{
    Actor, EntitlementStoreError, EventId, NewEvent, NewPlan, NewSubscription, SubscriptionState,
    Visibility,
};
use time::OffsetDateTime;
use time::macros::datetime;

fn service() -> Actor {
    Actor {
        id: "viewer-service-key".to_string(),
        role: "viewer-service".to_string(),
    }
}

const NOW: OffsetDateTime = datetime!(2026-11-01 12:00 UTC);

store_test!(
    accounts_are_unique_by_email_and_paged,
    |db: TestDb| async move {
        let store = db.open().await;
        let first = store
            .create_account("one@example.com", &service(), NOW)
            .await
            .unwrap();
        assert!(matches!(
            store
                .create_account("one@example.com", &service(), NOW)
                .await,
            Err(EntitlementStoreError::EmailTaken)
        ));
        let second = store
            .create_account("two@example.com", &service(), NOW + time::Duration::SECOND)
            .await
            .unwrap();
        assert_eq!(store.account(&first.id).await.unwrap().unwrap(), first);
        assert!(store.account("nosuch").await.unwrap().is_none());

        let page = store.list_accounts(None, 1, None).await.unwrap();
        assert_eq!(page.items, vec![second.clone()]);
        let next = page.next.expect("a second page");
        let page = store.list_accounts(None, 1, Some(&next)).await.unwrap();
        assert_eq!(page.items, vec![first.clone()]);
        assert!(page.next.is_none());
        let found = store
            .list_accounts(Some("one@example.com"), 10, None)
            .await
            .unwrap();
        assert_eq!(found.items, vec![first]);
    }
);

store_test!(plans_keep_their_categories, |db: TestDb| async move {
    let store = db.open().await;
    let plan = store
        .create_plan(
            &NewPlan {
                name: "Sports".to_string(),
                categories: vec!["tennis".into(), "football".into(), "tennis".into()],
                max_concurrent_sessions: Some(3),
            },
            &service(),
            NOW,
        )
        .await
        .unwrap();
    assert_eq!(plan.categories, ["football", "tennis"]);
    let other = store
        .create_plan(
            &NewPlan {
                name: "Free".to_string(),
                categories: vec![],
                max_concurrent_sessions: None,
            },
            &service(),
            NOW + time::Duration::SECOND,
        )
        .await
        .unwrap();
    assert_eq!(store.plan(&plan.id).await.unwrap().unwrap(), plan);
    let page = store.list_plans(10, None).await.unwrap();
    assert_eq!(page.items, vec![other, plan]);
});

store_test!(
    subscriptions_purchases_and_grants,
    |db: TestDb| async move {
        let store = db.open().await;
        let account = store
            .create_account("fan@example.com", &service(), NOW)
            .await
            .unwrap();
        let plan = store
            .create_plan(
                &NewPlan {
                    name: "Football".to_string(),
                    categories: vec!["football".into()],
                    max_concurrent_sessions: Some(2),
                },
                &service(),
                NOW,
            )
            .await
            .unwrap();
        let mut event = NewEvent::titled("Cup final");
        event.visibility = Visibility::Entitled;
        event.category = Some("football".to_string());
        let event = store
            .create_event(&event, &service(), NOW)
            .await
            .unwrap()
            .event
            .id;

        let new = NewSubscription {
            plan_id: plan.id.clone(),
            state: SubscriptionState::Active,
            valid_from: NOW,
            valid_until: Some(datetime!(2027-11-01 12:00 UTC)),
        };
        assert!(matches!(
            store
                .create_subscription("nosuch", &new, &service(), NOW)
                .await,
            Err(EntitlementStoreError::UnknownAccount(_))
        ));
        let unknown_plan = NewSubscription {
            plan_id: "nosuchplan".to_string(),
            ..new.clone()
        };
        assert!(matches!(
            store
                .create_subscription(&account.id, &unknown_plan, &service(), NOW)
                .await,
            Err(EntitlementStoreError::UnknownPlan(_))
        ));
        let subscription = store
            .create_subscription(&account.id, &new, &service(), NOW)
            .await
            .unwrap();
        assert_eq!(
            store.subscription(&subscription.id).await.unwrap().unwrap(),
            subscription
        );

        let grants = store.grants(&account.id, event.as_str()).await.unwrap();
        assert_eq!(
            grants.subscriptions,
            vec![(subscription.clone(), plan.clone())]
        );
        assert!(!grants.purchased);

        // The payment provider moves it: state, and the end of validity when given.
        let later = NOW + time::Duration::HOUR;
        let updated = store
            .update_subscription(
                &subscription.id,
                SubscriptionState::PastDue,
                Some(None),
                &service(),
                later,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(updated.state, SubscriptionState::PastDue);
        assert_eq!(updated.valid_until, None);
        assert_eq!(updated.updated_at, later);
        let kept = store
            .update_subscription(
                &subscription.id,
                SubscriptionState::Active,
                None,
                &service(),
                later,
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(kept.valid_until, None, "absent leaves it as it was");
        assert!(
            store
                .update_subscription("nosuch", SubscriptionState::Active, None, &service(), later)
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            store.subscriptions_of(&account.id).await.unwrap(),
            vec![kept]
        );

        // Purchases: once per event; an unknown event is refused.
        let (purchase, created) = store
            .create_purchase(&account.id, &event, &service(), NOW)
            .await
            .unwrap();
        assert!(created);
        let (again, created) = store
            .create_purchase(&account.id, &event, &service(), later)
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(again, purchase);
        assert!(matches!(
            store
                .create_purchase(
                    &account.id,
                    &EventId::parse("0000000000000000").unwrap(),
                    &service(),
                    NOW
                )
                .await,
            Err(EntitlementStoreError::UnknownEvent(_))
        ));
        assert_eq!(
            store.purchases_of(&account.id).await.unwrap(),
            vec![purchase]
        );
        assert!(
            store
                .grants(&account.id, event.as_str())
                .await
                .unwrap()
                .purchased
        );
        assert!(
            !store
                .grants(&account.id, "0000000000000000")
                .await
                .unwrap()
                .purchased
        );
    }
);
