#!/usr/bin/env python3
"""Veil's adversarial free-text corpus: identifiers that no structured field spells out, planted
in the free text of real images (pydicom's and deid-data's test files: several transfer syntaxes,
an RT plan, a segmentation, an ECG, and files in ISO 2022 IR 87 / IR 13 / IR 149, GB18030,
Latin-1, Cyrillic), one identifier per file.

  make SRC_DIR CHARSET_DIR OUT_DIR     writes OUT_DIR/in/*.dcm and OUT_DIR/manifest.json
  check OUT_DIR RELEASED_DIR           which planted identifiers survive in released files
                                       (decoded text of every element, NFKC and case folded,
                                       and every byte of the file in the planted encodings);
                                       prints JSON {cases, released, survivors: [...]}
  inject OUT_DIR RELEASED_DIR INJECT_DIR
                                       puts each case's planted text back into its released file
                                       (what a cleaner that missed it would release), for the
                                       verifier; prints the number of files written

Each kind has several variants; the manifest lists for every case the fragments that must not
survive (each identifying on its own). Needs pydicom.
"""

import json
import os
import sys
import unicodedata

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

# (kind, planted text, fragments that must not survive)
CASES = [
    ("relative", "Mother Rosalind Kowalczyk called about the scan", ["Rosalind", "Kowalczyk"]),
    ("relative", "husband Mark visited, chest pain", ["Mark"]),
    ("relative", "daughter Grace Whitfield consented", ["Grace", "Whitfield"]),
    ("maiden_name", "nee Berger, chest follow up", ["Berger"]),
    ("surname_word", "reviewed by Dr Smith today", ["Smith"]),
    ("surname_word", "Chest film, seen by Dr White in clinic", ["White"]),
    ("surname_word", "mother Rose Stone called", ["Rose", "Stone"]),
    ("address", "lives at 12 Elm Street, Springfield", ["Elm Street", "Springfield", "12 Elm"]),
    ("address", "Hauptstraße 5, 93047 Regensburg", ["Hauptstraße", "93047", "Regensburg"]),
    ("address", "rue de la Paix 5, 69002 Lyon", ["Paix 5", "69002", "Lyon"]),
    ("address", "221B Baker Street, London NW1 6XE", ["Baker Street", "London", "NW1 6XE"]),
    ("phone", "call 09419 155 769 after", ["09419", "155 769"]),
    ("phone", "tel +49 9419 155769", ["9419", "155769"]),
    ("phone", "phone +44 20 7946 0958", ["7946", "0958"]),
    ("phone", "ring 0043 1 234 5678", ["234 5678", "0043"]),
    ("chart_number", "chart K-123-456-78 reviewed", ["123-456-78", "456"]),
    ("chart_number", "record 12-345-678 reviewed", ["12-345-678", "345"]),
    ("chart_number", "Chart No. 2019/44712", ["44712"]),
    ("date", "born 13th of February 1958", ["1958", "13th"]),
    ("date", "DOB 1958 02 13", ["1958"]),
    ("date", "DOB 13.II.1958", ["1958", "13.II"]),
    ("date", "DOB 1958-Feb-13", ["1958"]),
    ("date", "geboren am 13. Februar 1958", ["1958"]),
    ("date", "seen Feb 13 '58 in clinic", ["Feb 13", "'58"]),
    ("date", "study on the fifth of March 2019", ["fifth of March", "2019"]),
    ("age_over_89", "93 y.o. female, chest", ["93"]),
    ("age_over_89", "a 97-year-old woman", ["97"]),
    ("age_over_89", "aged 101, frail", ["101"]),
    ("age_over_89", "age: 95 years", ["95"]),
    ("email", "contact anna.schulze@example.de", ["anna.schulze", "example.de"]),
    ("url", "see www.schulze-family.de for details", ["schulze-family"]),
]

# Where text is planted: attribute keyword, or (sequence keyword, attribute keyword) for a nested
# one, with the base file it needs.
PLACES = [
    ("StudyDescription", None),
    ("SeriesDescription", None),
    ("ImageComments", None),
    ("PatientComments", None),
    ("AdditionalPatientHistory", None),
    ("AdmittingDiagnosesDescription", None),
    (("BeamSequence", "BeamDescription"), "rtplan.dcm"),
    (("SegmentSequence", "SegmentAlgorithmName"), "liver_1frame.dcm"),
    (("WaveformAnnotationSequence", "UnformattedTextValue"), "waveform_ecg.dcm"),
]

