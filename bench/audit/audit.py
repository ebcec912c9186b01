"""Peer audit: runs every de-identifier on the same planted-identifier corpus, checks each output
with `veil verify --against` and an independent grep for the planted values, and prints a table.

usage: audit.py --veil BIN --work DIR --python VENV_PYTHON --results FILE [--real N]

Called by scripts/audit-peers.sh, which installs the peers first. Every tool writes into its own
directory under WORK; the corpus is rebuilt on each run (it takes a second) and hashed before and
after every tool, so a tool that modified its input would be reported rather than silently
changing what the next tool sees.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter

HERE = os.path.dirname(os.path.abspath(__file__))

KIND_ORDER = ["name", "id", "birth date", "contact", "institution/device", "uid"]
CATEGORIES = ["removed_attribute", "private", "marker", "uid", "date", "known_identifier", "pattern"]
BASIC_POLICY = os.path.join(HERE, "basic-profile.toml")


def sh(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def tree_digest(root):
    """SHA-256 over every file's relative path and bytes (the corpus is ~30 MB)."""
    h = hashlib.sha256()
    for dirpath, dirs, names in os.walk(root):
        dirs.sort()
        for name in sorted(names):
            path = os.path.join(dirpath, name)
            h.update(os.path.relpath(path, root).encode() + b"\0")
            with open(path, "rb") as f:
                h.update(f.read())
    return h.hexdigest()


def output_files(out):
    """Regular files a tool wrote, leaving out Veil's own run report directory (.veil)."""
    n = 0
    for dirpath, dirs, names in os.walk(out):
        dirs[:] = [d for d in dirs if d != ".veil"]
        n += sum(1 for name in names if os.path.isfile(os.path.join(dirpath, name)))
    return n


def grep_planted(out, planted):
    """Output files in which `grep -F -i` finds any planted value (every byte, pixels included)."""
    r = sh(["grep", "-rliaF", "-f", planted, "--exclude-dir=.veil", out])
    if r.returncode not in (0, 1):
        raise RuntimeError(f"grep failed on {out}: {r.stderr.strip()}")
    return len([line for line in r.stdout.splitlines() if line])


def grep_kinds(out, planted, kinds):
    """Distinct planted values `grep -o -F -i` finds in a tool's output, counted by kind."""
    r = sh(["grep", "-rhoaiF", "-f", planted, "--exclude-dir=.veil", out])
    if r.returncode not in (0, 1):
        raise RuntimeError(f"grep failed on {out}: {r.stderr.strip()}")
    lower = {v.lower(): k for v, k in kinds.items()}
    found = {m.lower() for m in r.stdout.splitlines() if m}
    return Counter(lower.get(m, "?") for m in found)


def held_back_findings(quarantine, corpus):
    """(input, path, category, rule) of every finding for which Veil's in-pipeline verifier held
    an output back: Veil's row counts released files only, so these are listed separately."""
    found = []
    if not os.path.isdir(quarantine):
        return found
    for name in sorted(os.listdir(quarantine)):
        if not name.endswith(".json"):
            continue
        with open(os.path.join(quarantine, name)) as f:
            q = json.load(f)
        if q.get("reason") != "verification_failed":
            continue
        src = os.path.relpath(q.get("input", "?"), corpus)
        for fd in q.get("findings", []) or [{}]:
            found.append((src, fd.get("path", "?"), fd.get("category", "?"), fd.get("rule", "?")))
    return found


def verifier_ready(veil):
    r = sh([veil, "verify", "--help"])
    return r.returncode == 0 and "--against" in r.stdout


def verify(veil, out, corpus, policy, report_path):
    """`veil verify OUT --against CORPUS [--policy P] --json`; exit 4 means findings."""
    cmd = [veil, "verify", out, "--against", corpus, "--json"]
    if policy:
        cmd[3:3] = ["--policy", policy]
    t0 = time.monotonic()
    r = sh(cmd)
    secs = time.monotonic() - t0
    if r.returncode not in (0, 4):
        err = (r.stderr.strip().splitlines() or ["no message"])[-1]
        return None, secs, f"verify exit {r.returncode}: {err}"
    with open(report_path, "w") as f:
        f.write(r.stdout)
    return json.loads(r.stdout), secs, ""


