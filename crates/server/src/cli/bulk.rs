//! `botlink links`: one personalized link per row of a CSV file.
//!
//! Streams with constant memory: one reused `ByteRecord`, buffered reader and writer, and no
//! per-row allocation on our side beyond what building a link takes. A row that cannot become a
//! link gets its error in the `error` column and the run goes on; only bad options or headers
//! stop it.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use botlink_core::link::LinkError;
use botlink_core::payload::{self, Fields, JsonPayload};
use botlink_core::{Channel, Scheme, build_link};
use clap::Args;
use csv::ByteRecord;
use indicatif::{ProgressBar, ProgressStyle};

use super::link::{Target, TargetArgs};
use super::{CliError, PayloadOptions, explain_link_error, key_value, payload_scheme, thousands};

/// How often (in rows) the progress bar is updated: cheap enough to be invisible.
const PROGRESS_EVERY: u64 = 4096;
const BUFFER: usize = 1 << 16;

#[derive(Debug, Args)]
pub struct LinksArgs {
    /// The input CSV, with a header row; `-` reads stdin.
    #[arg(long, value_name = "IN.csv")]
    pub csv: PathBuf,
    /// Where to write the input columns plus url, param and error; `-` writes stdout.
    #[arg(long, value_name = "OUT.csv")]
    pub out: PathBuf,
    /// The messenger: telegram, viber, messenger, instagram, whatsapp, line, max or webchat.
    #[arg(long, value_name = "C")]
    pub channel: Channel,
    /// The bot in that channel.
    #[arg(long, value_name = "B")]
    pub bot: String,

    /// Column carried as is (raw scheme).
    #[arg(long, value_name = "COLUMN", help_heading = "Columns")]
    pub param_col: Option<String>,
    /// Column carried as Base64URL text (text scheme).
    #[arg(long, value_name = "COLUMN", help_heading = "Columns")]
    pub encode_col: Option<String>,
    /// Column with the phone (json scheme; an empty cell leaves it out).
    #[arg(long, value_name = "COLUMN", help_heading = "Columns")]
    pub phone_col: Option<String>,
    /// Column with the e-mail (json scheme).
    #[arg(long, value_name = "COLUMN", help_heading = "Columns")]
    pub email_col: Option<String>,
    /// Column with the CRM's customer id (json scheme).
    #[arg(long, value_name = "COLUMN", help_heading = "Columns")]
    pub external_id_col: Option<String>,
    /// A json variable KEY taken from COLUMN; repeat for more.
    #[arg(long = "var-col", value_name = "KEY=COLUMN", help_heading = "Columns")]
    pub var_cols: Vec<String>,
    /// Entry point id: alone, every row gets n__<ID>; with --value-col, the fields scheme.
    #[arg(long, value_name = "ID", help_heading = "Columns")]
    pub entry: Option<String>,
    /// Column with the value for the entry point's default field (fields scheme).
    #[arg(long, value_name = "COLUMN", help_heading = "Columns")]
    pub value_col: Option<String>,
    /// A field ID taken from COLUMN (fields scheme; an empty cell leaves it out); repeat.
    #[arg(long = "field-col", value_name = "ID=COLUMN", help_heading = "Columns")]
    pub field_cols: Vec<String>,

    #[command(flatten)]
    pub target: TargetArgs,
}

/// A CSV column, found in the header.
#[derive(Debug)]
struct Column {
    name: String,
    index: usize,
}

/// Which columns make the parameter.
#[derive(Debug)]
enum Mapping {
    Raw(Column),
    Text(Column),
    Json {
        phone: Option<Column>,
        email: Option<Column>,
        external_id: Option<Column>,
        vars: Vec<(String, Column)>,
    },
    /// The same `n__<id>` for every row.
    Entry(String),
    /// The entry id is in [`Maker`]'s reused `Fields`.
    Fields {
        value: Column,
        fields: Vec<(String, Column)>,
    },
}

impl Mapping {
    fn scheme(&self) -> Scheme {
        match self {
            Mapping::Raw(_) => Scheme::Raw,
            Mapping::Text(_) => Scheme::Text,
            Mapping::Json { .. } => Scheme::Json,
            Mapping::Entry(_) => Scheme::Entry,
            Mapping::Fields { .. } => Scheme::Fields,
        }
    }
}

