//! A tolerant DICOM byte walker of the verifier's own.
//!
//! It reads the preamble and file meta, then the data set in explicit or implicit VR, little or
//! big endian (and deflated), with defined and undefined lengths, sequences and items at any
//! depth, encapsulated pixel data, and UN/OB/OW values that turn out to hold an encoded data
//! set. It records every element with where its value lies; it never interprets values beyond
//! what the checks need. It stops at the first framing error and says where (the byte scan still
//! covers every byte).

use std::borrow::Cow;
use std::ops::Range;

use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
use dicom_core::Tag;
use dicom_dictionary_std::StandardDataDictionary;

/// Deepest nesting followed (guards against hostile recursion).
const MAX_DEPTH: usize = 64;
/// A deflated data set is inflated up to this size.
const MAX_INFLATED: u64 = 1 << 30;
/// UN/OB/OW values larger than this are not tried as embedded data sets.
const MAX_EMBEDDED: usize = 1 << 20;

const ITEM: u32 = 0xFFFE_E000;
const ITEM_END: u32 = 0xFFFE_E00D;
const SEQ_END: u32 = 0xFFFE_E0DD;
const UNDEFINED: u32 = 0xFFFF_FFFF;
pub const PIXEL_DATA: u32 = 0x7FE0_0010;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Syntax {
    pub implicit: bool,
    pub big_endian: bool,
}

const EXPLICIT_LE: Syntax = Syntax {
    implicit: false,
    big_endian: false,
};
const IMPLICIT_LE: Syntax = Syntax {
    implicit: true,
    big_endian: false,
};

/// Where a value's bytes are: the file itself, or the inflated data set of a deflated file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buf {
    File,
    Inflated,
}

/// One element as found in the bytes.
#[derive(Debug, Clone)]
pub struct Elem {
    pub tag: u32,
    /// The VR the value is read with: the explicit VR, or the dictionary's for implicit VR and
    /// for standard attributes stored as UN.
    pub vr: [u8; 2],
    pub buf: Buf,
    /// The value bytes (for a sequence: all its items).
    pub value: Range<usize>,
    /// Index of the enclosing sequence (or UN/OB value holding an embedded data set).
    pub parent: Option<u32>,
    /// Item number within the parent.
    pub item: u32,
    pub depth: u16,
    pub is_sequence: bool,
    /// Private creator of a private data element, when its block has one at this level.
    pub creator: Option<u32>,
}

/// A walked file.
#[derive(Debug, Default)]
pub struct Parsed {
    pub elems: Vec<Elem>,
    /// Private creator strings, referenced by [`Elem::creator`].
    pub creators: Vec<String>,
    pub inflated: Vec<u8>,
    /// The file has the 128-byte preamble and `DICM`.
    pub part10: bool,
    /// Offset where the data set starts (after the file meta).
    pub dataset_start: usize,
    pub transfer_syntax: String,
    /// The first framing problem, if the walk could not reach the end.
    pub error: Option<String>,
}

impl Parsed {
    pub fn bytes<'a>(&'a self, file: &'a [u8], e: &Elem) -> &'a [u8] {
        let b = match e.buf {
            Buf::File => file,
            Buf::Inflated => &self.inflated,
        };
        b.get(e.value.clone()).unwrap_or_default()
    }

    /// The value as text, trailing padding removed. Text is read as UTF-8 when valid, else as
    /// Latin-1 (the default and most common extended repertoire).
    pub fn text<'a>(&'a self, file: &'a [u8], e: &Elem) -> Cow<'a, str> {
        let b = self.bytes(file, e);
        let b = trim_bytes(b);
        match std::str::from_utf8(b) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => Cow::Owned(b.iter().map(|&c| c as char).collect()),
        }
    }

    /// The multi-valued text of an element, each value trimmed.
    pub fn values(&self, file: &[u8], e: &Elem) -> Vec<String> {
        let t = self.text(file, e);
        if t.is_empty() {
            return Vec::new();
        }
        t.split('\\')
            .map(|v| v.trim_matches(|c: char| c == ' ' || c == '\0').to_string())
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// Is the value empty (zero length, only padding, or a sequence without items)?
    pub fn is_empty_at(&self, file: &[u8], index: usize) -> bool {
        let e = &self.elems[index];
        if e.is_sequence {
            return !self.elems[index + 1..]
                .iter()
                .take_while(|c| c.depth > e.depth)
                .any(|c| c.parent == Some(index as u32));
        }
        trim_bytes(self.bytes(file, e)).is_empty()
    }

    /// A display path: `RequestAttributesSequence[0].(0009,xx10)`.
    pub fn path(&self, index: usize) -> String {
        let mut parts = Vec::new();
        let mut i = Some(index as u32);
        let mut child_item: Option<u32> = None;
        while let Some(ix) = i {
            let e = &self.elems[ix as usize];
            let mut name = tag_name(e.tag);
            if let Some(item) = child_item {
                name.push_str(&format!("[{item}]"));
            }
            parts.push(name);
            child_item = Some(e.item);
            i = e.parent;
        }
        parts.reverse();
        parts.join(".")
    }

    pub fn creator(&self, e: &Elem) -> Option<&str> {
        e.creator.map(|c| self.creators[c as usize].as_str())
    }
}

