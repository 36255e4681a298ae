//! One reader per notebook, shared by every client that follows it live: a commit costs
//! the hub one store read and one wake-up, however many clients follow the notebook.
//!
//! A feed reads its notebook's log from the head it found when it started and passes each
//! new entry to its followers through a bounded broadcast. A follower reads history (and
//! anything it missed by falling behind the broadcast) from the store itself, at its own
//! pace, so no follower is ever skipped, repeated or held in memory without bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use futures::StreamExt;
use runtime_core::{LogEntry, Seq, Store, StoreError};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

/// Entries a feed keeps for followers that are a little behind; one further behind reads
/// the store instead. Each followed notebook holds this many slots, so it sets the hub's
/// memory per notebook (B16: 51 KiB per connection at 512, 33 KiB at 256, 24 KiB at 128)
/// against how often a busy notebook's followers fall back to the store (B18 was no
/// costlier at 256 than at 512, and about 20 % costlier at 128).
const FEED_ENTRIES: usize = 256;

/// The live feeds, by notebook; a feed ends when its last follower goes.
#[derive(Default)]
pub(crate) struct Feeds(Mutex<HashMap<String, Weak<Feed>>>);

/// A notebook's live entries.
pub(crate) struct Feed {
    /// What new followers subscribe from. The reader holds the only sender, so when it
    /// stops every follower learns it (a follower that fell behind might otherwise miss
    /// the error it stopped on, and wait for entries that never come).
    entries: broadcast::Receiver<Result<LogEntry, StoreError>>,
    reader: JoinHandle<()>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Feeds {
    /// The live feed of `notebook` in `store`, started if none is running.
    pub(crate) async fn follow(
        &self,
        notebook: &str,
        store: &Arc<dyn Store>,
    ) -> Result<Arc<Feed>, StoreError> {
        if let Some(feed) = self.running(notebook) {
            return Ok(feed);
        }
        let head = store.head().await?;
        let mut feeds = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let meanwhile = feeds.get(notebook).and_then(Weak::upgrade);
        if let Some(feed) = meanwhile.filter(|feed| !feed.reader.is_finished()) {
            return Ok(feed); // started by another follower meanwhile
        }
        let (sender, entries) = broadcast::channel(FEED_ENTRIES);
        let mut log = store.subscribe(head + 1);
        let reader = tokio::spawn(async move {
            while let Some(entry) = log.next().await {
                let failed = entry.is_err();
                // No follower right now is fine: the next one reads the store.
                let _ = sender.send(entry);
                if failed {
                    return;
                }
            }
        });
        let feed = Arc::new(Feed { entries, reader });
        feeds.retain(|_, feed| feed.strong_count() > 0);
        feeds.insert(notebook.to_owned(), Arc::downgrade(&feed));
        Ok(feed)
    }

    /// A follower of `notebook` from `from` on: its live feed (started if none runs) for
    /// what comes next, `store` for what came before.
    pub(crate) async fn follower(
        &self,
        notebook: &str,
        store: Arc<dyn Store>,
        from: Seq,
    ) -> Result<Follower, StoreError> {
        let feed = self.follow(notebook, &store).await?;
        Follower::new(feed, store, from).await
    }

    /// The feed of `notebook`, if one runs and its reader has not stopped (on a store
    /// error: the next follower starts a new one).
    fn running(&self, notebook: &str) -> Option<Arc<Feed>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(notebook)
            .and_then(Weak::upgrade)
            .filter(|feed| !feed.reader.is_finished())
    }
}

/// A follower: the entries of one notebook from a sequence number on, in order, each once.
pub(crate) struct Follower {
    store: Arc<dyn Store>,
    /// Kept so the feed runs while anyone follows it.
    _feed: Arc<Feed>,
    live: broadcast::Receiver<Result<LogEntry, StoreError>>,
    /// The store's log from `next`, while this follower reads history or catches up.
    history: Option<runtime_core::Subscription>,
    /// Where history ends: the first entry the live feed will certainly deliver.
    history_until: Seq,
    next: Seq,
}

