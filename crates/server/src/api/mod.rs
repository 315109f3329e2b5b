//! The HTTP API under `/api/v1`, one module per resource, merged here with its OpenAPI document.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

pub mod auth;
pub mod bots;
pub mod compat;
pub mod contacts;
pub mod deliveries;
pub mod entry_points;
pub mod error;
pub mod keys;
pub mod links;
pub mod notify;
pub mod registration;
pub mod scenarios;
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
        (name = "api keys", description = "Keys of the workspace"),
        (name = "scenarios", description = "A bot's scenario, versioned"),
        (name = "contacts", description = "The people who started a bot"),
        (name = "deliveries", description = "Requests scenarios make to a CRM, with every attempt"),
        (name = "notify", description = "call_node: notify a person who has started the bot, and follow the run")
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
    let mut router = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(bots::router())
        .merge(entry_points::router())
        .merge(links::router())
        .merge(stats::router())
        .merge(keys::router())
        .merge(notify::router())
        .merge(scenarios::router())
        .merge(contacts::router())
        .merge(deliveries::router())
        .merge(registration::router());
    // After the merge: the document's own modifiers run before the routes are in it.
    ErrorResponses.modify(router.get_openapi_mut());
    router
}

/// Documents the errors every operation can answer, from what the operation takes, so that no
/// operation forgets one: 401, 403, 429 and 503 for all (every route needs a key with a role,
/// each key is rate limited, and every route reads the database, which may be locked or
/// away); 400, 408, 413 and 422 where a JSON body is read; 422 where a query is read; 404
/// where a path names a resource.
struct ErrorResponses;

impl Modify for ErrorResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::path::{Parameter, ParameterIn};
        for item in openapi.paths.paths.values_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
            ];
            for op in ops.into_iter().flatten() {
                let params: Vec<&Parameter> = op
                    .parameters
                    .iter()
                    .flatten()
                    .filter_map(|p| match p {
                        RefOr::T(p) => Some(p),
                        RefOr::Ref(_) => None,
                    })
                    .collect();
                let query = params.iter().any(|p| p.parameter_in == ParameterIn::Query);
                let path = params.iter().any(|p| p.parameter_in == ParameterIn::Path);
                let body = op.request_body.is_some();
                let mut errors = vec![
                    (
                        "401",
                        "missing, unknown or revoked API key (`unauthorized`)",
                    ),
                    (
                        "403",
                        "the key's role may not do this (`forbidden`); the message names the role needed",
                    ),
                ];
                if body {
                    errors.extend([
                        ("400", "the body is not JSON, or not sent as `application/json`"),
                        ("408", "the body did not arrive in time"),
                        ("413", "the body is too large"),
                        (
                            "422",
                            "a field is missing, of the wrong type or breaks a rule; the message names it",
                        ),
                    ]);
                } else if query {
                    errors.push((
                        "422",
                        "a query parameter breaks a rule; the message names it",
                    ));
                }
                if path {
                    errors.push(("404", "no such resource in the key's workspace"));
                }
                for (status, description) in errors {
                    op.responses
                        .responses
                        .entry(status.to_string())
                        .or_insert_with(|| error_response(description, None));
                }
                let retry_after = utoipa::openapi::HeaderBuilder::new()
                    .schema(Some(
                        utoipa::openapi::ObjectBuilder::new()
                            .schema_type(utoipa::openapi::Type::Integer)
                            .minimum(Some(1)),
                    ))
                    .description(Some("seconds to wait before retrying"))
                    .build();
                op.responses.responses.insert(
                    "429".to_string(),
                    error_response(
                        "too many requests for this key (`rate_limited`)",
                        Some(retry_after.clone()),
                    ),
                );
                op.responses.responses.insert(
                    "503".to_string(),
                    error_response(
                        "the database could not serve the request just now: locked by another \
                         writer or out of connections (`database_busy`), or unreachable \
                         (`database_unreachable`); nothing was changed, send the same request \
                         again after `Retry-After`",
                        Some(retry_after),
                    ),
                );
            }
        }
    }
}

/// A documented error answer: the standard body, and a header where one is sent.
fn error_response(
    description: &str,
    header: Option<utoipa::openapi::Header>,
) -> utoipa::openapi::RefOr<utoipa::openapi::Response> {
    let content = utoipa::openapi::ContentBuilder::new()
        .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
        .build();
    let mut response = utoipa::openapi::ResponseBuilder::new()
        .description(description)
        .content("application/json", content);
    if let Some(h) = header {
        response = response.header("Retry-After", h);
    }
    response.build().into()
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
