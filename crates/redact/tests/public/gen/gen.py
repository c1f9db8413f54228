"""Builds crates/redact/tests/public/*.txt from the transcribed and downloaded sources."""
import ast, os, re, sys
sys.path.insert(0, os.path.dirname(__file__))
import phonenumbers as pn
from phonenumbers import PhoneNumberType as PT, PhoneNumberFormat as PF

OUT = "/work/main/crates/redact/tests/public"
STD = "/tmp/pubeval/python_stdnum-2.2/tests"
EV = "/tmp/pubeval/email_validator-2.4.0/tests/test_syntax.py"
TEMPLATES = ["{}", "It is {}.", "Noted: {}", "Please use {} for this.", "({})", "See {} above."]
CLASSES = {"CREDIT_CARD", "IBAN", "PHONE", "EMAIL", "US_SSN", "IP_ADDRESS", "SECRET"}

def enc(s):
    assert "[[" not in s and "]]" not in s and " ## " not in s and "\r" not in s, repr(s)
    return s.replace("\\", "\\\\").replace("\n", "\\n")

ALL = []

class Out:
    def __init__(self, name, header):
        self.name, self.lines, self.seen = name, [f"# {l}" if l else "#" for l in header], set()
        self.pos = self.neg = 0
    def case(self, text, labels, ref):
        """labels: list of (start, end, CLASS); [] for a look-alike."""
        labels = sorted(labels)
        key = (text, tuple(labels))
        if key in self.seen:
            return
        self.seen.add(key)
        assert not text.startswith("#") and text.strip() == text or text == text, text
        out, at = [], 0
        for s, e, c in labels:
            assert c in CLASSES and at <= s < e <= len(text), (text, labels)
            out.append(enc(text[at:s])); out.append(f"[[{c}|{enc(text[s:e])}]]"); at = e
        out.append(enc(text[at:]))
        line = "".join(out)
        assert not line.startswith("#") and line.strip(), line
        self.lines.append(f"{line} ## {ref}")
        ALL.append((self.name, text, [(s, e, c) for s, e, c in labels], ref))
        if labels: self.pos += len(labels)
        else: self.neg += 1
    def section(self, title):
        self.lines.append(f"# --- {title}")
    def write(self):
        with open(os.path.join(OUT, self.name), "w") as f:
            f.write("\n".join(self.lines) + "\n")
        print(self.name, "positives", self.pos, "look-alikes", self.neg)

def tmpl(i, v):
    t = TEMPLATES[i % len(TEMPLATES)]
    s = t.index("{}")
    return t.replace("{}", v), s, s + len(v)

sys.path.insert(0, "/tmp/pubeval/python_stdnum-2.2")
from stdnum import iban as _iban

def iban_ok(s):
    """A valid IBAN by python-stdnum's rules (registry country, length and BBAN format, mod 97; no national check digits)."""
    return _iban.is_valid(s, check_country=False)

# ---------------------------------------------------------------- presidio
def presidio():
    from presidio_iban import IBAN, IBAN_SPANS
    import presidio_rest as R
    o = Out("presidio.txt", [
        "Microsoft Presidio's recogniser tests (https://github.com/microsoft/presidio, MIT).",
        "The tests' own input texts; values from their expected spans; expected-no-finding",
        "inputs are look-alikes. Reference: presidio-analyzer/tests/<file>@<commit>. See README.md."])
    ref = "microsoft/presidio presidio-analyzer/tests/test_iban_recognizer.py@009d53466170affa321b1d7697e7266228695b94"
    o.section("IBAN (test_all_ibans)")
    for text, n in IBAN:
        if n:
            assert iban_ok(text), text
            o.case(text, [(0, len(text), "IBAN")], ref)
        elif iban_ok(text):
            print("presidio IBAN negative passes mod-97, dropped:", text)
        else:
            o.case(text, [], ref)
    for text, spans in IBAN_SPANS:
        o.case(text, [(s, e, "IBAN") for s, e in spans], ref)
    for file, cls, rows in (R.CARD, R.EMAIL, R.SSN, R.PHONE, R.IP):
        ref = f"microsoft/presidio presidio-analyzer/tests/{file}"
        o.section(f"{cls} ({file.split('@')[0]})")
        for text, spans in rows:
            if spans == "all": spans = [(0, len(text))]
            labels = []
            for s, e in spans:
                if not any(c.isalnum() for c in text[s:e]):
                    continue  # e.g. the unspecified address "::": nothing to leak
                labels.append((s, e, cls))
            if spans and not labels:
                continue
            o.case(text, labels, ref)
    file, _, rows = R.CONTEXT
    ref = f"microsoft/presidio presidio-analyzer/tests/{file}"
    o.section("context sentences (data/context_sentences_tests.txt)")
    for cls, text, values in rows:
        labels, at = [], 0
        for v in values:
            s = text.index(v, at); labels.append((s, s + len(v), cls)); at = s + len(v)
        o.case(text, labels, ref)
    o.write()

