//! A subscriber endpoint as the engine sees it, and the index that matches events to them.

use std::collections::HashMap;
use std::sync::Arc;

use crate::signing::Signer;

/// Which event types a webhook receives.
///
/// herald's operational events (an endpoint failing or recovered, a delivery exhausted; see
/// [`is_operational`]) go only to webhooks that name them: `"*"` means every domain event,
/// so that a catch-all receiver is not handed alerts (about itself, too) it never asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventFilter {
    /// `["*", …]`: every domain event, plus the operational types named beside the `*`.
    All { operational: Vec<String> },
    /// Exactly these types.
    Types(Vec<String>),
}

impl EventFilter {
    /// From the stored `event_types` list; `"*"` anywhere means every domain event.
    pub fn from_list(types: &[String]) -> Self {
        if types.iter().any(|t| t == "*") {
            EventFilter::All {
                operational: types
                    .iter()
                    .filter(|t| is_operational(t))
                    .cloned()
                    .collect(),
            }
        } else {
            EventFilter::Types(types.to_vec())
        }
    }

    pub fn matches(&self, event_type: &str) -> bool {
        match self {
            EventFilter::All { operational } => {
                !is_operational(event_type) || operational.iter().any(|t| t == event_type)
            }
            EventFilter::Types(types) => types.iter().any(|t| t == event_type),
        }
    }

    /// The types listed by name (all of them, or the operational ones beside a `*`).
    fn named(&self) -> &[String] {
        match self {
            EventFilter::All { operational } => operational,
            EventFilter::Types(types) => types,
        }
    }
}

/// Whether `event_type` is one of herald's own operational events.
pub fn is_operational(event_type: &str) -> bool {
    use crate::health::event_types::*;
    matches!(
        event_type,
        ENDPOINT_FAILING | ENDPOINT_RECOVERED | ENDPOINT_DISABLED | DELIVERY_EXHAUSTED
    )
}

/// Everything the engine needs to deliver to one endpoint. Immutable: a change to the
/// webhook replaces the whole spec.
#[derive(Debug, Clone)]
pub struct WebhookSpec {
    /// `wh_<16 hex>`.
    pub id: Arc<str>,
    pub url: Arc<str>,
    pub filter: EventFilter,
    pub signer: Signer,
    /// Sent verbatim with every attempt.
    pub headers: Arc<[(String, String)]>,
    pub enabled: bool,
    /// Paused: deliveries are accepted and held, none is attempted until resumed.
    pub paused: bool,
    /// Requests per second; `None`: unlimited.
    pub rate_limit_per_second: Option<u32>,
    /// The tenant it belongs to: it receives only events of this namespace. `None`: the
    /// operator's webhook, which receives every event, whatever its namespace.
    pub namespace_id: Option<Arc<str>>,
}

impl WebhookSpec {
    /// Whether an event of namespace `event_namespace` is for this webhook: always for a
    /// webhook without a namespace, else only for an event of the same namespace.
    #[inline]
    pub fn accepts_namespace(&self, event_namespace: Option<&str>) -> bool {
        match &self.namespace_id {
            None => true,
            Some(mine) => event_namespace == Some(&**mine),
        }
    }
}

/// Event type → subscribed webhook ids. Rebuilt incrementally as webhooks change, so a
/// lookup is one hash probe plus the wildcard list, whatever the number of webhooks.
#[derive(Debug, Default)]
pub struct SubscriptionIndex {
    by_type: HashMap<String, Vec<Arc<str>>>,
    wildcard: Vec<Arc<str>>,
}

impl SubscriptionIndex {
    /// Adds (or re-adds) a webhook under its filter. Disabled webhooks are not indexed.
    pub fn insert(&mut self, spec: &WebhookSpec) {
        self.remove(&spec.id, None);
        if !spec.enabled {
            return;
        }
        if let EventFilter::All { .. } = spec.filter {
            self.wildcard.push(spec.id.clone());
        }
        for t in spec.filter.named() {
            let ids = self.by_type.entry(t.clone()).or_default();
            if !ids.contains(&spec.id) {
                ids.push(spec.id.clone());
            }
        }
    }

    /// Removes a webhook. `previous` (its old filter) makes this O(its types); without it
    /// every list is scanned.
    pub fn remove(&mut self, id: &str, previous: Option<&EventFilter>) {
        self.wildcard.retain(|w| &**w != id);
        match previous {
            Some(filter) => {
                for t in filter.named() {
                    if let Some(ids) = self.by_type.get_mut(t) {
                        ids.retain(|w| &**w != id);
                    }
                }
            }
            None => {
                for ids in self.by_type.values_mut() {
                    ids.retain(|w| &**w != id);
                }
            }
        }
        self.by_type.retain(|_, ids| !ids.is_empty());
    }

