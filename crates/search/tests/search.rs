//! The embedded search index against its contract: ranking, typo tolerance, each filter,
//! geo radius edges, ordering, pagination and persistence.

use std::collections::HashSet;

use boxoffice_search::geo::haversine_km;
use boxoffice_search::{
    EventDoc, GeoRadius, IndexChange, Price, SearchError, SearchIndex, SearchQuery, SortOrder, TantivyIndex,
};

const DAY_MS: u64 = 24 * 3600 * 1000;
const T0: u64 = 1_800_000_000_000;

fn doc(id: u64, name: &str) -> EventDoc {
    EventDoc {
        id,
        name: name.into(),
        performers: Vec::new(),
        genres: Vec::new(),
        venue_id: 1,
        venue_name: "Town Hall".into(),
        city: "Springfield".into(),
        category: "concert".into(),
        description: None,
        starts_at: T0 + id * DAY_MS,
        onsale_at: T0,
        status: "published".into(),
        seat_count: 100,
        lat: 10.0,
        lon: 20.0,
        price_min: Some(Price { amount: 1000, currency: "USD".into() }),
        price_max: Some(Price { amount: 5000, currency: "USD".into() }),
        sold_out: false,
        updated_at: T0,
    }
}

async fn index_of(docs: Vec<EventDoc>) -> (tempfile::TempDir, TantivyIndex) {
    let dir = tempfile::tempdir().unwrap();
    let index = TantivyIndex::open(&dir.path().join("search")).unwrap();
    index.rebuild(docs, 1).await.unwrap();
    (dir, index)
}

fn query(text: &str) -> SearchQuery {
    SearchQuery { text: Some(text.into()), limit: 20, ..SearchQuery::default() }
}

fn filters() -> SearchQuery {
    SearchQuery { limit: 100, ..SearchQuery::default() }
}

async fn ids(index: &TantivyIndex, q: SearchQuery) -> Vec<u64> {
    index.search(q).await.unwrap().hits.iter().map(|h| h.doc.id).collect()
}

