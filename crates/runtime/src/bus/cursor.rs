//! A listener's cursor that survives the bus losing its log.
//!
//! Positions are only meaningful within one generation of the log (see
//! [`super::EventBus::generation`]): after Redis restarts empty, positions
//! start over and the events published before come back as replays from the
//! outboxes, each carrying where it was first published ([`super::Origin`]).
//! So a cursor names its generation, and keeps, for each earlier generation
//! the listener followed, the newest position it had reached there: a replay
//! first published at or before that position was seen already and is
//! skipped, so a listener resuming across a reset misses nothing and sees
//! nothing twice.
//!
//! Text form (opaque to callers): `<position>@<generation>`, then
//! `~<position>@<generation>` for each earlier generation. A bare
//! `<position>` (cursors issued before generations existed) means the
//! current generation.

use std::fmt;
use std::str::FromStr;

use super::{Origin, Position};
use crate::error::{Error, Result};

/// Earlier generations a cursor remembers; older ones are dropped, which
/// can only make a listener see a replay again, never miss one.
const MAX_EARLIER: usize = 16;

/// Where a listener stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Cursor {
    /// The generation of `position`; `None` for a bare position.
    pub generation: Option<String>,
    /// The position of the last event handed out (or passed over).
    pub position: Position,
    /// For earlier generations, the newest position reached in each.
    pub earlier: Vec<(String, Position)>,
}

impl Cursor {
    /// True when `origin` (a replay's first publication) lies at or before
    /// a position this listener had reached in an earlier generation.
    pub fn saw(&self, origin: &Origin) -> bool {
        self.earlier.iter().any(|(generation, reached)| {
            *generation == origin.generation && origin.position <= *reached
        })
    }

    /// Remembers `reached` in `generation`, which the log has left behind.
    pub fn leave(&mut self, generation: String, reached: Position) {
        match self
            .earlier
            .iter_mut()
            .find(|(known, _)| *known == generation)
        {
            Some((_, position)) => *position = (*position).max(reached),
            None => self.earlier.push((generation, reached)),
        }
        while self.earlier.len() > MAX_EARLIER {
            self.earlier.remove(0);
        }
    }
}

fn invalid() -> Error {
    Error::invalid(
        "cursor",
        "not a cursor this server issued; use a SubscribeResponse.cursor or leave it empty",
    )
}

fn valid_generation(text: &str) -> bool {
    !text.is_empty() && text.len() <= 64 && text.chars().all(|c| c.is_ascii_alphanumeric())
}

fn part(text: &str) -> Result<(Position, Option<String>)> {
    match text.split_once('@') {
        Some((position, generation)) if valid_generation(generation) => {
            Ok((position.parse()?, Some(generation.to_string())))
        }
        Some(_) => Err(invalid()),
        None => Ok((text.parse()?, None)),
    }
}

impl FromStr for Cursor {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let mut parts = text.split('~');
        let (position, generation) = part(parts.next().ok_or_else(invalid)?)?;
        let mut earlier = Vec::new();
        for text in parts {
            match part(text)? {
                (reached, Some(generation)) if earlier.len() < MAX_EARLIER => {
                    earlier.push((generation, reached))
                }
                _ => return Err(invalid()),
            }
        }
        if generation.is_none() && !earlier.is_empty() {
            return Err(invalid());
        }
        Ok(Self {
            generation,
            position,
            earlier,
        })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.position)?;
        if let Some(generation) = &self.generation {
            write!(f, "@{generation}")?;
        }
        for (generation, reached) in &self.earlier {
            write!(f, "~{reached}@{generation}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(millis: u64) -> Position {
        Position {
            millis,
            sequence: 0,
        }
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let mut cursor = Cursor {
            generation: Some("b2".into()),
            position: at(20),
            earlier: Vec::new(),
        };
        cursor.leave("a1".into(), at(10));
        let text = cursor.to_string();
        assert_eq!(text, "20-0@b2~10-0@a1");
        assert_eq!(text.parse::<Cursor>().unwrap(), cursor);
        assert_eq!("7-1".parse::<Cursor>().unwrap().generation, None);
        for bad in [
            "",
            "x",
            "1-0@",
            "1-0@a-b",
            "1-0~2-0@a",
            "1-0@a~2-0",
            "1-0@a~@b",
        ] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn a_replay_is_seen_only_up_to_the_position_reached_in_its_generation() {
        let mut cursor = Cursor::default();
        cursor.leave("a1".into(), at(10));
        let origin = |generation: &str, millis| Origin {
            generation: generation.into(),
            position: at(millis),
        };
        assert!(cursor.saw(&origin("a1", 10)));
        assert!(!cursor.saw(&origin("a1", 11)));
        assert!(!cursor.saw(&origin("z9", 1)));
        cursor.leave("a1".into(), at(5));
        assert!(cursor.saw(&origin("a1", 10)), "leaving never moves back");
    }
}
