//! The stop signal every long-running subcommand (`serve`, `stdio`, `sandbox`, `demo`) waits on.

/// Completes on the first SIGINT or SIGTERM (SIGINT only where there is no SIGTERM).
///
/// A signal that cannot be watched is logged and ignored rather than treated as received:
/// stopping at once because a handler failed to install would look like a crash.
pub(crate) async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot watch SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut stream) => {
                stream.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; only SIGINT stops toolgate");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received: stopping"),
        () = terminate => tracing::info!("SIGTERM received: stopping"),
    }
}
