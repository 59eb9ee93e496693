//! Compiled chain versions (immutable, so cached forever), the latest
//! version of each stored chain as last seen, and inline chains stored as
//! new versions when a run brings one.

use std::sync::Arc;

use prost::Message;

use super::{ChainSource, Kernel, KernelError, KernelResult};
use crate::chain::{self, CompiledChain};
use crate::proto::taskloom::v1 as pb;
use crate::store::{AuditRecord, ChainCheck, StoreError};

impl Kernel {
    /// The audit record of a chain version a `StartRun` with an inline
    /// chain stores: the run's caller changed the chain.
    fn inline_chain_audit(&self, namespace: &str, chain_id: &str) -> AuditRecord {
        AuditRecord {
            id: uuid::Uuid::now_v7().to_string(),
            at: chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6),
            actor: crate::api::caller().actor,
            action: "StartRun".to_string(),
            resource_type: "chain".to_string(),
            resource_id: chain_id.to_string(),
            request_id: String::new(),
            outcome: AuditRecord::OK.to_string(),
            error_message: String::new(),
            replica: self.instance_id().to_string(),
            namespace: namespace.to_string(),
        }
    }

    pub(super) fn cached_chain(
        &self,
        namespace: &str,
        id: &str,
        version: i64,
    ) -> Option<Arc<CompiledChain>> {
        self.inner
            .chains
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&(namespace.to_string(), id.to_string(), version))
            .cloned()
    }

    /// A compiled chain version (versions are immutable, so cached forever).
    pub async fn chain(
        &self,
        namespace: &str,
        id: &str,
        version: i64,
    ) -> KernelResult<Arc<CompiledChain>> {
        if let Some(chain) = self.cached_chain(namespace, id, version) {
            return Ok(chain);
        }
        let store = &self.inner.store;
        let record = store.get_chain(namespace, id, Some(version), true).await?;
        let definition = pb::Chain::decode(record.definition.as_slice())
            .map_err(|error| KernelError::Corrupt(format!("chain {id} v{version}: {error}")))?;
        let compiled = chain::compile(&definition).map_err(|violations| {
            KernelError::Corrupt(format!(
                "stored chain {id} v{version} no longer compiles: {}",
                violations
                    .iter()
                    .map(|v| format!("{}: {}", v.field, v.description))
                    .collect::<Vec<_>>()
                    .join("; ")
            ))
        })?;
        let compiled = Arc::new(compiled);
        self.inner
            .chains
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(
                (namespace.to_string(), id.to_string(), version),
                compiled.clone(),
            );
        Ok(compiled)
    }

    /// Resolves the chain version a new run pins, and what its batch must
    /// check about it. `fresh` bypasses the latest-version cache.
    pub(super) async fn resolve_chain(
        &self,
        namespace: &str,
        source: &ChainSource,
        fresh: bool,
    ) -> KernelResult<(String, i64, Option<ChainCheck>)> {
        let store = &self.inner.store;
        match source {
            ChainSource::Stored { id, version } => {
                let cached = match version {
                    None if !fresh => self.cached_latest(namespace, id),
                    Some(v) if !fresh && self.cached_chain(namespace, id, *v).is_some() => Some(*v),
                    _ => None,
                };
                let resolved = match cached {
                    Some(v) => v,
                    None => {
                        let record = store
                            .get_chain(namespace, id, *version, false)
                            .await
                            .map_err(|error| match error {
                                StoreError::NotFound { .. } => {
                                    KernelError::NotFound(match version {
                                        Some(v) => format!("chain {id:?} has no version {v}"),
                                        None => format!("chain {id:?} not found"),
                                    })
                                }
                                other => other.into(),
                            })?;
                        if version.is_none() {
                            self.remember_latest(namespace, id, record.version);
                        }
                        record.version
                    }
                };
                let check = ChainCheck {
                    chain_id: id.clone(),
                    latest_version: version.is_none().then_some(resolved),
                };
                Ok((id.clone(), resolved, Some(check)))
            }
            ChainSource::Inline(chain) => {
                let mut definition = chain.clone();
                definition.version = 0;
                definition.etag.clear();
                definition.create_time = None;
                definition.update_time = None;
                let bytes = definition.encode_to_vec();
                let audit = self.inline_chain_audit(namespace, &definition.id);
                match store
                    .get_chain(namespace, &definition.id, None, false)
                    .await
                {
                    Ok(latest) if latest.definition == bytes => {
                        Ok((latest.id, latest.version, None))
                    }
                    Ok(_) => {
                        let updated = store
                            .update_chain(namespace, &definition.id, bytes, None, None, &audit)
                            .await?;
                        Ok((updated.record.id, updated.record.version, None))
                    }
                    Err(StoreError::NotFound { .. }) => {
                        match store
                            .create_chain(namespace, &definition.id, bytes.clone(), None, &audit)
                            .await
                        {
                            Ok(created) => Ok((created.record.id, created.record.version, None)),
                            // Another request stored it first.
                            Err(StoreError::AlreadyExists { .. }) => {
                                let latest = store
                                    .get_chain(namespace, &definition.id, None, false)
                                    .await?;
                                Ok((latest.id, latest.version, None))
                            }
                            Err(other) => Err(other.into()),
                        }
                    }
                    Err(other) => Err(other.into()),
                }
            }
        }
    }

    pub(super) fn cached_latest(&self, namespace: &str, id: &str) -> Option<i64> {
        self.inner
            .latest_versions
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&(namespace.to_string(), id.to_string()))
            .copied()
    }

    pub(super) fn remember_latest(&self, namespace: &str, id: &str, version: i64) {
        self.inner
            .latest_versions
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert((namespace.to_string(), id.to_string()), version);
    }

    /// The chain version a run pinned.
    pub async fn run_chain(&self, run_id: &str) -> KernelResult<Arc<CompiledChain>> {
        let run = self.get_run(run_id).await?;
        self.chain(&run.namespace, &run.chain_id, run.chain_version)
            .await
    }
}
