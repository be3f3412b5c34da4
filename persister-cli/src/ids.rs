//! Document ids on the command line.

use persister_core::DocumentId;

use crate::CliError;

/// Reads a document id as `DocumentId` displays it: text as is, or `0x` and the hex
/// of its bytes (how a binary id, the empty id, an id that itself starts with `0x`, and
/// an id that would not show as itself are shown: one holding control, format or
/// invisible characters, or whitespace other than a space, or with a space at either
/// end).
pub fn parse_document_id(text: &str) -> Result<DocumentId, CliError> {
    match text.strip_prefix("0x") {
        Some(hex) => DocumentId::from_hex(hex).map_err(|_| {
            CliError::usage(
                format!("{text:?} starts with 0x but the rest is not an even number of hex digits"),
                "an id written 0x... is read as hex bytes; a text id that starts with 0x is written as 0x and the hex of its text, as `persister ls` shows it",
            )
        }),
        None => Ok(DocumentId::from(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_as_they_display() -> Result<(), CliError> {
        for id in [
            DocumentId::from("notes"),
            DocumentId::from(""),
            DocumentId::from(vec![0xff, 0]),
            DocumentId::from("a\nb"),
            DocumentId::from("0x00"),
            DocumentId::from("päper/1"),
            DocumentId::from("notes "),
            DocumentId::from("\u{202e}txt"),
        ] {
            assert_eq!(parse_document_id(&id.to_string())?, id);
        }
        for bad in ["0xabc", "0xzz"] {
            assert_eq!(
                parse_document_id(bad).err().map(|e| e.code),
                Some(crate::error::EXIT_USAGE)
            );
        }
        Ok(())
    }
}