/// Resolves column names against the header.
struct Header<'h> {
    fields: &'h ByteRecord,
    source: &'h str,
}

/// A header cell without the UTF-8 byte order mark that spreadsheets put before the first one.
fn header_name(field: &[u8]) -> &[u8] {
    field.strip_prefix(b"\xef\xbb\xbf").unwrap_or(field)
}

impl Header<'_> {
    fn column(&self, option: &str, name: &str) -> Result<Column, CliError> {
        match self
            .fields
            .iter()
            .position(|f| header_name(f) == name.as_bytes())
        {
            Some(index) => Ok(Column {
                name: name.to_string(),
                index,
            }),
            None => {
                let names: Vec<_> = self
                    .fields
                    .iter()
                    .map(|f| String::from_utf8_lossy(header_name(f)).into_owned())
                    .collect();
                Err(CliError::input(format!(
                    "unknown column {name:?} for {option}: {} has columns {}",
                    self.source,
                    names.join(", ")
                )))
            }
        }
    }

    fn opt(&self, option: &str, name: &Option<String>) -> Result<Option<Column>, CliError> {
        name.as_deref().map(|n| self.column(option, n)).transpose()
    }

    fn pairs(&self, option: &str, specs: &[String]) -> Result<Vec<(String, Column)>, CliError> {
        specs
            .iter()
            .map(|s| {
                let (key, col) = key_value(option, s)?;
                Ok((key.to_string(), self.column(option, col)?))
            })
            .collect()
    }
}

impl LinksArgs {
    /// Checks which scheme the column options pick, before any file is opened.
    fn scheme(&self) -> Result<Scheme, CliError> {
        let scheme = payload_scheme(&PayloadOptions {
            raw: (self.param_col.is_some(), "--param-col"),
            text: (self.encode_col.is_some(), "--encode-col"),
            json: &[
                (self.phone_col.is_some(), "--phone-col"),
                (self.email_col.is_some(), "--email-col"),
                (self.external_id_col.is_some(), "--external-id-col"),
                (!self.var_cols.is_empty(), "--var-col"),
            ],
            entry: self.entry.is_some(),
            fields: &[
                (self.value_col.is_some(), "--value-col"),
                (!self.field_cols.is_empty(), "--field-col"),
            ],
        })?
        .ok_or_else(|| {
            CliError::input(
                "say which columns make the parameter: --param-col, --encode-col, --phone-col/--email-col/--external-id-col/--var-col, or --entry with --value-col",
            )
        })?;
        if scheme == Scheme::Fields && self.value_col.is_none() {
            return Err(CliError::input(
                "--field-col needs --value-col: a fields payload starts with <entry>--<value>",
            ));
        }
        Ok(scheme)
    }

    fn mapping(&self, scheme: Scheme, header: &Header<'_>) -> Result<Mapping, CliError> {
        let entry = || self.entry.clone().unwrap_or_default();
        Ok(match scheme {
            Scheme::Raw => {
                Mapping::Raw(header.opt("--param-col", &self.param_col)?.expect("given"))
            }
            Scheme::Text => Mapping::Text(
                header
                    .opt("--encode-col", &self.encode_col)?
                    .expect("given"),
            ),
            Scheme::Json => Mapping::Json {
                phone: header.opt("--phone-col", &self.phone_col)?,
                email: header.opt("--email-col", &self.email_col)?,
                external_id: header.opt("--external-id-col", &self.external_id_col)?,
                vars: header.pairs("--var-col", &self.var_cols)?,
            },
            Scheme::Entry => Mapping::Entry(payload::encode_entry(&entry())?),
            _ => {
                // Fields: check the entry id once, so that rows only fail on their own data.
                payload::encode_fields(&Fields {
                    entry: entry(),
                    value: "x".into(),
                    fields: vec![],
                })?;
                Mapping::Fields {
                    value: header.opt("--value-col", &self.value_col)?.expect("given"),
                    fields: header.pairs("--field-col", &self.field_cols)?,
                }
            }
        })
    }
}

