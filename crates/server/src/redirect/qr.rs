//! QR codes of links: an SVG or PNG file for `botlink qr` and for `GET /l/{code}/qr.svg|png`,
//! and Unicode blocks for the terminal.

use qrcode::QrCode;
use qrcode::render::{svg, unicode};
use qrcode::types::{Color, QrError};

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
