//! Model downloads onto Ollama backends: one at a time per backend on this
//! replica (a second pull waits, and says so), progress relayed as the
//! provider reports it, the backend re-listed once a download succeeds.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{FleetError, Inner, reconciler};
use crate::llm::{ProviderError, PullProgress};

/// One report of a download in progress; the last one has `done`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullReport {
    pub progress: PullProgress,
    pub done: bool,
}

/// The reports of one download; a failure ends it.
pub type PullStream = Pin<Box<dyn Stream<Item = Result<PullReport, FleetError>> + Send>>;

type Reports = mpsc::Sender<Result<PullReport, FleetError>>;

/// The status reported while another download of the backend runs.
pub const WAITING: &str = "waiting for another pull";

/// Checks the backend, then downloads in the background: the download goes
/// on (and the backend is re-listed) even if the caller stops listening.
pub(super) async fn start(
    inner: Arc<Inner>,
    backend_id: &str,
    model: &str,
) -> Result<PullStream, FleetError> {
    let backend = inner.store.get_backend(backend_id).await?;
    pullable(&backend)?;
    let (reports, receiver) = mpsc::channel(64);
    let (backend_id, model) = (backend_id.to_string(), model.to_string());
    tokio::spawn(async move {
        match download(&inner, &backend_id, &model, Some(reports.clone())).await {
            Ok(last) => {
                // Listed before the caller hears `done`: GetBackend shows
                // the model as soon as the stream ends.
                reconciler::relist(&inner, &backend_id).await;
                let done = PullReport {
                    progress: PullProgress {
                        status: "success".to_string(),
                        ..last
                    },
                    done: true,
                };
                let _ = reports.send(Ok(done)).await;
            }
            Err(error) => {
                let _ = reports.send(Err(error)).await;
            }
        }
    });
    Ok(Box::pin(ReceiverStream::new(receiver)))
}

fn pullable(backend: &crate::store::BackendRecord) -> Result<(), FleetError> {
    if backend.backend_type == "ollama" {
        return Ok(());
    }
    Err(FleetError::NotPullable {
        backend_id: backend.id.clone(),
        backend_type: backend.backend_type.clone(),
    })
}

/// Downloads `model` once the backend's download lock is free, relaying
/// progress to `reports` (if any); returns the last progress reported.
pub(super) async fn download(
    inner: &Arc<Inner>,
    backend_id: &str,
    model: &str,
    reports: Option<Reports>,
) -> Result<PullProgress, FleetError> {
    let lock = inner.pull_lock(backend_id);
    let _turn = match lock.clone().try_lock_owned() {
        Ok(turn) => turn,
        Err(_) => {
            report(&reports, waiting()).await;
            lock.lock_owned().await
        }
    };
    // Read again: the backend may have changed while this pull waited.
    let backend = inner.store.get_backend(backend_id).await?;
    pullable(&backend)?;
    let provider = inner
        .provider(&backend)
        .map_err(|error| pull_failure(model, error))?;
    let (progress, mut received) = mpsc::channel::<PullProgress>(64);
    let relay = async {
        let mut last = PullProgress::default();
        while let Some(progress) = received.recv().await {
            // The provider's own `success` becomes the final `done` report.
            if progress.status != "success" {
                report(
                    &reports,
                    PullReport {
                        progress: progress.clone(),
                        done: false,
                    },
                )
                .await;
            }
            last = progress;
        }
        last
    };
    let (result, last) = tokio::join!(provider.pull_model(model, progress), relay);
    result.map_err(|error| pull_failure(model, error))?;
    tracing::info!(backend_id, model, "model pulled");
    Ok(last)
}

fn waiting() -> PullReport {
    PullReport {
        progress: PullProgress {
            status: WAITING.to_string(),
            ..PullProgress::default()
        },
        done: false,
    }
}

async fn report(reports: &Option<Reports>, report: PullReport) {
    if let Some(reports) = reports {
        // A caller that went away does not stop the download.
        let _ = reports.send(Ok(report)).await;
    }
}

fn pull_failure(model: &str, error: ProviderError) -> FleetError {
    if error.is_model_not_served() {
        FleetError::ModelNotFound {
            model: model.to_string(),
            message: error.message,
        }
    } else {
        FleetError::ProviderFailed(error.message)
    }
}
