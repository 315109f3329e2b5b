//! The `botlink` command line.
//!
//! Each command lives in its own module with an `Args` struct and a `run` function; adding a
//! command is a variant in [`Command`] and an arm in [`main`]'s `match`.
//!
//! Exit codes: 0 on success, 2 for anything the caller got wrong (bad options, a parameter that
//! does not fit its channel, a bad signature; clap's usage errors exit 2 too), 1 when reading
//! or writing a file fails. An error is one `error: ...` line on stderr.

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

use botlink_core::link::LinkError;
use botlink_core::payload::SIGNED_OVERHEAD;
use botlink_core::{PayloadError, Scheme};
use clap::{Parser, Subcommand};

pub mod bulk;
pub mod decode;
pub mod link;
pub mod qr;
pub mod server;

/// botlink: deep links into messenger bots.
#[derive(Debug, Parser)]
#[command(name = "botlink", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a deep link into a bot, carrying a parameter.
    Link(link::LinkArgs),
    /// Read a deep link or a parameter back: channel, bot, scheme and the values it carries.
    Decode(decode::DecodeArgs),
    /// Draw a QR code for a link, in the terminal or into an SVG or PNG file.
    Qr(qr::QrArgs),
    /// Make one personalized link per row of a CSV file.
    Links(bulk::LinksArgs),
    /// Run the service: API, short links, redirects and click counting.
    Serve(server::ServeArgs),
    /// Create or update the database schema, then exit.
    Migrate(server::MigrateArgs),
    /// Manage API keys from the command line (for automation).
    ApiKey(server::ApiKeyArgs),
    /// Print the OpenAPI document of the HTTP API.
    Openapi,
}

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Link(args) => link::run(args),
        Command::Decode(args) => decode::run(args),
        Command::Qr(args) => qr::run(args),
        Command::Links(args) => bulk::run(args),
        Command::Serve(args) => server::serve(args),
        Command::Migrate(args) => server::migrate(args),
        Command::ApiKey(args) => server::api_key(args),
        Command::Openapi => server::openapi(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that went away (`botlink ... | head`) is not a failure.
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// Why a command failed; decides the exit code.
#[derive(Debug)]
pub struct CliError {
    failure: Failure,
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    /// The caller's input is wrong: exit 2.
    Input,
    /// Reading or writing failed: exit 1.
    Io { broken_pipe: bool },
}

impl CliError {
    /// Bad input: options, a parameter, a header. Exit code 2.
    pub fn input(message: impl fmt::Display) -> Self {
        CliError {
            failure: Failure::Input,
            message: message.to_string(),
        }
    }

    /// An I/O failure while doing `what` (e.g. "writing out.csv"). Exit code 1.
    pub fn io(what: impl fmt::Display, err: io::Error) -> Self {
        CliError {
            failure: Failure::Io {
                broken_pipe: err.kind() == io::ErrorKind::BrokenPipe,
            },
            message: format!("{what}: {err}"),
        }
    }

    /// A failure that is not the caller's input (a database that cannot be reached). Exit 1.
    pub fn failed(message: impl fmt::Display) -> Self {
        CliError {
            failure: Failure::Io { broken_pipe: false },
            message: message.to_string(),
        }
    }

    pub fn exit_code(&self) -> u8 {
        match self.failure {
            Failure::Input => 2,
            Failure::Io { .. } => 1,
        }
    }

    fn is_broken_pipe(&self) -> bool {
        self.failure == Failure::Io { broken_pipe: true }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<LinkError> for CliError {
    fn from(e: LinkError) -> Self {
        CliError::input(e)
    }
}

impl From<PayloadError> for CliError {
    fn from(e: PayloadError) -> Self {
        CliError::input(e)
    }
}

/// Writes `text` and a newline to stdout.
pub(crate) fn print_line(text: &str) -> Result<(), CliError> {
    let mut out = io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .map_err(|e| CliError::io("writing to stdout", e))
}

/// Splits a `KEY=VALUE` option value; `option` names the flag for the error message.
pub(crate) fn key_value<'a>(option: &str, s: &'a str) -> Result<(&'a str, &'a str), CliError> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k, v)),
        _ => Err(CliError::input(format!(
            "{option} expects KEY=VALUE, got {s:?}"
        ))),
    }
}

/// The payload options of `botlink link` or `botlink links`, each with whether it was given and
/// its name on that command's line (`--phone` or `--phone-col`), for the error messages.
pub(crate) struct PayloadOptions<'a> {
    /// The raw scheme's option.
    pub raw: (bool, &'a str),
    /// The text scheme's option.
    pub text: (bool, &'a str),
    /// The json scheme's options.
    pub json: &'a [(bool, &'a str)],
    /// Whether `--entry` was given: alone it picks the entry scheme.
    pub entry: bool,
    /// The options that, with `--entry`, pick the fields scheme instead.
    pub fields: &'a [(bool, &'a str)],
}

