//! The completed executions a lean state keeps: each id, how it ended and its count, in
//! about 25 bytes plus the id's text, rather than a whole entry and an allocation per id.
//!
//! The ids' text lies end to end in one arena; a hash table (hashbrown's, the one std's
//! maps are made of) finds an id by hashing the text and comparing it where it lies. Ids
//! are only ever added: a completed execution stays completed.

use std::hash::BuildHasher;
use std::num::NonZeroU64;

use hashbrown::HashTable;

use crate::schema::CompletionStatus;

/// How one completed execution ended, and where its id lies in the arena.
#[derive(Debug, Clone, Copy)]
struct Ended {
    start: usize,
    len: u32,
    status: CompletionStatus,
    execution_count: Option<NonZeroU64>,
}

/// Completed executions by id.
#[derive(Default, Clone)]
pub(crate) struct DoneIds {
    text: String,
    table: HashTable<Ended>,
    hasher: std::hash::RandomState,
}

impl std::fmt::Debug for DoneIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoneIds").field("len", &self.len()).finish()
    }
}

impl DoneIds {
    /// How many are kept.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// Room for `more` without growing the table.
    pub(crate) fn reserve(&mut self, more: usize) {
        let hasher = &self.hasher;
        let text = &self.text;
        self.table
            .reserve(more, |ended| hasher.hash_one(id_of(text, ended)));
    }

    /// How `id` ended and its execution count, if it is here.
    pub(crate) fn get(&self, id: &str) -> Option<(CompletionStatus, Option<NonZeroU64>)> {
        let hash = self.hasher.hash_one(id);
        self.table
            .find(hash, |ended| id_of(&self.text, ended) == id)
            .map(|ended| (ended.status, ended.execution_count))
    }

    /// `true` if `id` is here.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// Keeps how `id` ended; `false` (and nothing changes) if it is here already, or too
    /// long to keep (over 4 GiB).
    pub(crate) fn insert(
        &mut self,
        id: &str,
        status: CompletionStatus,
        execution_count: Option<NonZeroU64>,
    ) -> bool {
        let Ok(len) = u32::try_from(id.len()) else {
            return false;
        };
        let (hasher, text) = (&self.hasher, &self.text);
        let entry = self.table.entry(
            hasher.hash_one(id),
            |ended| id_of(text, ended) == id,
            |ended| hasher.hash_one(id_of(text, ended)),
        );
        let hashbrown::hash_table::Entry::Vacant(vacant) = entry else {
            return false;
        };
        vacant.insert(Ended {
            start: text.len(),
            len,
            status,
            execution_count,
        });
        self.text.push_str(id);
        true
    }

    /// Every one kept: its id, how it ended and its count, in no particular order.
    pub(crate) fn iter(
        &self,
    ) -> impl Iterator<Item = (&str, CompletionStatus, Option<NonZeroU64>)> {
        self.table.iter().map(|ended| {
            (
                id_of(&self.text, ended),
                ended.status,
                ended.execution_count,
            )
        })
    }
}

fn id_of<'a>(text: &'a str, ended: &Ended) -> &'a str {
    let end = ended.start + ended.len as usize;
    text.get(ended.start..end).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn ids_are_found_by_their_text_and_kept_once() {
        let mut done = DoneIds::default();
        let count = NonZeroU64::new(3);
        assert!(done.insert("q1", CompletionStatus::Success, count));
        assert!(done.insert("q10", CompletionStatus::Error, None));
        assert!(done.insert("", CompletionStatus::Cancelled, None));
        assert!(
            !done.insert("q1", CompletionStatus::Error, None),
            "kept once"
        );
        assert_eq!(done.get("q1"), Some((CompletionStatus::Success, count)));
        assert_eq!(done.get("q10"), Some((CompletionStatus::Error, None)));
        assert_eq!(done.get(""), Some((CompletionStatus::Cancelled, None)));
        assert_eq!(done.get("q"), None);
        assert_eq!(done.get("q1q10"), None);
        assert_eq!(done.len(), 3);
        // Growing the table rehashes from the arena.
        for n in 0..10_000 {
            assert!(done.insert(&format!("id-{n}"), CompletionStatus::Success, None));
        }
        assert!(done.contains("id-9999") && done.contains("q10"));
        let mut ids: Vec<&str> = done.iter().map(|(id, _, _)| id).collect();
        ids.sort_unstable();
        assert_eq!(ids.len(), 10_003);
        assert_eq!(&ids[..3], ["", "id-0", "id-1"]);
    }
}
