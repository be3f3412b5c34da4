//! Identifiers of actors and documents, and the limits every backend enforces.

use std::fmt;

use crate::{Error, Result};

/// The most bytes an [`ActorId`] may have. Automerge actor ids are 16 bytes.
pub const MAX_ACTOR_ID_LEN: usize = 255;
/// The most bytes a sync-state peer id may have.
pub const MAX_PEER_ID_LEN: usize = 1024;
/// The most bytes a [`DocumentId`] may have.
pub const MAX_DOCUMENT_ID_LEN: usize = 1024;
/// The most bytes one stored value (a change, the document, a sync state) may have.
pub const MAX_VALUE_LEN: usize = 256 * 1024 * 1024;
/// The most bytes one [`Batch`](crate::Batch) may carry, keys and values together.
pub const MAX_BATCH_LEN: usize = 1024 * 1024 * 1024;

/// The id of the actor that made a change: opaque bytes, 1 to [`MAX_ACTOR_ID_LEN`] long.
///
/// Construction never fails; the length is checked when a batch holding the id is
/// applied, so an invalid id is refused with [`Error::InvalidInput`] and nothing of its
/// batch is stored. Ids order by their bytes, which is the order of
/// [`Persister::get_changes`](crate::Persister::get_changes).
///
/// An id of at most 22 bytes (Automerge's 16, Yjs' 8) is kept in place, so creating or
/// cloning one allocates nothing: every change written or read carries its actor's id.
#[derive(Clone)]
pub struct ActorId(Repr);

/// The most bytes an [`ActorId`] keeps in place, without an allocation of its own.
const INLINE_ACTOR_ID_LEN: usize = 22;

#[derive(Clone)]
enum Repr {
    /// The first `len` bytes of `bytes`.
    Inline {
        len: u8,
        bytes: [u8; INLINE_ACTOR_ID_LEN],
    },
    /// An id longer than [`INLINE_ACTOR_ID_LEN`].
    Heap(Box<[u8]>),
}

impl ActorId {
    /// Wraps the given bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self::from(bytes.into())
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Heap(bytes) => bytes,
        }
    }

    /// The id's bytes, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        match self.0 {
            Repr::Inline { .. } => self.as_bytes().to_vec(),
            Repr::Heap(bytes) => bytes.into_vec(),
        }
    }

    /// Checks the length limits: 1 to [`MAX_ACTOR_ID_LEN`] bytes.
    pub fn validate(&self) -> Result<()> {
        if self.as_bytes().is_empty() {
            return Err(Error::InvalidInput {
                what: "actor id",
                reason: "it is empty; an actor id needs at least one byte".into(),
            });
        }
        check_len("actor id", self.as_bytes().len(), MAX_ACTOR_ID_LEN)
    }
}

/// By bytes, as the bytes compare.
impl PartialEq for ActorId {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for ActorId {}

/// By bytes, as the bytes compare.
impl PartialOrd for ActorId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// By bytes, as the bytes compare.
impl Ord for ActorId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

/// As its bytes hash (and as a `Vec<u8>` of them does).
impl std::hash::Hash for ActorId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl fmt::Debug for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorId({})", hex(self.as_bytes()))
    }
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(self.as_bytes()))
    }
}

impl From<Vec<u8>> for ActorId {
    fn from(bytes: Vec<u8>) -> Self {
        if bytes.len() <= INLINE_ACTOR_ID_LEN {
            Self::from(bytes.as_slice())
        } else {
            Self(Repr::Heap(bytes.into_boxed_slice()))
        }
    }
}

impl From<&[u8]> for ActorId {
    fn from(bytes: &[u8]) -> Self {
        match u8::try_from(bytes.len()) {
            Ok(len) if bytes.len() <= INLINE_ACTOR_ID_LEN => {
                let mut inline = [0; INLINE_ACTOR_ID_LEN];
                inline[..bytes.len()].copy_from_slice(bytes);
                Self(Repr::Inline { len, bytes: inline })
            }
            _ => Self(Repr::Heap(bytes.into())),
        }
    }
}

