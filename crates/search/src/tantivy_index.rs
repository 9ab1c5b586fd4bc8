//! The embedded [`SearchIndex`]: a tantivy index in a directory of its own (the server
//! keeps it in `<data-dir>/search/`).
//!
//! One document per event. Text fields (name, performers, genres, venue, city, category,
//! description) go through one analyzer (split on non-alphanumerics, lower-cased, folded
//! to ASCII), so `Köln` and `koln` meet; city and category are also kept whole and
//! lower-cased for the exact filters. `starts_at`, `lat` and `lon` are fast fields for
//! range filters and ordering, `id` for replacement and ties, and the whole [`EventDoc`] is
//! stored as JSON so that a page of hits needs nothing else.
//!
//! A query is one clause per word (each word must match in some field; a few very common
//! words only add to the score), each a union over the text fields with per-field boosts,
//! plus a fuzzy variant (one edit, a transposition counting as one) for words of
//! [`FUZZY_MIN_CHARS`] or more, scored below an exact match; filters are added as clauses
//! that match without scoring. One collector then applies the exact geo distance and the
//! cursor and keeps the best `limit + 1` hits in the page's order.
//!
//! Writes go through one `IndexWriter` behind a mutex; every [`SearchIndex::apply`] is
//! one commit whose payload records the change feed position, and the reader is reloaded
//! right after it, so a change is searchable as soon as `apply` returns.

use std::collections::BinaryHeap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::directory::MmapDirectory;
use tantivy::query::{
    AllQuery, BooleanQuery, BoostQuery, ConstScoreQuery, EmptyQuery, FuzzyTermQuery, Occur, Query,
    RangeQuery, TermQuery,
};
use tantivy::schema::{
    FAST, Field, INDEXED, IndexRecordOption, STORED, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::store::Compressor;
use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RawTokenizer, RemoveLongFilter, SimpleTokenizer, TextAnalyzer,
    TokenStream, TokenizerManager,
};
use tantivy::{
    DocAddress, DocId, Index, IndexReader, IndexSettings, IndexWriter, ReloadPolicy, Score, SegmentOrdinal,
    SegmentReader, TantivyDocument, TantivyError, Term,
};

use crate::geo::{BoundingBox, LonRange, haversine_km};
use crate::{
    EventDoc, FUZZY_MIN_CHARS, GeoRadius, IndexChange, MAX_QUERY_WORDS, Result, SearchError, SearchHit,
    SearchIndex, SearchPage, SearchQuery, SortKey, SortOrder,
};

/// Version of the document format (schema, analyzer, stored JSON). An index written with
/// another version is treated as never built, so the server rebuilds it.
const FORMAT_VERSION: u32 = 1;
/// Memory the writer may use before it flushes a segment.
const WRITER_MEMORY_BYTES: usize = 32_000_000;
/// Longest token indexed; longer ones (rare: URLs, garbage) are dropped.
const MAX_TOKEN_BYTES: usize = 40;
/// The analyzer of every text field and of query words.
const ANALYZER: &str = "folded";
/// A fuzzy match scores this fraction of the field's boost; an exact match adds BM25 on
/// top of its fuzzy match, so exact words rank first.
const FUZZY_WEIGHT: Score = 0.3;
/// Words that only add to the score: a query made of other words need not contain them.
const OPTIONAL_WORDS: &[&str] =
    &["a", "an", "and", "at", "by", "for", "from", "in", "of", "on", "or", "the", "to", "vs", "with"];

#[derive(Clone, Copy)]
struct Fields {
    id: Field,
    name: Field,
    performers: Field,
    genres: Field,
    venue: Field,
    city: Field,
    city_exact: Field,
    category: Field,
    category_exact: Field,
    description: Field,
    starts_at: Field,
    lat: Field,
    lon: Field,
    sold_out: Field,
    doc: Field,
}

impl Fields {
    /// Text fields searched by words, with their boosts.
    fn text(&self) -> [(Field, Score); 7] {
        [
            (self.name, 3.0),
            (self.performers, 2.0),
            (self.city, 1.5),
            (self.venue, 1.0),
            (self.category, 1.0),
            (self.genres, 1.0),
            (self.description, 0.5),
        ]
    }
}

