//! `parse_link` on any URL. Where a URL parses and `build_link` accepts what was read, the
//! rebuilt URL must parse back to the same channel, bot (normalised), kind, parameter, app,
//! admin rights and text, in every Telegram form.

#![no_main]

use botlink_core::link::check_bot;
use botlink_core::{Channel, LinkSpec, TelegramForm, build_link, parse_link};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|url: &str| {
    let Ok(p) = parse_link(url) else { return };
    assert!(!p.bot.is_empty(), "{url:?} parsed with an empty bot");
    if let Some(param) = &p.param
        && p.channel == Channel::Telegram
    {
        assert!(
            !param.is_empty(),
            "{url:?}: an empty Telegram parameter is no parameter"
        );
    }

    // The web chat base URL is whatever came before `/chat/<bot>`.
    let before_query = url.trim().split(['?', '#']).next().unwrap_or_default();
    let base = before_query
        .trim_end_matches('/')
        .rsplit_once("/chat/")
        .map(|(b, _)| b);
    let admin: Vec<&str> = p.admin.iter().map(String::as_str).collect();
    let forms: &[TelegramForm] = if p.channel == Channel::Telegram {
        &[
            TelegramForm::TMe,
            TelegramForm::TelegramMe,
            TelegramForm::Tg,
        ]
    } else {
        &[TelegramForm::TMe]
    };
    for &form in forms {
        let mut spec = LinkSpec::new(p.channel, &p.bot, p.param.as_deref());
        spec.kind = p.kind;
        spec.app = p.app.as_deref();
        spec.admin = &admin;
        spec.text = p.text.as_deref();
        spec.form = form;
        spec.base_url = base;
        let Ok(link) = build_link(&spec) else { return };
        let q = parse_link(&link.url).unwrap_or_else(|e| {
            panic!(
                "{url:?} rebuilt as {:?}, which does not parse: {e}",
                link.url
            )
        });
        let ctx = format!("{url:?} -> {:?}", link.url);
        assert_eq!(q.channel, p.channel, "{ctx}");
        assert_eq!(q.bot, check_bot(p.channel, &p.bot).unwrap(), "{ctx}");
        assert_eq!(q.kind, p.kind, "{ctx}");
        assert_eq!(q.param, p.param, "{ctx}");
        assert_eq!(q.app, p.app, "{ctx}");
        assert_eq!(q.admin, p.admin, "{ctx}");
        assert_eq!(q.text, p.text, "{ctx}");
        // Building from the re-parsed link gives the same URL: a fixed point.
        let q_admin: Vec<&str> = q.admin.iter().map(String::as_str).collect();
        let mut q_spec = LinkSpec::new(q.channel, &q.bot, q.param.as_deref());
        q_spec.kind = q.kind;
        q_spec.app = q.app.as_deref();
        q_spec.admin = &q_admin;
        q_spec.text = q.text.as_deref();
        q_spec.form = form;
        q_spec.base_url = base;
        assert_eq!(build_link(&q_spec).unwrap().url, link.url, "{ctx}");
    }
});
