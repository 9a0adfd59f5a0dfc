//! Registered handlers: typed closures erased to bytes-in, bytes-out.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use parking_lot::RwLock;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::protocol::NodeName;

/// What a handler learns about the call it serves.
#[derive(Clone, Debug)]
pub struct CallContext {
    pub(crate) peer: NodeName,
    pub(crate) incarnation: u64,
    pub(crate) request_id: Option<u64>,
    pub(crate) method: String,
    pub(crate) deadline: Option<Instant>,
}

impl CallContext {
    /// The calling node's name (in CURVE mode, its public key).
    pub fn peer(&self) -> &str {
        self.peer.as_str()
    }

    /// The calling node's incarnation (random per start of that node).
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The request id, unique per calling incarnation; `None` for a cast.
    ///
    /// `(peer, incarnation, request_id)` identifies one call across
    /// retransmissions, so a handler can de-duplicate.
    pub fn request_id(&self) -> Option<u64> {
        self.request_id
    }

    /// Whether this is a cast (no reply goes back).
    pub fn is_cast(&self) -> bool {
        self.request_id.is_none()
    }

    /// The method name.
    pub fn method(&self) -> &str {
        &self.method
    }

    /// When the caller stops waiting (as estimated on receipt); `None` for casts.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

/// The error a handler returns. The caller gets it as
/// [`crate::CallError::Remote`]: always its message, and, for an error made
/// with [`HandlerError::typed`], the error value itself, which the caller
/// decodes with [`RemoteError::data`](crate::RemoteError::data).
///
/// Any `std::error::Error` converts into it, so `?` works in a handler:
///
/// ```
/// # use bilateral::{CallContext, HandlerError};
/// fn parse(_ctx: &CallContext, text: String) -> Result<u32, HandlerError> {
///     Ok(text.trim().parse::<u32>()?)
/// }
/// ```
///
/// (For that reason it does not implement `std::error::Error` itself: a
/// type cannot both be an `Error` and convert from every `Error`, as with
/// `anyhow::Error`. It is `Display` and `Debug`.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandlerError {
    message: String,
    /// A typed error, MessagePack-encoded.
    data: Option<Vec<u8>>,
}

impl HandlerError {
    /// An error with this message.
    pub fn new(message: impl fmt::Display) -> Self {
        HandlerError {
            message: message.to_string(),
            data: None,
        }
    }

    /// A typed error: the caller receives `error` itself (MessagePack) as
    /// well as its message.
    pub fn typed<E: Serialize + fmt::Display + ?Sized>(error: &E) -> Self {
        let data = match encode(error) {
            Ok(bytes) => Some(bytes),
            Err(e) => {
                log::warn!("a typed handler error does not encode ({e}); sending its message only");
                None
            }
        };
        HandlerError {
            message: error.to_string(),
            data,
        }
    }

