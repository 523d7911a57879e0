//! The scrape endpoint: hyper, each connection on a task of its own, answering from the
//! last snapshot `pl run` published.

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// How long a client has to send its request headers.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Connections served at once; more are closed at once.
pub const MAX_CONNECTIONS: usize = 128;

type Body = http_body_util::Full<hyper::body::Bytes>;

/// The answer to one request: the snapshot for `GET /metrics`, 404 for other paths, 405
/// for other methods.
fn respond(req: &hyper::Request<hyper::body::Incoming>, snapshot: &str) -> hyper::Response<Body> {
    use hyper::{Method, StatusCode, header};
    let text = |status: StatusCode, body: &str| {
        let mut r = hyper::Response::new(Body::from(body.to_owned()));
        *r.status_mut() = status;
        r
    };
    if req.uri().path() != "/metrics" {
        return text(
            StatusCode::NOT_FOUND,
            "not found: pl serves /metrics only\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = text(StatusCode::METHOD_NOT_ALLOWED, "only GET /metrics\n");
        r.headers_mut()
            .insert(header::ALLOW, header::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let mut r = hyper::Response::new(Body::from(snapshot.to_owned()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(CONTENT_TYPE),
    );
    r
}

/// Serves `listener` until the snapshot's sender is dropped, each connection on its own task.
pub async fn serve(
    listener: tokio::net::TcpListener,
    snapshot: tokio::sync::watch::Receiver<std::sync::Arc<str>>,
) {
    let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut done = snapshot.clone();
    loop {
        let stream = tokio::select! {
            changed = done.changed() => match changed {
                Ok(()) => continue,
                Err(_) => return,
            },
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!("metrics: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!("metrics: {MAX_CONNECTIONS} connections open; closed a new one");
            continue;
        };
        let snapshot = snapshot.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let body = snapshot.borrow().clone();
                async move { Ok::<_, std::convert::Infallible>(respond(&req, &body)) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(16 * 1024)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            // Bounded as a whole too: a client that trickles, or never reads, goes.
            let _ = tokio::time::timeout(HEADER_TIMEOUT * 6, conn).await;
            drop(slot);
        });
    }
}
