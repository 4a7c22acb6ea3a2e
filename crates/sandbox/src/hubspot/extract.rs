//! A JSON body extractor that answers malformed bodies the way HubSpot does (400
//! `VALIDATION_ERROR` with the parser's complaint) instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use super::errors::ApiError;

pub struct HubJson<T>(pub T);

impl<S, T> FromRequest<S> for HubJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|rejection| ApiError::validation(rejection.body_text()))?;
        serde_json::from_slice(&bytes).map(HubJson).map_err(|err| {
            ApiError::validation(format!(
                "Invalid input JSON on line {}, column {}: {err}",
                err.line(),
                err.column()
            ))
        })
    }
}
