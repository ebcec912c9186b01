//! The pixel stage's one error type: what failed (decoding, OCR, re-encoding, a template file, a
//! preview), with a message that names the file or setting and what to do. Front ends map it
//! once: a failure on an instance holds that instance back.

/// Why the pixel stage could not do its work. The message never holds recognised text.
#[derive(Debug, thiserror::Error)]
pub enum PixelError {
    /// The pixel data could not be decoded (transfer syntax, photometric, length).
    #[error("{0}")]
    Decode(String),
    /// Tesseract could not be loaded or failed on a frame.
    #[error("{0}")]
    Ocr(String),
    /// The cleaned pixel data could not be written back in the instance's encoding.
    #[error("{0}")]
    Encode(String),
    /// A template file could not be read or is invalid.
    #[error("{0}")]
    Template(String),
    /// A preview image could not be written.
    #[error("{0}")]
    Preview(String),
}
