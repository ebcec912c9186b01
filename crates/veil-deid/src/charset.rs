//! Text in ISO 2022 code extensions: a Specific Character Set with several values
//! ("\ISO 2022 IR 87", "ISO 2022 IR 13\ISO 2022 IR 87", "\ISO 2022 IR 149"), whose values switch
//! character sets with escape sequences (PS3.5 6.1.2.5). The DICOM library reads such text byte
//! for byte as Latin-1; this turns the whole data set into UTF-8 (ISO_IR 192) before anything
//! else looks at it. The screen then sees names as written (山田, 홍길동), the allowlist judges real
//! words, and cleaning can never cut an escape sequence in half: the output has none.
//!
//! Fail closed: an escape sequence that is not a defined term of PS3.3 C.12.1.1.2, bytes that
//! are not valid in the set they are in, or text the library did not read byte for byte is a
//! [`CharsetError`], and the instance is held back.

use dicom_core::header::Header;
use dicom_core::value::{DataSetSequence, PrimitiveValue, Value};
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::mem::InMemElement;
use dicom_object::InMemDicomObject;
use encoding_rs::Encoding;

/// Why text could not be converted (no value in the message).
#[derive(Debug, thiserror::Error)]
#[error("text in character set `{charset}` cannot be decoded: {what}")]
pub struct CharsetError {
    pub charset: String,
    pub what: &'static str,
}