fn trim_bytes(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .rposition(|&c| c != b' ' && c != 0)
        .map_or(0, |p| p + 1);
    let start = b[..end].iter().position(|&c| c != b' ').unwrap_or(end);
    &b[start..end]
}

/// `(gggg,eeee)`.
pub fn tag_string(tag: u32) -> String {
    format!("({:04X},{:04X})", tag >> 16, tag & 0xFFFF)
}

/// The keyword of a standard attribute, `(gggg,xxee)` for private data elements (the block
/// number differs between files), else `(gggg,eeee)`.
pub fn tag_name(tag: u32) -> String {
    let (g, e) = ((tag >> 16) as u16, tag as u16);
    if g & 1 == 1 {
        if e >= 0x1000 {
            return format!("({g:04X},xx{:02X})", e & 0xFF);
        }
        return tag_string(tag);
    }
    match StandardDataDictionary.by_tag(Tag(g, e)) {
        Some(entry) if !entry.alias().is_empty() => entry.alias().to_string(),
        _ => tag_string(tag),
    }
}

/// The dictionary keyword, if the tag is a standard attribute.
pub fn keyword(tag: u32) -> Option<&'static str> {
    let (g, e) = ((tag >> 16) as u16, tag as u16);
    if g & 1 == 1 {
        return None;
    }
    StandardDataDictionary.by_tag(Tag(g, e)).map(|e| e.alias())
}

/// The dictionary VR (the first choice for ambiguous ones), `UN` if unknown.
pub fn dictionary_vr(tag: u32) -> [u8; 2] {
    let (g, e) = ((tag >> 16) as u16, tag as u16);
    if g & 1 == 1 {
        // Private creator elements are LO; private data elements are unknown.
        return if (0x10..=0xFF).contains(&e) {
            *b"LO"
        } else {
            *b"UN"
        };
    }
    if e == 0 {
        return *b"UL";
    }
    match StandardDataDictionary.by_tag(Tag(g, e)).map(|e| e.vr()) {
        Some(VirtualVr::Exact(vr)) => vr_bytes(vr.to_string()),
        Some(VirtualVr::Xs) => *b"US",
        Some(VirtualVr::Ox) | Some(VirtualVr::Px) => *b"OW",
        Some(_) => *b"US",
        None => *b"UN",
    }
}

fn vr_bytes(s: &str) -> [u8; 2] {
    let b = s.as_bytes();
    if b.len() == 2 {
        [b[0], b[1]]
    } else {
        *b"UN"
    }
}

/// VRs with a 2-byte length in explicit VR.
fn short_length(vr: &[u8; 2]) -> bool {
    matches!(
        vr,
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
    )
}

struct Walker<'a> {
    b: &'a [u8],
    buf: Buf,
    out: &'a mut Vec<Elem>,
    creators: &'a mut Vec<String>,
}

fn u16_at(b: &[u8], pos: usize, be: bool) -> Option<u16> {
    let s: [u8; 2] = b.get(pos..pos + 2)?.try_into().ok()?;
    Some(if be {
        u16::from_be_bytes(s)
    } else {
        u16::from_le_bytes(s)
    })
}

fn u32_at(b: &[u8], pos: usize, be: bool) -> Option<u32> {
    let s: [u8; 4] = b.get(pos..pos + 4)?.try_into().ok()?;
    Some(if be {
        u32::from_be_bytes(s)
    } else {
        u32::from_le_bytes(s)
    })
}