/// Chooses the payload scheme from the options given: `None` when no payload option was
/// given, or an error when options of two schemes are mixed or a fields option comes
/// without `--entry`.
pub(crate) fn payload_scheme<'a>(opts: &PayloadOptions<'a>) -> Result<Option<Scheme>, CliError> {
    let first_given = |group: &[(bool, &'a str)]| {
        group
            .iter()
            .find_map(|&(given, name)| given.then_some(name))
    };
    let given = |(given, name): (bool, &'a str)| given.then_some(name);
    let json_opt = first_given(opts.json);
    let fields_opt = first_given(opts.fields);
    let entry_opt = opts.entry.then_some("--entry").or(fields_opt);
    let entry_scheme = if fields_opt.is_some() {
        Scheme::Fields
    } else {
        Scheme::Entry
    };
    let scheme = pick_scheme(&[
        (Scheme::Raw, given(opts.raw)),
        (Scheme::Text, given(opts.text)),
        (Scheme::Json, json_opt),
        (entry_scheme, entry_opt),
    ])?;
    if let (Some(option), false) = (fields_opt, opts.entry) {
        return Err(CliError::input(format!(
            "{option} needs --entry: a fields payload is <entry>--<value>[--<field>--<value>...]"
        )));
    }
    Ok(scheme)
}

/// The payload options given on the command line, grouped by the scheme they pick.
/// Returns the one scheme they agree on, `None` when no payload option was given, or an error
/// naming two options that pick different schemes.
fn pick_scheme(groups: &[(Scheme, Option<&str>)]) -> Result<Option<Scheme>, CliError> {
    let mut given = groups.iter().filter_map(|(s, opt)| opt.map(|o| (*s, o)));
    let Some((scheme, first)) = given.next() else {
        return Ok(None);
    };
    if let Some((other, second)) = given.next() {
        return Err(CliError::input(format!(
            "{first} ({scheme} scheme) and {second} ({other} scheme) cannot be used together: \
             a link carries one payload scheme, so keep the options of one"
        )));
    }
    Ok(Some(scheme))
}

/// Turns a link error into the command line's message, adding what the parameter was made
/// of when the length is the problem: the size before Base64URL, and what a signature adds.
pub(crate) fn explain_link_error(
    err: LinkError,
    scheme: Option<Scheme>,
    unencoded_bytes: usize,
    signed: bool,
) -> CliError {
    if !matches!(err, LinkError::TooLong { .. }) {
        return err.into();
    }
    let mut context = String::new();
    if let Some(s @ (Scheme::Json | Scheme::Text)) = scheme {
        context.push_str(&format!(
            "the {s} payload is {unencoded_bytes} bytes before Base64URL, which adds a third"
        ));
    }
    if signed {
        if !context.is_empty() {
            context.push_str(", and ");
        }
        context.push_str(&format!("the signature adds {SIGNED_OVERHEAD} characters"));
    }
    if context.is_empty() {
        err.into()
    } else {
        CliError::input(format!("{err} ({context})"))
    }
}

/// Formats `n` with a comma every three digits: `322,580`.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(322580), "322,580");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn pick_scheme_names_both_options() {
        assert_eq!(pick_scheme(&[(Scheme::Raw, None)]).unwrap(), None);
        assert_eq!(
            pick_scheme(&[(Scheme::Raw, None), (Scheme::Json, Some("--email"))]).unwrap(),
            Some(Scheme::Json)
        );
        let err = pick_scheme(&[
            (Scheme::Raw, Some("--param")),
            (Scheme::Json, Some("--email")),
        ])
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let msg = err.to_string();
        assert!(msg.contains("--param") && msg.contains("--email"), "{msg}");
    }

    #[test]
    fn payload_scheme_picks_fields_only_with_entry() {
        let scheme = |entry, value| {
            payload_scheme(&PayloadOptions {
                raw: (false, "--param"),
                text: (false, "--encode"),
                json: &[(false, "--phone")],
                entry,
                fields: &[(value, "--value"), (false, "--field")],
            })
        };
        assert_eq!(scheme(false, false).unwrap(), None);
        assert_eq!(scheme(true, false).unwrap(), Some(Scheme::Entry));
        assert_eq!(scheme(true, true).unwrap(), Some(Scheme::Fields));
        let err = scheme(false, true).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string().starts_with("--value needs --entry"),
            "{err}"
        );
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
