//! `GET /v1/search`: event discovery over the search index (public). Parameters are
//! checked here, so that every mistake answers 400 with a message that names it; the
//! index answers with a ranked page of event summaries.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use boxoffice_search::{GeoRadius, SearchError, SearchQuery, SortOrder};
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;
use crate::http::dto::{ErrorBody, Page, SearchHitDto};
use crate::http::events::parse_time;
use crate::http::page_limit;

/// Radius used when `lat` and `lon` come without `radius_km`.
pub const DEFAULT_RADIUS_KM: f64 = 50.0;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(search))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Words to find in name, performers, venue, city, category and description; each word
    /// must match (a, the, in, ... are optional), words of 5+ letters also within one edit.
    q: Option<String>,
    /// Exact city, case-insensitive.
    city: Option<String>,
    /// Exact category, case-insensitive.
    category: Option<String>,
    /// Events starting at or after this time (RFC 3339).
    from: Option<String>,
    /// Events starting before this time (RFC 3339).
    to: Option<String>,
    /// Latitude of the centre of a radius filter (-90..90); needs `lon`.
    lat: Option<String>,
    /// Longitude of the centre of a radius filter (-180..180); needs `lat`.
    lon: Option<String>,
    /// Radius in km, more than 0 and at most 20000 (default 50 with `lat`/`lon`).
    radius_km: Option<String>,
    /// `relevance` (the default with `q`; needs `q`) or `date` (the default without).
    sort: Option<String>,
    /// `true`: leave out sold-out events.
    available: Option<String>,
    /// 1-100, default 20.
    limit: Option<String>,
    cursor: Option<String>,
}

/// Events matching words and filters, best match first (or soonest first).
#[utoipa::path(get, path = "/v1/search", tag = "catalog", params(SearchParams),
    responses((status = 200, body = Page<SearchHitDto>), (status = 400, body = ErrorBody)))]
async fn search(
    State(state): State<AppState>,
    params: Result<Query<SearchParams>, QueryRejection>,
) -> Result<axum::Json<Page<SearchHitDto>>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::invalid(e.body_text()))?;
    let query = search_query(params)?;
    let page = match state.search.search(query).await {
        Ok(page) => page,
        Err(SearchError::InvalidQuery(message)) => return Err(ApiError::invalid(message)),
        Err(SearchError::BadCursor) => return Err(ApiError::invalid("cursor is not valid for this search")),
        Err(e) => return Err(ApiError::internal(e.to_string())),
    };
    let now = boxoffice_engine::Clock::now_ms(&boxoffice_engine::SystemClock);
    Ok(axum::Json(Page {
        items: page.hits.iter().map(|hit| SearchHitDto::new(hit, now)).collect(),
        next_cursor: page.next_cursor,
    }))
}

fn parse_f64(field: &str, raw: &str) -> Result<f64, ApiError> {
    raw.trim()
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| ApiError::invalid(format!("{field} must be a number")))
}

/// Parses and checks the parameters.
fn search_query(p: SearchParams) -> Result<SearchQuery, ApiError> {
    let non_empty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let limit = page_limit(p.limit.as_deref())? as usize;
    let from = p.from.as_deref().map(|t| parse_time("from", t)).transpose()?;
    let to = p.to.as_deref().map(|t| parse_time("to", t)).transpose()?;
    let lat = p.lat.as_deref().map(|v| parse_f64("lat", v)).transpose()?;
    let lon = p.lon.as_deref().map(|v| parse_f64("lon", v)).transpose()?;
    let radius_km = p.radius_km.as_deref().map(|v| parse_f64("radius_km", v)).transpose()?;
    let near = match (lat, lon, radius_km) {
        (None, None, None) => None,
        (Some(lat), Some(lon), radius) => {
            let radius_km = radius.unwrap_or(DEFAULT_RADIUS_KM);
            boxoffice_search::geo::validate(lat, lon, radius_km).map_err(ApiError::invalid)?;
            Some(GeoRadius { lat, lon, radius_km })
        }
        (None, None, Some(_)) => return Err(ApiError::invalid("radius_km needs lat and lon")),
        _ => return Err(ApiError::invalid("lat and lon must be given together")),
    };
    let sort = match p.sort.as_deref() {
        None | Some("") => None,
        Some("relevance") => Some(SortOrder::Relevance),
        Some("date") => Some(SortOrder::Date),
        Some(_) => return Err(ApiError::invalid("sort must be relevance or date")),
    };
    let sold_out = match p.available.as_deref() {
        None | Some("") | Some("false") => None,
        Some("true") => Some(false),
        Some(_) => return Err(ApiError::invalid("available must be true or false")),
    };
    let query = SearchQuery {
        text: non_empty(p.q),
        city: non_empty(p.city),
        category: non_empty(p.category),
        from,
        to,
        near,
        sold_out,
        sort,
        limit,
        cursor: non_empty(p.cursor),
    };
    query.validate().map_err(|e| ApiError::invalid(e.to_string()))?;
    Ok(query)
}
