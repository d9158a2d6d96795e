//! The exporter (one active per pool, through a lease in the Back End) and the importer.
//!
//! The exporter polls its Back End's change log every [`POLL`] and is also woken directly
//! by writes made on its own server, so a change normally leaves within milliseconds of
//! its commit; the configured sync interval is only the bound the status compares with.
//! A shipment is acknowledged by the partner after it committed the batch to its own Back
//! End; only then does the exporter advance, so a crash on either side re-sends (and the
//! importer skips what it already has) rather than loses.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tracing::Instrument as _;

use base64::Engine as _;
use clock::Clock;
use store::{BackEnd, Change, ReplicaStore, StoreError, UserItem};
use tokio::sync::{Mutex, Notify, watch};
use tokio_util::task::TaskTracker;
use topology::Topology;

use crate::Module;
use crate::heard::HeardBacklog;
use crate::protocol::{
    BATCH_MAX_BYTES, CmsVersion, IMPORT_PATH, ImportBatch, ImportRequest, ImportResponse,
    LINK_MAX_BODY_BYTES, PoolStatus, STATUS_PATH,
};

/// How often the active exporter looks for new changes.
pub const POLL: Duration = Duration::from_millis(50);
/// How long the exporter lease lasts without renewal.
pub const LEASE_TTL_MS: i64 = 3_000;
/// How often the standby CMS is asked where it stands when nothing is left to ship.
pub const STANDBY_CHECK: Duration = Duration::from_secs(1);
/// How long a question to the partner over the backup link may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(5);
/// At most this many change-log rows per shipment (MaxBatchesPerUserStoreSync).
pub const MAX_BATCH: i64 = 500;

/// Why a shipment or an import failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} has no backup pool: pair it with Set-CsPoolBackupRelationship first")]
    NotPaired(String),
    #[error("no Front End of the backup pool {pool} accepted the batch: {reason}")]
    PartnerUnreachable { pool: String, reason: String },
    #[error("refused: {0}")]
    Refused(String),
    /// The partner refused a shipment as such (too large or malformed).
    #[error("the partner refused the shipment: {reason}")]
    ItemRefused { reason: String },
}

/// What status shows for a change that cannot be shipped: whose, which item, why.
fn unshippable_reason(change: &Change, why: &str) -> String {
    format!(
        "change {} ({} of {}) cannot be shipped: {why}; it is skipped and missing from the backup copy until the user saves it again",
        change.seq, change.key, change.sip
    )
}

/// The items of one part of a full resync and the files (base64 by SHA-256) they refer to.
type ResyncPart = (Vec<store::UserItem>, BTreeMap<String, String>);

/// Cuts a module's items (each with the file it refers to, if any) into the parts of a full
/// resync: in order, each part about `max_bytes` or less, except that an item larger than
/// that travels alone; an empty module is one empty part, so the resync still replaces the
/// copy.
fn resync_parts(
    items: Vec<(store::UserItem, Option<(String, String)>)>,
    max_bytes: usize,
) -> Vec<ResyncPart> {
    let mut parts: Vec<ResyncPart> = vec![(Vec::new(), BTreeMap::new())];
    let mut total = 0usize;
    for (item, file) in items {
        let size = serde_json::to_vec(&item).map_or(0, |v| v.len())
            + file.as_ref().map_or(0, |(k, v)| k.len() + v.len());
        if parts.last().is_some_and(|(p, _)| !p.is_empty()) && total + size > max_bytes {
            parts.push((Vec::new(), BTreeMap::new()));
            total = 0;
        }
        total += size;
        if let Some((current, files)) = parts.last_mut() {
            current.push(item);
            files.extend(file);
        }
    }
    parts
}

/// A change's size in a shipment, with the file it refers to.
fn change_bytes(change: &Change, files: &BTreeMap<String, String>) -> usize {
    serde_json::to_vec(change).map_or(0, |v| v.len())
        + change
            .value
            .as_deref()
            .and_then(content_sha)
            .and_then(|sha| files.get(&sha))
            .map_or(0, String::len)
}

