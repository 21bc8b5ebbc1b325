//! A runtime of the generator's own.

use std::future::Future;

use crate::LoadgenError;

/// Runs `make()`'s future on a new thread with its own single-threaded runtime and returns
/// its output. A generator wants this: its pacing and its connections then share one core
/// without work-stealing hops, and it competes with nothing else in the caller's runtime.
/// Create the workload inside `make` so its connections are driven by that runtime.
pub async fn on_dedicated_thread<F, Fut, T>(name: &str, make: F) -> Result<T, LoadgenError>
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
    T: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => {
                    let _ = tx.send(Ok(runtime.block_on(make())));
                }
                Err(err) => {
                    let _ = tx.send(Err(LoadgenError::Thread(err.to_string())));
                }
            }
        })
        .map_err(|err| LoadgenError::Thread(err.to_string()))?;
    rx.await
        .map_err(|_| LoadgenError::Thread("it stopped without an answer (a panic?)".into()))?
}
