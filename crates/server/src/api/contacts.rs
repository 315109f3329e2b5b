//! Contacts: the people who started a bot, one per chat and channel, with what their Starts
//! said (the CRM's id, phone, e-mail, variables) and where they came from.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::api::auth::Auth;
use crate::api::bots::load_bot;
use crate::api::error::{ApiError, ErrorBody, Query};
use crate::app::AppState;
use crate::domain::links::parse_channel;
use crate::store::{Contact, ContactFilter, ContactId, Role, StoreError, Utm};
use crate::util::format_rfc3339;

/// A contact.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContactOut {
    pub id: String,
    pub bot_id: String,
    pub channel: String,
    pub chat_id: String,
    pub user_id: Option<String>,
    pub name: Option<String>,
    pub language: Option<String>,
    pub external_id: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub variables: BTreeMap<String, String>,
    pub fields: BTreeMap<String, String>,
    /// Whether the bot may write to the person.
    pub subscribed: bool,
    /// The link of the first attributed Start (first touch), and of the last.
    pub first_link_id: Option<String>,
    pub last_link_id: Option<String>,
    pub utm: Utm,
    pub created_at: String,
    pub last_seen_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ContactPage {
    pub contacts: Vec<ContactOut>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContactQuery {
    #[param(value_type = Option<crate::api::bots::ChannelName>)]
    pub channel: Option<String>,
    pub chat_id: Option<String>,
    pub external_id: Option<String>,
    /// Text to look for in the name, external id, phone or e-mail.
    pub q: Option<String>,
    /// Page size, 1-500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_contacts))
        .routes(routes!(export_contacts))
        .routes(routes!(get_contact, delete_contact))
}

pub fn contact_out(c: &Contact) -> ContactOut {
    ContactOut {
        id: c.id.to_string(),
        bot_id: c.bot_id.to_string(),
        channel: c.channel.as_str().to_owned(),
        chat_id: c.chat_id.clone(),
        user_id: c.user_id.clone(),
        name: c.name.clone(),
        language: c.language.clone(),
        external_id: c.external_id.clone(),
        phone: c.phone.clone(),
        email: c.email.clone(),
        variables: c.variables.clone(),
        fields: c.fields.clone(),
        subscribed: c.subscribed,
        first_link_id: c.first_link_id.as_ref().map(ToString::to_string),
        last_link_id: c.last_link_id.as_ref().map(ToString::to_string),
        utm: c.utm.clone(),
        created_at: format_rfc3339(c.created_at),
        last_seen_at: format_rfc3339(c.last_seen_at),
    }
}

fn filter(q: ContactQuery) -> Result<ContactFilter, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::invalid("invalid_limit", "limit must be 1-500"));
    }
    Ok(ContactFilter {
        channel: q.channel.as_deref().map(parse_channel).transpose()?,
        chat_id: q.chat_id,
        external_id: q.external_id,
        q: q.q,
        limit: Some(limit),
        cursor: q.cursor,
    })
}

fn contact_not_found(e: StoreError, id: &str) -> ApiError {
    match e {
        StoreError::NotFound => ApiError::NotFound(format!("contact {id:?}")),
        e => e.into(),
    }
}

/// The bot's contacts, newest first, filtered and paginated.
#[utoipa::path(get, path = "/api/v1/bots/{bot_id}/contacts", tag = "contacts",
    params(("bot_id" = String, Path), ContactQuery), security(("api_key" = [])),
    responses((status = 200, body = ContactPage), (status = 404, body = ErrorBody)))]
pub async fn list_contacts(
    State(state): State<AppState>,
    auth: Auth,
    Path(bot_id): Path<String>,
    Query(q): Query<ContactQuery>,
) -> Result<axum::Json<ContactPage>, ApiError> {
    auth.require(&[Role::Notify])?;
    let filter = filter(q)?;
    let bot = load_bot(&state, &auth, &bot_id).await?;
    let (contacts, next_cursor) = state
        .flow()
        .list_contacts(&auth.workspace_id, &bot.id, &filter)
        .await?;
    Ok(axum::Json(ContactPage {
        contacts: contacts.iter().map(contact_out).collect(),
        next_cursor,
    }))
}

