//! Click spill files: the clicks a stopping replica could not publish.
//!
//! When the shutdown flush cannot reach JetStream within
//! `CLICK_FLUSH_TIMEOUT_SECS`, the publisher writes the batches it still
//! holds to one file in `CLICK_SPILL_DIR`, `clicks-<ulid>.jsonl`, one
//! [`ClickBatch`] per line, each with its own batch id and every click with
//! its own event ULID. The file is written under a temporary name, fsync'ed,
//! renamed into place and the directory fsync'ed, so a file that can be seen
//! is complete.
//!
//! Every replica replays the directory at start and then every
//! `CLICK_SPILL_REPLAY_SECS` ([`SpillReplayer`]): each batch is published
//! with `Nats-Msg-Id` = its original batch id, and a file is deleted once
//! every batch in it is acknowledged. A batch published twice (two replicas
//! replaying one file, or a replay cut short and repeated) is dropped by the
//! stream's duplicate window, and past it by the analytics consumer's
//! `ON CONFLICT (event_id)`, so a replay never counts a click twice.
//! Replayed clicks are counted in `shortline_clicks_replayed_total`, spilled
//! ones in `shortline_clicks_spilled_total`.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream;
use shortline_shared::events::{ClickBatch, Subjects};
use tokio_util::sync::CancellationToken;

use crate::clicks::{ensure_clicks_stream, publish_batch};
use crate::state::RedirectMetrics;

const PREFIX: &str = "clicks-";
const SUFFIX: &str = ".jsonl";

/// The spill directory.
#[derive(Debug, Clone)]
pub struct SpillDir(PathBuf);

impl SpillDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self(dir.into())
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `batches` durably to a new file; returns its path.
    pub fn write(&self, batches: &[ClickBatch]) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(&self.0)?;
        let name = format!("{PREFIX}{}{SUFFIX}", ulid::Ulid::generate());
        let tmp = self.0.join(format!(".{name}.tmp"));
        let path = self.0.join(name);
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
        for batch in batches {
            serde_json::to_writer(&mut out, batch)?;
            out.write_all(b"\n")?;
        }
        let file = out.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, &path)?;
        sync_dir(&self.0)?;
        Ok(path)
    }

    /// Complete spill files, oldest first (none when the directory does not
    /// exist).
    pub fn files(&self) -> std::io::Result<Vec<PathBuf>> {
        let entries = match std::fs::read_dir(&self.0) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(PREFIX) && n.ends_with(SUFFIX))
            })
            .collect();
        files.sort();
        Ok(files)
    }

    /// The batches in one file. Lines that do not parse are skipped (and
    /// logged): a file is only visible once complete, so there should be
    /// none.
    pub fn read(path: &Path) -> std::io::Result<Vec<ClickBatch>> {
        let file = std::io::BufReader::new(std::fs::File::open(path)?);
        let mut batches = Vec::new();
        for (n, line) in file.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<ClickBatch>(&line) {
                Ok(batch) => batches.push(batch),
                Err(e) => tracing::error!(
                    file = %path.display(),
                    line = n + 1,
                    error = %e,
                    "unreadable line in a click spill file; skipping it"
                ),
            }
        }
        Ok(batches)
    }

    /// Deletes a replayed file (already gone: another replica replayed it).
    pub fn remove(&self, path: &Path) -> std::io::Result<()> {
        match std::fs::remove_file(path) {
            Ok(()) => sync_dir(&self.0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Publishes and deletes spill files: at start, then every interval.
pub struct SpillReplayer {
    pub dir: SpillDir,
    pub js: jetstream::Context,
    pub subjects: Subjects,
    pub interval: Duration,
    pub metrics: RedirectMetrics,
}

impl SpillReplayer {
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            self.replay_all(&cancel).await;
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(self.interval) => {},
            }
        }
    }

    /// One pass over the directory; stops at the first batch that cannot be
    /// published (NATS away: the next pass tries again).
    pub async fn replay_all(&self, cancel: &CancellationToken) {
        let dir = self.dir.clone();
        let files = match tokio::task::spawn_blocking(move || dir.files()).await {
            Ok(Ok(files)) => files,
            Ok(Err(e)) => {
                tracing::warn!(dir = %self.dir.path().display(), error = %e, "cannot list the click spill directory");
                return;
            }
            Err(_) => return,
        };
        for path in files {
            if cancel.is_cancelled() || !self.replay_file(&path, cancel).await {
                return;
            }
        }
    }

    /// Publishes one file's batches and deletes it; `false` when a batch
    /// could not be published.
    async fn replay_file(&self, path: &Path, cancel: &CancellationToken) -> bool {
        let read_path = path.to_owned();
        let batches = match tokio::task::spawn_blocking(move || SpillDir::read(&read_path)).await {
            Ok(Ok(batches)) => batches,
            // Gone meanwhile: another replica replayed it.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return true,
            Ok(Err(e)) => {
                tracing::error!(file = %path.display(), error = %e, "cannot read a click spill file");
                return true;
            }
            Err(_) => return false,
        };
        let clicks: usize = batches.iter().map(|b| b.clicks.len()).sum();
        if let Err(e) = ensure_clicks_stream(&self.js, &self.subjects).await {
            tracing::warn!(
                file = %path.display(),
                error = %e,
                "spilled clicks not replayed yet (NATS unavailable); retrying later"
            );
            return false;
        }
        for batch in &batches {
            if cancel.is_cancelled() {
                return false;
            }
            if let Err(e) = publish_batch(&self.js, &self.subjects, batch).await {
                tracing::warn!(
                    file = %path.display(),
                    error = %e,
                    "spilled clicks not replayed yet (NATS unavailable); retrying later"
                );
                return false;
            }
        }
        let dir = self.dir.clone();
        let remove_path = path.to_owned();
        match tokio::task::spawn_blocking(move || dir.remove(&remove_path)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::error!(file = %path.display(), error = %e, "replayed click spill file not deleted; it will be replayed again (harmless: deduplicated)");
                return true;
            }
            Err(_) => return false,
        }
        self.metrics.clicks_replayed.add(clicks as u64, &[]);
        tracing::info!(
            file = %path.display(),
            clicks,
            batches = batches.len(),
            "replayed spilled clicks and deleted their file"
        );
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_round_trip_and_only_complete_ones_are_listed() {
        let dir = std::env::temp_dir().join(format!("spill-{}", ulid::Ulid::generate()));
        let spill = SpillDir::new(&dir);
        assert!(spill.files().expect("missing dir is empty").is_empty());
        let click = shortline_shared::events::Click {
            event_id: ulid::Ulid::generate(),
            url_id: 1,
            user_id: 2,
            short_code: "abc".into(),
            occurred_at: chrono::Utc::now(),
            user_agent: Some("curl/8".into()),
            referrer: None,
            ip: None,
            outcome: None,
        };
        let batches = vec![
            ClickBatch::new(vec![click.clone()]),
            ClickBatch::new(vec![click.clone(), click]),
        ];
        let path = spill.write(&batches).expect("written");
        std::fs::write(dir.join(".clicks-x.jsonl.tmp"), "partial").expect("tmp");
        assert_eq!(spill.files().expect("listed"), vec![path.clone()]);
        assert_eq!(SpillDir::read(&path).expect("read"), batches);
        spill.remove(&path).expect("removed");
        spill.remove(&path).expect("removing twice is fine");
        assert!(spill.files().expect("listed").is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
