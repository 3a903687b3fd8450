//! The binary framing of replication batches: a feed page, a pushed batch
//! and a snapshot page are all one frame. Decoding trusts nothing: every
//! length is checked against the bytes present and against hard limits.
//!
//! Layout (integers big-endian):
//! ```text
//! magic     4  b"CRMS"
//! version   1  PROTOCOL_VERSION
//! type      1  1 = changes, 2 = snapshots
//! sender   20  sender's node id (16) + epoch (4)
//! through   8  changes: sender's feed scanned up to this seq
//!              snapshots: feed position taken when the copy began
//! latest    8  sender's latest feed seq
//! kinds   2+n  length, then the kinds the sender knows, comma-separated
//! count     4  number of entries
//! entries   count × {
//!   seq     8  sender's feed seq (0 in snapshot frames)
//!   doc    16  document id (UUID bytes)
//!   klen    1  kind length, 1..=64
//!   kind klen  kind name, ASCII [a-z0-9_]
//!   len     4  payload length
//!   payload    one Automerge change, or a saved document (snapshot frames)
//! }
//! ```

use automerge::ActorId;
use uuid::Uuid;

use crate::feed::KindSet;

use crate::ids::{actor_for, Epoch, NodeId};
use crate::DocId;

/// The replication protocol this build speaks. A peer with another version
/// is refused with a clear error on both sides.
pub const PROTOCOL_VERSION: u8 = 1;

const MAGIC: &[u8; 4] = b"CRMS";
const HEADER_LEN: usize = 4 + 1 + 1 + 20 + 8 + 8 + 2 + 4;
/// Entries in one frame at most.
pub const MAX_ENTRIES: usize = 10_000;
/// Payload bytes of one entry at most (a saved document with a long history).
pub const MAX_PAYLOAD: usize = 8 * 1024 * 1024;
const MAX_KIND_LEN: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    Changes = 1,
    Snapshots = 2,
}

/// One change or saved document with the document it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: i64,
    pub doc: DocId,
    pub kind: String,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub frame_type: FrameType,
    pub sender: Sender,
    /// The kinds the sender knows: a peer sends it only those.
    pub kinds: KindSet,
    pub through: i64,
    pub latest: i64,
    pub entries: Vec<Entry>,
}

/// A node in an epoch: who sent a frame, or whom a feed is read for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sender {
    pub node: NodeId,
    pub epoch: Epoch,
}

impl Sender {
    pub fn actor(&self) -> ActorId {
        actor_for(self.node, self.epoch)
    }

    pub fn to_bytes(self) -> [u8; 20] {
        let mut out = [0u8; 20];
        out[..16].copy_from_slice(self.node.0.as_bytes());
        out[16..].copy_from_slice(&self.epoch.0.to_be_bytes());
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Sender> {
        let node: [u8; 16] = bytes.get(..16)?.try_into().ok()?;
        let epoch: [u8; 4] = bytes.get(16..20)?.try_into().ok()?;
        if bytes.len() != 20 {
            return None;
        }
        Some(Sender {
            node: NodeId(Uuid::from_bytes(node)),
            epoch: Epoch(u32::from_be_bytes(epoch)),
        })
    }

    /// 40 hex digits, as used in URLs.
    pub fn to_hex(self) -> String {
        hex::encode(self.to_bytes())
    }

    pub fn from_hex(s: &str) -> Option<Sender> {
        Sender::from_bytes(&hex::decode(s).ok()?)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("not a replication frame (bad magic bytes)")]
    BadMagic,
    #[error(
        "protocol version {found} is not supported: this node speaks version {PROTOCOL_VERSION}"
    )]
    Version { found: u8 },
    #[error("unknown frame type {0}")]
    BadType(u8),
    #[error("frame truncated at byte {0}")]
    Truncated(usize),
    #[error("frame has {0} entries; at most {MAX_ENTRIES} are accepted")]
    TooManyEntries(usize),
    #[error("entry {index}: {message}")]
    BadEntry { index: usize, message: String },
    #[error("the list of kinds at byte {0} is malformed")]
    BadKinds(usize),
    #[error("{0} bytes after the last entry")]
    TrailingBytes(usize),
}

