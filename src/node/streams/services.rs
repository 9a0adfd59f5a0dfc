//! The node's stream services, by name, as the reactor runs them: the
//! typed handlers of [`Node::on_stream`](crate::Node::on_stream), erased by
//! `stream::incoming`.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use super::shared::Shared;
use crate::node::StreamTx;

/// A stream service's handler: given the stream's shared state, where its
/// commands go, and the opener's init data, it runs on the stream's own
/// thread.
pub(crate) type Service = Arc<dyn Fn(Arc<Shared>, StreamTx, &[u8]) + Send + Sync>;

/// The node's stream services, by name.
#[derive(Default)]
pub(crate) struct Services {
    map: RwLock<HashMap<String, Service>>,
}

impl Services {
    pub(crate) fn insert(&self, name: &str, service: Service) {
        self.map.write().insert(name.to_string(), service);
    }

    pub(crate) fn remove(&self, name: &str) -> bool {
        self.map.write().remove(name).is_some()
    }

    pub(crate) fn get(&self, name: &str) -> Option<Service> {
        self.map.read().get(name).cloned()
    }

    pub(crate) fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.map.read().keys().cloned().collect();
        names.sort();
        names
    }

    pub(crate) fn clear(&self) {
        self.map.write().clear();
    }
}
