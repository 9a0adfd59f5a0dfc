//! The caller's side of a call: targets, per-peer results, waiting.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Instant;

use serde::de::DeserializeOwned;

use super::completion::{Completion, Ended};
use crate::error::{CallError, Error};

/// Which peers a call or cast goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum To {
    /// Every peer in session when the call starts.
    All,
    /// These peers, in this order (results come back in the same order).
    Peers(Vec<String>),
}

impl To {
    /// Every active peer.
    pub fn all() -> Self {
        To::All
    }

    /// One peer.
    pub fn peer(name: impl Into<String>) -> Self {
        To::Peers(vec![name.into()])
    }

    /// Several peers.
    pub fn peers<I, S>(names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        To::Peers(names.into_iter().map(Into::into).collect())
    }
}

impl From<&str> for To {
    fn from(name: &str) -> Self {
        To::peer(name)
    }
}

impl From<String> for To {
    fn from(name: String) -> Self {
        To::peer(name)
    }
}

impl From<&String> for To {
    fn from(name: &String) -> Self {
        To::peer(name.as_str())
    }
}

impl From<Vec<String>> for To {
    fn from(names: Vec<String>) -> Self {
        To::Peers(names)
    }
}

impl From<Vec<&str>> for To {
    fn from(names: Vec<&str>) -> Self {
        To::peers(names)
    }
}

impl From<&[&str]> for To {
    fn from(names: &[&str]) -> Self {
        To::peers(names.iter().copied())
    }
}

impl From<&[String]> for To {
    fn from(names: &[String]) -> Self {
        To::peers(names.iter().cloned())
    }
}

impl<const N: usize> From<[&str; N]> for To {
    fn from(names: [&str; N]) -> Self {
        To::peers(names)
    }
}

/// One targeted peer's part of a call's result.
#[derive(Clone, Debug, PartialEq)]
pub struct Response<R> {
    /// The peer.
    pub peer: String,
    /// Its reply, or why there is none.
    pub result: Result<R, CallError>,
}

/// The result of a call: exactly one [`Response`] per targeted peer, in the
/// order of the targets (for [`To::All`], sorted by name).
#[derive(Clone, Debug, PartialEq)]
pub struct Responses<R> {
    entries: Vec<Response<R>>,
}

impl<R> Responses<R> {
    /// How many peers were targeted.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no peer was targeted (for example `To::All` with no active peer).
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry.
    pub fn iter(&self) -> std::slice::Iter<'_, Response<R>> {
        self.entries.iter()
    }

    /// The result for `peer`, if it was targeted.
    pub fn get(&self, peer: &str) -> Option<&Result<R, CallError>> {
        self.entries
            .iter()
            .find(|r| r.peer == peer)
            .map(|r| &r.result)
    }

    /// The peers that replied, with their replies.
    pub fn replies(&self) -> impl Iterator<Item = (&str, &R)> {
        self.entries
            .iter()
            .filter_map(|r| r.result.as_ref().ok().map(|v| (r.peer.as_str(), v)))
    }

    /// The peers that did not reply, with the reason.
    pub fn failures(&self) -> impl Iterator<Item = (&str, &CallError)> {
        self.entries
            .iter()
            .filter_map(|r| r.result.as_ref().err().map(|e| (r.peer.as_str(), e)))
    }

    /// Whether every targeted peer replied.
    pub fn all_ok(&self) -> bool {
        self.entries.iter().all(|r| r.result.is_ok())
    }

    /// The entries, consumed.
    pub fn into_vec(self) -> Vec<Response<R>> {
        self.entries
    }

    /// Each entry's result converted by `f`.
    pub(crate) fn map_results<S>(
        self,
        mut f: impl FnMut(Result<R, CallError>) -> Result<S, CallError>,
    ) -> Responses<S> {
        let entries = self
            .entries
            .into_iter()
            .map(|r| Response {
                peer: r.peer,
                result: f(r.result),
            })
            .collect();
        Responses { entries }
    }
}

impl<R> IntoIterator for Responses<R> {
    type Item = Response<R>;
    type IntoIter = std::vec::IntoIter<Response<R>>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a, R> IntoIterator for &'a Responses<R> {
    type Item = &'a Response<R>;
    type IntoIter = std::slice::Iter<'a, Response<R>>;
    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter()
    }
}

