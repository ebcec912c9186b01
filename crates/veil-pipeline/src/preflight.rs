//! A structural pre-check of a whole file in memory, run before the DICOM parser sees it.
//!
//! The parser trusts declared lengths: it reserves and zero-fills a value's declared length before
//! reading it, so a corrupt or hostile length (pydicom's `UN_sequence.dcm` declares 3.7 GB in a
//! 1 KB file) costs gigabytes of memory and tens of seconds. This walk checks that every declared
//! length fits in the bytes that remain and bounds sequence nesting, using only the element
//! framing (tag, VR, length), never values. It reads nothing it does not need and allocates
//! nothing, except for a deflated data set (Deflated Explicit VR Little Endian), which is
//! inflated with a cap ([`MAX_INFLATED_BYTES`]) and then walked like any other: a small file that
//! inflates to gigabytes (a decompression bomb) is held back before the parser inflates it.

use std::io::Read;

use dicom_encoding::transfer_syntax::{Codec, DataRWAdapter};
use dicom_transfer_syntax_registry::entries::DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN;

/// The largest inflated data set a deflated file may have (256 MiB). Deflate is used in
/// practice for small structured objects (reports, presentation states, waveforms), so a data set
/// above this is held back for an operator rather than inflated; re-encode it without deflate
/// (e.g. `dcmconv +te`) to process it. Bounds the memory and time a file of a few kilobytes can
/// cost (a 1 MB file can inflate to 1 GB).
pub const MAX_INFLATED_BYTES: u64 = 256 << 20;

const MAX_DEPTH: usize = 64;

const UNDEFINED: u32 = 0xFFFF_FFFF;
const ITEM: (u16, u16) = (0xFFFE, 0xE000);
const ITEM_END: (u16, u16) = (0xFFFE, 0xE00D);
const SEQ_END: (u16, u16) = (0xFFFE, 0xE0DD);

/// An element header: (group, element), VR, value length, header size.
type Header = ((u16, u16), [u8; 2], u32, usize);

#[derive(Clone, Copy)]
struct Syntax {
    implicit: bool,
    big_endian: bool,
}

struct Cursor<'a> {
    buf: &'a [u8],
    /// Where the top-level Pixel Data element (header and value) lies, once walked.
    pixel_data: std::cell::Cell<Option<(usize, usize)>>,
}

/// What the walk learnt about a file's layout, for callers that want to handle the Pixel Data
/// element's bytes without the parser (see `splice`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Framing {
    /// Byte range of the top-level Pixel Data (7FE0,0010) element, header included, when the data
    /// set is not deflated.
    pub pixel_data: Option<std::ops::Range<usize>>,
    /// The transfer syntax the parser will read the data set in (from the file meta).
    pub transfer_syntax: String,
}

/// Bytes per value of the binary VRs (0 for the others). The parser reads length / size values
/// and goes on from there, so a length that is not a multiple leaves it mid-value and every
/// later element is read from the wrong place (found by veil-fuzz: an SL of 6 bytes made it
/// read a 1.9 GB length from a 2 KB file and allocate it).
fn value_size(vr: &[u8; 2]) -> usize {
    match vr {
        b"SS" | b"US" | b"OW" => 2,
        b"SL" | b"UL" | b"FL" | b"AT" | b"OF" | b"OL" => 4,
        b"FD" | b"SV" | b"UV" | b"OD" | b"OV" => 8,
        _ => 0,
    }
}

/// The VR the parser gives an element in implicit VR: the data dictionary's (`UN` if unknown).
fn dictionary_vr(tag: (u16, u16)) -> [u8; 2] {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    dicom_dictionary_std::StandardDataDictionary
        .by_tag(dicom_core::Tag(tag.0, tag.1))
        .map(|e| {
            let vr = e.vr().relaxed().to_string();
            let b = vr.as_bytes();
            [b[0], b[1]]
        })
        .unwrap_or(*b"UN")
}