/// Every contact of the bot as CSV (the list's filters apply).
#[utoipa::path(get, path = "/api/v1/bots/{bot_id}/contacts.csv", tag = "contacts",
    params(("bot_id" = String, Path), ContactQuery), security(("api_key" = [])),
    responses((status = 200, content_type = "text/csv", body = String), (status = 404, body = ErrorBody)))]
pub async fn export_contacts(
    State(state): State<AppState>,
    auth: Auth,
    Path(bot_id): Path<String>,
    Query(q): Query<ContactQuery>,
) -> Result<axum::response::Response, ApiError> {
    auth.require(&[Role::Notify])?;
    let mut filter = filter(q)?;
    filter.limit = Some(500);
    let bot = load_bot(&state, &auth, &bot_id).await?;
    let mut out = csv::Writer::from_writer(Vec::new());
    let row_error = |e: csv::Error| ApiError::internal(format!("writing CSV: {e}"));
    out.write_record([
        "id",
        "channel",
        "chat_id",
        "user_id",
        "name",
        "language",
        "external_id",
        "phone",
        "email",
        "subscribed",
        "variables",
        "fields",
        "first_link_id",
        "last_link_id",
        "utm_source",
        "utm_medium",
        "utm_campaign",
        "created_at",
        "last_seen_at",
    ])
    .map_err(row_error)?;
    loop {
        let (contacts, next) = state
            .flow()
            .list_contacts(&auth.workspace_id, &bot.id, &filter)
            .await?;
        for c in &contacts {
            let json = |m: &BTreeMap<String, String>| serde_json::to_string(m).unwrap_or_default();
            let opt = |v: &Option<String>| v.clone().unwrap_or_default();
            out.write_record([
                c.id.to_string(),
                c.channel.as_str().to_owned(),
                c.chat_id.clone(),
                opt(&c.user_id),
                opt(&c.name),
                opt(&c.language),
                opt(&c.external_id),
                opt(&c.phone),
                opt(&c.email),
                c.subscribed.to_string(),
                json(&c.variables),
                json(&c.fields),
                c.first_link_id
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                c.last_link_id
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
                opt(&c.utm.source),
                opt(&c.utm.medium),
                opt(&c.utm.campaign),
                format_rfc3339(c.created_at),
                format_rfc3339(c.last_seen_at),
            ])
            .map_err(row_error)?;
        }
        match next {
            Some(cursor) => filter.cursor = Some(cursor),
            None => break,
        }
    }
    let body = out
        .into_inner()
        .map_err(|e| ApiError::internal(format!("writing CSV: {e}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"contacts.csv\"",
            ),
        ],
        body,
    )
        .into_response())
}

/// One contact.
#[utoipa::path(get, path = "/api/v1/contacts/{contact_id}", tag = "contacts",
    params(("contact_id" = String, Path)), security(("api_key" = [])),
    responses((status = 200, body = ContactOut), (status = 404, body = ErrorBody)))]
pub async fn get_contact(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<axum::Json<ContactOut>, ApiError> {
    auth.require(&[Role::Notify])?;
    let c = state
        .flow()
        .contact(&auth.workspace_id, &ContactId::from(id.as_str()))
        .await
        .map_err(|e| contact_not_found(e, &id))?;
    Ok(axum::Json(contact_out(&c)))
}

/// Delete a contact with its personal data, variables, Starts and pending messages.
#[utoipa::path(delete, path = "/api/v1/contacts/{contact_id}", tag = "contacts",
    params(("contact_id" = String, Path)), security(("api_key" = [])),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_contact(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    auth.admin()?;
    state
        .flow()
        .delete_contact(&auth.workspace_id, &ContactId::from(id.as_str()))
        .await
        .map_err(|e| contact_not_found(e, &id))?;
    Ok(StatusCode::NO_CONTENT)
}
