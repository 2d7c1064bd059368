//! A customised edge: blocks `/admin` paths with 403, tags every response
//! with the time the origin took, and routes `/api/*` to a second origin.
//!
//! ```sh
//! cargo run -p edge --example custom_hooks -- http://127.0.0.1:8000 http://127.0.0.1:8001
//! curl -i http://127.0.0.1:8080/admin/secret   # 403 from the edge
//! curl -i http://127.0.0.1:8080/api/users      # served by the second origin
//! ```

use std::time::Instant;

use edge::hooks::{EarlyResponse, EdgeHooks, RequestSummary, Session, early_response};
use edge::{Config, Server};
use http::{HeaderValue, StatusCode, response};
use origin_shield::Peer;

/// Routing and policy for one site.
struct SiteHooks {
    api_origin: Option<Peer>,
}

/// Per-request state: when the upstream phase began.
#[derive(Default)]
struct Timing {
    upstream_started: Option<Instant>,
}

impl EdgeHooks for SiteHooks {
    type Ctx = Timing;

    fn new_ctx(&self) -> Timing {
        Timing::default()
    }

    async fn request_filter(
        &self,
        session: &mut Session,
        _ctx: &mut Timing,
    ) -> Option<EarlyResponse> {
        let path = session.req.uri.path();
        (path == "/admin" || path.starts_with("/admin/"))
            .then(|| early_response(StatusCode::FORBIDDEN, "forbidden by edge policy"))
    }

    async fn upstream_peer(&self, session: &Session, ctx: &mut Timing) -> Option<Peer> {
        ctx.upstream_started = Some(Instant::now());
        if session.req.uri.path().starts_with("/api/") {
            return self.api_origin.clone();
        }
        None
    }

    async fn response_filter(
        &self,
        _session: &Session,
        resp: &mut response::Parts,
        ctx: &mut Timing,
    ) {
        if let Some(started) = ctx.upstream_started {
            let ms = format!("{:.1}", started.elapsed().as_secs_f64() * 1000.0);
            if let Ok(value) = HeaderValue::from_str(&ms) {
                resp.headers.insert("x-origin-ms", value);
            }
        }
    }

    fn logging(&self, session: &Session, summary: &RequestSummary, _ctx: &mut Timing) {
        if summary.status == StatusCode::FORBIDDEN {
            tracing::warn!(client = %session.client_addr, path = session.req.uri.path(), "blocked");
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().init();
    let mut args = std::env::args().skip(1);
    let origin: Peer = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:8000".into())
        .parse()?;
    let api_origin = args.next().map(|u| u.parse()).transpose()?;

    let config = Config {
        origins: vec![origin],
        ..Config::default()
    };
    let server = Server::bind_with_hooks(config, SiteHooks { api_origin }).await?;
    server
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
