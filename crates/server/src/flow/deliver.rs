//! Deliveries: `send_me` and `send_request` made to the CRM, signed in the Standard Webhooks
//! form with the bot's signing secret (`webhook-id` is the delivery's id, the same on every
//! attempt), a JSON body for POST, PUT and PATCH, a query string for GET and DELETE.
//!
//! Only a 2xx answer is success. The first attempt's outcome takes the scenario run on along
//! `ok` or `not_ok` (in the same transaction that records the attempt); a failed delivery is
//! retried on the retry schedule, waiting at least as long as a `Retry-After` asks; a 410
//! stops it.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::Instant;

use botlink_core::signature::standard_webhooks::{self, Secret};
use botlink_scenario::{Outcome, Runner, Scenario};
use reqwest::Method;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::run::drive;
use super::{Flow, FlowError, now_ms};
use crate::outbound::OutboundRequest;
use crate::store::{Attempt, BotId, Delivery, DeliveryAttempt, FlowCommit, StoreError, WorkStatus};

/// Deliveries claimed at once.
const BATCH: u32 = 32;

/// Claims the deliveries that are due and makes them; returns how many it claimed. The batch's
/// signing secrets and scenario versions are read once, its deliveries made concurrently, and
/// their attempts committed together.
pub async fn deliver_due(flow: &Arc<Flow>) -> Result<usize, StoreError> {
    let claimed = flow
        .flow
        .claim_deliveries(BATCH, flow.lease_ms, now_ms())
        .await?;
    let n = claimed.len();
    let mut secrets: HashMap<BotId, Arc<Result<Secret, String>>> = HashMap::new();
    let mut scenarios: HashMap<(BotId, i64), Arc<Result<Scenario, String>>> = HashMap::new();
    for d in &claimed {
        if !secrets.contains_key(&d.bot_id) {
            let secret = signing_secret(flow, &d.bot_id)
                .await
                .map_err(|e| e.to_string());
            secrets.insert(d.bot_id.clone(), Arc::new(secret));
        }
        if let Some(cont) = &d.continuation
            && let Entry::Vacant(slot) = scenarios.entry((d.bot_id.clone(), cont.scenario_version))
        {
            let scenario = scenario_version(flow, &d.bot_id, cont.scenario_version)
                .await
                .map_err(|e| e.to_string());
            slot.insert(Arc::new(scenario));
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    for d in claimed {
        let flow = flow.clone();
        let secret = secrets[&d.bot_id].clone();
        let scenario = d
            .continuation
            .as_ref()
            .map(|c| scenarios[&(d.bot_id.clone(), c.scenario_version)].clone());
        tasks.spawn(async move {
            let (id, bot) = (d.id.clone(), d.bot_id.clone());
            (
                id,
                bot,
                deliver_one(&flow, d, &secret, scenario.as_deref()).await,
            )
        });
    }
    let mut commits = Vec::with_capacity(n);
    while let Some(done) = tasks.join_next().await {
        // A task that panicked leaves its delivery leased: it is made again after the lease.
        let Ok((id, bot, made)) = done else { continue };
        match made {
            Ok(commit) => commits.push((bot, commit)),
            Err(e) => tracing::error!(delivery = %id, error = %e, "recording a delivery's attempt"),
        }
    }
    let written = flow.flow.commit_all(&commits, now_ms()).await;
    let mut more = false;
    for ((_, commit), w) in commits.iter().zip(written) {
        match w {
            Ok(_) => more |= !commit.messages.is_empty() || !commit.deliveries.is_empty(),
            Err(e) => {
                let id = commit
                    .attempt
                    .as_ref()
                    .map(|a| a.id.to_string())
                    .unwrap_or_default();
                tracing::error!(delivery = %id, error = %e, "recording a delivery's attempt");
            }
        }
    }
    if more {
        flow.wake.outbox.notify_one();
        flow.wake.deliveries.notify_one();
    }
    Ok(n)
}

/// A stored scenario version, read.
async fn scenario_version(flow: &Flow, bot: &BotId, version: i64) -> Result<Scenario, FlowError> {
    let stored = flow.flow.scenario_version(bot, version).await?;
    let bytes = serde_json::to_vec(&stored.document).expect("a JSON value serializes");
    Scenario::from_json(&bytes)
        .map_err(|e| FlowError::Other(format!("scenario version {}: {e}", stored.version)))
}

/// The bot's signing secret, made (and stored) the first time a bot without one needs it.
pub async fn signing_secret(flow: &Flow, bot: &BotId) -> Result<Secret, FlowError> {
    let context = signing_context(bot);
    if let Some(sealed) = flow.flow.signing_secret(bot).await? {
        let plain = flow
            .secret
            .open(&sealed, &context)
            .map_err(|e| FlowError::Other(format!("the signing secret of bot {bot}: {e}")))?;
        let text = String::from_utf8(plain).map_err(|_| {
            FlowError::Other(format!("the signing secret of bot {bot} is not text"))
        })?;
        return Secret::parse(&text)
            .map_err(|e| FlowError::Other(format!("the signing secret of bot {bot}: {e}")));
    }
    Err(FlowError::Other(format!(
        "bot {bot} has no signing secret: rotate one with POST /api/v1/bots/{bot}/signing_secret"
    )))
}

/// What a bot's signing secret is sealed to.
pub fn signing_context(bot: &BotId) -> String {
    format!("{bot}/signing_secret")
}

/// A new signing secret (`whsec_` and 32 random bytes in Base64), and it sealed for storage.
pub fn new_signing_secret(key: &crate::crypto::SecretKey, bot: &BotId) -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    let whsec = Secret::from_bytes(&bytes)
        .expect("32 bytes make a secret")
        .to_whsec();
    let sealed = key.seal(whsec.as_bytes(), &signing_context(bot));
    (whsec, sealed)
}

/// The request a delivery makes: its body (or query) and its signature.
fn request(d: &Delivery, secret: &Secret, now_secs: i64) -> Result<OutboundRequest, String> {
    let method = Method::from_bytes(d.method.as_bytes())
        .map_err(|_| format!("{:?} is not an HTTP method", d.method))?;
    let mut url = url::Url::parse(&d.url).map_err(|e| format!("{:?} is not a URL ({e})", d.url))?;
    let with_body = matches!(method, Method::POST | Method::PUT | Method::PATCH);
    let body = if with_body {
        serde_json::to_vec(&d.data).expect("a JSON value serializes")
    } else {
        if let serde_json::Value::Object(map) = &d.data {
            let mut q = url.query_pairs_mut();
            for (k, v) in map {
                match v {
                    serde_json::Value::String(s) => q.append_pair(k, s),
                    serde_json::Value::Null => q.append_pair(k, ""),
                    other => q.append_pair(k, &other.to_string()),
                };
            }
        }
        Vec::new()
    };
    let mut headers = HeaderMap::new();
    for (name, value) in &d.headers {
        let name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| format!("{name:?} is not a header name"))?;
        let value = HeaderValue::from_str(value)
            .map_err(|_| format!("the {name} header's value is not valid"))?;
        headers.append(name, value);
    }
    let signature = standard_webhooks::sign(secret, d.id.as_str(), now_secs, &body);
    let set = |headers: &mut HeaderMap, name: &'static str, value: String| {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_str(&value).expect("ids, digits and Base64 are header-safe"),
        );
    };
    set(&mut headers, standard_webhooks::ID_HEADER, d.id.to_string());
    set(
        &mut headers,
        standard_webhooks::TIMESTAMP_HEADER,
        now_secs.to_string(),
    );
    set(&mut headers, standard_webhooks::SIGNATURE_HEADER, signature);
    if with_body {
        headers.insert(
            reqwest::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Ok(OutboundRequest {
        method,
        url,
        headers,
        body: with_body.then_some(body),
    })
}

/// One attempt at a delivery, recorded with whatever its first answer makes the run do.
/// Makes one delivery; what its attempt writes: the attempt, and the run it takes on.
async fn deliver_one(
    flow: &Flow,
    d: Delivery,
    secret: &Result<Secret, String>,
    scenario: Option<&Result<Scenario, String>>,
) -> Result<FlowCommit, FlowError> {
    let started_ms = now_ms();
    let started = Instant::now();
    let sent = match secret
        .clone()
        .and_then(|s| request(&d, &s, started_ms / 1000))
    {
        Ok(req) => flow.outbound.send(req).await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    let now = now_ms();
    let duration_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    let (http_status, error, ok, answer, retry_after, gone) = match &sent {
        Ok(r) => {
            let ok = r.status.is_success();
            let answer = serde_json::from_slice::<serde_json::Value>(&r.body).ok();
            (
                Some(r.status.as_u16()),
                (!ok).then(|| format!("answered {}", r.status)),
                ok,
                answer,
                r.retry_after(now),
                r.status == reqwest::StatusCode::GONE,
            )
        }
        Err(e) => (None, Some(e.clone()), false, None, None, false),
    };
    let attempts = d.attempts + 1;
    let (status, next_at) = if ok {
        (WorkStatus::Done, None)
    } else if gone {
        (WorkStatus::Failed, None)
    } else {
        match flow
            .retry_schedule
            .get(usize::try_from(attempts - 1).unwrap_or(usize::MAX))
        {
            Some(wait) => {
                let wait = retry_after.map_or(*wait, |r| r.max(*wait));
                (
                    WorkStatus::Pending,
                    Some(now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2)),
                )
            }
            None => (WorkStatus::Failed, None),
        }
    };
    let mut commit = FlowCommit {
        contact_id: Some(d.contact_id.clone()),
        attempt: Some(DeliveryAttempt {
            id: d.id.clone(),
            attempt: Attempt {
                at: started_ms,
                status: http_status,
                error: error.clone(),
                duration_ms,
            },
            status,
            next_at,
            clear_continuation: true,
        }),
        ..FlowCommit::default()
    };
    if let Some(cont) = &d.continuation {
        let scenario = scenario
            .ok_or_else(|| FlowError::Other("the run's scenario was not read".to_owned()))?
            .as_ref()
            .map_err(|e| FlowError::Other(e.clone()))?;
        let mut runner: Runner = serde_json::from_value(cont.runner.clone())
            .map_err(|e| FlowError::Other(format!("a stored run does not read: {e}")))?;
        if runner.resume(Outcome { ok, answer }).is_ok() {
            let drive = drive(scenario, runner);
            if let Some(why) = &drive.halted {
                tracing::warn!(delivery = %d.id, reason = %why, "a scenario run stopped early");
            }
            let (messages, deliveries) =
                drive.into_rows(cont.scenario_version, cont.run_id.as_ref());
            commit.messages = messages;
            commit.deliveries = deliveries;
        }
    }
    if status == WorkStatus::Failed {
        tracing::warn!(delivery = %d.id, bot = %d.bot_id, error = error.as_deref().unwrap_or(""), attempts, "a delivery was given up");
    }
    Ok(commit)
}
