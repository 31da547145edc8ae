//! QR codes of short URLs: text in, an SVG or PNG image out, for the API's
//! `GET /urls/{id}/qr` and the redirect service's public `GET /{code}/qr`.
//!
//! Pure and synchronous: [`QrOptions::parse`] turns the query parameters
//! both routes share (`format`, `size`, `margin`) into options or a problem
//! naming the parameter, [`QrOptions::etag`] names an answer before it is
//! drawn (so a revalidation costs no rendering), and [`render`] draws it.
//! The `qrcode` crate encodes (error correction level M); the images are
//! drawn here from its module matrix, as its own renderers have a fixed
//! quiet zone: an image is exactly `size` pixels wide and high, every
//! module a square of whole pixels (blurred modules do not scan), the
//! pixels left over going to the light border around the code. The SVG is
//! the PNG's pixels as vectors, so both scale the same way.

use std::fmt::Write as _;

use qrcode::{Color, EcLevel, QrCode};
use schemars::JsonSchema;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// `size` when none is given, in pixels.
pub const DEFAULT_SIZE: u32 = 300;
/// Smallest `size`.
pub const MIN_SIZE: u32 = 64;
/// Largest `size` (a 2048×2048 greyscale PNG of a QR code is a few KiB).
pub const MAX_SIZE: u32 = 2048;
/// `margin` (the quiet zone, in modules) when none is given: the standard's.
pub const DEFAULT_MARGIN: u32 = 4;
/// Largest `margin`.
pub const MAX_MARGIN: u32 = 16;

/// `Cache-Control` of a QR code the API serves (it needs a key).
pub const PRIVATE_CACHE_CONTROL: &str = "private, max-age=3600";
/// `Cache-Control` of a QR code the redirect service serves (public).
pub const PUBLIC_CACHE_CONTROL: &str = "public, max-age=3600";

/// The image format of a QR code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum QrFormat {
    /// `image/svg+xml`, `size` as its width and height.
    #[default]
    Svg,
    /// `image/png`, greyscale.
    Png,
}

impl QrFormat {
    /// The `Content-Type` of an image in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            QrFormat::Svg => "image/svg+xml",
            QrFormat::Png => "image/png",
        }
    }

    fn name(self) -> &'static str {
        match self {
            QrFormat::Svg => "svg",
            QrFormat::Png => "png",
        }
    }
}

/// The query parameters of a QR code route, as sent (text, so that each
/// problem can name its parameter the same way in both services).
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub struct QrParams {
    /// `svg` (default) or `png`.
    #[schemars(with = "Option<QrFormat>")]
    pub format: Option<String>,
    /// Width and height of the image in pixels, 64–2048 (default 300).
    #[schemars(with = "Option<u32>", range(min = 64, max = 2048))]
    pub size: Option<String>,
    /// The light border around the code, in modules, 0–16 (default 4, the
    /// standard's quiet zone).
    #[schemars(with = "Option<u32>", range(min = 0, max = 16))]
    pub margin: Option<String>,
}

/// A query parameter that is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct QrParamError {
    /// The parameter's name.
    pub field: &'static str,
    pub problem: String,
}

/// Why a text could not be drawn.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QrError {
    /// The code needs more modules (quiet zone included) than `size` has
    /// pixels; `needed` is the smallest size that fits.
    #[error("too small for this code: at least {needed} pixels are needed")]
    TooSmall { needed: u32 },
    /// The text does not fit in a QR code at all.
    #[error("the text is too long for a QR code")]
    TooLong,
    /// The PNG encoder failed.
    #[error("cannot encode the PNG: {0}")]
    Encode(String),
}

impl QrError {
    /// The same problem as a problem of the `size` parameter, when it is one.
    pub fn as_param_error(&self) -> Option<QrParamError> {
        match self {
            QrError::TooSmall { .. } => Some(QrParamError {
                field: "size",
                problem: self.to_string(),
            }),
            _ => None,
        }
    }
}

/// How to draw a QR code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QrOptions {
    pub format: QrFormat,
    /// Width and height in pixels.
    pub size: u32,
    /// Quiet zone in modules.
    pub margin: u32,
}

impl Default for QrOptions {
    fn default() -> Self {
        Self {
            format: QrFormat::Svg,
            size: DEFAULT_SIZE,
            margin: DEFAULT_MARGIN,
        }
    }
}

impl QrOptions {
    /// The options the parameters ask for (defaults for the missing ones),
    /// or the first unacceptable parameter.
    pub fn parse(params: &QrParams) -> Result<Self, QrParamError> {
        let format = match params.format.as_deref().map(str::trim) {
            None => QrFormat::default(),
            Some(f) if f.eq_ignore_ascii_case("svg") => QrFormat::Svg,
            Some(f) if f.eq_ignore_ascii_case("png") => QrFormat::Png,
            Some(_) => {
                return Err(QrParamError {
                    field: "format",
                    problem: "must be `svg` or `png`".into(),
                });
            }
        };
        let size = number(
            params.size.as_deref(),
            "size",
            MIN_SIZE,
            MAX_SIZE,
            DEFAULT_SIZE,
        )?;
        let margin = number(
            params.margin.as_deref(),
            "margin",
            0,
            MAX_MARGIN,
            DEFAULT_MARGIN,
        )?;
        Ok(Self {
            format,
            size,
            margin,
        })
    }