fn fail(at: usize, what: String) -> String {
    format!("{what} (at byte {at})")
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor {
            buf,
            pixel_data: Default::default(),
        }
    }

    fn u16(&self, pos: usize, be: bool) -> Option<u16> {
        let b = self.buf.get(pos..pos + 2)?;
        Some(if be {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        })
    }

    fn u32(&self, pos: usize, be: bool) -> Option<u32> {
        let b = self.buf.get(pos..pos + 4)?;
        let a = [b[0], b[1], b[2], b[3]];
        Some(if be {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        })
    }

    /// Reads an element header: (tag, vr, length, header size).
    fn header(&self, pos: usize, syn: Syntax) -> Result<Header, String> {
        let short = || fail(pos, "element header cut short".into());
        let be = syn.big_endian;
        let group = self.u16(pos, be).ok_or_else(short)?;
        let elem = self.u16(pos + 2, be).ok_or_else(short)?;
        let tag = (group, elem);
        if group == 0xFFFE || syn.implicit {
            let len = self.u32(pos + 4, be).ok_or_else(short)?;
            return Ok((tag, *b"  ", len, 8));
        }
        let vr = self.buf.get(pos + 4..pos + 6).ok_or_else(short)?;
        let vr = [vr[0], vr[1]];
        // The parser reads a 2-byte length only for these VRs; any other VR, including an
        // unknown or corrupt one (which it treats as UN), has 2 reserved bytes and a 4-byte
        // length. Mirror that, or a corrupt VR hides a huge length from this check.
        let long = !matches!(
            &vr,
            b"AE"
                | b"AS"
                | b"AT"
                | b"CS"
                | b"DA"
                | b"DS"
                | b"DT"
                | b"FL"
                | b"FD"
                | b"IS"
                | b"LO"
                | b"LT"
                | b"PN"
                | b"SH"
                | b"SL"
                | b"SS"
                | b"ST"
                | b"TM"
                | b"UI"
                | b"UL"
                | b"US"
        );
        if long {
            let len = self.u32(pos + 8, be).ok_or_else(short)?;
            Ok((tag, vr, len, 12))
        } else {
            let len = self.u16(pos + 6, be).ok_or_else(short)? as u32;
            Ok((tag, vr, len, 8))
        }
    }

    /// Walks a dataset from `pos` to `end` (or to an item delimiter when `until_delim`).
    fn dataset(
        &self,
        mut pos: usize,
        end: usize,
        syn: Syntax,
        depth: usize,
        until_delim: bool,
    ) -> Result<usize, String> {
        if depth > MAX_DEPTH {
            return Err(fail(
                pos,
                format!("sequences nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        while pos < end {
            let start = pos;
            let (tag, vr, len, hsize) = self.header(pos, syn)?;
            let top_pixels = depth == 0 && tag == (0x7FE0, 0x0010);
            if tag == ITEM_END || tag == SEQ_END {
                if until_delim {
                    return Ok(pos + 8);
                }
                return Err(fail(pos, "delimiter outside a sequence".into()));
            }
            let body = pos + hsize;
            if len == UNDEFINED {
                let is_pixels = tag == (0x7FE0, 0x0010) && !syn.implicit;
                if is_pixels {
                    pos = self.fragments(body, end, syn)?;
                    if top_pixels {
                        self.pixel_data.set(Some((start, pos)));
                    }
                } else if &vr == b"UN" {
                    // Valid DICOM (a sequence in implicit VR inside UN), but the parser (dicom-rs
                    // 0.10) misreads it as a multi-gigabyte value: hold it back cheaply instead.
                    return Err(fail(
                        pos,
                        format!(
                            "({:04X},{:04X}) is a sequence encoded as UN with undefined length, which the DICOM parser cannot read",
                            tag.0, tag.1
                        ),
                    ));
                } else if &vr == b"SQ" || syn.implicit {
                    pos = self.items(body, end, syn, depth + 1)?;
                } else {
                    return Err(fail(
                        pos,
                        format!(
                            "({:04X},{:04X}) has an undefined length but is not a sequence",
                            tag.0, tag.1
                        ),
                    ));
                }
                continue;
            }
            let len = len as usize;
            if len > end.saturating_sub(body) {
                return Err(fail(
                    pos,
                    format!(
                        "({:04X},{:04X}) declares {len} bytes but only {} remain",
                        tag.0,
                        tag.1,
                        end.saturating_sub(body)
                    ),
                ));
            }
            if &vr == b"SQ" || (syn.implicit && self.looks_like_items(body, body + len, syn)) {
                self.items(body, body + len, syn, depth + 1)?;
            } else {
                let read_as = if syn.implicit { dictionary_vr(tag) } else { vr };
                let size = value_size(&read_as);
                if size > 1 && !len.is_multiple_of(size) {
                    return Err(fail(
                        pos,
                        format!(
                            "({:04X},{:04X}) has VR {} but {len} bytes, not a multiple of {size}: the parser would lose its place",
                            tag.0,
                            tag.1,
                            String::from_utf8_lossy(&read_as)
                        ),
                    ));
                }
            }
            pos = body + len;
            if top_pixels {
                self.pixel_data.set(Some((start, pos)));
            }
        }
        if until_delim {
            return Err(fail(pos, "item without its delimiter".into()));
        }
        Ok(pos)
    }

    /// In implicit VR a sequence has no VR: a defined-length value that starts with an item tag
    /// is walked as one.
    fn looks_like_items(&self, pos: usize, end: usize, syn: Syntax) -> bool {
        end >= pos + 8
            && self.u16(pos, syn.big_endian) == Some(0xFFFE)
            && self.u16(pos + 2, syn.big_endian) == Some(0xE000)
    }

    /// Walks sequence items until `end` or a sequence delimiter.
    fn items(
        &self,
        mut pos: usize,
        end: usize,
        syn: Syntax,
        depth: usize,
    ) -> Result<usize, String> {
        while pos < end {
            let (tag, _, len, _) = self.header(
                pos,
                Syntax {
                    implicit: true,
                    ..syn
                },
            )?;
            if tag == SEQ_END {
                return Ok(pos + 8);
            }
            if tag != ITEM {
                return Err(fail(
                    pos,
                    format!(
                        "expected a sequence item, found ({:04X},{:04X})",
                        tag.0, tag.1
                    ),
                ));
            }
            let body = pos + 8;
            if len == UNDEFINED {
                pos = self.dataset(body, end, syn, depth, true)?;
            } else {
                let len = len as usize;
                if len > end.saturating_sub(body) {
                    return Err(fail(
                        pos,
                        format!(
                            "sequence item declares {len} bytes but only {} remain",
                            end.saturating_sub(body)
                        ),
                    ));
                }
                self.dataset(body, body + len, syn, depth, false)?;
                pos = body + len;
            }
        }
        Ok(pos)
    }

    /// Walks encapsulated pixel data fragments until the sequence delimiter.
    fn fragments(&self, mut pos: usize, end: usize, syn: Syntax) -> Result<usize, String> {
        while pos < end {
            let (tag, _, len, _) = self.header(
                pos,
                Syntax {
                    implicit: true,
                    ..syn
                },
            )?;
            if tag == SEQ_END {
                return Ok(pos + 8);
            }
            if tag != ITEM || len == UNDEFINED {
                return Err(fail(
                    pos,
                    "malformed encapsulated pixel data fragment".into(),
                ));
            }
            let len = len as usize;
            if len > end.saturating_sub(pos + 8) {
                return Err(fail(
                    pos,
                    format!(
                        "pixel data fragment declares {len} bytes but only {} remain",
                        end.saturating_sub(pos + 8)
                    ),
                ));
            }
            pos += 8 + len;
        }
        Err(fail(
            pos,
            "encapsulated pixel data without its sequence delimiter".into(),
        ))
    }
}

/// Checks a Part 10 file (preamble, `DICM`, file meta, dataset). `Ok` means every declared length
/// fits; the parser still decides whether the content is valid.
pub fn check(bytes: &[u8]) -> Result<Framing, String> {
    let c = Cursor::new(bytes);
    let le = Syntax {
        implicit: false,
        big_endian: false,
    };
    let (pos, ts) = meta(&c)?;
    let syn = match ts.as_str() {
        "1.2.840.10008.1.2" => Syntax {
            implicit: true,
            big_endian: false,
        },
        "1.2.840.10008.1.2.2" => Syntax {
            implicit: false,
            big_endian: true,
        },
        "1.2.840.10008.1.2.1.99" => {
            let inflated = inflate(&bytes[pos.min(bytes.len())..])?;
            let c = Cursor::new(&inflated);
            return c
                .dataset(0, inflated.len(), le, 0, false)
                .map(|_| Framing::default())
                .map_err(|e| format!("in the inflated data set: {e}"));
        }
        _ => le,
    };
    c.dataset(pos, bytes.len(), syn, 0, false)?;
    Ok(Framing {
        pixel_data: c.pixel_data.get().map(|(a, b)| a..b),
        transfer_syntax: ts,
    })
}

/// Walks the file meta group as the parser reads it: (0002,0000) gives the group length and
/// elements are read until that many bytes are consumed; everything after belongs to the data
/// set, even group 0002 elements (a duplicated meta element must not be skipped here while the
/// parser reads it in the data set's encoding). Returns where the data set starts and the
/// transfer syntax (the last one read, as the parser keeps).
fn meta(c: &Cursor) -> Result<(usize, String), String> {
    let bytes = c.buf;
    let le = Syntax {
        implicit: false,
        big_endian: false,
    };
    let mut pos = 132;
    let mut ts = String::new();
    let group_length = match c.header(pos, le) {
        Ok(((0x0002, 0x0000), _, 4, hsize)) => {
            let l = c
                .u32(pos + hsize, false)
                .ok_or_else(|| fail(pos, "file meta group length cut short".into()))?;
            pos += hsize + 4;
            Some(l as usize)
        }
        _ => None,
    };
    let meta_start = pos;
    loop {
        let more = match group_length {
            Some(l) => pos - meta_start < l,
            None => pos + 4 <= bytes.len() && c.u16(pos, false) == Some(0x0002),
        };
        if !more || (group_length.is_some() && pos >= bytes.len()) {
            break;
        }
        let (tag, _, len, hsize) = c.header(pos, le)?;
        if len == UNDEFINED || len as usize > bytes.len() - (pos + hsize).min(bytes.len()) {
            return Err(fail(
                pos,
                format!(
                    "file meta element ({:04X},{:04X}) has an impossible length",
                    tag.0, tag.1
                ),
            ));
        }
        if tag == (0x0002, 0x0010) {
            ts = String::from_utf8_lossy(&bytes[pos + hsize..pos + hsize + len as usize])
                .trim_end_matches(['\0', ' '])
                .to_string();
        }
        pos += hsize + len as usize;
    }
    Ok((pos, ts))
}

/// Inflates a deflated data set with the parser's own inflater, refusing more than
/// [`MAX_INFLATED_BYTES`].
fn inflate(compressed: &[u8]) -> Result<Vec<u8>, String> {
    let Codec::Dataset(Some(adapter)) = DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN.codec() else {
        return Err("this build cannot inflate deflated data sets".into());
    };
    let reader = adapter.adapt_reader(Box::new(compressed));
    let mut out = Vec::with_capacity((compressed.len() * 4).min(MAX_INFLATED_BYTES as usize));
    reader
        .take(MAX_INFLATED_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("the deflated data set cannot be inflated: {e}"))?;
    if out.len() as u64 > MAX_INFLATED_BYTES {
        return Err(format!(
            "the deflated data set ({} bytes) inflates to more than {} MiB, the limit for deflated files (a decompression bomb?); re-encode it without deflate to process it",
            compressed.len(),
            MAX_INFLATED_BYTES >> 20
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dataset: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 128];
        v.extend_from_slice(b"DICM");
        let ts = b"1.2.840.10008.1.2.1\0";
        v.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        v.extend_from_slice(&(ts.len() as u16).to_le_bytes());
        v.extend_from_slice(ts);
        v.extend_from_slice(dataset);
        v
    }

    #[test]
    fn accepts_a_well_formed_dataset() {
        let mut d = vec![0x10, 0x00, 0x10, 0x00, b'P', b'N', 4, 0];
        d.extend_from_slice(b"Doe^");
        // An undefined-length sequence with one undefined-length item.
        d.extend_from_slice(&[
            0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        d.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        d.extend_from_slice(&[0x08, 0x00, 0x50, 0x11, b'U', b'I', 2, 0, b'1', 0]);
        d.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
        d.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        assert!(check(&file(&d)).is_ok());
    }

    #[test]
    fn refuses_a_length_beyond_the_file() {
        let d = [
            0x08, 0x00, 0x08, 0x00, b'U', b'T', 0, 0, 0x44, 0x4F, 0x52, 0x49, b'x',
        ];
        let e = check(&file(&d)).unwrap_err();
        assert!(e.contains("(0008,0008) declares"), "{e}");
    }

    #[test]
    fn reads_an_unknown_vr_with_a_long_length_as_the_parser_does() {
        // Found by veil-fuzz: VR bytes "\0\0" made the parser read a 4-byte length of ~3.7 GB
        // while this check read a short one, costing 1.9 GB of memory and 14 s per file.
        let mut d = vec![0x09, 0x00, 0x04, 0x10, 0, 0, 4, 0];
        d.extend_from_slice(&[0xF0, 0xFF, 0xFF, 0xDD]);
        let e = check(&file(&d)).unwrap_err();
        assert!(e.contains("(0009,1004)"), "{e}");
    }

    fn deflated_file(dataset: &[u8]) -> Vec<u8> {
        let mut v = vec![0u8; 128];
        v.extend_from_slice(b"DICM");
        let ts = b"1.2.840.10008.1.2.1.99\0";
        v.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        v.extend_from_slice(&(8 + ts.len() as u32).to_le_bytes());
        v.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
        v.extend_from_slice(&(ts.len() as u16).to_le_bytes());
        v.extend_from_slice(ts);
        let Codec::Dataset(Some(adapter)) = DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN.codec() else {
            unreachable!()
        };
        let mut compressed = Vec::new();
        {
            let mut w = adapter.adapt_writer(Box::new(&mut compressed));
            std::io::Write::write_all(&mut w, dataset).unwrap();
        }
        v.extend_from_slice(&compressed);
        v
    }

    #[test]
    fn walks_the_inflated_data_set_of_a_deflated_file() {
        let mut d = vec![0x10, 0x00, 0x10, 0x00, b'P', b'N', 4, 0];
        d.extend_from_slice(b"Doe^");
        assert!(check(&deflated_file(&d)).is_ok());
        // A length beyond the inflated data is caught after inflation.
        d.extend_from_slice(&[0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0, 0, 0, 0, 0x10]);
        let e = check(&deflated_file(&d)).unwrap_err();
        assert!(
            e.contains("inflated data set") && e.contains("(0009,1010)"),
            "{e}"
        );
    }

    #[test]
    fn refuses_a_deflate_bomb_before_inflating_it_all() {
        // Found by veil-fuzz: 300 MiB of zeros deflate to about 300 KB; the parser inflated all
        // of it (a 1 GB bomb cost 1.06 GB of memory and 5 s) before anything could refuse it.
        let mut d = vec![0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0];
        let body = 300u32 << 20;
        d.extend_from_slice(&body.to_le_bytes());
        d.resize(d.len() + body as usize, 0);
        let f = deflated_file(&d);
        drop(d);
        assert!(f.len() < 2 << 20, "{}", f.len());
        let e = check(&f).unwrap_err();
        assert!(e.contains("inflates to more than 256 MiB"), "{e}");
    }

    #[test]
    fn reads_the_meta_group_up_to_its_declared_length_as_the_parser_does() {
        // Found by veil-fuzz (DICOMDIR-bigEnd.dcm, a duplicated (0002,0010)): the parser stops the
        // meta group at its group length and reads the duplicate as a big-endian data set
        // element; this check used to skip every group-0002 element and never saw the 3.7 GB
        // length the parser then reserved (17 s per file).
        let ts = b"1.2.840.10008.1.2.2\0";
        let elem = |v: &mut Vec<u8>| {
            v.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'I']);
            v.extend_from_slice(&(ts.len() as u16).to_le_bytes());
            v.extend_from_slice(ts);
        };
        let mut v = vec![0u8; 128];
        v.extend_from_slice(b"DICM");
        v.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        v.extend_from_slice(&(8 + ts.len() as u32).to_le_bytes());
        elem(&mut v);
        let ok = v.clone();
        elem(&mut v);
        assert!(check(&ok).is_ok());
        let e = check(&v).unwrap_err();
        assert!(e.contains("(0200,1000)"), "{e}");
    }

    #[test]
    fn refuses_deep_nesting() {
        let mut d = Vec::new();
        for _ in 0..100 {
            d.extend_from_slice(&[
                0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
            ]);
            d.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        }
        let e = check(&file(&d)).unwrap_err();
        assert!(e.contains("nested deeper"), "{e}");
    }
}
