//! Following the change feed: a blocking [`Subscription`] that wakes on PostgreSQL
//! `NOTIFY`, falls back to polling, resumes from a cursor and survives lost connections.
//!
//! # Using it
//!
//! ```no_run
//! use std::time::Duration;
//! use ddms_core::{Role, Scope, TenantId};
//! use ddms_diesel::{PgBackend, PgConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = PgBackend::connect(&PgConfig::new("postgres://localhost/ddms"))?;
//! let scope = Scope::new(TenantId(uuid::Uuid::nil()), "sse", Role::Viewer);
//! // Every event with seq > 0, then every later one as it commits.
//! let mut sub = backend.subscribe(&scope, 0);
//! loop {
//!     // Blocks up to 15 s; `Ok(None)` on timeout (send an SSE keep-alive then).
//!     match sub.try_next(Duration::from_secs(15)) {
//!         Ok(Some(event)) => println!("id: {}\ndata: {}\n", event.seq, serde_json::to_string(&event)?),
//!         Ok(None) => println!(": keep-alive\n"),
//!         // Fatal: CursorExpired { horizon } (the cursor predates retention: restart
//!         // from `horizon`), NotFound (tenant deleted), ...; the subscription has ended.
//!         Err(e) => return Err(e.into()),
//!     }
//! }
//! # }
//! ```
//!
//! - [`PgBackend::subscribe`]`(scope, after)` starts after cursor `after` (an event
//!   `seq`; `0` = from the beginning). For SSE, `after` is the `Last-Event-ID` header
//!   (or the `after` query parameter) and each event's `id:` is its `seq`.
//! - [`Subscription::try_next`] waits at most `timeout`; [`Subscription::next_batch`]
//!   returns up to `max` events at once (waiting for the first); the `Iterator`
//!   implementation blocks until the next event (or a fatal error, after which it ends).
//! - [`Subscription::cursor`] is the `seq` of the last event handed out: a consumer that
//!   stops can resume later with `subscribe(scope, cursor)` and miss nothing.
//! - The methods block the calling thread: from async code (the server), run the
//!   subscription on a blocking thread (`tokio::task::spawn_blocking`) and forward the
//!   events through a channel, calling `try_next` with a short timeout (e.g. 1–15 s) so
//!   that the loop notices a closed client and can send keep-alives.
//! - Role checks are the caller's business (as for `TenantScope::events`: any role may
//!   read the feed); the tenant is enforced by PostgreSQL (every read is an RLS-bound,
//!   tenant-scoped `events_after`).
//!
//! # Guarantees
//!
//! Events are delivered in strictly increasing `seq` order, each exactly once, with no
//! gaps: pages are read with [`ddms_core::EventStore::events_after`], which is gap-free
//! (seq numbers come from a per-tenant counter whose row lock is held until commit, so
//! a tenant's events become visible in seq order). Aborted transactions never show up.
//!
//! Database trouble does not lose events: a failed read (`Unavailable`, e.g. connection
//! killed or database restarting) is retried with exponential backoff (50 ms doubling to
//! 5 s, by default) from the same cursor, silently, and the caller only sees the delay.
//! Fatal errors (`CursorExpired`, `NotFound`, ...) are returned once and end the
//! subscription.
//!
//! # How waking works
//!
//! Every change runs `pg_notify('ddms_events', tenant_id)` in its transaction, so
//! PostgreSQL delivers a notification at commit. Each [`PgBackend`] (and its clones)
//! shares **one listener thread with one dedicated connection** (`LISTEN ddms_events`,
//! `application_name = ddms_feed_listener`, role `ddms_app`), started on the first
//! subscription and stopped a few seconds after the last one is dropped. It fans
//! notifications out to the subscriptions of the notified tenant, which then read the new
//! page. Diesel's `notifications_iter()` does not block (it reads what has arrived), so
//! the thread polls it every 2 ms: a non-blocking socket read, cheap, and it bounds the
//! added latency to about 2 ms. It also pings the connection every 5 s; when the
//! connection breaks it reconnects with backoff and then wakes every subscription (since
//! notifications sent meanwhile are lost). Independently of notifications, each
//! subscription re-reads at least every `poll_interval` (1 s by default), so even a
//! missed notification only costs latency, never events.
//!
//! The subscriptions of one tenant (e.g. several SSE clients) share their reads: they
//! take turns on a per-tenant cache of the most recent events (a contiguous run of
//! seqs, at most 2 048), so one notification costs one database read, not one per
//! subscription. A page read after cursor `c` is the complete run after `c` (gap-free),
//! so a subscription whose cursor falls inside the cached run gets from the cache exactly
//! what its own read would have returned first.
//!
//! [`Subscription::polling`] builds the same subscription over any
//! [`ddms_core::Backend`] (e.g. the in-memory one), without notifications.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ddms_core::{ConflictKind, Error, Event, Result, Scope};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use parking_lot::{Condvar, Mutex};
use uuid::Uuid;