def versions(venv_python, veil, root):
    def meta(pkg):
        r = sh([venv_python, "-c", f"import importlib.metadata as m; print(m.version({pkg!r}))"])
        return r.stdout.strip() or "?"

    gdcm = sh(["dpkg-query", "-W", "-f", "${Version}", "libgdcm-tools"]).stdout.strip()
    commit = sh(["git", "-C", root, "rev-parse", "--short", "HEAD"]).stdout.strip()
    dirty = sh(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"]).stdout.strip()
    veil_v = sh([veil, "--version"]).stdout.strip().replace("veil ", "")
    return {
        "dicognito": meta("dicognito"),
        "dicom-anonymizer": meta("dicom-anonymizer"),
        "deid": meta("deid"),
        "pydicom": meta("pydicom"),
        "gdcm": gdcm or sh(["gdcmanon", "--version"]).stdout.split()[2],
        "veil": f"{veil_v} ({commit}{', uncommitted changes' if dirty else ''})" if commit else veil_v,
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--veil", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--python", required=True, help="the venv's python with the peers installed")
    ap.add_argument("--results", required=True)
    ap.add_argument("--real", type=int, default=80)
    a = ap.parse_args()
    veil, work, py = os.path.abspath(a.veil), os.path.abspath(a.work), os.path.abspath(a.python)
    venv_bin = os.path.dirname(py)
    root = os.path.dirname(os.path.dirname(HERE))
    os.makedirs(work, exist_ok=True)

    # 1. The corpus, the planted values, and a flat view for the tool that does not recurse.
    r = sh([py, os.path.join(HERE, "corpus.py"), veil, work, str(a.real)])
    if r.returncode != 0:
        sys.exit(f"audit: building the corpus failed:\n{r.stdout}{r.stderr}")
    print(r.stdout.strip())
    corpus, planted = os.path.join(work, "corpus"), os.path.join(work, "planted.txt")
    flat = os.path.join(work, "corpus-flat")
    shutil.rmtree(flat, ignore_errors=True)
    os.makedirs(flat)
    files_in, bytes_in = 0, 0
    for dirpath, _, names in os.walk(corpus):
        for name in names:
            path = os.path.join(dirpath, name)
            files_in += 1
            bytes_in += os.path.getsize(path)
            os.symlink(path, os.path.join(flat, os.path.relpath(path, corpus).replace(os.sep, "_")))
    kinds = dict(line.rstrip("\n").split("\t") for line in open(os.path.join(work, "planted-kinds.tsv")))
    digest = tree_digest(corpus)

    # Throwaway credentials: gdcmanon's PS3.15 mode encrypts the original attributes for a
    # recipient certificate; Veil needs a key for its pseudonyms.
    cert, cert_key = os.path.join(work, "gdcmanon-cert.pem"), os.path.join(work, "gdcmanon-key.pem")
    r = sh(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=veil peer audit throwaway", "-keyout", cert_key, "-out", cert])
    if r.returncode != 0:
        sys.exit(f"audit: openssl could not make a throwaway certificate: {r.stderr.strip()}")
    key = os.path.join(work, "audit.key")
    if not os.path.exists(key):
        r = sh([veil, "key", "new", key])
        if r.returncode != 0:
            sys.exit(f"audit: veil key new failed: {r.stderr.strip()}")

    v = versions(py, veil, root)
    py_note = f"pydicom {v['pydicom']}"
    tools = [
        # name, version, command, output dir is made by us, policy for verify, command as documented
        ("dicognito", f"{v['dicognito']} ({py_note})",
         [py, "-m", "dicognito", "--quiet", "--seed", "veil-peer-audit", "--output-directory", "{out}", corpus],
         False, BASIC_POLICY,
         "python -m dicognito --quiet --seed veil-peer-audit --output-directory OUT CORPUS"),
        ("dicom-anonymizer (Kitware)", f"{v['dicom-anonymizer']} ({py_note})",
         [os.path.join(venv_bin, "dicom-anonymizer"), flat, "{out}"],
         True, BASIC_POLICY,
         "dicom-anonymizer CORPUS-FLAT OUT   (flat directory of links: it does not recurse)"),
        ("deid (pydicom, default recipe)", f"{v['deid']} ({py_note})",
         [py, os.path.join(HERE, "run_deid.py"), corpus, "{out}"],
         False, BASIC_POLICY,
         "python bench/audit/run_deid.py CORPUS OUT   (replace_identifiers, default deid.dicom recipe)"),
        ("gdcmanon (GDCM, PS3.15 basic)", v["gdcm"],
         ["gdcmanon", "-e", "--continue", "-r", "-c", cert, "-i", corpus, "-o", "{out}"],
         True, BASIC_POLICY,
         "gdcmanon -e --continue -r -c CERT.pem -i CORPUS -o OUT"),
        ("veil (default policy)", v["veil"],
         [veil, "deid", "--key", key, "--out", "{out}", corpus],
         False, None,
         "veil deid --key KEY --out OUT CORPUS"),
        ("veil (basic profile)", v["veil"],
         [veil, "deid", "--key", key, "--policy", BASIC_POLICY, "--out", "{out}", corpus],
         False, BASIC_POLICY,
         "veil deid --key KEY --policy bench/audit/basic-profile.toml --out OUT CORPUS"),
    ]

    can_verify = verifier_ready(veil)
    if not can_verify:
        print("audit: `veil verify --against` is not available in this build; verify columns are left empty")
    rows = []
    for name, version, cmd, make_out, policy, documented in tools:
        slug = "".join(c if c.isalnum() else "-" for c in name.split(" (")[0].lower())
        if name.startswith("veil"):
            slug = "veil-" + ("default" if "default" in name else "basic")
        out = os.path.join(work, "out-" + slug)
        for d in (out, out + ".quarantine"):
            shutil.rmtree(d, ignore_errors=True)
        if make_out:
            os.makedirs(out)
        log = os.path.join(work, f"log-{slug}.txt")
        t0 = time.monotonic()
        with open(log, "w") as f:
            status = subprocess.run([c.replace("{out}", out) for c in cmd], stdout=f,
                                    stderr=subprocess.STDOUT).returncode
        secs = time.monotonic() - t0
        notes = []
        if status != 0:
            notes.append(f"exit {status}")
        if name.startswith("veil"):
            try:
                with open(os.path.join(out, ".veil", "run-report.json")) as f:
                    reasons = json.load(f).get("reasons", {})
                if reasons:
                    notes.append("held back: " + ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())))
            except OSError:
                notes.append("no run report")
        if tree_digest(corpus) != digest:
            sys.exit(f"audit: {name} modified the corpus; stopping (log: {log})")
        row = {
            "tool": name, "version": version, "command": documented, "policy": policy,
            "files_in": files_in, "files_out": output_files(out), "seconds": secs, "notes": notes,
            "grep": grep_planted(out, planted), "grep_kinds": grep_kinds(out, planted, kinds),
            "held": held_back_findings(out + ".quarantine", corpus) if name.startswith("veil") else [],
            "report": None, "verify_seconds": None,
        }
        if can_verify:
            report, vsecs, err = verify(veil, out, corpus, policy, os.path.join(work, f"verify-{slug}.json"))
            row["report"], row["verify_seconds"] = report, vsecs
            if err:
                notes.append(err)
        rows.append(row)
        cats = row["report"]["by_category"] if row["report"] else {}
        print(f"  {name}: {row['files_out']}/{files_in} files out in {secs:.1f} s; "
              f"{row['report']['files_with_findings'] if row['report'] else '-'} with findings "
              f"({sum(cats.values()) if cats else '-'} findings); {row['grep']} with a planted value (grep)"
              + (f"; {'; '.join(notes)}" if notes else ""))

    write_results(a.results, rows, files_in, bytes_in, kinds, a.real, can_verify)
    print()
    with open(a.results) as f:
        print(f.read())
    veil_rows = [r for r in rows if r["tool"].startswith("veil")]
    # Veil is clean when its released files have no finding and no planted value, and its own
    # in-pipeline verifier held nothing back that the independent run would have had to judge.
    bad = [r for r in veil_rows
           if r["grep"] or r["held"] or not r["report"] or r["report"]["files_with_findings"]]
    for r in bad:
        print(f"audit: {r['tool']} is not clean: see {a.results}", file=sys.stderr)
    return 1 if bad else 0