impl<const N: usize> From<[u8; N]> for ActorId {
    fn from(bytes: [u8; N]) -> Self {
        Self::from(bytes.as_slice())
    }
}

impl AsRef<[u8]> for ActorId {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

/// The id of a document in a [`Store`](crate::Store): opaque bytes or a UTF-8 string,
/// 0 to [`MAX_DOCUMENT_ID_LEN`] bytes.
///
/// Ids are compared by their bytes and nothing else: `"1"` and `"10"`, `""` and `"a"`,
/// `"A"` and `"a"` are different documents, and an id holding `/`, `..`, NUL or bytes
/// that are not UTF-8 is as good as any other. Backends never use an id unencoded as a
/// file name.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DocumentId(Vec<u8>);

impl DocumentId {
    /// Wraps the given bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(bytes.into())
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The id's bytes, by value.
    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// The id as text, when it is UTF-8.
    pub fn as_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.0).ok()
    }

    /// The id's bytes in lowercase hexadecimal, two digits a byte.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// Parses the output of [`DocumentId::to_hex`].
    pub fn from_hex(text: &str) -> Result<Self> {
        unhex(text).map(Self).ok_or_else(|| Error::InvalidInput {
            what: "document id",
            reason: format!("{text:?} is not an even number of hexadecimal digits"),
        })
    }

    /// Checks the length limit: at most [`MAX_DOCUMENT_ID_LEN`] bytes.
    pub fn validate(&self) -> Result<()> {
        check_len("document id", self.0.len(), MAX_DOCUMENT_ID_LEN)
    }
}

impl fmt::Debug for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(text) => write!(f, "DocumentId({text:?})"),
            None => write!(f, "DocumentId(0x{})", self.to_hex()),
        }
    }
}

/// Shows an id of visible UTF-8 text as itself, and any other id as `0x` and its hex
/// bytes: a binary id, the empty id, an id that starts with `0x`, one with a space at
/// either end, and one holding a character that shows nothing or other than it is (a
/// control or format character such as a bidi override or a zero-width space, whitespace
/// other than the space, a variation selector). So no id can pass for another, or
/// rewrite the rest of the message it is shown in.
impl fmt::Display for DocumentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(text) if shows_as_itself(text) => f.write_str(text),
            _ => write!(f, "0x{}", self.to_hex()),
        }
    }
}

/// Whether `text` can be shown as it is: not empty, not starting with `0x` (which
/// marks hex), no space at either end, and only characters that show as themselves.
fn shows_as_itself(text: &str) -> bool {
    !text.is_empty()
        && !text.starts_with("0x")
        && !text.starts_with(' ')
        && !text.ends_with(' ')
        && text
            .chars()
            .all(|c| !c.is_control() && (c == ' ' || !c.is_whitespace()) && !is_invisible(c))
}

