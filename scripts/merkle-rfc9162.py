#!/usr/bin/env python3
"""An independent RFC 9162 (Certificate Transparency v2) Merkle tree, for cross-checking Veil.

Written from the RFC's recursive definitions (section 2.1.1 MTH, 2.1.3.1 PATH, 2.1.4.1 PROOF),
with nothing taken from Veil's code. Reads JSON on stdin:
    {"leaves": ["<hex leaf data>", ...], "roots": [m, ...],
     "inclusion": [[index, size], ...], "consistency": [[first, second], ...]}
and prints the roots, inclusion paths and consistency proofs as JSON (hex). Leaf data are hashed
as leaves (SHA-256 of 0x00 and the data), as Veil hashes each ledger entry's 32-byte hash.
"""
import hashlib
import json
import sys


def h(b):
    return hashlib.sha256(b).digest()


def largest_power_of_two_below(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d):
    if len(d) == 0:
        return h(b"")
    if len(d) == 1:
        return h(b"\x00" + d[0])
    k = largest_power_of_two_below(len(d))
    return h(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m, d):
    if len(d) <= 1:
        return []
    k = largest_power_of_two_below(len(d))
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m, d, b):
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = largest_power_of_two_below(n)
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


def main():
    req = json.load(sys.stdin)
    d = [bytes.fromhex(x) for x in req["leaves"]]
    out = {
        "roots": [mth(d[:m]).hex() for m in req.get("roots", [])],
        "inclusion": [[p.hex() for p in path(i, d[:n])] for i, n in req.get("inclusion", [])],
        "consistency": [
            [p.hex() for p in subproof(a, d[:b], True)] for a, b in req.get("consistency", [])
        ],
    }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