def write_results(path, rows, files_in, bytes_in, kinds, n_real, can_verify):
    n_planted = len(kinds)
    planted_by_kind = Counter(kinds.values())
    extra = sorted({k for r in rows if r["report"] for k in r["report"]["by_category"]} - set(CATEGORIES))
    cats = CATEGORIES + extra
    lines = [
        "# Peer audit",
        "",
        f"Corpus: {files_in} files ({bytes_in / 1e6:.1f} MB): `veil demo`'s synthetic export (CT series, "
        "SR reports, an ultrasound marked Burned In Annotation YES, a stray text file) and "
        f"{n_real} real CT/MR slices from pydicom's test files with identifiers planted by "
        f"`bench/make_corpus.py`; {n_planted} planted values. Command: `./scripts/audit-peers.sh`; "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}; {os.cpu_count()} cores.",
        "",
        "Findings: `veil verify OUT --against CORPUS --json`, with the plain Basic Profile "
        "(`bench/audit/basic-profile.toml`) for the peers and for `veil (basic profile)`, and Veil's "
        "default policy for `veil (default policy)`. The verifier reports one finding per element, "
        "under the first check it fails: an element the profile removes is a `removed_attribute` "
        "finding even when it also holds a planted value, so `known_identifier` counts planted values "
        "found where the profile would otherwise allow the element. The grep columns are the "
        "independent leak view: output files in which `grep -F -i` finds any planted value anywhere "
        "in the file (file meta, private and pixel bytes included), and below, the distinct planted "
        "values found, by kind. Files in: every file of the corpus, the stray text file included; "
        "Veil holds back what it cannot release (note column).",
        "",
        "| tool | version | files in | files out | files with findings | "
        + " | ".join(cats) + " | files with a planted value (grep) | run s | verify s | note |",
        "|" + "---|" * (len(cats) + 9),
    ]
    for r in rows:
        rep = r["report"]
        if rep:
            by = rep["by_category"]
            cells = [str(rep["files_with_findings"])] + [str(by.get(c, 0)) for c in cats]
        else:
            cells = ["–"] * (len(cats) + 1)
        vs = f"{r['verify_seconds']:.1f}" if r["verify_seconds"] is not None else "–"
        lines.append(f"| {r['tool']} | {r['version']} | {r['files_in']} | {r['files_out']} | "
                     + " | ".join(cells)
                     + f" | {r['grep']} | {r['seconds']:.1f} | {vs} | {'; '.join(r['notes'])} |")
    if not can_verify:
        lines += ["", "`veil verify --against` was not available in the build used: findings columns are empty."]
    kind_order = [k for k in KIND_ORDER if k in planted_by_kind]
    lines += ["", "Distinct planted values that grep finds in each tool's output, by kind "
              "(planted: " + ", ".join(f"{planted_by_kind[k]} {k}" for k in kind_order) + "):", "",
              "| tool | " + " | ".join(kind_order) + " |", "|" + "---|" * (len(kind_order) + 1)]
    for r in rows:
        lines.append(f"| {r['tool']} | " + " | ".join(str(r["grep_kinds"].get(k, 0)) for k in kind_order) + " |")
    lines += ["", "## Commands", "", "```"]
    lines += [f"{r['tool']}: {r['command']}" for r in rows]
    lines += ["```", "", "## Most frequent findings per tool (rule, category: count)", ""]
    for r in rows:
        rep = r["report"]
        if not rep:
            continue
        counts = Counter((f.get("rule", "?"), f.get("category", "?")) for f in rep["findings"])
        top = ", ".join(f"`{rule}` ({cat}): {n}" for (rule, cat), n in counts.most_common(8)) or "none"
        lines.append(f"- **{r['tool']}**: {top}")
        if r["tool"].startswith("veil") and rep["findings"]:
            lines.append("  Veil findings (file, path, category, rule; values masked):")
            for f in rep["findings"][:50]:
                lines.append(f"  - `{f.get('file')}` `{f.get('path')}` {f.get('category')} {f.get('rule')}")
        if r["held"]:
            lines.append(f"  Held back by Veil's in-pipeline verifier ({len(r['held'])} findings in "
                         f"{len({h[0] for h in r['held']})} files; not released, so not in the row):")
            for (p, cat, rule), n in Counter(h[1:] for h in r["held"]).most_common():
                ex = sorted(h[0] for h in r["held"] if h[1:] == (p, cat, rule))
                lines.append(f"  - {n} × `{p}` {cat} `{rule}` (e.g. `{ex[0]}`)")
        if rep.get("skipped"):
            why = Counter(f"`{os.path.relpath(x.get('file', '?'), os.path.dirname(x.get('file', '?')).rsplit('/out-', 1)[0])}` ({x.get('reason', '?')})"
                          for x in rep["skipped"])
            lines.append("  Skipped by verify: " + "; ".join(f"{n} × {w}" if n > 1 else w for w, n in why.items()))
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