type Fail = String;

fn fail(pos: usize, what: &str) -> Fail {
    format!("offset {pos}: {what}")
}

impl Walker<'_> {
    /// Reads an element header at `pos`: (tag, vr, length, header size).
    fn header(&self, pos: usize, syn: Syntax) -> Result<(u32, [u8; 2], u32, usize), Fail> {
        let short = || fail(pos, "truncated element header");
        let g = u16_at(self.b, pos, syn.big_endian).ok_or_else(short)?;
        let e = u16_at(self.b, pos + 2, syn.big_endian).ok_or_else(short)?;
        let tag = ((g as u32) << 16) | e as u32;
        if g == 0xFFFE || syn.implicit {
            let len = u32_at(self.b, pos + 4, syn.big_endian).ok_or_else(short)?;
            let vr = if g == 0xFFFE {
                *b"  "
            } else {
                dictionary_vr(tag)
            };
            return Ok((tag, vr, len, 8));
        }
        let vr: [u8; 2] = self
            .b
            .get(pos + 4..pos + 6)
            .ok_or_else(short)?
            .try_into()
            .map_err(|_| short())?;
        if short_length(&vr) {
            let len = u16_at(self.b, pos + 6, syn.big_endian).ok_or_else(short)? as u32;
            Ok((tag, vr, len, 8))
        } else {
            let len = u32_at(self.b, pos + 8, syn.big_endian).ok_or_else(short)?;
            Ok((tag, vr, len, 12))
        }
    }

    /// Walks a data set from `pos` to `end`, or to an item delimiter when `until_delim`.
    /// Returns the position after it.
    #[allow(clippy::too_many_arguments)]
    fn dataset(
        &mut self,
        mut pos: usize,
        end: usize,
        syn: Syntax,
        parent: Option<u32>,
        item: u32,
        depth: usize,
        until_delim: bool,
    ) -> Result<usize, Fail> {
        if depth > MAX_DEPTH {
            return Err(fail(pos, "sequences nested too deep"));
        }
        // Private creators of this level: (group, block) -> index into `creators`.
        let mut level_creators: Vec<((u16, u8), u32)> = Vec::new();
        while pos < end {
            let (tag, mut vr, len, hsize) = self.header(pos, syn)?;
            if tag == ITEM_END || tag == SEQ_END {
                if until_delim {
                    return Ok(pos + 8);
                }
                return Err(fail(pos, "delimiter outside a sequence"));
            }
            if tag == ITEM {
                return Err(fail(pos, "item outside a sequence"));
            }
            let body = pos + hsize;
            let (g, el) = ((tag >> 16) as u16, tag as u16);
            let creator = if g & 1 == 1 && el >= 0x1000 {
                level_creators
                    .iter()
                    .find(|(k, _)| *k == (g, (el >> 8) as u8))
                    .map(|(_, c)| *c)
            } else {
                None
            };
            // Standard attributes stored as UN are read with their dictionary VR.
            let stored_un = &vr == b"UN";
            if stored_un && g & 1 == 0 {
                let d = dictionary_vr(tag);
                if &d != b"UN" {
                    vr = d;
                }
            }
            let index = self.out.len() as u32;
            let is_sequence = &vr == b"SQ" || (len == UNDEFINED && tag != PIXEL_DATA);
            self.out.push(Elem {
                tag,
                vr,
                buf: self.buf,
                value: body..body,
                parent,
                item,
                depth: depth as u16,
                is_sequence,
                creator,
            });
            let value_end;
            if len == UNDEFINED {
                if tag == PIXEL_DATA {
                    value_end = self.fragments(body, end, syn)?;
                    self.out[index as usize].value = body..value_end;
                    pos = value_end;
                    continue;
                }
                // A sequence (or UN holding one: implicit VR little endian inside).
                let inner = if stored_un { IMPLICIT_LE } else { syn };
                let after = self.sequence(body, end, inner, index, depth, true)?;
                self.out[index as usize].value = body..after;
                pos = after;
                continue;
            }
            let len = len as usize;
            value_end = body
                .checked_add(len)
                .filter(|e| *e <= end)
                .ok_or_else(|| fail(pos, "value length runs past the end of its container"))?;
            self.out[index as usize].value = body..value_end;
            if is_sequence {
                let inner = if stored_un { IMPLICIT_LE } else { syn };
                self.sequence(body, value_end, inner, index, depth, false)?;
            } else if g & 1 == 1 && (0x10..=0xFF).contains(&el) {
                let name =
                    String::from_utf8_lossy(trim_bytes(&self.b[body..value_end])).into_owned();
                self.creators.push(name);
                level_creators.push(((g, el as u8), self.creators.len() as u32 - 1));
            } else if matches!(&vr, b"UN" | b"OB" | b"OW")
                && tag != PIXEL_DATA
                && (16..=MAX_EMBEDDED).contains(&len)
            {
                self.try_embedded(body, value_end, index, depth);
            }
            pos = value_end;
        }
        if until_delim {
            return Err(fail(pos, "item without its delimiter"));
        }
        Ok(pos)
    }

    /// Walks the items of a sequence; returns the position after it.
    fn sequence(
        &mut self,
        mut pos: usize,
        end: usize,
        syn: Syntax,
        seq: u32,
        depth: usize,
        until_delim: bool,
    ) -> Result<usize, Fail> {
        let mut n = 0u32;
        while pos < end {
            let (tag, _, len, _) = self.header(
                pos,
                Syntax {
                    implicit: true,
                    ..syn
                },
            )?;
            pos += 8;
            match tag {
                SEQ_END if until_delim => return Ok(pos),
                ITEM if len == UNDEFINED => {
                    pos = self.dataset(pos, end, syn, Some(seq), n, depth + 1, true)?;
                }
                ITEM => {
                    let item_end = pos
                        .checked_add(len as usize)
                        .filter(|e| *e <= end)
                        .ok_or_else(|| fail(pos, "item length runs past its sequence"))?;
                    self.dataset(pos, item_end, syn, Some(seq), n, depth + 1, false)?;
                    pos = item_end;
                }
                _ => return Err(fail(pos - 8, "expected an item in a sequence")),
            }
            n += 1;
        }
        if until_delim {
            return Err(fail(pos, "sequence without its delimiter"));
        }
        Ok(pos)
    }

    /// Skips encapsulated pixel data fragments; returns the position after the delimiter.
    fn fragments(&self, mut pos: usize, end: usize, syn: Syntax) -> Result<usize, Fail> {
        while pos < end {
            let (tag, _, len, _) = self.header(
                pos,
                Syntax {
                    implicit: true,
                    ..syn
                },
            )?;
            pos += 8;
            match tag {
                SEQ_END => return Ok(pos),
                ITEM => {
                    pos = pos
                        .checked_add(len as usize)
                        .filter(|e| *e <= end)
                        .ok_or_else(|| fail(pos, "pixel data fragment runs past the end"))?;
                }
                _ => return Err(fail(pos - 8, "expected a pixel data fragment")),
            }
        }
        Err(fail(pos, "encapsulated pixel data without its delimiter"))
    }

    /// A UN/OB/OW value that parses completely as a data set (implicit or explicit VR little
    /// endian) is walked as one: vendors hide whole headers there.
    fn try_embedded(&mut self, start: usize, end: usize, parent: u32, depth: usize) {
        for syn in [IMPLICIT_LE, EXPLICIT_LE] {
            if !plausible_dataset_start(&self.b[start..end], syn) {
                continue;
            }
            let mark = self.out.len();
            let creators = self.creators.len();
            match self.dataset(start, end, syn, Some(parent), 0, depth + 1, false) {
                Ok(p) if p == end && self.out.len() > mark => return,
                _ => {
                    self.out.truncate(mark);
                    self.creators.truncate(creators);
                }
            }
        }
    }
}

