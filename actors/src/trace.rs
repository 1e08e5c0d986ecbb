//! W3C trace context: the `traceparent` an event may carry and every attempt passes on.
//!
//! A producer that traces its own work may put its `traceparent` on an event (contract §7,
//! `trace_context: {traceparent}`); herald sends it on as the `traceparent` header of every
//! attempt, so a receiver's trace joins the producer's. With tracing on, the daemon's
//! [`Tracer`](crate::ports::Tracer) puts its own spans in between (the routing span, then
//! one per attempt) and the header carries the attempt's span instead.
//!
//! Only the `traceparent` form of the [W3C Trace Context] is read here: parsing is strict
//! (lower-case hex, no all-zero ids, no version `ff`), and what does not parse is the
//! caller's to ignore — a bad trace context never stops an event.
//!
//! [W3C Trace Context]: https://www.w3.org/TR/trace-context/#traceparent-header

use std::fmt;

/// A parsed `traceparent`: `00-<trace id>-<parent id>-<flags>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    /// 16 bytes, never all zero.
    pub trace_id: [u8; 16],
    /// The id of the span this one descends from: 8 bytes, never all zero.
    pub parent_id: [u8; 8],
    /// The trace flags; bit 0 is `sampled`.
    pub flags: u8,
}

/// Why a `traceparent` was not understood.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadTraceParent {
    #[error("traceparent is not `version-trace_id-parent_id-flags` in lower-case hex")]
    Format,
    #[error("traceparent version ff is invalid")]
    Version,
    #[error("traceparent has an all-zero trace id or parent id")]
    ZeroId,
}

/// Length of a version-00 `traceparent`.
const LEN: usize = 55;

impl TraceParent {
    /// Parses a `traceparent` header value. A version above `00` is read as `00` is (its
    /// first four fields), as the specification asks of a parser that knows only `00`.
    pub fn parse(value: &str) -> Result<Self, BadTraceParent> {
        let value = value.trim_matches([' ', '\t']);
        let bytes = value.as_bytes();
        if bytes.len() < LEN {
            return Err(BadTraceParent::Format);
        }
        let version = hex_byte(&bytes[0..2]).ok_or(BadTraceParent::Format)?;
        if version == 0xff {
            return Err(BadTraceParent::Version);
        }
        // Version 00 is exactly 55 characters; a later one may go on after a dash.
        let longer = bytes.len() > LEN;
        if longer && (version == 0 || bytes[LEN] != b'-') {
            return Err(BadTraceParent::Format);
        }
        if bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return Err(BadTraceParent::Format);
        }
        let mut trace_id = [0u8; 16];
        hex_into(&bytes[3..35], &mut trace_id).ok_or(BadTraceParent::Format)?;
        let mut parent_id = [0u8; 8];
        hex_into(&bytes[36..52], &mut parent_id).ok_or(BadTraceParent::Format)?;
        let flags = hex_byte(&bytes[53..55]).ok_or(BadTraceParent::Format)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return Err(BadTraceParent::ZeroId);
        }
        Ok(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// Whether the producer recorded its span (the `sampled` flag).
    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The trace id as 32 lower-case hex characters.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
}

/// The header value, version `00`.
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.parent_id),
            self.flags
        )
    }
}

fn hex(bytes: &[u8]) -> String {
    use fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    Some(nibble(pair[0])? << 4 | nibble(pair[1])?)
}

fn hex_into(text: &[u8], out: &mut [u8]) -> Option<()> {
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = hex_byte(&text[i * 2..i * 2 + 2])?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_reads_and_prints_back_the_same() {
        let parsed = TraceParent::parse(GOOD).unwrap();
        assert_eq!(parsed.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(
            parsed.parent_id,
            [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]
        );
        assert!(parsed.sampled());
        assert_eq!(parsed.to_string(), GOOD);
        let unsampled = TraceParent::parse(&GOOD.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled());
    }

    #[test]
    fn a_later_version_is_read_as_version_00() {
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes";
        let parsed = TraceParent::parse(later).unwrap();
        assert_eq!(parsed.to_string(), GOOD);
        // Without the dash after the flags, the extra text is no field of a later version.
        let glued = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x";
        assert_eq!(TraceParent::parse(glued), Err(BadTraceParent::Format));
    }

    #[test]
    fn bad_input_is_refused_not_guessed() {
        let cases: &[(&str, BadTraceParent)] = &[
            ("", BadTraceParent::Format),
            ("garbage", BadTraceParent::Format),
            // Upper-case hex.
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",
                BadTraceParent::Format,
            ),
            // Version 00 with a trailing field.
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
                BadTraceParent::Format,
            ),
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                BadTraceParent::Version,
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                BadTraceParent::ZeroId,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                BadTraceParent::ZeroId,
            ),
            // Wrong separators, short ids, non-hex.
            (
                "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                BadTraceParent::Format,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
                BadTraceParent::Format,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902bz-01",
                BadTraceParent::Format,
            ),
            // Multi-byte characters where hex belongs never panic.
            (
                "00-4bf92f3577b34da6a3ce929d0e0e47é-00f067aa0ba902b7-01",
                BadTraceParent::Format,
            ),
        ];
        for (input, why) in cases {
            assert_eq!(TraceParent::parse(input), Err(*why), "{input:?}");
        }
    }
}
