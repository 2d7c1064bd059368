//! Human-friendly units in config files and flags: `256MiB`, `30s`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// A size in bytes, written `4096`, `64KiB`, `256MiB`, `4GiB`, or with SI
/// units (`1MB` = 10^6 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    pub const fn kib(n: u64) -> Self {
        ByteSize(n << 10)
    }
    pub const fn mib(n: u64) -> Self {
        ByteSize(n << 20)
    }
    pub const fn gib(n: u64) -> Self {
        ByteSize(n << 30)
    }
    pub fn as_u64(self) -> u64 {
        self.0
    }
    /// The size as `usize`, saturating on 32-bit targets.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let invalid = || format!("invalid size {s:?}: expected e.g. 4096, 64KiB, 256MiB, 1.5GiB");
        // nginx writes 256m, others 256M or 256MiB: binary units, any case;
        // KB/MB/GB (with the B) are decimal.
        let mult: u128 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "t" | "tib" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            other => {
                return Err(format!(
                    "invalid size unit {other:?} in {s:?}: use KiB, MiB, GiB, TiB (or k, m, g, t), or KB, MB, GB, TB"
                ));
            }
        };
        // Integer arithmetic, not f64: every u64 is exact and `1.5GiB` is
        // exactly 3 << 29.
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        let digits_only = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty())
            || !digits_only(whole)
            || !digits_only(fraction)
        {
            return Err(invalid());
        }
        let too_large = || format!("size {s:?} is too large");
        let whole: u128 = match whole {
            "" => 0,
            w => w.parse().map_err(|_| too_large())?,
        };
        // Digits past the 18th cannot change the byte count by a whole byte
        // (the largest unit is 2^40).
        let fraction = &fraction[..fraction.len().min(18)];
        let scale = 10u128.pow(fraction.len() as u32);
        let fraction: u128 = match fraction {
            "" => 0,
            f => f.parse().map_err(|_| invalid())?,
        };
        let bytes = whole
            .checked_mul(mult)
            .and_then(|b| b.checked_add((fraction * mult + scale / 2) / scale))
            .and_then(|b| u64::try_from(b).ok())
            .ok_or_else(too_large)?;
        Ok(ByteSize(bytes))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(&str, u32); 4] = [("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10)];
        for (name, shift) in UNITS {
            if self.0 >= 1 << shift && self.0.is_multiple_of(1 << shift) {
                return write!(f, "{}{name}", self.0 >> shift);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Str(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Parses `500ms`, `30s`, `2m`, `1h 30m` (humantime's syntax).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}): expected e.g. 500ms, 30s, 5m"))
}

/// serde `deserialize_with` for durations written as strings.
pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// serde `deserialize_with` for optional durations.
pub fn de_opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!("4096".parse::<ByteSize>().unwrap(), ByteSize(4096));
        assert_eq!("64KiB".parse::<ByteSize>().unwrap(), ByteSize::kib(64));
        assert_eq!("256MiB".parse::<ByteSize>().unwrap(), ByteSize::mib(256));
        assert_eq!("4GiB".parse::<ByteSize>().unwrap(), ByteSize::gib(4));
        assert_eq!("1MB".parse::<ByteSize>().unwrap(), ByteSize(1_000_000));
        assert!("12XB".parse::<ByteSize>().is_err());
        assert_eq!("256m".parse::<ByteSize>().unwrap(), ByteSize::mib(256));
        assert_eq!("256mib".parse::<ByteSize>().unwrap(), ByteSize::mib(256));
        assert_eq!("1.5GiB".parse::<ByteSize>().unwrap(), ByteSize(3 << 29));
        assert!("1.2.3GiB".parse::<ByteSize>().is_err());
        assert!("MiB".parse::<ByteSize>().is_err());
        assert!("99999999999TiB".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize::mib(256).to_string(), "256MiB");
        assert_eq!(ByteSize(1000).to_string(), "1000B");
    }

    /// Sizes went through f64 once: above 2^53 they were rounded.
    #[test]
    fn sizes_are_exact_integers() {
        assert_eq!(
            "9007199254740993".parse::<ByteSize>().unwrap(),
            ByteSize(9_007_199_254_740_993)
        );
        assert_eq!(
            "18446744073709551615".parse::<ByteSize>().unwrap(),
            ByteSize(u64::MAX)
        );
        assert!("18446744073709551616".parse::<ByteSize>().is_err());
        assert!("16777216TiB".parse::<ByteSize>().is_err());
        assert_eq!("0.5KiB".parse::<ByteSize>().unwrap(), ByteSize(512));
        assert_eq!(".5k".parse::<ByteSize>().unwrap(), ByteSize(512));
        assert_eq!("2.KiB".parse::<ByteSize>().unwrap(), ByteSize::kib(2));
        assert_eq!("0.0001KiB".parse::<ByteSize>().unwrap(), ByteSize(0));
        assert_eq!(
            "1.000000000000000000001TiB".parse::<ByteSize>().unwrap(),
            ByteSize(1 << 40)
        );
        assert_eq!(
            "0.1234567890123456789GB".parse::<ByteSize>().unwrap(),
            ByteSize(123_456_789)
        );
        assert!(".".parse::<ByteSize>().is_err());
        assert!("-1".parse::<ByteSize>().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("30").is_err());
    }
}