/// Makes the link for one row, reusing its buffers from row to row.
struct Maker {
    target: Target,
    mapping: Mapping,
    param: String,
    json: JsonPayload,
    fields: Fields,
}

/// One cell as text; a short row or bytes that are not UTF-8 are the row's error.
fn cell<'r>(rec: &'r ByteRecord, col: &Column) -> Result<&'r str, String> {
    let bytes = rec.get(col.index).ok_or_else(|| {
        format!(
            "the row has {} fields, so no column {:?} (field {})",
            rec.len(),
            col.name,
            col.index + 1
        )
    })?;
    std::str::from_utf8(bytes).map_err(|_| format!("column {:?} is not UTF-8 text", col.name))
}

/// Puts a non-empty cell into `slot`, reusing its string; an empty cell clears it.
fn set(slot: &mut Option<String>, rec: &ByteRecord, col: &Option<Column>) -> Result<(), String> {
    match col {
        Some(col) => {
            let value = cell(rec, col)?;
            if value.is_empty() {
                *slot = None;
            } else {
                let s = slot.get_or_insert_with(String::new);
                s.clear();
                s.push_str(value);
            }
        }
        None => *slot = None,
    }
    Ok(())
}

impl Maker {
    /// Fills `self.param` with the row's parameter (unsigned).
    fn fill_param(&mut self, rec: &ByteRecord) -> Result<(), String> {
        self.param.clear();
        match &self.mapping {
            Mapping::Raw(col) => self.param.push_str(cell(rec, col)?),
            Mapping::Text(col) => {
                let text = cell(rec, col)?;
                self.param = payload::encode_text(text).map_err(|e| e.to_string())?;
            }
            Mapping::Json {
                phone,
                email,
                external_id,
                vars,
            } => {
                set(&mut self.json.phone, rec, phone)?;
                set(&mut self.json.email, rec, email)?;
                set(&mut self.json.external_id, rec, external_id)?;
                self.json.variables.clear();
                for (key, col) in vars {
                    let value = cell(rec, col)?;
                    if !value.is_empty() {
                        self.json.variables.push((key.clone(), value.to_string()));
                    }
                }
                self.param = payload::encode_json(&self.json).map_err(|e| e.to_string())?;
            }
            Mapping::Entry(param) => self.param.push_str(param),
            Mapping::Fields { value, fields, .. } => {
                self.fields.value.clear();
                self.fields.value.push_str(cell(rec, value)?);
                self.fields.fields.clear();
                for (id, col) in fields {
                    let v = cell(rec, col)?;
                    if !v.is_empty() {
                        self.fields.fields.push((id.clone(), v.to_string()));
                    }
                }
                self.param = payload::encode_fields(&self.fields).map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }

    /// The row's link as (url, param).
    fn make(&mut self, rec: &ByteRecord) -> Result<(String, String), String> {
        self.fill_param(rec)?;
        let signed = match &self.target.sign_key {
            Some(key) => Some(payload::sign(key, &self.param).map_err(|e| e.to_string())?),
            None => None,
        };
        let param = signed.as_deref().unwrap_or(&self.param);
        match build_link(&self.target.spec(Some(param))) {
            Ok(link) => Ok((link.url, link.param.unwrap_or_default())),
            Err(e) => Err(self.explain(e, signed.is_some())),
        }
    }

    fn explain(&self, e: LinkError, signed: bool) -> String {
        let scheme = self.mapping.scheme();
        let unencoded = match scheme {
            Scheme::Json => payload::json_text(&self.json).len(),
            // The text scheme: the cell is gone, but Base64URL is 4 characters per 3 bytes.
            Scheme::Text => self.param.len() * 3 / 4,
            _ => self.param.len(),
        };
        explain_link_error(e, Some(scheme), unencoded, signed).to_string()
    }
}

/// Where the input stands with respect to quotes, as the csv crate reads them with its
/// defaults (RFC 4180: `,` between fields, a `"` inside a quoted field doubled, CR, LF or CRLF
/// ending a row; a `"` inside an unquoted field is a character like another).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    FieldStart,
    Unquoted,
    Quoted,
    /// A `"` inside a quoted field: the field's end, or the first half of a doubled `"`.
    QuoteInQuoted,
}

/// The input CSV, watched for a quoted field that the end of the input leaves open: the csv
/// crate reads one as if it were closed there, which would make the rest of the file, rows and
/// all, one cell. Reading fails instead, with [`UnclosedQuote`].
struct QuoteWatch<R> {
    inner: R,
    state: Quoting,
    /// The line being read (1 for the first, as the csv crate counts: by LF).
    line: u64,
    /// The line where the quoted field being read opened.
    opened_on: u64,
}

impl<R> QuoteWatch<R> {
    fn new(inner: R) -> Self {
        QuoteWatch {
            inner,
            state: Quoting::FieldStart,
            line: 1,
            opened_on: 1,
        }
    }
}

/// A quoted field that the input's end left open.
#[derive(Debug, thiserror::Error)]
#[error(
    "line {line}: a quoted field opens here and is never closed (its closing \" is missing), so the rest of the file would be read as one cell: close it (a \" inside a quoted field is written \"\")"
)]
struct UnclosedQuote {
    line: u64,
}