/// A paired pool's Backup Service on one Front End.
#[derive(Debug, Clone)]
pub struct BackupService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    fqdn: String,
    pool: String,
    backend: BackEnd,
    replica: ReplicaStore,
    topology: watch::Receiver<Arc<Topology>>,
    /// The replica's version: the settings are read again only when it moves.
    replica_version: watch::Receiver<i64>,
    /// The Backup Service settings as of a replica version (read on every user write
    /// under [`crate::commit`], so not from the replica each time).
    settings: std::sync::Mutex<Option<(i64, cms::directory::BackupSettings)>>,
    api: api::Client,
    clock: Clock,
    wake: Notify,
    /// What the partner's Backup Service had not shipped here when it last answered.
    heard: std::sync::Mutex<Option<HeardBacklog>>,
    /// Wakes the partner watch at shutdown.
    wake_followers: Notify,
    running: AtomicBool,
    /// Serialises shipping rounds on this server.
    round: Mutex<()>,
    stopped: AtomicBool,
    /// When the standby CMS was last asked where it stands with nothing new to ship.
    standby_checked_ms: std::sync::atomic::AtomicI64,
    /// The most changes the next shipment carries: `MAX_BATCH`, halved while the partner
    /// refuses shipments, until the one change it refuses is found.
    batch_cap: std::sync::atomic::AtomicUsize,
    /// How this Front End acknowledges its users' writes (see [`crate::commit`]).
    commit: std::sync::Mutex<crate::status::CommitState>,
    /// Signalled after every acknowledged shipment (synchronous writes wait on it).
    shipped: Notify,
}

