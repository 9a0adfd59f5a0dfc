//! Typed services from `#[bilateral::service]`: served and called, sync
//! and async, one peer and many, with typed errors; on the wire the same
//! `Trait.method` calls an untyped caller (or another language) makes.

mod common;

use std::time::Duration;

use bilateral::{CallContext, CallError, HandlerError, To};
use common::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StoreError {
    Missing(String),
    ReadOnly,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Missing(k) => write!(f, "no key {k:?}"),
            StoreError::ReadOnly => f.write_str("read only"),
        }
    }
}

#[bilateral::service]
pub trait Store {
    /// The value of `key`.
    fn get(&self, key: String) -> Result<u64, StoreError>;
    /// Who is asking, from the call's context.
    fn whoami(&self, ctx: &CallContext) -> String;
    /// No arguments, no reply.
    fn ping(&self);
    /// An untyped failure.
    fn fail(&self, why: String) -> Result<(), HandlerError>;
    /// Many arguments of several types.
    fn describe(&self, name: String, size: u32, tags: Vec<String>) -> String;
}

struct Memory(u64);

impl Store for Memory {
    fn get(&self, key: String) -> Result<u64, StoreError> {
        match key.as_str() {
            "answer" => Ok(self.0),
            "locked" => Err(StoreError::ReadOnly),
            _ => Err(StoreError::Missing(key)),
        }
    }
    fn whoami(&self, ctx: &CallContext) -> String {
        ctx.peer().to_string()
    }
    fn ping(&self) {}
    fn fail(&self, why: String) -> Result<(), HandlerError> {
        Err(HandlerError::new(why))
    }
    fn describe(&self, name: String, size: u32, tags: Vec<String>) -> String {
        format!("{name}:{size}:{}", tags.join(","))
    }
}

fn served(n: usize) -> (bilateral::Node, Vec<bilateral::Node>) {
    let client = builder("client").call_timeout(PATIENCE).start().unwrap();
    let servers = (0..n)
        .map(|i| {
            let s = node(&format!("s{i}"));
            s.serve(StoreServer::new(Memory(40 + i as u64))).unwrap();
            join(&client, &s);
            s
        })
        .collect();
    (client, servers)
}

#[test]
fn a_served_trait_is_called_through_its_typed_client() {
    let (client, servers) = served(1);
    let store = StoreClient::new(&client);
    assert_eq!(store.get("s0", "answer".into()), Ok(Ok(40)));
    assert_eq!(
        store.get("s0", "nope".into()),
        Ok(Err(StoreError::Missing("nope".into())))
    );
    assert_eq!(
        store.get("s0", "locked".into()),
        Ok(Err(StoreError::ReadOnly))
    );
    assert_eq!(store.whoami("s0"), Ok("client".to_string()));
    assert_eq!(store.ping("s0"), Ok(()));
    let Err(CallError::Remote(e)) = store.fail("s0", "on purpose".into()) else {
        panic!("an untyped remote error");
    };
    assert_eq!(e.message(), "on purpose");
    assert_eq!(
        store.describe("s0", "disk".into(), 3, vec!["a".into(), "b".into()]),
        Ok("disk:3:a,b".to_string())
    );
    assert_eq!(
        store.get("nobody", "answer".into()),
        Err(CallError::UnknownPeer)
    );
    // The methods are registered under `Trait.method`, for any caller.
    let mut methods = servers[0].methods();
    methods.sort();
    assert_eq!(
        methods,
        [
            "Store.describe",
            "Store.fail",
            "Store.get",
            "Store.ping",
            "Store.whoami"
        ]
    );
    let untyped: String = client
        .call_one("s0", "Store.describe", &("x", 1, ["y"]), PATIENCE)
        .unwrap();
    assert_eq!(untyped, "x:1:y");
}

#[test]
fn typed_calls_to_many_peers_async_and_cast() {
    let (client, _servers) = served(3);
    let store = StoreClient::new(&client).with_timeout(Duration::from_secs(5));
    let all = store.get_to(To::All, "answer".into()).unwrap();
    let values: Vec<_> = all
        .iter()
        .map(|r| (r.peer.clone(), r.result.clone()))
        .collect();
    assert_eq!(
        values,
        [
            ("s0".to_string(), Ok(Ok(40))),
            ("s1".to_string(), Ok(Ok(41))),
            ("s2".to_string(), Ok(Ok(42)))
        ]
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(store.get_async("s1", "answer".into()).await, Ok(Ok(41)));
        let some = store
            .get_to_async(["s0", "s2", "ghost"], "locked".into())
            .await
            .unwrap();
        assert_eq!(some.get("s0"), Some(&Ok(Err(StoreError::ReadOnly))));
        assert_eq!(some.get("s2"), Some(&Ok(Err(StoreError::ReadOnly))));
        assert_eq!(some.get("ghost"), Some(&Err(CallError::UnknownPeer)));
    });
    assert_eq!(store.cast_ping(To::All).unwrap(), 3);
}

#[bilateral::service]
pub trait Slow {
    /// Waits, then answers: served without holding a worker.
    async fn echo_later(
        &self,
        ctx: &CallContext,
        ms: u64,
        text: String,
    ) -> Result<String, StoreError>;
}

struct Sleeper;

impl Slow for Sleeper {
    async fn echo_later(
        &self,
        ctx: &CallContext,
        ms: u64,
        text: String,
    ) -> Result<String, StoreError> {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        if text.is_empty() {
            return Err(StoreError::Missing(ctx.peer().to_string()));
        }
        Ok(text)
    }
}

#[test]
fn async_service_methods_are_served_on_the_runtime() {
    let rt = runtime();
    let server = builder("server").workers(1).start().unwrap();
    rt.block_on(async { server.serve(SlowServer::new(Sleeper)) })
        .unwrap();
    let client = node("client");
    join(&client, &server);
    let slow = SlowClient::new(&client).with_timeout(Duration::from_secs(5));
    rt.block_on(async {
        // Twenty at once on one worker, each waiting 500 ms.
        let calls: Vec<_> = (0..20)
            .map(|i| slow.echo_later_async("server", 500, format!("#{i}")))
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            assert_eq!(call.await, Ok(Ok(format!("#{i}"))));
        }
        assert_eq!(
            slow.echo_later_async("server", 1, String::new()).await,
            Ok(Err(StoreError::Missing("client".into())))
        );
    });
}