impl<R: Read> Read for QuoteWatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() && self.state == Quoting::Quoted {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                UnclosedQuote {
                    line: self.opened_on,
                },
            ));
        }
        for &b in &buf[..n] {
            self.state = match (self.state, b) {
                (Quoting::FieldStart, b'"') => {
                    self.opened_on = self.line;
                    Quoting::Quoted
                }
                (Quoting::Quoted, b'"') => Quoting::QuoteInQuoted,
                (Quoting::QuoteInQuoted, b'"') => Quoting::Quoted,
                (Quoting::Quoted, _) => Quoting::Quoted,
                (_, b',' | b'\r' | b'\n') => Quoting::FieldStart,
                _ => Quoting::Unquoted,
            };
            if b == b'\n' {
                self.line += 1;
            }
        }
        Ok(n)
    }
}

/// What a run did, for the summary line.
struct Counts {
    rows: u64,
    errors: u64,
}

fn summary(c: &Counts, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 {
        (c.rows as f64 / secs) as u64
    } else {
        c.rows
    };
    let mut line = format!(
        "{}: {}, {}, in {secs:.1} s ({} rows/s)",
        count(c.rows, "row"),
        count(c.rows - c.errors, "link"),
        count(c.errors, "error"),
        thousands(rate)
    );
    if c.rows == 0 {
        line.push_str("; the CSV has a header and no rows");
    } else if c.errors == c.rows {
        line.push_str("; every row failed: see the error column");
    } else if c.errors > 0 {
        line.push_str("; see the error column for the failed rows");
    }
    line
}

/// `1 error`, `2 errors`.
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn is_stdio(p: &Path) -> bool {
    p.as_os_str() == "-"
}

