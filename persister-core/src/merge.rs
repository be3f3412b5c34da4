//! For backend crates: reads that merge what a store holds with a handle's held writes.

/// Merges what a store holds with writes a handle holds and has not yet written to it,
/// calling `keep` with every entry that remains, in key order.
///
/// Both sequences are in key order. A held `Some(value)` replaces the stored entry with
/// the same key (or adds one), a held `None` removes it. The first error of `stored` is
/// returned, after `keep` has seen the entries before it.
///
/// ```
/// let stored = [(1, "one"), (2, "two"), (4, "four")].map(Ok::<_, ()>);
/// let held = [(0, Some("zero")), (2, None), (4, Some("FOUR"))];
/// let mut kept = Vec::new();
/// persister_core::merge_held(stored, held, |k, v| kept.push((k, v)))?;
/// assert_eq!(kept, [(0, "zero"), (1, "one"), (4, "FOUR")]);
/// # Ok::<(), ()>(())
/// ```
///
/// # Errors
///
/// The first error of `stored`.
pub fn merge_held<K: Ord, V, E>(
    stored: impl IntoIterator<Item = Result<(K, V), E>>,
    held: impl IntoIterator<Item = (K, Option<V>)>,
    mut keep: impl FnMut(K, V),
) -> Result<(), E> {
    let mut held = held.into_iter().peekable();
    let mut keep_held = |key, value: Option<V>| {
        if let Some(value) = value {
            keep(key, value);
        }
    };
    for entry in stored {
        let (key, value) = entry?;
        while let Some((k, v)) = held.next_if(|(k, _)| *k < key) {
            keep_held(k, v);
        }
        match held.next_if(|(k, _)| *k == key) {
            Some((k, newer)) => keep_held(k, newer),
            None => keep_held(key, Some(value)),
        }
    }
    for (k, v) in held {
        keep_held(k, v);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn merged(stored: &[(u8, char)], held: &[(u8, Option<char>)]) -> Vec<(u8, char)> {
        let mut kept = Vec::new();
        let stored = stored.iter().map(|&e| Ok::<_, ()>(e));
        let result = merge_held(stored, held.iter().copied(), |k, v| kept.push((k, v)));
        assert_eq!(result, Ok(()));
        kept
    }

    #[test]
    fn held_entries_replace_remove_and_insert_in_key_order() {
        let stored = [(1, 'a'), (3, 'c'), (5, 'e')];
        assert_eq!(merged(&stored, &[]), stored);
        assert_eq!(merged(&[], &[(2, Some('b')), (4, None)]), [(2, 'b')]);
        assert_eq!(
            merged(
                &stored,
                &[
                    (0, Some('z')),
                    (3, Some('C')),
                    (4, Some('d')),
                    (5, None),
                    (9, None)
                ]
            ),
            [(0, 'z'), (1, 'a'), (3, 'C'), (4, 'd')]
        );
    }

    #[test]
    fn the_first_stored_error_stops_the_merge() {
        let stored = [Ok((1, 'a')), Err("damaged"), Ok((3, 'c'))];
        let mut kept = Vec::new();
        let result = merge_held(stored, [(0, Some('z')), (2, Some('b'))], |k, v| {
            kept.push((k, v))
        });
        assert_eq!(result, Err("damaged"));
        assert_eq!(kept, [(0, 'z'), (1, 'a')]);
    }
}
