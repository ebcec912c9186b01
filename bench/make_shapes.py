"""Builds one benchmark corpus per corpus shape from real files, for scripts/bench-shapes.sh.

usage: make_shapes.py OUT_DIR [SCALE] [SHAPE...]   (default: every shape)

Shapes (counts at SCALE 1; each file gets its own SOP Instance UID, five instances per series,
and planted identifiers in the header: name, ID, birth date, accession, institution, physician):
  mr64      1,000  pydicom's MR_small (64x64 MR, 16-bit)
  ct128     1,000  pydicom's CT_small (128x128 CT, 16-bit)
  ct512       300  pydicom's 693_J2KI (a real 512x512 CT slice), decoded to native
  ct512-rle, ct512-jpegls, ct512-j2k   the same 300 files compressed losslessly (dcmtk's
                   dcmcrle and dcmcjpls, GDCM's gdcmconv --j2k): what decoding costs the screen
  sr          300  pydicom's SR documents (no pixel data)
  us-text      60  deid-data's ultrasound stills (burned-in text: every one goes to OCR)
  us-cine       6  deid-data's ultrasound cines (multi-frame, burned-in text)
Needs pydicom, numpy, and pylibjpeg-openjpeg for the JPEG 2000 source.
"""
import glob
import os
import subprocess
import sys
import zipfile

import pydicom
from pydicom.uid import ExplicitVRLittleEndian

root = os.path.dirname(os.path.abspath(__file__))
testdata = os.path.join(root, "..", "testdata")
out = sys.argv[1]
scale = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
only = set(sys.argv[3:])
UID_ROOT = "1.2.826.0.1.3680043.10.1139"
SURNAMES = ["Quixley", "Okonkwo", "Vandersloot", "Featherby", "Marchetti", "Lindqvist"]
GIVEN = ["Bernadette", "Tobias", "Imogen", "Clement", "Priya", "Osric"]


def plant(ds, shape, i):
    p = i // 25
    ds.PatientName = f"{SURNAMES[p % 6]}^{GIVEN[(p // 6) % 6]}"
    ds.PatientID = f"MRN{shape.upper().replace('-', '')}{p:05d}"
    ds.PatientBirthDate = f"19{40 + p % 50:02d}0{1 + p % 9}1{p % 9}"
    ds.AccessionNumber = f"ACC{p:06d}{i // 5 % 5}"
    ds.InstitutionName = "Saint Quixley Memorial"
    ds.ReferringPhysicianName = "Featherby^Osric"
    tag = {"mr64": 1, "ct128": 2, "ct512": 3, "sr": 4, "us-text": 5, "us-cine": 6}[shape]
    ds.StudyInstanceUID = f"{UID_ROOT}.{tag}.1.{i // 25}"
    ds.SeriesInstanceUID = f"{UID_ROOT}.{tag}.2.{i // 5}"
    ds.SOPInstanceUID = f"{UID_ROOT}.{tag}.3.{i}"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if "ImagePositionPatient" in ds:
        ds.ImagePositionPatient = [0.0, 0.0, 5.0 * (i % 5)]
        ds.InstanceNumber = i % 5 + 1


def wanted(shape):
    return not only or shape in only


def write(shape, sources, count):
    if not wanted(shape):
        return
    d = os.path.join(out, shape)
    os.makedirs(d, exist_ok=True)
    for i in range(count):
        ds = sources[i % len(sources)].copy()
        plant(ds, shape, i)
        ds.save_as(os.path.join(d, f"{i:05d}.dcm"), enforce_file_format=True)


def read(path):
    return pydicom.dcmread(path)


def native(path):
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    ds.PixelData = arr.tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    return ds


def n(k):
    return max(1, int(k * scale))


py = os.path.join(testdata, "pydicom")
us = os.path.join(testdata, "deid-data", "ultrasounds")
write("mr64", [read(os.path.join(py, "MR_small.dcm"))], n(1000))
write("ct128", [read(os.path.join(py, "CT_small.dcm"))], n(1000))
COMPRESSED = ("ct512-rle", "ct512-jpegls", "ct512-j2k")
if any(wanted(s) for s in COMPRESSED):
    only.add("ct512")  # the compressed shapes are made from it
write("ct512", [native(os.path.join(py, "693_J2KI.dcm"))], n(300))
for shape, tool in (("ct512-rle", ["dcmcrle"]), ("ct512-jpegls", ["dcmcjpls"]),
                    ("ct512-j2k", ["gdcmconv", "--j2k"])):
    if not wanted(shape):
        continue
    d = os.path.join(out, shape)
    os.makedirs(d, exist_ok=True)
    for f in sorted(os.listdir(os.path.join(out, "ct512"))):
        subprocess.run(tool + [os.path.join(out, "ct512", f), os.path.join(d, f)], check=True)
srs = []
for f in sorted(glob.glob(os.path.join(testdata, "**", "*.dcm"), recursive=True)) if wanted("sr") else ():
    try:
        ds = pydicom.dcmread(f)
    except Exception:
        continue
    if ds.get("Modality") == "SR" and ds.file_meta.get("TransferSyntaxUID"):
        srs.append(ds)
write("sr", srs, n(300))
if wanted("us-text"):
    write("us-text", [read(os.path.join(us, f)) for f in ("GREYSCALE_IMAGE.dcm", "RGB_IMAGE.dcm")], n(60))
cines = [read(os.path.join(us, "ultrasound-multiframe.dcm"))] if wanted("us-cine") else []
for z in ("GREYSCALE_CINE.zip", "RGB_CINE.zip") if wanted("us-cine") else ():
    with zipfile.ZipFile(os.path.join(us, z)) as zf:
        for name in zf.namelist():
            if name.endswith(".dcm"):
                tmp = os.path.join(out, "cine.tmp.dcm")
                with open(tmp, "wb") as f:
                    f.write(zf.read(name))
                cines.append(pydicom.dcmread(tmp))
                os.remove(tmp)
write("us-cine", cines, n(6))