/// Does the value start like an element of a data set in this syntax (an even group in use, a
/// known tag or an odd group with a creator, and a length that fits)?
fn plausible_dataset_start(b: &[u8], syn: Syntax) -> bool {
    let (Some(g), Some(e)) = (u16_at(b, 0, false), u16_at(b, 2, false)) else {
        return false;
    };
    if !(0x0008..0xFFFE).contains(&g) {
        return false;
    }
    let tag = ((g as u32) << 16) | e as u32;
    if g & 1 == 0 && keyword(tag).is_none() {
        return false;
    }
    if syn.implicit {
        let Some(len) = u32_at(b, 4, false) else {
            return false;
        };
        len == UNDEFINED || (len as usize) <= b.len() - 8
    } else {
        b.get(4..6)
            .is_some_and(|vr| vr.iter().all(|c| c.is_ascii_uppercase()))
    }
}

/// Walks a whole file (Part 10 or a bare data set).
pub fn parse(bytes: &[u8]) -> Parsed {
    let mut p = Parsed::default();
    let mut pos = 0usize;
    if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        p.part10 = true;
        pos = 132;
    }
    let mut elems = Vec::new();
    let mut creators = Vec::new();
    // File meta: group 0002, always explicit VR little endian.
    {
        let w = Walker {
            b: bytes,
            buf: Buf::File,
            out: &mut elems,
            creators: &mut creators,
        };
        while pos + 8 <= bytes.len() && u16_at(bytes, pos, false) == Some(0x0002) {
            match w.header(pos, EXPLICIT_LE) {
                Ok((tag, vr, len, hsize)) => {
                    let body = pos + hsize;
                    let Some(end) = body
                        .checked_add(len as usize)
                        .filter(|e| *e <= bytes.len() && len != UNDEFINED)
                    else {
                        p.error = Some(fail(pos, "file meta element runs past the end"));
                        break;
                    };
                    if tag == 0x0002_0010 {
                        p.transfer_syntax =
                            String::from_utf8_lossy(trim_bytes(&bytes[body..end])).into_owned();
                    }
                    w.out.push(Elem {
                        tag,
                        vr,
                        buf: Buf::File,
                        value: body..end,
                        parent: None,
                        item: 0,
                        depth: 0,
                        is_sequence: false,
                        creator: None,
                    });
                    pos = end;
                }
                Err(e) => {
                    p.error = Some(e);
                    break;
                }
            }
        }
    }
    p.dataset_start = pos;
    if p.error.is_none() {
        let ts = p.transfer_syntax.as_str();
        let syn = match ts {
            "1.2.840.10008.1.2" => IMPLICIT_LE,
            "1.2.840.10008.1.2.2" => Syntax {
                implicit: false,
                big_endian: true,
            },
            "" => guess_syntax(&bytes[pos..]),
            _ => EXPLICIT_LE,
        };
        let deflated = matches!(ts, "1.2.840.10008.1.2.1.99" | "1.2.840.10008.1.2.4.95");
        let result = if deflated {
            use std::io::Read;
            let mut inflated = Vec::new();
            // A deflate bomb must not take the machine: past the cap the file is not proven.
            let read = flate2::read::DeflateDecoder::new(&bytes[pos..])
                .take(MAX_INFLATED + 1)
                .read_to_end(&mut inflated);
            match read {
                Ok(n) if n as u64 > MAX_INFLATED => Err(format!(
                    "deflated data set inflates beyond {} MiB",
                    MAX_INFLATED >> 20
                )),
                Ok(_) => {
                    let mut w = Walker {
                        b: &inflated,
                        buf: Buf::Inflated,
                        out: &mut elems,
                        creators: &mut creators,
                    };
                    let r = w.dataset(0, inflated.len(), syn, None, 0, 0, false);
                    p.inflated = inflated;
                    r
                }
                Err(e) => Err(format!("deflated data set does not inflate: {e}")),
            }
        } else {
            let mut w = Walker {
                b: bytes,
                buf: Buf::File,
                out: &mut elems,
                creators: &mut creators,
            };
            w.dataset(pos, bytes.len(), syn, None, 0, 0, false)
        };
        if let Err(e) = result {
            p.error = Some(e);
        }
    }
    p.elems = elems;
    p.creators = creators;
    p
}