# ---------------------------------------------------------------- gitleaks
def gitleaks():
    import gitleaks as G
    o = Out("gitleaks.txt", [
        "gitleaks rule fixtures (https://github.com/gitleaks/gitleaks, MIT): literal true",
        "positives (secret value labelled SECRET) and placeholder false positives (look-alikes).",
        "Reference: cmd/generate/config/rules/<file>@<commit>. See README.md."])
    o.section("true positives")
    for file, text, vals in G.TPS:
        labels, at = [], 0
        for v in vals:
            s = text.index(v, at); labels.append((s, s + len(v), "SECRET")); at = s + len(v)
        o.case(text, labels, f"gitleaks/gitleaks cmd/generate/config/rules/{file}")
    o.section("false positives")
    for file, text in G.FPS:
        o.case(text, [], f"gitleaks/gitleaks cmd/generate/config/rules/{file}")
    o.write()

# ---------------------------------------------------------------- processors
def processors():
    from processors import ROWS, STRIPE, BRAINTREE
    o = Out("processors.txt", [
        "Payment processors' published test card numbers (Stripe, Braintree, Adyen), from the",
        "pages that list them. Text: the row of the page's table. See README.md."])
    for ref, label, num in ROWS:
        if ref == STRIPE:
            cvc = "Any 4 digits" if label.startswith("American") else "Any 3 digits"
            pre = f"{label} | "; text = f"{pre}{num} | {cvc} | Any future date"
        elif ref == BRAINTREE:
            pre = ""; text = f"{num} | {label}"
        else:
            pre = f"{label} | "; text = pre + num
        o.case(text, [(len(pre), len(pre) + len(num), "CREDIT_CARD")], ref)
    o.write()

# ---------------------------------------------------------------- python-stdnum
def blocks(path):
    """Yields (heading, first line number, [(lineno, value)]) for each numbers = ''' block."""
    lines = open(path, encoding="utf-8").read().split("\n")
    i, heading, brk = 0, [], True
    while i < len(lines):
        l = lines[i]
        if l.startswith(">>> numbers = '''"):
            vals, j = [], i + 1
            while not lines[j].startswith("... '''"):
                v = lines[j][4:].strip() if lines[j].startswith("... ") else ""
                if v: vals.append((j + 1, v))
                j += 1
            yield " ".join(heading), i + 1, vals
            heading, i = [], j + 1
            continue
        if not l.strip():
            brk = True
        elif not l.startswith((">>>", "...", "[", "Traceback", "    ", "Invalid", "True", "False", "'")):
            if brk: heading = []
            heading.append(l.strip()); brk = False
        i += 1

