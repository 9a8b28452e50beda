"""Build the hostile corpus (``cases.yaml``) into emission folders: one folder per case for whole-zip cases,
one shared file per source for row cases (each case's line numbers recorded), so the whole corpus costs one
intake run per ``run`` group.

A case is data (see ``cases.yaml``'s header for the fields). ``build(run, emission, specs)`` writes the zips
of one run group and returns ``{case id: Built}``: where its zip went and, for row cases, its lines and keys.
"""
from __future__ import annotations

import io
import json
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases.yaml"


def load_cases() -> dict:
    doc = yaml.safe_load(CASES.read_text(encoding="utf-8"))
    ids = [c["id"] for c in doc["cases"]]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise ValueError(f"{CASES}: duplicate case ids {sorted(dup)}")
    return doc


@dataclass
class Built:
    case: dict
    folder: str                      # emission sub-folder holding the case's zip
    lines: list[int] = field(default_factory=list)   # row cases: line numbers in the shared file
    keys: list[str] = field(default_factory=list)    # row cases: key value of each line


def _bytes(m: dict) -> bytes:
    """A member's content: ``text`` (UTF-8, or ``encoding``), ``hex``, or ``repeat: {text, times}``."""
    if "repeat" in m:
        return (m["repeat"]["text"] * int(m["repeat"]["times"])).encode()
    if "hex" in m:
        return bytes.fromhex(m["hex"])
    return m.get("text", "").encode(m.get("encoding", "utf-8"))


def _records(data: bytes) -> int:
    n = data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0)
    return max(n - 1, 0)


def _patch(raw: bytes, name: str, flag_bits: int | None, claim_size: int | None, corrupt_at: int | None) -> bytes:
    """Lie in a member's headers: set general-purpose flag bits (e.g. 1 = encrypted) or the uncompressed size;
    or flip the bits of one byte of its compressed data (``corrupt_at``: offset into the data)."""
    buf = bytearray(raw)
    enc = name.encode()
    for sig, flag_off, size_off, name_off in ((b"PK\x03\x04", 6, 22, 30), (b"PK\x01\x02", 8, 24, 46)):
        pos = 0
        while (pos := buf.find(sig, pos)) >= 0:
            if buf[pos + name_off:pos + name_off + len(enc)] == enc:
                if flag_bits is not None:
                    struct.pack_into("<H", buf, pos + flag_off, struct.unpack_from("<H", buf, pos + flag_off)[0]
                                     | flag_bits)
                if claim_size is not None:
                    struct.pack_into("<I", buf, pos + size_off, claim_size)
                if corrupt_at is not None and sig == b"PK\x03\x04":
                    start = pos + 30 + len(enc) + struct.unpack_from("<H", buf, pos + 28)[0]
                    buf[start + corrupt_at] ^= 0xFF
            pos += 4
    return bytes(buf)


