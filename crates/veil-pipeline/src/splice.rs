//! Pixel Data carried over as bytes.
//!
//! Header rules never touch the top-level Pixel Data element, and the output keeps the input's
//! transfer syntax, so when no pixel stage needs the pixels the parser has no reason to decode
//! them into values only for the encoder to turn them back into the same bytes. That round trip
//! was a fifth of a run's CPU time on CT/MR. Instead the instance is parsed without its Pixel
//! Data element, de-identified, encoded, and the source's element bytes are put back in their
//! place — the same bytes the round trip produced, since Veil promises Pixel Data unchanged.
//!
//! Only plainly encoded elements qualify: OB/OW (or implicit VR) with an even length, or OB
//! fragments of even length. Anything else takes the ordinary path through the parser, which then decides.

use std::ops::Range;

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_encoding::text::SpecificCharacterSet;
use dicom_encoding::TransferSyntaxIndex;
use dicom_object::{FileDicomObject, InMemDicomObject};
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;

const IMPLICIT_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_BE: &str = "1.2.840.10008.1.2.2";

/// Data Set Trailing Padding (FFFC,FFFC), the highest tag a data set holds: where the parser
/// stops reading a stream that [`PixelBytes::without`] closed.
pub const END_MARK: Tag = Tag(0xFFFC, 0xFFFC);

/// An empty [`END_MARK`] element in the data set encoding of `transfer_syntax`; None for deflated
/// data sets (nothing can be appended to a deflate stream) and syntaxes Veil does not know.
fn end_mark_bytes(transfer_syntax: &str) -> Option<&'static [u8]> {
    const IMPLICIT: &[u8] = &[0xFC, 0xFF, 0xFC, 0xFF, 0, 0, 0, 0];
    const EXPLICIT_LE_MARK: &[u8] = &[0xFC, 0xFF, 0xFC, 0xFF, b'O', b'B', 0, 0, 0, 0, 0, 0];
    const EXPLICIT_BE_MARK: &[u8] = &[0xFF, 0xFC, 0xFF, 0xFC, b'O', b'B', 0, 0, 0, 0, 0, 0];
    match transfer_syntax.trim_end_matches(['\0', ' ']) {
        IMPLICIT_LE => Some(IMPLICIT),
        EXPLICIT_BE => Some(EXPLICIT_BE_MARK),
        "1.2.840.10008.1.2.1.99" | "1.2.840.10008.1.2.4.95" => None,
        ts if TransferSyntaxRegistry.get(ts).is_some() => Some(EXPLICIT_LE_MARK),
        _ => None,
    }
}

/// The source's top-level Pixel Data element, to be written back as it is.
pub struct PixelBytes {
    range: Range<usize>,
}

impl PixelBytes {
    /// The element at `range` of `bytes` (found by the preflight walk), if it can be carried over.
    pub fn carry(bytes: &[u8], range: Range<usize>, transfer_syntax: &str) -> Option<PixelBytes> {
        let ts = transfer_syntax.trim_end_matches(['\0', ' ']);
        let implicit = ts == IMPLICIT_LE;
        let be = ts == EXPLICIT_BE;
        let el = bytes.get(range.clone())?;
        let u32_at = |p: usize| -> Option<u32> {
            let b: [u8; 4] = el.get(p..p + 4)?.try_into().ok()?;
            Some(if be {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            })
        };
        let len = if implicit {
            u32_at(4)?
        } else {
            if !matches!(el.get(4..6)?, b"OB" | b"OW") {
                return None;
            }
            u32_at(8)?
        };
        let header = if implicit { 8 } else { 12 };
        if len != u32::MAX {
            return (len % 2 == 0 && header + len as usize == el.len())
                .then_some(PixelBytes { range });
        }
        // The encoder writes encapsulated Pixel Data as OB, as the standard wants; an OW one
        // takes the ordinary path so the output stays what it always was.
        if implicit || &el[4..6] != b"OB" {
            return None;
        }
        // Encapsulated: items (offset table, fragments) then the sequence delimiter.
        let mut pos = header;
        loop {
            let group = u16::from_le_bytes(el.get(pos..pos + 2)?.try_into().ok()?);
            let elem = u16::from_le_bytes(el.get(pos + 2..pos + 4)?.try_into().ok()?);
            let item_len = u32::from_le_bytes(el.get(pos + 4..pos + 8)?.try_into().ok()?);
            match (group, elem) {
                (0xFFFE, 0xE0DD) => {
                    return (item_len == 0 && pos + 8 == el.len()).then_some(PixelBytes { range })
                }
                (0xFFFE, 0xE000) if item_len != u32::MAX && item_len % 2 == 0 => {
                    pos += 8 + item_len as usize;
                }
                _ => return None,
            }
        }
    }