use crate::backend::PgBackend;

/// The `application_name` of the listener connection (to find it in
/// `pg_stat_activity`).
pub const LISTENER_APPLICATION_NAME: &str = "ddms_feed_listener";

/// How often the listener polls its connection for notifications.
const LISTENER_POLL: Duration = Duration::from_millis(2);
/// How often the listener pings its connection to detect silent breakage.
const LISTENER_PING: Duration = Duration::from_secs(5);
/// How long the listener lingers without subscriptions before it disconnects.
const LISTENER_IDLE_EXIT: Duration = Duration::from_secs(3);
/// Longest wait between two reconnection attempts of the listener.
const LISTENER_MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Tuning of a [`Subscription`].
#[derive(Debug, Clone)]
pub struct SubscribeOptions {
    /// Re-read at least this often even without a notification (default 1 s).
    pub poll_interval: Duration,
    /// Events read per page (default 500; at most 1000 are read at once).
    pub page_size: usize,
    /// Longest wait between retries after a transient error (default 5 s).
    pub max_backoff: Duration,
}

impl Default for SubscribeOptions {
    fn default() -> Self {
        SubscribeOptions {
            poll_interval: Duration::from_secs(1),
            page_size: 500,
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// What the feed listener of a [`PgBackend`] is doing (for health checks and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerStats {
    /// The listener thread runs (it does while there are subscriptions).
    pub running: bool,
    /// Its connection is up and listening.
    pub connected: bool,
    /// Successful connections so far (more than one: it reconnected).
    pub connects: u64,
    /// Notifications received so far.
    pub notifications: u64,
    /// Live subscriptions.
    pub subscriptions: usize,
}

/// A wake-up counter: bumped by notifications, waited on by one subscription.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    count: Mutex<u64>,
    cv: Condvar,
}

impl Signal {
    fn get(&self) -> u64 {
        *self.count.lock()
    }

    fn bump(&self) {
        let mut g = self.count.lock();
        *g = g.wrapping_add(1);
        self.cv.notify_all();
    }

    /// Waits until the counter is no longer `seen`, or until `until`.
    fn wait(&self, seen: u64, until: Instant) {
        let mut g = self.count.lock();
        while *g == seen {
            if self.cv.wait_until(&mut g, until).timed_out() {
                return;
            }
        }
    }
}

/// The events most recently read for one tenant, shared by its subscriptions: a
/// contiguous run of seqs (each page `events_after(c)` returns is the complete run after
/// `c`, by the gap-free property), so any subscription whose cursor falls inside it gets
/// exactly what its own read would have returned first.
#[derive(Debug, Default)]
pub(crate) struct EventCache {
    events: VecDeque<Event>,
    /// The tenant's notification generation read just before the last database read,
    /// and the end of the feed that read found (`None`: it returned a full page, more
    /// may follow). While the generation has not moved, no commit has been notified
    /// since, so a subscription at that end need not ask the database again.
    fresh: Option<(u64, i64)>,
}

/// Most events kept per tenant.
const CACHE_CAP: usize = 2048;

impl EventCache {
    /// The cached events after `cursor` (at most `limit`), if the cache covers it.
    fn after(&self, cursor: i64, limit: usize) -> Option<Vec<Event>> {
        let first = self.events.front()?.seq;
        let last = self.events.back()?.seq;
        if cursor < first - 1 || cursor >= last {
            return None;
        }
        let start = (cursor + 1 - first) as usize;
        Some(
            self.events
                .iter()
                .skip(start)
                .take(limit)
                .cloned()
                .collect(),
        )
    }