fn schema() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let words = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default().set_tokenizer(ANALYZER).set_index_option(IndexRecordOption::WithFreqs),
    );
    let exact = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default().set_tokenizer("raw").set_index_option(IndexRecordOption::Basic),
    );
    let fields = Fields {
        id: builder.add_u64_field("id", INDEXED | FAST),
        name: builder.add_text_field("name", words.clone()),
        performers: builder.add_text_field("performers", words.clone()),
        genres: builder.add_text_field("genres", words.clone()),
        venue: builder.add_text_field("venue", words.clone()),
        city: builder.add_text_field("city", words.clone()),
        city_exact: builder.add_text_field("city_exact", exact.clone()),
        category: builder.add_text_field("category", words.clone()),
        category_exact: builder.add_text_field("category_exact", exact),
        description: builder.add_text_field("description", words),
        starts_at: builder.add_i64_field("starts_at", INDEXED | FAST),
        lat: builder.add_f64_field("lat", INDEXED | FAST),
        lon: builder.add_f64_field("lon", INDEXED | FAST),
        sold_out: builder.add_bool_field("sold_out", INDEXED),
        doc: builder.add_text_field("doc", STORED),
    };
    (builder.build(), fields)
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .build()
}

fn tokenizers() -> TokenizerManager {
    let manager = TokenizerManager::default();
    manager.register(ANALYZER, analyzer());
    manager.register("raw", TextAnalyzer::from(RawTokenizer::default()));
    manager
}

/// The exact-match form of a city or category.
fn fold(value: &str) -> String {
    value.trim().to_lowercase()
}

/// What each commit records beside the documents.
#[derive(Serialize, Deserialize)]
struct Payload {
    format: u32,
    position: u64,
}

/// The embedded search index. Cheap to clone; every clone is the same index.
#[derive(Clone)]
pub struct TantivyIndex {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    fields: Fields,
    /// `None` once closed.
    writer: Mutex<Option<IndexWriter<TantivyDocument>>>,
    reader: IndexReader,
    analyzer: TextAnalyzer,
    /// Position of the last commit (`None`: never built in this format).
    position: Mutex<Option<u64>>,
}

impl std::fmt::Debug for TantivyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TantivyIndex").field("dir", &self.inner.dir).finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves nothing half-done that a later user could see:
    // uncommitted writer operations are rolled back before the next commit.
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TantivyIndex {
    /// Opens the index in `dir`, creating it if missing. An index in an older format, or
    /// one tantivy cannot read any more, is discarded (it is derived data): it opens empty
    /// with no position, and the caller rebuilds it.
    pub fn open(dir: &Path) -> Result<TantivyIndex> {
        std::fs::create_dir_all(dir)?;
        let (schema, fields) = schema();
        let index = match open_index(dir, &schema) {
            Ok(index) => index,
            Err(
                e @ (TantivyError::SchemaError(_)
                | TantivyError::DataCorruption(_)
                | TantivyError::IncompatibleIndex(_)
                | TantivyError::DeserializeError(_)),
            ) => {
                tracing::warn!(dir = %dir.display(), error = %e, "search index unreadable; starting a new one");
                std::fs::remove_dir_all(dir)?;
                std::fs::create_dir_all(dir)?;
                open_index(dir, &schema)?
            }
            Err(e) => return Err(e.into()),
        };
        let position = index
            .load_metas()?
            .payload
            .and_then(|p| serde_json::from_str::<Payload>(&p).ok())
            .filter(|p| p.format == FORMAT_VERSION)
            .map(|p| p.position);
        let writer = index.writer_with_num_threads(1, WRITER_MEMORY_BYTES)?;
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        Ok(TantivyIndex {
            inner: Arc::new(Inner {
                dir: dir.to_owned(),
                fields,
                writer: Mutex::new(Some(writer)),
                reader,
                analyzer: analyzer(),
                position: Mutex::new(position),
            }),
        })
    }

    /// [`SearchIndex::search`] on the calling thread (it reads memory-mapped files).
    pub fn search_blocking(&self, query: &SearchQuery) -> Result<SearchPage> {
        self.inner.search(query)
    }

    /// [`SearchIndex::apply`] on the calling thread.
    pub fn apply_blocking(&self, changes: Vec<IndexChange>, position: u64) -> Result<()> {
        self.inner.write(false, changes, position)
    }

    /// [`SearchIndex::rebuild`] on the calling thread.
    pub fn rebuild_blocking(&self, docs: Vec<EventDoc>, position: u64) -> Result<()> {
        self.inner.write(true, docs.into_iter().map(IndexChange::Upsert).collect(), position)
    }

    /// Bytes the index takes on disk.
    pub fn size_bytes(&self) -> Result<u64> {
        let mut total = 0;
        for entry in std::fs::read_dir(&self.inner.dir)? {
            let meta = entry?.metadata()?;
            if meta.is_file() {
                total += meta.len();
            }
        }
        Ok(total)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || job(&inner))
            .await
            .map_err(|e| SearchError::Corrupt(format!("search task failed: {e}")))?
    }
}