    /// Converts any error, keeping its message.
    pub fn from_error(error: impl std::error::Error) -> Self {
        HandlerError::new(error)
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The encoded typed error, if any.
    pub(crate) fn data(&self) -> Option<&[u8]> {
        self.data.as_deref()
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(error: E) -> Self {
        HandlerError::new(error)
    }
}

/// Why an erased handler produced no value.
#[derive(Debug)]
pub(crate) enum Failure {
    BadArguments(String),
    Handler(HandlerError),
}

pub(crate) type ErasedHandler =
    dyn Fn(&CallContext, &[u8]) -> Result<Vec<u8>, Failure> + Send + Sync;

/// An async handler, erased: the arguments are decoded at once, the rest
/// is the future.
#[cfg(feature = "tokio")]
pub(crate) type ErasedAsync = dyn Fn(
        CallContext,
        &[u8],
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Vec<u8>, Failure>> + Send>>
    + Send
    + Sync;

/// A registered handler.
#[derive(Clone)]
pub(crate) enum Handler {
    /// Runs on a worker thread.
    Sync(Arc<ErasedHandler>),
    /// Runs on the reactor thread, at once (declared non-blocking).
    Inline(Arc<ErasedHandler>),
    /// Started by a worker on this runtime, where it is awaited.
    #[cfg(feature = "tokio")]
    Async(Arc<ErasedAsync>, tokio::runtime::Handle),
}

/// Method name → handler, shared by the node handle (which registers) and
/// the workers (which look up).
#[derive(Default)]
pub(crate) struct Registry {
    map: RwLock<HashMap<String, Handler>>,
    /// Inline handlers in `map` (changed under its write lock), so that the
    /// reactor, which asks about every job, skips the lookup when there are
    /// none.
    inlines: AtomicUsize,
}

impl Registry {
    pub(crate) fn insert<A, R, F>(&self, method: &str, handler: F)
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(&CallContext, A) -> Result<R, HandlerError> + Send + Sync + 'static,
    {
        self.insert_erased(method, Arc::new(erase(handler)));
    }

    /// Registers a handler that runs on the reactor thread.
    pub(crate) fn insert_inline<A, R, F>(&self, method: &str, handler: F)
    where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(&CallContext, A) -> Result<R, HandlerError> + Send + Sync + 'static,
    {
        self.put(method, Handler::Inline(Arc::new(erase(handler))));
    }

    /// Registers `handler` under `method`, keeping `inlines` true.
    fn put(&self, method: &str, handler: Handler) {
        let mut map = self.map.write();
        if matches!(handler, Handler::Inline(_)) {
            self.inlines.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(Handler::Inline(_)) = map.insert(method.to_string(), handler) {
            self.inlines.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// The handler of `method` if it runs on the reactor.
    pub(crate) fn inline(&self, method: &str) -> Option<Arc<ErasedHandler>> {
        if self.inlines.load(Ordering::Relaxed) == 0 {
            return None;
        }
        match self.map.read().get(method) {
            Some(Handler::Inline(h)) => Some(h.clone()),
            _ => None,
        }
    }

    /// Registers a handler already erased (see [`erase`]).
    pub(crate) fn insert_erased(&self, method: &str, handler: Arc<ErasedHandler>) {
        self.put(method, Handler::Sync(handler));
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn insert_async<A, R, F, Fut>(
        &self,
        method: &str,
        runtime: tokio::runtime::Handle,
        handler: F,
    ) where
        A: DeserializeOwned,
        R: Serialize,
        F: Fn(CallContext, A) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Result<R, HandlerError>> + Send + 'static,
    {
        let erased = move |ctx: CallContext,
                           bytes: &[u8]|
              -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<Vec<u8>, Failure>> + Send>,
        > {
            match rmp_serde::from_slice::<A>(bytes) {
                Err(e) => {
                    let failure = Failure::BadArguments(e.to_string());
                    Box::pin(std::future::ready(Err(failure)))
                }
                Ok(args) => {
                    let future = handler(ctx, args);
                    Box::pin(async move {
                        let reply = future.await.map_err(Failure::Handler)?;
                        encode(&reply).map_err(|e| Failure::Handler(HandlerError::new(e)))
                    })
                }
            }
        };
        self.put(method, Handler::Async(Arc::new(erased), runtime));
    }

    pub(crate) fn remove(&self, method: &str) -> bool {
        let mut map = self.map.write();
        match map.remove(method) {
            Some(Handler::Inline(_)) => {
                self.inlines.fetch_sub(1, Ordering::Relaxed);
                true
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Whether the built-in service `service` has any method here.
    pub(crate) fn serves(&self, service: &str) -> bool {
        self.map
            .read()
            .keys()
            .any(|m| crate::protocol::reserved_service(m) == Some(service))
    }

    pub(crate) fn get(&self, method: &str) -> Option<Handler> {
        self.map.read().get(method).cloned()
    }

    /// Whether a handler is registered under `method`.
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    pub(crate) fn contains(&self, method: &str) -> bool {
        self.map.read().contains_key(method)
    }

    /// The application's methods (not the built-in services'), sorted.
    pub(crate) fn methods(&self) -> Vec<String> {
        let mut m: Vec<String> = self
            .map
            .read()
            .keys()
            .filter(|m| crate::protocol::reserved_service(m).is_none())
            .cloned()
            .collect();
        m.sort();
        m
    }

    pub(crate) fn clear(&self) {
        let mut map = self.map.write();
        map.clear();
        self.inlines.store(0, Ordering::Relaxed);
    }
}

/// A typed handler as bytes in, bytes out: the arguments decoded from
/// MessagePack, the reply encoded.
pub(crate) fn erase<A, R, F>(
    handler: F,
) -> impl Fn(&CallContext, &[u8]) -> Result<Vec<u8>, Failure> + Send + Sync + 'static
where
    A: DeserializeOwned,
    R: Serialize,
    F: Fn(&CallContext, A) -> Result<R, HandlerError> + Send + Sync + 'static,
{
    move |ctx: &CallContext, bytes: &[u8]| -> Result<Vec<u8>, Failure> {
        let args: A =
            rmp_serde::from_slice(bytes).map_err(|e| Failure::BadArguments(e.to_string()))?;
        let reply = handler(ctx, args).map_err(Failure::Handler)?;
        encode(&reply).map_err(|e| Failure::Handler(HandlerError::new(e)))
    }
}

/// Encodes a value as MessagePack with structs as maps keyed by field name
/// (what other languages' MessagePack libraries decode most readily).
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, String> {
    rmp_serde::to_vec_named(value).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reactor_finds_inline_handlers_and_only_those() {
        let r = Registry::default();
        let add = |_c: &CallContext, (a, b): (i32, i32)| -> Result<i32, HandlerError> { Ok(a + b) };
        r.insert("sync", add);
        assert!(r.inline("sync").is_none(), "no inline handler at all");
        r.insert_inline("fast", add);
        assert!(r.inline("fast").is_some());
        assert!(r.inline("sync").is_none());
        // Replaced by a blocking handler: no longer inline.
        r.insert("fast", add);
        assert!(r.inline("fast").is_none());
        assert_eq!(r.inlines.load(Ordering::Relaxed), 0);
        r.insert_inline("fast", add);
        r.insert_inline("fast", add);
        assert_eq!(
            r.inlines.load(Ordering::Relaxed),
            1,
            "a replaced inline counts once"
        );
        assert!(r.remove("fast"));
        assert!(r.inline("fast").is_none());
        assert_eq!(r.inlines.load(Ordering::Relaxed), 0);
        r.insert_inline("again", add);
        r.clear();
        assert!(r.inline("again").is_none());
        assert_eq!(r.inlines.load(Ordering::Relaxed), 0);
    }
}
