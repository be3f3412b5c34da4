//! A generated typing session: someone writing prose, with typos fixed by backspace,
//! the odd forward delete, and cursor jumps to edit earlier text. Deterministic: the
//! same seed types the same keystrokes.

use persister_testkit::Rng;

use super::source::Splice;

const WORDS: &[&str] = &[
    "the",
    "document",
    "is",
    "kept",
    "on",
    "disk",
    "and",
    "every",
    "change",
    "goes",
    "to",
    "store",
    "before",
    "edit",
    "returns",
    "a",
    "crash",
    "loses",
    "nothing",
    "that",
    "was",
    "flushed",
    "peers",
    "sync",
    "their",
    "state",
    "while",
    "compaction",
    "keeps",
    "it",
    "small",
    "we",
    "write",
    "text",
    "here",
    "of",
    "with",
    "one",
    "batch",
    "at",
    "time",
    "automerge",
    "merges",
    "edits",
    "from",
    "many",
    "people",
    "in",
    "order",
];

/// A key the typist means to press.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Char(char),
    Backspace,
}

/// The typist: where the cursor is, and what it is about to type.
#[derive(Debug)]
pub(crate) struct Typist {
    rng: Rng,
    cursor: usize,
    /// The keys still to press, last first.
    pending: Vec<Key>,
    sentence_words: usize,
    /// Cursor jumps so far (they change no text, so they are not edits).
    pub(crate) jumps: u64,
}

impl Typist {
    /// A typist whose cursor starts at the end of a text of `len` characters.
    pub(crate) fn new(seed: u64, len: usize) -> Self {
        Self {
            rng: Rng::new(seed),
            cursor: len,
            pending: Vec::new(),
            sentence_words: 0,
            jumps: 0,
        }
    }

    /// The next keystroke that changes a text of `len` characters.
    pub(crate) fn next_edit(&mut self, len: usize) -> Splice {
        self.cursor = self.cursor.min(len);
        loop {
            if self.pending.last() == Some(&Key::Backspace) {
                self.pending.pop();
                if self.cursor > 0 {
                    self.cursor -= 1;
                    return Splice::delete(self.cursor, 1);
                }
                continue;
            }
            let roll = self.rng.index(1000);
            if roll < 4 && len > 0 {
                // Click somewhere earlier to fix something.
                self.cursor = self.rng.index(len + 1);
                self.jumps += 1;
            } else if roll < 12 && len > 0 {
                // Back to the end, to carry on writing.
                self.cursor = len;
                self.jumps += 1;
            } else if roll < 70 && self.cursor > 0 {
                self.cursor -= 1;
                return Splice::delete(self.cursor, 1);
            } else if roll < 80 && self.cursor < len {
                return Splice::delete(self.cursor, 1);
            } else if roll >= 80 {
                let pos = self.cursor;
                self.cursor += 1;
                return Splice::insert(pos, self.next_char());
            }
        }
    }

    fn next_char(&mut self) -> char {
        if self.pending.is_empty() {
            self.queue_word();
        }
        match self.pending.pop() {
            Some(Key::Char(c)) => c,
            _ => ' ',
        }
    }

    fn queue_word(&mut self) {
        let mut word: String = WORDS[self.rng.index(WORDS.len())].to_string();
        if self.sentence_words == 0
            && let Some(first) = word.get(..1)
        {
            word = first.to_uppercase() + &word[1..];
        }
        self.sentence_words += 1;
        if self.sentence_words > 6 && self.rng.index(4) == 0 {
            word.push('.');
            self.sentence_words = 0;
            word.push_str(if self.rng.index(5) == 0 { "\n\n" } else { " " });
        } else {
            word.push(' ');
        }
        let mut keys: Vec<Key> = word.chars().map(Key::Char).collect();
        // A typo now and then: a wrong letter, noticed and fixed with backspace.
        if self.rng.index(6) == 0 {
            let at = self.rng.index(keys.len());
            let wrong = char::from(b'a' + self.rng.index(26) as u8);
            keys.splice(at..at, [Key::Char(wrong), Key::Backspace]);
        }
        keys.reverse();
        self.pending = keys;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn type_out(seed: u64, edits: usize) -> (String, u64) {
        let mut text: Vec<char> = Vec::new();
        let mut typist = Typist::new(seed, 0);
        for _ in 0..edits {
            typist.next_edit(text.len()).apply(&mut text);
        }
        (text.into_iter().collect(), typist.jumps)
    }

    #[test]
    fn typing_is_deterministic_and_plausible() {
        let (a, jumps) = type_out(1, 5_000);
        assert_eq!(type_out(1, 5_000).0, a);
        assert_ne!(type_out(2, 5_000).0, a);
        assert!(a.chars().count() > 2_500, "{}", a.chars().count());
        assert!(jumps > 5);
        assert!(a.contains(". "));
    }
}