impl Follower {
    /// Follows `feed` from `from` on. History before the feed's present is read from
    /// `store`.
    pub(crate) async fn new(
        feed: Arc<Feed>,
        store: Arc<dyn Store>,
        from: Seq,
    ) -> Result<Self, StoreError> {
        // Subscribe first: whatever is committed after the head read below arrives live.
        let live = feed.entries.resubscribe();
        let head = store.head().await?;
        let next = from.max(1);
        Ok(Self {
            history: (next <= head).then(|| store.subscribe(next)),
            history_until: head + 1,
            store,
            _feed: feed,
            live,
            next,
        })
    }

    /// The next entry, waiting for it.
    pub(crate) async fn next(&mut self) -> Result<LogEntry, StoreError> {
        loop {
            if let Some(entry) = self.next_from_history().await? {
                return Ok(entry);
            }
            match self.live.recv().await {
                Ok(entry) => {
                    if let Some(entry) = self.take(entry?) {
                        return Ok(entry);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => self.catch_up_from_store().await?,
                Err(broadcast::error::RecvError::Closed) => return Err(StoreError::Closed),
            }
        }
    }

    /// The next entry if one is ready now.
    pub(crate) fn next_ready(&mut self) -> Option<Result<LogEntry, StoreError>> {
        use futures::FutureExt;
        self.next().now_or_never()
    }

    /// The next entry from the store while this follower reads history.
    async fn next_from_history(&mut self) -> Result<Option<LogEntry>, StoreError> {
        let Some(history) = &mut self.history else {
            return Ok(None);
        };
        if self.next >= self.history_until {
            self.history = None;
            return Ok(None);
        }
        let entry = history.next().await.ok_or(StoreError::Closed)??;
        if entry.seq != self.next {
            return Err(StoreError::Backend(format!(
                "the store delivered entry {} where {} was due",
                entry.seq, self.next
            )));
        }
        self.next += 1;
        Ok(Some(entry))
    }

    /// A live entry: the one due, one already delivered (skipped), or one past a gap (the
    /// gap is read from the store first, then the entry comes live again or from there).
    fn take(&mut self, entry: LogEntry) -> Option<LogEntry> {
        if entry.seq < self.next {
            return None;
        }
        if entry.seq > self.next {
            self.history = Some(self.store.subscribe(self.next));
            self.history_until = entry.seq + 1;
            return None;
        }
        self.next += 1;
        Some(entry)
    }

    /// Fell behind the feed: follow it again from now, and read from the store what lies
    /// between (entries that come both ways are skipped the second time).
    async fn catch_up_from_store(&mut self) -> Result<(), StoreError> {
        self.live = self.live.resubscribe();
        let head = self.store.head().await?;
        self.history = Some(self.store.subscribe(self.next));
        self.history_until = head + 1;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use futures::StreamExt;
    use runtime_core::{CellDeleted, Event, MemoryStore};

    use super::*;

    fn event(n: usize) -> Event {
        CellDeleted {
            cell_id: format!("cell-{n}").into(),
        }
        .into()
    }

    async fn read(follower: &mut Follower, count: usize) -> Vec<Seq> {
        let mut seqs = Vec::with_capacity(count);
        for _ in 0..count {
            let entry = tokio::time::timeout(std::time::Duration::from_secs(10), follower.next())
                .await
                .expect("the entry comes")
                .unwrap();
            seqs.push(entry.seq);
        }
        seqs
    }

    /// Followers that start in history, at the head and past it, and one that falls far
    /// behind the feed while thousands of entries are committed, each see every entry from
    /// where they started, once, in order; and the feed is one reader for all of them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_follower_sees_each_entry_once_in_order_however_far_behind() {
        let memory = MemoryStore::new();
        let store: Arc<dyn Store> = Arc::new(memory.clone());
        for n in 0..300 {
            memory.commit_now(vec![event(n)]).unwrap();
        }
        let feeds = Feeds::default();
        let feed = feeds.follow("nb", &store).await.unwrap();
        let again = feeds.follow("nb", &store).await.unwrap();
        assert!(Arc::ptr_eq(&feed, &again), "one feed per notebook");
        let mut from_start = Follower::new(feed.clone(), store.clone(), 1).await.unwrap();
        let mut mid_history = Follower::new(feed.clone(), store.clone(), 150)
            .await
            .unwrap();
        let mut at_head = Follower::new(feed.clone(), store.clone(), 301)
            .await
            .unwrap();
        let mut ahead = Follower::new(feed.clone(), store.clone(), 400)
            .await
            .unwrap();
        drop((feed, again));
        // Far more than the feed holds, while no follower reads.
        let total = 300 + 4 * FEED_ENTRIES;
        for n in 300..total {
            memory.commit_now(vec![event(n)]).unwrap();
        }
        let expected = |from: usize| (from as Seq..=total as Seq).collect::<Vec<_>>();
        assert_eq!(read(&mut from_start, total).await, expected(1));
        assert_eq!(read(&mut mid_history, total - 149).await, expected(150));
        assert_eq!(read(&mut at_head, total - 300).await, expected(301));
        assert_eq!(read(&mut ahead, total - 399).await, expected(400));
        // Live again: one more entry reaches all of them.
        memory.commit_now(vec![event(total)]).unwrap();
        for follower in [&mut from_start, &mut mid_history, &mut at_head, &mut ahead] {
            assert_eq!(read(follower, 1).await, [total as Seq + 1]);
            assert!(follower.next_ready().is_none(), "nothing more");
        }
        // The feed ends with its last follower.
        drop((from_start, mid_history, at_head, ahead));
        assert!(feeds.running("nb").is_none());
    }

    /// A store whose first subscription (the feed's) fails for good after `fail_after`
    /// entries; later ones (followers' history) read normally.
    struct FeedFails {
        inner: MemoryStore,
        fail_after: usize,
        subscribed: std::sync::atomic::AtomicBool,
    }

    #[async_trait::async_trait]
    impl Store for FeedFails {
        async fn commit_batch(&self, batch: &runtime_core::Batch) -> Result<Seq, StoreError> {
            self.inner.commit_batch(batch).await
        }

        async fn head(&self) -> Result<Seq, StoreError> {
            self.inner.head().await
        }

        fn subscribe(&self, from: Seq) -> runtime_core::Subscription {
            let first = !self
                .subscribed
                .swap(true, std::sync::atomic::Ordering::SeqCst);
            if !first {
                return self.inner.subscribe(from);
            }
            let failure = StoreError::Backend("the disk is gone".into());
            Box::pin(
                self.inner
                    .subscribe(from)
                    .take(self.fail_after)
                    .chain(futures::stream::iter([Err(failure)])),
            )
        }
    }

    /// A follower that fell behind a feed that then stopped on an error skips the error
    /// with what it missed, reads the gap from the store, and then learns the feed has
    /// ended, instead of waiting for entries that never come (it once waited forever).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_follower_behind_a_feed_that_stopped_is_told_not_left_waiting() {
        let memory = MemoryStore::new();
        let total = 2 * FEED_ENTRIES;
        let store: Arc<dyn Store> = Arc::new(FeedFails {
            inner: memory.clone(),
            fail_after: total,
            subscribed: Default::default(),
        });
        let feeds = Feeds::default();
        let feed = feeds.follow("nb", &store).await.unwrap();
        let mut behind = Follower::new(feed.clone(), store.clone(), 1).await.unwrap();
        for n in 0..total {
            memory.commit_now(vec![event(n)]).unwrap();
        }
        // The feed reads everything, then stops on the error.
        tokio::time::timeout(std::time::Duration::from_secs(30), async {
            while !feed.reader.is_finished() {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("the feed stops");
        drop(feed);
        let expected: Vec<Seq> = (1..=total as Seq).collect();
        assert_eq!(read(&mut behind, total).await, expected);
        let after = tokio::time::timeout(std::time::Duration::from_secs(10), behind.next())
            .await
            .expect("told, not left waiting");
        assert!(after.is_err(), "{after:?}");
    }
}
