#!/usr/bin/env python3
"""Face-finding attack on a (de-faced) head CT/MR DICOM series, plus a
brain-preservation check.

Subcommands
-----------
judge SERIES_DIR --json OUT.json [--png-dir DIR] [--yaws -35,0,35]
      [--iso auto|v1,v2,v3] [--fail-on-face]
    Assemble the series into a volume, render shaded skin surfaces from
    the front at several yaws and iso-levels, and run dlib's face
    detectors (CNN/MMOD and HOG) on every render.  A 128-d dlib face
    descriptor is recorded for every CNN detection (record only).

compare BEFORE AFTER [--descriptors]
    BEFORE/AFTER are series directories or judge JSON files.  Prints a
    table of CNN counts / HOG best per (yaw, iso) and, with
    --descriptors, the descriptor distance when both renders hold a face
    (dlib convention: < 0.6 means "same person").

brain BEFORE_DIR AFTER_DIR MASK.npy --json OUT.json
    Checks that no voxel inside MASK (uint8 [slice,row,col] in the sorted
    BEFORE order) changed, and reports how much changed elsewhere and how
    close the changes come to the mask.

Geometry conventions
--------------------
DICOM patient coordinates are LPS (+x patient Left, +y Posterior,
+z Superior).  Slices are sorted by dot(ImagePositionPatient, n) with
n = row_cosines x column_cosines.  The volume is indexed
[slice, row, col]; the voxel->patient affine maps (k, i, j) to
IPP_0 + j*PixelSpacing[1]*row_cos + i*PixelSpacing[0]*col_cos
        + k*(IPP_last - IPP_0)/(N-1).

Renders are made on ~1 mm isotropic grids aligned with the patient axes
(rotated about +z by the yaw), resampled directly from the acquired
voxels, so axial, coronal, sagittal and oblique acquisitions give the
same pictures.  Yaw 0 looks from anterior toward +y (posterior); the
patient's right is on the image left and superior is up, as in a
photograph.  Positive yaw moves the viewer toward the patient's right
(the right cheek turns toward the camera).

Iso-levels (``--iso auto``)
---------------------------
CT: -400, -250, -100 HU.  Air is ~-1000 HU, fat ~-100, skin/soft tissue
0..+60, so the skin/air boundary crosses these three levels; the lower
ones also show the surface when partial-volume or smoothing lowered it,
the upper one ignores thin low-density layers (foam, blankets, hair).
MR: 0.10, 0.20, 0.30 x robust maximum, where the robust maximum is the
99th percentile of voxels above the volume mean (i.e. inside the head).
Skin/scalp fat is bright on T1 and moderately bright on T2/PD; these
levels sit above background noise yet below scalp signal, so at least
one of them follows the skin on common weightings.  The volume is
smoothed with a 1 mm Gaussian before ray casting to keep noise speckle
from occluding the surface.
"""

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

try:
    import pydicom
    from pydicom.errors import InvalidDicomError
except ImportError:  # pragma: no cover
    sys.exit("pydicom is required (pip install -r scripts/faces/requirements.txt)")

from scipy import ndimage

CT_ISO = (-400.0, -250.0, -100.0)
MR_ISO_FRACTIONS = (0.10, 0.20, 0.30)
DEFAULT_YAWS = (-35.0, 0.0, 35.0)
TARGET_HEIGHT_PX = 320  # height of the rendered head in pixels
GRID_MM = 1.0


class SeriesError(Exception):
    """The input cannot be assembled into a volume (exit code 2)."""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Reading and assembling a series
# --------------------------------------------------------------------------