fn open_index(dir: &Path, schema: &Schema) -> tantivy::Result<Index> {
    let directory = MmapDirectory::open(dir)?;
    Index::builder()
        .schema(schema.clone())
        .settings(IndexSettings { docstore_compression: Compressor::Lz4, ..IndexSettings::default() })
        .tokenizers(tokenizers())
        .open_or_create(directory)
}

#[async_trait]
impl SearchIndex for TantivyIndex {
    async fn apply(&self, changes: Vec<IndexChange>, position: u64) -> Result<()> {
        self.blocking(move |inner| inner.write(false, changes, position)).await
    }

    async fn rebuild(&self, docs: Vec<EventDoc>, position: u64) -> Result<()> {
        self.blocking(move |inner| {
            inner.write(true, docs.into_iter().map(IndexChange::Upsert).collect(), position)
        })
        .await
    }

    async fn position(&self) -> Result<Option<u64>> {
        Ok(*lock(&self.inner.position))
    }

    async fn doc_count(&self) -> Result<u64> {
        Ok(self.inner.reader.searcher().num_docs())
    }

    async fn search(&self, query: SearchQuery) -> Result<SearchPage> {
        self.blocking(move |inner| inner.search(&query)).await
    }

    async fn close(&self) {
        let writer = lock(&self.inner.writer).take();
        if let Some(writer) = writer {
            let waited = tokio::task::spawn_blocking(move || writer.wait_merging_threads()).await;
            if let Ok(Err(e)) = waited {
                tracing::warn!(error = %e, "search index merge at close failed");
            }
        }
    }
}

impl Inner {
    /// One commit: optionally every document removed, then `changes`, then the position.
    fn write(&self, replace_all: bool, changes: Vec<IndexChange>, position: u64) -> Result<()> {
        let mut guard = lock(&self.writer);
        let writer = guard.as_mut().ok_or(SearchError::Closed)?;
        let staged = (|| -> Result<()> {
            if replace_all {
                writer.delete_all_documents()?;
            }
            for change in changes {
                match change {
                    IndexChange::Upsert(doc) => {
                        writer.delete_term(Term::from_field_u64(self.fields.id, doc.id));
                        writer.add_document(self.document(&doc))?;
                    }
                    IndexChange::Delete(id) => {
                        writer.delete_term(Term::from_field_u64(self.fields.id, id));
                    }
                }
            }
            let payload = serde_json::to_string(&Payload { format: FORMAT_VERSION, position })
                .expect("a payload of numbers serializes");
            let mut prepared = writer.prepare_commit()?;
            prepared.set_payload(&payload);
            prepared.commit()?;
            Ok(())
        })();
        if let Err(e) = staged {
            // Nothing staged may ride along with a later commit.
            if let Err(rollback) = writer.rollback() {
                tracing::error!(error = %rollback, "search index rollback failed");
            }
            return Err(e);
        }
        drop(guard);
        self.reader.reload()?;
        *lock(&self.position) = Some(position);
        Ok(())
    }

    fn document(&self, doc: &EventDoc) -> TantivyDocument {
        let f = &self.fields;
        let mut d = TantivyDocument::default();
        d.add_u64(f.id, doc.id);
        d.add_text(f.name, &doc.name);
        for performer in &doc.performers {
            d.add_text(f.performers, performer);
        }
        for genre in &doc.genres {
            d.add_text(f.genres, genre);
        }
        d.add_text(f.venue, &doc.venue_name);
        d.add_text(f.city, &doc.city);
        d.add_text(f.city_exact, fold(&doc.city));
        d.add_text(f.category, &doc.category);
        d.add_text(f.category_exact, fold(&doc.category));
        if let Some(description) = &doc.description {
            d.add_text(f.description, description);
        }
        d.add_i64(f.starts_at, clamp_i64(doc.starts_at));
        d.add_f64(f.lat, doc.lat);
        d.add_f64(f.lon, doc.lon);
        d.add_bool(f.sold_out, doc.sold_out);
        d.add_text(f.doc, serde_json::to_string(doc).expect("an event document serializes"));
        d
    }

