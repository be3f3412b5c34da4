//! `persister ls STORE`: the documents with their sizes.

use persister_core::{Persister, StoredSizes};
use serde::Serialize;

use super::{IdJson, plural, problem_of};
use crate::cli::StoreArgs;
use crate::output::{print_json, say, table, thousands};
use crate::{Access, Backend, CliError, EXIT_DAMAGED, OpenStore};

#[derive(Serialize)]
struct Report {
    store: String,
    backend: Backend,
    documents: Vec<Document>,
    total: StoredSizes,
}

#[derive(Serialize)]
struct Document {
    #[serde(flatten)]
    id: IdJson,
    /// `None` when the document cannot be opened.
    sizes: Option<StoredSizes>,
    /// Why it cannot be opened.
    problem: Option<String>,
}

pub(crate) fn run(args: &StoreArgs, json: bool) -> Result<(), CliError> {
    let store = OpenStore::existing(&args.store, args.backend, Access::Read)?;
    let mut documents = Vec::new();
    let mut total = StoredSizes::default();
    let mut rows = Vec::new();
    let mut unreadable = Vec::new();
    let ids = store.list()?;
    // Opening a document can replay its log (fs): a large store takes a while.
    let bar = crate::output::progress(ids.len() as u64, "listing");
    for id in ids {
        bar.inc(1);
        // A damaged document is listed as such; the others are still worth seeing.
        let sizes = match store.open_document(&id) {
            Ok(opened) => opened.persister.sizes(),
            Err(e) if e.code == EXIT_DAMAGED => {
                let problem = problem_of(&e, &id);
                unreadable.push(format!("{id}  {problem}"));
                documents.push(Document {
                    id: (&id).into(),
                    sizes: None,
                    problem: Some(problem),
                });
                continue;
            }
            Err(e) => return Err(e),
        };
        add(&mut total, &sizes);
        rows.push(vec![
            id.to_string(),
            thousands(sizes.change_count),
            thousands(sizes.changes),
            thousands(sizes.document),
            thousands(sizes.sync_state_count),
            thousands(sizes.total_bytes()),
        ]);
        documents.push(Document {
            id: (&id).into(),
            sizes: Some(sizes),
            problem: None,
        });
    }
    bar.finish_and_clear();
    let result = if unreadable.is_empty() {
        Ok(())
    } else {
        Err(CliError::damaged(format!(
            "{} in {} cannot be opened: {}",
            plural(unreadable.len() as u64, "document", "documents"),
            persister_backends::shown(&args.store),
            documents
                .iter()
                .filter(|d| d.problem.is_some())
                .map(|d| d.id.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )))
    };
    if json {
        print_json(&Report {
            store: persister_backends::shown(&args.store),
            backend: store.backend(),
            documents,
            total,
        })?;
        return result;
    }
    say(&format!(
        "{} store {}: {}",
        store.backend(),
        persister_backends::shown(&args.store),
        summary(documents.len(), unreadable.len(), total.total_bytes())
    ));
    if !rows.is_empty() {
        say("");
        say(&table(
            &[
                "document",
                "changes",
                "change bytes",
                "document bytes",
                "sync states",
                "total bytes",
            ],
            "lrrrrr",
            &rows,
        ));
    }
    for line in &unreadable {
        say(&format!("DAMAGED  {line}"));
    }
    result
}

/// "3 documents, 1,234 bytes", or with damaged documents "3 documents, 1 of them
/// damaged; 1,234 bytes in the 2 others", "1 document, damaged".
fn summary(documents: usize, damaged: usize, bytes: u64) -> String {
    let count = plural(documents as u64, "document", "documents");
    match (damaged, documents - damaged) {
        (0, _) => format!("{count}, {} bytes", thousands(bytes)),
        (_, 0) if documents == 1 => format!("{count}, damaged"),
        (_, 0) => format!("{count}, all damaged"),
        (damaged, sound) => format!(
            "{count}, {} of them damaged; {} bytes in the {}",
            thousands(damaged as u64),
            thousands(bytes),
            if sound == 1 {
                "other".to_string()
            } else {
                format!("{} others", thousands(sound as u64))
            }
        ),
    }
}

pub(crate) fn add(total: &mut StoredSizes, sizes: &StoredSizes) {
    total.changes += sizes.changes;
    total.document += sizes.document;
    total.sync_states += sizes.sync_states;
    total.change_count += sizes.change_count;
    total.sync_state_count += sizes.sync_state_count;
}

#[cfg(test)]
mod tests {
    use super::summary;

    #[test]
    fn the_summary_names_damaged_documents() {
        assert_eq!(summary(3, 0, 1_234), "3 documents, 1,234 bytes");
        assert_eq!(summary(0, 0, 0), "0 documents, 0 bytes");
        assert_eq!(summary(1, 1, 0), "1 document, damaged");
        assert_eq!(summary(2, 2, 0), "2 documents, all damaged");
        assert_eq!(
            summary(3, 1, 99),
            "3 documents, 1 of them damaged; 99 bytes in the 2 others"
        );
        assert_eq!(
            summary(2, 1, 99),
            "2 documents, 1 of them damaged; 99 bytes in the other"
        );
    }
}
