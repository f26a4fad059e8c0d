//! Keeping servers that share one database in step.
//!
//! On PostgreSQL every write to the catalogue and every job that becomes
//! ready is announced by a trigger (`pg_notify` on `ota_catalogue` and
//! `ota_jobs`, delivered at commit), and each server LISTENs: another
//! server's publish empties this one's hot caches at once, and a job queued
//! anywhere wakes idle workers here. A lost connection drops the caches
//! (notifications may have been missed) and reconnects. The generation is
//! still polled, slowly, as a safety net; on SQLite (one server per
//! database) polling is all there is.

use crate::state::AppState;
use sqlx::postgres::PgListener;
use std::time::Duration;

/// Channel of catalogue writes (payload: the new generation).
pub const CATALOGUE_CHANNEL: &str = "ota_catalogue";

/// Channel of jobs becoming ready (payload: the job kind).
pub const JOBS_CHANNEL: &str = "ota_jobs";

/// How often the generation is still polled while listening.
pub const SAFETY_POLL: Duration = Duration::from_secs(30);

/// Drops every hot answer derived from the catalogue.
pub fn drop_caches(state: &AppState) {
    state.cache.clear();
    state.packs.maps.clear();
    state.rules.clear();
}

/// Drops cached answers when the catalogue generation moves.
pub async fn poll_generation(state: AppState, every: Duration) {
    let mut last = state.catalogue.generation().await.ok();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match state.catalogue.generation().await {
            Ok(g) if Some(g) != last => {
                drop_caches(&state);
                last = Some(g);
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("checking the catalogue generation: {e}"),
        }
    }
}

/// Listens for other servers' writes and jobs until the runtime stops.
pub async fn listen(state: AppState, database_url: String) {
    let mut backoff = Duration::from_millis(200);
    loop {
        match listen_once(&state, &database_url).await {
            Ok(()) => backoff = Duration::from_millis(200),
            Err(e) => {
                tracing::warn!("listening for catalogue changes: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
        // Whatever was announced while not listening is unknown.
        drop_caches(&state);
        state.packs.wake.notify_waiters();
    }
}

/// One listening connection; returns when it is lost.
async fn listen_once(state: &AppState, database_url: &str) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect(database_url).await?;
    // Without automatic reconnection a lost connection ends this call and
    // the caller drops the caches before listening again.
    listener.ignore_pool_close_event(true);
    listener
        .listen_all([CATALOGUE_CHANNEL, JOBS_CHANNEL])
        .await?;
    tracing::info!("listening for other servers' writes on PostgreSQL");
    // Writes between the first load and LISTEN would be missed otherwise.
    drop_caches(state);
    loop {
        let Some(n) = listener.try_recv().await? else {
            return Ok(());
        };
        match n.channel() {
            CATALOGUE_CHANNEL => drop_caches(state),
            JOBS_CHANNEL => state.packs.wake.notify_waiters(),
            _ => {}
        }
    }
}