#[tokio::test]
async fn the_exact_name_ranks_first_then_longer_names_then_other_fields() {
    let mut performer = doc(3, "Summer Night");
    performer.performers = vec!["Hamlet Brass Band".into()];
    let mut described = doc(4, "An Evening of Drama");
    described.description = Some("Scenes from Hamlet and other plays.".into());
    let (_dir, index) = index_of(vec![
        doc(1, "Hamlet: Final Week at the Grand Old Theater"),
        doc(2, "Hamlet"),
        performer,
        described,
        doc(5, "Macbeth"),
    ])
    .await;
    let page = index.search(query("hamlet")).await.unwrap();
    let order: Vec<u64> = page.hits.iter().map(|h| h.doc.id).collect();
    assert_eq!(order, vec![2, 1, 3, 4], "exact name, longer name, performer, description");
    let scores: Vec<f32> = page.hits.iter().map(|h| h.score.unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
}

#[tokio::test]
async fn every_word_must_match_somewhere_but_common_words_are_optional() {
    let mut london = doc(1, "Aurora Skies: The Stadium Tour");
    london.city = "London".into();
    let mut berlin = doc(2, "Aurora Skies: Acoustic");
    berlin.city = "Berlin".into();
    let (_dir, index) = index_of(vec![london, berlin, doc(3, "Skies over Springfield")]).await;
    assert_eq!(ids(&index, query("aurora skies london")).await, vec![1]);
    assert_eq!(ids(&index, query("aurora skies in berlin")).await, vec![2], "`in` is optional");
    let mut both = ids(&index, query("aurora skies")).await;
    both.sort();
    assert_eq!(both, vec![1, 2]);
    assert!(ids(&index, query("aurora skies paris")).await.is_empty());
    assert!(ids(&index, query("!!! ???")).await.is_empty(), "no word, no match");
}

#[tokio::test]
async fn a_word_of_five_letters_or_more_matches_within_one_edit() {
    let (_dir, index) =
        index_of(vec![doc(1, "Hamlet"), doc(2, "Midnight Lanterns"), doc(3, "Rock Night")]).await;
    assert_eq!(ids(&index, query("hamlt")).await, vec![1], "a letter missing");
    assert_eq!(ids(&index, query("hamlets")).await, vec![1], "a letter more");
    assert_eq!(ids(&index, query("hamlwt")).await, vec![1], "a letter changed");
    assert_eq!(ids(&index, query("hmalet")).await, vec![1], "two letters swapped");
    assert_eq!(ids(&index, query("lanterms")).await, vec![2]);
    assert!(ids(&index, query("hmlwt")).await.is_empty(), "two edits are too many");
    assert!(ids(&index, query("rok")).await.is_empty(), "short words must match exactly");
    assert!(ids(&index, query("nigh")).await.is_empty(), "4 letters: exact only");
    assert_eq!(ids(&index, query("rock")).await, vec![3]);
}

#[tokio::test]
async fn an_exact_word_outranks_a_typo_match() {
    // "lantern" is one edit from "lanterns": both match, the exact one first.
    let (_dir, index) = index_of(vec![doc(1, "Lanterns"), doc(2, "Lantern")]).await;
    assert_eq!(ids(&index, query("lantern")).await, vec![2, 1]);
    assert_eq!(ids(&index, query("lanterns")).await, vec![1, 2]);
}

#[tokio::test]
async fn accents_and_case_do_not_matter() {
    let mut koln = doc(1, "Noche Latina");
    koln.city = "Köln".into();
    let (_dir, index) = index_of(vec![koln]).await;
    assert_eq!(ids(&index, query("KOLN")).await, vec![1]);
    assert_eq!(ids(&index, query("noché")).await, vec![1]);
    assert_eq!(ids(&index, SearchQuery { city: Some("KÖLN".into()), ..filters() }).await, vec![1]);
}

#[tokio::test]
async fn city_and_category_filters_are_exact_and_case_insensitive() {
    let mut docs = Vec::new();
    for (id, city, category) in [
        (1, "New York", "concert"),
        (2, "New York", "sports"),
        (3, "York", "concert"),
        (4, "new york", "Comedy"),
    ] {
        let mut d = doc(id, "Show");
        d.city = city.into();
        d.category = category.into();
        docs.push(d);
    }
    let (_dir, index) = index_of(docs).await;
    let city = |c: &str| SearchQuery { city: Some(c.into()), ..filters() };
    assert_eq!(ids(&index, city("new YORK")).await, vec![1, 2, 4]);
    assert_eq!(ids(&index, city("York")).await, vec![3], "exact: not a word of the city");
    assert_eq!(ids(&index, SearchQuery { category: Some("comedy".into()), ..filters() }).await, vec![4]);
    let both = SearchQuery { city: Some("New York".into()), category: Some("Concert".into()), ..filters() };
    assert_eq!(ids(&index, both).await, vec![1]);
    let with_text = SearchQuery { city: Some("york".into()), ..query("show") };
    assert_eq!(ids(&index, with_text).await, vec![3]);
}

#[tokio::test]
async fn the_sold_out_filter_hides_or_picks_sold_out_events() {
    let mut gone = doc(2, "Show");
    gone.sold_out = true;
    let (_dir, index) = index_of(vec![doc(1, "Show"), gone]).await;
    assert_eq!(ids(&index, SearchQuery { sold_out: Some(false), ..filters() }).await, vec![1]);
    assert_eq!(ids(&index, SearchQuery { sold_out: Some(true), ..query("show") }).await, vec![2]);
    assert_eq!(ids(&index, filters()).await, vec![1, 2]);
}

#[tokio::test]
async fn the_date_range_includes_from_and_excludes_to() {
    let (_dir, index) = index_of((1..=5).map(|i| doc(i, "Show")).collect()).await;
    let range = |from: Option<u64>, to: Option<u64>| SearchQuery { from, to, ..filters() };
    assert_eq!(ids(&index, range(Some(T0 + 2 * DAY_MS), Some(T0 + 4 * DAY_MS))).await, vec![2, 3]);
    assert_eq!(ids(&index, range(Some(T0 + 4 * DAY_MS), None)).await, vec![4, 5]);
    assert_eq!(ids(&index, range(None, Some(T0 + 2 * DAY_MS + 1))).await, vec![1, 2]);
    assert!(ids(&index, range(Some(T0 + 3 * DAY_MS), Some(T0 + 3 * DAY_MS))).await.is_empty());
}

#[tokio::test]
async fn the_geo_radius_keeps_points_on_its_edge_and_drops_points_just_beyond() {
    // Along a meridian one degree is 111.195 km; along the equator too.
    let place = |id: u64, lat: f64, lon: f64| {
        let mut d = doc(id, "Show");
        d.lat = lat;
        d.lon = lon;
        d
    };
    let (_dir, index) = index_of(vec![
        place(1, 0.0, 0.0),
        place(2, 1.0, 0.0),
        place(3, 0.0, 1.0),
        place(4, 0.7, 0.7),
        place(5, -1.0, 0.0),
        place(6, 0.0, 179.9),
        place(7, 0.0, -179.9),
    ])
    .await;
    let one_degree = haversine_km(0.0, 0.0, 1.0, 0.0);
    let near = |lat: f64, lon: f64, radius_km: f64| SearchQuery {
        near: Some(GeoRadius { lat, lon, radius_km }),
        ..filters()
    };
    let mut inside = ids(&index, near(0.0, 0.0, one_degree + 0.001)).await;
    inside.sort();
    assert_eq!(inside, vec![1, 2, 3, 4, 5], "the box's corner (4) is inside the circle at 0.99 degrees");
    let mut inside = ids(&index, near(0.0, 0.0, one_degree - 0.001)).await;
    inside.sort();
    assert_eq!(inside, vec![1, 4]);
    let corner = haversine_km(0.0, 0.0, 0.7, 0.7);
    assert_eq!(ids(&index, near(0.0, 0.0, corner - 0.001)).await, vec![1], "in the box, outside the circle");
    // Across the antimeridian: 179.9 and -179.9 are 22 km apart.
    let mut across = ids(&index, near(0.0, 180.0, 20.0)).await;
    across.sort();
    assert_eq!(across, vec![6, 7]);
    let page = index.search(near(0.0, 0.0, 200.0)).await.unwrap();
    let origin = page.hits.iter().find(|h| h.doc.id == 1).unwrap();
    assert_eq!(origin.distance_km, Some(0.0));
}

#[tokio::test]
async fn without_text_results_come_by_date_and_with_text_by_relevance_unless_asked() {
    let mut docs: Vec<EventDoc> = (1..=4).map(|i| doc(i, "Jazz Night")).collect();
    docs[0].starts_at = T0 + 10 * DAY_MS;
    docs[3].name = "Jazz Jazz Jazz".into();
    docs[3].starts_at = T0 + 20 * DAY_MS;
    let (_dir, index) = index_of(docs).await;
    assert_eq!(ids(&index, filters()).await, vec![2, 3, 1, 4]);
    assert_eq!(ids(&index, query("jazz")).await[0], 4, "most mentions first");
    let by_date = SearchQuery { sort: Some(SortOrder::Date), ..query("jazz") };
    assert_eq!(ids(&index, by_date).await, vec![2, 3, 1, 4]);
    let page = index.search(SearchQuery { sort: Some(SortOrder::Date), ..query("jazz") }).await.unwrap();
    assert!(page.hits.iter().all(|h| h.score.is_none()), "no score in date order");
}

#[tokio::test]
async fn pages_cover_every_hit_once_in_either_order() {
    // Many ties: the same name (same score) and repeated start times.
    let docs: Vec<EventDoc> = (1..=97)
        .map(|i| {
            let mut d = doc(i, if i % 3 == 0 { "Opera Gala Opera" } else { "Opera Gala" });
            d.starts_at = T0 + (i % 7) * DAY_MS;
            d
        })
        .collect();
    let (_dir, index) = index_of(docs).await;
    for base in [query("opera"), filters(), SearchQuery { sort: Some(SortOrder::Date), ..query("gala") }] {
        let all = ids(&index, SearchQuery { limit: 100, ..base.clone() }).await;
        assert_eq!(all.len(), 97);
        let mut paged = Vec::new();
        let mut cursor = None;
        loop {
            let page = index.search(SearchQuery { limit: 10, cursor, ..base.clone() }).await.unwrap();
            assert!(page.hits.len() <= 10);
            paged.extend(page.hits.iter().map(|h| h.doc.id));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(paged, all, "pages are the full list, cut in order: no gap, no duplicate");
        assert_eq!(paged.iter().collect::<HashSet<_>>().len(), 97);
    }
    let exact = index.search(SearchQuery { limit: 97, ..filters() }).await.unwrap();
    assert_eq!(exact.next_cursor, None, "a last page that is exactly full has no next cursor");
}

#[tokio::test]
async fn a_cursor_of_another_order_or_garbage_is_refused() {
    let (_dir, index) = index_of((1..=3).map(|i| doc(i, "Show")).collect()).await;
    let first = index.search(SearchQuery { limit: 1, ..filters() }).await.unwrap();
    let cursor = first.next_cursor.unwrap();
    let wrong = SearchQuery { limit: 1, cursor: Some(cursor), ..query("show") };
    assert!(matches!(index.search(wrong).await, Err(SearchError::BadCursor)));
    let garbage = SearchQuery { cursor: Some("not a cursor".into()), ..filters() };
    assert!(matches!(index.search(garbage).await, Err(SearchError::BadCursor)));
    assert!(matches!(
        index.search(SearchQuery { limit: 0, ..filters() }).await,
        Err(SearchError::InvalidQuery(_))
    ));
}

#[tokio::test]
async fn upserts_replace_deletes_remove_and_a_rebuild_replaces_everything() {
    let (_dir, index) = index_of(vec![doc(1, "Hamlet"), doc(2, "Macbeth")]).await;
    let mut renamed = doc(1, "Othello");
    renamed.status = "cancelled".into();
    index.apply(vec![IndexChange::Upsert(renamed), IndexChange::Delete(2)], 7).await.unwrap();
    assert!(ids(&index, query("hamlet")).await.is_empty());
    let page = index.search(query("othello")).await.unwrap();
    assert_eq!(page.hits.len(), 1);
    assert_eq!(page.hits[0].doc.status, "cancelled");
    assert!(ids(&index, query("macbeth")).await.is_empty());
    assert_eq!(index.doc_count().await.unwrap(), 1);
    assert_eq!(index.position().await.unwrap(), Some(7));

    index.rebuild(vec![doc(5, "Tosca"), doc(6, "Aida")], 9).await.unwrap();
    assert_eq!(ids(&index, filters()).await, vec![5, 6]);
    assert_eq!(index.position().await.unwrap(), Some(9));
}

#[tokio::test]
async fn the_index_and_its_position_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("search");
    let first = TantivyIndex::open(&path).unwrap();
    assert_eq!(first.position().await.unwrap(), None, "a new index was never built");
    first.rebuild(vec![doc(1, "Hamlet")], 3).await.unwrap();
    first.apply(vec![IndexChange::Upsert(doc(2, "Macbeth"))], 4).await.unwrap();
    first.close().await;
    assert!(matches!(first.apply(Vec::new(), 5).await, Err(SearchError::Closed)));
    assert_eq!(ids(&first, filters()).await, vec![1, 2], "a closed index still answers");
    let index = TantivyIndex::open(&path).unwrap();
    assert_eq!(index.position().await.unwrap(), Some(4));
    assert_eq!(ids(&index, filters()).await, vec![1, 2]);
    let hit = &index.search(query("macbeth")).await.unwrap().hits[0];
    assert_eq!(hit.doc, doc(2, "Macbeth"), "the stored document reads back whole");
    assert!(index.size_bytes().unwrap() > 0);
}
