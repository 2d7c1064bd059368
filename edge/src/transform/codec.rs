//! The codecs, fed one body frame at a time: each frame in gives what the
//! codec has ready out (often nothing until a block fills), and the end of
//! the body gives the rest. flate2 (gzip, zlib), brotli and zstd, each
//! writing into a `Vec` that is taken after every frame.

use std::io::{self, Write};

use bytes::Bytes;
use cache::encoding::Encoding;

use super::Levels;

/// Brotli's window: 4 MiB (lgwin 22), the library's default.
const BROTLI_WINDOW: u32 = 22;
/// Buffer of the brotli writers.
const BROTLI_BUFFER: usize = 16 << 10;

/// One body being compressed or decompressed.
pub(crate) enum Codec {
    Gzip(flate2::write::GzEncoder<Vec<u8>>),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
    Gunzip(flate2::write::GzDecoder<Vec<u8>>),
    Inflate(flate2::write::ZlibDecoder<Vec<u8>>),
    Unbrotli(Box<brotli::DecompressorWriter<Vec<u8>>>),
    Unzstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Codec::Gzip(_) => "Codec::Gzip",
            Codec::Brotli(_) => "Codec::Brotli",
            Codec::Zstd(_) => "Codec::Zstd",
            Codec::Gunzip(_) => "Codec::Gunzip",
            Codec::Inflate(_) => "Codec::Inflate",
            Codec::Unbrotli(_) => "Codec::Unbrotli",
            Codec::Unzstd(_) => "Codec::Unzstd",
        })
    }
}

impl Codec {
    /// A compressor for `encoding` (deflate is never produced: gzip is).
    pub(crate) fn encoder(encoding: Encoding, levels: &Levels) -> io::Result<Codec> {
        Ok(match encoding {
            Encoding::Gzip | Encoding::Deflate => Codec::Gzip(flate2::write::GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(levels.gzip),
            )),
            Encoding::Brotli => Codec::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
                levels.br,
                BROTLI_WINDOW,
            ))),
            Encoding::Zstd => {
                Codec::Zstd(zstd::stream::write::Encoder::new(Vec::new(), levels.zstd)?)
            }
        })
    }

    /// A decompressor for `encoding`.
    pub(crate) fn decoder(encoding: Encoding) -> io::Result<Codec> {
        Ok(match encoding {
            Encoding::Gzip => Codec::Gunzip(flate2::write::GzDecoder::new(Vec::new())),
            Encoding::Deflate => Codec::Inflate(flate2::write::ZlibDecoder::new(Vec::new())),
            Encoding::Brotli => Codec::Unbrotli(Box::new(brotli::DecompressorWriter::new(
                Vec::new(),
                BROTLI_BUFFER,
            ))),
            Encoding::Zstd => Codec::Unzstd(zstd::stream::write::Decoder::new(Vec::new())?),
        })
    }

    /// Feeds `data`; returns the output ready so far (maybe empty).
    pub(crate) fn push(&mut self, data: &[u8]) -> io::Result<Bytes> {
        match self {
            Codec::Gzip(w) => w.write_all(data).map(|()| take(w.get_mut())),
            Codec::Brotli(w) => w.write_all(data).map(|()| take(w.get_mut())),
            Codec::Zstd(w) => w.write_all(data).map(|()| take(w.get_mut())),
            Codec::Gunzip(w) => w.write_all(data).map(|()| take(w.get_mut())),
            Codec::Inflate(w) => w.write_all(data).map(|()| take(w.get_mut())),
            Codec::Unbrotli(w) => w.write_all(data).map(|()| take(w.get_mut())),
            Codec::Unzstd(w) => w.write_all(data).map(|()| take(w.get_mut())),
        }
    }

    /// The body ended: the rest of the output. A compressed input that
    /// ends early is an error here.
    pub(crate) fn finish(self) -> io::Result<Bytes> {
        let rest = match self {
            Codec::Gzip(w) => w.finish()?,
            Codec::Brotli(w) => w.into_inner(),
            Codec::Zstd(w) => w.finish()?,
            Codec::Gunzip(w) => w.finish()?,
            Codec::Inflate(w) => w.finish()?,
            Codec::Unbrotli(mut w) => {
                w.close()?;
                w.into_inner()
                    .map_err(|_| io::Error::other("brotli stream ends early"))?
            }
            Codec::Unzstd(mut w) => {
                w.flush()?;
                std::mem::take(w.get_mut())
            }
        };
        Ok(Bytes::from(rest))
    }
}

fn take(out: &mut Vec<u8>) -> Bytes {
    if out.is_empty() {
        Bytes::new()
    } else {
        Bytes::from(std::mem::take(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> Vec<u8> {
        (0..4000)
            .flat_map(|i| format!("<li>item {i} of a list that compresses</li>\n").into_bytes())
            .collect()
    }

    fn run(mut codec: Codec, input: &[u8], frame: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for piece in input.chunks(frame) {
            out.extend_from_slice(&codec.push(piece).unwrap());
        }
        out.extend_from_slice(&codec.finish().unwrap());
        out
    }

    #[test]
    fn every_encoding_round_trips_frame_by_frame() {
        let input = text();
        let levels = Levels::default();
        for encoding in Encoding::PRODUCED {
            for frame in [1, 1000, 16 << 10, input.len()] {
                let packed = run(Codec::encoder(encoding, &levels).unwrap(), &input, frame);
                assert!(
                    packed.len() < input.len() / 5,
                    "{encoding:?} {}",
                    packed.len()
                );
                let back = run(Codec::decoder(encoding).unwrap(), &packed, frame);
                assert_eq!(back, input, "{encoding:?} frames of {frame}");
            }
        }
    }

    #[test]
    fn deflate_is_undone_as_zlib() {
        let input = text();
        let mut w = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        w.write_all(&input).unwrap();
        let packed = w.finish().unwrap();
        let back = run(Codec::decoder(Encoding::Deflate).unwrap(), &packed, 777);
        assert_eq!(back, input);
    }

    #[test]
    fn a_truncated_gzip_body_is_an_error_at_its_end() {
        let input = text();
        let packed = run(
            Codec::encoder(Encoding::Gzip, &Levels::default()).unwrap(),
            &input,
            4096,
        );
        let mut codec = Codec::decoder(Encoding::Gzip).unwrap();
        codec.push(&packed[..packed.len() / 2]).unwrap();
        assert!(codec.finish().is_err());
    }
}