    /// Adds `page`, the complete result of `events_after(cursor)`.
    fn store(&mut self, cursor: i64, page: &[Event]) {
        let Some(page_last) = page.last().map(|e| e.seq) else {
            return;
        };
        match self.events.back().map(|e| e.seq) {
            Some(back) if back >= cursor && back < page_last => {
                self.events
                    .extend(page.iter().filter(|e| e.seq > back).cloned());
            }
            Some(back) if back >= page_last => {}
            _ => {
                self.events.clear();
                self.events.extend(page.iter().cloned());
            }
        }
        while self.events.len() > CACHE_CAP {
            self.events.pop_front();
        }
    }
}

/// What the subscriptions of one tenant share.
#[derive(Debug, Default)]
pub(crate) struct TenantShared {
    cache: Mutex<EventCache>,
    /// Bumped by every notification for the tenant (and after reconnections).
    generation: AtomicU64,
}

#[derive(Debug, Default)]
struct TenantSubs {
    signals: HashMap<u64, Arc<Signal>>,
    shared: Arc<TenantShared>,
}

#[derive(Debug, Default)]
struct HubState {
    /// Subscriptions by tenant.
    subs: HashMap<Uuid, TenantSubs>,
    count: usize,
    next_id: u64,
    running: bool,
    idle_since: Option<Instant>,
}

/// The listener shared by the subscriptions of one [`PgBackend`].
pub(crate) struct FeedHub {
    url: String,
    state: Mutex<HubState>,
    connected: AtomicBool,
    connects: AtomicU64,
    notifications: AtomicU64,
}

impl std::fmt::Debug for FeedHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FeedHub")
            .field("url", &crate::pool::redact(&self.url))
            .field("connected", &self.connected.load(Ordering::Relaxed))
            .field("connects", &self.connects.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Keeps a subscription registered with the hub; unregisters on drop.
#[derive(Debug)]
struct Registration {
    hub: Arc<FeedHub>,
    tenant: Uuid,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut guard = self.hub.state.lock();
        let st = &mut *guard;
        if let Some(m) = st.subs.get_mut(&self.tenant) {
            if m.signals.remove(&self.id).is_some() {
                st.count -= 1;
            }
            if m.signals.is_empty() {
                st.subs.remove(&self.tenant);
            }
        }
    }
}

impl FeedHub {
    pub(crate) fn new(url: &str) -> FeedHub {
        FeedHub {
            url: url.to_string(),
            state: Mutex::new(HubState::default()),
            connected: AtomicBool::new(false),
            connects: AtomicU64::new(0),
            notifications: AtomicU64::new(0),
        }
    }

    fn register(
        self: &Arc<Self>,
        tenant: Uuid,
        signal: Arc<Signal>,
    ) -> (Registration, Arc<TenantShared>) {
        let mut st = self.state.lock();
        st.next_id += 1;
        let id = st.next_id;
        let entry = st.subs.entry(tenant).or_default();
        entry.signals.insert(id, signal);
        let shared = Arc::clone(&entry.shared);
        st.count += 1;
        st.idle_since = None;
        if !st.running {
            st.running = true;
            let hub = Arc::clone(self);
            let spawned = std::thread::Builder::new()
                .name("ddms-feed-listener".into())
                .spawn(move || hub.run());
            if let Err(e) = spawned {
                // Without a listener, subscriptions still poll every poll_interval.
                tracing::warn!("cannot start the feed listener thread: {e}");
                st.running = false;
            }
        }
        let registration = Registration {
            hub: Arc::clone(self),
            tenant,
            id,
        };
        (registration, shared)
    }

    fn wake_tenant(&self, tenant: Uuid) {
        let st = self.state.lock();
        if let Some(m) = st.subs.get(&tenant) {
            m.shared.generation.fetch_add(1, Ordering::SeqCst);
            for s in m.signals.values() {
                s.bump();
            }
        }
    }

    fn wake_all(&self) {
        let st = self.state.lock();
        for m in st.subs.values() {
            m.shared.generation.fetch_add(1, Ordering::SeqCst);
            for s in m.signals.values() {
                s.bump();
            }
        }
    }

    /// True when the thread should end (no subscriptions for a while); then marks it
    /// stopped, under the lock, so that the next registration starts a new one.
    fn should_exit(&self) -> bool {
        let mut st = self.state.lock();
        if st.count > 0 {
            st.idle_since = None;
            return false;
        }
        let since = *st.idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= LISTENER_IDLE_EXIT {
            st.running = false;
            st.idle_since = None;
            return true;
        }
        false
    }