    /// Calls `f` for every webhook subscribed to `event_type`.
    pub fn for_each_match(&self, event_type: &str, mut f: impl FnMut(&Arc<str>)) {
        if let Some(ids) = self.by_type.get(event_type) {
            ids.iter().for_each(&mut f);
        }
        if !is_operational(event_type) {
            self.wildcard.iter().for_each(f);
        }
    }

    /// The subscribers of `event_type`, collected.
    pub fn matches(&self, event_type: &str) -> Vec<Arc<str>> {
        let mut out = Vec::new();
        self.for_each_match(event_type, |id| out.push(id.clone()));
        out
    }
}

/// `url` as logs may show it: scheme, host, port and path, without the userinfo, query and
/// fragment, where receivers' tokens usually travel (`https://user:pw@h/p?token=…` →
/// `https://h/p`). Not a parser: whatever is not `scheme://authority/path` is shown as far
/// as its first `?` or `#`, with anything up to an `@` in the authority left out.
pub fn loggable_url(url: &str) -> String {
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = &url[..end];
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}{host}{path}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn logged_urls_lose_their_credentials_and_query() {
        use super::loggable_url;
        assert_eq!(
            loggable_url("https://user:s3cret@hooks.example.com:8443/in?token=abc#frag"),
            "https://hooks.example.com:8443/in"
        );
        assert_eq!(loggable_url("https://h/p"), "https://h/p");
        assert_eq!(loggable_url("https://a@b@h"), "https://h");
        assert_eq!(loggable_url("https://h?k=v"), "https://h");
        assert_eq!(loggable_url("odd?x"), "odd");
    }

    use super::*;

    fn spec(id: &str, types: &[&str], enabled: bool) -> WebhookSpec {
        WebhookSpec {
            id: id.into(),
            url: "https://example.com/hook".into(),
            filter: EventFilter::from_list(
                &types.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            ),
            signer: Signer::new(vec![]),
            headers: Arc::new([]),
            enabled,
            paused: false,
            rate_limit_per_second: None,
            namespace_id: None,
        }
    }

    #[test]
    fn matches_exact_types_and_wildcards_only() {
        let mut index = SubscriptionIndex::default();
        index.insert(&spec("a", &["object.created"], true));
        index.insert(&spec("b", &["batch.completed", "object.created"], true));
        index.insert(&spec("c", &["*"], true));
        index.insert(&spec("d", &["object.created"], false));

        let ids = |t: &str| {
            index
                .matches(t)
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(ids("object.created"), ["a", "b", "c"]);
        assert_eq!(ids("batch.completed"), ["b", "c"]);
        assert_eq!(ids("cluster.completed"), ["c"]);
    }

    #[test]
    fn operational_events_reach_only_webhooks_that_name_them() {
        let mut index = SubscriptionIndex::default();
        index.insert(&spec("all", &["*"], true));
        index.insert(&spec("ops", &["webhook.endpoint.failing"], true));
        index.insert(&spec("all_ops", &["*", "delivery.exhausted"], true));
        let ids = |index: &SubscriptionIndex, t: &str| {
            let mut ids: Vec<String> = index.matches(t).iter().map(|s| s.to_string()).collect();
            ids.sort();
            ids
        };
        assert_eq!(ids(&index, "webhook.endpoint.failing"), ["ops"]);
        assert_eq!(ids(&index, "delivery.exhausted"), ["all_ops"]);
        assert!(ids(&index, "webhook.endpoint.recovered").is_empty());
        assert_eq!(ids(&index, "object.created"), ["all", "all_ops"]);
        let filter = EventFilter::from_list(&["*".into(), "delivery.exhausted".into()]);
        assert!(filter.matches("object.created"));
        assert!(filter.matches("delivery.exhausted"));
        assert!(!filter.matches("webhook.endpoint.failing"));

        // Re-inserted without the operational type, it stops receiving it.
        index.insert(&spec("all_ops", &["*"], true));
        assert!(ids(&index, "delivery.exhausted").is_empty());
    }

    #[test]
    fn reinserting_with_new_types_replaces_the_old_ones() {
        let mut index = SubscriptionIndex::default();
        index.insert(&spec("a", &["object.created"], true));
        index.insert(&spec("a", &["batch.completed"], true));
        assert!(index.matches("object.created").is_empty());
        assert_eq!(index.matches("batch.completed").len(), 1);

        index.insert(&spec("a", &["batch.completed"], false));
        assert!(index.matches("batch.completed").is_empty());
    }
}