/// Format characters (Unicode category Cf: bidi controls, zero-width characters, the
/// byte-order mark, tags) and other default-ignorable code points (variation selectors,
/// fillers), which show nothing or change how the text around them shows.
fn is_invisible(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

impl From<&str> for DocumentId {
    fn from(text: &str) -> Self {
        Self(text.as_bytes().to_vec())
    }
}

impl From<String> for DocumentId {
    fn from(text: String) -> Self {
        Self(text.into_bytes())
    }
}

impl From<Vec<u8>> for DocumentId {
    fn from(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
}

impl From<&[u8]> for DocumentId {
    fn from(bytes: &[u8]) -> Self {
        Self(bytes.to_vec())
    }
}

impl AsRef<[u8]> for DocumentId {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Checks a peer id's length: at most [`MAX_PEER_ID_LEN`] bytes.
pub(crate) fn validate_peer_id(peer: &[u8]) -> Result<()> {
    check_len("peer id", peer.len(), MAX_PEER_ID_LEN)
}

pub(crate) fn check_len(what: &'static str, len: usize, max: usize) -> Result<()> {
    if len > max {
        return Err(Error::TooLarge {
            what,
            len: len as u64,
            max: max as u64,
        });
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16);
            Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_ids_display_readably_and_unambiguously() {
        assert_eq!(DocumentId::from("notes").to_string(), "notes");
        assert_eq!(DocumentId::from(vec![0xff, 0]).to_string(), "0xff00");
        assert_eq!(DocumentId::from("a\0b").to_string(), "0x610062");
        // An id that itself starts with 0x is shown in hex, so it cannot pass for another.
        assert_eq!(DocumentId::from("0x00").to_string(), "0x30783030");
        assert_eq!(DocumentId::from("päper/1 a").to_string(), "päper/1 a");
    }

    /// A hostile id cannot pass for another in a message or a listing, nor rewrite the
    /// rest of the line it is shown in: ids holding characters that show nothing
    /// (zero-width, bidi controls, a byte-order mark), that break the line (U+2028) or
    /// that look like another (a no-break space), with a space at either end, or
    /// empty, are shown in hex, which `from_hex` reads back.
    #[test]
    fn ids_that_would_display_ambiguously_are_shown_in_hex() -> Result<()> {
        for text in [
            "",
            "notes\u{200b}",
            "\u{202e}txt.exe",
            "a\u{2066}b",
            "\u{feff}notes",
            "soft\u{ad}hyphen",
            "line\u{2028}break",
            "no\u{a0}break",
            "notes ",
            " notes",
            "tag\u{e0041}",
            "var\u{fe0f}",
        ] {
            let id = DocumentId::from(text);
            let shown = id.to_string();
            assert!(
                shown.starts_with("0x") && shown.is_ascii(),
                "{text:?} shown as {shown:?}"
            );
            assert_eq!(DocumentId::from_hex(&shown[2..])?, id);
        }
        Ok(())
    }

    #[test]
    fn hex_round_trips() -> Result<()> {
        let id = DocumentId::from(vec![0, 1, 0xab, 0xff]);
        assert_eq!(DocumentId::from_hex(&id.to_hex())?, id);
        assert!(DocumentId::from_hex("abc").is_err());
        assert!(DocumentId::from_hex("zz").is_err());
        Ok(())
    }

    /// Short ids are kept in place, long ones not; either way an id is its bytes.
    #[test]
    fn actor_ids_of_any_length_are_their_bytes() {
        let lengths = [
            0,
            1,
            8,
            INLINE_ACTOR_ID_LEN,
            INLINE_ACTOR_ID_LEN + 1,
            255,
            300,
        ];
        let ids: Vec<ActorId> = lengths
            .iter()
            .map(|&len| ActorId::new((0..len).map(|i| i as u8).collect::<Vec<u8>>()))
            .collect();
        for (id, &len) in ids.iter().zip(&lengths) {
            let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
            assert_eq!(id.as_bytes(), bytes.as_slice());
            assert_eq!(ActorId::from(bytes.as_slice()), *id);
            assert_eq!(id.clone().into_bytes(), bytes);
            let hash = |value: &dyn Fn(&mut std::hash::DefaultHasher)| {
                let mut hasher = std::hash::DefaultHasher::new();
                value(&mut hasher);
                std::hash::Hasher::finish(&hasher)
            };
            use std::hash::Hash;
            assert_eq!(hash(&|h| id.hash(h)), hash(&|h| bytes.hash(h)));
        }
        // Ordered by bytes: a prefix first, whatever the representation.
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids);
        assert!(ActorId::new([1, 0]) > ActorId::new([1]));
        assert!(ActorId::new([2]) > ActorId::new(vec![1; 40]));
        assert_eq!(ActorId::from([7; 16]), ActorId::new(vec![7; 16]));
    }

    #[test]
    fn actor_ids_need_one_to_255_bytes() {
        assert!(ActorId::new(vec![]).validate().is_err());
        assert!(ActorId::new(vec![1]).validate().is_ok());
        assert!(ActorId::new(vec![1; 255]).validate().is_ok());
        assert!(matches!(
            ActorId::new(vec![1; 256]).validate(),
            Err(Error::TooLarge {
                len: 256,
                max: 255,
                ..
            })
        ));
    }
}
