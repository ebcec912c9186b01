"""Builds the de-identification benchmark corpus from real images.

usage: make_corpus.py OUT_DIR [N_FILES]

Pixel data comes from real scans shipped with pydicom's test files (CT_small.dcm, a 128x128 CT
slice, and MR_small.dcm, a 64x64 MR slice), enlarged by pixel repetition to 512x512 (CT) and
256x256 (MR) so that files have realistic sizes (~512 KB and ~128 KB). Every file carries planted
identifiers (patient name, ID, birth date, address, phone, accession, institution, physicians,
descriptors with the name in them, a private block of an unknown creator, a nested sequence), 40
patients x 5 studies x 2 series. The planted values are written to OUT_DIR/../planted.txt so the
benchmark can count leaks per tool.
"""
import os
import sys

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

root = os.path.dirname(os.path.abspath(__file__))
testdata = os.path.join(root, "..", "testdata", "pydicom")
out = sys.argv[1]
n_files = int(sys.argv[2]) if len(sys.argv) > 2 else 2000

sources = []
for name, scale in (("CT_small.dcm", 4), ("MR_small.dcm", 4)):
    ds = pydicom.dcmread(os.path.join(testdata, name))
    arr = ds.pixel_array
    big = np.kron(arr, np.ones((scale, scale), dtype=arr.dtype))
    sources.append((ds, big))

SURNAMES = ["Quixley", "Okonkwo", "Vandersloot", "Featherby", "Marchetti", "Lindqvist", "Abernathy",
            "Castellanos", "Thistlewood", "Nakagawa"]
GIVEN = ["Bernadette", "Tobias", "Imogen", "Clement", "Priya", "Osric", "Marisol", "Ewan"]

planted = set()
os.makedirs(out, exist_ok=True)
uid_root = "1.2.826.0.1.3680043.10.1138"
for i in range(n_files):
    patient = i % 40
    study = (i // 40) % 5
    series = (i // 200) % 2
    src, pixels = sources[i % 2]
    ds = src.copy()
    surname = SURNAMES[patient % len(SURNAMES)] + ("son" * (patient // len(SURNAMES)))
    given = GIVEN[patient % len(GIVEN)]
    pid = f"MRN{7700000 + patient * 131}"
    phone = f"617-555-{1000 + patient:04d}"
    acc = f"ACC{880000 + patient * 10 + study}"
    ds.PatientName = f"{surname}^{given}"
    ds.PatientID = pid
    ds.PatientBirthDate = f"19{40 + patient % 50:02d}0{1 + patient % 9}1{patient % 9}"
    ds.PatientAddress = f"{10 + patient} Larkspur Lane, Fallowfield"
    ds.PatientTelephoneNumbers = phone
    ds.AccessionNumber = acc
    ds.InstitutionName = "Saint Ottoline Memorial Hospital"
    ds.ReferringPhysicianName = "Abernathy^Clement^Dr"
    ds.OperatorsName = "Featherstonehaugh^Priya"
    ds.StudyDescription = f"CT CHEST {surname} follow-up"
    ds.ImageComments = f"{given} {surname} {pid} call {phone}"
    ds.StudyInstanceUID = f"{uid_root}.{patient}.{study}"
    ds.SeriesInstanceUID = f"{uid_root}.{patient}.{study}.{series}"
    ds.SOPInstanceUID = f"{uid_root}.{patient}.{study}.{series}.{i}"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyDate = f"2023{1 + study:02d}1{patient % 9}"
    item = Dataset()
    item.AccessionNumber = acc
    item.RequestedProcedureDescription = f"chest for {surname}"
    ds.RequestAttributesSequence = Sequence([item])
    block = ds.private_block(0x0011, "OTTOLINE PACS 2.1", create=True)
    block.add_new(0x01, "LO", f"{pid} {surname}")
    ds.Rows, ds.Columns = pixels.shape
    ds.PixelData = pixels.tobytes()
    for v in (surname, given, pid, phone, acc, "Ottoline", "Featherstonehaugh", ds.SOPInstanceUID,
              ds.StudyInstanceUID):
        planted.add(v)
    d = os.path.join(out, f"p{patient:03d}", f"s{study}")
    os.makedirs(d, exist_ok=True)
    ds.save_as(os.path.join(d, f"img{i:05d}.dcm"), enforce_file_format=True)

with open(os.path.join(out, "..", "planted.txt"), "w") as f:
    for v in sorted(planted):
        f.write(v + "\n")
