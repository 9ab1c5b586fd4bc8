//! How command-line tools reach a running server's admin API: the data dir is locked by
//! the server, so commands that need the engine or the store (`boxoffice audit verify`, ...)
//! ask the server. The admin token is `--token`, or one minted for a few minutes with the
//! server's JWT secret (`BOXOFFICE_JWT_SECRET`, else the one in the data dir).

use std::path::PathBuf;

use boxoffice_core::UserId;

use crate::auth::{Auth, Role};

/// Where and how to reach the server.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The running server's base URL.
    #[arg(long, env = "BOXOFFICE_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An admin token; when absent one is minted with the server's JWT secret.
    #[arg(long, env = "BOXOFFICE_ADMIN_TOKEN")]
    pub token: Option<String>,
    /// The server's data dir (where its JWT secret is, when not configured).
    #[arg(long, env = "BOXOFFICE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// The server's JWT secret, when it is configured rather than kept in the data dir.
    #[arg(long, env = "BOXOFFICE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
}

impl ServerArgs {
    fn token(&self) -> Result<String, String> {
        if let Some(token) = &self.token {
            return Ok(token.clone());
        }
        let secret_file = self.data_dir.join("jwt_secret");
        if self.jwt_secret.is_none() && !secret_file.exists() {
            return Err(format!(
                "no admin token: pass --token, or --data-dir of the server (no {} there)",
                secret_file.display()
            ));
        }
        let secret = Auth::load_or_create_secret(self.jwt_secret.as_deref(), &self.data_dir)
            .map_err(|e| format!("cannot read the JWT secret: {e}"))?;
        let admin = UserId::parse("cli-admin").expect("a valid user id");
        Ok(Auth::new(&secret).mint(&admin, Role::Admin, None))
    }

    /// Sends an admin request; returns the status and the JSON body.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, serde_json::Value), String> {
        let token = self.token()?;
        let url = format!("{}{}", self.url.trim_end_matches('/'), path);
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(300))
            .build()
            .map_err(|e| e.to_string())?;
        let mut request = client.request(method, &url).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.map_err(|e| format!("cannot reach the server at {url}: {e}"))?;
        let status = response.status().as_u16();
        let text = response.text().await.map_err(|e| e.to_string())?;
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        Ok((status, json))
    }
}