    /// A strong entity tag (quoted) of the image of `text` with these
    /// options: the same for the same inputs on every replica and release
    /// that draws the same way (the leading version says which).
    pub fn etag(&self, text: &str) -> String {
        let mut hash = Sha256::new();
        hash.update(b"shortline-qr-v1\0");
        hash.update(self.format.name().as_bytes());
        hash.update(b"\0");
        hash.update(self.size.to_be_bytes());
        hash.update(self.margin.to_be_bytes());
        hash.update(text.as_bytes());
        let digest = hash.finalize();
        let mut tag = String::with_capacity(40);
        tag.push_str("\"qr-");
        for byte in &digest[..16] {
            let _ = write!(tag, "{byte:02x}");
        }
        tag.push('"');
        tag
    }
}

fn number(
    given: Option<&str>,
    field: &'static str,
    min: u32,
    max: u32,
    default: u32,
) -> Result<u32, QrParamError> {
    let Some(given) = given else {
        return Ok(default);
    };
    given
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| QrParamError {
            field,
            problem: format!("must be a whole number from {min} to {max}"),
        })
}

/// Whether an `If-None-Match` value names `etag` (RFC 9110: `*`, or a
/// comma-separated list compared weakly, so `W/"x"` matches `"x"`).
pub fn if_none_match(header: &str, etag: &str) -> bool {
    header.split(',').map(str::trim).any(|candidate| {
        candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate) == etag
    })
}

/// A drawn QR code.
#[derive(Debug, Clone)]
pub struct QrImage {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

/// Draws `text` as a QR code (error correction M).
pub fn render(text: &str, options: &QrOptions) -> Result<QrImage, QrError> {
    let code = QrCode::with_error_correction_level(text.as_bytes(), EcLevel::M)
        .map_err(|_| QrError::TooLong)?;
    let modules = Modules {
        width: u32::try_from(code.width()).map_err(|_| QrError::TooLong)?,
        dark: code
            .to_colors()
            .into_iter()
            .map(|c| c == Color::Dark)
            .collect(),
        margin: options.margin,
    };
    let needed = modules.total();
    if needed > options.size {
        return Err(QrError::TooSmall { needed });
    }
    let bytes = match options.format {
        QrFormat::Svg => modules.svg(options.size).into_bytes(),
        QrFormat::Png => modules.png(options.size)?,
    };
    Ok(QrImage {
        bytes,
        content_type: options.format.content_type(),
    })
}

/// A code's module matrix (row by row) and the quiet zone around it.
struct Modules {
    width: u32,
    dark: Vec<bool>,
    margin: u32,
}

impl Modules {
    /// Modules across, quiet zone included.
    fn total(&self) -> u32 {
        self.width + 2 * self.margin
    }

    fn is_dark(&self, x: u32, y: u32) -> bool {
        self.dark[(y * self.width + x) as usize]
    }

    /// Runs of dark modules per row: `(x, y, length)`.
    fn runs(&self) -> impl Iterator<Item = (u32, u32, u32)> + '_ {
        (0..self.width).flat_map(move |y| {
            let mut runs = Vec::new();
            let mut x = 0;
            while x < self.width {
                if self.is_dark(x, y) {
                    let start = x;
                    while x < self.width && self.is_dark(x, y) {
                        x += 1;
                    }
                    runs.push((start, y, x - start));
                } else {
                    x += 1;
                }
            }
            runs
        })
    }

    /// The side of a module in pixels and where the code's first module
    /// starts (from the top and from the left) in an image `size` pixels
    /// wide: whole pixels per module, the code centred.
    fn layout(&self, size: u32) -> (u32, u32) {
        let scale = size / self.total();
        (
            scale,
            (size - scale * self.total()) / 2 + self.margin * scale,
        )
    }