/// A graphic character set that G0 or G1 can hold.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Set {
    Ascii,
    /// JIS X 0201 katakana (ISO 2022 IR 13, G1).
    Katakana,
    /// JIS X 0208 (ISO 2022 IR 87, G0, two 7-bit bytes).
    Jis0208,
    /// JIS X 0212 (ISO 2022 IR 159, G0, two 7-bit bytes).
    Jis0212,
    /// A two-byte set in G1 read through an EUC encoding (KS X 1001, GB 2312).
    Euc(&'static Encoding),
    /// An ISO 8859 part (or TIS 620) in G1.
    Single(&'static Encoding),
    /// G1 not designated: bytes 0x80 and above are an error.
    None,
}

/// The G0 and G1 sets a value starts in, from the first value of Specific Character Set.
fn initial(first: &str) -> Option<(Set, Set)> {
    let single = |e| Some((Set::Ascii, Set::Single(e)));
    match first.trim() {
        "" | "ISO 2022 IR 6" => Some((Set::Ascii, Set::None)),
        "ISO 2022 IR 13" => Some((Set::Ascii, Set::Katakana)),
        "ISO 2022 IR 100" => single(encoding_rs::WINDOWS_1252),
        "ISO 2022 IR 101" => single(encoding_rs::ISO_8859_2),
        "ISO 2022 IR 109" => single(encoding_rs::ISO_8859_3),
        "ISO 2022 IR 110" => single(encoding_rs::ISO_8859_4),
        "ISO 2022 IR 126" => single(encoding_rs::ISO_8859_7),
        "ISO 2022 IR 127" => single(encoding_rs::ISO_8859_6),
        "ISO 2022 IR 138" => single(encoding_rs::ISO_8859_8),
        "ISO 2022 IR 144" => single(encoding_rs::ISO_8859_5),
        "ISO 2022 IR 148" => single(encoding_rs::WINDOWS_1254),
        "ISO 2022 IR 166" => single(encoding_rs::WINDOWS_874),
        _ => None,
    }
}

/// The set an escape sequence designates, and whether into G1 (else G0).
fn designation(seq: &[u8]) -> Option<(Set, bool)> {
    Some(match seq {
        b"(B" | b"(J" => (Set::Ascii, false),
        b")I" => (Set::Katakana, true),
        b"$B" => (Set::Jis0208, false),
        b"$(D" => (Set::Jis0212, false),
        b"$)C" => (Set::Euc(encoding_rs::EUC_KR), true),
        b"$)A" => (Set::Euc(encoding_rs::GBK), true),
        b"-A" => (Set::Single(encoding_rs::WINDOWS_1252), true),
        b"-B" => (Set::Single(encoding_rs::ISO_8859_2), true),
        b"-C" => (Set::Single(encoding_rs::ISO_8859_3), true),
        b"-D" => (Set::Single(encoding_rs::ISO_8859_4), true),
        b"-F" => (Set::Single(encoding_rs::ISO_8859_7), true),
        b"-G" => (Set::Single(encoding_rs::ISO_8859_6), true),
        b"-H" => (Set::Single(encoding_rs::ISO_8859_8), true),
        b"-L" => (Set::Single(encoding_rs::ISO_8859_5), true),
        b"-M" => (Set::Single(encoding_rs::WINDOWS_1254), true),
        b"-T" => (Set::Single(encoding_rs::WINDOWS_874), true),
        _ => return None,
    })
}

/// Decodes with `enc`, refusing malformed input.
fn strict(enc: &'static Encoding, bytes: &[u8]) -> Result<String, &'static str> {
    enc.decode_without_bom_handling_and_without_replacement(bytes)
        .map(|c| c.into_owned())
        .ok_or("bytes that are not valid in their character set")
}

/// Decodes one value's bytes. The sets return to their initial designation after each
/// delimiter of a person name component or line (PS3.5 6.1.2.5.3).
fn decode_value(bytes: &[u8], start: (Set, Set)) -> Result<String, &'static str> {
    let (mut g0, mut g1) = start;
    let mut out = String::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == 0x1B {
            let len = if bytes.get(i + 1) == Some(&b'$')
                && matches!(bytes.get(i + 2), Some(b'(' | b')'))
            {
                3
            } else {
                2
            };
            let seq = bytes
                .get(i + 1..i + 1 + len)
                .ok_or("a cut escape sequence")?;
            let (set, to_g1) =
                designation(seq).ok_or("an escape sequence that is not a defined term")?;
            if to_g1 {
                g1 = set;
            } else {
                g0 = set;
            }
            i += 1 + len;
            continue;
        }
        if matches!(b, b'^' | b'=' | b'\r' | b'\n' | b'\t' | 0x0C) {
            (g0, g1) = start;
            out.push(b as char);
            i += 1;
            continue;
        }
        if b < 0x80 {
            match g0 {
                Set::Jis0208 | Set::Jis0212 => {
                    let pair = bytes.get(i..i + 2).ok_or("half a two-byte character")?;
                    let mut euc = Vec::with_capacity(3);
                    if g0 == Set::Jis0212 {
                        euc.push(0x8F);
                    }
                    euc.extend(pair.iter().map(|c| c | 0x80));
                    out.push_str(&strict(encoding_rs::EUC_JP, &euc)?);
                    i += 2;
                }
                _ => {
                    out.push(b as char);
                    i += 1;
                }
            }
            continue;
        }
        match g1 {
            Set::Katakana if (0xA1..=0xDF).contains(&b) => {
                out.push(char::from_u32(0xFF61 + (b as u32 - 0xA1)).expect("half-width katakana"));
                i += 1;
            }
            Set::Euc(enc) => {
                let pair = bytes.get(i..i + 2).ok_or("half a two-byte character")?;
                out.push_str(&strict(enc, pair)?);
                i += 2;
            }
            Set::Single(enc) => {
                out.push_str(&strict(enc, &[b])?);
                i += 1;
            }
            _ => return Err("a byte above 0x7F with no set designated for it"),
        }
    }
    Ok(out)
}

/// The bytes the library read, back from its string: it decodes with the set of the first value
/// of Specific Character Set (ASCII plus Latin-1 when that is empty, JIS X 0201 for IR 13, the
/// ISO 8859 part otherwise), so each character maps back to one byte.
fn raw_bytes(text: &str, first_g1: Set) -> Result<Vec<u8>, &'static str> {
    const LOST: &str = "text the library did not read byte for byte";
    text.chars()
        .map(|c| {
            let u = c as u32;
            match first_g1 {
                _ if u < 0x80 => Ok(u as u8),
                Set::Katakana if (0xFF61..=0xFF9F).contains(&u) => Ok((u - 0xFF61 + 0xA1) as u8),
                Set::Single(enc) => {
                    let mut buf = [0u8; 4];
                    let (bytes, _, unmappable) = enc.encode(c.encode_utf8(&mut buf));
                    match (unmappable, bytes.as_ref()) {
                        (false, [b]) => Ok(*b),
                        _ => Err(LOST),
                    }
                }
                _ => u8::try_from(u).map_err(|_| LOST),
            }
        })
        .collect()
}

