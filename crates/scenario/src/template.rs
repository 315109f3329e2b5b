//! Templates: MiniJinja over a run's variables, rendered one string at a time, so a value
//! never pastes text into JSON (quotes, newlines and braces in a variable stay inside their
//! string).
//!
//! The environment has no loader and is built without MiniJinja's `multi_template` feature,
//! so a template cannot include, extend or import another; autoescape is off (these are chat
//! texts and JSON strings, not HTML); an unset variable, and anything looked up on it,
//! renders as the empty string; each render has [`limits::FUEL`] and its output
//! [`limits::RENDERED`] bytes.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde_json::Value;

use crate::document::Vars;
use crate::limits;

static ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env.set_fuel(Some(limits::FUEL));
    // Jinja drops one trailing newline by default; a text must come out as it was written.
    if let Ok(syntax) = SyntaxConfig::builder().keep_trailing_newline(true).build() {
        env.set_syntax(syntax);
    }
    env
});

/// Whether a string holds template syntax at all. One that does not is its own rendering;
/// a URL without markers can be checked as a URL when the scenario is validated.
pub(crate) fn has_markers(source: &str) -> bool {
    source.contains("{{") || source.contains("{%") || source.contains("{#")
}

/// Compiles a template, for validation: a syntax error is returned as MiniJinja words it.
pub(crate) fn check(source: &str) -> Result<(), String> {
    if !has_markers(source) {
        return Ok(());
    }
    ENV.template_from_str(source)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The variables as templates see them: each by its name, and all of them as `vars`, so
/// `{{ vars["order-id"] }}` reaches a name that is not an identifier. `vars` is always the
/// map, even when a variable is named `vars`.
#[derive(Clone)]
pub(crate) struct Context(minijinja::Value);

impl Context {
    pub(crate) fn new(vars: &Vars) -> Context {
        let mut names: BTreeMap<String, minijinja::Value> = vars
            .iter()
            .map(|(name, value)| (name.clone(), minijinja::Value::from(value.as_str())))
            .collect();
        names.insert("vars".to_owned(), minijinja::Value::from(vars.clone()));
        Context(minijinja::Value::from(names))
    }
}

/// Renders one template. An error (rare after validation: a division by zero, fuel run out,
/// an output over the limit) is returned in words, never as a panic.
pub(crate) fn render(source: &str, context: &Context) -> Result<String, String> {
    if !has_markers(source) {
        return Ok(source.to_owned());
    }
    let out = ENV
        .render_str(source, context.0.clone())
        .map_err(|e| e.to_string())?;
    if out.len() > limits::RENDERED {
        return Err(format!(
            "the template rendered to {} bytes; the limit is {}",
            out.len(),
            limits::RENDERED
        ));
    }
    Ok(out)
}

/// Renders every string inside a JSON value (not the keys). On an error, the path of the
/// string that failed (`a.b[2]`, relative to `value`) comes with the reason.
pub(crate) fn render_json(value: &Value, context: &Context) -> Result<Value, (String, String)> {
    Ok(match value {
        Value::String(s) => Value::String(render(s, context).map_err(|e| (String::new(), e))?),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    render_json(item, context).map_err(|(path, e)| (format!("[{i}]{path}"), e))
                })
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, item)| {
                    let item = render_json(item, context)
                        .map_err(|(path, e)| (format!(".{key}{path}"), e))?;
                    Ok((key.clone(), item))
                })
                .collect::<Result<_, (String, String)>>()?,
        ),
        other => other.clone(),
    })
}

/// Calls `visit` with every string inside a JSON value and its path (`.a.b[2]`, relative to
/// `value`), for validation.
pub(crate) fn each_string(value: &Value, path: &mut String, visit: &mut impl FnMut(&str, &str)) {
    match value {
        Value::String(s) => visit(s, path),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                each_string(item, path, visit);
                path.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map {
                let len = path.len();
                path.push('.');
                path.push_str(key);
                each_string(item, path, visit);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn names_and_the_vars_map_reach_every_variable() {
        let context = Context::new(&vars(&[
            ("user_name", "Ann"),
            ("order-id", "A-1"),
            ("7", "x"),
        ]));
        assert_eq!(
            render(
                r#"{{ user_name }} {{ vars["order-id"] }} {{ vars["7"] }} {{ vars.user_name }}"#,
                &context
            )
            .unwrap(),
            "Ann A-1 x Ann"
        );
    }

    #[test]
    fn unset_variables_render_empty_even_when_looked_into() {
        let context = Context::new(&vars(&[]));
        assert_eq!(
            render("[{{ nobody }}|{{ nobody.name }}|{{ vars['x'] }}]", &context).unwrap(),
            "[||]"
        );
    }

    #[test]
    fn nothing_is_escaped_and_a_trailing_newline_stays() {
        let context = Context::new(&vars(&[("q", "<b>\"it's\" & {{x}}</b>")]));
        assert_eq!(
            render("{{ q }}\n", &context).unwrap(),
            "<b>\"it's\" & {{x}}</b>\n"
        );
    }

    #[test]
    fn tojson_is_available() {
        let context = Context::new(&vars(&[("q", "a\"b")]));
        assert_eq!(render("{{ q | tojson }}", &context).unwrap(), r#""a\"b""#);
    }

    #[test]
    fn includes_and_runaway_templates_fail_without_panicking() {
        let context = Context::new(&vars(&[]));
        assert!(render("{% include 'x' %}", &context).is_err());
        let err = render(
            "{% for i in range(5000) %}{% for j in range(100) %}{% endfor %}{% endfor %}",
            &context,
        )
        .unwrap_err();
        assert!(err.contains("fuel"), "{err}");
        let err = render("{{ 'x' * 70000 }}", &context).unwrap_err();
        assert!(err.contains("70000 bytes; the limit is 65536"), "{err}");
        assert!(render("{{ 1 // 0 }}", &context).is_err());
    }

    #[test]
    fn check_reports_syntax_errors() {
        assert!(check("Hello {{ name }}").is_ok());
        assert!(check("plain } text {").is_ok());
        let err = check("Hello {{ name }").unwrap_err();
        assert!(err.contains("syntax error"), "{err}");
    }
}