def _decode_with_gdcm(path):
    """Fallback decoder: let gdcmconv (or dcmtk) write an uncompressed copy."""
    tmpdir = tempfile.mkdtemp(prefix="veil-attack-")
    out = os.path.join(tmpdir, "raw.dcm")
    try:
        for cmd in (["gdcmconv", "--raw", path, out],
                    ["dcmdjpls", path, out],
                    ["dcmdrle", path, out],
                    ["dcmdjpeg", path, out]):
            if shutil.which(cmd[0]) is None:
                continue
            r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if r.returncode == 0 and os.path.exists(out):
                try:
                    return pydicom.dcmread(out).pixel_array
                except Exception:
                    pass
        raise SeriesError("cannot decode pixel data of %s" % path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _pixels(ds, path):
    try:
        arr = ds.pixel_array
    except Exception as e:  # missing decoder plugin or odd encoding
        log("pydicom could not decode %s (%s); trying gdcmconv/dcmtk" % (path, e))
        arr = _decode_with_gdcm(path)
    slope = float(getattr(ds, "RescaleSlope", 1) or 1)
    inter = float(getattr(ds, "RescaleIntercept", 0) or 0)
    arr = arr.astype(np.float32)
    if slope != 1.0 or inter != 0.0:
        arr = arr * np.float32(slope) + np.float32(inter)
    return arr


def _iter_files(root):
    if os.path.isfile(root):
        yield root
        return
    for dirpath, _dirs, files in os.walk(root):
        for f in sorted(files):
            yield os.path.join(dirpath, f)


class Volume:
    """Assembled single-series volume, float32 [slice, row, col]."""

    def __init__(self, data, affine, positions, modality, series_uid,
                 spacing, files):
        self.data = data
        self.affine = affine            # 4x4, (k, i, j, 1) -> LPS mm
        self.positions = positions      # list of IPP tuples in sorted order
        self.modality = modality
        self.series_uid = series_uid
        self.spacing = spacing          # (slice, row, col) mm
        self.files = files


def load_series(root):
    if not os.path.exists(root):
        raise SeriesError("no such path: %s" % root)
    headers = []
    for path in _iter_files(root):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, EOFError, ValueError, TypeError):
            continue
        except Exception:
            continue
        if "PixelData" not in ds and "FloatPixelData" not in ds:
            # stop_before_pixels hides PixelData; check the header fields
            pass
        if not hasattr(ds, "Rows") or not hasattr(ds, "Columns"):
            continue
        nframes = int(getattr(ds, "NumberOfFrames", 1) or 1)
        if nframes != 1:
            continue
        iop = getattr(ds, "ImageOrientationPatient", None)
        ipp = getattr(ds, "ImagePositionPatient", None)
        ps = getattr(ds, "PixelSpacing", None)
        if iop is None or ipp is None or ps is None or len(iop) != 6 or len(ipp) != 3:
            continue
        try:
            iop = tuple(float(v) for v in iop)
            ipp = tuple(float(v) for v in ipp)
            ps = tuple(float(v) for v in ps)
        except (TypeError, ValueError):
            continue
        key = (str(getattr(ds, "SeriesInstanceUID", "")),
               tuple(round(v, 3) for v in iop), int(ds.Rows), int(ds.Columns))
        headers.append((key, path, ds, iop, ipp, ps))
    if not headers:
        raise SeriesError("no single-frame DICOM images with geometry under %s" % root)

    groups = {}
    for h in headers:
        groups.setdefault(h[0], []).append(h)
    key = max(groups, key=lambda k: len(groups[k]))
    group = groups[key]
    if len(groups) > 1:
        log("note: %d image groups found; using the largest (%d files)"
            % (len(groups), len(group)))

    iop = np.array(group[0][3])
    row_cos, col_cos = iop[:3], iop[3:]
    normal = np.cross(row_cos, col_cos)
    group.sort(key=lambda h: float(np.dot(h[4], normal)))
    # drop duplicate positions
    uniq, seen = [], set()
    for h in group:
        p = tuple(round(v, 3) for v in h[4])
        if p in seen:
            continue
        seen.add(p)
        uniq.append(h)
    group = uniq
    if len(group) < 2:
        raise SeriesError("need at least two slices, found %d" % len(group))

    ps = group[0][5]
    rows, cols = key[2], key[3]
    data = np.empty((len(group), rows, cols), np.float32)
    for n, h in enumerate(group):
        ds = pydicom.dcmread(h[1])
        arr = _pixels(ds, h[1])
        if arr.ndim != 2 or arr.shape != (rows, cols):
            raise SeriesError("unexpected pixel shape %s in %s (colour or multi-frame?)"
                              % (arr.shape, h[1]))
        data[n] = arr
    ipp0 = np.array(group[0][4])
    ippN = np.array(group[-1][4])
    step = (ippN - ipp0) / (len(group) - 1)
    dists = np.diff([float(np.dot(h[4], normal)) for h in group])
    if dists.size and (dists.max() - dists.min()) > 0.1 * max(abs(np.median(dists)), 1e-6):
        log("warning: uneven slice spacing (%.3f..%.3f mm); using the mean"
            % (dists.min(), dists.max()))
    A = np.eye(4)
    A[:3, 0] = step
    A[:3, 1] = col_cos * ps[0]
    A[:3, 2] = row_cos * ps[1]
    A[:3, 3] = ipp0
    modality = str(getattr(group[0][2], "Modality", "") or "")
    spacing = (float(np.linalg.norm(step)), ps[0], ps[1])
    return Volume(data, A, [tuple(h[4]) for h in group], modality, key[0],
                  spacing, [h[1] for h in group])