# Base images for top-level places, rotated: four transfer syntaxes.
BASES = ["CT_small.dcm", "MR_small_implicit.dcm", "MR_small_bigendian.dcm", "JPEG2000.dcm"]

# Names in other character sets, planted in Study Description of the charset samples (the
# patient's own name, in the script of the file, and one that is nobody's in the file).
CHARSET_CASES = [
    ("chrH31.dcm", "kanji_own_name", "頭部 CT 山田 太郎", ["山田", "太郎"]),
    ("chrJapMulti.dcm", "kana_own_name", "Chest やまだ たろう", ["やまだ", "たろう"]),
    ("chrH32.dcm", "katakana_own_name", "ﾔﾏﾀﾞ ﾀﾛｳ chest", ["ﾔﾏﾀﾞ", "ﾀﾛｳ"]),
    ("chrH31.dcm", "kanji_other_name", "CT 佐藤 花子 follow up", ["佐藤", "花子"]),
    ("chrI2.dcm", "hangul_own_name", "Chest 홍길동 follow up", ["홍길동"]),
    ("chrX2.dcm", "gb18030_own_name", "王小东 Chest CT", ["王小东"]),
    ("chrGerm.dcm", "latin1_upper_own_name", "RÜDIGER ÄNEAS chest", ["RÜDIGER", "ÄNEAS", "Rudiger", "Ruediger"]),
    ("chrFren.dcm", "latin1_accents_own_name", "JÉRÔME BUC chest", ["JÉRÔME", "BUC", "Jerome"]),
    ("chrRuss.dcm", "cyrillic_other_name", "chest Люкceмбypг Иванов", ["Иванов", "Люкceмбypг"]),
]


def fold(s):
    return unicodedata.normalize("NFKC", s).casefold()


def plant(ds, place, text):
    if isinstance(place, tuple):
        seq, kw = place
        if seq not in ds or len(ds[seq].value) == 0:
            ds.__setattr__(seq, Sequence([Dataset()]))
        setattr(ds[seq].value[0], kw, text)
    else:
        setattr(ds, place, text)


def unique(ds, name):
    """Each case its own instance (and study): the same source file planted twice is two
    different instances, not conflicting versions of one."""
    from pydicom.uid import generate_uid

    ds.SOPInstanceUID = generate_uid(entropy_srcs=["veil-adversarial", name])
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["veil-adversarial-study", name])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["veil-adversarial-series", name])
    if "MediaStorageSOPInstanceUID" in getattr(ds, "file_meta", {}):
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def make(src, charsets, out):
    os.makedirs(os.path.join(out, "in"), exist_ok=True)
    manifest = []
    n = 0
    for ci, (kind, text, fragments) in enumerate(CASES):
        for pi, (place, base) in enumerate(PLACES):
            # Every case in three places: one top-level rotation and two more spread over the
            # rest, so every place and every base sees every kind over the corpus.
            if (ci + pi) % 3 != 0:
                continue
            base = base or BASES[(ci + pi) % len(BASES)]
            ds = pydicom.dcmread(os.path.join(src, base))
            if base == "MR_small_bigendian.dcm":
                ds.SpecificCharacterSet = "ISO_IR 100"
            plant(ds, place, text)
            # The maiden name: half of the hyphenated birth name the file records.
            if kind == "maiden_name":
                ds.PatientBirthName = "Schulze-Berger^Anna"
            name = f"case{n:03d}.dcm"
            unique(ds, name)
            ds.save_as(os.path.join(out, "in", name), enforce_file_format=False)
            manifest.append({"file": name, "kind": kind, "base": base, "place": place, "text": text, "fragments": fragments})
            n += 1
    for base, kind, text, fragments in CHARSET_CASES:
        ds = pydicom.dcmread(os.path.join(charsets, base))
        ds.StudyDescription = text
        ds.ImageComments = "seen by " + text
        name = f"case{n:03d}.dcm"
        unique(ds, name)
        ds.save_as(os.path.join(out, "in", name), enforce_file_format=False)
        manifest.append({"file": name, "kind": kind, "base": base, "place": "StudyDescription", "text": text, "fragments": fragments})
        n += 1
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False)
    print(json.dumps({"cases": len(manifest), "kinds": len({m["kind"] for m in manifest})}))


