#!/usr/bin/env python3
"""Burns a file's own identifiers into its pixels, the way an adversarial corpus does: a CT or
MR that declares nothing (Burned In Annotation is removed, the modality is left as it is) with
the patient's name, ID and birth date drawn into the image.

Usage: scripts/burn-text.py IN OUT [--size PX] [--level 0-1] [--seed N]
                             [--name N^G --id ID --dob YYYYMMDD]   (set in the header first)

Three lines (name, "ID <patient id>", "DOB <birth date>") are drawn with DejaVu Sans at random
places (seeded) in the sample value `level` of the image's range. The output is native Explicit
VR Little Endian with a new SOP Instance UID (derived from the input's and the seed, so several
variants of one input can go through one run); convert it with dcmtk for other syntaxes.
Needs pydicom, numpy, pillow (and a decoder plugin for compressed inputs).
"""
import argparse
import hashlib
import random

import numpy as np
import pydicom
from PIL import Image, ImageDraw, ImageFont
from pydicom.uid import ExplicitVRLittleEndian

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("inp")
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=0, help="glyph size in px (0: rows/24, >= 10)")
    ap.add_argument("--level", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--name")
    ap.add_argument("--id")
    ap.add_argument("--dob")
    a = ap.parse_args()
    ds = pydicom.dcmread(a.inp)
    for kw, v in (("PatientName", a.name), ("PatientID", a.id), ("PatientBirthDate", a.dob)):
        if v:
            setattr(ds, kw, v)
    px = ds.pixel_array
    if px.ndim != 2:
        raise SystemExit(f"{a.inp}: only single-frame grey images are burned")
    rows, cols = px.shape
    size = a.size or max(10, rows // 24)
    font = ImageFont.truetype(FONT, size)
    name = str(ds.get("PatientName", "")).replace("^", " ").strip() or "DOE JOHN"
    lines = [name, f"ID {ds.get('PatientID', '')}".strip(), f"DOB {ds.get('PatientBirthDate', '')}".strip()]
    mask = Image.new("L", (cols, rows), 0)
    draw = ImageDraw.Draw(mask)
    rng = random.Random(a.seed)
    taken = []
    for text in lines:
        l, t, r, b = draw.textbbox((0, 0), text, font=font)
        w, h = r - l, b - t
        for _ in range(200):
            x = rng.randrange(2, max(3, cols - w - 2))
            y = rng.randrange(2, max(3, rows - h - 2))
            box = (x - 4, y - 4, x + w + 4, y + h + 4)
            if all(box[2] < o[0] or o[2] < box[0] or box[3] < o[1] or o[3] < box[1] for o in taken):
                taken.append(box)
                draw.text((x - l, y - t), text, fill=255, font=font)
                break
    lo, hi = int(px.min()), int(px.max())
    value = lo + a.level * (hi - lo)
    cov = np.asarray(mask, dtype=np.float64) / 255.0
    out = np.round(px * (1 - cov) + value * cov).astype(px.dtype)
    ds.PixelData = out.tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    for kw in ("BurnedInAnnotation", "NumberOfFrames"):
        if kw in ds:
            delattr(ds, kw)
    digest = hashlib.sha256(f"{ds.SOPInstanceUID}/{a.seed}".encode()).hexdigest()
    uid = "2.25." + str(int(digest[:30], 16))
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.save_as(a.out, enforce_file_format=True)


if __name__ == "__main__":
    main()