def stdnum():
    o = Out("stdnum.txt", [
        "python-stdnum's doctests (https://github.com/arthurdejong/python-stdnum, LGPL-2.1+),",
        "from the python-stdnum 2.2 source distribution. IBANs of the IBAN registry's examples",
        "and others found online are positives; broken, wrong-length and mangled IBANs and the",
        "valid ISBNs, ISINs, CUSIPs, LEIs, FIGIs and BICs are look-alikes.",
        "Reference: tests/<file>:<line>. Text: the value in a neutral template (README.md)."])
    n = 0
    path = f"{STD}/test_iban.doctest"
    for heading, _, vals in blocks(path):
        h = heading.lower()
        if "should all be valid" in h: kind = "pos"
        elif "broken checksums" in h or "wrong length" in h or "alphabetic characters" in h: kind = "neg"
        else:
            print("stdnum iban block skipped:", heading[:70], len(vals)); continue
        o.section(f"test_iban.doctest: {heading[:80]}")
        for ln, v in vals:
            text, s, e = tmpl(n, v); n += 1
            if kind == "pos":
                o.case(text, [(s, e, "IBAN")], f"arthurdejong/python-stdnum tests/test_iban.doctest:{ln}")
            elif iban_ok(v):
                print("stdnum negative passes mod-97, dropped", v)
            else:
                o.case(text, [], f"arthurdejong/python-stdnum tests/test_iban.doctest:{ln}")
    o.section("stdnum/us/ssn.py module doctests")
    ssnref = "arthurdejong/python-stdnum stdnum/us/ssn.py"
    for ln, v, pos in ((43, "536-90-4399", True), (59, "111223333", True), (49, "666-00-0000", False)):
        # 1112-23333 (line 45, digits of an SSN with a dash moved) and 078-05-1120 (line 53,
        # blacklisted there, labelled an SSN by Presidio) are left out.
        text, s, e = tmpl(n, v); n += 1
        o.case(text, [(s, e, "US_SSN")] if pos else [], f"{ssnref}:{ln}")
    for mod in ("isbn", "isin", "cusip", "lei", "figi", "bic"):
        path = f"{STD}/test_{mod}.doctest"
        for heading, _, vals in blocks(path):
            if "should all be valid" not in heading.lower():
                continue
            o.section(f"test_{mod}.doctest: {heading[:80]}")
            for ln, v in vals:
                text, s, e = tmpl(n, v); n += 1
                o.case(text, [], f"arthurdejong/python-stdnum tests/test_{mod}.doctest:{ln}")
    o.write()

# ---------------------------------------------------------------- email-validator
def email():
    src = open(EV, encoding="utf-8").read()
    tree = ast.parse(src)
    o = Out("email_validator.txt", [
        "python-email-validator's syntax tests (https://github.com/JoshData/python-email-validator,",
        "Unlicense), from the email-validator 2.4.0 source distribution: every input of the valid",
        "parametrisations (ASCII, internationalised, quoted local parts) and of the pyisemail cases",
        "marked ISEMAIL_VALID are positives; pyisemail inputs that hold no address at all",
        "(no local part, no domain, no @) are look-alikes.",
        "Reference: tests/test_syntax.py:<line>. Text: the address in a neutral template (README.md)."])
    n = 0
    want = {"test_email_valid": "pos", "test_email_valid_intl_local_part": "pos",
            "test_email_valid_only_if_quoted_local_part": "pos", "test_pyisemail_tests": "isemail"}
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef) or fn.name not in want: continue
        o.section(fn.name)
        for el in fn.decorator_list[0].args[1].elts:
            first = el.elts[0]
            v = ast.literal_eval(first)
            ref = f"JoshData/python-email-validator tests/test_syntax.py:{first.lineno}"
            if want[fn.name] == "isemail":
                status = ast.literal_eval(el.elts[1])
                if status == "ISEMAIL_VALID":
                    pass
                elif status in ("ISEMAIL_ERR_NODOMAIN", "ISEMAIL_ERR_NOLOCALPART", "ISEMAIL_ERR_CONSECUTIVEDOTS") \
                        and not re.search(r"[^@\s]@[^@\s]", v):
                    text, s, e = tmpl(n, v); n += 1
                    o.case(text, [], ref); continue
                else:
                    continue
            text, s, e = tmpl(n, v); n += 1
            m = re.search(r" <([^<>]*)>$", v)
            if m:  # a display-name form: the address is the part in angle brackets
                s, e = s + m.start(1), s + m.end(1)
            o.case(text, [(s, e, "EMAIL")], ref)
    o.write()

# ---------------------------------------------------------------- libphonenumber
def phones():
    o = Out("libphonenumber.txt", [
        "libphonenumber's metadata example numbers (https://github.com/google/libphonenumber,",
        "Apache-2.0; resources/PhoneNumberMetadata.xml <exampleNumber>), read through the",
        f"phonenumbers {pn.__version__} Python port: for every region, the fixed-line and the mobile",
        "example, each formatted NATIONAL and INTERNATIONAL by the library's own format rules.",
        "Reference: region/type/format. Text: the number in a neutral template (README.md)."])
    n = 0
    for region in sorted(pn.SUPPORTED_REGIONS):
        for tname, t in (("fixedLine", PT.FIXED_LINE), ("mobile", PT.MOBILE)):
            x = pn.example_number_for_type(region, t)
            if x is None: continue
            for fname, f in (("national", PF.NATIONAL), ("international", PF.INTERNATIONAL)):
                v = pn.format_number(x, f)
                if v in {l for l in ()}: pass
                text, s, e = tmpl(n, v)
                before = len(o.seen)
                o.seen_values = getattr(o, "seen_values", set())
                if v in o.seen_values: continue
                o.seen_values.add(v); n += 1
                o.case(text, [(s, e, "PHONE")],
                       f"google/libphonenumber resources/PhoneNumberMetadata.xml {region} {tname} exampleNumber, {fname} format")
    o.write()

