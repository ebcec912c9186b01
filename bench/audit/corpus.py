"""Builds the peer audit's planted-identifier corpus and the list of planted values.

usage: corpus.py VEIL_BIN WORK_DIR N_REAL

WORK_DIR/corpus/demo   `veil demo`'s synthetic export (CT series, SR reports, an ultrasound marked
                       Burned In Annotation YES, a stray text file; identifiers in standard tags,
                       sequences three deep, an unknown private block with a UN value, free text,
                       descriptors and file meta)
WORK_DIR/corpus/real   N_REAL real CT and MR slices from pydicom's test files with identifiers
                       planted by bench/make_corpus.py
WORK_DIR/planted.txt   every planted value, one a line (for the grep cross-check)
WORK_DIR/planted-kinds.tsv  the same values with their kind (name, id, birth date, contact,
                       institution/device, uid)

The planted values are read back from the corpus itself rather than copied from the generators'
sources, so the list follows the generators when they change: every name part (PN, at any depth),
the identifying attributes listed below, every UID outside the DICOM registry root, and every
e-mail address and phone number found in any text value, private values included.
"""
import os
import re
import shutil
import subprocess
import sys

import pydicom
from pydicom.errors import InvalidDicomError

# Identifying attributes whose whole value is planted, by kind (names come from every PN value,
# UIDs from every UI value outside the registry root).
KINDS = {
    "PatientID": "id", "OtherPatientIDs": "id", "AccessionNumber": "id",
    "RequestedProcedureID": "id", "ScheduledProcedureStepID": "id",
    "PatientBirthDate": "birth date",
    "PatientAddress": "contact", "PatientTelephoneNumbers": "contact",
    "InstitutionName": "institution/device", "StationName": "institution/device",
    "DeviceSerialNumber": "institution/device", "SourceApplicationEntityTitle": "institution/device",
}
EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
PHONE = re.compile(r"\b\d{3}-\d{3}-\d{4}\b")
REGISTRY_ROOT = "1.2.840.10008."


def text_of(elem):
    """Every string an element holds (multi-valued and UN values included), or nothing."""
    value = elem.value
    if isinstance(value, (bytes, bytearray)):
        return [value.decode("latin-1", "replace")] if elem.VR in ("UN", "OB") else []
    if isinstance(value, (list, pydicom.multival.MultiValue)):
        return [str(v) for v in value]
    return [] if value is None else [str(value)]


def planted_in(path):
    """The identifying values one DICOM file carries, each with its kind."""
    found = {}
    ds = pydicom.dcmread(path, force=False)
    elems = list(ds.file_meta.iterall()) + [e for e in ds.iterall() if e.tag != 0x7FE00010]
    for elem in elems:
        if elem.VR == "SQ":
            continue
        texts = text_of(elem)
        if elem.VR == "PN":
            for t in texts:
                found.update((p, "name") for p in re.split(r"[\^ =]", t) if len(p) > 2)
        elif elem.VR == "UI":
            found.update((t.strip("\0 "), "uid") for t in texts
                         if t.strip("\0 ") and not t.startswith(REGISTRY_ROOT) and elem.tag != 0x00020012)
        elif elem.keyword in KINDS:
            found.update((t.strip(), KINDS[elem.keyword]) for t in texts if len(t.strip()) > 2)
        for t in texts:
            found.update((v, "contact") for v in EMAIL.findall(t) + PHONE.findall(t))
    # The station name and AE title carry the hospital's short name.
    for v, kind in list(found.items()):
        if kind == "institution/device":
            for part in re.split(r"[-_ ]", v):
                if part.isalpha() and part.isupper() and len(part) > 5:
                    found[part] = kind
    return found


def kind_of(value):
    """Kind of a value bench/make_corpus.py planted that the file scan did not classify."""
    if re.fullmatch(r"[0-9.]+", value) and value.count(".") > 3:
        return "uid"
    if PHONE.fullmatch(value):
        return "contact"
    if re.fullmatch(r"[A-Z]{2,4}\d+", value):
        return "id"
    if value.lower() in ("ottoline",):
        return "institution/device"
    return "name"


def specific(value):
    """Whether a value is specific enough to search for: placeholders such as '----' or
    '000000000' in the real files' station fields would match unrelated bytes."""
    alnum = [c for c in value if c.isalnum()]
    if any(c.isalpha() for c in alnum):
        return len(alnum) >= 3
    return len(alnum) >= 6 and len(set(alnum)) >= 3


def main():
    veil, work, n_real = sys.argv[1], os.path.abspath(sys.argv[2]), int(sys.argv[3])
    here = os.path.dirname(os.path.abspath(__file__))
    corpus = os.path.join(work, "corpus")
    for d in (corpus, os.path.join(work, "real")):
        shutil.rmtree(d, ignore_errors=True)
    subprocess.run([veil, "demo", "--dir", os.path.join(work, "demo")], check=True,
                   stdout=subprocess.DEVNULL)
    shutil.copytree(os.path.join(work, "demo", "input", "export"), os.path.join(corpus, "demo"))
    subprocess.run([sys.executable, os.path.join(here, "..", "make_corpus.py"),
                    os.path.join(work, "real", "files"), str(n_real)], check=True)
    shutil.copytree(os.path.join(work, "real", "files"), os.path.join(corpus, "real"))

    planted = {}
    files = 0
    for dirpath, dirs, names in os.walk(corpus):
        dirs.sort()
        for name in sorted(names):
            files += 1
            path = os.path.join(dirpath, name)
            try:
                for v, kind in planted_in(path).items():
                    planted.setdefault(v, kind)
            except InvalidDicomError:
                pass  # the stray text file: its values are planted in DICOM files too
    with open(os.path.join(work, "real", "planted.txt")) as f:
        for v in (line.strip() for line in f):
            if v:
                planted.setdefault(v, kind_of(v))
    values = sorted(v for v in planted if specific(v))
    with open(os.path.join(work, "planted.txt"), "w") as f:
        f.write("".join(v + "\n" for v in values))
    with open(os.path.join(work, "planted-kinds.tsv"), "w") as f:
        f.write("".join(f"{v}\t{planted[v]}\n" for v in values))
    print(f"corpus: {files} files in {corpus}; {len(values)} planted values in {work}/planted.txt")


if __name__ == "__main__":
    main()
