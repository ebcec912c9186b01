#!/usr/bin/env python3
"""Recomputes every entry hash of a `veil ledger export` file from the formula written in
docs/consent-ledger.md, with nothing of Veil's code: an outside check that the documentation says
exactly what the ledger does. Prints `N/N entry hashes match` and exits 0 when all do, 1 otherwise.

usage: ledger-rehash.py EXPORT.jsonl
"""
import hashlib
import json
import struct
import sys

FIELDS = ["release_id", "recipient", "purpose", "consent_ref", "patient_ref", "patient_pseudonym",
          "original_study_enc", "original_series_enc", "original_sop_enc", "released_study",
          "released_series", "released_sop", "output_path", "output_sha256", "recorded_at",
          "policy_hash", "veil_version", "prev_hash"]


def entry_hash(e):
    h = hashlib.sha256(b"veil-ledger-entry-v1")
    h.update(struct.pack(">q", e["seq"]))
    for f in FIELDS:
        b = e[f].encode("utf-8")
        h.update(struct.pack(">Q", len(b)))
        h.update(b)
    return h.hexdigest()


def main():
    entries = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
    entries = [e for e in entries if e.get("type") == "entry"]
    good = 0
    previous = "0" * 64
    for e in entries:
        if entry_hash(e) == e["entry_hash"] and e["prev_hash"] == previous:
            good += 1
        previous = e["entry_hash"]
    print(f"{good}/{len(entries)} entry hashes match")
    return 0 if entries and good == len(entries) else 1


if __name__ == "__main__":
    sys.exit(main())
