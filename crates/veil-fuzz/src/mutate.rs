//! Structured mutations of a Part 10 file. Each mutation knows the element framing (tag, VR,
//! length) of the top-level data set, so it breaks the file where parsers are fragile: at element
//! boundaries, in declared lengths, in sequence delimiters, in VRs and in the values that the
//! de-identifier reads (UIDs, dates, character sets, names).

use std::io::Write;

/// One mutated input and what was done to it.
#[derive(Debug, Clone)]
pub struct Case {
    /// Short label, e.g. `truncate@1234`.
    pub label: String,
    pub bytes: Vec<u8>,
}

/// Position of one top-level element.
#[derive(Debug, Clone, Copy)]
pub struct Element {
    pub start: usize,
    pub tag: (u16, u16),
    pub vr: [u8; 2],
    /// Offset of the length field and its width (2 or 4 bytes).
    pub len_at: usize,
    pub len_width: usize,
    pub value_at: usize,
    /// Declared length (0xFFFF_FFFF when undefined).
    pub len: u32,
}

const UNDEFINED: u32 = 0xFFFF_FFFF;

fn explicit_long(vr: &[u8]) -> bool {
    matches!(
        vr,
        b"OB"
            | b"OW"
            | b"OF"
            | b"OD"
            | b"OL"
            | b"OV"
            | b"SQ"
            | b"UT"
            | b"UN"
            | b"UC"
            | b"UR"
            | b"SV"
            | b"UV"
    )
}

