//! One proxy's accept loop. Stopping it closes the listening socket (new connections are
//! refused) and then every connection it accepted, and waits for them to be gone.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use super::Shared;
use super::link::{Conn, pump};
use crate::toxics::CloseMode;
use crate::toxics::Stream;
use evidence::seed::{SeededRng, label};

/// How long a stopping proxy waits for its connections to finish closing.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A running accept loop.
#[derive(Debug)]
pub(crate) struct Runner {
    stop: oneshot::Sender<()>,
    done: JoinHandle<()>,
}

impl Runner {
    pub(crate) fn start(listener: TcpListener, upstream: String, shared: Arc<Shared>) -> Self {
        let (stop, stopped) = oneshot::channel();
        let done = tokio::spawn(accept_loop(listener, upstream.into(), shared, stopped));
        Self { stop, done }
    }

    /// Returns once the listener is closed and every connection is gone.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.done.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: Arc<str>,
    shared: Arc<Shared>,
    mut stopped: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((client, _peer)) => {
                    // Registered before the task starts, so a stop or a toxic change cannot
                    // miss it.
                    let conn = shared.register();
                    connections.spawn(serve_connection(conn, client, upstream.clone(), shared.clone()));
                }
                Err(err) => {
                    // Out of file descriptors or an aborted handshake: the listener is still
                    // good, so back off briefly rather than spin.
                    tracing::warn!(proxy = %shared.name, error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
        }
    }
    drop(listener);
    shared.close_all(CloseMode::Close);
    let drained = tokio::time::timeout(CLOSE_GRACE, async {
        while connections.join_next().await.is_some() {}
    });
    if drained.await.is_err() {
        tracing::warn!(proxy = %shared.name, "connections did not close in time; aborting them");
    }
}

async fn serve_connection(
    conn: Arc<Conn>,
    client: TcpStream,
    upstream: Arc<str>,
    shared: Arc<Shared>,
) {
    let dial = tokio::select! {
        biased;
        () = closed(&conn) => None,
        dialed = TcpStream::connect(&*upstream) => dialed.ok(),
    };
    // The upstream could not be reached (or the proxy is closing): close the client, as
    // Toxiproxy does.
    if let (Some(server), None) = (dial, conn.close_mode()) {
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let seed = |stream: Stream| {
            SeededRng::derive(
                shared.seed,
                &[label(&shared.name), conn.id, stream.index() as u64],
            )
            .next_u64()
        };
        // Both directions in one task: a request and its response wake the same task, which
        // stays on one worker thread instead of bouncing between two.
        tokio::join!(
            pump(
                conn.clone(),
                shared.clone(),
                Stream::Upstream,
                client_read,
                server_write,
                seed(Stream::Upstream),
            ),
            pump(
                conn.clone(),
                shared.clone(),
                Stream::Downstream,
                server_read,
                client_write,
                seed(Stream::Downstream),
            ),
        );
    }
    shared.deregister(conn.id);
}

/// Resolves when the connection is asked to close (toxic changes are ignored here).
async fn closed(conn: &Conn) {
    loop {
        let seen = conn.control();
        if conn.close_mode().is_some() {
            return;
        }
        conn.changed(Stream::Upstream, seen).await;
    }
}