    /// An SVG `size` pixels wide and high (its `viewBox` too), the same
    /// pixels as the PNG: a light square and one dark path of the rows'
    /// runs of modules.
    fn svg(&self, size: u32) -> String {
        let (scale, offset) = self.layout(size);
        let mut svg = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" \
             version=\"1.1\" width=\"{size}\" height=\"{size}\" viewBox=\"0 0 {size} {size}\" \
             shape-rendering=\"crispEdges\"><rect width=\"{size}\" height=\"{size}\" \
             fill=\"#ffffff\"/><path fill=\"#000000\" d=\""
        );
        for (x, y, len) in self.runs() {
            let _ = write!(
                svg,
                "M{} {}h{}v{scale}h-{}z",
                offset + x * scale,
                offset + y * scale,
                len * scale,
                len * scale
            );
        }
        svg.push_str("\"/></svg>\n");
        svg
    }

    /// A greyscale PNG `size` pixels wide and high: each module a square of
    /// `size / total` pixels, the code centred.
    fn png(&self, size: u32) -> Result<Vec<u8>, QrError> {
        let (scale, offset) = self.layout(size);
        let mut pixels = vec![255u8; (size as usize) * (size as usize)];
        for (x, y, len) in self.runs() {
            let left = offset + x * scale;
            let top = offset + y * scale;
            for row in top..top + scale {
                let start = (row * size + left) as usize;
                pixels[start..start + (len * scale) as usize].fill(0);
            }
        }
        let mut png = Vec::new();
        image::ImageEncoder::write_image(
            image::codecs::png::PngEncoder::new(&mut png),
            &pixels,
            size,
            size,
            image::ExtendedColorType::L8,
        )
        .map_err(|e| QrError::Encode(e.to_string()))?;
        Ok(png)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(format: Option<&str>, size: Option<&str>, margin: Option<&str>) -> QrParams {
        QrParams {
            format: format.map(str::to_owned),
            size: size.map(str::to_owned),
            margin: margin.map(str::to_owned),
        }
    }

    #[test]
    fn parameters_default_and_name_the_bad_one() {
        assert_eq!(
            QrOptions::parse(&QrParams::default()),
            Ok(QrOptions::default())
        );
        assert_eq!(
            QrOptions::parse(&params(Some("PNG"), Some("64"), Some("0"))),
            Ok(QrOptions {
                format: QrFormat::Png,
                size: 64,
                margin: 0
            })
        );
        for (p, field) in [
            (params(Some("gif"), None, None), "format"),
            (params(None, Some("63"), None), "size"),
            (params(None, Some("2049"), None), "size"),
            (params(None, Some("big"), None), "size"),
            (params(None, Some("-1"), None), "size"),
            (params(None, None, Some("17")), "margin"),
            (params(None, None, Some("1.5")), "margin"),
        ] {
            assert_eq!(QrOptions::parse(&p).map_err(|e| e.field), Err(field));
        }
    }

    #[test]
    fn etags_differ_with_every_input_and_match_weakly() {
        let o = QrOptions::default();
        let tag = o.etag("http://x/abc");
        assert!(tag.starts_with('"') && tag.ends_with('"'));
        assert_eq!(tag, o.etag("http://x/abc"));
        let others = [
            o.etag("http://x/abd"),
            QrOptions { size: 301, ..o }.etag("http://x/abc"),
            QrOptions { margin: 3, ..o }.etag("http://x/abc"),
            QrOptions {
                format: QrFormat::Png,
                ..o
            }
            .etag("http://x/abc"),
        ];
        assert!(others.iter().all(|t| *t != tag));
        assert!(if_none_match(&tag, &tag));
        assert!(if_none_match(&format!("\"a\", W/{tag}"), &tag));
        assert!(if_none_match("*", &tag));
        assert!(!if_none_match("\"a\"", &tag));
    }

    #[test]
    fn images_are_exactly_the_size_asked() {
        for size in [64, 300, 301, 2048] {
            let options = QrOptions {
                format: QrFormat::Png,
                size,
                margin: 4,
            };
            let png = render("http://127.0.0.1:8000/abc123", &options).expect("renders");
            let img = image::load_from_memory(&png.bytes).expect("a PNG");
            assert_eq!((img.width(), img.height()), (size, size));
            let svg = render(
                "http://127.0.0.1:8000/abc123",
                &QrOptions {
                    format: QrFormat::Svg,
                    ..options
                },
            )
            .expect("renders");
            let text = String::from_utf8(svg.bytes).expect("utf-8");
            assert!(text.contains(&format!("width=\"{size}\" height=\"{size}\"")));
        }
    }

    #[test]
    fn a_code_larger_than_the_image_is_refused_naming_size() {
        let long = format!("http://127.0.0.1:8000/{}", "a".repeat(300));
        let err = render(
            &long,
            &QrOptions {
                size: 64,
                ..QrOptions::default()
            },
        )
        .expect_err("too small");
        assert!(matches!(err, QrError::TooSmall { .. }));
        assert_eq!(err.as_param_error().map(|e| e.field), Some("size"));
        assert_eq!(
            render(&"a".repeat(5000), &QrOptions::default()).map(|_| ()),
            Err(QrError::TooLong)
        );
    }

    /// Every format, at the smallest and largest sizes and margins, reads
    /// back to the text (PNG decoded, SVG drawn by a real renderer).
    #[cfg(feature = "testing")]
    #[test]
    fn every_image_reads_back_to_its_text() {
        let text = "http://127.0.0.1:8000/Ab3-_z";
        for format in [QrFormat::Svg, QrFormat::Png] {
            for (size, margin) in [(64, 4), (64, 0), (300, 4), (333, 16), (2048, 1)] {
                let options = QrOptions {
                    format,
                    size,
                    margin,
                };
                let image = render(text, &options).expect("renders");
                assert_eq!(image.content_type, format.content_type());
                assert_eq!(
                    crate::testing::decode_qr(image.content_type, &image.bytes),
                    text,
                    "{options:?}"
                );
            }
        }
    }
}
