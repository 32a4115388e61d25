//! The media type of an upload, from its bytes (never from the client's word), and how it
//! may be served.
//!
//! Magic numbers come from the `infer` crate. Text has none: valid UTF-8 without NULs is
//! text, and text that a browser would run — HTML, SVG, XML — is named so, to be served
//! only as a download. What is served inline from the server's origin is a short list of
//! passive types; everything else goes out as `application/octet-stream` with
//! `Content-Disposition: attachment` (see `routes.rs`).

/// How many leading bytes [`sniff`] looks at.
pub const HEAD: usize = 8192;

/// The media type of content starting with `head` (its first [`HEAD`] bytes, or all of it).
pub fn sniff(head: &[u8]) -> &'static str {
    // Markup is told apart by the text rules below (an SVG often starts as XML does).
    if let Some(kind) = infer::get(head)
        && !kind.mime_type().starts_with("text/")
        && kind.mime_type() != "application/xml"
    {
        return kind.mime_type();
    }
    if head.is_empty() {
        return "application/octet-stream";
    }
    let text = match std::str::from_utf8(head) {
        Ok(text) => text,
        // A multi-byte character cut at the end of the head is still text.
        Err(e) if e.error_len().is_none() && head.len() >= HEAD => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return "application/octet-stream",
    };
    if text.contains('\0') {
        return "application/octet-stream";
    }
    let lower = text
        .trim_start_matches('\u{feff}')
        .trim_start()
        .to_ascii_lowercase();
    if lower.contains("<svg") {
        "image/svg+xml"
    } else if lower.starts_with("<!doctype html")
        || lower.starts_with("<html")
        || lower.contains("<script")
        || lower.contains("<body")
        || lower.contains("<iframe")
    {
        "text/html"
    } else if lower.starts_with("<?xml") {
        "application/xml"
    } else {
        "text/plain"
    }
}

/// Whether content of this type may be shown inline from the server's origin: passive
/// images, audio and video, and plain text (served with `charset=utf-8` and `nosniff`).
/// Never HTML, SVG, XML, PDF or anything unknown.
pub fn inline_safe(content_type: &str) -> bool {
    matches!(
        content_type,
        "image/png"
            | "image/jpeg"
            | "image/gif"
            | "image/webp"
            | "image/avif"
            | "image/jxl"
            | "image/bmp"
            | "text/plain"
    ) || (content_type.starts_with("audio/") || content_type.starts_with("video/"))
}

/// The usual file extension of a media type, when the server knows it.
pub fn extension(content_type: &str) -> Option<&'static str> {
    Some(match content_type {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/avif" => "avif",
        "image/jxl" => "jxl",
        "image/bmp" => "bmp",
        "video/mp4" => "mp4",
        "video/webm" => "webm",
        "video/quicktime" => "mov",
        "audio/mpeg" => "mp3",
        "audio/ogg" => "ogg",
        "audio/x-flac" => "flac",
        "audio/x-wav" => "wav",
        "application/pdf" => "pdf",
        "application/zip" => "zip",
        "application/gzip" => "gz",
        "text/plain" => "txt",
        "text/html" => "html",
        "image/svg+xml" => "svg",
        "application/xml" => "xml",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_come_from_the_bytes() {
        let png = [
            0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 0x0d, b'I', b'H', b'D', b'R',
        ];
        assert_eq!(sniff(&png), "image/png");
        assert_eq!(sniff(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"), "image/jpeg");
        assert_eq!(sniff(b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(sniff("hello, wörld\n".as_bytes()), "text/plain");
        assert_eq!(sniff(b"<!DOCTYPE html><p>hi"), "text/html");
        assert_eq!(sniff(b"  <HTML><body>"), "text/html");
        assert_eq!(sniff(b"just text <script>alert(1)</script>"), "text/html");
        assert_eq!(
            sniff(b"<?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"><script/>"),
            "image/svg+xml"
        );
        assert_eq!(sniff(b"<?xml version=\"1.0\"?><a/>"), "application/xml");
        assert_eq!(sniff(b"\x00\x01\x02binary"), "application/octet-stream");
        assert_eq!(sniff(b"text\x00with a nul"), "application/octet-stream");
        assert_eq!(sniff(b""), "application/octet-stream");
        // A character cut at the end of a full head is still text.
        let mut cut = "a".repeat(HEAD - 1).into_bytes();
        cut.extend_from_slice(&"é".as_bytes()[..1]);
        assert_eq!(sniff(&cut), "text/plain");
    }

    #[test]
    fn only_passive_types_are_inline() {
        for t in [
            "image/png",
            "image/jpeg",
            "video/mp4",
            "audio/ogg",
            "text/plain",
        ] {
            assert!(inline_safe(t), "{t}");
        }
        for t in [
            "text/html",
            "image/svg+xml",
            "application/xml",
            "application/pdf",
            "application/octet-stream",
            "application/javascript",
        ] {
            assert!(!inline_safe(t), "{t}");
        }
        assert_eq!(extension("image/png"), Some("png"));
        assert_eq!(extension("text/plain"), Some("txt"));
        assert_eq!(extension("application/x-unknown"), None);
    }
}
