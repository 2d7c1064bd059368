//! Bodies across the HTTP/3 boundary: a request stream's DATA frames as
//! the streaming [`http_body::Body`] the pipeline reads, and a pipeline
//! response streamed back with `send_data` frame by frame.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use h3::server::RequestStream;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use crate::body::{BoxError, ProxyBody};

/// The receiving half of a request stream, read as the request body.
pub(super) struct RecvBody {
    recv: RequestStream<h3_quinn::RecvStream, Bytes>,
    /// `Content-Length`, if the client sent one: what `size_hint` says, so
    /// that the upload goes upstream with its length rather than chunked.
    length: Option<u64>,
    done: bool,
}

impl RecvBody {
    pub fn new(recv: RequestStream<h3_quinn::RecvStream, Bytes>, length: Option<u64>) -> Self {
        RecvBody {
            recv,
            length,
            done: false,
        }
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.recv.poll_recv_data(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Some(mut data))) => {
                let bytes = data.copy_to_bytes(data.remaining());
                if let Some(left) = self.length.as_mut() {
                    *left = left.saturating_sub(bytes.len() as u64);
                }
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Poll::Ready(Ok(None)) => {
                // Request trailers are not forwarded (no HTTP/3 gRPC yet):
                // the stream's end is the body's end.
                self.done = true;
                Poll::Ready(None)
            }
            Poll::Ready(Err(err)) => {
                self.done = true;
                Poll::Ready(Some(Err(Box::new(err))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

/// Why a response did not reach the client whole.
#[derive(Debug, thiserror::Error)]
pub(super) enum SendError {
    /// The client reset the stream or the connection went away.
    #[error("client stream: {0}")]
    Stream(#[from] h3::error::StreamError),
    /// The pipeline's body failed mid-stream (an origin gone away).
    #[error("response body: {0}")]
    Body(BoxError),
}

/// Streams `body` on `send` and finishes the stream. Each frame waits for
/// QUIC flow control: a client that stops reading holds one frame, not
/// the whole body. On a body error the stream is reset rather than
/// finished, so the client cannot take a truncated body for a whole one.
pub(super) async fn send_body(
    send: &mut RequestStream<h3_quinn::SendStream<Bytes>, Bytes>,
    mut body: ProxyBody,
) -> Result<(), SendError> {
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(err) => {
                send.stop_stream(h3::error::Code::H3_INTERNAL_ERROR);
                return Err(SendError::Body(err));
            }
        };
        match frame.into_data() {
            Ok(data) if data.is_empty() => {}
            Ok(data) => send.send_data(data).await?,
            Err(frame) => {
                if let Ok(trailers) = frame.into_trailers() {
                    send.send_trailers(trailers).await?;
                    return Ok(());
                }
            }
        }
    }
    send.finish().await?;
    Ok(())
}
