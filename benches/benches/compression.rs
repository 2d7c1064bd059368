//! Compression at the default levels, through the edge's own transcoding
//! body (`edge::transform::Transcoded`, 16 KiB frames as a body arrives):
//! ratio and CPU per MiB for each encoding on a corpus of the kinds of text
//! a CDN serves, and the client bytes saved on a realistic mix of a page's
//! bytes. Prints markdown. `cargo bench -p edge-benches --bench compression`

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use cache::encoding::Encoding;
use edge::config::CompressionConfig;
use edge::transform::{Compression, Metrics, Transcoded, Transformer};
use http_body::{Body, Frame};
use http_body_util::BodyExt;

/// A body of ready frames.
struct Frames(Vec<Bytes>);

impl Body for Frames {
    type Data = Bytes;
    type Error = edge::body::BoxError;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.0.is_empty() {
            return Poll::Ready(None);
        }
        Poll::Ready(Some(Ok(Frame::data(self.0.remove(0)))))
    }
}

fn frames(data: &[u8]) -> edge::body::ProxyBody {
    let pieces = data
        .chunks(16 << 10)
        .map(Bytes::copy_from_slice)
        .collect::<Vec<_>>();
    edge::body::boxed(Frames(pieces))
}

/// The kinds of text, as a CDN sees them: the repository's own HTML+JS
/// dashboard, its Markdown docs, a JSON API answer, CSS-like rules.
fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let read = |p: &str| std::fs::read(format!("{root}/{p}")).unwrap_or_default();
    let html = read("edge/src/dashboard.html");
    let mut md = Vec::new();
    for entry in std::fs::read_dir(format!("{root}/docs"))
        .into_iter()
        .flatten()
        .flatten()
    {
        if entry.path().extension().is_some_and(|e| e == "md") {
            md.extend(std::fs::read(entry.path()).unwrap_or_default());
        }
    }
    let mut json = String::from("[");
    for i in 0..3000u64 {
        let h = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        json.push_str(&format!(
            r#"{{"id":{i},"sku":"SKU-{:08x}","name":"Product {i}","price":{}.{:02},"in_stock":{},"tags":["t{}","t{}"]}},"#,
            h >> 32,
            h % 500,
            h % 100,
            h % 3 == 0,
            h % 17,
            h % 29
        ));
    }
    json.push(']');
    let mut css = String::new();
    for i in 0..4000u64 {
        css.push_str(&format!(
            ".c{i}{{margin:{}px {}px;color:#{:06x};display:flex}}\n",
            i % 13,
            i % 7,
            i.wrapping_mul(2_654_435_761) & 0xff_ffff
        ));
    }
    vec![
        ("html+js", html),
        ("markdown", md),
        ("json", json.into_bytes()),
        ("css", css.into_bytes()),
    ]
}

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let registry = prometheus::Registry::new();
    let transformer = Transformer {
        settings: Arc::new(Compression::from_config(&CompressionConfig::default())),
        metrics: Metrics::new(&registry).expect("metrics"),
    };
    let corpus = corpus();
    println!(
        "| kind | size | encoding | ratio (out/in) | CPU ms per MiB in | decode ms per MiB out |"
    );
    println!("|---|---|---|---|---|---|");
    let mut ratios = std::collections::HashMap::new();
    for (kind, data) in &corpus {
        for encoding in Encoding::PRODUCED {
            // Enough repetitions for ~64 MiB of input per cell.
            let reps = ((64 << 20) / data.len().max(1)).clamp(3, 2000);
            let start = Instant::now();
            let mut out = Bytes::new();
            for _ in 0..reps {
                let body = Transcoded::encode(&transformer, frames(data), encoding, None);
                out = rt.block_on(body.collect()).expect("compresses").to_bytes();
            }
            let enc_ms = start.elapsed().as_secs_f64() * 1e3 / reps as f64;
            let start = Instant::now();
            for _ in 0..reps {
                let body = Transcoded::decode(&transformer, frames(&out), encoding);
                let back = rt.block_on(body.collect()).expect("decodes").to_bytes();
                assert_eq!(back.len(), data.len());
            }
            let dec_ms = start.elapsed().as_secs_f64() * 1e3 / reps as f64;
            let mib = data.len() as f64 / f64::from(1 << 20);
            let ratio = out.len() as f64 / data.len() as f64;
            ratios
                .entry(encoding.token())
                .or_insert_with(Vec::new)
                .push(ratio);
            println!(
                "| {kind} | {} KiB | {} | {ratio:.3} | {:.1} | {:.1} |",
                data.len() >> 10,
                encoding.token(),
                enc_ms / mib,
                dec_ms / mib,
            );
        }
    }
    // A page's bytes by type (HTTP Archive's median page, 2024: images
    // ~45 %, JavaScript ~30 %, fonts ~5 %, CSS ~4 %, HTML ~2 %, other
    // ~14 %, of which JSON/XHR a third); images, fonts (woff2) and the
    // rest are sent as they are. Text kinds take the corpus's mean ratio.
    let text_share = 0.30 + 0.04 + 0.02 + 0.14 / 3.0;
    println!();
    println!("| client accepts | text share of bytes | client bytes saved on the mix |");
    println!("|---|---|---|");
    for encoding in ["br", "zstd", "gzip"] {
        let r = &ratios[encoding];
        let mean = r.iter().sum::<f64>() / r.len() as f64;
        println!(
            "| {encoding} | {:.0} % | {:.1} % |",
            text_share * 100.0,
            text_share * (1.0 - mean) * 100.0
        );
    }
}
