//! What the server finds out about an image attachment once, at upload: its dimensions, a
//! placeholder to show while it loads (BlurHash) and a thumbnail.
//!
//! Decoding is bounded before a pixel is decoded: the header's dimensions must be at most
//! [`MAX_SIDE`] each way (a strict limit of the decoders) and at most [`MAX_PIXELS`] in all,
//! and the decoder may allocate at most [`MAX_ALLOC`] — so a small file that claims a huge
//! image (a decompression bomb) costs nothing. Larger images keep their dimensions but get
//! no thumbnail; images that do not decode get nothing and are stored as files.

use std::io::{BufRead, Seek};

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

use fugue_proto::chat::THUMBNAIL_SIZE;

/// The widest and tallest image decoded.
pub const MAX_SIDE: u32 = 16_384;
/// The most pixels an image decoded may have (40 MP: a large camera's photo).
pub const MAX_PIXELS: u64 = 40_000_000;
/// The most a decoder may allocate: 40 MP of RGBA and some room.
pub const MAX_ALLOC: u64 = 192 * 1024 * 1024;
/// The largest file described when it must be read into memory first (from an object
/// store): any photo or screenshot is smaller.
pub const MAX_READ: u64 = 64 * 1024 * 1024;
/// JPEG quality of thumbnails of opaque images.
const JPEG_QUALITY: u8 = 80;

/// What an image is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Described {
    /// Dimensions as shown (EXIF orientation applied).
    pub width: u32,
    pub height: u32,
    pub placeholder: Option<String>,
    /// For an image larger than [`THUMBNAIL_SIZE`] either way.
    pub thumbnail: Option<Thumbnail>,
}

/// An encoded thumbnail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Thumbnail {
    pub bytes: Vec<u8>,
    pub content_type: &'static str,
}

/// The format of a type the server describes (the raster types it serves inline and
/// decodes itself).
pub fn format_of(content_type: &str) -> Option<ImageFormat> {
    Some(match content_type {
        "image/png" => ImageFormat::Png,
        "image/jpeg" => ImageFormat::Jpeg,
        "image/gif" => ImageFormat::Gif,
        "image/webp" => ImageFormat::WebP,
        _ => return None,
    })
}

/// Describes the image `bytes` reads, of `format`. Blocking: CPU and file work.
pub fn describe(bytes: impl BufRead + Seek, format: ImageFormat) -> image::ImageResult<Described> {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    let mut reader = ImageReader::with_format(bytes, format);
    reader.limits(limits.clone());
    let mut decoder = reader.into_decoder()?;
    decoder.set_limits(limits)?;
    let orientation = decoder.orientation()?;
    let (w, h) = decoder.dimensions();
    let turned = matches!(
        orientation,
        image::metadata::Orientation::Rotate90
            | image::metadata::Orientation::Rotate270
            | image::metadata::Orientation::Rotate90FlipH
            | image::metadata::Orientation::Rotate270FlipH
    );
    let (width, height) = if turned { (h, w) } else { (w, h) };
    if u64::from(w) * u64::from(h) > MAX_PIXELS {
        return Ok(Described {
            width,
            height,
            placeholder: None,
            thumbnail: None,
        });
    }
    let mut img = DynamicImage::from_decoder(decoder)?;
    img.apply_orientation(orientation);
    let thumbnail = if width > THUMBNAIL_SIZE || height > THUMBNAIL_SIZE {
        Some(thumbnail(&img.thumbnail(THUMBNAIL_SIZE, THUMBNAIL_SIZE))?)
    } else {
        None
    };
    Ok(Described {
        width,
        height,
        placeholder: placeholder(&img),
        thumbnail,
    })
}

/// PNG for images with transparency, JPEG for the rest.
fn thumbnail(small: &DynamicImage) -> image::ImageResult<Thumbnail> {
    let mut bytes = Vec::new();
    let content_type = if small.color().has_alpha() {
        small.write_with_encoder(PngEncoder::new(&mut bytes))?;
        "image/png"
    } else {
        DynamicImage::ImageRgb8(small.to_rgb8())
            .write_with_encoder(JpegEncoder::new_with_quality(&mut bytes, JPEG_QUALITY))?;
        "image/jpeg"
    };
    Ok(Thumbnail {
        bytes,
        content_type,
    })
}

/// A BlurHash of 4×3 components (3×4 for portraits), from a 32-pixel copy.
fn placeholder(img: &DynamicImage) -> Option<String> {
    let tiny = img.thumbnail(32, 32).to_rgba8();
    let (cx, cy) = if tiny.width() >= tiny.height() {
        (4, 3)
    } else {
        (3, 4)
    };
    blurhash::encode(cx, cy, tiny.width(), tiny.height(), tiny.as_raw()).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn png(width: u32, height: u32, alpha: bool) -> Vec<u8> {
        let img = if alpha {
            DynamicImage::ImageRgba8(image::RgbaImage::from_fn(width, height, |x, y| {
                image::Rgba([(x % 256) as u8, (y % 256) as u8, 90, 128])
            }))
        } else {
            DynamicImage::ImageRgb8(image::RgbImage::from_fn(width, height, |x, y| {
                image::Rgb([(x % 256) as u8, (y % 256) as u8, 90])
            }))
        };
        let mut out = Vec::new();
        img.write_with_encoder(PngEncoder::new(&mut out)).unwrap();
        out
    }

    #[test]
    fn a_large_image_gets_a_thumbnail_and_a_placeholder() {
        let d = describe(Cursor::new(png(1000, 600, false)), ImageFormat::Png).unwrap();
        assert_eq!((d.width, d.height), (1000, 600));
        let hash = d.placeholder.unwrap();
        assert_eq!(hash.len(), 4 + 2 * (4 * 3 - 1) + 2, "{hash}");
        let thumb = d.thumbnail.unwrap();
        assert_eq!(thumb.content_type, "image/jpeg");
        let small = image::load_from_memory(&thumb.bytes).unwrap();
        assert_eq!((small.width(), small.height()), (400, 240));
    }

    #[test]
    fn transparency_stays_in_a_png_thumbnail() {
        let d = describe(Cursor::new(png(300, 900, true)), ImageFormat::Png).unwrap();
        let thumb = d.thumbnail.unwrap();
        assert_eq!(thumb.content_type, "image/png");
        let small = image::load_from_memory(&thumb.bytes).unwrap();
        assert_eq!((small.width(), small.height()), (133, 400));
        assert!(small.color().has_alpha());
    }

    #[test]
    fn a_small_image_is_its_own_thumbnail() {
        let d = describe(Cursor::new(png(64, 48, false)), ImageFormat::Png).unwrap();
        assert_eq!((d.width, d.height), (64, 48));
        assert!(d.placeholder.is_some());
        assert_eq!(d.thumbnail, None);
    }

    #[test]
    fn what_does_not_decode_is_an_error() {
        assert!(
            describe(
                Cursor::new(b"\x89PNG\r\n\x1a\nnot".to_vec()),
                ImageFormat::Png
            )
            .is_err()
        );
        let mut cut = png(500, 500, false);
        cut.truncate(cut.len() / 2);
        assert!(describe(Cursor::new(cut), ImageFormat::Png).is_err());
        assert_eq!(format_of("image/svg+xml"), None);
        assert_eq!(format_of("image/png"), Some(ImageFormat::Png));
    }
}
