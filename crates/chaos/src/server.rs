//! The embedded Toxiproxy-compatible server: the HTTP API on a bound listener plus the proxies
//! it creates. Like every server in the rig it takes a bound listener and a shutdown future.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::ChaosError;
use crate::proxy::collection::{Collection, ProxyConfig};

/// How the server starts.
#[derive(Debug, Clone, Default)]
pub struct ServerOptions {
    /// Seed for every random choice of the data path (toxicity rolls, jitter, slice sizes).
    pub seed: u64,
    /// Proxies to create before the API answers (like Toxiproxy's `-config` file).
    pub proxies: Vec<ProxyConfig>,
}

/// A configured server, not yet serving.
#[derive(Debug)]
pub struct ToxiproxyServer {
    collection: Arc<Collection>,
}

impl ToxiproxyServer {
    /// Creates the initial proxies; fails if one cannot listen.
    pub async fn new(options: ServerOptions) -> Result<Self, ChaosError> {
        let collection = Arc::new(Collection::new(options.seed));
        if !options.proxies.is_empty() {
            let body = serde_json::to_vec(&options.proxies).map_err(|e| ChaosError::Server {
                message: e.to_string(),
            })?;
            if let (_, Some(err)) = collection.populate(&body).await {
                collection.shutdown().await;
                return Err(ChaosError::Server {
                    message: format!("could not create the initial proxies: {}", err.message),
                });
            }
        }
        Ok(Self { collection })
    }

    /// Serves the API on `listener` until `shutdown` completes, then stops every proxy.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), ChaosError> {
        let collection = self.collection.clone();
        let handler = move |request| {
            let collection = collection.clone();
            async move { Ok(crate::api::handle(collection, request).await) }
        };
        let served = rig_http::serve(listener, handler, shutdown).await;
        self.collection.shutdown().await;
        served.map_err(|e| ChaosError::Server {
            message: format!("the API server failed: {e}"),
        })
    }

    /// Serves in a background task; the handle stops it.
    pub fn spawn(self, listener: TcpListener) -> Result<EmbeddedToxiproxy, ChaosError> {
        let addr = listener.local_addr().map_err(|e| ChaosError::Server {
            message: format!("the API listener has no address: {e}"),
        })?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(self.serve(listener, async move {
            let _ = stopped.await;
        }));
        Ok(EmbeddedToxiproxy { addr, stop, task })
    }
}

/// Serves a Toxiproxy-compatible API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    options: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ChaosError> {
    ToxiproxyServer::new(options)
        .await?
        .serve(listener, shutdown)
        .await
}

/// A server running in the background.
#[derive(Debug)]
pub struct EmbeddedToxiproxy {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), ChaosError>>,
}

impl EmbeddedToxiproxy {
    /// Binds `listen`, creates `options.proxies` and starts serving.
    pub async fn start(listen: &str, options: ServerOptions) -> Result<Self, ChaosError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|e| ChaosError::Listen {
                address: listen.to_string(),
                source: e,
            })?;
        ToxiproxyServer::new(options).await?.spawn(listener)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API's base URL, e.g. `http://127.0.0.1:8474`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the API and every proxy; returns once they are gone.
    pub async fn shutdown(self) -> Result<(), ChaosError> {
        let _ = self.stop.send(());
        self.task.await.map_err(|e| ChaosError::Server {
            message: format!("the API task failed: {e}"),
        })?
    }
}