# --------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------

def iso_levels(vol, spec):
    if spec and spec != "auto":
        vals = [float(v) for v in spec.split(",") if v.strip()]
        return vals, "given"
    if vol.modality.upper() == "CT":
        return list(CT_ISO), "CT HU levels"
    d = vol.data
    sample = d[::2, ::2, ::2]
    fg = sample[sample > sample.mean()]
    if fg.size == 0:
        fg = sample.ravel()
    rmax = float(np.percentile(fg, 99))
    return [round(f * rmax, 3) for f in MR_ISO_FRACTIONS], \
        "MR fractions %s of p99 inside head (%.1f)" % (MR_ISO_FRACTIONS, rmax)


def head_bbox(vol, level):
    """LPS bounding box (min, max) of voxels above `level`."""
    d = vol.data
    st = 2
    m = d[::st, ::st, ::st] > level
    m = ndimage.binary_opening(m, iterations=1)
    if not m.any():
        m = d[::st, ::st, ::st] > level
    else:
        # keep the largest connected object (the head), dropping the table,
        # head rest, cushions and noise specks from the bounding box
        lab, n = ndimage.label(m)
        if n > 1:
            sizes = np.bincount(lab.ravel())
            sizes[0] = 0
            m = lab == int(sizes.argmax())
    if not m.any():
        k, i, j = [np.array([0, s - 1]) for s in d.shape]
        idx = np.array(np.meshgrid(k, i, j, indexing="ij")).reshape(3, -1)
    else:
        idx = np.array(np.nonzero(m)) * st
        # extreme indices suffice for an axis-aligned bbox of an affine image
        lo, hi = idx.min(axis=1), idx.max(axis=1) + st
        corners = np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1)
        idx = corners
    pts = vol.affine[:3, :3] @ idx + vol.affine[:3, 3:4]
    return pts.min(axis=1) - 5.0, pts.max(axis=1) + 5.0


def resample_view(vol, yaw_deg, bbox, fill):
    """Resample onto a 1 mm grid [row(down=-z), depth(along view), col].

    View direction d = (sin yaw, cos yaw, 0) in LPS (yaw 0 looks toward +y,
    i.e. from anterior); screen-right u = (cos yaw, -sin yaw, 0)."""
    t = math.radians(yaw_deg)
    d = np.array([math.sin(t), math.cos(t), 0.0])
    u = np.array([math.cos(t), -math.sin(t), 0.0])
    z = np.array([0.0, 0.0, 1.0])
    lo, hi = bbox
    cx = np.array([[lo[0], lo[1]], [lo[0], hi[1]], [hi[0], lo[1]], [hi[0], hi[1]]])
    cu = cx @ u[:2]
    cd = cx @ d[:2]
    nU = int(math.ceil((cu.max() - cu.min()) / GRID_MM)) + 1
    nD = int(math.ceil((cd.max() - cd.min()) / GRID_MM)) + 1
    nZ = int(math.ceil((hi[2] - lo[2]) / GRID_MM)) + 1
    origin = cu.min() * u + cd.min() * d + hi[2] * z  # top, front, left corner
    # output (r, t, q) -> LPS = origin - r*z + t*d + q*u
    M_out = np.stack([-z, d, u], axis=1) * GRID_MM
    Ainv = np.linalg.inv(vol.affine)
    M = Ainv[:3, :3] @ M_out
    off = Ainv[:3, :3] @ origin + Ainv[:3, 3]
    out = ndimage.affine_transform(vol.data, M, offset=off, output_shape=(nZ, nD, nU),
                                   order=1, cval=fill, prefilter=False)
    return out