    /// The query's words as the index has them: analyzed, distinct, at most
    /// [`MAX_QUERY_WORDS`].
    fn words(&self, text: &str) -> Vec<String> {
        let mut analyzer = self.analyzer.clone();
        let mut stream = analyzer.token_stream(text);
        let mut words: Vec<String> = Vec::new();
        while stream.advance() {
            let word = &stream.token().text;
            if !words.contains(word) {
                words.push(word.clone());
            }
            if words.len() == MAX_QUERY_WORDS {
                break;
            }
        }
        words
    }

    /// Matches `word` in any text field, or a term one edit away when the word is long.
    fn word_query(&self, word: &str) -> Box<dyn Query> {
        let fuzzy = word.chars().count() >= FUZZY_MIN_CHARS;
        let mut any_field: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for (field, boost) in self.fields.text() {
            let term = Term::from_field_text(field, word);
            if fuzzy {
                let near = FuzzyTermQuery::new(term.clone(), 1, true);
                any_field
                    .push((Occur::Should, Box::new(BoostQuery::new(Box::new(near), boost * FUZZY_WEIGHT))));
            }
            let exact = TermQuery::new(term, IndexRecordOption::WithFreqs);
            any_field.push((Occur::Should, Box::new(BoostQuery::new(Box::new(exact), boost))));
        }
        Box::new(BooleanQuery::new(any_field))
    }

    fn query(&self, query: &SearchQuery) -> Box<dyn Query> {
        let f = &self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        if let Some(text) = query.text() {
            let words = self.words(text);
            if words.is_empty() {
                // Text with no word in it (punctuation only) matches nothing.
                return Box::new(EmptyQuery);
            }
            let all_optional = words.iter().all(|w| OPTIONAL_WORDS.contains(&w.as_str()));
            for word in &words {
                let occur = if !all_optional && OPTIONAL_WORDS.contains(&word.as_str()) {
                    Occur::Should
                } else {
                    Occur::Must
                };
                clauses.push((occur, self.word_query(word)));
            }
        }
        let mut filter =
            |q: Box<dyn Query>| clauses.push((Occur::Must, Box::new(ConstScoreQuery::new(q, 0.0))));
        if let Some(city) = &query.city {
            filter(Box::new(TermQuery::new(
                Term::from_field_text(f.city_exact, &fold(city)),
                IndexRecordOption::Basic,
            )));
        }
        if let Some(category) = &query.category {
            filter(Box::new(TermQuery::new(
                Term::from_field_text(f.category_exact, &fold(category)),
                IndexRecordOption::Basic,
            )));
        }
        if let Some(sold_out) = query.sold_out {
            filter(Box::new(TermQuery::new(
                Term::from_field_bool(f.sold_out, sold_out),
                IndexRecordOption::Basic,
            )));
        }
        if query.from.is_some() || query.to.is_some() {
            let lower = query.from.map_or(Bound::Unbounded, |t| {
                Bound::Included(Term::from_field_i64(f.starts_at, clamp_i64(t)))
            });
            let upper = query.to.map_or(Bound::Unbounded, |t| {
                Bound::Excluded(Term::from_field_i64(f.starts_at, clamp_i64(t)))
            });
            filter(Box::new(RangeQuery::new(lower, upper)));
        }
        if let Some(near) = query.near {
            let bbox = BoundingBox::around(near.lat, near.lon, near.radius_km);
            filter(f64_range(f.lat, bbox.lat_min, bbox.lat_max));
            match bbox.lon {
                LonRange::All => {}
                LonRange::Within(min, max) => filter(f64_range(f.lon, min, max)),
                LonRange::Outside(min, max) => filter(Box::new(BooleanQuery::union(vec![
                    f64_range(f.lon, min, 180.0),
                    f64_range(f.lon, -180.0, max),
                ]))),
            }
        }
        if clauses.is_empty() { Box::new(AllQuery) } else { Box::new(BooleanQuery::new(clauses)) }
    }

