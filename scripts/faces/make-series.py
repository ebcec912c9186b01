#!/usr/bin/env python3
"""Builds real head CT and MR DICOM series (Part 10, one file per slice) for testing defacing.

Usage: scripts/faces/make-series.py OUTDIR [--cases a,b,...] [--bench] [--src DIR] [--list]

Sources (fetched by scripts/faces/fetch.sh into testdata/faces/src/):
  mean_reg2mean.nii.gz, facemask.nii.gz   pydeface 2.1.0's average T1 head and its face mask
                                          (same grid; the mask is 1 = keep, 0 = face)
  Cranium.inv3                            InVesalius' example head CT (invesalius-examples)
  ch2.nii.gz, ch2bet.nii.gz               Colin27 T1 and its brain (mricron-data)

Every case is written to OUTDIR/<case>/dicom/ (file names are hashes, not slice order) with
OUTDIR/<case>/truth.json beside it and the masks as .npy uint8 arrays in volume order
[slice, row, col]: slices sorted ascending by dot(ImagePositionPatient, normal) with
normal = cross(row direction, column direction) from ImageOrientationPatient.

Coordinates are DICOM patient coordinates (LPS): +x = patient left, +y = posterior,
+z = superior. NIfTI affines are RAS, so their x and y rows are negated.

Orientation of the sources (checked by rendering them; see the notes in truth.json):
  * mean_reg2mean / facemask: NIfTI i -> R, j -> A, k -> S (a ~3 degree rotation in the affine,
    which is kept: the series is very slightly oblique, as the data really is).
  * ch2 / ch2bet: i -> R, j -> A, k -> S, axis aligned, 1 mm.
  * Cranium.inv3 matrix.dat: int16 [108, 256, 256] = [slice, row, col], values are already
    Hounsfield units (air -1024/-1000, soft tissue 10..80, bone > 300; no offset).
    By looking at the data: slice 0 is at the level of the maxillary teeth and slice 107 is
    the vertex, so slice index increases to SUPERIOR; row index increases to ANTERIOR
    (the face, teeth and nose are at high rows, the curved head rest behind the occiput at
    low rows: InVesalius flipped the rows on import); column index is taken to increase to
    the patient's LEFT (the radiological convention; left/right cannot be told from the
    anatomy). The rows are flipped when writing so the images have the usual display
    (anterior at the top, IOP 1\\0\\0\\0\\1\\0).
Masks: facemask.npy is 1 on the FACE (the voxels pydeface zeroes, i.e. 1 - pydeface's mask);
brain.npy is 1 on the brain.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import nibabel as nib
from scipy import ndimage
from scipy.spatial import ConvexHull, Delaunay
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.valuerep import DSfloat
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

ROOT = Path(__file__).resolve().parents[2]
UID_ROOT = "veil-faces-v1"
CT_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_STORAGE = "1.2.840.10008.5.1.4.1.1.4"
TS = {
    "explicit": (str(ExplicitVRLittleEndian), "Explicit VR Little Endian"),
    "implicit": (str(ImplicitVRLittleEndian), "Implicit VR Little Endian"),
    "jls": ("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless"),
    "rle": ("1.2.840.10008.1.2.5", "RLE Lossless"),
    "j2k": ("1.2.840.10008.1.2.4.90", "JPEG 2000 Lossless"),
    "jpeg-sv1": ("1.2.840.10008.1.2.4.70", "JPEG Lossless SV1"),
}
BASE_CASES = ["avghead-mr", "avghead-mr-jls", "cranium-ct", "cranium-ct-rle", "cranium-ct-oblique",
              "cranium-ct-tilt",
              "colin-mr", "colin-mr-j2k", "avghead-mr-gap", "broken-mixed-orientation",
              "broken-duplicate-position", "broken-missing-position", "head-localizer"]
BENCH_CASES = ["bench-mr256", "bench-ct300"]


def uid(*parts):
    """A deterministic 2.25 UID from the fixed root and the given parts."""
    h = hashlib.sha256("/".join([UID_ROOT, *map(str, parts)]).encode()).digest()
    return "2.25." + str(int.from_bytes(h[:16], "big"))


def ds_num(v):
    return DSfloat(float(v), auto_format=True)


# --------------------------------------------------------------------------------------------
# Volumes with DICOM geometry


class Vol:
    """data[slice, row, col]; row_cos = direction of increasing column index (IOP[0:3]),
    col_cos = direction of increasing row index (IOP[3:6]); origin = LPS centre of voxel
    [0, 0, 0]; spacing = (between slices, between rows, between columns) in mm. Slices go
    along +normal = cross(row_cos, col_cos)."""

    def __init__(self, data, row_cos, col_cos, origin, spacing, masks=None):
        self.data = data
        self.row_cos = np.asarray(row_cos, float)
        self.col_cos = np.asarray(col_cos, float)
        self.origin = np.asarray(origin, float)
        self.spacing = tuple(float(s) for s in spacing)
        self.masks = masks or {}

    @property
    def normal(self):
        return np.cross(self.row_cos, self.col_cos)

    def ipp(self, k):
        return self.origin + k * self.spacing[0] * self.normal

    def lps_affine(self):
        """4x4 from (slice, row, col) index to LPS mm."""
        m = np.eye(4)
        m[:3, 0] = self.normal * self.spacing[0]
        m[:3, 1] = self.col_cos * self.spacing[1]
        m[:3, 2] = self.row_cos * self.spacing[2]
        m[:3, 3] = self.origin
        return m

    def to_nifti(self, data=None):
        """NIfTI (RAS) image of data (default self.data) with i = col, j = row, k = slice."""
        d = self.data if data is None else data
        a = self.lps_affine()[:, [2, 1, 0, 3]]
        a[:2, :] *= -1
        return nib.Nifti1Image(np.ascontiguousarray(d.transpose(2, 1, 0)), a)


def orthonormal(m):
    u, _, vt = np.linalg.svd(m)
    return u @ vt


def vol_from_lps(data, aff, masks=None):
    """data indexed [a0, a1, a2] with a 4x4 index->LPS affine. Reorders the axes so that the
    columns go to +x (left), the rows to +y (posterior) and the slices along the normal
    (≈ +z, superior): the usual axial display, slices ascending."""
    masks = masks or {}
    lens = np.linalg.norm(aff[:3, :3], axis=0)
    dirs = orthonormal(aff[:3, :3] / lens)
    # which source axis feeds x (cols), y (rows), z (slices)
    order = []
    for t in (2, 1, 0):  # slice<-z, row<-y, col<-x
        cands = [a for a in range(3) if a not in order]
        order.append(max(cands, key=lambda a: abs(dirs[t, a])))
    arrs = {"": data, **masks}
    arrs = {k: np.transpose(v, order) for k, v in arrs.items()}
    origin = aff[:3, 3].copy()
    d = [dirs[:, a].copy() for a in order]
    sp = [lens[a] for a in order]
    shape = arrs[""].shape

    def flip(ax):
        nonlocal origin
        origin = origin + (shape[ax] - 1) * sp[ax] * d[ax]
        d[ax] = -d[ax]
        for k in arrs:
            arrs[k] = np.flip(arrs[k], ax)

    if d[2][0] < 0:
        flip(2)
    if d[1][1] < 0:
        flip(1)
    if np.dot(np.cross(d[2], d[1]), d[0]) < 0:
        flip(0)
    arrs = {k: np.ascontiguousarray(v) for k, v in arrs.items()}
    data = arrs.pop("")
    return Vol(data, d[2], d[1], origin, sp, arrs)


def nifti_lps(path):
    img = nib.load(str(path))
    aff = img.affine.copy()
    aff[:2, :] *= -1  # RAS -> LPS
    return np.asanyarray(img.dataobj), aff


def rot_x(deg):
    t = np.deg2rad(deg)
    c, s = np.cos(t), np.sin(t)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


# --------------------------------------------------------------------------------------------
# Sources


class Sources:
    def __init__(self, src):
        self.src = Path(src)
        self._cache = {}

    def get(self, name):
        if name not in self._cache:
            self._cache[name] = getattr(self, "_" + name)()
        return self._cache[name]

    def _avghead(self):
        data, aff = nifti_lps(self.src / "mean_reg2mean.nii.gz")
        keep, _ = nifti_lps(self.src / "facemask.nii.gz")
        face = (np.asarray(keep) < 0.5).astype(np.uint8)
        v = vol_from_lps(np.clip(np.asarray(data), 0, None).astype(np.uint16), aff, {"facemask": face})
        v.aff_src = aff
        v.src_data = np.asarray(data, np.float32)
        v.src_keep = np.asarray(keep, np.float32)
        return v

    def _cranium(self):
        with tarfile.open(self.src / "Cranium.inv3") as t:
            m = next(x for x in t.getmembers() if x.name.endswith("/matrix.dat"))
            raw = t.extractfile(m).read()
        hu = np.frombuffer(raw, "<i2").reshape(108, 256, 256)
        sxy, sz = 0.9570312, 1.5
        # native axes: slice -> +z (superior), row -> -y (anterior), col -> +x (left)
        aff = np.eye(4)
        aff[:3, 0] = [0, 0, sz]
        aff[:3, 1] = [0, -sxy, 0]
        aff[:3, 2] = [sxy, 0, 0]
        # isocentre-like origin: centred in x/y, table position in z
        aff[:3, 3] = [-127.5 * sxy, 127.5 * sxy, -120.0]
        v = vol_from_lps(hu.astype(np.int16), aff)
        v.masks["brain"] = ct_brain_mask(v.data)
        return v

    def _colin(self):
        data, aff = nifti_lps(self.src / "ch2.nii.gz")
        bet, _ = nifti_lps(self.src / "ch2bet.nii.gz")
        # Cut above the eyes so no face is left: the eyeballs end at k ~ 49 (z ~ -22) and the
        # orbital roofs at k ~ 53; keep k >= 62 (z >= -9 mm in ch2's space).
        k0 = 62
        data = np.asarray(data)[:, :, k0:]
        bet = (np.asarray(bet)[:, :, k0:] > 0).astype(np.uint8)
        aff = aff.copy()
        aff[:3, 3] += k0 * aff[:3, 2]
        return vol_from_lps(data.astype(np.uint16), aff, {"brain": bet})


def ct_brain_mask(hu):
    """Brain of a head CT [slice, row, col] in HU.

    The skull (largest 3D component of bone > 300 HU; this excludes the head rest) is not a
    closed ring in Cranium.inv3 (a large bone defect at the right frontal bone and thin bone by
    the frontal sinus), so binary_fill_holes of the ring leaks; each axial slice's convex hull
    of the skull is used as "inside" instead. Brain = inside & not bone & 3x3 in-plane mean in
    -20..100 HU (this scanner's brain is noisy and low: median ~14 HU), eroded by 3 voxels
    (cuts the nose, orbits and most of the skull base off), largest 3D component, dilated back
    by 3 within the candidates, holes filled per slice. Approximate at the foramen magnum
    (keeps the upper cervical cord and a little tissue around it)."""
    bone = hu > 300
    st = ndimage.generate_binary_structure(3, 1)
    lab, _ = ndimage.label(bone, st)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    skull = lab == sizes.argmax()
    rows, cols = hu.shape[1:]
    grid = np.stack(np.indices((rows, cols)), -1).reshape(-1, 2)
    inside = np.zeros_like(bone)
    for k in range(hu.shape[0]):
        p = np.argwhere(skull[k])
        if len(p) < 10:
            continue
        try:
            hull = ConvexHull(p)
        except Exception:  # degenerate (collinear) slice
            continue
        inside[k] = (Delaunay(p[hull.vertices]).find_simplex(grid) >= 0).reshape(rows, cols)
    mean = ndimage.uniform_filter(hu.astype(np.float32), (1, 3, 3))
    cand = inside & ~bone & (mean >= -20) & (mean <= 100)
    er = ndimage.binary_erosion(cand, st, iterations=3)
    lab, n = ndimage.label(er, st)
    if n == 0:
        return np.zeros(hu.shape, np.uint8)
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    brain = ndimage.binary_dilation(lab == sizes.argmax(), st, iterations=3) & cand
    brain = np.array([ndimage.binary_fill_holes(b) for b in brain])
    return brain.astype(np.uint8)


# --------------------------------------------------------------------------------------------
# Headers

PATIENTS = {
    "avghead": dict(PatientName="KOWALSKI^ANNA^MARIA", PatientID="MRN40411873", PatientBirthDate="19790314",
                    PatientSex="F", PatientAge="045Y", PatientWeight="63", AccessionNumber="A20240917113",
                    InstitutionName="St. Olave Regional Hospital", InstitutionAddress="12 Harbour Road, Kingsbridge",
                    ReferringPhysicianName="NAKAMURA^KENJI^^DR", StudyDate="20240917", StudyTime="081533",
                    StudyID="4471", StudyDescription="MR BRAIN WO CONTRAST", StationName="MRI3T-EAST",
                    Manufacturer="SIEMENS", ManufacturerModelName="Prisma", DeviceSerialNumber="166042",
                    OperatorsName="OKAFOR^CHIDI"),
    "cranium": dict(PatientName="SILVA^JOAO^CARLOS", PatientID="0051-22873", PatientBirthDate="19620703",
                    PatientSex="M", PatientAge="050Y", PatientWeight="81", AccessionNumber="CT12091400051",
                    InstitutionName="Hospital Santa Clara", InstitutionAddress="Rua das Flores 210, Campinas",
                    ReferringPhysicianName="PEREIRA^MARCOS^^DR", StudyDate="20120914", StudyTime="151208",
                    StudyID="51", StudyDescription="CT HEAD WO CONTRAST", StationName="CTSCAN02",
                    Manufacturer="GE MEDICAL SYSTEMS", ManufacturerModelName="LightSpeed16",
                    DeviceSerialNumber="CT99207", OperatorsName="ALMEIDA^RITA"),
    "colin": dict(PatientName="HOLMES^COLIN", PatientID="MNI-000027", PatientBirthDate="19680405",
                  PatientSex="M", PatientAge="030Y", PatientWeight="75", AccessionNumber="MN98000027",
                  InstitutionName="Montreal Neurological Institute", InstitutionAddress="3801 University St, Montreal",
                  ReferringPhysicianName="EVANS^ALAN^^DR", StudyDate="19980212", StudyTime="103000",
                  StudyID="27", StudyDescription="MR HEAD RESEARCH T1", StationName="MNI-GYRO",
                  Manufacturer="Philips Medical Systems", ManufacturerModelName="Gyroscan",
                  DeviceSerialNumber="PMS0815", OperatorsName="COLLINS^LOUIS"),
}


def header(case, patient, modality, series_desc, body_part, image_type="ORIGINAL\\PRIMARY\\AXIAL",
           window=(40, 80), series_number=3):
    p = PATIENTS[patient]
    h = dict(p)
    h.update(
        Modality=modality,
        StudyInstanceUID=uid(patient, "study"),
        SeriesInstanceUID=uid(case, "series"),
        FrameOfReferenceUID=uid(case, "for"),
        SeriesNumber=str(series_number),
        SeriesDescription=series_desc,
        SeriesDate=p["StudyDate"], SeriesTime=p["StudyTime"],
        AcquisitionDate=p["StudyDate"], ContentDate=p["StudyDate"],
        ContentTime=p["StudyTime"], AcquisitionTime=p["StudyTime"],
        BodyPartExamined=body_part,
        ImageType=image_type,
        **({"Laterality": ""} if not body_part else {}),
        PatientPosition="HFS",
        PositionReferenceIndicator="",
        WindowCenter=str(window[0]), WindowWidth=str(window[1]),
        SOPClassUID=CT_STORAGE if modality == "CT" else MR_STORAGE,
        AcquisitionNumber="1",
    )
    if modality == "CT":
        h.update(KVP="120", ConvolutionKernel="STANDARD", XRayTubeCurrent="220", ExposureTime="1000",
                 GantryDetectorTilt="0", RescaleType="HU", ScanOptions="HELICAL MODE")
    else:
        h.update(ScanningSequence="GR\\IR", SequenceVariant="SP\\MP", ScanOptions="", MRAcquisitionType="3D",
                 RepetitionTime="2300", EchoTime="2.98", InversionTime="900", EchoTrainLength="1",
                 FlipAngle="9", MagneticFieldStrength="3", ImagedNucleus="1H", SequenceName="*tfl3d1_16ns",
                 ProtocolName="t1_mprage_sag_p2_iso", ImagingFrequency="123.25")
    return h


def make_ds(h, idx, pixels, ipp, row_cos, col_cos, spacing_rc, thickness, ct):
    """One image's dataset. pixels: 2D array of stored values (uint16)."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    for k, v in h.items():
        if k in ("WindowCenter", "WindowWidth", "PatientWeight", "KVP", "RepetitionTime", "EchoTime",
                 "InversionTime", "FlipAngle", "MagneticFieldStrength", "ImagingFrequency", "GantryDetectorTilt",
                 "ExposureTime"):
            setattr(ds, k, ds_num(v))
        elif k in ("SeriesNumber", "AcquisitionNumber", "EchoTrainLength", "XRayTubeCurrent"):
            setattr(ds, k, int(v))
        elif k == "ImageType":
            ds.ImageType = v.split("\\")
        elif k in ("ScanningSequence", "SequenceVariant") and "\\" in v:
            setattr(ds, k, v.split("\\"))
        else:
            setattr(ds, k, v)
    sop = uid(h["SeriesInstanceUID"], "sop", idx)
    ds.SOPInstanceUID = sop
    ds.InstanceNumber = idx + 1
    ds.InstanceCreationDate = h["StudyDate"]
    ds.InstanceCreationTime = h["StudyTime"]
    if ipp is not None:
        ds.ImagePositionPatient = [ds_num(round(x, 4)) for x in ipp]
        ds.SliceLocation = ds_num(round(float(np.dot(ipp, np.cross(row_cos, col_cos))), 4))
    ds.ImageOrientationPatient = [ds_num(round(x, 6)) for x in list(row_cos) + list(col_cos)]
    ds.PixelSpacing = [ds_num(round(spacing_rc[0], 6)), ds_num(round(spacing_rc[1], 6))]
    ds.SliceThickness = ds_num(round(thickness, 4))
    if not ct:
        ds.SpacingBetweenSlices = ds_num(round(thickness, 4))
    px = np.ascontiguousarray(pixels, dtype=np.uint16)
    mx = int(px.max()) if px.size else 0
    bits = max(12, mx.bit_length())
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = px.shape
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if ct:
        ds.RescaleIntercept = ds_num(-1024)
        ds.RescaleSlope = ds_num(1)
    ds.PixelData = px.tobytes()
    ds["PixelData"].VR = "OW"
    return ds


def save(ds, path, ts_uid):
    fm = FileMetaDataset()
    fm.MediaStorageSOPClassUID = ds.SOPClassUID
    fm.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    fm.TransferSyntaxUID = ts_uid
    fm.ImplementationClassUID = "1.2.826.0.1.3680043.10.1471.1"
    fm.ImplementationVersionName = "VEILFACES1"
    ds.file_meta = fm
    ds.save_as(path, enforce_file_format=True)


def fname(case, sop):
    return "IM_" + hashlib.sha1((case + sop).encode()).hexdigest()[:16].upper()


# --------------------------------------------------------------------------------------------
# Writing a case


def compress(tool, src, dst):
    if tool == "jls":
        cmd = ["dcmcjpls", "--encode-lossless", src, dst]
    elif tool == "rle":
        cmd = ["dcmcrle", src, dst]
    elif tool == "jpeg-sv1":
        cmd = ["dcmcjpeg", "--encode-lossless-sv1", src, dst]
    elif tool == "j2k":
        cmd = ["gdcmconv", "--j2k", src, dst]
    else:
        raise ValueError(tool)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.unlink(src)


def write_images(outdir, case, images, ts):
    """images: list of dicts(ds=Dataset). ts: key of TS."""
    dicom = outdir / "dicom"
    if dicom.exists():
        shutil.rmtree(dicom)
    dicom.mkdir(parents=True)
    ts_uid = TS[ts][0]
    jobs = []
    for ds in images:
        name = fname(case, ds.SOPInstanceUID)
        if ts in ("explicit", "implicit"):
            save(ds, dicom / name, ts_uid)
        else:
            tmp = dicom / (name + ".tmp")
            save(ds, tmp, TS["explicit"][0])
            jobs.append((str(tmp), str(dicom / name)))
    if jobs:
        with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as ex:
            list(ex.map(lambda j: compress(ts, *j), jobs))
    return len(images)


def series_images(vol, h, ct, keep=None, pixel_fn=None):
    """Datasets of every slice of vol (or only the slice indices in keep)."""
    out = []
    idxs = range(vol.data.shape[0]) if keep is None else keep
    for n, k in enumerate(idxs):
        px = vol.data[k]
        if ct:
            px = px.astype(np.int32) + 1024
        out.append(make_ds(h, n, px, vol.ipp(k), vol.row_cos, vol.col_cos, vol.spacing[1:], vol.spacing[0], ct))
    return out


def write_truth(outdir, case, **kw):
    t = {"case": case}
    t.update(kw)
    ts = kw.get("transfer_syntax")
    if ts:
        t["transfer_syntax"], t["transfer_syntax_name"] = TS[ts]
    t.setdefault("volume_order", "[slice, row, col]; slices ascending by dot(ImagePositionPatient, "
                 "cross(IOP[0:3], IOP[3:6])); coordinates DICOM LPS")
    (outdir / "truth.json").write_text(json.dumps(t, indent=2) + "\n")


def save_masks(outdir, masks, meanings):
    out = {}
    for name, m in masks.items():
        np.save(outdir / f"{name}.npy", np.ascontiguousarray(m, dtype=np.uint8))
        out[name] = {"path": f"{name}.npy", "shape": list(m.shape), "voxels": int(m.sum()),
                     "meaning": meanings[name]}
    return out


MEANING = {
    "facemask": "1 = face (the voxels pydeface 2.1.0's facemask.nii.gz zeroes: 1 - that mask), same voxel grid",
    "brain": "1 = brain",
}
NOTES = {
    "avghead": "pydeface 2.1.0 mean_reg2mean.nii.gz (NIfTI i->R, j->A, k->S; affine has a ~3 deg rotation "
               "which the IOP keeps). Face toward -y (anterior, image top), vertex toward +z.",
    "cranium": "InVesalius Cranium.inv3 matrix.dat int16 [108,256,256], already HU (no offset). Native slice "
               "index -> superior (slice 0 at the maxillary teeth, 107 at the vertex), native row -> anterior "
               "(rows flipped on writing, so image row increases to posterior), column -> patient left "
               "(assumed; radiological convention). Stored = HU + 1024, RescaleIntercept -1024, slope 1.",
    "colin": "mricron-data ch2.nii.gz (Colin27 T1, 1 mm; i->R, j->A, k->S), cut to k >= 62 (z >= -9 mm) "
             "above the orbits so no face is left; brain from ch2bet.nii.gz > 0.",
}


def build_case(case, out, S):
    od = out / case
    od.mkdir(parents=True, exist_ok=True)
    for f in od.glob("*.npy"):
        f.unlink()
    info = dict(released=True)
    if case in ("avghead-mr", "avghead-mr-jls", "avghead-mr-gap"):
        v = S.get("avghead")
        body = "" if case == "avghead-mr-jls" else "HEAD"
        ts = {"avghead-mr": "explicit", "avghead-mr-jls": "jls", "avghead-mr-gap": "explicit"}[case]
        h = header(case, "avghead", "MR", "T1 MPRAGE AX", body, window=(300, 600))
        keep = list(range(v.data.shape[0]))
        removed = []
        masks = dict(v.masks)
        if case == "avghead-mr-gap":
            zs = np.nonzero(v.masks["facemask"].any(axis=(1, 2)))[0]
            mid = (int(zs.min()) + int(zs.max())) // 2
            removed = [mid - 12, mid, mid + 12]
            keep = [k for k in keep if k not in removed]
            masks = {k: m[keep] for k, m in masks.items()}
        n = write_images(od, case, series_images(v, h, False, keep), ts)
        extra = {"removed_slices": removed, "removed_note": "indices in the full 256-slice volume"} if removed else {}
        write_truth(od, case, modality="MR", transfer_syntax=ts, expected="released", has_face=True,
                    files=n, shape=[len(keep), *v.data.shape[1:]], body_part=body, source=NOTES["avghead"],
                    masks=save_masks(od, masks, MEANING), **extra)
    elif case in ("cranium-ct", "cranium-ct-rle", "cranium-ct-oblique"):
        v = S.get("cranium")
        ts = {"cranium-ct": "implicit", "cranium-ct-rle": "rle", "cranium-ct-oblique": "explicit"}[case]
        body = "CHEST" if case == "cranium-ct-rle" else "HEAD"
        desc = "HEAD 5.0 H30s OBLIQUE" if case == "cranium-ct-oblique" else "HEAD 1.5 STANDARD"
        h = header(case, "cranium", "CT", desc, body, window=(40, 80))
        extra = {}
        if case == "cranium-ct-oblique":
            r = rot_x(15.0)
            centre = v.origin + v.lps_affine()[:3, :3] @ (np.array(v.data.shape) - 1) / 2
            origin = r @ (v.origin - centre) + centre
            v = Vol(v.data, r @ v.row_cos, r @ v.col_cos, origin, v.spacing, v.masks)
            h["GantryDetectorTilt"] = "0"
            extra = {"rotation": "whole volume rotated +15 deg about the patient x axis around its centre"}
        n = write_images(od, case, series_images(v, h, True), ts)
        write_truth(od, case, modality="CT", transfer_syntax=ts, expected="released", has_face=True, files=n,
                    shape=list(v.data.shape), body_part=body, source=NOTES["cranium"],
                    hu="stored = HU + 1024 (uint16, BitsStored 12); RescaleIntercept -1024, RescaleSlope 1",
                    masks=save_masks(od, v.masks, MEANING), **extra)
    elif case == "cranium-ct-tilt":
        build_tilted(case, od, S.get("cranium"))
    elif case in ("colin-mr", "colin-mr-j2k"):
        v = S.get("colin")
        ts = "explicit" if case == "colin-mr" else (
            "j2k" if shutil.which("gdcmconv") else "jpeg-sv1")
        h = header(case, "colin", "MR", "T1 3D FFE AX", "HEAD", window=(100, 200))
        n = write_images(od, case, series_images(v, h, False), ts)
        write_truth(od, case, modality="MR", transfer_syntax=ts, expected="released", has_face=False, files=n,
                    shape=list(v.data.shape), body_part="HEAD", source=NOTES["colin"],
                    masks=save_masks(od, v.masks, MEANING))
    elif case.startswith("broken-"):
        v = S.get("avghead")
        h = header(case, "avghead", "MR", "T1 MPRAGE AX", "HEAD", window=(300, 600))
        imgs = series_images(v, h, False)
        mid = v.data.shape[0] // 2
        if case == "broken-mixed-orientation":
            r = rot_x(20.0)
            bad = [mid - 30, mid - 29, mid + 10, mid + 40]
            for k in bad:
                rc, cc = r @ v.row_cos, r @ v.col_cos
                imgs[k].ImageOrientationPatient = [ds_num(round(x, 6)) for x in list(rc) + list(cc)]
            why = f"slices {bad} (volume order) carry an IOP rotated 20 deg about x; same series and FoR"
        elif case == "broken-duplicate-position":
            k = mid - 20
            px = v.data[k + 15]
            dup = make_ds(h, len(imgs), px, v.ipp(k), v.row_cos, v.col_cos, v.spacing[1:], v.spacing[0], False)
            imgs.append(dup)
            why = f"an extra instance at the position of slice {k} with the pixels of slice {k + 15}"
        else:
            k = mid + 5
            del imgs[k].ImagePositionPatient
            del imgs[k].SliceLocation
            why = f"slice {k} (InstanceNumber {k + 1}) has no ImagePositionPatient"
        n = write_images(od, case, imgs, "explicit")
        write_truth(od, case, modality="MR", transfer_syntax="explicit", expected="held_back", has_face=True,
                    files=n, body_part="HEAD", reason=why, source=NOTES["avghead"], masks={})
    elif case == "head-localizer":
        v = S.get("avghead")
        h = header(case, "avghead", "MR", "3-plane loc", "HEAD", image_type="ORIGINAL\\PRIMARY\\LOCALIZER",
                   window=(300, 600), series_number=1)
        h.update(MRAcquisitionType="2D", SequenceName="*fl2d1", ScanningSequence="GR", SequenceVariant="SP",
                 ScanOptions="", RepetitionTime="8.6", EchoTime="4", InversionTime="", FlipAngle="20")
        del h["InversionTime"]
        centre = v.origin + v.lps_affine()[:3, :3] @ (np.array(v.data.shape) - 1) / 2
        planes = [("axial", [1, 0, 0], [0, 1, 0]), ("coronal", [1, 0, 0], [0, 0, -1]),
                  ("sagittal", [0, 1, 0], [0, 0, -1])]
        inv = np.linalg.inv(v.aff_src)
        imgs = []
        rr, cc = np.meshgrid(np.arange(256) - 127.5, np.arange(256) - 127.5, indexing="ij")
        for n, (_, rc, colc) in enumerate(planes):
            rc, colc = np.array(rc, float), np.array(colc, float)
            pts = centre[:, None, None] + rc[:, None, None] * cc + colc[:, None, None] * rr
            ijk = np.tensordot(inv[:3, :3], pts, 1) + inv[:3, 3][:, None, None]
            px = ndimage.map_coordinates(v.src_data, ijk, order=1, cval=0)
            ipp = centre - 127.5 * rc - 127.5 * colc
            ds = make_ds(h, n, np.clip(px, 0, None).round(), ipp, rc, colc, (1.0, 1.0), 8.0, False)
            imgs.append(ds)
        n = write_images(od, case, imgs, "explicit")
        write_truth(od, case, modality="MR", transfer_syntax="explicit", expected="held_back", has_face=True,
                    files=n, body_part="HEAD", reason="3 orthogonal localizer images (axial, coronal, sagittal) "
                    "through the average head; not a volume", source=NOTES["avghead"], masks={})
    elif case == "bench-mr256":
        v = S.get("avghead")
        centre = v.origin + v.lps_affine()[:3, :3] @ (np.array(v.data.shape) - 1) / 2
        origin = centre - 127.5
        g = np.indices((256, 256, 256), dtype=np.float32)  # slice, row, col -> z, y, x
        pts = np.stack([origin[0] + g[2], origin[1] + g[1], origin[2] + g[0]])
        del g
        inv = np.linalg.inv(v.aff_src).astype(np.float32)
        ijk = np.tensordot(inv[:3, :3], pts, 1) + inv[:3, 3][:, None, None, None]
        del pts
        data = ndimage.map_coordinates(v.src_data, ijk, order=1, cval=0).clip(0, None).round().astype(np.uint16)
        keepm = ndimage.map_coordinates(v.src_keep, ijk, order=0, cval=1).astype(np.uint8)
        del ijk
        bv = Vol(data, [1, 0, 0], [0, 1, 0], origin, (1.0, 1.0, 1.0))
        h = header(case, "avghead", "MR", "T1 MPRAGE AX 1mm", "HEAD", window=(300, 600))
        n = write_images(od, case, series_images(bv, h, False), "explicit")
        nib.save(bv.to_nifti(), od / "volume.nii.gz")
        nib.save(bv.to_nifti(keepm), od / "facemask_keep.nii.gz")
        write_truth(od, case, modality="MR", transfer_syntax="explicit", expected="released", has_face=True, files=n,
                    shape=list(data.shape), body_part="HEAD", source=NOTES["avghead"] + " Resampled to 256^3 1 mm.",
                    nifti={"volume": "volume.nii.gz", "facemask_keep": "facemask_keep.nii.gz (pydeface convention, 1 = keep)"},
                    masks=save_masks(od, {"facemask": 1 - keepm}, MEANING))
    elif case == "bench-ct300":
        v = S.get("cranium")
        shp = (300, 512, 512)
        f = [a / b for a, b in zip(shp, v.data.shape)]
        data = ndimage.zoom(v.data.astype(np.float32), f, order=1, output=np.float32)
        data = data.round().astype(np.int16)
        sp = [s * (a - 1) / (b - 1) for s, a, b in zip(v.spacing, v.data.shape, shp)]
        bv = Vol(data, v.row_cos, v.col_cos, v.origin, sp)
        h = header(case, "cranium", "CT", "HEAD 0.5 STANDARD", "HEAD", window=(40, 80))
        n = write_images(od, case, series_images(bv, h, True), "explicit")
        # pydeface-style keep mask: no registered face mask exists for this CT, so a stand-in
        # of the same size (0 on an anterior-inferior block) is used for timing only.
        keepm = np.ones(shp, np.uint8)
        keepm[: shp[0] * 2 // 5, int(shp[1] * 0.0): shp[1] * 3 // 10, :] = 0
        nib.save(bv.to_nifti(), od / "volume.nii.gz")
        nib.save(bv.to_nifti(keepm), od / "facemask_keep.nii.gz")
        write_truth(od, case, modality="CT", transfer_syntax="explicit", expected="released", has_face=True, files=n,
                    shape=list(shp), body_part="HEAD", source=NOTES["cranium"] + " Resampled (zoom order 1).",
                    nifti={"volume": "volume.nii.gz",
                           "facemask_keep": "facemask_keep.nii.gz (stand-in block mask, 1 = keep, timing only)"},
                    masks={})
    else:
        raise SystemExit(f"unknown case {case}")


def build_tilted(case, od, v, tilt_deg=12.0):
    """A gantry-tilted acquisition of the Cranium CT: each image plane is tilted by tilt_deg
    about the patient x axis (Image Orientation's column direction leaves the y axis), while the
    slices still step straight along z (couch travel), so the stack is sheared, not rotated.
    The pixels are the original volume sampled on those tilted planes (trilinear; air outside),
    the brain mask likewise (nearest)."""
    from scipy.ndimage import map_coordinates
    t = np.radians(tilt_deg)
    row = np.array([1.0, 0.0, 0.0])
    col = np.array([0.0, np.cos(t), np.sin(t)])
    n_slices, rows, cols = v.data.shape
    ds, dr, dc = v.spacing
    inv = np.linalg.inv(v.lps_affine())
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    centre_z = (n_slices - 1) / 2 * ds
    data = np.empty(v.data.shape, dtype=np.int16)
    masks = {k: np.zeros(m.shape, dtype=np.uint8) for k, m in v.masks.items()}
    positions = []
    for k in range(n_slices):
        # Tilted planes through the same z as the original slices at the image's centre row.
        ipp = v.origin + np.array([0.0, 0.0, k * ds]) - col * (rows - 1) / 2 * dr \
            + np.array([0.0, (rows - 1) / 2 * dr, 0.0])
        positions.append(ipp)
        pts = ipp[:, None, None] + row[:, None, None] * cc * dc + col[:, None, None] * rr * dr
        idx = inv[:3, :3] @ pts.reshape(3, -1) + inv[:3, 3:4]
        data[k] = map_coordinates(v.data.astype(np.float32), idx, order=1, cval=-1024).reshape(rows, cols).round()
        for name, m in v.masks.items():
            masks[name][k] = map_coordinates(m, idx, order=0, cval=0).reshape(rows, cols)
    h = header(case, "cranium", "CT", "HEAD 1.5 TILT", "HEAD", window=(40, 80))
    h["GantryDetectorTilt"] = f"{tilt_deg:g}"
    images = [make_ds(h, k, data[k].astype(np.int32) + 1024, positions[k], row, col, (dr, dc), ds, True)
              for k in range(n_slices)]
    n = write_images(od, case, images, "explicit")
    write_truth(od, case, modality="CT", transfer_syntax="explicit", expected="released", has_face=True,
                files=n, shape=list(data.shape), body_part="HEAD", source=NOTES["cranium"],
                hu="stored = HU + 1024 (uint16, BitsStored 12); RescaleIntercept -1024, RescaleSlope 1",
                tilt=f"gantry tilt {tilt_deg:g} deg: image planes tilted about x, slices stepping along z (sheared stack)",
                masks=save_masks(od, masks, MEANING))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--cases", help="comma-separated; default: all non-bench cases (plus bench with --bench)")
    ap.add_argument("--bench", action="store_true", help="also build bench-mr256 and bench-ct300")
    ap.add_argument("--src", default=str(ROOT / "testdata/faces/src"))
    a = ap.parse_args()
    cases = a.cases.split(",") if a.cases else BASE_CASES + (BENCH_CASES if a.bench else [])
    if a.cases and a.bench:
        cases += [c for c in BENCH_CASES if c not in cases]
    out = Path(a.outdir)
    out.mkdir(parents=True, exist_ok=True)
    S = Sources(a.src)
    for c in cases:
        t = time.time()
        build_case(c, out, S)
        print(f"make-series: {c}: {len(list((out / c / 'dicom').iterdir()))} files in {time.time() - t:.1f}s",
              file=sys.stderr)


if __name__ == "__main__":
    main()
