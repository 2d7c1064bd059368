//! The knobs of a run, read from the environment, and the kinds of fault
//! the origin may be told to inject (`SOAK_FAULTS` names them).

#[derive(Debug, Clone)]
pub struct Settings {
    pub secs: u64,
    pub max_requests: u64,
    pub clients: usize,
    pub fault_rate: f64,
    /// The kinds of fault to inject (`SOAK_FAULTS=reset,cut_chunked`).
    pub faults: Vec<Fault>,
    /// Whether sound 206s go chunked half the time, like the 200s
    /// (`SOAK_CHUNKED_206=0`: always with Content-Length).
    pub chunked_206: bool,
    pub seed: u64,
}

impl Settings {
    pub fn from_env() -> Self {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
            match std::env::var(name) {
                Ok(v) => v
                    .trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={v:?} does not parse")),
                Err(_) => default,
            }
        }
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Settings {
            secs: var("SOAK_SECS", 120),
            max_requests: var("SOAK_REQUESTS", 5_000_000),
            clients: var("SOAK_CLIENTS", 64usize).max(1),
            fault_rate: var("SOAK_FAULT_RATE", 0.1f64).clamp(0.0, 1.0),
            faults: match std::env::var("SOAK_FAULTS") {
                Ok(list) => list
                    .split(',')
                    .map(|name| {
                        let name = name.trim();
                        *Fault::ALL
                            .iter()
                            .find(|f| f.as_str() == name)
                            .unwrap_or_else(|| panic!("SOAK_FAULTS: unknown fault {name:?}"))
                    })
                    .collect(),
                Err(_) => Fault::ALL.to_vec(),
            },
            chunked_206: var("SOAK_CHUNKED_206", 1u8) != 0,
            seed: var("SOAK_SEED", clock),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// RST before any answer.
    Reset,
    /// Nothing for `STALL`, then a normal (late) answer.
    StallHead,
    /// Part of the body, nothing for `STALL`, then the connection closes.
    StallBody,
    Status500,
    Status503,
    /// `Content-Length` of the whole, part of the body, then closed.
    CutLength,
    /// Chunked, part of the body, then closed without the last chunk.
    CutChunked,
}

impl Fault {
    pub const ALL: [Fault; 7] = [
        Fault::Reset,
        Fault::StallHead,
        Fault::StallBody,
        Fault::Status500,
        Fault::Status503,
        Fault::CutLength,
        Fault::CutChunked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Reset => "reset",
            Fault::StallHead => "stall_head",
            Fault::StallBody => "stall_body",
            Fault::Status500 => "status_500",
            Fault::Status503 => "status_503",
            Fault::CutLength => "cut_content_length",
            Fault::CutChunked => "cut_chunked",
        }
    }

    /// How often, relative to the others.
    pub fn weight(self) -> u64 {
        match self {
            Fault::Reset => 25,
            Fault::StallHead | Fault::StallBody => 10,
            Fault::Status500 | Fault::Status503 => 15,
            Fault::CutLength | Fault::CutChunked => 12,
        }
    }
}