# ---------------------------------------------------------------- scrubadub
def scrubadub():
    from scrubadub import ROWS
    o = Out("scrubadub.txt", [
        "scrubadub's detector tests (https://github.com/LeapBeyond/scrubadub, Apache-2.0): the BEFORE",
        "sentences of its docstring tests and its clean() inputs; the values are what the AFTER",
        "side replaces. Reference: <file>@<commit>. See README.md."])
    for file, cls, text, values in ROWS:
        labels, at = [], 0
        for v in values:
            s = text.rindex(v) if text.count(v) > 1 else text.index(v, at)
            labels.append((s, s + len(v), cls)); at = s + len(v)
        ref = file if file.startswith("dcorbett/") else f"LeapBeyond/scrubadub {file}"
        o.case(text, labels, ref)
    o.write()

# ---------------------------------------------------------------- ssn-validator
def ssn_validator():
    ref = "uphold/ssn-validator test/index_test.js@0f9175157d3e0d8b3b0cc15fb7db7c1805180411"
    o = Out("ssn_validator.txt", [
        "uphold/ssn-validator's tests (https://github.com/uphold/ssn-validator, MIT): its valid",
        "samples and the formatted inputs it accepts are positives; of its invalid samples only",
        "the malformed one is a look-alike (078051120, 219099999 and 457555462 are refused there",
        "as publicly known numbers, and other sources label such numbers SSNs, so they are left",
        "out). Text: the value in a neutral template (README.md)."])
    n = 0
    for v in ["011234567", "021234567", "031234567", "011-23-4567", "011 -23  -  4567"]:
        text, s, e = tmpl(n, v); n += 1
        o.case(text, [(s, e, "US_SSN")], ref)
    text, s, e = tmpl(n, "00123456")
    o.case(text, [], ref)
    o.write()

os.makedirs(OUT, exist_ok=True)
presidio(); gitleaks(); processors(); stdnum(); email(); phones(); scrubadub(); ssn_validator()

# Round trip: decode the files as public.rs does and compare with what was written.
CL = ["CREDIT_CARD", "IBAN", "PHONE", "EMAIL", "US_SSN", "IP_ADDRESS", "SECRET"]
def unesc(s):
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s) and s[i + 1] in "n\\":
            out.append("\n" if s[i + 1] == "n" else "\\"); i += 2
        else:
            out.append(s[i]); i += 1
    return "".join(out)
got = []
for name in sorted({a[0] for a in ALL}):
    for line in open(os.path.join(OUT, name), encoding="utf-8").read().split("\n"):
        if not line.strip() or line.startswith("#"): continue
        body, ref = line.rsplit(" ## ", 1)
        text, labels, rest = "", [], body
        while True:
            hits = [(rest.find(f"[[{c}|"), c) for c in CL if f"[[{c}|" in rest]
            if not hits: break
            at, c = min(hits)
            text += unesc(rest[:at]); inner = rest[at + 3 + len(c):]
            close = inner.index("]]"); v = unesc(inner[:close])
            labels.append((len(text), len(text) + len(v), c)); text += v; rest = inner[close + 2:]
        text += unesc(rest)
        got.append((name, text, labels, ref))
want = sorted(ALL, key=lambda a: a[0])
assert len(got) == len(want), (len(got), len(want))
# byte offsets in Rust vs char offsets here: compare values instead of offsets
for g, w in zip(sorted(got, key=lambda a: a[0]), want):
    assert g[1] == w[1] and g[3] == w[3], (g, w)
    assert [(g[1][s:e], c) for s, e, c in g[2]] == [(w[1][s:e], c) for s, e, c in w[2]], (g, w)
print("round trip ok:", len(got), "cases")