def zip_bytes(spec: dict) -> bytes:
    """A zip from ``{members: [...], manifest: auto|none|<text>|{files: [...]}, raw, truncate}``."""
    if "raw_hex" in spec:
        return bytes.fromhex(spec["raw_hex"])
    if "raw" in spec:
        return spec["raw"].encode()
    out = io.BytesIO()
    entries, patches = [], []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for m in spec.get("members", []):
            data = zip_bytes(m["zip"]) if "zip" in m else _bytes(m)
            info = zipfile.ZipInfo(m["name"])
            info.compress_type = zipfile.ZIP_STORED if m.get("stored") else zipfile.ZIP_DEFLATED
            mode = {"symlink": 0o120777, "dir": 0o040755, "fifo": 0o010644}.get(m.get("type"), 0o100644)
            info.external_attr = mode << 16
            import warnings
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")          # duplicate names are the point of some cases
                zf.writestr(info, data)
            entries.append({"name": m["name"], "size_bytes": len(data), "records": _records(data)})
            if m.get("flag_bits") or m.get("claim_size") is not None or m.get("corrupt_at") is not None:
                patches.append((m["name"], m.get("flag_bits"), m.get("claim_size"), m.get("corrupt_at")))
        man = spec.get("manifest", "auto")
        if man == "auto":
            man = {"files": entries}
        if isinstance(man, dict):
            for e in man.get("override", []):
                for f in entries:
                    if f["name"] == e["name"]:
                        f.update(e)
            if "override" in man:
                man = {"files": entries + man.get("extra", [])}
            elif "extra" in man:
                man = {"files": entries + man["extra"]}
            zf.writestr("manifest.json", json.dumps(man))
        elif isinstance(man, str) and man != "none":
            zf.writestr("manifest.json", man)
        elif isinstance(man, list):
            zf.writestr("manifest.json", json.dumps(man))
    raw = out.getvalue()
    for name, flags, size, corrupt in patches:
        raw = _patch(raw, name, flags, size, corrupt)
    if spec.get("truncate"):
        raw = raw[:int(len(raw) * float(spec["truncate"]))]
    return raw


def _value(v):
    if isinstance(v, dict) and "repeat" in v:       # {repeat: "y", times: 1048576}: a very long value
        return v["repeat"] * int(v["times"])
    if isinstance(v, dict) and "random" in v:       # {random: 2097152, seed: 1}: long and not compressible
        import random
        import string
        return "".join(random.Random(v.get("seed", 0)).choices(string.ascii_letters, k=int(v["random"])))
    return v


def _row_text(spec, base: dict, values: dict) -> str:
    row = {k: _value(v) for k, v in {**base, **values}.items()}
    return spec.delimiter.join("" if row.get(c.name) is None else str(row[c.name]) for c in spec.columns)


def build(run: str, emission: Path, specs: dict, doc: dict | None = None) -> dict[str, Built]:
    doc = doc or load_cases()
    built: dict[str, Built] = {}
    rows: dict[str, list[tuple[dict, list[bytes], list[str]]]] = {}
    for case in doc["cases"]:
        if case["run"] != run:
            continue
        if "zip" in case:
            folder = case["id"]
            path = emission / folder / case["zip"].get("name", "x.zip")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(zip_bytes(case["zip"]))
            built[case["id"]] = Built(case, folder)
            continue
        src = case["rows"]["source"]
        spec, base = specs[src], doc["bases"][src]
        key = spec.keys[0]
        lines, keys = [], []
        for item in case["rows"].get("lines", [case["rows"]]):
            n = sum(len(x[1]) for x in rows.get(src, [])) + len(lines)
            values = {k: v for k, v in base.get("auto", {}).items()}
            values = {k: (v["start"] + n * v.get("step", 1) if isinstance(v, dict) else v) for k, v in values.items()}
            values = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in values.items()}
            values.update(item.get("values", {}))
            if "line" in item:
                text = item["line"]
            elif "line_hex" in item:
                text = None
            else:
                text = _row_text(spec, base["values"], values)
            data = bytes.fromhex(item["line_hex"]) if text is None else text.encode(item.get("encoding", "utf-8"))
            lines.append(data)
            keys.append(str(values.get(key, "")))
        rows.setdefault(src, []).append((case, lines, keys))
    for src, items in rows.items():
        spec = specs[src]
        header = spec.delimiter.join(c.name for c in spec.columns).encode()
        body, line_no = [header], 1
        for case, lines, keys in items:
            b = Built(case, f"rows_{src}")
            for data in lines:
                line_no += 1
                body.append(data)
                b.lines.append(line_no)
            b.keys = keys
            built[case["id"]] = b
        data = b"\n".join(body) + b"\n"
        member = doc["bases"][src]["member"]
        zdoc = {"members": [{"name": member, "hex": data.hex()}]}
        path = emission / f"rows_{src}" / f"{src}.zip"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(zip_bytes(zdoc))
    return built