def raycast(grid, level):
    """Depth (in voxels, sub-voxel) of the first sample above level along axis 1."""
    m = grid > level
    hit = m.any(axis=1)
    idx = m.argmax(axis=1)
    r, c = np.indices(idx.shape)
    i1 = idx
    i0 = np.maximum(idx - 1, 0)
    v1 = grid[r, i1, c]
    v0 = grid[r, i0, c]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where((v1 - v0) > 0, (level - v0) / (v1 - v0), 1.0)
    frac = np.clip(np.nan_to_num(frac, nan=1.0), 0.0, 1.0)
    depth = np.where(idx > 0, i0 + frac, 0.0).astype(np.float32)
    return depth, hit


def shade(depth, hit, target_h=TARGET_HEIGHT_PX):
    """Lambert-shaded uint8 image of a depth map, cropped and scaled."""
    if not hit.any():
        return np.zeros((64, 64), np.uint8), 1.0
    rows = np.nonzero(hit.any(axis=1))[0]
    cols = np.nonzero(hit.any(axis=0))[0]
    pad = 8
    r0, r1 = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, hit.shape[0])
    c0, c1 = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, hit.shape[1])
    dep = depth[r0:r1, c0:c1]
    h = hit[r0:r1, c0:c1]
    far = float(dep[h].max()) + 20.0
    dep = np.where(h, dep, far)
    f = float(np.clip(target_h / max(r1 - r0, 1), 1.0, 4.0))
    if f != 1.0:
        dep = ndimage.zoom(dep, f, order=1)
        h = ndimage.zoom(h.astype(np.uint8), f, order=0).astype(bool)
    dep = ndimage.gaussian_filter(dep, 0.6 * f) if f > 1 else dep
    gy, gx = np.gradient(dep)
    gx *= f  # depth is in mm, pixels are 1/f mm
    gy *= f
    n = np.stack([gx, gy, -np.ones_like(gx)], axis=-1)
    n /= np.linalg.norm(n, axis=-1, keepdims=True)
    light = np.array([0.0, -0.3, -1.0])  # from the viewer, slightly above
    light /= np.linalg.norm(light)
    lam = np.clip(n @ light, 0.0, 1.0)
    img = 0.12 + 0.88 * lam
    img = np.where(h, img, 0.0)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), f


def save_png(path, img):
    try:
        from PIL import Image
        Image.fromarray(img).save(path)
        return
    except ImportError:
        pass
    import zlib
    import struct
    h, w = img.shape
    raw = b"".join(b"\x00" + img[r].tobytes() for r in range(h))

    def chunk(t, d):
        c = struct.pack(">I", len(d)) + t + d
        return c + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                 + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


# --------------------------------------------------------------------------
# Detectors
# --------------------------------------------------------------------------