fn progress_bar(input_len: Option<u64>) -> ProgressBar {
    if !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    match input_len {
        Some(len) => ProgressBar::new(len).with_style(
            ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    }
}

pub fn run(args: LinksArgs) -> Result<(), CliError> {
    let scheme = args.scheme()?;
    let target = Target::new(args.channel, &args.bot, &args.target)?;
    // Options that would fail every row (bad bot, web chat without a base URL, a parameter
    // on a startchannel link, an empty key) fail once, here.
    build_link(&target.spec(Some("x")))?;
    if let Some(key) = &target.sign_key {
        payload::sign(key, "x")?;
    }
    if !is_stdio(&args.csv)
        && !is_stdio(&args.out)
        && args.out.exists()
        && args.csv.canonicalize().ok() == args.out.canonicalize().ok()
    {
        return Err(CliError::input(format!(
            "--out {} is the input file: write the links to another file",
            args.out.display()
        )));
    }

    let in_name = args.csv.display().to_string();
    let (input, input_len): (Box<dyn Read>, Option<u64>) = if is_stdio(&args.csv) {
        (Box::new(QuoteWatch::new(io::stdin().lock())), None)
    } else {
        let file =
            File::open(&args.csv).map_err(|e| CliError::io(format!("opening {in_name}"), e))?;
        let len = file.metadata().ok().map(|m| m.len());
        (Box::new(QuoteWatch::new(file)), len)
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .buffer_capacity(BUFFER)
        .from_reader(input);
    let read_error = |e: csv::Error| match e.kind() {
        csv::ErrorKind::Io(io) if io.get_ref().is_some_and(|e| e.is::<UnclosedQuote>()) => {
            CliError::input(format!("{in_name}: {io}"))
        }
        csv::ErrorKind::Io(io) => CliError::io(
            format!("reading {in_name}"),
            io::Error::new(io.kind(), io.to_string()),
        ),
        _ => CliError::input(format!("{in_name}: {e}")),
    };
    let header = reader.byte_headers().map_err(read_error)?.clone();
    if header.is_empty() {
        return Err(CliError::input(format!(
            "{in_name} is empty: expected a header row naming the columns"
        )));
    }
    let mapping = args.mapping(
        scheme,
        &Header {
            fields: &header,
            source: &in_name,
        },
    )?;
    let entry = args.entry.clone().unwrap_or_default();
    let mut maker = Maker {
        target,
        mapping,
        param: String::with_capacity(256),
        json: JsonPayload::default(),
        fields: Fields {
            entry,
            ..Fields::default()
        },
    };

    let out_name = args.out.display().to_string();
    let output: Box<dyn Write> = if is_stdio(&args.out) {
        Box::new(io::stdout().lock())
    } else {
        Box::new(
            File::create(&args.out).map_err(|e| CliError::io(format!("creating {out_name}"), e))?,
        )
    };
    let mut writer = csv::WriterBuilder::new()
        .flexible(true)
        .buffer_capacity(BUFFER)
        .from_writer(BufWriter::with_capacity(BUFFER, output));
    let write_error = |e: csv::Error| {
        let io = match e.kind() {
            csv::ErrorKind::Io(io) => io::Error::new(io.kind(), io.to_string()),
            _ => io::Error::other(e.to_string()),
        };
        CliError::io(format!("writing {out_name}"), io)
    };
    let extra: [&[u8]; 3] = [b"url", b"param", b"error"];
    writer
        .write_record(header.iter().chain(extra))
        .map_err(write_error)?;

    let started = Instant::now();
    let bar = progress_bar(input_len);
    let mut counts = Counts { rows: 0, errors: 0 };
    let mut record = ByteRecord::new();
    let mut error = String::new();
    let write_all = || -> Result<(), CliError> {
        while reader.read_byte_record(&mut record).map_err(read_error)? {
            counts.rows += 1;
            error.clear();
            let made = maker.make(&record);
            let (url, param) = match &made {
                Ok((url, param)) => (url.as_bytes(), param.as_bytes()),
                Err(e) => {
                    counts.errors += 1;
                    // Writing into a String cannot fail.
                    let _ = write!(error, "{e}");
                    (&b""[..], &b""[..])
                }
            };
            writer
                .write_record(record.iter().chain([url, param, error.as_bytes()]))
                .map_err(write_error)?;
            if counts.rows.is_multiple_of(PROGRESS_EVERY) && !bar.is_hidden() {
                bar.set_position(reader.position().byte());
                bar.set_message(format!("{} rows", thousands(counts.rows)));
            }
        }
        writer
            .into_inner()
            .map_err(|e| CliError::io(format!("writing {out_name}"), e.into_error()))?
            .flush()
            .map_err(|e| CliError::io(format!("writing {out_name}"), e))
    };
    if let Err(e) = write_all() {
        bar.finish_and_clear();
        // No half-written file that looks like a result.
        if !is_stdio(&args.out) {
            let _ = std::fs::remove_file(&args.out);
        }
        return Err(e);
    }
    bar.finish_and_clear();
    eprintln!("{}", summary(&counts, started.elapsed()));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reads_like_the_brief() {
        let c = Counts {
            rows: 1_000_000,
            errors: 2,
        };
        assert_eq!(
            summary(&c, Duration::from_millis(3100)),
            "1000000 rows: 999998 links, 2 errors, in 3.1 s (322,580 rows/s); see the error column for the failed rows"
        );
        let all = Counts { rows: 3, errors: 3 };
        assert!(
            summary(&all, Duration::from_secs(1))
                .ends_with("every row failed: see the error column")
        );
    }
}
