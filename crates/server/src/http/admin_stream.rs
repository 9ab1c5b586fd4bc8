//! `POST /v1/admin/stream/replay` (admin): re-drives the ticket worker from a stream offset.
//! `boxoffice stream replay --from N` calls it, since a running server holds the data dir.

use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::Admin;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::http::dto::ErrorBody;
use crate::stream::StreamError;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(replay))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayBody {
    /// The first stream offset (sequence number) to hand to the ticket worker again; the
    /// stream's first message is 1.
    pub from: u64,
}

#[derive(Serialize, ToSchema)]
pub struct ReplayDto {
    pub from: u64,
    /// The newest offset when the replay began: the last one it covered.
    pub through: u64,
    /// Messages handed to the ticket worker's handler.
    pub messages: u64,
    /// Ticket mails written; the others were written before or are not ticket mail.
    pub mails_written: u64,
}

/// Reads the ticket stream in order from `from` through its newest message and hands each
/// message to the ticket worker's handler, which writes each order's mail once; answers
/// when done. The worker's durable consumer is not moved.
#[utoipa::path(post, path = "/v1/admin/stream/replay", tag = "admin", request_body = ReplayBody,
    security(("bearer" = [])),
    responses((status = 200, body = ReplayDto), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 422, description = "the offset is older than the stream keeps", body = ErrorBody),
        (status = 503, description = "the stream or the handler failed; replaying again is safe", body = ErrorBody)))]
async fn replay(
    State(state): State<AppState>,
    Admin(_admin): Admin,
    ApiJson(body): ApiJson<ReplayBody>,
) -> Result<axum::Json<ReplayDto>, ApiError> {
    match crate::stream::replay_tickets(&state, body.from).await {
        Ok(done) => Ok(axum::Json(ReplayDto {
            from: done.from,
            through: done.through,
            messages: done.messages,
            mails_written: done.mails_written,
        })),
        Err(StreamError::Truncated { requested, oldest }) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "OFFSET_NOT_KEPT",
            format!("offset {requested} is no longer kept; the oldest is {oldest}"),
        )
        .with("oldest", oldest)),
        Err(e) => Err(ApiError::unavailable("STREAM_UNAVAILABLE", e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use boxoffice_core::UserId;
    use serde_json::{Value, json};

    use crate::auth::Role;
    use crate::stream::StreamMessage;
    use crate::{Application, Config};

    async fn post(url: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        let mut request = reqwest::Client::new().post(url).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    #[tokio::test]
    async fn replay_hands_the_messages_from_an_offset_to_the_worker_and_needs_an_admin() {
        let dir = tempfile::tempdir().unwrap();
        let app = Application::build(Config::for_tests(dir.path().to_path_buf())).await.unwrap();
        let url = format!("http://{}/v1/admin/stream/replay", app.local_addr());
        let state = app.state().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(app.run(async move {
            let _ = stopped.await;
        }));
        while !state.is_ready() {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        for id in 1..=3 {
            let message = StreamMessage {
                id: 1_000 + id,
                topic: "test.noop".into(),
                key: format!("k{id}"),
                payload: "{}".into(),
                created_at: 0,
            };
            state.stream.publish(message).await.unwrap();
        }
        let admin = state.auth.mint(&UserId::parse("admin").unwrap(), Role::Admin, None);
        let fan = state.auth.mint(&UserId::parse("fan").unwrap(), Role::Fan, None);

        let (status, body) = post(&url, Some(&admin), json!({"from": 2})).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, json!({"from": 2, "through": 3, "messages": 2, "mails_written": 0}));
        let (status, body) = post(&url, Some(&admin), json!({"from": 9})).await;
        assert_eq!((status, &body["messages"]), (200, &json!(0)), "past the end: nothing to do");

        assert_eq!(post(&url, None, json!({"from": 1})).await.0, 401);
        assert_eq!(post(&url, Some(&fan), json!({"from": 1})).await.0, 403);
        assert_eq!(post(&url, Some(&admin), json!({"from": -1})).await.0, 400);
        assert_eq!(post(&url, Some(&admin), json!({"from": 1, "to": 2})).await.0, 400);

        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
