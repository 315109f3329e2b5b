//! `botlink qr`: draw a link's QR code with [`crate::redirect::qr`].

use std::fs;
use std::path::PathBuf;

use clap::Args;

use super::{CliError, print_line};
use crate::redirect::qr::{DEFAULT_MODULE_PX, qr_png, qr_svg, qr_terminal};

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("file").args(["svg", "png"]))]
pub struct QrArgs {
    /// The link (or any text) to encode.
    pub url: String,
    /// Write an SVG image to this file.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Write a PNG image to this file.
    #[arg(long, value_name = "FILE")]
    pub png: Option<PathBuf>,
    /// Pixels per module in the SVG or PNG (the image is (modules + 8) × N pixels wide).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MODULE_PX, requires = "file")]
    pub size: u32,
}

pub fn run(args: QrArgs) -> Result<(), CliError> {
    let input = CliError::input;
    // A code that scans to nothing (an unset shell variable, say) is never what was meant.
    if args.url.trim().is_empty() {
        return Err(CliError::input(
            "the link to encode is empty: give the link or text, e.g. botlink qr https://t.me/mybot",
        ));
    }
    let (path, bytes) = match (&args.svg, &args.png) {
        (Some(path), _) => (
            path,
            qr_svg(&args.url, args.size).map_err(input)?.into_bytes(),
        ),
        (_, Some(path)) => (path, qr_png(&args.url, args.size).map_err(input)?),
        (None, None) => return print_line(&qr_terminal(&args.url).map_err(input)?),
    };
    fs::write(path, bytes).map_err(|e| CliError::io(format!("writing {}", path.display()), e))
}
