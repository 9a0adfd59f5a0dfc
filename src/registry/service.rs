//! The registry service of one node (a built-in service, see
//! `node/services.rs`): the node's [`Book`], the handlers of the registry's
//! methods, the tick that runs its timers and sends its messages, and the
//! watchers it tells of changes.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use serde::de::DeserializeOwned;

use super::book::{Book, Key, RegistryConfig};
use super::wire::{self, Message};
use crate::mailbox;
use crate::node::membership::{Change, Listener};
use crate::node::services::{BuiltIn, Host, Wake};
use crate::node::{CallContext, HandlerError, Node};

/// The registry of one node, shared by its handles, handlers and watchers.
pub(crate) struct Service {
    pub(crate) book: Mutex<Book>,
    watchers: Mutex<Vec<Watcher>>,
    wake: Wake,
}

/// The service's end of a watch: what to mark, and the bell to ring.
struct Watcher {
    pending: Arc<Pending>,
    bell: mailbox::Sender<()>,
}

impl Watcher {
    /// Marks `key` and rings; `false` once the watch is gone.
    fn mark(&self, key: &Key) -> bool {
        self.pending.mark(key);
        match self.bell.try_send(()) {
            Ok(()) | Err(mailbox::TrySendError::Full(())) => true,
            Err(mailbox::TrySendError::Disconnected(())) => false,
        }
    }
}

/// What one watch has yet to look at: keys of its collection whose value
/// changed, each once, however often it changed.
pub(crate) struct Pending {
    pub(crate) collection: String,
    keys: Mutex<(VecDeque<Key>, HashSet<Key>)>,
}

impl Pending {
    fn mark(&self, key: &Key) {
        let mut keys = self.keys.lock();
        if keys.1.insert(key.clone()) {
            keys.0.push_back(key.clone());
        }
    }

    /// The next key to look at.
    pub(crate) fn take(&self) -> Option<Key> {
        let mut keys = self.keys.lock();
        let key = keys.0.pop_front()?;
        keys.1.remove(&key);
        Some(key)
    }
}

impl Service {
    /// The service's name: its methods are `bilateral.registry.*`.
    pub(crate) const NAME: &'static str = "registry";

    /// The registry service of `node`, started with `config` if it is not
    /// running yet.
    pub(crate) fn of(
        node: &Node,
        config: Option<RegistryConfig>,
    ) -> Result<Arc<Service>, crate::Error> {
        node.service(Self::NAME, |host| {
            Ok(Service::start(host, config.unwrap_or_default()))
        })
    }

    fn start(host: &Host<'_>, config: RegistryConfig) -> Arc<Service> {
        let node = host.node();
        let service = Arc::new(Service {
            book: Mutex::new(Book::new(
                node.name(),
                node.incarnation(),
                config,
                Instant::now(),
            )),
            watchers: Mutex::new(Vec::new()),
            wake: host.wake(),
        });
        on::<wire::Records>(host, &service, wire::method::RECORDS, Message::Records);
        on::<wire::Sync>(host, &service, wire::method::SYNC, Message::Sync);
        on::<wire::Summary>(host, &service, wire::method::SUMMARY, Message::Summary);
        on::<wire::Want>(host, &service, wire::method::WANT, Message::Want);
        service
    }

    /// Runs `f` on the book, then tells watchers what changed and asks for
    /// a tick to send what it produced.
    pub(crate) fn with_book<R>(&self, f: impl FnOnce(&mut Book) -> R) -> R {
        let mut book = self.book.lock();
        let result = f(&mut book);
        self.dispatch(&mut book);
        drop(book);
        self.wake.wake();
        result
    }

    /// Reads the book as it is now; what reading it brought up to date is
    /// handed to the watchers first, so that nothing a reader sees is
    /// unknown to a watcher.
    pub(crate) fn view<R>(&self, f: impl FnOnce(&mut Book) -> R) -> R {
        let mut book = self.book.lock();
        book.refresh_now();
        self.dispatch(&mut book);
        f(&mut book)
    }

    /// A new watcher of `collection`, first told of every entry in it.
    pub(crate) fn watch(&self, collection: &str) -> (Arc<Pending>, mailbox::Receiver<()>) {
        let (bell, ring) = mailbox::mailbox(1);
        let pending = Arc::new(Pending {
            collection: collection.to_string(),
            keys: Mutex::new((VecDeque::new(), HashSet::new())),
        });
        let watcher = Watcher {
            pending: pending.clone(),
            bell,
        };
        let mut book = self.book.lock();
        book.refresh_now();
        self.dispatch(&mut book);
        for key in book.visible().keys().filter(|k| k.0 == collection) {
            watcher.mark(key);
        }
        self.watchers.lock().push(watcher);
        (pending, ring)
    }

    /// Hands changed keys to the watchers of their collections.
    fn dispatch(&self, book: &mut Book) {
        let mut watchers = self.watchers.lock();
        while let Some(key) = book.poll_changed() {
            watchers.retain(|w| w.pending.collection != key.0 || w.mark(&key));
        }
    }
}

/// Registers one of the registry's methods: a message from a peer, applied
/// to the book.
fn on<M>(host: &Host<'_>, service: &Arc<Service>, method: &str, wrap: fn(M) -> Message)
where
    M: DeserializeOwned + 'static,
{
    let service = service.clone();
    host.register(
        method,
        move |ctx: &CallContext, message: M| -> Result<(), HandlerError> {
            let now = Instant::now();
            service.with_book(|book| book.handle_message(ctx.peer(), wrap(message), now));
            Ok(())
        },
    );
}

impl Listener for Service {
    fn on_change(&self, change: &Change) {
        let now = Instant::now();
        // Runs on the reactor thread: only the book's own lock, no refresh.
        {
            let mut book = self.book.lock();
            match change {
                Change::Joined(s) => book.handle_joined(s.peer.as_str(), s.incarnation, now),
                Change::Left(s, _) => book.handle_left(s.peer.as_str(), now),
            }
        }
        self.wake.wake();
    }
}

impl BuiltIn for Service {
    fn tick(&self, node: &Node, now: Instant) -> Option<Instant> {
        let (out, next) = {
            let mut book = self.book.lock();
            book.handle_timeout(now);
            self.dispatch(&mut book);
            let out: Vec<_> = std::iter::from_fn(|| book.poll_out()).collect();
            (out, book.poll_timeout())
        };
        for (to, message) in out {
            if let Err(e) = node.service_cast(to.as_str(), message.method(), &message) {
                // Anti-entropy repairs what a lost message leaves out.
                log::debug!("registry: {} to {to} not sent: {e}", message.method());
            }
        }
        next
    }

    /// The node closed: its watches end (after what they have pending).
    fn stop(&self) {
        self.watchers.lock().clear();
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let mut book = self.book.lock();
        let stats = book.stats();
        let (owners, _) = book.sizes();
        let entries = book.visible().len();
        vec![
            ("owners", owners as u64),
            ("sessions", book.sessions() as u64),
            ("entries", entries as u64),
            ("watchers", self.watchers.lock().len() as u64),
            ("records_in", stats.records_in),
            ("records_out", stats.records_out),
            ("refused", stats.refused),
            ("stale", stats.stale),
            ("forgotten", stats.forgotten),
        ]
    }
}
