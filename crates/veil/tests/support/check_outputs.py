"""Checks veil deid outputs against their sources with pydicom (an independent reader).

usage: check_outputs.py SRC_DIR OUT_DIR
Prints one JSON object: how many outputs pydicom read, and for each output whether a source with
byte-identical PixelData and the same transfer syntax exists. Exit 0 always; the Rust test asserts.
"""
import hashlib
import json
import os
import sys

import pydicom


def walk(d):
    for root, dirs, files in os.walk(d):
        dirs[:] = [x for x in dirs if x != ".veil"]
        for f in files:
            yield os.path.join(root, f)


def pixel_key(ds):
    for tag in (0x7FE00010, 0x7FE00008, 0x7FE00009):
        if tag in ds:
            return hashlib.sha256(ds[tag].value).hexdigest()
    return None


src, out = sys.argv[1], sys.argv[2]
sources = {}
for p in walk(src):
    try:
        ds = pydicom.dcmread(p)
    except Exception:
        continue
    k = pixel_key(ds)
    if k:
        sources.setdefault(k, set()).add(str(ds.file_meta.get("TransferSyntaxUID", "")))

report = {"outputs": 0, "read_by_pydicom": 0, "with_pixels": 0, "pixels_match_a_source": 0,
          "same_transfer_syntax": 0, "unreadable": [], "pixel_mismatch": [],
          "pixels_cleaned": 0}
for p in walk(out):
    report["outputs"] += 1
    try:
        ds = pydicom.dcmread(p)
        ds.file_meta.TransferSyntaxUID
        report["read_by_pydicom"] += 1
    except Exception as e:  # noqa: BLE001
        report["unreadable"].append(os.path.relpath(p, out) + ": " + type(e).__name__)
        continue
    k = pixel_key(ds)
    if k is None:
        continue
    report["with_pixels"] += 1
    codes = {str(i.CodeValue) for i in ds.get("DeidentificationMethodCodeSequence", [])}
    if "113101" in codes:
        # The pixel stage redacted burned-in text: these pixels are meant to differ.
        report["pixels_cleaned"] += 1
        continue
    if k in sources:
        report["pixels_match_a_source"] += 1
        if str(ds.file_meta.TransferSyntaxUID) in sources[k]:
            report["same_transfer_syntax"] += 1
    else:
        report["pixel_mismatch"].append(os.path.relpath(p, out))
print(json.dumps(report))