/// A bare data set: explicit VR when the bytes after the first tag are a VR, else implicit;
/// big endian when the first group reads sensibly only that way.
fn guess_syntax(b: &[u8]) -> Syntax {
    let explicit = b
        .get(4..6)
        .is_some_and(|vr| vr.iter().all(|c| c.is_ascii_uppercase()));
    let le = u16_at(b, 0, false).unwrap_or(0);
    let be = u16_at(b, 0, true).unwrap_or(0);
    Syntax {
        implicit: !explicit,
        big_endian: le > 0x00FF && be <= 0x00FF && explicit,
    }
}

/// Does the file look like DICOM at all (Part 10, or a bare data set starting with a group
/// 0002 or 0008 element)?
pub fn looks_like_dicom(bytes: &[u8]) -> bool {
    if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        return true;
    }
    if bytes.len() < 8 {
        return false;
    }
    let le = u16::from_le_bytes([bytes[0], bytes[1]]);
    let be = u16::from_be_bytes([bytes[0], bytes[1]]);
    let group_ok = |g: u16| g == 0x0002 || g == 0x0008;
    if !(group_ok(le) || group_ok(be)) {
        return false;
    }
    let explicit = bytes[4..6].iter().all(|b| b.is_ascii_uppercase());
    let implicit_len = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    explicit || implicit_len < (1 << 16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(out: &mut Vec<u8>, g: u16, e: u16, vr: &[u8; 2], v: &[u8]) {
        out.extend(g.to_le_bytes());
        out.extend(e.to_le_bytes());
        out.extend(vr);
        if short_length(vr) {
            out.extend((v.len() as u16).to_le_bytes());
        } else {
            out.extend([0, 0]);
            out.extend((v.len() as u32).to_le_bytes());
        }
        out.extend(v);
    }

    #[test]
    fn walks_nested_private_and_embedded() {
        // An implicit VR data set hidden in a UN value.
        let mut hidden = Vec::new();
        hidden.extend(0x0010u16.to_le_bytes());
        hidden.extend(0x0010u16.to_le_bytes());
        hidden.extend(8u32.to_le_bytes());
        hidden.extend(b"Doe^Jane");
        let mut item = Vec::new();
        el(&mut item, 0x0009, 0x0010, b"LO", b"ACME 1.0");
        el(&mut item, 0x0009, 0x1010, b"LO", b"secret  ");
        el(&mut item, 0x0009, 0x1011, b"UN", &hidden);
        let mut seq = Vec::new();
        seq.extend(0xFFFEu16.to_le_bytes());
        seq.extend(0xE000u16.to_le_bytes());
        seq.extend((item.len() as u32).to_le_bytes());
        seq.extend(&item);
        let mut ds = vec![0u8; 128];
        ds.extend(b"DICM");
        el(&mut ds, 0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1\0");
        el(&mut ds, 0x0040, 0x0275, b"SQ", &seq);
        let p = parse(&ds);
        assert_eq!(p.error, None);
        let paths: Vec<String> = (0..p.elems.len()).map(|i| p.path(i)).collect();
        assert_eq!(
            paths,
            [
                "TransferSyntaxUID",
                "RequestAttributesSequence",
                "RequestAttributesSequence[0].(0009,0010)",
                "RequestAttributesSequence[0].(0009,xx10)",
                "RequestAttributesSequence[0].(0009,xx11)",
                "RequestAttributesSequence[0].(0009,xx11)[0].PatientName",
            ]
        );
        assert_eq!(p.creator(&p.elems[3]), Some("ACME 1.0"));
        assert_eq!(p.text(&ds, &p.elems[5]), "Doe^Jane");
        assert_eq!(&p.elems[5].vr, b"PN");
    }
}

#[cfg(test)]
mod real_files {
    use super::*;

    /// pydicom's test files in every encoding walk to their end and show the same patient name.
    #[test]
    fn every_encoding_of_pydicom_walks_to_the_end() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/pydicom");
        if !dir.join("MR_small.dcm").is_file() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "testdata missing: run scripts/fetch-testdata.sh"
            );
            return;
        }
        for (file, name) in [
            ("MR_small.dcm", "CompressedSamples^MR1"),
            ("MR_small_implicit.dcm", "CompressedSamples^MR1"),
            ("MR_small_bigendian.dcm", "CompressedSamples^MR1"),
            ("image_dfl.dcm", ""),
            ("ExplVR_BigEnd.dcm", ""),
        ] {
            let bytes = std::fs::read(dir.join(file)).unwrap();
            let p = parse(&bytes);
            assert_eq!(p.error, None, "{file}");
            let pn = p
                .elems
                .iter()
                .find(|e| e.tag == 0x0010_0010)
                .unwrap_or_else(|| panic!("{file}: no PatientName"));
            if !name.is_empty() {
                assert_eq!(p.text(&bytes, pn), name, "{file}");
            }
            if file == "image_dfl.dcm" {
                assert!(!p.inflated.is_empty());
            }
        }
    }
}