    fn connect(&self) -> std::result::Result<PgConnection, String> {
        let mut conn = PgConnection::establish(&self.url).map_err(|e| e.to_string())?;
        // Only our own constants: no input is formatted into this SQL.
        conn.batch_execute(&format!(
            "SET application_name = '{LISTENER_APPLICATION_NAME}'; SET ROLE ddms_app; LISTEN ddms_events"
        ))
        .map_err(|e| e.to_string())?;
        Ok(conn)
    }

    /// The listener thread: connect, LISTEN, poll notifications, reconnect on failure.
    fn run(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(50);
        loop {
            if self.should_exit() {
                return;
            }
            let mut conn = match self.connect() {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("feed listener cannot connect ({e}); retrying in {backoff:?}");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(LISTENER_MAX_BACKOFF);
                    continue;
                }
            };
            backoff = Duration::from_millis(50);
            self.connected.store(true, Ordering::SeqCst);
            self.connects.fetch_add(1, Ordering::SeqCst);
            // Notifications sent while we were not listening are lost: let every
            // subscription re-read once.
            self.wake_all();
            let mut last_ping = Instant::now();
            let broken = loop {
                let mut failed = None;
                // Each tenant is woken once per round, however many commits it had.
                let mut tenants: HashSet<Uuid> = HashSet::new();
                for n in conn.notifications_iter() {
                    match n {
                        Ok(n) => {
                            self.notifications.fetch_add(1, Ordering::Relaxed);
                            if let Ok(t) = Uuid::parse_str(&n.payload) {
                                tenants.insert(t);
                            }
                        }
                        Err(e) => {
                            failed = Some(e.to_string());
                            break;
                        }
                    }
                }
                for t in tenants {
                    self.wake_tenant(t);
                }
                if let Some(e) = failed {
                    break Some(e);
                }
                if last_ping.elapsed() >= LISTENER_PING {
                    if let Err(e) = conn.batch_execute("SELECT 1") {
                        break Some(e.to_string());
                    }
                    last_ping = Instant::now();
                }
                if self.should_exit() {
                    break None;
                }
                std::thread::sleep(LISTENER_POLL);
            };
            self.connected.store(false, Ordering::SeqCst);
            match broken {
                None => return,
                Some(e) => {
                    tracing::warn!("feed listener lost its connection ({e}); reconnecting");
                    // Subscriptions poll meanwhile; wake them so they notice promptly.
                    self.wake_all();
                }
            }
        }
    }

    fn stats(&self) -> ListenerStats {
        let st = self.state.lock();
        ListenerStats {
            running: st.running,
            connected: self.connected.load(Ordering::SeqCst),
            connects: self.connects.load(Ordering::SeqCst),
            notifications: self.notifications.load(Ordering::Relaxed),
            subscriptions: st.count,
        }
    }
}

/// Reads the page after a cursor; `fresh_ok`: a cached "nothing new since the last
/// notification" may answer instead of the database.
type ReadPage = dyn Fn(&Scope, i64, usize, bool) -> Result<Vec<Event>> + Send + Sync;

