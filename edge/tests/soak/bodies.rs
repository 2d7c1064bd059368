//! Bodies the soak sends through hyper: channel-fed ones that can stall
//! or stop short (the origin's faults, chunked uploads), and whole ones.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full};
use tokio::sync::mpsc;

use crate::model::{BoxError, KIB, ReqBody, STALL};

/// A response or request body fed from a channel, so that it can stall,
/// stop short or fail; `len` makes it a Content-Length body.
#[derive(Debug)]
pub struct ChannelBody {
    rx: mpsc::Receiver<Result<Bytes, BoxError>>,
    len: Option<u64>,
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx
            .poll_recv(cx)
            .map(|item| item.map(|r| r.map(Frame::data)))
    }

    fn size_hint(&self) -> SizeHint {
        self.len.map(SizeHint::with_exact).unwrap_or_default()
    }
}

/// Streams `body` in 64 KiB pieces; with `cut_at`, stops there (after
/// `stall`) and fails, which closes the connection.
pub fn channel_body(body: Bytes, len: Option<u64>, cut: Option<Cut>) -> ChannelBody {
    let (tx, rx) = mpsc::channel(2);
    tokio::spawn(async move {
        let limit = cut.as_ref().map_or(body.len(), |c| c.at.min(body.len()));
        let mut rest = body.slice(..limit);
        while !rest.is_empty() {
            let piece = rest.split_to(rest.len().min(64 * KIB as usize));
            if tx.send(Ok(piece)).await.is_err() {
                return;
            }
        }
        if let Some(cut) = cut {
            (cut.done)();
            if cut.stall {
                tokio::time::sleep(STALL).await;
            }
            let _ = tx
                .send(Err("chaos: the origin closes mid-body".into()))
                .await;
        }
    });
    ChannelBody { rx, len }
}

/// Where a body is cut off: after `at` bytes (and `STALL` if `stall`);
/// `done` runs when the bytes before the cut are sent.
pub struct Cut {
    pub at: usize,
    pub stall: bool,
    pub done: Box<dyn FnOnce() + Send>,
}

/// No body; `len` None leaves the framing to the headers (HEAD).
pub fn no_body(len: Option<u64>) -> ChannelBody {
    ChannelBody {
        rx: mpsc::channel(1).1,
        len,
    }
}

pub fn empty_body() -> ChannelBody {
    no_body(Some(0))
}

pub fn full(bytes: Bytes) -> ReqBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}