class Detectors:
    def __init__(self, descriptors=True):
        import dlib
        import face_recognition_models as frm
        self.dlib = dlib
        self.cnn = dlib.cnn_face_detection_model_v1(frm.cnn_face_detector_model_location())
        self.hog = dlib.get_frontal_face_detector()
        self.sp = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.rec = dlib.face_recognition_model_v1(frm.face_recognition_model_location()) \
            if descriptors else None

    def judge(self, gray, upsample=1, hog_threshold=-1.0):
        rgb = np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
        dets = self.cnn(rgb, upsample)
        faces = []
        for d in dets:
            r = d.rect
            faces.append({"box": [r.left(), r.top(), r.right(), r.bottom()],
                          "confidence": round(float(d.confidence), 4)})
        faces.sort(key=lambda f: -f["confidence"])
        _rects, scores, _idx = self.hog.run(rgb, upsample, hog_threshold)
        res = {
            "cnn_faces": len(faces),
            "cnn_best": faces[0]["confidence"] if faces else None,
            "cnn_boxes": faces,
            "hog_best": round(float(max(scores)), 4) if len(scores) else None,
            "hog_count_pos": int(sum(1 for s in scores if s > 0)),
        }
        if faces and self.rec is not None:
            best = max(dets, key=lambda d: d.confidence)
            shape = self.sp(rgb, best.rect)
            desc = self.rec.compute_face_descriptor(rgb, shape)
            res["descriptor"] = [round(float(v), 6) for v in desc]
        return res


_WORKER_DET = None


def _worker_init():
    global _WORKER_DET
    _WORKER_DET = Detectors()


def _worker_judge(args):
    img, upsample = args
    return _WORKER_DET.judge(img, upsample)


def detect_all(images, upsample=1, jobs=None, detectors=None):
    """Run the detectors on every image, in `jobs` processes (dlib's CNN
    is single-threaded on CPU, so this is the main speed-up)."""
    jobs = jobs or min(os.cpu_count() or 1, 4)
    if jobs <= 1 or len(images) <= 1 or detectors is not None:
        det = detectors or Detectors()
        return [det.judge(img, upsample) for img in images]
    import multiprocessing as mp
    # spawn, not fork: forking after dlib/BLAS threads started can deadlock
    ctx = mp.get_context("spawn")
    with ctx.Pool(min(jobs, len(images)), initializer=_worker_init) as pool:
        return pool.map(_worker_judge, [(img, upsample) for img in images], chunksize=1)


# --------------------------------------------------------------------------
# judge
# --------------------------------------------------------------------------

def judge_series(series_dir, yaws, iso_spec, png_dir=None, detectors=None,
                 upsample=1, jobs=None, target_h=TARGET_HEIGHT_PX):
    t0 = time.time()
    vol = load_series(series_dir)
    t_load = time.time() - t0
    levels, why = iso_levels(vol, iso_spec)
    fill = float(vol.data.min())
    # smooth ~1 mm in each direction to suppress noise speckle
    sig = [min(1.0 / s, 2.0) if s > 0 else 0 for s in vol.spacing]
    vol.data = ndimage.gaussian_filter(vol.data, sig, truncate=2.0)
    bbox = head_bbox(vol, min(levels))
    shape = list(vol.data.shape)
    renders, images = [], []
    t_render = 0.0
    if png_dir:
        os.makedirs(png_dir, exist_ok=True)
    for yaw in yaws:
        ta = time.time()
        grid = resample_view(vol, yaw, bbox, fill)
        for li, lv in enumerate(levels):
            depth, hit = raycast(grid, lv)
            img, scale = shade(depth, hit, target_h)
            entry = {"yaw": yaw, "iso": lv, "iso_index": li,
                     "image": [int(img.shape[1]), int(img.shape[0])],
                     "px_per_mm": round(scale, 3)}
            if png_dir:
                name = "yaw%+04d_iso%s.png" % (int(round(yaw)), ("%g" % lv).replace("-", "m"))
                save_png(os.path.join(png_dir, name), img)
                entry["png"] = name
            renders.append(entry)
            images.append(img)
        del grid
        t_render += time.time() - ta
    del vol.data
    ta = time.time()
    for entry, r in zip(renders, detect_all(images, upsample, jobs, detectors)):
        entry.update(r)
    t_det = time.time() - ta
    out = {
        "series": os.path.abspath(series_dir),
        "series_uid": vol.series_uid,
        "modality": vol.modality,
        "shape": shape,
        "spacing": [round(s, 5) for s in vol.spacing],
        "iso_levels": levels,
        "iso_rule": why,
        "yaws": list(yaws),
        "renders": renders,
        "cnn_faces_total": sum(r["cnn_faces"] for r in renders),
        "cnn_best": max([r["cnn_best"] for r in renders if r["cnn_best"] is not None],
                        default=None),
        "hog_best": max([r["hog_best"] for r in renders if r["hog_best"] is not None],
                        default=None),
        "upsample": upsample,
        "seconds": {"load": round(t_load, 2), "render": round(t_render, 2),
                    "detect": round(t_det, 2), "total": round(time.time() - t0, 2)},
    }
    return out