/// Walks the top-level elements of a little-endian Part 10 file (file meta, then the data set as
/// explicit or implicit VR). Stops at the first element whose framing it cannot follow (including
/// undefined-length values, after recording them).
pub fn elements(bytes: &[u8]) -> Vec<Element> {
    let mut out = Vec::new();
    if bytes.len() < 132 || &bytes[128..132] != b"DICM" {
        return out;
    }
    let mut pos = 132;
    let mut implicit = false;
    let mut in_meta = true;
    let rd16 = |p: usize| {
        bytes
            .get(p..p + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let rd32 = |p: usize| {
        bytes
            .get(p..p + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    while pos + 8 <= bytes.len() {
        let (Some(g), Some(e)) = (rd16(pos), rd16(pos + 2)) else {
            break;
        };
        if in_meta && g != 0x0002 {
            in_meta = false;
            // The transfer syntax decides the data set's encoding.
            let ts = out
                .iter()
                .find(|el: &&Element| el.tag == (0x0002, 0x0010))
                .map(|el| {
                    String::from_utf8_lossy(&bytes[el.value_at..el.value_at + el.len as usize])
                        .trim_end_matches(['\0', ' '])
                        .to_string()
                })
                .unwrap_or_default();
            if ts == "1.2.840.10008.1.2.2" || ts == "1.2.840.10008.1.2.1.99" {
                break;
            }
            implicit = ts == "1.2.840.10008.1.2";
        }
        let vr = [bytes[pos + 4], bytes[pos + 5]];
        let (len_at, len_width) = if implicit && !in_meta {
            (pos + 4, 4)
        } else if explicit_long(&vr) {
            (pos + 8, 4)
        } else {
            (pos + 6, 2)
        };
        let len = if len_width == 4 {
            match rd32(len_at) {
                Some(l) => l,
                None => break,
            }
        } else {
            rd16(len_at).unwrap() as u32
        };
        let value_at = len_at + len_width;
        let vr = if implicit && !in_meta { *b"  " } else { vr };
        out.push(Element {
            start: pos,
            tag: (g, e),
            vr,
            len_at,
            len_width,
            value_at,
            len,
        });
        if len == UNDEFINED || value_at + len as usize > bytes.len() {
            break;
        }
        pos = value_at + len as usize;
    }
    out
}

fn set_len(bytes: &mut [u8], el: &Element, len: u32) {
    if el.len_width == 4 {
        bytes[el.len_at..el.len_at + 4].copy_from_slice(&len.to_le_bytes());
    } else {
        bytes[el.len_at..el.len_at + 2].copy_from_slice(&(len.min(0xFFFF) as u16).to_le_bytes());
    }
}

fn end(el: &Element) -> usize {
    el.value_at + el.len as usize
}

/// Replaces the value of a top-level element (keeping its header), fixing its length.
pub fn replace_value(bytes: &[u8], el: &Element, value: &[u8]) -> Option<Vec<u8>> {
    if el.len == UNDEFINED || (el.len_width == 2 && value.len() > 0xFFFF) {
        return None;
    }
    let mut v = bytes[..el.value_at].to_vec();
    let mut el2 = *el;
    el2.len = value.len() as u32;
    set_len(&mut v, &el2, value.len() as u32);
    v.extend_from_slice(value);
    v.extend_from_slice(bytes.get(end(el)..)?);
    Some(v)
}

/// Explicit VR little-endian element bytes.
pub fn explicit_element(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(12 + value.len());
    v.extend_from_slice(&tag.0.to_le_bytes());
    v.extend_from_slice(&tag.1.to_le_bytes());
    v.extend_from_slice(vr);
    if explicit_long(vr) {
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(&(value.len() as u32).to_le_bytes());
    } else {
        v.extend_from_slice(&(value.len() as u16).to_le_bytes());
    }
    v.extend_from_slice(value);
    v
}

/// A small deterministic generator (xorshift), so every run of a seed makes the same cases.
#[derive(Debug, Clone)]
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    #[allow(clippy::should_implement_trait)] // an endless generator, not an iterator
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Index of the first data-set element (after file meta).
fn first_dataset(els: &[Element]) -> usize {
    els.iter()
        .position(|e| e.tag.0 != 0x0002)
        .unwrap_or(els.len())
}

/// Every structured mutation of `bytes`. `exhaustive` truncates at every element boundary;
/// otherwise at up to `sample` boundaries chosen by `rng`.
pub fn mutations(bytes: &[u8], rng: &mut Rng, exhaustive: bool, sample: usize) -> Vec<Case> {
    let mut cases = Vec::new();
    each_mutation(bytes, rng, exhaustive, sample, &mut |c| cases.push(c));
    cases
}

/// As [`mutations`], handing each case to `emit` as soon as it is made, so only one mutated
/// copy exists at a time (all of a 43 MB seed's copies at once cost gigabytes, which the
/// per-case memory figures then wrongly blamed on the pipeline).
pub fn each_mutation(
    bytes: &[u8],
    rng: &mut Rng,
    exhaustive: bool,
    sample: usize,
    emit: &mut dyn FnMut(Case),
) {
    let els = elements(bytes);
    let ds = first_dataset(&els);
    let dataset_start = els.get(ds).map(|e| e.start).unwrap_or(bytes.len());

    // 1. Truncation at element boundaries, inside headers and inside values.
    let mut cut_points: Vec<usize> = Vec::new();
    for el in &els {
        cut_points.push(el.start);
        cut_points.push(el.start + 3);
        cut_points.push(el.value_at);
        if el.len != UNDEFINED && el.len > 1 {
            cut_points.push(el.value_at + el.len as usize / 2);
        }
    }
    cut_points.retain(|&p| p < bytes.len());
    cut_points.sort_unstable();
    cut_points.dedup();
    if !exhaustive && cut_points.len() > sample {
        let mut picked = Vec::new();
        for _ in 0..sample {
            picked.push(cut_points[rng.below(cut_points.len())]);
        }
        picked.sort_unstable();
        picked.dedup();
        cut_points = picked;
    }
    for p in cut_points {
        emit(Case {
            label: format!("truncate@{p}"),
            bytes: bytes[..p].to_vec(),
        });
    }

    // Pick a few elements for per-element mutations.
    let mut picks: Vec<usize> = (0..els.len()).collect();
    if !exhaustive && picks.len() > sample {
        picks = (0..sample).map(|_| rng.below(els.len())).collect();
        picks.sort_unstable();
        picks.dedup();
    }

    for &i in &picks {
        let el = els[i];
        if el.len == UNDEFINED {
            continue;
        }
        // 2. Wrong and huge lengths.
        for (name, l) in [
            ("huge", 0xFFFF_FFF0u32),
            ("plus1", el.len.wrapping_add(1)),
            ("odd", el.len | 1),
            ("undefined", UNDEFINED),
            ("zero", 0),
        ] {
            let mut v = bytes.to_vec();
            set_len(&mut v, &el, l);
            emit(Case {
                label: format!("len-{name}@({:04X},{:04X})", el.tag.0, el.tag.1),
                bytes: v,
            });
        }
        // 5. Wrong VR (explicit only).
        if el.vr != *b"  " {
            for vr in [b"SQ", b"ZZ", b"US", b"UN", b"\0\0"] {
                let mut v = bytes.to_vec();
                v[el.start + 4..el.start + 6].copy_from_slice(vr);
                emit(Case {
                    label: format!(
                        "vr-{}@({:04X},{:04X})",
                        String::from_utf8_lossy(vr).escape_default(),
                        el.tag.0,
                        el.tag.1
                    ),
                    bytes: v,
                });
            }
        }
        // 11. Duplicated tag.
        if end(&el) <= bytes.len() {
            let mut v = bytes[..end(&el)].to_vec();
            v.extend_from_slice(&bytes[el.start..end(&el)]);
            v.extend_from_slice(&bytes[end(&el)..]);
            emit(Case {
                label: format!("dup@({:04X},{:04X})", el.tag.0, el.tag.1),
                bytes: v,
            });
        }
    }

    // 6-8. Hostile values in the attributes the de-identifier reads.
    type Hostile<'a> = &'a [((u16, u16), &'a [&'a [u8]])];
    let hostile: Hostile = &[
        (
            (0x0008, 0x0018),
            &[b"1..2.abc\xff", b"", b"9".repeat(64).leak(), b"1.2.3.\0\0"],
        ),
        (
            (0x0020, 0x000D),
            &[
                b"not-a-uid",
                b"2.25.99999999999999999999999999999999999999999999",
            ],
        ),
        (
            (0x0010, 0x0030),
            &[b"99999999", b"2020-13-45", b"\xff\xfe\xfd\xfc"],
        ),
        ((0x0008, 0x0020), &[b"00000000", b"19991399", b"abcdefgh"]),
        ((0x0008, 0x0030), &[b"256161.9999999", b"xx"]),
        (
            (0x0008, 0x0005),
            &[
                b"ISO_IR 999",
                b"ISO_IR 192",
                b"\\\\\\\\",
                b"ISO 2022 IR 87\\ISO 2022 IR 159",
            ],
        ),
        (
            (0x0010, 0x0010),
            &[
                b"\xc3\x28\xa0\xa1^\xf0\x28\x8c\xbc",
                b"\x1b$B\x1b(B^^^^^^^^^^",
                b"=^=^=",
            ],
        ),
        ((0x0010, 0x1010), &[b"999Y", b"-01D", b"abcd"]),
    ];
    for (tag, values) in hostile {
        if let Some(el) = els.iter().find(|e| e.tag == *tag) {
            for (k, val) in values.iter().enumerate() {
                let mut val = val.to_vec();
                if val.len() % 2 == 1 {
                    val.push(b' ');
                }
                if let Some(v) = replace_value(bytes, el, &val) {
                    emit(Case {
                        label: format!("value{k}@({:04X},{:04X})", tag.0, tag.1),
                        bytes: v,
                    });
                }
            }
        } else if els.len() > ds && els[ds].vr != *b"  " {
            // Absent: insert it at the start of the data set (order breaks are part of the test).
            let vr: &[u8; 2] = match tag {
                (0x0008, 0x0018) | (0x0020, 0x000D) => b"UI",
                (0x0010, 0x0030) | (0x0008, 0x0020) => b"DA",
                (0x0008, 0x0030) => b"TM",
                (0x0008, 0x0005) => b"CS",
                (0x0010, 0x0010) => b"PN",
                _ => b"AS",
            };
            let mut v = bytes[..dataset_start].to_vec();
            v.extend(explicit_element(*tag, vr, values[0]));
            v.extend_from_slice(&bytes[dataset_start..]);
            emit(Case {
                label: format!("insert@({:04X},{:04X})", tag.0, tag.1),
                bytes: v,
            });
        }
    }

    let explicit_ds = els.len() > ds && els[ds].vr != *b"  ";
    if explicit_ds {
        // 3. Undefined-length sequence without delimiters, at the end and mid-file.
        let mut seq = Vec::new();
        seq.extend_from_slice(&[
            0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ]);
        seq.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        seq.extend(explicit_element(
            (0x0010, 0x0020),
            b"LO",
            b"FUZZ-PLANTED-ID1",
        ));
        let mut v = bytes.to_vec();
        v.extend_from_slice(&seq);
        emit(Case {
            label: "seq-undelimited@end".into(),
            bytes: v,
        });
        let mut v = bytes[..dataset_start].to_vec();
        v.extend_from_slice(&seq);
        v.extend_from_slice(&bytes[dataset_start..]);
        emit(Case {
            label: "seq-undelimited@start".into(),
            bytes: v,
        });

        // 4. Deep nesting: 60 (inside the pre-check bound) and 5,000 (beyond it).
        for depth in [60usize, 5000] {
            let mut v = bytes[..dataset_start].to_vec();
            for _ in 0..depth {
                v.extend_from_slice(&[
                    0x09, 0x00, 0x10, 0x10, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
                ]);
                v.extend_from_slice(&[0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
            }
            v.extend(explicit_element((0x0010, 0x0010), b"PN", b"FUZZ^PLANTED"));
            for _ in 0..depth {
                v.extend_from_slice(&[0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]);
                v.extend_from_slice(&[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
            }
            v.extend_from_slice(&bytes[dataset_start..]);
            emit(Case {
                label: format!("nest-{depth}"),
                bytes: v,
            });
        }

        // 10. Encapsulated pixel data with broken fragments.
        if let Some(px) = els.iter().position(|e| e.tag == (0x7FE0, 0x0010)) {
            let el = els[px];
            let head = &bytes[..el.start];
            let variants: Vec<(&str, Vec<u8>)> = vec![
                ("no-items", vec![]),
                (
                    "item-huge",
                    [
                        &[0xFE, 0xFF, 0x00, 0xE0][..],
                        &0xFFFF_FFF0u32.to_le_bytes(),
                        b"abcd",
                    ]
                    .concat(),
                ),
                (
                    "item-undef",
                    [
                        &[0xFE, 0xFF, 0x00, 0xE0][..],
                        &UNDEFINED.to_le_bytes(),
                        b"abcd",
                    ]
                    .concat(),
                ),
                (
                    "bad-offset-table",
                    [
                        &[0xFE, 0xFF, 0x00, 0xE0, 8, 0, 0, 0][..],
                        &[0xFF; 8],
                        &[0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0],
                        b"\xff\xd8\xff\xd9",
                        &[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0],
                    ]
                    .concat(),
                ),
                (
                    "not-an-item",
                    [
                        &[0x08, 0x00, 0x10, 0x00, 4, 0, 0, 0][..],
                        b"abcd",
                        &[0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0],
                    ]
                    .concat(),
                ),
            ];
            for (name, body) in variants {
                let mut v = head.to_vec();
                v.extend_from_slice(&[
                    0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
                ]);
                v.extend_from_slice(&body);
                emit(Case {
                    label: format!("pixel-fragments-{name}"),
                    bytes: v,
                });
            }
        }
    }

    // 12. Missing file meta: the bare data set, and a preamble with no meta group.
    let mut v = bytes.get(dataset_start..).unwrap_or_default().to_vec();
    emit(Case {
        label: "no-meta-bare".into(),
        bytes: v.clone(),
    });
    let mut p = vec![0u8; 128];
    p.extend_from_slice(b"DICM");
    p.append(&mut v);
    emit(Case {
        label: "no-meta-dicm".into(),
        bytes: p,
    });

    // 13. Random byte flips in the data set.
    for n in 0..4 {
        let mut v = bytes.to_vec();
        if v.len() > dataset_start {
            for _ in 0..8 {
                let i = dataset_start + rng.below(v.len() - dataset_start);
                v[i] = rng.next() as u8;
            }
        }
        emit(Case {
            label: format!("flip-{n}"),
            bytes: v,
        });
    }
}

/// A deflated-transfer-syntax file whose compressed data set (a few KB-MB) inflates to
/// `inflated_bytes` of zeros behind a well-formed element header: a decompression bomb.
pub fn deflate_bomb(inflated_bytes: u64) -> Vec<u8> {
    let ts = b"1.2.840.10008.1.2.1.99\0";
    let sop = b"1.2.840.10008.5.1.4.1.1.7\0";
    let mut meta = Vec::new();
    meta.extend(explicit_element((0x0002, 0x0001), b"OB", &[0, 1]));
    meta.extend(explicit_element((0x0002, 0x0002), b"UI", sop));
    meta.extend(explicit_element((0x0002, 0x0003), b"UI", b"2.25.1234\0"));
    meta.extend(explicit_element((0x0002, 0x0010), b"UI", ts));
    let mut v = vec![0u8; 128];
    v.extend_from_slice(b"DICM");
    v.extend(explicit_element(
        (0x0002, 0x0000),
        b"UL",
        &(meta.len() as u32).to_le_bytes(),
    ));
    v.extend(meta);
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    let mut head = Vec::new();
    head.extend(explicit_element((0x0010, 0x0010), b"PN", b"BOMB^PLANTED"));
    // One private OB element declaring (nearly) the whole inflated size.
    let body = inflated_bytes
        .saturating_sub(head.len() as u64 + 12)
        .min(0xFFFF_FFF0)
        & !1;
    head.extend_from_slice(&[0x09, 0x00, 0x10, 0x10, b'O', b'B', 0, 0]);
    head.extend_from_slice(&(body as u32).to_le_bytes());
    enc.write_all(&head).unwrap();
    let zeros = vec![0u8; 1 << 20];
    let mut left = body;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        enc.write_all(&zeros[..n]).unwrap();
        left -= n as u64;
    }
    v.extend(enc.finish().unwrap());
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bomb_is_small_and_inflates_large() {
        let b = deflate_bomb(64 << 20);
        assert!(b.len() < 200_000, "{}", b.len());
        let meta = elements(&b);
        let last = meta.last().unwrap();
        let start = last.value_at + last.len as usize;
        let mut d = flate2::read::DeflateDecoder::new(&b[start..]);
        let n = std::io::copy(&mut d, &mut std::io::sink()).unwrap();
        assert!(n >= 63 << 20, "inflates to {n}");
    }

    #[test]
    fn walks_a_synthetic_file() {
        let mut v = vec![0u8; 128];
        v.extend_from_slice(b"DICM");
        v.extend(explicit_element(
            (0x0002, 0x0010),
            b"UI",
            b"1.2.840.10008.1.2.1\0",
        ));
        v.extend(explicit_element((0x0010, 0x0010), b"PN", b"Doe^"));
        v.extend(explicit_element((0x7FE0, 0x0010), b"OB", b"\0\0"));
        let els = elements(&v);
        assert_eq!(els.len(), 3);
        assert_eq!(els[1].tag, (0x0010, 0x0010));
        let cases = mutations(&v, &mut Rng::new(1), true, 0);
        assert!(cases.iter().any(|c| c.label.starts_with("truncate")));
        assert!(cases.iter().any(|c| c.label.starts_with("pixel-fragments")));
    }
}