impl BackupService {
    /// Starts the service's loops (the exporter, and the watch of the partner's backlog)
    /// as tasks of `tasks`; [`BackupService::shutdown`] ends them.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        fqdn: String,
        pool: String,
        backend: BackEnd,
        replica: ReplicaStore,
        topology: watch::Receiver<Arc<Topology>>,
        replica_version: watch::Receiver<i64>,
        api: api::Client,
        clock: Clock,
        tasks: &TaskTracker,
    ) -> BackupService {
        let service = BackupService {
            inner: Arc::new(Inner {
                fqdn,
                pool,
                backend,
                replica,
                topology,
                replica_version,
                settings: std::sync::Mutex::new(None),
                api,
                clock,
                heard: std::sync::Mutex::new(None),
                wake_followers: Notify::new(),
                wake: Notify::new(),
                running: AtomicBool::new(true),
                round: Mutex::new(()),
                stopped: AtomicBool::new(false),
                standby_checked_ms: std::sync::atomic::AtomicI64::new(0),
                batch_cap: std::sync::atomic::AtomicUsize::new(MAX_BATCH as usize),
                commit: std::sync::Mutex::new(crate::status::CommitState::default()),
                shipped: Notify::new(),
            }),
        };
        tasks.spawn(service.clone().run());
        tasks.spawn(service.clone().follow_partner());
        service
    }

    /// The Front End this service runs on.
    pub fn fqdn(&self) -> &str {
        &self.inner.fqdn
    }

    /// The Backup Service settings, read from the replica again only when it moved to a
    /// new version.
    pub async fn settings(&self) -> cms::directory::BackupSettings {
        let version = *self.inner.replica_version.borrow();
        if let Some((v, s)) = &*self.inner.settings.lock().expect("settings lock")
            && *v == version
        {
            return s.clone();
        }
        let read = settings(&self.inner.replica).await;
        *self.inner.settings.lock().expect("settings lock") = Some((version, read.clone()));
        read
    }

    pub(crate) fn clock(&self) -> Clock {
        self.inner.clock
    }

    pub(crate) fn api(&self) -> &api::Client {
        &self.inner.api
    }

    /// Signalled at this Front End's next acknowledged shipment; registered before a check
    /// so that a shipment between the check and the wait is not missed.
    pub(crate) fn shipped_signal(&self) -> tokio::sync::futures::Notified<'_> {
        self.inner.shipped.notified()
    }

    pub fn topology(&self) -> Arc<Topology> {
        self.inner.topology.borrow().clone()
    }

    /// How this Front End acknowledges its users' writes now.
    pub fn commit_state(&self) -> crate::status::CommitState {
        self.inner.commit.lock().expect("commit state lock").clone()
    }

    pub(crate) fn set_commit_state(&self, state: crate::status::CommitState) {
        *self.inner.commit.lock().expect("commit state lock") = state;
    }

    pub fn pool(&self) -> &str {
        &self.inner.pool
    }

    pub fn backend(&self) -> &BackEnd {
        &self.inner.backend
    }

    /// Ships now instead of at the next poll (called after each local write).
    pub fn wake(&self) {
        self.inner.wake.notify_one();
    }

    pub fn is_running(&self) -> bool {
        self.inner.running.load(Ordering::SeqCst)
    }

    /// Starts or stops the `LYNCBACKUP` service. Stopping gives the lease up at once.
    pub async fn set_running(&self, running: bool) {
        self.inner.running.store(running, Ordering::SeqCst);
        if !running {
            let _ = self
                .inner
                .backend
                .release_backup_lease(&self.inner.fqdn)
                .await;
        }
        self.wake();
    }

    /// Gives the lease up (graceful shutdown).
    pub async fn shutdown(&self) {
        self.inner.stopped.store(true, Ordering::SeqCst);
        let _ = self
            .inner
            .backend
            .release_backup_lease(&self.inner.fqdn)
            .await;
        self.wake();
        self.inner.wake_followers.notify_one();
    }

    /// Applies a shipment from the partner to this pool's backup copy (see [`import`]).
    pub async fn import(&self, request: ImportRequest) -> Result<ImportResponse, BackupError> {
        let topology = self.inner.topology.borrow().clone();
        import(&self.inner.backend, &topology, &self.inner.pool, request).await
    }

    /// Asks a Front End of `pool` over the backup link (`GET`, JSON answer).
    pub async fn ask<T: serde::de::DeserializeOwned>(
        &self,
        pool: &str,
        path_and_query: &str,
    ) -> Result<T, String> {
        let targets = backup_endpoints(&self.inner.topology.borrow(), pool);
        let mut last = format!("{pool} has no Front End servers");
        for base in targets {
            match self.inner.api.get(&base, path_and_query, ASK_TIMEOUT).await {
                Ok(v) => return Ok(v),
                Err(e) => last = format!("{base}: {e}"),
            }
        }
        Err(last)
    }

    /// The partner's backlog toward this pool as last heard (see [`crate::heard`]); with
    /// `pool`, only when it is that pool's.
    pub fn partner_heard(&self, pool: Option<&str>) -> Option<HeardBacklog> {
        self.inner
            .heard
            .lock()
            .expect("partner backlog lock")
            .clone()
            .filter(|h| pool.is_none_or(|p| h.pool.eq_ignore_ascii_case(p)))
    }

    /// Keeps [`BackupService::partner_heard`] current while the partner answers, asking
    /// every [`crate::heard::PERIOD`]; ends at shutdown.
    async fn follow_partner(self) {
        while !self.inner.stopped.load(Ordering::SeqCst) {
            if let Some(partner) = self.partner()
                && let Ok(status) = self.ask::<PoolStatus>(&partner, STATUS_PATH).await
            {
                let mut last = self.inner.heard.lock().expect("partner backlog lock");
                // As of when the partner made the report (an answer slow under load is
                // older than its arrival), never later than now.
                let at = status.at_ms.min(self.inner.clock.now_ms());
                let heard = HeardBacklog::from_status(&status, at).with_rate(last.as_ref());
                *last = Some(heard);
            }
            tokio::select! {
                _ = self.inner.clock.sleep(crate::heard::PERIOD) => {}
                _ = self.inner.wake_followers.notified() => {}
            }
        }
    }

    /// The partner pool, from the live topology.
    pub fn partner(&self) -> Option<String> {
        self.inner
            .topology
            .borrow()
            .backup_pool_of(&self.inner.pool)
            .map(str::to_string)
    }

    /// The modules this pool exports: user data always, the CMS when it lives here.
    pub fn exports(&self, module: Module) -> bool {
        match module {
            Module::PresenceFocus | Module::DataConf => self.partner().is_some(),
            Module::CmsMaster => {
                self.partner().is_some()
                    && self
                        .inner
                        .topology
                        .borrow()
                        .deployment
                        .cms_pool
                        .eq_ignore_ascii_case(&self.inner.pool)
            }
        }
    }

    /// The configured sync interval (seconds).
    pub async fn sync_interval_secs(&self) -> u64 {
        self.settings().await.sync_interval_secs
    }

    async fn run(self) {
        let mut last_renew = 0i64;
        let mut holder = false;
        // After a failed shipment: the one retry policy, from a quarter second to one
        // second apart while the failures go on, from the start again after a success.
        let retrying = || clock::Backoff::new(Duration::from_millis(250), Duration::from_secs(1));
        let mut retry = retrying();
        while !self.inner.stopped.load(Ordering::SeqCst) {
            if self.is_running() && self.partner().is_some() {
                let now = self.inner.clock.now_ms();
                // Holders renew, others try to take over, once a third of a lease: a
                // write transaction every 50 ms would compete with users' writes.
                if now - last_renew > LEASE_TTL_MS / 3 {
                    holder = self
                        .inner
                        .backend
                        .acquire_backup_lease(&self.inner.fqdn, LEASE_TTL_MS)
                        .await
                        .unwrap_or(false);
                    last_renew = now;
                }
                if holder {
                    match self.ship_all().await {
                        Ok(()) => retry = retrying(),
                        Err(e) => {
                            tracing::debug!(error = %e, "backup shipment failed; retrying");
                            retry.wait(&self.inner.clock).await;
                        }
                    }
                }
            } else {
                holder = false;
            }
            tokio::select! {
                _ = self.inner.wake.notified() => {}
                _ = self.inner.clock.sleep(POLL) => {}
            }
        }
    }

    /// One round: every module shipped until nothing is pending (or a shipment fails).
    pub async fn ship_all(&self) -> Result<(), BackupError> {
        let _round = self.inner.round.lock().await;
        let mut first_error = None;
        for module in Module::ALL {
            if !self.exports(module) {
                continue;
            }
            if let Err(e) = self.ship_module(module).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn ship_module(&self, module: Module) -> Result<(), BackupError> {
        let partner = self
            .partner()
            .ok_or_else(|| BackupError::NotPaired(self.inner.pool.clone()))?;
        let be = &self.inner.backend;
        let name = module.short_name();
        loop {
            let state = be.export_state(name).await?;
            let acked = state.as_ref().map_or(0, |s| s.acked_seq);
            if state.as_ref().is_some_and(|s| s.resync) {
                let result = self.resync(module, &partner).await;
                if let Err(e) = &result {
                    be.record_export(name, &partner, acked, Some(&e.to_string()))
                        .await?;
                }
                result?;
                continue;
            }
            let (batch, files, last) = match module {
                Module::CmsMaster => {
                    // Always to the newest version, as one snapshot (see
                    // `BackEnd::cms_shipment`).
                    let versions = be.cms_shipment(acked).await?;
                    let Some(last) = versions.last().map(|(v, _)| v.version) else {
                        return self.check_standby(&partner, acked).await;
                    };
                    let out = versions
                        .into_iter()
                        .map(|(v, items)| CmsVersion {
                            version: v.version,
                            epoch: v.epoch,
                            created_at: v.created_at,
                            description: v.description,
                            items,
                        })
                        .collect();
                    let batch = ImportBatch::Cms {
                        versions: out,
                        after: acked,
                        history: be.history().await?,
                    };
                    (batch, BTreeMap::new(), last)
                }
                _ => {
                    let changes = be.changes_after(name, acked, MAX_BATCH).await?;
                    if changes.is_empty() {
                        return Ok(());
                    }
                    let (changes, files) = match self.fit(changes, &partner).await? {
                        Some(fitted) => fitted,
                        // The first change could not be shipped; it is recorded, go on.
                        None => continue,
                    };
                    let last = changes.last().map_or(acked, |c| c.seq);
                    (ImportBatch::Changes { changes }, files, last)
                }
            };
            let request = ImportRequest {
                source_pool: self.inner.pool.clone(),
                module: name.to_string(),
                batch,
                files,
            };
            // One span per shipment: its module, partner and range (the lines inside, at
            // debug level, say how long it took and what the partner answered).
            let span = tracing::info_span!("shipment", module = name, to = %partner, after = acked, through = last);
            let sent_at = std::time::Instant::now();
            let sent = self.send(&partner, &request).instrument(span.clone()).await;
            span.in_scope(|| match &sent {
                Ok(_) => tracing::debug!(took_ms = sent_at.elapsed().as_millis() as u64, "shipment acknowledged"),
                Err(e) => tracing::debug!(took_ms = sent_at.elapsed().as_millis() as u64, error = %e, "shipment failed"),
            });
            match sent {
                Ok(resp) => {
                    be.record_export(name, &partner, resp.applied_seq.min(last), None)
                        .await?;
                    // Synchronous writes waiting on this Front End look again.
                    self.inner.shipped.notify_waiters();
                    self.inner
                        .batch_cap
                        .store(MAX_BATCH as usize, Ordering::SeqCst);
                }
                // The partner refused the shipment as such (too large, malformed): halve
                // it until the one change it refuses is found, then record and skip that.
                Err(BackupError::ItemRefused { reason }) => {
                    if let ImportBatch::Changes { changes } = &request.batch {
                        if changes.len() > 1 {
                            self.inner
                                .batch_cap
                                .store(changes.len() / 2, Ordering::SeqCst);
                            continue;
                        }
                        if let Some(change) = changes.first() {
                            let bytes = change_bytes(change, &request.files);
                            be.record_unshippable(
                                change,
                                bytes as i64,
                                &partner,
                                &unshippable_reason(
                                    change,
                                    &format!("{partner} refused it: {reason}"),
                                ),
                            )
                            .await?;
                            self.inner
                                .batch_cap
                                .store(MAX_BATCH as usize, Ordering::SeqCst);
                            continue;
                        }
                    }
                    let e = BackupError::Refused(reason);
                    be.record_export(name, &partner, acked, Some(&e.to_string()))
                        .await?;
                    return Err(e);
                }
                Err(e) => {
                    be.record_export(name, &partner, acked, Some(&e.to_string()))
                        .await?;
                    return Err(e);
                }
            }
        }
    }

    /// With nothing new to ship, asks the standby where it stands every
    /// [`STANDBY_CHECK`]: a standby that was dropped (a fenced store rebuilt, an
    /// `Install-CsDatabase -Clean`) or holds another line than this store's is repaired
    /// at once, not at the next change of the configuration.
    async fn check_standby(&self, partner: &str, acked: i64) -> Result<(), BackupError> {
        let now = self.inner.clock.now_ms();
        let last = self.inner.standby_checked_ms.load(Ordering::SeqCst);
        if now - last < STANDBY_CHECK.as_millis() as i64 {
            return Ok(());
        }
        self.inner.standby_checked_ms.store(now, Ordering::SeqCst);
        let be = &self.inner.backend;
        let request = ImportRequest {
            source_pool: self.inner.pool.clone(),
            module: Module::CmsMaster.short_name().to_string(),
            batch: ImportBatch::Cms {
                versions: Vec::new(),
                after: acked,
                history: be.history().await?,
            },
            files: BTreeMap::new(),
        };
        let name = Module::CmsMaster.short_name();
        match self.send(partner, &request).await {
            Ok(resp) if resp.applied_seq < acked => {
                tracing::info!(
                    standby = resp.applied_seq,
                    acked,
                    "the standby Central Management store holds less than it acknowledged; shipping again from there"
                );
                be.record_export(name, partner, resp.applied_seq, None)
                    .await?;
                self.inner.wake.notify_one();
                Ok(())
            }
            Ok(_) => Ok(()),
            Err(e) => {
                be.record_export(name, partner, acked, Some(&e.to_string()))
                    .await?;
                Err(e)
            }
        }
    }

    /// A full resync: the module's whole content, then shipping resumes after it.
    async fn resync(&self, module: Module, partner: &str) -> Result<(), BackupError> {
        let be = &self.inner.backend;
        let name = module.short_name();
        if module == Module::CmsMaster {
            // The standby skips versions it holds; resending from the start converges it.
            be.complete_resync(name, partner, 0).await?;
            return Ok(());
        }
        let through_seq = be.change_head(name).await?;
        let items = be.all_user_items(Some(name)).await?;
        let resync = format!("{}-{through_seq}", store::now_ms());
        let parts = self.full_parts(items).await;
        let count = parts.len();
        for (part, (items, files)) in parts.into_iter().enumerate() {
            let request = ImportRequest {
                source_pool: self.inner.pool.clone(),
                module: name.to_string(),
                batch: ImportBatch::FullPart {
                    resync: resync.clone(),
                    part: part as i64,
                    items,
                    through_seq,
                    last: part + 1 == count,
                },
                files,
            };
            self.send(partner, &request).await?;
        }
        be.complete_resync(name, partner, through_seq).await?;
        Ok(())
    }

    /// A module's whole content with the files its items refer to, cut into the parts of
    /// a full resync (see [`resync_parts`]).
    async fn full_parts(&self, items: Vec<store::UserItem>) -> Vec<ResyncPart> {
        let mut with_files = Vec::with_capacity(items.len());
        for item in items {
            let mut file = None;
            if let Some(sha) = content_sha(&item.value)
                && let Some(bytes) = self.inner.backend.get_file(&sha).await
            {
                // A file damaged in this file store would make the partner refuse the
                // whole part, and the resync would never complete: it is left out.
                if store::hex_sha256(&bytes) == sha {
                    file = Some((sha, base64::engine::general_purpose::STANDARD.encode(bytes)));
                } else {
                    tracing::warn!(
                        user = %item.sip,
                        item = %item.key,
                        file = %sha,
                        "a file in this pool's file store does not match its checksum; the resync leaves it out"
                    );
                }
            }
            with_files.push((item, file));
        }
        resync_parts(with_files, BATCH_MAX_BYTES)
    }

    /// The changes (from the first) that fit one shipment, with the files they refer to:
    /// at most the current cap on changes (lowered while the partner refuses shipments)
    /// and about [`BATCH_MAX_BYTES`], but always the first. `None` when the first change
    /// alone is larger than the link takes: it is recorded as unshippable and counted as
    /// shipped, so the changes after it go on.
    async fn fit(
        &self,
        changes: Vec<Change>,
        partner: &str,
    ) -> Result<Option<(Vec<Change>, BTreeMap<String, String>)>, BackupError> {
        let cap = self.inner.batch_cap.load(Ordering::SeqCst).max(1);
        let mut files = BTreeMap::new();
        let mut kept = Vec::new();
        let mut total = 0usize;
        for change in changes.into_iter().take(cap) {
            let mut added = Vec::new();
            if let Some(sha) = change.value.as_deref().and_then(content_sha)
                && !files.contains_key(&sha)
                && let Some(bytes) = self.inner.backend.get_file(&sha).await
            {
                added.push((sha, base64::engine::general_purpose::STANDARD.encode(bytes)));
            }
            let size = serde_json::to_vec(&change).map_or(0, |v| v.len())
                + added.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
            if kept.is_empty() && size + 4_096 > LINK_MAX_BODY_BYTES {
                let reason = unshippable_reason(
                    &change,
                    &format!(
                        "{size} bytes, more than the backup link takes ({LINK_MAX_BODY_BYTES})"
                    ),
                );
                tracing::warn!(%reason, "a change cannot be shipped; skipping it");
                self.inner
                    .backend
                    .record_unshippable(&change, size as i64, partner, &reason)
                    .await?;
                return Ok(None);
            }
            if !kept.is_empty() && total + size > BATCH_MAX_BYTES {
                break;
            }
            total += size;
            files.extend(added);
            kept.push(change);
        }
        Ok(Some((kept, files)))
    }

    /// Sends one shipment to the first Front End of `partner` that takes it.
    async fn send(
        &self,
        partner: &str,
        request: &ImportRequest,
    ) -> Result<ImportResponse, BackupError> {
        let targets = backup_endpoints(&self.inner.topology.borrow(), partner);
        let mut reasons = Vec::new();
        for base in targets {
            let result = self
                .inner
                .api
                .post(&base, IMPORT_PATH, request, Duration::from_secs(30))
                .await;
            match result {
                Ok(r) => return Ok(r),
                // The shipment itself is refused: a smaller one may pass.
                Err(api::CallError::Refused { status, body })
                    if matches!(status, 400 | 413 | 422) =>
                {
                    return Err(BackupError::ItemRefused {
                        reason: format!("{base} answered {status}: {}", body.error),
                    });
                }
                Err(api::CallError::Refused { status, body }) if (400..500).contains(&status) => {
                    return Err(BackupError::Refused(format!(
                        "{base} answered {status}: {}",
                        body.error
                    )));
                }
                Err(e) => reasons.push(format!("{base}: {e}")),
            }
        }
        Err(BackupError::PartnerUnreachable {
            pool: partner.to_string(),
            reason: if reasons.is_empty() {
                "the pool has no Front End servers".to_string()
            } else {
                reasons.join("; ")
            },
        })
    }
}

/// The Backup Service settings from the local replica (defaults when unset).
pub async fn settings(replica: &ReplicaStore) -> cms::directory::BackupSettings {
    replica
        .get(cms::directory::BACKUP_SETTINGS)
        .await
        .ok()
        .flatten()
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default()
}

/// `https://address:backup_port` of every Front End of `pool`.
pub fn backup_endpoints(topology: &Topology, pool: &str) -> Vec<String> {
    topology
        .front_end_servers(pool)
        .iter()
        .map(|s| api::base(s.address, topology.ports.backup_service))
        .collect()
}

/// The SHA-256 a content item's value refers to.
pub fn content_sha(value: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(value)
        .ok()?
        .get("sha256")?
        .as_str()
        .map(str::to_string)
}

/// Applies a shipment from the partner to this pool's backup copy.
pub async fn import(
    backend: &BackEnd,
    topology: &Topology,
    this_pool: &str,
    request: ImportRequest,
) -> Result<ImportResponse, BackupError> {
    if topology
        .backup_pool_of(&request.source_pool)
        .is_none_or(|p| !p.eq_ignore_ascii_case(this_pool))
    {
        return Err(BackupError::Refused(format!(
            "{} is not paired with {this_pool} (see Get-CsPoolBackupRelationship -PoolFqdn {})",
            request.source_pool, request.source_pool
        )));
    }
    let Some(module) = Module::from_short(&request.module) else {
        return Err(BackupError::Refused(format!(
            "unknown backup module {}",
            api::shown(&request.module)
        )));
    };
    for (sha, data) in &request.files {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| BackupError::ItemRefused {
                reason: format!("file {sha} is not base64: {e}"),
            })?;
        // A file damaged in the sender's file store: that change is refused, not the pool.
        if store::hex_sha256(&bytes) != *sha {
            return Err(BackupError::ItemRefused {
                reason: format!("file {sha} does not match its checksum"),
            });
        }
        backend.put_file(&bytes).await?;
    }
    let source = request.source_pool.to_ascii_lowercase();
    let applied_seq = match request.batch {
        ImportBatch::Changes { changes } => {
            backend
                .import_changes(&source, module.short_name(), &changes)
                .await?
        }
        ImportBatch::FullPart {
            resync,
            part,
            items,
            through_seq,
            last,
        } => {
            backend
                .stage_backup_part(
                    &source,
                    module.short_name(),
                    &resync,
                    part,
                    &items,
                    last.then_some(through_seq),
                )
                .await?;
            // Until the last part, the copy is still what it was before the resync.
            if last {
                through_seq
            } else {
                backend
                    .import_state(&source, module.short_name())
                    .await?
                    .applied_seq
            }
        }
        ImportBatch::Cms {
            versions,
            after,
            history,
        } => {
            let versions: Vec<_> = versions.into_iter().map(CmsVersion::into_parts).collect();
            backend
                .import_cms_versions(&history, after, &versions)
                .await?
        }
    };
    Ok(ImportResponse { applied_seq })
}