def parse_yaws(s):
    return [float(v) for v in s.split(",") if v.strip()]


def cmd_judge(a):
    try:
        res = judge_series(a.series_dir, parse_yaws(a.yaws), a.iso, a.png_dir,
                           upsample=a.upsample, jobs=a.jobs, target_h=a.height)
    except SeriesError as e:
        log("error: %s" % e)
        return 2
    with open(a.json, "w") as fh:
        json.dump(res, fh, indent=1)
    print_table(res)
    if a.fail_on_face and res["cnn_faces_total"] > 0:
        return 1
    return 0


def _fmt(v, nd=3):
    return "-" if v is None else ("%.*f" % (nd, v))


def print_table(res):
    print("%s  %s  shape=%s spacing=%s" % (res["series"], res["modality"], res["shape"],
                                          res["spacing"]))
    print("%6s %9s %5s %8s %8s" % ("yaw", "iso", "cnn", "cnn_best", "hog_best"))
    for r in res["renders"]:
        print("%6g %9g %5d %8s %8s" % (r["yaw"], r["iso"], r["cnn_faces"],
                                        _fmt(r["cnn_best"]), _fmt(r["hog_best"])))
    print("cnn_faces_total=%d  time=%ss" % (res["cnn_faces_total"], res["seconds"]["total"]))


# --------------------------------------------------------------------------
# compare
# --------------------------------------------------------------------------

def cmd_compare(a):
    results = []
    for p in (a.before, a.after):
        if os.path.isfile(p) and p.endswith(".json"):
            with open(p) as fh:
                results.append(json.load(fh))
        else:
            try:
                results.append(judge_series(p, parse_yaws(a.yaws), a.iso, None,
                                            upsample=a.upsample, jobs=a.jobs,
                                            target_h=a.height))
            except SeriesError as e:
                log("error: %s: %s" % (p, e))
                return 2
    b, f = results
    # match by (yaw, iso index): MR auto levels are relative and may shift a
    # little when the face is removed
    key = lambda r: (r["yaw"], r.get("iso_index", r["iso"]))
    idx = {key(r): r for r in f["renders"]}
    print("%6s %9s | %5s %8s %8s | %5s %8s %8s | %6s" % (
        "yaw", "isoB", "cnnB", "bestB", "hogB", "cnnA", "bestA", "hogA", "dist"))
    for rb in b["renders"]:
        ra = idx.get(key(rb))
        if ra is None:
            continue
        dist = None
        if a.descriptors and rb.get("descriptor") and ra.get("descriptor"):
            dist = float(np.linalg.norm(np.array(rb["descriptor"]) - np.array(ra["descriptor"])))
        print("%6g %9g | %5d %8s %8s | %5d %8s %8s | %6s" % (
            rb["yaw"], rb["iso"], rb["cnn_faces"], _fmt(rb["cnn_best"]), _fmt(rb["hog_best"]),
            ra["cnn_faces"], _fmt(ra["cnn_best"]), _fmt(ra["hog_best"]), _fmt(dist)))
    if {key(r) for r in b["renders"]} != set(idx):
        print("note: iso-levels/yaws differ between the two runs; only matching pairs shown")
    print("total CNN faces: before=%d after=%d" % (b["cnn_faces_total"], f["cnn_faces_total"]))
    return 0


# --------------------------------------------------------------------------
# brain
# --------------------------------------------------------------------------

