//! How a feed position is stored: a partition's checkpoint, a member's quiet mark, the old
//! single checkpoint. The bytes are the engine's opaque [`Position`](herald_actors::Position)
//! checkpoint; the cluster time orders positions read by different members.

use bytes::Bytes;
use mongodb::bson::{DateTime, Timestamp};
use mongodb::change_stream::event::ResumeToken;
use serde::{Deserialize, Serialize};

/// A cluster time as the engine orders positions: seconds in the high half.
pub fn time_key(t: Timestamp) -> u64 {
    (u64::from(t.time) << 32) | u64::from(t.increment)
}

/// The cluster time of a [`time_key`].
pub fn timestamp(key: u64) -> Timestamp {
    Timestamp {
        time: (key >> 32) as u32,
        increment: key as u32,
    }
}

/// Where the feed stands: the resume token of a change, and that change's time (used to
/// scan `events` when the token has fallen out of the change-stream history).
#[derive(Debug, Clone)]
pub struct FeedPosition {
    pub token: ResumeToken,
    pub at: Option<DateTime>,
    /// The change's cluster time as [`time_key`] orders it; 0 when unknown (checkpoints
    /// written before positions carried it).
    pub time: u64,
}

/// The checkpoint as stored: the engine's opaque bytes. `time` is absent from checkpoints
/// written by versions before cluster mode; they still decode.
#[derive(Serialize, Deserialize)]
struct Checkpoint {
    token: ResumeToken,
    #[serde(default)]
    at: Option<DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    time: Option<Timestamp>,
}

/// The bytes stored for `position`.
pub fn encode_position(position: &FeedPosition) -> Option<Bytes> {
    let checkpoint = Checkpoint {
        token: position.token.clone(),
        at: position.at,
        time: (position.time > 0).then(|| timestamp(position.time)),
    };
    mongodb::bson::to_vec(&checkpoint).ok().map(Bytes::from)
}

/// The position stored as `bytes`, if they are one.
pub fn decode_position(bytes: &[u8]) -> Option<FeedPosition> {
    mongodb::bson::from_slice::<Checkpoint>(bytes)
        .ok()
        .map(|c| FeedPosition {
            token: c.token,
            at: c.at,
            time: c.time.map_or(0, time_key),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::{doc, Bson};

    #[test]
    fn checkpoints_round_trip() {
        let token: ResumeToken =
            mongodb::bson::from_bson(Bson::Document(doc! {"_data": "abc"})).unwrap();
        let at = DateTime::from_millis(1_767_225_600_000);
        let bytes = encode_position(&FeedPosition {
            token: token.clone(),
            at: Some(at),
            time: 7 << 32 | 3,
        })
        .unwrap();
        let back = decode_position(&bytes).unwrap();
        assert_eq!(format!("{:?}", back.token), format!("{token:?}"));
        assert_eq!(back.at, Some(at));
        assert_eq!(back.time, 7 << 32 | 3);
    }
}
