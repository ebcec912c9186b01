"""Runs pydicom `deid` with its default recipe over a directory tree, as its documentation shows:
`deid.dicom.replace_identifiers(files, save=True, output_folder=...)` with no recipe given, which
loads the bundled `deid.dicom` recipe. deid names each output by its input's base name, so every
input directory gets its own output directory (the corpus reuses names such as img1.dcm).

usage: run_deid.py INPUT_DIR OUTPUT_DIR
"""
import logging
import os
import sys

from deid.dicom import get_files, replace_identifiers
from deid.logger import bot

src, out = (os.path.abspath(a) for a in sys.argv[1:3])
bot.level = 0  # quiet: deid warns once per file that it uses its default recipe
logging.disable(logging.WARNING)
by_dir = {}
for path in get_files(src):  # skips what pydicom cannot read as DICOM
    by_dir.setdefault(os.path.dirname(path), []).append(path)
written = 0
for d, files in sorted(by_dir.items()):
    target = os.path.join(out, os.path.relpath(d, src))
    os.makedirs(target, exist_ok=True)
    written += len(replace_identifiers(sorted(files), save=True, output_folder=target))
print(f"deid: {written} files written to {out}")
