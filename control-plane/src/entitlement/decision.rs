//! Who may watch an entitled event: the rules of the issue, as one pure function of what
//! the store knows (no I/O, no clock).
//!
//! An entitled event needs an active subscription, current at the moment of asking, to a
//! plan that includes the event's category, or a purchase of the event. The concurrency
//! limit is the most generous of the grants that apply.

use time::OffsetDateTime;

use super::store::{Grants, SubscriptionState};

/// Why an account is not entitled; `reason` in the 403 problem document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NotEntitled {
    /// No subscription and no purchase of the event.
    NoSubscription,
    /// Subscriptions, but none active now: cancelled, or outside its validity dates.
    SubscriptionExpired,
    /// The subscription is current but a payment failed (`past_due`).
    SubscriptionPastDue,
    /// An active subscription, but no plan of the account includes the event's category.
    NotInPlan,
}

impl NotEntitled {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            NotEntitled::NoSubscription => "no_subscription",
            NotEntitled::SubscriptionExpired => "subscription_expired",
            NotEntitled::SubscriptionPastDue => "subscription_past_due",
            NotEntitled::NotInPlan => "not_in_plan",
        }
    }

    pub(crate) fn detail(self, category: Option<&str>) -> String {
        match self {
            NotEntitled::NoSubscription => {
                "the account has no subscription and has not bought this event".to_string()
            }
            NotEntitled::SubscriptionExpired => {
                "the account's subscriptions are cancelled or outside their validity dates"
                    .to_string()
            }
            NotEntitled::SubscriptionPastDue => {
                "the account's subscription is past due: a payment failed".to_string()
            }
            NotEntitled::NotInPlan => match category {
                Some(category) => {
                    format!("no plan the account subscribes to includes the category {category:?}")
                }
                None => "the event has no category, so no plan includes it; only a purchase \
                         entitles to it"
                    .to_string(),
            },
        }
    }
}

/// The grant: how many sessions the account may watch at once (`None`: no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Entitled {
    pub(crate) max_sessions: Option<u32>,
}

/// Decides an entitled event (of `category`) for an account with `grants`, at `now`.
/// `purchase_max_sessions` is the limit a purchase grants (`None`: no limit).
pub(crate) fn decide(
    category: Option<&str>,
    grants: &Grants,
    now: OffsetDateTime,
    purchase_max_sessions: Option<u32>,
) -> Result<Entitled, NotEntitled> {
    let active = grants
        .subscriptions
        .iter()
        .filter(|(s, _)| s.state == SubscriptionState::Active && s.is_current(now));
    let mut limits: Vec<Option<u32>> = active
        .clone()
        .filter(|(_, plan)| category.is_some_and(|c| plan.categories.iter().any(|p| p == c)))
        .map(|(_, plan)| plan.max_concurrent_sessions)
        .collect();
    if grants.purchased {
        limits.push(purchase_max_sessions);
    }
    if !limits.is_empty() {
        // No limit beats any limit; otherwise the largest.
        let max_sessions = if limits.contains(&None) {
            None
        } else {
            limits.into_iter().flatten().max()
        };
        return Ok(Entitled { max_sessions });
    }
    if active.clone().next().is_some() {
        return Err(NotEntitled::NotInPlan);
    }
    let past_due = grants
        .subscriptions
        .iter()
        .any(|(s, _)| s.state == SubscriptionState::PastDue && s.is_current(now));
    if past_due {
        return Err(NotEntitled::SubscriptionPastDue);
    }
    if grants.subscriptions.is_empty() {
        Err(NotEntitled::NoSubscription)
    } else {
        Err(NotEntitled::SubscriptionExpired)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entitlement::store::{Plan, Subscription};

    fn t(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    fn plan(categories: &[&str], max: Option<u32>) -> Plan {
        Plan {
            id: format!("p{}", categories.join("")),
            name: "plan".into(),
            categories: categories.iter().map(|c| c.to_string()).collect(),
            max_concurrent_sessions: max,
            created_at: t(0),
        }
    }

    fn subscription(state: SubscriptionState, from: i64, until: Option<i64>) -> Subscription {
        Subscription {
            id: "s".into(),
            account_id: "a".into(),
            plan_id: "p".into(),
            state,
            valid_from: t(from),
            valid_until: until.map(t),
            created_at: t(0),
            updated_at: t(0),
        }
    }

    fn grants(subscriptions: Vec<(Subscription, Plan)>, purchased: bool) -> Grants {
        Grants {
            subscriptions,
            purchased,
        }
    }

    use SubscriptionState::{Active, Cancelled, PastDue};

    #[test]
    fn a_current_active_subscription_to_a_plan_with_the_category_entitles() {
        let g = grants(
            vec![(
                subscription(Active, 0, Some(1000)),
                plan(&["football"], Some(2)),
            )],
            false,
        );
        assert_eq!(
            decide(Some("football"), &g, t(500), Some(1)),
            Ok(Entitled {
                max_sessions: Some(2)
            })
        );
        assert_eq!(
            decide(Some("tennis"), &g, t(500), Some(1)),
            Err(NotEntitled::NotInPlan)
        );
        assert_eq!(
            decide(None, &g, t(500), Some(1)),
            Err(NotEntitled::NotInPlan)
        );
        // Validity is [valid_from, valid_until).
        assert_eq!(
            decide(Some("football"), &g, t(1000), Some(1)),
            Err(NotEntitled::SubscriptionExpired)
        );
    }

    #[test]
    fn refusals_say_why() {
        assert_eq!(
            decide(Some("football"), &grants(vec![], false), t(5), None),
            Err(NotEntitled::NoSubscription)
        );
        for (state, expected) in [
            (PastDue, NotEntitled::SubscriptionPastDue),
            (Cancelled, NotEntitled::SubscriptionExpired),
        ] {
            let g = grants(
                vec![(subscription(state, 0, None), plan(&["football"], None))],
                false,
            );
            assert_eq!(decide(Some("football"), &g, t(5), None), Err(expected));
        }
        // A past-due subscription that also ended is expired, not past due.
        let g = grants(
            vec![(
                subscription(PastDue, 0, Some(10)),
                plan(&["football"], None),
            )],
            false,
        );
        assert_eq!(
            decide(Some("football"), &g, t(20), None),
            Err(NotEntitled::SubscriptionExpired)
        );
    }

    #[test]
    fn a_purchase_entitles_and_the_most_generous_limit_applies() {
        let bought = grants(vec![], true);
        assert_eq!(
            decide(None, &bought, t(5), Some(1)),
            Ok(Entitled {
                max_sessions: Some(1)
            })
        );
        let both = grants(
            vec![
                (subscription(Active, 0, None), plan(&["football"], Some(3))),
                (
                    subscription(Active, 0, None),
                    plan(&["football", "tennis"], Some(2)),
                ),
            ],
            true,
        );
        assert_eq!(
            decide(Some("football"), &both, t(5), Some(1)),
            Ok(Entitled {
                max_sessions: Some(3)
            })
        );
        let unlimited = grants(
            vec![(subscription(Active, 0, None), plan(&["football"], None))],
            true,
        );
        assert_eq!(
            decide(Some("football"), &unlimited, t(5), Some(1)),
            Ok(Entitled { max_sessions: None })
        );
    }
}
