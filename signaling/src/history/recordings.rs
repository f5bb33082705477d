//! Recording files over their whole life (security review finding 14): a row when a file
//! starts (`recording`), finalised when it finishes (`finished`); after a crash, rows still
//! `recording` become `interrupted`, files nobody knows are removed; retention and the
//! per-user quota. The rules are in docs/history.md ("Recording files: crash safety and
//! retention").

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::Row;
use tracing::{info, warn};

use super::rows::{recording_from_row, RECORDING_COLUMNS};
use super::{HistoryError, HistoryStore, Recording, Timestamp};
use crate::UserId;

/// What [`HistoryStore::reconcile_recordings`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Rows left `recording` by the last run whose file holds data: now `interrupted`.
    pub interrupted: u64,
    /// Rows left `recording` whose file is missing or empty: deleted.
    pub rows_removed: u64,
    /// Files in the recording directory without a row: deleted.
    pub orphan_files_removed: u64,
    /// Recordings older than the retention period: file and row deleted.
    pub expired: u64,
}

impl HistoryStore {
    /// Bytes of the stored recordings `user` started (any participant's media).
    pub async fn recorded_bytes_started_by(&self, user: &UserId) -> Result<u64, HistoryError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(bytes), 0) AS BIGINT) AS total FROM recordings \
             WHERE started_by = $1",
        )
        .bind(user.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(row.try_get::<i64, _>("total")?).unwrap_or(0))
    }

    /// The file at `path` was finished: its `recording` row becomes `finished`. A file
    /// without a single frame (`bytes == 0`) was removed by the recorder, and so is its row.
    /// `Ok(false)` when there was no `recording` row for it.
    pub async fn recording_file_finished(
        &self,
        path: &str,
        bytes: u64,
        duration_ms: u64,
        at: Timestamp,
    ) -> Result<bool, HistoryError> {
        if bytes == 0 {
            sqlx::query("DELETE FROM recordings WHERE path = $1 AND state = 'recording'")
                .bind(path)
                .execute(&self.pool)
                .await?;
            return Ok(true);
        }
        let bytes = i64::try_from(bytes)
            .map_err(|_| HistoryError::InvalidRecording("bytes out of range"))?;
        let duration_ms = i64::try_from(duration_ms)
            .map_err(|_| HistoryError::InvalidRecording("duration out of range"))?;
        let updated = sqlx::query(
            "UPDATE recordings SET state = 'finished', bytes = $2, duration_ms = $3, \
                 created_at = $4 \
             WHERE path = $1 AND state = 'recording'",
        )
        .bind(path)
        .bind(bytes)
        .bind(duration_ms)
        .bind(at.as_millis())
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(updated > 0)
    }

    /// The file at `path` could not be finished cleanly: `interrupted`, with what is on disk.
    pub async fn recording_file_interrupted(
        &self,
        path: &str,
        bytes: u64,
        at: Timestamp,
    ) -> Result<(), HistoryError> {
        sqlx::query(
            "UPDATE recordings SET state = 'interrupted', bytes = $2, created_at = $3, \
                 duration_ms = CASE WHEN $3 > started_at THEN $3 - started_at ELSE 0 END \
             WHERE path = $1 AND state = 'recording'",
        )
        .bind(path)
        .bind(i64::try_from(bytes).unwrap_or(i64::MAX))
        .bind(at.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// At start, before any recording (like [`HistoryStore::close_interrupted`]): squares the
    /// recording rows with the files in `directory`, then applies retention.
    ///
    /// - A row still `recording` (the last run died while writing it) whose file holds data
    ///   becomes `interrupted`: size from the file, duration from its start to the file's
    ///   last modification. It stays downloadable: the file is written so that players read
    ///   it up to about its last cluster. A row whose file is missing or empty is deleted.
    /// - A `.webm` file in `directory` that no row names cannot be attributed to anyone (the
    ///   crash came between creating it and writing its row, or it predates the history): it
    ///   is deleted.
    /// - With `retention_days > 0`, recordings whose `created_at` is older are deleted,
    ///   file and row.
    pub async fn reconcile_recordings(
        &self,
        directory: &Path,
        retention_days: u32,
        now: Timestamp,
    ) -> Result<ReconcileReport, HistoryError> {
        let mut report = ReconcileReport::default();
        let rows = sqlx::query(&format!(
            "SELECT {RECORDING_COLUMNS} FROM recordings r WHERE r.state = 'recording'"
        ))
        .fetch_all(&self.pool)
        .await?;
        let open: Vec<Recording> = rows
            .iter()
            .map(recording_from_row)
            .collect::<Result<_, _>>()?;
        for recording in open {
            let path = PathBuf::from(&recording.path);
            let found = tokio::fs::metadata(&path)
                .await
                .ok()
                .filter(|m| m.len() > 0);
            match found {
                Some(meta) => {
                    let modified = meta
                        .modified()
                        .map(Timestamp::from)
                        .unwrap_or(recording.started_at);
                    let end = modified.as_millis().max(recording.started_at.as_millis());
                    sqlx::query(
                        "UPDATE recordings SET state = 'interrupted', bytes = $2, \
                             duration_ms = $3, created_at = $4 \
                         WHERE id = $1 AND state = 'recording'",
                    )
                    .bind(recording.id.as_str())
                    .bind(i64::try_from(meta.len()).unwrap_or(i64::MAX))
                    .bind(end - recording.started_at.as_millis())
                    .bind(end)
                    .execute(&self.pool)
                    .await?;
                    report.interrupted += 1;
                }
                None => {
                    self.delete_recording(&recording.id.to_string(), &path)
                        .await?;
                    report.rows_removed += 1;
                }
            }
        }

        report.orphan_files_removed = self.remove_orphan_files(directory).await?;

        if retention_days > 0 {
            report.expired = self.expire_recordings(retention_days, now).await?;
        }
        Ok(report)
    }

    /// Deletes the file (if any), then the row.
    async fn delete_recording(&self, id: &str, path: &Path) -> Result<(), HistoryError> {
        match tokio::fs::remove_file(path).await {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                // Keep the row: it still names the file, so the next run tries again.
                warn!(path = %path.display(), %error, "recording file not deleted");
                return Ok(());
            }
        }
        sqlx::query("DELETE FROM recordings WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes `.webm` files in `directory` that no row names; returns how many.
    async fn remove_orphan_files(&self, directory: &Path) -> Result<u64, HistoryError> {
        let known: HashSet<PathBuf> = sqlx::query("SELECT path FROM recordings")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .filter_map(|row| row.try_get::<String, _>("path").ok())
            .filter_map(|path| std::fs::canonicalize(path).ok())
            .collect();
        let directory = directory.to_path_buf();
        let removed = tokio::task::spawn_blocking(move || {
            let Ok(entries) = std::fs::read_dir(&directory) else {
                return 0; // No directory yet: nothing recorded.
            };
            let mut removed = 0;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_none_or(|e| e != "webm") {
                    continue;
                }
                let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
                if known.contains(&canonical) {
                    continue;
                }
                match std::fs::remove_file(&path) {
                    Ok(()) => {
                        warn!(path = %path.display(), "recording file without a history row deleted");
                        removed += 1;
                    }
                    Err(error) => warn!(path = %path.display(), %error, "orphan recording not deleted"),
                }
            }
            removed
        })
        .await
        .unwrap_or(0);
        Ok(removed)
    }
}

/// Reconciles once now (see [`HistoryStore::reconcile_recordings`]), then applies retention
/// once a day in the background. Call at start, after
/// [`HistoryStore::close_interrupted`] and before calls are accepted.
pub async fn maintain_recordings(
    store: &HistoryStore,
    config: &crate::RecordingConfig,
) -> Result<ReconcileReport, HistoryError> {
    let report = store
        .reconcile_recordings(&config.directory, config.retention_days, Timestamp::now())
        .await?;
    if report != ReconcileReport::default() {
        warn!(?report, directory = %config.directory.display(), "recordings reconciled after the last run");
    }
    if config.retention_days > 0 {
        let (store, days) = (store.clone(), config.retention_days);
        tokio::spawn(async move {
            let mut daily = tokio::time::interval(Duration::from_secs(24 * 3600));
            daily.tick().await; // The first tick is now: already done above.
            loop {
                daily.tick().await;
                match store.expire_recordings(days, Timestamp::now()).await {
                    Ok(0) => {}
                    Ok(expired) => info!(expired, "old recordings deleted (retention)"),
                    Err(error) => warn!(%error, "recording retention failed"),
                }
            }
        });
    }
    Ok(report)
}

impl HistoryStore {
    /// Deletes recordings (file and row) finished more than `days` days before `now`.
    pub async fn expire_recordings(&self, days: u32, now: Timestamp) -> Result<u64, HistoryError> {
        let cutoff = now.as_millis() - i64::from(days) * 24 * 3600 * 1000;
        let rows = sqlx::query(
            "SELECT id, path FROM recordings WHERE created_at < $1 AND state <> 'recording'",
        )
        .bind(cutoff)
        .fetch_all(&self.pool)
        .await?;
        for row in &rows {
            let id: String = row.try_get("id")?;
            let path: String = row.try_get("path")?;
            self.delete_recording(&id, Path::new(&path)).await?;
        }
        Ok(rows.len() as u64)
    }
}