    fn search(&self, query: &SearchQuery) -> Result<SearchPage> {
        query.validate()?;
        let order = query.sort_order();
        let after = query.cursor.as_deref().map(|c| SortKey::decode(c, order)).transpose()?;
        let collector = TopCollector { limit: query.limit + 1, order, after, near: query.near };
        let searcher = self.reader.searcher();
        let mut top = searcher.search(self.query(query).as_ref(), &collector)?;
        let more = top.len() > query.limit;
        top.truncate(query.limit);
        let next_cursor = match top.last() {
            Some(last) if more => Some(last.key.encode(order)),
            _ => None,
        };
        let mut hits = Vec::with_capacity(top.len());
        for found in top {
            let stored: TantivyDocument = searcher.doc(found.address)?;
            let json =
                stored.get_first(self.fields.doc).and_then(|v| v.as_str().map(str::to_owned)).ok_or_else(
                    || SearchError::Corrupt(format!("document of event {} has no body", found.key.id)),
                )?;
            let doc: EventDoc = serde_json::from_str(&json)
                .map_err(|e| SearchError::Corrupt(format!("document of event {}: {e}", found.key.id)))?;
            let distance_km = query.near.map(|n| haversine_km(n.lat, n.lon, doc.lat, doc.lon));
            let score = (order == SortOrder::Relevance).then_some(found.score);
            hits.push(SearchHit { doc, score, distance_km });
        }
        Ok(SearchPage { hits, next_cursor })
    }
}

fn f64_range(field: Field, min: f64, max: f64) -> Box<dyn Query> {
    Box::new(RangeQuery::new(
        Bound::Included(Term::from_field_f64(field, min)),
        Bound::Included(Term::from_field_f64(field, max)),
    ))
}

fn clamp_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

/// One hit on its way to a page.
#[derive(Debug, Clone, Copy)]
struct Found {
    key: SortKey,
    score: Score,
    address: DocAddress,
}

impl PartialEq for Found {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}
impl Eq for Found {}
impl PartialOrd for Found {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Found {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key.cmp(&other.key)
    }
}

/// Keeps the first `limit` matches in the page's order that come after the cursor and lie
/// within the geo radius.
struct TopCollector {
    limit: usize,
    order: SortOrder,
    after: Option<SortKey>,
    near: Option<GeoRadius>,
}

struct TopSegment {
    segment: SegmentOrdinal,
    limit: usize,
    order: SortOrder,
    after: Option<SortKey>,
    ids: Column<u64>,
    starts_at: Column<i64>,
    near: Option<(GeoRadius, Column<f64>, Column<f64>)>,
    /// A max-heap: its top is the worst hit kept, the one to drop for a better one.
    heap: BinaryHeap<Found>,
}

impl Collector for TopCollector {
    type Fruit = Vec<Found>;
    type Child = TopSegment;

    fn for_segment(&self, segment: SegmentOrdinal, reader: &SegmentReader) -> tantivy::Result<TopSegment> {
        let fast = reader.fast_fields();
        let near = match self.near {
            Some(near) => Some((near, fast.f64("lat")?, fast.f64("lon")?)),
            None => None,
        };
        Ok(TopSegment {
            segment,
            limit: self.limit,
            order: self.order,
            after: self.after,
            ids: fast.u64("id")?,
            starts_at: fast.i64("starts_at")?,
            near,
            heap: BinaryHeap::with_capacity(self.limit + 1),
        })
    }

    fn requires_scoring(&self) -> bool {
        self.order == SortOrder::Relevance
    }

    fn merge_fruits(&self, segments: Vec<Vec<Found>>) -> tantivy::Result<Vec<Found>> {
        let mut all: Vec<Found> = segments.into_iter().flatten().collect();
        all.sort_unstable();
        all.truncate(self.limit);
        Ok(all)
    }
}

impl SegmentCollector for TopSegment {
    type Fruit = Vec<Found>;

    fn collect(&mut self, doc: DocId, score: Score) {
        let Some(id) = self.ids.first(doc) else { return };
        let key = match self.order {
            SortOrder::Relevance => SortKey::relevance(score, id),
            SortOrder::Date => SortKey { primary: self.starts_at.first(doc).unwrap_or(i64::MAX), id },
        };
        if self.after.is_some_and(|after| key <= after) {
            return;
        }
        if self.heap.len() == self.limit && self.heap.peek().is_some_and(|worst| key >= worst.key) {
            return;
        }
        if let Some((near, lat, lon)) = &self.near {
            let (Some(lat), Some(lon)) = (lat.first(doc), lon.first(doc)) else { return };
            if haversine_km(near.lat, near.lon, lat, lon) > near.radius_km {
                return;
            }
        }
        self.heap.push(Found { key, score, address: DocAddress::new(self.segment, doc) });
        if self.heap.len() > self.limit {
            self.heap.pop();
        }
    }

    fn harvest(self) -> Vec<Found> {
        self.heap.into_vec()
    }
}