/// A call in flight, from [`crate::Node::start_call`]. Many can be in flight
/// at once from one thread or task.
///
/// Collect its result with [`PendingCall::wait`] (blocking) or by awaiting
/// it (it is a [`Future`], on any runtime); either way it ends by its
/// deadline whatever the node's threads are doing. Dropping it unfinished
/// cancels the call: its entries leave the node's pending table at once, and
/// replies arriving later are dropped and counted as late.
#[derive(Debug)]
#[must_use = "a call's result is only known by waiting for it; dropping it cancels the call"]
pub struct PendingCall<R> {
    pub(crate) peers: Vec<String>,
    pub(crate) completion: Arc<Completion>,
    pub(crate) deadline: Instant,
    /// The node, to cancel the call if it is dropped unfinished.
    pub(crate) node: Weak<super::Inner>,
    pub(crate) finished: bool,
    pub(crate) _reply: PhantomData<fn() -> R>,
}

impl<R: DeserializeOwned> PendingCall<R> {
    /// The targeted peers, in result order.
    pub fn peers(&self) -> &[String] {
        &self.peers
    }

    /// When the call gives up on peers that have not answered.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Waits until every targeted peer has answered or has a known reason for
    /// not answering, and at the latest until the deadline; peers still
    /// silent then get [`CallError::Timeout`]. Never waits past the deadline,
    /// whatever the node's threads are doing.
    pub fn wait(mut self) -> Responses<R> {
        let ended = self.completion.wait_until(self.deadline);
        self.finish(ended)
    }

    /// The responses, once the wait has `ended`.
    fn finish(&mut self, ended: Ended) -> Responses<R> {
        let fallback = match ended {
            Ended::Closed => CallError::Closed,
            Ended::Complete | Ended::TimedOut => CallError::Timeout,
        };
        if ended == Ended::TimedOut {
            // The reactor's table still holds the call: let it go now.
            self.cancel();
        }
        self.finished = true;
        let entries = std::mem::take(&mut self.peers)
            .into_iter()
            .zip(self.completion.take())
            .map(|(peer, slot)| {
                let result = match slot.unwrap_or_else(|| Err(fallback.clone())) {
                    Ok(bytes) => rmp_serde::from_slice::<R>(&bytes)
                        .map_err(|e| CallError::BadReply(e.to_string())),
                    Err(e) => Err(e),
                };
                Response { peer, result }
            })
            .collect();
        Responses { entries }
    }
}

impl<R> PendingCall<R> {
    /// Tells the reactor the caller no longer waits, if it still holds the call.
    fn cancel(&self) {
        if let Some(id) = self.completion.abandon() {
            if let Some(inner) = self.node.upgrade() {
                super::Node { inner }.cancel_call(id);
            }
        }
    }
}

impl<R: DeserializeOwned> Future for PendingCall<R> {
    type Output = Responses<R>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Responses<R>> {
        assert!(!self.finished, "a PendingCall polled after it completed");
        let deadline = self.deadline;
        match self.completion.poll_until(cx, deadline) {
            Poll::Ready(ended) => Poll::Ready(self.finish(ended)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<R> Drop for PendingCall<R> {
    fn drop(&mut self) {
        if !self.finished {
            self.cancel();
        }
    }
}

/// A call started with [`crate::Node::call_async`]: its responses, or why
/// the call could not be made. Borrows nothing; `Send` if `R` is.
#[derive(Debug)]
#[must_use = "a call's result is only known by awaiting it; dropping it cancels the call"]
pub struct CallFuture<R> {
    started: Result<PendingCall<R>, Option<Error>>,
}

impl<R> CallFuture<R> {
    pub(crate) fn new(started: Result<PendingCall<R>, Error>) -> Self {
        CallFuture {
            started: started.map_err(Some),
        }
    }
}

impl<R: DeserializeOwned> Future for CallFuture<R> {
    type Output = Result<Responses<R>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().started {
            Ok(call) => Pin::new(call).poll(cx).map(Ok),
            Err(e) => Poll::Ready(Err(e.take().unwrap_or(Error::Closed))),
        }
    }
}

/// A call to one peer started with [`crate::Node::call_one_async`].
#[derive(Debug)]
#[must_use = "a call's result is only known by awaiting it; dropping it cancels the call"]
pub struct CallOneFuture<R> {
    call: CallFuture<R>,
}

impl<R> CallOneFuture<R> {
    pub(crate) fn new(call: CallFuture<R>) -> Self {
        CallOneFuture { call }
    }
}

impl<R: DeserializeOwned> Future for CallOneFuture<R> {
    type Output = Result<R, CallError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.get_mut().call)
            .poll(cx)
            .map(super::one_result)
    }
}