/// Per-user checksums over (key, value) pairs, in key order.
pub fn checksums<'a>(
    rows: impl Iterator<Item = (&'a str, &'a str, &'a str)>,
) -> crate::protocol::Checksums {
    let mut by_user: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (sip, key, value) in rows {
        by_user.entry(sip).or_default().push((key, value));
    }
    by_user
        .into_iter()
        .map(|(sip, mut items)| {
            items.sort();
            let mut text = Vec::new();
            for (k, v) in &items {
                text.extend_from_slice(k.as_bytes());
                text.push(0);
                text.extend_from_slice(v.as_bytes());
                text.push(b'\n');
            }
            let digest = store::hex_sha256(&text);
            (sip.to_string(), (items.len(), digest))
        })
        .collect()
}

/// Users whose checksums differ between the primary and the backup copy (or who are
/// missing on one side), sorted.
pub fn mismatches(
    primary: &crate::protocol::Checksums,
    backup: &crate::protocol::Checksums,
) -> Vec<String> {
    let mut users: Vec<String> = primary
        .keys()
        .chain(backup.keys())
        .filter(|u| primary.get(*u) != backup.get(*u))
        .cloned()
        .collect();
    users.sort();
    users.dedup();
    users
}

/// Convenience for callers holding [`UserItem`]s.
pub fn item_rows(items: &[UserItem]) -> impl Iterator<Item = (&str, &str, &str)> {
    items
        .iter()
        .map(|i| (i.sip.as_str(), i.key.as_str(), i.value.as_str()))
}

