//! The HTTP API under `/api/v1`, one module per resource, merged here with its OpenAPI document.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

pub mod auth;
pub mod bots;
pub mod entry_points;
pub mod error;
pub mod keys;
pub mod links;
pub mod stats;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "botlink",
        description = "Deep links into messenger bots: bots, entry points, short links with per-channel deep links, click statistics.\n\nAuthenticate with `Authorization: Bearer blk_...`. Errors are `{\"error\": {\"code\", \"message\"}}`.",
        license(name = "Apache-2.0")
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "bots", description = "Bots and their channel settings; secrets are write-only"),
        (name = "entry points", description = "Where links start a bot's scenario"),
        (name = "links", description = "Short links and deep links"),
        (name = "stats", description = "Clicks, unique clicks and previews"),
        (name = "api keys", description = "Keys of the workspace")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Every API route, with the OpenAPI document built from their annotations.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(bots::router())
        .merge(entry_points::router())
        .merge(links::router())
        .merge(stats::router())
        .merge(keys::router())
}

/// The OpenAPI document as served at `/api-docs/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    router().split_for_parts().1
}

/// Deserializes a field that may be absent (`None`), `null` (`Some(None)`) or a value.
pub fn double_option<'de, T, D>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    T: serde::Deserialize<'de>,
    D: serde::Deserializer<'de>,
{
    <Option<T> as serde::Deserialize>::deserialize(d).map(Some)
}