    /// The element's bytes in the source (tag, VR, length, value).
    pub fn element<'a>(&self, bytes: &'a [u8]) -> &'a [u8] {
        &bytes[self.range.clone()]
    }

    /// The file without the element: what the parser reads (from byte 128, after the preamble).
    /// With `end_mark`, an empty Data Set Trailing Padding element closes the stream where the
    /// transfer syntax lets one be appended; the parser told to stop at [`END_MARK`] then ends the
    /// data set there instead of running into the end of the stream, which dicom-rs reports as an
    /// error carrying a captured backtrace (about a tenth of a small file's CPU time). Returns
    /// whether it was appended. The basic profile removes Data Set Trailing Padding, so a real
    /// one, where the parser now stops too, was never released.
    pub fn without(&self, bytes: &[u8], end_mark: Option<&str>) -> (Vec<u8>, bool) {
        let mark = end_mark.and_then(end_mark_bytes);
        let mut v = Vec::with_capacity(bytes.len() - self.range.len() + 12);
        v.extend_from_slice(&bytes[128..self.range.start]);
        v.extend_from_slice(&bytes[self.range.end..]);
        if let Some(m) = mark {
            v.extend_from_slice(m);
        }
        (v, mark.is_some())
    }

    /// Encodes the de-identified instance with the element put back between the attributes that
    /// sort before and after it: as it was, or with `new_value` (of the same length) as its value.
    pub fn encode(
        &self,
        source: &[u8],
        mut out: FileDicomObject<InMemDicomObject>,
        new_value: Option<&[u8]>,
        buf: &mut Vec<u8>,
    ) -> Result<(), String> {
        let element = &source[self.range.clone()];
        if let Some(v) = new_value {
            // The element's header (8 bytes implicit, 12 explicit) then the value.
            if !matches!(element.len().checked_sub(v.len()), Some(8 | 12)) {
                return Err("the pixel stage's new Pixel Data is not the length of the old".into());
            }
        }
        let after: Vec<Tag> = out
            .iter()
            .map(|e| e.header().tag)
            .filter(|t| *t > tags::PIXEL_DATA)
            .collect();
        let tail = InMemDicomObject::from_element_iter(
            after.iter().filter_map(|t| out.take_element(*t).ok()),
        );
        let charset = out
            .get(tags::SPECIFIC_CHARACTER_SET)
            .and_then(|e| e.to_str().ok())
            .and_then(|s| SpecificCharacterSet::from_code(s.split('\\').next().unwrap_or("")))
            .unwrap_or_default();
        let ts = TransferSyntaxRegistry
            .get(out.meta().transfer_syntax())
            .ok_or("unknown transfer syntax")?;
        out.write_all(&mut *buf)
            .map_err(|e| crate::report::describe_error(&e))?;
        match new_value {
            Some(v) => {
                buf.extend_from_slice(&element[..element.len() - v.len()]);
                buf.extend_from_slice(v);
            }
            None => buf.extend_from_slice(element),
        }
        if tail.iter().next().is_some() {
            tail.write_dataset_with_ts_cs(&mut *buf, ts, charset)
                .map_err(|e| crate::report::describe_error(&e))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_object::OpenFileOptions;

    fn parse(stream: &[u8]) -> Option<FileDicomObject<InMemDicomObject>> {
        OpenFileOptions::new()
            .read_preamble(dicom_object::file::ReadPreamble::Never)
            .from_reader(stream)
            .ok()
    }

    /// On every real test file: parsing without Pixel Data and putting the element back gives
    /// exactly the bytes the parser-and-encoder round trip gives.
    #[test]
    fn carried_pixel_data_encodes_like_the_round_trip() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/pydicom");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "test data missing in {dir:?}"
            );
            return;
        };
        let (mut carried, mut compared, mut closed_by_mark) = (0, 0, 0);
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
        paths.sort();
        for path in paths {
            let Ok(bytes) = std::fs::read(&path) else {
                continue; // sub-directories
            };
            if bytes.len() < 132 || &bytes[128..132] != b"DICM" {
                continue;
            }
            let Ok(framing) = crate::preflight::check(&bytes) else {
                continue;
            };
            let Some(range) = framing.pixel_data.clone() else {
                continue;
            };
            let Some(pixels) = PixelBytes::carry(&bytes, range, &framing.transfer_syntax) else {
                continue;
            };
            carried += 1;
            let Some(whole) = parse(&bytes[128..]) else {
                continue;
            };
            let mut expected = Vec::new();
            if whole.write_all(&mut expected).is_err() {
                continue;
            }
            let without =
                parse(&pixels.without(&bytes, None).0).expect("parses without pixel data");
            let mut got = Vec::new();
            pixels.encode(&bytes, without, None, &mut got).unwrap();
            assert!(
                got == expected,
                "{}: spliced output differs",
                path.display()
            );
            // Closed by the end mark and parsed up to it: the same instance.
            let (closed, added) = pixels.without(&bytes, Some(&framing.transfer_syntax));
            if added {
                let until = OpenFileOptions::new()
                    .read_preamble(dicom_object::file::ReadPreamble::Never)
                    .read_until(END_MARK)
                    .from_reader(&closed[..])
                    .expect("parses up to the end mark");
                let mut marked = Vec::new();
                pixels.encode(&bytes, until, None, &mut marked).unwrap();
                // A real Data Set Trailing Padding (CT_small has one) ends the data set there
                // too; the basic profile removes it in any case.
                let mut unpadded = whole.clone();
                unpadded.remove_element(END_MARK);
                let mut expected = Vec::new();
                unpadded.write_all(&mut expected).unwrap();
                assert!(
                    marked == expected,
                    "{}: output parsed up to the end mark differs",
                    path.display()
                );
                closed_by_mark += 1;
            }
            compared += 1;
        }
        eprintln!("{carried} files carry their pixel data as bytes; {compared} compared, {closed_by_mark} also parsed up to the end mark");
        assert!(compared >= 40, "only {compared} files compared");
        assert!(
            closed_by_mark >= 40,
            "only {closed_by_mark} files parsed up to the end mark"
        );
    }
}