/// A blocking follower of one tenant's change feed; see the [module docs](self).
pub struct Subscription {
    read: Box<ReadPage>,
    scope: Scope,
    cursor: i64,
    buf: VecDeque<Event>,
    signal: Arc<Signal>,
    _registration: Option<Registration>,
    opts: SubscribeOptions,
    backoff: Duration,
    ended: Option<Error>,
    end_reported: bool,
    /// When the database was last asked directly (the fallback poll).
    last_poll: Instant,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("tenant", &self.scope.tenant)
            .field("cursor", &self.cursor)
            .field("buffered", &self.buf.len())
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl PgBackend {
    /// Follows `scope`'s tenant feed from after cursor `after` (0: from the start),
    /// woken by `NOTIFY`; see [`Subscription`] and the [module docs](crate::subscribe).
    /// Never fails here: errors (e.g. `CursorExpired`) come from the first read.
    pub fn subscribe(&self, scope: &Scope, after: i64) -> Subscription {
        self.subscribe_with(scope, after, SubscribeOptions::default())
    }

    /// [`PgBackend::subscribe`] with explicit options.
    pub fn subscribe_with(
        &self,
        scope: &Scope,
        after: i64,
        opts: SubscribeOptions,
    ) -> Subscription {
        let signal = Arc::new(Signal::default());
        let (registration, shared) = self.feed.register(scope.tenant.0, Arc::clone(&signal));
        let backend = self.clone();
        // Single flight per tenant: the subscriptions woken by one notification take
        // turns on the tenant's cache; the first reads the database, the others find
        // the new events in the cache (or learn that nothing was notified since).
        let read = move |s: &Scope, after: i64, limit: usize, fresh_ok: bool| {
            let mut cache = shared.cache.lock();
            if let Some(events) = cache.after(after, limit) {
                return Ok(events);
            }
            let generation = shared.generation.load(Ordering::SeqCst);
            if fresh_ok && cache.fresh == Some((generation, after)) {
                return Ok(Vec::new());
            }
            let events = ddms_core::EventStore::events_after(&backend, s, after, limit)?;
            cache.store(after, &events);
            cache.fresh = (events.len() < limit)
                .then(|| (generation, events.last().map_or(after, |e| e.seq)));
            Ok(events)
        };
        Subscription::new(
            Box::new(read),
            scope,
            after,
            signal,
            Some(registration),
            opts,
        )
    }

    /// The state of this backend's feed listener.
    pub fn feed_listener_stats(&self) -> ListenerStats {
        self.feed.stats()
    }
}

/// Whether a read error is worth retrying (the database may come back).
fn transient(e: &Error) -> bool {
    matches!(
        e,
        Error::Unavailable(_)
            | Error::Conflict {
                kind: ConflictKind::Concurrent,
                ..
            }
    )
}

/// A copy of a fatal error, to report it again after the subscription ended.
fn copy_error(e: &Error) -> Error {
    match e {
        Error::CursorExpired { horizon } => Error::CursorExpired { horizon: *horizon },
        Error::NotFound { what, key } => Error::NotFound {
            what,
            key: key.clone(),
        },
        Error::Forbidden(m) => Error::Forbidden(m.clone()),
        Error::Unavailable(m) => Error::Unavailable(m.clone()),
        other => Error::Internal(format!("subscription ended: {other}")),
    }
}

impl Subscription {
    fn new(
        read: Box<ReadPage>,
        scope: &Scope,
        after: i64,
        signal: Arc<Signal>,
        registration: Option<Registration>,
        opts: SubscribeOptions,
    ) -> Subscription {
        Subscription {
            read,
            scope: scope.clone(),
            cursor: after,
            buf: VecDeque::new(),
            signal,
            _registration: registration,
            opts,
            backoff: Duration::from_millis(50),
            ended: None,
            end_reported: false,
            last_poll: Instant::now(),
        }
    }

    /// A subscription over any backend (e.g. the in-memory one) that polls every
    /// `poll_interval` (no notifications). Same guarantees as [`PgBackend::subscribe`].
    pub fn polling(
        backend: Arc<dyn ddms_core::Backend>,
        scope: &Scope,
        after: i64,
        poll_interval: Duration,
    ) -> Subscription {
        let read = move |s: &Scope, after: i64, limit: usize, _: bool| {
            backend.events_after(s, after, limit)
        };
        let opts = SubscribeOptions {
            poll_interval,
            ..SubscribeOptions::default()
        };
        Subscription::new(
            Box::new(read),
            scope,
            after,
            Arc::new(Signal::default()),
            None,
            opts,
        )
    }

    /// The `seq` of the last event handed out (or the starting cursor): resume here.
    pub fn cursor(&self) -> i64 {
        self.cursor
    }

    /// The scope the subscription reads as.
    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// True once a fatal error ended the subscription.
    pub fn is_ended(&self) -> bool {
        self.ended.is_some()
    }

    /// The next event, waiting at most `timeout`: `Ok(None)` when none came in time.
    /// Transient database errors are retried within the timeout; a fatal error is
    /// returned (and again on later calls: the subscription has ended).
    pub fn try_next(&mut self, timeout: Duration) -> Result<Option<Event>> {
        let deadline = Instant::now().checked_add(timeout);
        if self.buf.is_empty() {
            self.fill(deadline)?;
        }
        Ok(self.pop())
    }

    /// Up to `max` events (at least one unless `timeout` passes first, then none).
    pub fn next_batch(&mut self, max: usize, timeout: Duration) -> Result<Vec<Event>> {
        let deadline = Instant::now().checked_add(timeout);
        if self.buf.is_empty() {
            self.fill(deadline)?;
        }
        let mut out = Vec::with_capacity(self.buf.len().min(max));
        while out.len() < max {
            match self.pop() {
                Some(e) => out.push(e),
                None => break,
            }
        }
        Ok(out)
    }