impl BackupService {
    /// This pool's exports and imports, from its Back End.
    pub async fn local_status(&self) -> Result<crate::protocol::PoolStatus, BackupError> {
        // The report is as of before its figures are read: what is committed while they
        // are read counts as after it.
        let at_ms = self.inner.clock.now_ms();
        let be = &self.inner.backend;
        let partner = self.partner();
        let mut exports = Vec::new();
        for module in Module::ALL {
            let name = module.short_name();
            let state = be.export_state(name).await?;
            let acked = state.as_ref().map_or(0, |s| s.acked_seq);
            let backlog = if module == Module::CmsMaster {
                be.cms_backlog(acked).await?
            } else {
                be.backlog(name, acked).await?
            };
            let applicable = self.exports(module);
            exports.push(crate::protocol::ExportReport {
                module: name.to_string(),
                applicable,
                pending: if applicable { backlog.count } else { 0 },
                oldest_pending_ms: backlog.oldest_committed_at,
                pending_users: if applicable {
                    backlog.users
                } else {
                    Vec::new()
                },
                acked_seq: acked,
                head_seq: backlog.head_seq,
                last_sync_at: state.as_ref().and_then(|s| s.last_sync_at),
                resync: state.as_ref().is_some_and(|s| s.resync),
                last_error: state.and_then(|s| s.last_error),
                unshippable: if applicable && module != Module::CmsMaster {
                    let mut all = be.unshippable(name).await?;
                    all.truncate(100);
                    all
                } else {
                    Vec::new()
                },
            });
        }
        // The standby CMS held here (when the partner hosts the CMS).
        let standby = be.current_version().await?;
        let mut imports = Vec::new();
        let sources: Vec<String> = self
            .inner
            .topology
            .borrow()
            .front_end_pools
            .iter()
            .filter(|p| {
                p.backup_pool
                    .as_deref()
                    .is_some_and(|b| b.eq_ignore_ascii_case(&self.inner.pool))
            })
            .map(|p| p.fqdn.to_ascii_lowercase())
            .collect();
        for source in sources {
            for module in Module::ALL {
                let state = if module == Module::CmsMaster {
                    store::ImportState {
                        source_pool: source.clone(),
                        module: module.short_name().into(),
                        applied_seq: standby.as_ref().map_or(0, |v| v.version),
                        last_import_at: standby.as_ref().map_or(0, |v| v.created_at),
                    }
                } else {
                    be.import_state(&source, module.short_name()).await?
                };
                imports.push(crate::protocol::ImportStateReport {
                    module: state.module,
                    applied_seq: state.applied_seq,
                    last_import_at: state.last_import_at,
                });
            }
        }
        let synchronous = match &partner {
            Some(p) => self.settings().await.is_synchronous(&self.inner.pool, p),
            None => false,
        };
        let commit = match self.commit_state() {
            fell @ crate::status::CommitState::FellBack { .. } if synchronous => fell,
            _ if synchronous => crate::status::CommitState::Synchronous,
            _ => crate::status::CommitState::Asynchronous,
        };
        Ok(crate::protocol::PoolStatus {
            pool: self.inner.pool.clone(),
            partner,
            sync_interval_secs: self.sync_interval_secs().await,
            exports,
            imports,
            at_ms,
            active_exporter: be.backup_lease_holder().await?,
            commit,
        })
    }

