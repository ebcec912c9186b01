#!/usr/bin/env python3
"""Regenerate Veil's DICOM reference tables (reference/*.csv) from pinned public PyPI packages.

Sources, downloaded with `pip download --no-deps` into a temporary directory and checked against
pinned SHA-256 digests (nothing is installed, nothing is imported from them):

  pydicom==3.0.2         pydicom/_uid_dict.py      PS3.6 Annex A, Table A-1 (registered UIDs)
  dicom-standard==0.1.0  .../data/standard/*.json  PS3.3 tables as JSON (innolitics)

Written, UTF-8 with LF line ends and rows sorted, so that two runs give identical files:

  reference/uid-registry.csv            uid,keyword,name,type,retired
  reference/cs-terms.csv                tag,keyword,module,value_number,kind,term
  reference/iod-attribute-types.csv     iod,tag,type
  reference/sop-class-iod.csv           sop_class_uid,iod

Usage: scripts/gen-reference.py [--wheel-dir DIR] [--out DIR] [--report]
  --wheel-dir  take the two wheels from DIR instead of downloading them (digests still checked)
  --out        output directory (default: reference/ next to this script's parent)
  --report     print parse statistics and the terms found for a few spot-check attributes

Standard library only.
"""

import argparse
import ast
import csv
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections import Counter, defaultdict
from html.parser import HTMLParser

PACKAGES = {
    "pydicom": (
        "3.0.2",
        "pydicom-3.0.2-py3-none-any.whl",
        "abf971a5440f84dbaf42c4b6758e30e62480902584f8b270b9a5d146e278a07b",
    ),
    "dicom-standard": (
        "0.1.0",
        "dicom_standard-0.1.0-py3-none-any.whl",
        "648aad3e57229c8891c7970533638584237b2347001cfcc78f84d7d19e8bdeac",
    ),
}
STANDARD_DIR = "dicom_standard-0.1.0.data/data/standard/"

# ---------------------------------------------------------------------------------------------
# Fetching and reading the packages


def fetch_wheels(wheel_dir):
    """Return {package: path of its verified wheel}."""
    paths = {}
    for name, (version, filename, digest) in sorted(PACKAGES.items()):
        path = os.path.join(wheel_dir, filename)
        if not os.path.exists(path):
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                 "--only-binary=:all:", "--dest", wheel_dir, f"{name}=={version}"],
                check=True,
            )
        with open(path, "rb") as f:
            got = hashlib.sha256(f.read()).hexdigest()
        if got != digest:
            sys.exit(f"{filename}: sha256 {got}, expected {digest}")
        paths[name] = path
    return paths


def read_uid_dictionary(wheel):
    """pydicom's UID_dictionary, read as a literal (the module is never executed)."""
    with zipfile.ZipFile(wheel) as z:
        source = z.read("pydicom/_uid_dict.py").decode("utf-8")
        version_src = z.read("pydicom/_version.py").decode("utf-8")
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "UID_dictionary" for t in node.targets
        ):
            uids = ast.literal_eval(node.value)
            break
    else:
        sys.exit("pydicom/_uid_dict.py: no UID_dictionary")
    m = re.search(r'__dicom_version__\s*:\s*str\s*=\s*"([^"]+)"', version_src)
    return uids, (m.group(1) if m else "unknown")


def read_standard(wheel):
    with zipfile.ZipFile(wheel) as z:
        def load(name):
            return json.loads(z.read(STANDARD_DIR + name + ".json").decode("utf-8"))
        return {n: load(n) for n in (
            "attributes", "ciods", "ciod_to_modules", "sops", "module_to_attributes",
            "references",
        )}


