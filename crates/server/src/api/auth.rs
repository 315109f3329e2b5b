//! API keys: `Authorization: Bearer blk_...`, looked up by SHA-256 hash, each with a role in
//! one workspace; a per-key rate limit.

use std::num::NonZeroU32;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use subtle::ConstantTimeEq;

use crate::api::error::ApiError;
use crate::app::AppState;
use crate::crypto::api_key_hash;
use crate::store::{Role, WorkspaceId};

/// The caller, once its key checked out.
#[derive(Debug, Clone)]
pub struct Auth {
    pub workspace_id: WorkspaceId,
    pub role: Role,
    /// The key's id (`env-admin` for `BOTLINK_ADMIN_KEY`).
    pub key_id: String,
}

impl Auth {
    /// Allows the call when the key has one of `roles` (admin always passes).
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if self.role == Role::Admin || roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this API key has the {} role, which cannot do this; use a key with the {} role",
                self.role.as_str(),
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .chain(std::iter::once("admin"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )))
        }
    }

    pub fn admin(&self) -> Result<(), ApiError> {
        self.require(&[])
    }
}

/// Per-key request limiter (per process).
pub struct KeyLimiter {
    limiter: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl KeyLimiter {
    pub fn new(per_second: u32) -> KeyLimiter {
        let rate = NonZeroU32::new(per_second.max(1)).expect("max(1) is non-zero");
        let burst = NonZeroU32::new(per_second.max(1).saturating_mul(2)).expect("non-zero");
        KeyLimiter {
            limiter: RateLimiter::keyed(Quota::per_second(rate).allow_burst(burst)),
            clock: DefaultClock::default(),
        }
    }

    /// Ok, or the whole seconds to wait.
    pub fn check(&self, key: &str) -> Result<(), u64> {
        // Clone only once per call; governor keys by value.
        self.limiter
            .check_key(&key.to_string())
            .map_err(|not_until| {
                let wait = not_until.wait_time_from(self.clock.now());
                wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
            })
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(parts).ok_or(ApiError::Unauthorized)?;
        if !token.starts_with("blk_") || token.len() > 128 {
            return Err(ApiError::Unauthorized);
        }
        let auth = match state.admin_key_matches(token) {
            true => Auth {
                workspace_id: state.default_workspace().clone(),
                role: Role::Admin,
                key_id: "env-admin".into(),
            },
            false => {
                let key = state
                    .workspaces()
                    .api_key_by_hash(&api_key_hash(token))
                    .await
                    .map_err(ApiError::from)?
                    .ok_or(ApiError::Unauthorized)?;
                touch(state, &key);
                Auth {
                    workspace_id: key.workspace_id,
                    role: key.role,
                    key_id: key.id.to_string(),
                }
            }
        };
        state
            .limiter()
            .check(&auth.key_id)
            .map_err(|retry_after| ApiError::RateLimited { retry_after })?;
        Ok(auth)
    }
}

/// Records when a key was last used, at most once a minute per key, off the request path.
fn touch(state: &AppState, key: &crate::store::ApiKey) {
    let now = crate::util::now_ms();
    if key.last_used_at.is_some_and(|t| now - t < 60_000) {
        return;
    }
    let state = state.clone();
    let id = key.id.clone();
    tokio::spawn(async move {
        if let Err(e) = state.workspaces().touch_api_key(&id, now).await {
            tracing::warn!(error = %e, "recording an API key's last use");
        }
    });
}

/// Constant-time comparison of a presented key with the configured one.
pub fn keys_equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