pub fn is_valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= MAX_KIND_LEN
        && kind
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Frame {
    pub fn encode(&self) -> Vec<u8> {
        let body: usize = self
            .entries
            .iter()
            .map(|e| 8 + 16 + 1 + e.kind.len() + 4 + e.payload.len())
            .sum();
        let mut out = Vec::with_capacity(HEADER_LEN + body);
        out.extend_from_slice(MAGIC);
        out.push(PROTOCOL_VERSION);
        out.push(self.frame_type as u8);
        out.extend_from_slice(&self.sender.to_bytes());
        out.extend_from_slice(&self.through.to_be_bytes());
        out.extend_from_slice(&self.latest.to_be_bytes());
        let kinds = self
            .kinds
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(",");
        // Kind names are short and few; a set too long to describe is cut
        // at a name boundary rather than corrupting the frame.
        let kinds = if kinds.len() > u16::MAX as usize {
            kinds[..kinds[..u16::MAX as usize].rfind(',').unwrap_or(0)].to_owned()
        } else {
            kinds
        };
        out.extend_from_slice(&(kinds.len() as u16).to_be_bytes());
        out.extend_from_slice(kinds.as_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_be_bytes());
        for e in &self.entries {
            out.extend_from_slice(&e.seq.to_be_bytes());
            out.extend_from_slice(e.doc.as_uuid().as_bytes());
            // Kinds are checked to be short ASCII names before they are
            // stored, so the length fits one byte.
            out.push(e.kind.len() as u8);
            out.extend_from_slice(e.kind.as_bytes());
            out.extend_from_slice(&(e.payload.len() as u32).to_be_bytes());
            out.extend_from_slice(&e.payload);
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Frame, FrameError> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(4)? != MAGIC {
            return Err(FrameError::BadMagic);
        }
        let version = r.u8()?;
        if version != PROTOCOL_VERSION {
            return Err(FrameError::Version { found: version });
        }
        let frame_type = match r.u8()? {
            1 => FrameType::Changes,
            2 => FrameType::Snapshots,
            other => return Err(FrameError::BadType(other)),
        };
        let sender = Sender::from_bytes(r.take(20)?).ok_or(FrameError::Truncated(r.at))?;
        let through = r.i64()?;
        let latest = r.i64()?;
        let kinds_len = r.u16()? as usize;
        let kinds_at = r.at;
        let kinds_text =
            std::str::from_utf8(r.take(kinds_len)?).map_err(|_| FrameError::BadKinds(kinds_at))?;
        let mut kinds = KindSet::new();
        for kind in kinds_text.split(',').filter(|k| !k.is_empty()) {
            if !is_valid_kind(kind) {
                return Err(FrameError::BadKinds(kinds_at));
            }
            kinds.insert(kind.to_owned());
        }
        let count = r.u32()? as usize;
        if count > MAX_ENTRIES {
            return Err(FrameError::TooManyEntries(count));
        }
        let mut entries = Vec::with_capacity(count.min(1024));
        for index in 0..count {
            let bad = |message: &str| FrameError::BadEntry {
                index,
                message: message.to_owned(),
            };
            let seq = r.i64()?;
            let doc = DocId::from_uuid(Uuid::from_bytes(
                r.take(16)?.try_into().map_err(|_| bad("document id"))?,
            ));
            let kind_len = r.u8()? as usize;
            let kind = std::str::from_utf8(r.take(kind_len)?)
                .map_err(|_| bad("kind is not UTF-8"))?
                .to_owned();
            if !is_valid_kind(&kind) {
                return Err(bad("kind must be 1-64 characters of a-z, 0-9, _"));
            }
            let len = r.u32()? as usize;
            if len > MAX_PAYLOAD {
                return Err(bad("payload larger than 8 MiB"));
            }
            if len == 0 {
                return Err(bad("empty payload"));
            }
            let payload = r.take(len)?.to_vec();
            entries.push(Entry {
                seq,
                doc,
                kind,
                payload,
            });
        }
        if r.at != bytes.len() {
            return Err(FrameError::TrailingBytes(bytes.len() - r.at));
        }
        Ok(Frame {
            frame_type,
            sender,
            kinds,
            through,
            latest,
            entries,
        })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let end = self
            .at
            .checked_add(n)
            .ok_or(FrameError::Truncated(self.at))?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or(FrameError::Truncated(self.at))?;
        self.at = end;
        Ok(slice)
    }

    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, FrameError> {
        let b: [u8; 2] = self
            .take(2)?
            .try_into()
            .map_err(|_| FrameError::Truncated(self.at))?;
        Ok(u16::from_be_bytes(b))
    }

    fn u32(&mut self) -> Result<u32, FrameError> {
        let b: [u8; 4] = self
            .take(4)?
            .try_into()
            .map_err(|_| FrameError::Truncated(self.at))?;
        Ok(u32::from_be_bytes(b))
    }

    fn i64(&mut self) -> Result<i64, FrameError> {
        let b: [u8; 8] = self
            .take(8)?
            .try_into()
            .map_err(|_| FrameError::Truncated(self.at))?;
        Ok(i64::from_be_bytes(b))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Frame {
        Frame {
            frame_type: FrameType::Changes,
            sender: Sender {
                node: NodeId(Uuid::new_v4()),
                epoch: Epoch(2),
            },
            kinds: ["clients".to_owned(), "contacts".to_owned()].into(),
            through: 42,
            latest: 50,
            entries: vec![
                Entry {
                    seq: 41,
                    doc: DocId::new(),
                    kind: "clients".into(),
                    payload: vec![1, 2, 3],
                },
                Entry {
                    seq: 42,
                    doc: DocId::new(),
                    kind: "contacts".into(),
                    payload: vec![9; 300],
                },
            ],
        }
    }

    #[test]
    fn round_trips() {
        let frame = sample();
        assert_eq!(Frame::decode(&frame.encode()), Ok(frame));
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(
                Frame::decode(&bytes[..len]).is_err(),
                "prefix of {len} bytes"
            );
        }
    }

    #[test]
    fn refuses_bad_headers_and_entries() {
        let mut bytes = sample().encode();
        bytes.push(0);
        assert_eq!(Frame::decode(&bytes), Err(FrameError::TrailingBytes(1)));

        let mut bytes = sample().encode();
        bytes[4] = 9;
        assert_eq!(Frame::decode(&bytes), Err(FrameError::Version { found: 9 }));

        let mut bytes = sample().encode();
        bytes[0] = b'X';
        assert_eq!(Frame::decode(&bytes), Err(FrameError::BadMagic));

        let mut frame = sample();
        frame.entries[1].kind = "Clients!".into();
        assert!(matches!(
            Frame::decode(&frame.encode()),
            Err(FrameError::BadEntry { index: 1, .. })
        ));

        let kinds_len = "clients,contacts".len();
        let mut bytes = sample().encode();
        bytes[HEADER_LEN - 4 + kinds_len..HEADER_LEN + kinds_len]
            .copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(
            Frame::decode(&bytes),
            Err(FrameError::TooManyEntries(_))
        ));
    }

    #[test]
    fn sender_hex_round_trips() {
        let s = sample().sender;
        assert_eq!(Sender::from_hex(&s.to_hex()), Some(s));
        assert_eq!(Sender::from_hex("abcd"), None);
    }
}