def cmd_brain(a):
    try:
        before = load_series(a.before)
        after = load_series(a.after)
    except SeriesError as e:
        log("error: %s" % e)
        return 2
    try:
        mask = np.load(a.mask)
    except Exception as e:
        log("error: cannot read mask %s: %s" % (a.mask, e))
        return 2
    mask = mask.astype(bool)
    if mask.shape != before.data.shape:
        log("error: mask shape %s != BEFORE volume shape %s" % (mask.shape, before.data.shape))
        return 2
    if after.data.shape[1:] != before.data.shape[1:]:
        log("error: AFTER rows/cols %s differ from BEFORE %s"
            % (after.data.shape[1:], before.data.shape[1:]))
        return 2
    amap = {tuple(round(v, 3) for v in p): n for n, p in enumerate(after.positions)}
    missing = []
    changed = np.zeros(before.data.shape, bool)
    for k, p in enumerate(before.positions):
        n = amap.get(tuple(round(v, 3) for v in p))
        if n is None:
            missing.append(k)
            changed[k] = True
            continue
        # exact comparison of stored values after rescale; NaN-safe
        b, f = before.data[k], after.data[n]
        changed[k] = ~((b == f) | (np.isnan(b) & np.isnan(f)))
    present = np.ones(before.data.shape[0], bool)
    present[missing] = False
    mask_changed = int(np.count_nonzero(changed & mask & present[:, None, None]))
    mask_missing = int(np.count_nonzero(mask[~present]))
    n_changed = int(np.count_nonzero(changed & present[:, None, None]))
    voxel_ml = before.spacing[0] * before.spacing[1] * before.spacing[2] / 1000.0
    min_dist = None
    if n_changed and mask.any():
        dist = ndimage.distance_transform_edt(~mask, sampling=before.spacing)
        min_dist = float(dist[changed & present[:, None, None]].min())
    res = {
        "before": os.path.abspath(a.before),
        "after": os.path.abspath(a.after),
        "shape": list(before.data.shape),
        "spacing": [round(s, 5) for s in before.spacing],
        "mask_voxels": int(mask.sum()),
        "mask_voxels_changed": mask_changed,
        "mask_voxels_in_missing_slices": mask_missing,
        "changed_voxels": n_changed,
        "changed_ml": round(n_changed * voxel_ml, 3),
        "min_distance_changed_to_mask_mm": None if min_dist is None else round(min_dist, 3),
        "slices_missing_in_after": missing,
        "extra_slices_in_after": max(0, len(after.positions) - (len(before.positions) - len(missing))),
        "ok": mask_changed == 0 and mask_missing == 0,
    }
    with open(a.json, "w") as fh:
        json.dump(res, fh, indent=1)
    print(json.dumps({k: v for k, v in res.items() if k not in ("before", "after")}))
    return 0 if res["ok"] else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("--yaws", default=",".join("%g" % y for y in DEFAULT_YAWS),
                       help="comma-separated yaw angles in degrees (default -35,0,35)")
        p.add_argument("--iso", default="auto", help="auto or comma-separated iso-levels")
        p.add_argument("--upsample", type=int, default=1,
                       help="dlib pyramid upsampling for both detectors (default 1)")
        p.add_argument("--height", type=int, default=TARGET_HEIGHT_PX,
                       help="rendered head height in pixels (default %d)" % TARGET_HEIGHT_PX)
        p.add_argument("--jobs", type=int, default=0,
                       help="detector processes (default: CPU count, at most 4)")
    j = sub.add_parser("judge", help="render the series and look for faces")
    j.add_argument("series_dir")
    j.add_argument("--json", required=True)
    j.add_argument("--png-dir")
    common(j)
    j.add_argument("--fail-on-face", action="store_true",
                   help="exit 1 when the CNN finds any face")
    c = sub.add_parser("compare", help="before/after table")
    c.add_argument("before")
    c.add_argument("after")
    c.add_argument("--descriptors", action="store_true")
    common(c)
    b = sub.add_parser("brain", help="brain-preservation check")
    b.add_argument("before")
    b.add_argument("after")
    b.add_argument("mask")
    b.add_argument("--json", required=True)
    a = ap.parse_args(argv)
    return {"judge": cmd_judge, "compare": cmd_compare, "brain": cmd_brain}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
