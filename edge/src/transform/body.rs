//! A response body transcoded as it streams: each frame of the source
//! goes through the codec, and what the codec has ready goes to the client
//! (and, when this response makes an object's encoding, into the store;
//! committed only if the whole body went through).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use cache::encoding::Encoding;
use cache::object::ObjectWriter;
use http_body::{Body, Frame, SizeHint};
use prometheus::IntCounter;

use super::codec::Codec;
use super::{Direction, Metrics, Transformer};
use crate::body::{BoxError, ProxyBody};

/// A body through a codec.
pub struct Transcoded {
    inner: ProxyBody,
    codec: Option<Codec>,
    /// Stores the output as the object's encoding.
    store: Option<ObjectWriter>,
    /// Trailers held until the codec's last bytes are out.
    trailers: Option<http::HeaderMap>,
    /// The codec would not start: the body fails at once (its head
    /// already names the coding).
    failed: Option<std::io::Error>,
    bytes_in: IntCounter,
    bytes_out: IntCounter,
}

impl std::fmt::Debug for Transcoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transcoded")
            .field("codec", &self.codec)
            .field("stores", &self.store.is_some())
            .finish()
    }
}

impl Transcoded {
    /// `inner` compressed into `encoding`; the output also goes to `store`
    /// when given.
    pub fn encode(
        transformer: &Transformer,
        inner: ProxyBody,
        encoding: Encoding,
        store: Option<ObjectWriter>,
    ) -> Transcoded {
        let codec = Codec::encoder(encoding, &transformer.settings.levels);
        let metrics = &transformer.metrics;
        metrics
            .compressions
            .with_label_values(&[encoding.token()])
            .inc();
        Transcoded::new(inner, codec, store, metrics, encoding, Direction::Compress)
    }

    /// `inner`, coded in `encoding` by the origin, decoded.
    pub fn decode(transformer: &Transformer, inner: ProxyBody, encoding: Encoding) -> Transcoded {
        let codec = Codec::decoder(encoding);
        let metrics = &transformer.metrics;
        metrics
            .decompressions
            .with_label_values(&[encoding.token()])
            .inc();
        Transcoded::new(inner, codec, None, metrics, encoding, Direction::Decompress)
    }

    fn new(
        inner: ProxyBody,
        codec: std::io::Result<Codec>,
        store: Option<ObjectWriter>,
        metrics: &Metrics,
        encoding: Encoding,
        direction: Direction,
    ) -> Transcoded {
        let labels = [encoding.token(), direction.as_str()];
        let (codec, failed) = match codec {
            Ok(codec) => (Some(codec), None),
            Err(err) => (None, Some(err)),
        };
        Transcoded {
            inner,
            codec,
            store,
            trailers: None,
            failed,
            bytes_in: metrics.bytes_in.with_label_values(&labels),
            bytes_out: metrics.bytes_out.with_label_values(&labels),
        }
    }

    /// What the codec produced, counted and stored.
    fn out(&mut self, bytes: Bytes) -> Bytes {
        self.bytes_out.inc_by(bytes.len() as u64);
        if let Some(store) = &mut self.store {
            store.write(&bytes);
        }
        bytes
    }

    /// The source ended: the codec's last bytes, and the encoding stored.
    fn finish(&mut self) -> Result<Bytes, BoxError> {
        let Some(codec) = self.codec.take() else {
            return Ok(Bytes::new());
        };
        let rest = codec.finish()?;
        let rest = self.out(rest);
        if let Some(store) = self.store.take() {
            store.finish();
        }
        Ok(rest)
    }
}

impl Transcoded {
    /// The next frame once the source has ended: the codec's last bytes,
    /// else the trailers held, else the end.
    fn end(&mut self) -> Option<Result<Frame<Bytes>, BoxError>> {
        match self.finish() {
            Ok(rest) if rest.is_empty() => self.trailers.take().map(|t| Ok(Frame::trailers(t))),
            Ok(rest) => Some(Ok(Frame::data(rest))),
            Err(err) => Some(Err(err)),
        }
    }
}

impl Body for Transcoded {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Some(err) = this.failed.take() {
            this.store = None;
            return Poll::Ready(Some(Err(err.into())));
        }
        loop {
            if this.codec.is_none() {
                return Poll::Ready(this.end());
            }
            let frame = match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Err(err))) => {
                    // The encoding is not complete: never stored.
                    this.store = None;
                    this.codec = None;
                    return Poll::Ready(Some(Err(err)));
                }
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(None) => {
                    return Poll::Ready(this.end());
                }
            };
            match frame.into_data() {
                Ok(data) => {
                    this.bytes_in.inc_by(data.len() as u64);
                    let pushed = match this.codec.as_mut().map(|c| c.push(&data)) {
                        Some(Ok(out)) => out,
                        Some(Err(err)) => {
                            this.store = None;
                            this.codec = None;
                            return Poll::Ready(Some(Err(err.into())));
                        }
                        None => Bytes::new(),
                    };
                    let out = this.out(pushed);
                    if !out.is_empty() {
                        return Poll::Ready(Some(Ok(Frame::data(out))));
                    }
                }
                Err(frame) => {
                    // Trailers end the body: the codec's rest goes first.
                    if let Ok(trailers) = frame.into_trailers() {
                        this.trailers = Some(trailers);
                    }
                    return Poll::Ready(this.end());
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.codec.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