/// Does this data set use code extensions (several values of Specific Character Set)?
pub fn uses_code_extensions(obj: &InMemDicomObject) -> bool {
    obj.get(tags::SPECIFIC_CHARACTER_SET)
        .and_then(|e| e.to_str().ok())
        .is_some_and(|s| s.contains('\\'))
}

/// Converts a data set with code extensions to UTF-8 (ISO_IR 192); others are returned as
/// they are.
pub fn to_utf8(obj: InMemDicomObject) -> Result<InMemDicomObject, CharsetError> {
    if !uses_code_extensions(&obj) {
        return Ok(obj);
    }
    let charset = obj
        .get(tags::SPECIFIC_CHARACTER_SET)
        .and_then(|e| e.to_str().ok())
        .map(|s| s.to_string())
        .unwrap_or_default();
    let fail = |what| CharsetError {
        charset: charset.clone(),
        what,
    };
    let first = charset.split('\\').next().unwrap_or("");
    let start = initial(first).ok_or_else(|| fail("a first value that is not an ISO 2022 term"))?;
    convert(obj, start).map_err(fail)
}

fn convert(obj: InMemDicomObject, start: (Set, Set)) -> Result<InMemDicomObject, &'static str> {
    let mut out = Vec::new();
    for elem in obj {
        out.push(convert_element(elem, start)?);
    }
    Ok(InMemDicomObject::from_element_iter(out))
}

fn convert_element(elem: InMemElement, start: (Set, Set)) -> Result<InMemElement, &'static str> {
    let (tag, vr) = (elem.tag(), elem.vr());
    if tag == tags::SPECIFIC_CHARACTER_SET {
        return Ok(DataElement::new(
            tag,
            VR::CS,
            PrimitiveValue::from("ISO_IR 192"),
        ));
    }
    if let Value::Sequence(seq) = elem.value() {
        let items = seq
            .items()
            .iter()
            .cloned()
            .map(|item| convert(item, start))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(DataElement::new(tag, vr, DataSetSequence::from(items)));
    }
    if !matches!(
        vr,
        VR::SH | VR::LO | VR::ST | VR::LT | VR::UT | VR::UC | VR::PN
    ) {
        return Ok(elem);
    }
    let Ok(values) = elem.to_multi_str() else {
        return Ok(elem);
    };
    let decoded = values
        .iter()
        .map(|v| decode_value(&raw_bytes(v, start.1)?, start))
        .collect::<Result<Vec<String>, _>>()?;
    Ok(DataElement::new(
        tag,
        vr,
        PrimitiveValue::Strs(decoded.into_iter().collect()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAPANESE: (Set, Set) = (Set::Ascii, Set::None);

    #[test]
    fn japanese_person_name_in_three_forms() {
        // PS3.5 H.3.1 (chrH31.dcm): Yamada^Tarou=山田^太郎=やまだ^たろう
        let raw =
            b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B";
        assert_eq!(
            decode_value(raw, JAPANESE).unwrap(),
            "Yamada^Tarou=山田^太郎=やまだ^たろう"
        );
    }

    #[test]
    fn korean_in_g1_and_katakana() {
        // PS3.5 I.2 (chrI2.dcm): Hong^Gildong=洪^吉洞=홍^길동
        let raw = b"Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf";
        assert_eq!(
            decode_value(raw, JAPANESE).unwrap(),
            "Hong^Gildong=洪^吉洞=홍^길동"
        );
        let kana = decode_value(b"\xd4\xcf\xc0\xde", (Set::Ascii, Set::Katakana)).unwrap();
        assert_eq!(kana, "ﾔﾏﾀﾞ");
    }

    #[test]
    fn undefined_escapes_and_cut_characters_are_errors() {
        assert!(decode_value(b"\x1b$Z;3", JAPANESE).is_err());
        assert!(decode_value(b"\x1b$B;", JAPANESE).is_err());
        assert!(decode_value(b"caf\xe9", JAPANESE).is_err());
    }
}