    fn pop(&mut self) -> Option<Event> {
        let e = self.buf.pop_front()?;
        self.cursor = e.seq;
        Some(e)
    }

    /// Reads until the buffer holds events or the deadline passes.
    fn fill(&mut self, deadline: Option<Instant>) -> Result<()> {
        if let Some(e) = &self.ended {
            return Err(copy_error(e));
        }
        loop {
            // Read the counter before reading the feed: a notification that arrives
            // after the read changes it, so the wait below returns at once.
            let seen = self.signal.get();
            let last = self.buf.back().map_or(self.cursor, |e| e.seq);
            let limit = self
                .opts
                .page_size
                .clamp(1, ddms_core::event::MAX_EVENT_LIMIT);
            // At least every poll_interval, ask the database itself (in case a
            // notification was lost without the listener noticing).
            let fresh_ok = self.last_poll.elapsed() < self.opts.poll_interval;
            if !fresh_ok {
                self.last_poll = Instant::now();
            }
            let wait = match (self.read)(&self.scope, last, limit, fresh_ok) {
                Ok(events) => {
                    self.backoff = Duration::from_millis(50);
                    if !events.is_empty() {
                        self.buf.extend(events);
                        return Ok(());
                    }
                    None
                }
                Err(e) if transient(&e) => {
                    tracing::debug!("feed read failed ({e}); retrying in {:?}", self.backoff);
                    let b = self.backoff;
                    self.backoff = (self.backoff * 2).min(self.opts.max_backoff);
                    Some(b)
                }
                Err(e) => {
                    let out = copy_error(&e);
                    self.ended = Some(e);
                    return Err(out);
                }
            };
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(());
            }
            let pause = wait.unwrap_or(self.opts.poll_interval);
            let mut until = now + pause;
            if let Some(d) = deadline {
                until = until.min(d);
            }
            match wait {
                // After an error: sleep the backoff (a notification does not help).
                Some(_) => std::thread::sleep(until.saturating_duration_since(now)),
                None => self.signal.wait(seen, until),
            }
        }
    }
}

/// Blocks until the next event. After a fatal error (yielded once) it ends.
impl Iterator for Subscription {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.end_reported {
            return None;
        }
        loop {
            match self.try_next(Duration::from_secs(3600)) {
                Ok(Some(e)) => return Some(Ok(e)),
                Ok(None) => continue,
                Err(e) => {
                    self.end_reported = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ddms_core::EventKind;

    fn ev(seq: i64) -> Event {
        Event {
            seq,
            kind: EventKind::RecordCreated,
            entity_type: None,
            subject_id: Uuid::nil(),
            payload: serde_json::Value::Null,
            actor: None,
            at: chrono::Utc::now(),
        }
    }

    fn seqs(v: Option<Vec<Event>>) -> Option<Vec<i64>> {
        v.map(|v| v.iter().map(|e| e.seq).collect())
    }

    #[test]
    fn the_cache_serves_only_contiguous_runs_after_a_cursor() {
        let mut c = EventCache::default();
        assert_eq!(seqs(c.after(0, 10)), None);
        c.store(4, &[ev(5), ev(6), ev(7)]);
        assert_eq!(seqs(c.after(3, 10)), None, "8 is not known to follow 3");
        assert_eq!(seqs(c.after(4, 10)), Some(vec![5, 6, 7]));
        assert_eq!(seqs(c.after(5, 1)), Some(vec![6]));
        assert_eq!(seqs(c.after(7, 10)), None, "nothing newer cached: read");
        // A page overlapping the cached run extends it.
        c.store(6, &[ev(7), ev(8)]);
        assert_eq!(seqs(c.after(4, 10)), Some(vec![5, 6, 7, 8]));
        // A page after a gap replaces it.
        c.store(20, &[ev(21)]);
        assert_eq!(seqs(c.after(8, 10)), None);
        assert_eq!(seqs(c.after(20, 10)), Some(vec![21]));
        // Older pages change nothing; the size is bounded.
        c.store(10, &[ev(11), ev(12)]);
        assert_eq!(seqs(c.after(20, 10)), Some(vec![21]));
        let page: Vec<Event> = (22..22 + CACHE_CAP as i64 + 10).map(ev).collect();
        c.store(21, &page);
        assert_eq!(c.events.len(), CACHE_CAP);
        assert_eq!(c.events.back().unwrap().seq, 21 + CACHE_CAP as i64 + 10);
    }
}