    /// Asks the active exporter for a full resync of `module`.
    pub async fn request_resync(&self, module: Module) -> Result<(), BackupError> {
        let partner = self
            .partner()
            .ok_or_else(|| BackupError::NotPaired(self.inner.pool.clone()))?;
        self.inner
            .backend
            .request_resync(module.short_name(), &partner)
            .await?;
        self.wake();
        Ok(())
    }

    /// Per-user checksums of this pool's own data of `module`.
    pub async fn primary_checksums(
        &self,
        module: Module,
    ) -> Result<crate::protocol::Checksums, BackupError> {
        let items = self
            .inner
            .backend
            .all_user_items(Some(module.short_name()))
            .await?;
        Ok(checksums(item_rows(&items)))
    }
}

/// Per-user checksums of the backup copy of `source_pool`'s `module` in `backend`.
pub async fn backup_checksums(
    backend: &BackEnd,
    source_pool: &str,
    module: Module,
) -> Result<crate::protocol::Checksums, BackupError> {
    let items = backend
        .backup_items(
            &source_pool.to_ascii_lowercase(),
            Some(module.short_name()),
            None,
        )
        .await?;
    Ok(checksums(items.iter().map(|i| {
        (i.sip.as_str(), i.key.as_str(), i.value.as_str())
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_find_the_users_that_differ() {
        let a = checksums(
            [
                ("alice", "contacts/bob", "{}"),
                ("alice", "settings/x", "1"),
                ("carol", "contacts/dan", "{}"),
            ]
            .into_iter(),
        );
        let b = checksums(
            [
                ("alice", "settings/x", "1"),
                ("alice", "contacts/bob", "{}"),
                ("carol", "contacts/dan", "{\"a\":1}"),
                ("erin", "contacts/x", "{}"),
            ]
            .into_iter(),
        );
        assert_eq!(a["alice"], b["alice"], "order does not matter");
        assert_eq!(mismatches(&a, &b), vec!["carol", "erin"]);
        assert!(mismatches(&a, &a).is_empty());
    }

    #[test]
    fn a_full_resync_is_cut_into_parts_under_the_limit_in_order() {
        let item = |i: usize, len: usize| store::UserItem {
            sip: format!("sip:u{i}@x"),
            key: format!("settings/{i}"),
            module: "PresenceFocus".into(),
            value: "v".repeat(len),
            updated_at: 0,
        };
        let with_file = |i: usize, len: usize, file: usize| {
            (item(i, len), Some((format!("sha{i}"), "f".repeat(file))))
        };
        assert_eq!(resync_parts(Vec::new(), 1_000).len(), 1, "an empty module");
        let items = vec![
            (item(0, 300), None),
            (item(1, 300), None),
            with_file(2, 10, 5_000),
            (item(3, 300), None),
            (item(4, 300), None),
            (item(5, 300), None),
        ];
        let parts = resync_parts(items, 1_000);
        let keys: Vec<Vec<&str>> = parts
            .iter()
            .map(|(items, _)| items.iter().map(|i| i.key.as_str()).collect())
            .collect();
        assert_eq!(
            keys,
            [
                vec!["settings/0", "settings/1"],
                vec!["settings/2"],
                vec!["settings/3", "settings/4"],
                vec!["settings/5"],
            ]
        );
        // The file travels with the item that refers to it, and only there.
        assert!(parts[1].1.contains_key("sha2"));
        assert!(
            parts
                .iter()
                .enumerate()
                .all(|(n, (_, f))| n == 1 || f.is_empty())
        );
    }

    store::each_backend! {
        async fn import_refuses_pools_that_are_not_partners(db) {
            let be = db.open("p2").await;
            let t = topology::contoso();
            let request = |source: &str| ImportRequest {
                source_pool: source.into(),
                module: "PresenceFocus".into(),
                batch: ImportBatch::Changes { changes: vec![] },
                files: BTreeMap::new(),
            };
            assert!(
                import(&be, &t, "pool2.contoso.com", request("pool1.contoso.com"))
                    .await
                    .is_ok()
            );
            let err = import(&be, &t, "pool1.contoso.com", request("pool1.contoso.com"))
                .await
                .unwrap_err();
            assert!(err.to_string().contains("not paired"), "{err}");
        }
    }
}