def released_by_source(released):
    """Released files by the planted source they came from (Veil keeps no map in OUT: the
    manifest's marker text identifies them; here the SOP Instance UID of the source is unknown
    to the recipient, so files are matched by their content's planted place)."""
    files = []
    for root, dirs, names in os.walk(released):
        dirs[:] = [d for d in dirs if d != ".veil"]
        files += [os.path.join(root, n) for n in names if n.endswith(".dcm")]
    return sorted(files)


def texts(ds):
    out = []
    for elem in ds.iterall():
        if elem.VR in ("SH", "LO", "ST", "LT", "UT", "UC", "PN"):
            v = elem.value
            vals = v if isinstance(v, (list, pydicom.multival.MultiValue)) else [v]
            out += [str(x) for x in vals if x is not None]
    return out


def encodings(fragment):
    forms = {fragment, fragment.upper(), fragment.lower()}
    out = set()
    for f in forms:
        for enc in ("utf-8", "latin-1", "iso2022_jp", "euc_kr", "gb18030", "iso8859_5", "shift_jis"):
            try:
                b = f.encode(enc)
            except UnicodeEncodeError:
                continue
            if len(b) >= 4:
                out.add(b)
    return out


def strip_binary(ds):
    for elem in list(ds):
        if elem.VR == "SQ":
            for item in elem.value:
                strip_binary(item)
        elif elem.VR in ("OB", "OW", "OF", "OD", "OL", "OV", "UN"):
            del ds[elem.tag]


def check(out, released):
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    files = released_by_source(released)
    survivors = []
    decoded = []
    raw = []
    for f in files:
        ds = pydicom.dcmread(f)
        decoded.append(fold(" \n ".join(texts(ds))))
        # Every byte but the pixel data and other bulk binary values (where any 4 bytes occur
        # by chance), as the file encodes them.
        strip_binary(ds)
        import io
        buf = io.BytesIO()
        ds.save_as(buf, enforce_file_format=False)
        raw.append(buf.getvalue())
    for m in manifest:
        for frag in m["fragments"]:
            ff = fold(frag)
            # Short fragments (a 2-digit age, "93") only count in the decoded text of the same
            # kind of planted context: searched as whole words.
            import re
            word = re.compile(r"(?<![0-9a-z])" + re.escape(ff) + r"(?![0-9a-z])")
            hit_text = any(word.search(t) for t in decoded)
            if len(ff) < 4:
                # A short number survives only if it still sits in its planted words.
                ctx = [w for w in re.findall(r"[^\W\d_]{4,}", fold(m["text"])) if w != ff][:2]
                hit_text = any(word.search(t) and all(c in t for c in ctx) for t in decoded)
            # Whole words only: 4 digits occur inside every 2.25 UID by chance.
            byte_words = [
                re.compile(rb"(?<![0-9A-Za-z])" + re.escape(e.lower()) + rb"(?![0-9A-Za-z])")
                for e in encodings(frag)
            ]
            hit_bytes = any(w.search(r.lower()) for w in byte_words for r in raw)
            if hit_text or hit_bytes:
                survivors.append({"file": m["file"], "kind": m["kind"], "place": str(m["place"]), "fragment_chars": len(frag)})
    print(json.dumps({"cases": len(manifest), "released": len(files), "survivors": survivors}))


def inject(out, released, dest):
    """Each case's text back into a released file made from the same base, at its place."""
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    files = released_by_source(released)
    os.makedirs(dest, exist_ok=True)
    by_class = {}
    for f in files:
        ds = pydicom.dcmread(f)
        by_class.setdefault(str(ds.SOPClassUID), []).append((f, ds))
    n = 0
    for m in manifest:
        src = pydicom.dcmread(os.path.join(out, "in", m["file"]))
        candidates = by_class.get(str(src.SOPClassUID), [])
        if not candidates:
            continue
        f, _ = candidates[n % len(candidates)]
        ds = pydicom.dcmread(f)
        place = tuple(m["place"]) if isinstance(m["place"], list) else m["place"]
        if m["kind"].endswith("_name") and "own" in m["kind"] or m["base"].startswith("chr"):
            ds.SpecificCharacterSet = "ISO_IR 192"
        plant(ds, place, m["text"])
        ds.save_as(os.path.join(dest, m["file"]), enforce_file_format=False)
        n += 1
    print(n)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make":
        make(sys.argv[2], sys.argv[3], sys.argv[4])
    elif cmd == "check":
        check(sys.argv[2], sys.argv[3])
    elif cmd == "inject":
        inject(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        sys.exit(f"unknown command {cmd}")
