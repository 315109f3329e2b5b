//! `botlink qr`, and the QR rendering the HTTP server reuses for `GET /l/{code}/qr.svg|png`.

use std::fs;
use std::path::PathBuf;

use clap::Args;
use qrcode::QrCode;
use qrcode::render::{svg, unicode};
use qrcode::types::{Color, QrError};

use super::{CliError, print_line};

/// Modules of light margin around the code, as ISO/IEC 18004 asks for a QR code.
pub const QUIET_ZONE: u32 = 4;
/// Pixels per module when the caller gives no size: big enough to print and scan.
pub const DEFAULT_MODULE_PX: u32 = 8;
/// The largest module size accepted; a version 40 code at this size is about 11,000 pixels wide.
pub const MAX_MODULE_PX: u32 = 64;

/// Why a QR code could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum QrRenderError {
    #[error("the data does not fit in a QR code ({len} bytes): {source}; use a shorter link")]
    Encode {
        len: usize,
        #[source]
        source: QrError,
    },
    #[error("the module size must be 1 to {MAX_MODULE_PX} pixels, got {0}")]
    ModuleSize(u32),
    #[error("encoding the PNG failed: {0}")]
    Png(#[from] png::EncodingError),
}

fn code(data: &str) -> Result<QrCode, QrRenderError> {
    QrCode::new(data.as_bytes()).map_err(|source| QrRenderError::Encode {
        len: data.len(),
        source,
    })
}

fn check_module(module_px: u32) -> Result<(), QrRenderError> {
    if (1..=MAX_MODULE_PX).contains(&module_px) {
        Ok(())
    } else {
        Err(QrRenderError::ModuleSize(module_px))
    }
}

/// An SVG image of the QR code for `data`, `module_px` user units per module, with a quiet zone.
pub fn qr_svg(data: &str, module_px: u32) -> Result<String, QrRenderError> {
    check_module(module_px)?;
    Ok(code(data)?
        .render::<svg::Color<'_>>()
        .module_dimensions(module_px, module_px)
        .quiet_zone(true)
        .build())
}

/// A grayscale PNG of the QR code for `data`: `module_px` pixels per module and a quiet zone
/// of [`QUIET_ZONE`] modules, black on white.
pub fn qr_png(data: &str, module_px: u32) -> Result<Vec<u8>, QrRenderError> {
    check_module(module_px)?;
    let code = code(data)?;
    let modules = code.width() as u32;
    let colors = code.to_colors();
    let side_modules = modules + 2 * QUIET_ZONE;
    let side = side_modules * module_px;

    // One row of pixels per module row, repeated module_px times.
    let mut pixels = Vec::with_capacity((side * side) as usize);
    let mut row = vec![0u8; side as usize];
    for my in 0..side_modules {
        for mx in 0..side_modules {
            let dark = mx >= QUIET_ZONE
                && my >= QUIET_ZONE
                && mx < QUIET_ZONE + modules
                && my < QUIET_ZONE + modules
                && colors[((my - QUIET_ZONE) * modules + (mx - QUIET_ZONE)) as usize]
                    == Color::Dark;
            let start = (mx * module_px) as usize;
            row[start..start + module_px as usize].fill(if dark { 0 } else { 255 });
        }
        for _ in 0..module_px {
            pixels.extend_from_slice(&row);
        }
    }

    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side, side);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header()?;
    writer.write_image_data(&pixels)?;
    writer.finish()?;
    Ok(out)
}

/// The QR code drawn with Unicode half blocks, two module rows per line, with a quiet zone.
/// Light modules are drawn as blocks so that the code reads on a dark terminal.
pub fn qr_terminal(data: &str) -> Result<String, QrRenderError> {
    Ok(code(data)?
        .render::<unicode::Dense1x2>()
        .dark_color(unicode::Dense1x2::Light)
        .light_color(unicode::Dense1x2::Dark)
        .quiet_zone(true)
        .build())
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_has_quiet_zone_and_dark_finder() {
        let png = qr_png("https://t.me/mybot?start=x", 2).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        // Version 2 (25 modules) for this data: (25 + 8) * 2 pixels.
        assert_eq!((info.width, info.height), (66, 66));
        let at = |x: u32, y: u32| buf[(y * info.width + x) as usize];
        assert_eq!(at(0, 0), 255, "quiet zone is light");
        assert_eq!(at(7, 7), 255, "quiet zone spans 4 modules");
        assert_eq!(at(8, 8), 0, "the finder pattern's corner is dark");
    }

    #[test]
    fn sizes_out_of_range_are_refused() {
        assert!(matches!(qr_png("x", 0), Err(QrRenderError::ModuleSize(0))));
        assert!(matches!(
            qr_svg("x", 65),
            Err(QrRenderError::ModuleSize(65))
        ));
        let too_much = "x".repeat(8000);
        let err = qr_svg(&too_much, 8).unwrap_err().to_string();
        assert!(err.contains("8000 bytes"), "{err}");
    }
}
