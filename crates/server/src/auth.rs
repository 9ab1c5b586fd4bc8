//! Identity: HS256 JWTs with `sub`, `role`, `exp` and an optional `email`.
//!
//! Verifying a token costs about as much as the rest of a hold request, so each distinct
//! token is verified once and its claims kept in a bounded cache until it expires.

use std::path::Path;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use boxoffice_core::UserId;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::error::ApiError;

/// Distinct tokens whose verified claims are kept.
pub const TOKEN_CACHE_ENTRIES: u64 = 1_000_000;
/// Lifetime of tokens minted by `POST /v1/auth/token`.
pub const DEV_TOKEN_TTL_SECONDS: u64 = 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Fan,
    Staff,
    Admin,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: UserId,
    pub role: Role,
    pub email: Option<String>,
    exp: u64,
}

impl Caller {
    /// The server itself acting as admin (e.g. the cancellation job's refunds).
    pub fn system() -> Arc<Caller> {
        let user = UserId::parse("system").expect("a valid user id");
        Arc::new(Caller { user, role: Role::Admin, email: None, exp: u64::MAX })
    }

    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }

    /// Owner-only resources answer 404 to anyone but their owner and admins.
    pub fn may_see(&self, owner: &UserId) -> bool {
        self.is_admin() || &self.user == owner
    }
}

pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    cache: moka::sync::Cache<String, Arc<Caller>>,
}

impl Auth {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 0;
        Auth {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            cache: moka::sync::Cache::builder().max_capacity(TOKEN_CACHE_ENTRIES).build(),
        }
    }

    /// The secret from config, else the one in the data dir, else a new one saved there.
    pub fn load_or_create_secret(configured: Option<&str>, data_dir: &Path) -> std::io::Result<Vec<u8>> {
        if let Some(secret) = configured {
            return Ok(secret.as_bytes().to_vec());
        }
        load_or_create_key(data_dir, "jwt_secret")
    }

    pub fn mint(&self, user: &UserId, role: Role, email: Option<String>) -> String {
        let claims =
            Claims { sub: user.to_string(), role, exp: unix_seconds() + DEV_TOKEN_TTL_SECONDS, email };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of plain claims cannot fail")
    }

    pub fn verify(&self, token: &str) -> Result<Arc<Caller>, ApiError> {
        let now = unix_seconds();
        if let Some(caller) = self.cache.get(token) {
            if caller.exp > now {
                return Ok(caller);
            }
            self.cache.invalidate(token);
            return Err(invalid_token("the token has expired"));
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| invalid_token(&e.to_string()))?;
        let claims = data.claims;
        let user = UserId::parse(&claims.sub).map_err(|e| invalid_token(&e.to_string()))?;
        let caller = Arc::new(Caller { user, role: claims.role, email: claims.email, exp: claims.exp });
        self.cache.insert(token.to_owned(), caller.clone());
        Ok(caller)
    }
}

/// The 32-byte key kept (hex, mode 0600) in `<data_dir>/<name>`, created on first use.
pub fn load_or_create_key(data_dir: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let path = data_dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(hex_secret) => hex::decode(hex_secret.trim())
            .map_err(|e| std::io::Error::other(format!("{} is not hex: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret: [u8; 32] = rand::random();
            let tmp = data_dir.join(format!("{name}.tmp"));
            std::fs::write(&tmp, hex::encode(secret))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
            }
            std::fs::rename(&tmp, &path)?;
            Ok(secret.to_vec())
        }
        Err(e) => Err(e),
    }
}

pub fn unix_seconds() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn invalid_token(why: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "INVALID_TOKEN", format!("invalid token: {why}"))
}

impl FromRequestParts<AppState> for Arc<Caller> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // Verified already by the rate limiter in front of the handler (`http::guard`).
        if let Some(caller) = parts.extensions.get::<Arc<Caller>>() {
            return Ok(caller.clone());
        }
        let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "this route needs Authorization: Bearer <token>",
            )
        })?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .ok_or_else(|| invalid_token("expected Authorization: Bearer <token>"))?;
        state.auth.verify(token.trim())
    }
}

/// A caller with role admin.
pub struct Admin(pub Arc<Caller>);

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Arc::<Caller>::from_request_parts(parts, state).await?;
        if !caller.is_admin() {
            return Err(ApiError::new(StatusCode::FORBIDDEN, "FORBIDDEN", "this route needs role admin"));
        }
        Ok(Admin(caller))
    }
}

/// A caller with role staff or admin (door scanners).
pub struct Staff(pub Arc<Caller>);

impl FromRequestParts<AppState> for Staff {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller = Arc::<Caller>::from_request_parts(parts, state).await?;
        if !matches!(caller.role, Role::Staff | Role::Admin) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "this route needs role staff or admin",
            ));
        }
        Ok(Staff(caller))
    }
}