def write_csv(out_dir, name, header, rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    w.writerow(header)
    w.writerows(rows)
    data = buf.getvalue().encode("utf-8")
    with open(os.path.join(out_dir, name), "wb") as f:
        f.write(data)
    return len(rows), len(data)


# ---------------------------------------------------------------------------------------------
# uid-registry.csv


def uid_sort_key(uid):
    return tuple(int(p) if p.isdigit() else -1 for p in uid.split("."))


def uid_rows(uids):
    rows = []
    for uid, (name, kind, _info, retired, keyword) in uids.items():
        rows.append((uid, keyword, name, kind, "Y" if retired.strip() else "N"))
    rows.sort(key=lambda r: uid_sort_key(r[0]))
    return rows


# ---------------------------------------------------------------------------------------------
# iod-attribute-types.csv, sop-class-iod.csv


def path_tags(path):
    """'ct-image:00080008:...' -> ['00080008', ...], upper-case (repeating groups as 60XX...)."""
    return [t.upper() for t in path.split(":")[1:]]


def module_type_rows(mod_attrs):
    rows = set()
    for e in mod_attrs:
        t = e["type"]
        t = "" if t in (None, "None") else t
        rows.add((e["moduleId"], "/".join(path_tags(e["path"])), t))
    return sorted(rows)


TYPE_RANK = {"1": 0, "1C": 1, "2": 2, "2C": 3, "3": 4, "": 5}


def iod_type_rows(module_rows, iod_module_rows):
    """Top-level attributes that are Type 1 or Type 2 in some module of an IOD (the strictest
    type across its modules, mandatory, conditional and user-optional alike: an attribute that is
    present implies its module is). Nested paths are left out: the engine needs the top level."""
    by_module = {}
    for module, path, t in module_rows:
        if "/" not in path:
            by_module.setdefault(module, []).append((path, t))
    strictest = {}
    for iod, module, _usage in iod_module_rows:
        for tag, t in by_module.get(module, []):
            key = (iod, tag)
            if key not in strictest or TYPE_RANK[t] < TYPE_RANK[strictest[key]]:
                strictest[key] = t
    return sorted((iod, tag, t) for (iod, tag), t in strictest.items() if t in ("1", "2"))


def slug(name):
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def iod_rows(std):
    rows = sorted({(e["ciodId"], e["moduleId"], e["usage"]) for e in std["ciod_to_modules"]})
    by_name = {c["name"]: c["id"] for c in std["ciods"]}
    sop_rows, unmatched = set(), []
    for s in std["sops"]:
        iod = by_name.get(s["ciod"])
        if iod is None:
            iod = slug(s["ciod"])
            unmatched.append((s["id"], s["ciod"], iod))
        sop_rows.add((s["id"], iod))
    return rows, sorted(sop_rows, key=lambda r: uid_sort_key(r[0])), unmatched


# ---------------------------------------------------------------------------------------------
# A small HTML tree (html.parser does the tokenising)

VOID = {"br", "img", "hr", "col", "wbr", "input", "meta", "link", "area", "base", "source"}


class Node:
    __slots__ = ("tag", "attrs", "children", "parent")

    def __init__(self, tag, parent=None, attrs=()):
        self.tag = tag
        self.attrs = dict(attrs)
        self.children = []
        self.parent = parent

    def span(self, name):
        try:
            return max(1, int(self.attrs.get(name) or 1))
        except ValueError:
            return 1

    def elements(self):
        return [c for c in self.children if isinstance(c, Node)]


class TreeBuilder(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.root = Node("#root")
        self.cur = self.root

    def handle_starttag(self, tag, attrs):
        node = Node(tag, self.cur, attrs)
        self.cur.children.append(node)
        if tag not in VOID:
            self.cur = node

    def handle_startendtag(self, tag, attrs):
        self.cur.children.append(Node(tag, self.cur, attrs))

    def handle_endtag(self, tag):
        n = self.cur
        while n is not None and n.tag != tag:
            n = n.parent
        if n is not None and n.parent is not None:
            self.cur = n.parent

    def handle_data(self, data):
        self.cur.children.append(data)


def parse_html(text):
    b = TreeBuilder()
    b.feed(text)
    b.close()
    return b.root


BLOCK = {"p", "div", "li", "dt", "dd", "tr", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6",
         "table", "dl", "ol", "ul", "br"}


def text_of(node):
    parts = []

    def rec(n):
        for c in n.children:
            if isinstance(c, str):
                parts.append(c)
            else:
                if c.tag in BLOCK:
                    parts.append(" ")
                rec(c)
                if c.tag in BLOCK:
                    parts.append(" ")
    rec(node)
    return " ".join("".join(parts).replace("\xa0", " ").split())


# ---------------------------------------------------------------------------------------------
# cs-terms.csv: Enumerated Values / Defined Terms lists of CS attributes

CS_TERM = re.compile(r"[A-Z0-9_][A-Z0-9_ ]{0,15}")   # PS3.5 Table 6.2-1: CS repertoire, 16 max
TAG_RE = re.compile(r"\(([0-9A-Fa-fXx]{4}),([0-9A-Fa-fXx]{4})\)")
LABEL_RE = re.compile(
    r"^(?:Value\s+(\d+)\s+)?(Retired\s+)?(Enumerated|Defined)\s+(?:Values?|Terms?)\b(.*)$", re.I)
CAPTION_RE = re.compile(r"^Table\s+[A-Z]?[\d.\-a-z]*\.?\s+(.*)$")
VALUE_N_RE = re.compile(r"\bValues?\s+(\d+)\b")
LEADING_VALUE_RE = re.compile(r"^Value\s+(\d+)\b")
TARGET_TAG_RE = re.compile(
    r"\b(?:for|of)\s+(?:[A-Za-z][\w'/\-]*\s+){1,8}\(([0-9A-Fa-fXx]{4}),([0-9A-Fa-fXx]{4})\)")
PROSE_POINTER_RE = re.compile(
    r"\bfollowing\s+(Enumerated|Defined)\s+(?:Values?|Terms?)"
    r"|\b(Enumerated|Defined)\s+(?:Values?|Terms?)\b[^.]*\b(?:in|from)\s+Table"
    r"|\b(Enumerated|Defined)\s+(?:Values?|Terms?)\b[^.]*:$", re.I)
PROSE_TERMS_RE = re.compile(
    r"^Value\s+(\d+)\s+shall\s+(?:be|have\s+(?:a\s+|the\s+)?values?\s+of)\s+(.+?)\.?$")
PROSE_DEFINED_RE = re.compile(
    r"^Value\s+(\d+)\b.*\b(Enumerated|Defined)\s+(?:Values?|Terms?)\s+(?:are|is)\s+"
    r"defined\s+to\s+be\s+(.+?)\.?$")
KIND_RE = re.compile(r"\b(Enumerated|Defined)\s+(?:Values?|Terms?)\b", re.I)
HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}


def valid_term(t):
    return bool(CS_TERM.fullmatch(t)) and t == t.strip()


def norm_tag(g, e):
    return (g + e).upper()


class Label:
    __slots__ = ("kind", "value", "applies", "used")

    def __init__(self, kind, value, applies):
        self.kind = kind          # "enumerated" or "defined"
        self.value = value        # 1-based value number, or None for all values
        self.applies = applies    # False when the label names another attribute
        self.used = False


def kind_of(word):
    return "enumerated" if word.lower() == "enumerated" else "defined"


def table_grid(table):
    """[(is_header_row, [cell text, ...])] with row and column spans expanded."""
    rows = []

    def collect(n, in_head):
        for c in n.elements():
            if c.tag == "tr":
                cells = [x for x in c.elements() if x.tag in ("td", "th")]
                head = in_head or bool(cells and all(x.tag == "th" for x in cells))
                rows.append((head, cells))
            elif c.tag in ("thead", "tbody", "tfoot"):
                collect(c, c.tag == "thead")
    collect(table, False)
    grid, carry = [], {}          # carry: column -> (rows left, text)
    for head, cells in rows:
        out, col, queue = [], 0, list(cells)
        while queue or col in carry:
            if col in carry:
                left, text = carry[col]
                out.append(text)
                if left <= 1:
                    del carry[col]
                else:
                    carry[col] = (left - 1, text)
                col += 1
                continue
            cell = queue.pop(0)
            text = text_of(cell)
            for _ in range(cell.span("colspan")):
                if cell.span("rowspan") > 1:
                    carry[col] = (cell.span("rowspan") - 1, text)
                out.append(text)
                col += 1
        if len(cells) == 1 and cells[0].span("colspan") > 1 and not carry:
            continue          # a group heading row ("Contrast", "Biopsy") spanning the table
        grid.append((head, out))
    return grid


class Extractor:
    """Walks one HTML fragment in document order and collects (value, kind, term) for one
    attribute: the entries of every dl/table/list that follows an Enumerated Values or Defined
    Terms label (or a table whose header says so), plus "Value N shall be X" sentences."""

    def __init__(self, tag, name):
        self.tag = tag
        self.name_key = name_key(name)
        self.pending = None
        self.caption = None
        self.terms = []       # (value_number or None, kind, term)
        self.rejected = []    # list entries that are not CS terms

    def _targets_other(self, text):
        """Does text name its target attribute ('for/of Name (gggg,eeee)', the first such
        phrase; later tags are conditions) and is that attribute not ours?"""
        m = TARGET_TAG_RE.search(text)
        return bool(m) and norm_tag(m.group(1), m.group(2)) != self.tag

    def _mentions_only_others(self, text):
        tags = {norm_tag(g, e) for g, e in TAG_RE.findall(text)}
        return bool(tags) and self.tag not in tags

    def _label(self, text, ctx):
        m = LABEL_RE.match(text)
        if not m:
            return None
        vn_lead, _retired, kind, rest = m.groups()
        # A label is a short heading ending in ':' (or nothing), not a sentence using the words.
        rest = rest.strip()
        if len(rest) > 160 or (rest and not rest.endswith(":")
                               and not rest.startswith(("for ", "if ", "when "))):
            return None
        vn = vn_lead or (VALUE_N_RE.search(rest).group(1) if VALUE_N_RE.search(rest) else None)
        if vn:
            value = int(vn)
        elif self.pending is not None and self.pending.value is not None:
            # "... uses one of the following Defined Terms for Value 3:" then "Defined Terms:"
            value = self.pending.value
        else:
            value = ctx
        return Label(kind_of(kind), value, not self._targets_other(rest))

    def _emit(self, label, raw):
        t = " ".join(raw.replace("\xa0", " ").split())
        if not t:
            return
        label.used = True
        if valid_term(t):
            self.terms.append((label.value, label.kind, t))
        else:
            self.rejected.append(t)

    def _take_list(self, node, label):
        if node.tag == "dl":
            for c in node.elements():
                if c.tag == "dt":
                    self._emit(label, text_of(c))
        elif node.tag in ("ul", "ol"):
            for c in node.elements():
                if c.tag == "li":
                    first = next((e for e in c.elements() if e.tag == "p"), c)
                    self._emit(label, text_of(first))
        elif node.tag == "table":
            grid = table_grid(node)
            col = self._term_column(grid)
            for head, cells in grid:
                if not head and len(cells) > col:
                    self._emit(label, cells[col])

    def _attribute_rows(self, table):
        """For an attribute table (one row per attribute, a cell holding its tag), the rows
        of this attribute; None for any other table."""
        rows, tagged = [], 0
        stack = [table]
        while stack:
            n = stack.pop(0)
            for c in n.elements():
                if c.tag == "tr":
                    cells = [x for x in c.elements() if x.tag in ("td", "th")]
                    tags = [norm_tag(*m.groups()) for m in
                            (TAG_RE.fullmatch(text_of(x)) for x in cells) if m]
                    if tags:
                        tagged += 1
                        if self.tag in tags:
                            rows.append(c)
                elif c.tag in ("thead", "tbody", "tfoot"):
                    stack.append(c)
        return rows if tagged >= 2 else None

    @staticmethod
    def _is_term_list(node):
        items = [c for c in node.elements() if c.tag == "li"]
        firsts = [text_of(next((e for e in li.elements() if e.tag == "p"), li)) for li in items]
        return bool(items) and sum(valid_term(t) for t in firsts) * 2 >= len(items)

    def _term_column(self, grid):
        heads = [cells for head, cells in grid if head]
        for cells in heads:
            for i, h in enumerate(cells):
                if KIND_RE.search(h) and not re.search(r"Description|Meaning", h, re.I):
                    return i
        for cells in heads:
            for i, h in enumerate(cells):
                if self.name_key and name_key(h) == self.name_key:
                    return i
        return 0

    def _header_label(self, table, ctx):
        """A table with no label before it, whose header row names its entries' kind."""
        grid = table_grid(table)
        for head, cells in grid:
            if head:
                for h in cells:
                    m = KIND_RE.search(h)
                    if m:
                        cap = self.caption or ""
                        vn = VALUE_N_RE.search(cap)
                        return Label(kind_of(m.group(1)), int(vn.group(1)) if vn else ctx,
                                     not self._targets_other(cap))
        return None

    def walk(self, node, ctx=None):
        for c in node.children:
            if isinstance(c, str):
                continue
            if c.tag in ("dl", "table", "ul", "ol"):
                label = self.pending
                if label is not None and c.tag in ("ul", "ol") and not self._is_term_list(c):
                    # "The Enumerated Values depend on the view:" then one labelled list per
                    # item: read the items, not the list
                    self.pending = label = None
                if label is None and c.tag == "table":
                    rows = self._attribute_rows(c)
                    if rows is not None:
                        # a Module or Macro table: only our attribute's row is about us
                        self.caption = None
                        for row in rows:
                            self.walk(row, None)
                        continue
                    label = self._header_label(c, ctx)
                self.caption = None
                if label is not None:
                    self.pending = None
                    if label.applies:
                        self._take_list(c, label)
                    continue
                self.walk(c, ctx)
                continue
            if c.tag in HEADINGS:
                self.pending = None
                self.caption = None
                continue
            if c.tag in ("p", "strong", "span"):
                ctx = self._paragraph(text_of(c), ctx)
                continue
            # containers (div, li, td, dd, ...): a value context does not leak out of them
            self.walk(c, ctx)

    def _paragraph(self, text, ctx):
        if not text:
            return ctx
        label = self._label(text, ctx)
        if label:
            self.pending = label
            return ctx
        cap = CAPTION_RE.match(text)
        if cap:
            body = cap.group(1)
            self.caption = body
            m = KIND_RE.search(body)
            vn = VALUE_N_RE.search(body)
            if m:
                self.pending = Label(kind_of(m.group(1)), int(vn.group(1)) if vn else ctx,
                                     not self._targets_other(body))
            elif self.pending is not None and vn:
                self.pending.value = int(vn.group(1))
            return ctx
        if self.pending is not None and self.pending.applies and valid_term(text):
            # a list written as one paragraph per term
            self._emit(self.pending, text)
            return ctx
        if self.pending is not None and self.pending.used:
            self.pending = None
        lead = LEADING_VALUE_RE.match(text)
        if lead:
            ctx = int(lead.group(1))
        ptr = PROSE_POINTER_RE.search(text)
        if ptr:
            vn = lead or VALUE_N_RE.search(text)
            self.pending = Label(kind_of(next(g for g in ptr.groups() if g)),
                                 int(vn.group(1)) if vn else ctx,
                                 not self._mentions_only_others(text))
            return ctx
        # "Value 1 shall be DERIVED. Value 2 shall have a value of PRIMARY or SECONDARY."
        # "Value 1 shall identify ... where the Enumerated Values are defined to be X or Y."
        for sentence in re.split(r"(?<=\.)\s+", text):
            m = PROSE_TERMS_RE.match(sentence.strip())
            if m:
                value, kind, alts = m.group(1), "enumerated", m.group(2)
            else:
                m = PROSE_DEFINED_RE.match(sentence.strip())
                if not m:
                    continue
                value, kind, alts = m.group(1), kind_of(m.group(2)), m.group(3)
            alts = [a.strip() for a in re.split(r",\s*|\s+or\s+", alts)]
            if alts and all(valid_term(a) for a in alts):
                for a in alts:
                    self.terms.append((int(value), kind, a))
        return ctx


def heading_of(unit):
    """The heading text of a section unit (the first h1-h6 anywhere in it), or ''."""
    stack = [unit]
    while stack:
        n = stack.pop(0)
        for c in n.elements():
            if c.tag in HEADINGS:
                return text_of(c)
        stack[0:0] = n.elements()
    return ""


def section_units(root):
    """Section divs (a div whose first element child is the title div holding a heading)."""
    units = []

    def is_unit(n):
        if n.tag != "div":
            return False
        els = n.elements()
        if len(els) < 2 or els[0].tag != "div":    # a title block, then content
            return False
        return bool(heading_of(els[0]))

    def rec(n):
        for c in n.elements():
            if is_unit(c):
                units.append(c)
            rec(c)
    rec(root)
    return units


def name_key(s):
    return re.sub(r"[^a-z0-9]+", " ", s.lower()).strip()


def relevant_parts(root, attr_name, tag, pointed):
    """The parts of a referenced section that are about this attribute.

    The whole section when its own heading names the attribute; otherwise its subsections whose
    headings name it; otherwise, for a section without subsections, the whole section if the
    description points there for the terms ("See Section X for Defined Terms") or the section
    cites the attribute's tag. Returns a list of nodes (possibly empty)."""
    units = section_units(root)
    if not units:
        return [root]
    key = name_key(attr_name)
    top = units[0]

    def names(u):
        return bool(key) and (" " + key + " ") in (" " + name_key(heading_of(u)) + " ")
    if names(top):
        return [top]
    picked = [u for u in units[1:] if names(u)]
    outer = []
    for u in picked:
        p = u.parent
        while p is not None and p not in picked:
            p = p.parent
        if p is None:
            outer.append(u)
    if outer:
        return outer
    if len(units) == 1:
        tags = {norm_tag(g, e) for g, e in TAG_RE.findall(text_of(top))}
        if pointed or tag in tags:
            return [top]
    return []


MENTION_RE = re.compile(
    r"(?<!No additional requirements or )(?:Enumerated\s+Values?|Defined\s+Terms?)", re.I)
SAME_AS_RE = re.compile(
    r"\b(Enumerated|Defined)\s+(?:Values?|Terms?)\b[^.]*?\bsame\s+as\b[^.]*?"
    r"\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)")


def cs_term_rows(std, report):
    """Rows of cs-terms.csv, and statistics on how many of the lists could be read."""
    attrs = {a["id"].upper(): a for a in std["attributes"]}
    refs = std["references"]
    trees = {}

    def tree(html):
        if html not in trees:
            trees[html] = parse_html(html)
        return trees[html]

    def extract(tag, name, desc, urls):
        """(terms, source, mentions a list, rejected, same-as tag) for one attribute entry."""
        root = tree(desc)
        text = text_of(root)
        mention = bool(MENTION_RE.search(text))
        ex = Extractor(tag, name)
        ex.walk(root)
        terms, rejected, source = list(ex.terms), list(ex.rejected), "description"
        if not terms:
            source = "referenced section"
            for url, title in urls:
                if url not in refs:
                    continue
                for part in relevant_parts(tree(refs[url]), name, tag, mention):
                    mention = mention or bool(MENTION_RE.search(text_of(part)))
                    rx = Extractor(tag, name)
                    rx.walk(part)
                    terms.extend(rx.terms)
                    rejected.extend(rx.rejected)
        same = SAME_AS_RE.search(text)
        alias = None
        if same and not terms:
            alias = (kind_of(same.group(1)), norm_tag(same.group(2), same.group(3)))
            source = "same-as reference"
        return terms, (source if terms or alias else ""), mention, rejected, alias

    rows = set()
    rejected = Counter()
    entries = []      # (module, path, tag, mention, source, alias)
    cache = {}
    for e in std["module_to_attributes"]:
        tag = path_tags(e["path"])[-1]
        a = attrs.get(tag)
        if not a or a["valueRepresentation"] != "CS":
            continue
        desc = e["description"] or ""
        urls = tuple((r["sourceUrl"], " ".join(r["title"].replace("\xa0", " ").split()))
                     for r in e["externalReferences"])
        key = (tag, desc, urls)
        first = key not in cache
        if first:
            cache[key] = extract(tag, a["name"], desc, urls)
        terms, source, mention, rej, alias = cache[key]
        if first:
            rejected.update(t[:60] for t in rej)
        entries.append((e["moduleId"], e["path"], tag, mention, source, alias))
        for value, kind, term in terms:
            rows.add((tag, a["keyword"], e["moduleId"], "" if value is None else str(value),
                      kind, term))

    # "Enumerated Values for X are the same as for Y (gggg,eeee)": copy Y's terms, preferring
    # Y's rows in the same module.
    by_tag_module = defaultdict(set)
    for r in rows:
        by_tag_module[(r[0], r[2])].add((r[3], r[5]))
    resolved = set()
    for module, path, tag, mention, source, alias in entries:
        if not alias:
            continue
        kind, other = alias
        src = by_tag_module.get((other, module)) or set().union(
            *[v for (t, _m), v in by_tag_module.items() if t == other])
        for value, term in src:
            rows.add((tag, attrs[tag]["keyword"], module, value, kind, term))
        if src:
            resolved.add((module, path))

    # Coverage: of the CS attribute entries whose description, or the part of a referenced
    # section about them, speaks of Enumerated Values or Defined Terms, how many gave terms.
    named, parsed, by_source, tags_named, tags_parsed, misses = 0, 0, Counter(), set(), set(), set()
    for module, path, tag, mention, source, alias in entries:
        ok = bool(source) and (not alias or (module, path) in resolved)
        if ok:
            tags_parsed.add(tag)
        if not mention:
            continue
        named += 1
        tags_named.add(tag)
        if ok:
            parsed += 1
            by_source[source] += 1
        else:
            misses.add((tag, module))
    stats = [
        ("CS attribute entries (module, path)", len(entries)),
        ("  ... that name an Enumerated Values / Defined Terms list", named),
        ("  ... of those, with terms parsed", parsed),
    ] + [(f"      from {k}", v) for k, v in sorted(by_source.items())] + [
        ("distinct CS tags naming a list", len(tags_named)),
        ("  ... of those, with terms parsed", len(tags_named & tags_parsed)),
        ("distinct CS tags with terms (all)", len(tags_parsed)),
    ]
    rows = sorted(rows, key=lambda r: (r[0], r[2], int(r[3]) if r[3] else 0, r[4], r[5]))
    if report:
        print("cs-terms statistics:")
        for k, v in stats:
            print(f"  {k}: {v}")
        print(f"  list entries rejected as not CS terms: {sum(rejected.values())}"
              f" ({len(rejected)} distinct)")
        for t, n in rejected.most_common():
            print(f"    {n:4d}  {t}")
        print(f"  (tag, module) named a list but no terms parsed: {len(misses)}")
        missed = defaultdict(list)
        for tag, module in sorted(misses):
            missed[tag].append(module)
        for tag, modules in sorted(missed.items()):
            print(f"    {tag} {attrs[tag]['keyword']}: {' '.join(modules)}")
    return rows


SPOT_CHECK = ["00080008", "00080060", "00100040", "00180015", "00280004", "00080064"]


def spot_check(rows):
    by = defaultdict(lambda: defaultdict(set))
    for tag, kw, module, vn, kind, term in rows:
        if tag in SPOT_CHECK:
            by[(tag, kw)][(vn or "all", kind)].add(term)
    for tag in SPOT_CHECK:
        keys = [k for k in by if k[0] == tag]
        if not keys:
            print(f"{tag}: no terms")
        for k in keys:
            print(f"{k[0]} {k[1]}:")
            for (vn, kind), terms in sorted(by[k].items()):
                print(f"  value {vn} {kind}: {' | '.join(sorted(terms))}")


# ---------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--wheel-dir")
    ap.add_argument("--out", default=os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "reference"))
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="veil-gen-reference-") as tmp:
        wheels = fetch_wheels(args.wheel_dir or tmp)
        uids, dicom_version = read_uid_dictionary(wheels["pydicom"])
        std = read_standard(wheels["dicom-standard"])

    os.makedirs(args.out, exist_ok=True)
    out = {}
    out["uid-registry.csv"] = write_csv(
        args.out, "uid-registry.csv", ["uid", "keyword", "name", "type", "retired"],
        uid_rows(uids))
    cs_rows = cs_term_rows(std, args.report)
    out["cs-terms.csv"] = write_csv(
        args.out, "cs-terms.csv", ["tag", "keyword", "module", "value_number", "kind", "term"],
        cs_rows)
    iods, sops, unmatched = iod_rows(std)
    out["iod-attribute-types.csv"] = write_csv(
        args.out, "iod-attribute-types.csv", ["iod", "tag", "type"],
        iod_type_rows(module_type_rows(std["module_to_attributes"]), iods))
    out["sop-class-iod.csv"] = write_csv(
        args.out, "sop-class-iod.csv", ["sop_class_uid", "iod"], sops)

    print(f"pydicom UID dictionary: DICOM {dicom_version}, {len(uids)} UIDs")
    for name, (n, size) in out.items():
        print(f"{name}: {n} rows, {size} bytes")
    if unmatched:
        print("sops.json IODs not named in ciods.json (slugified):")
        for u in unmatched:
            print("  ", *u)
    if args.report:
        types = Counter(r[3] for r in uid_rows(uids))
        print("UID types:", dict(sorted(types.items())))
        spot_check(cs_rows)


if __name__ == "__main__":
    main()
