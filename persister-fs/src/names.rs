//! File names of the store and of its document logs.
//!
//! A document id never reaches the file system as itself: an id of at most
//! [`MAX_HEX_ID_LEN`] bytes is named `d` + its bytes in lowercase hex + `.log` (the
//! empty id is `d.log`); a longer id is named `h` + the 16 lowercase hex digits of its
//! 64-bit FNV-1a hash + `-` + a counter that tells colliding ids apart + `.log`, and
//! its full id is read from the log header. Names use only `[0-9a-z.-]`, start with a
//! letter, are at most 213 bytes with the `.tmp` suffix, and are unique even on
//! case-insensitive file systems.

use persister_core::DocumentId;

/// The store marker file.
pub(crate) const MARKER: &str = "STORE";
/// The lock file.
pub(crate) const LOCK: &str = "LOCK";
/// The clean-close record.
pub(crate) const CLOSED: &str = "CLOSED";
/// The suffix of a file being written, renamed into place only once synced.
pub(crate) const TMP_SUFFIX: &str = ".tmp";
/// The longest id named by its hex digits.
pub(crate) const MAX_HEX_ID_LEN: usize = 100;

const LOG_SUFFIX: &str = ".log";

/// What a log's file name says about its document.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LogName {
    /// The id itself, hex-encoded in the name.
    Hex(DocumentId),
    /// A long id's hash; the id is in the log header.
    Hashed(u64),
}

/// The name of `id`'s log when the id is short enough to be spelled out.
pub(crate) fn hex_name(id: &DocumentId) -> Option<String> {
    (id.as_bytes().len() <= MAX_HEX_ID_LEN).then(|| format!("d{}{LOG_SUFFIX}", id.to_hex()))
}

/// The `n`th candidate name of a long id.
pub(crate) fn hashed_name(id: &DocumentId, n: u32) -> String {
    format!("h{:016x}-{n}{LOG_SUFFIX}", id_hash(id))
}

/// The temporary name a log is written under before it is renamed to `name`.
pub(crate) fn tmp_name(name: &str) -> String {
    format!("{name}{TMP_SUFFIX}")
}

/// The 64-bit FNV-1a hash of an id's bytes.
pub(crate) fn id_hash(id: &DocumentId) -> u64 {
    id.as_bytes().iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Reads a log's file name. Only the exact names this module makes are logs: other
/// spellings (upper case, leading zeros, other suffixes) are not ours.
pub(crate) fn parse(name: &str) -> Option<LogName> {
    let stem = name.strip_suffix(LOG_SUFFIX)?;
    if let Some(hex) = stem.strip_prefix('d') {
        let lower = hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !lower || hex.len() > 2 * MAX_HEX_ID_LEN {
            return None;
        }
        return DocumentId::from_hex(hex).ok().map(LogName::Hex);
    }
    let (hash, n) = stem.strip_prefix('h')?.split_once('-')?;
    let lower = hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let canonical_n = n.parse::<u32>().ok()?.to_string() == n;
    if hash.len() != 16 || !lower || !canonical_n {
        return None;
    }
    u64::from_str_radix(hash, 16).ok().map(LogName::Hashed)
}

#[cfg(test)]
mod tests {
    use persister_core::MAX_DOCUMENT_ID_LEN;

    use super::*;

    #[test]
    fn short_ids_are_spelled_out_in_lowercase_hex() {
        let name = |id: &[u8]| hex_name(&DocumentId::from(id));
        assert_eq!(name(b"").as_deref(), Some("d.log"));
        assert_eq!(name(b"A").as_deref(), Some("d41.log"));
        assert_eq!(name(b"a").as_deref(), Some("d61.log"));
        assert_eq!(name(b"../x").as_deref(), Some("d2e2e2f78.log"));
        assert_eq!(name(&[0, 0xff]).as_deref(), Some("d00ff.log"));
        assert!(name(&[1; MAX_HEX_ID_LEN]).is_some());
        assert_eq!(name(&[1; MAX_HEX_ID_LEN + 1]), None);
    }

    #[test]
    fn names_parse_back_and_only_canonical_names_are_logs() {
        for id in [&b""[..], b"a", b"\0", &[0xff; MAX_HEX_ID_LEN]] {
            let id = DocumentId::from(id);
            let name = hex_name(&id);
            assert_eq!(name.as_deref().and_then(parse), Some(LogName::Hex(id)));
        }
        let long = DocumentId::from(vec![7; MAX_DOCUMENT_ID_LEN]);
        assert_eq!(
            parse(&hashed_name(&long, 12)),
            Some(LogName::Hashed(id_hash(&long)))
        );
        for other in [
            "d41.LOG",
            "D41.log",
            "d4A.log",
            "d4.log",
            "d41.log.tmp",
            "h0123456789abcdef-01.log",
            "h0123456789ABCDEF-1.log",
            "h012-1.log",
            "h0123456789abcdef.log",
            "STORE",
            "LOCK",
            "CLOSED",
            "x.log",
            &format!("d{}.log", "ab".repeat(MAX_HEX_ID_LEN + 1)),
        ] {
            assert_eq!(parse(other), None, "{other}");
        }
    }

    #[test]
    fn every_name_fits_a_file_name_with_its_tmp_suffix() {
        let longest_hex = hex_name(&DocumentId::from(vec![0xab; MAX_HEX_ID_LEN]));
        let longest_hashed = hashed_name(&DocumentId::from(vec![1; 500]), u32::MAX);
        for name in [longest_hex.unwrap_or_default(), longest_hashed] {
            assert!(tmp_name(&name).len() <= 213, "{name}");
        }
    }

    #[test]
    fn hash_is_fnv1a() {
        assert_eq!(id_hash(&DocumentId::from("")), 0xcbf2_9ce4_8422_2325);
        assert_eq!(id_hash(&DocumentId::from("a")), 0xaf63_dc4c_8601_ec8c);
    }
}
