"""Stream one CSV member out of a zip exactly once: sha256, byte and line counts, header, first data row,
and the line-numbered parts Spark reads.

The member is cut at line boundaries into parts of about ``part_bytes``; a part is named after the number
of its first line (``part-0000000001.csv`` holds the header, line 1). Spark reads every part as one
partition, so a row's line number is the part's first line + its position in the part. Counting is done on
whole blocks in C (``bytes.count``), so the pass costs little more than inflating the zip.
"""
from __future__ import annotations

import hashlib
import os
import zipfile
import zlib
from dataclasses import dataclass, field

BLOCK = 4 * 1024 * 1024


class BadMember(Exception):
    """A member that cannot be trusted once read; ``kind`` is the rejection kind."""
    kind = "corrupt_member"


class SizeExceeded(BadMember):
    kind = "zip_bomb"


class CorruptMember(BadMember):
    """The member cannot be inflated as its headers say: corrupt compressed data, a CRC-32 that does not match
    (Python's zip reader raises ``BadZipFile`` mid-read, which used to escape intake and fail the whole run,
    every run, while the zip stayed in emission/), or fewer bytes than the header claims."""
    kind = "corrupt_member"


@dataclass
class Extracted:
    member: str
    sha256: str
    size_bytes: int
    lines: int                      # physical lines (header included)
    header: str | None
    first_row: str | None
    parts: list[tuple[int, str]] = field(default_factory=list)   # (first line number, local path)

    @property
    def records(self) -> int:
        """Data rows: lines after the header (blank lines included, they are rows to validate)."""
        return max(self.lines - 1, 0)


def part_name(first_line: int) -> str:
    return f"part-{first_line:010d}.csv"


def first_line_of(part_path: str) -> int:
    return int(os.path.basename(part_path)[5:15])


def extract(zf: zipfile.ZipFile, info: zipfile.ZipInfo, out_dir: str, part_bytes: int = 32 * 1024 * 1024,
            max_bytes: int | None = None) -> Extracted:
    os.makedirs(out_dir, exist_ok=True)
    sha = hashlib.sha256()
    size = 0
    newlines = 0
    last_byte = b""
    head = b""
    res = Extracted(info.filename, "", 0, 0, None, None)
    part_fh, part_size, part_first = None, 0, 1
    limit = max_bytes if max_bytes is not None else info.file_size
    crc = 0

    def open_part(first: int):
        path = os.path.join(out_dir, part_name(first))
        res.parts.append((first, path))
        return open(path, "wb")

    part_fh = open_part(1)
    try:
        with zf.open(info) as src:
            while True:
                try:
                    block = src.read(BLOCK)
                except (zipfile.BadZipFile, zlib.error, EOFError) as e:
                    raise CorruptMember(f"{info.filename}: unreadable compressed data ({e})") from None
                if not block:
                    break
                size += len(block)
                if size > limit:
                    raise SizeExceeded(f"{info.filename}: more than {limit} bytes when inflated "
                                       f"(the zip header says {info.file_size})")
                sha.update(block)
                crc = zlib.crc32(block, crc)
                if len(head) < 65536:
                    head += block[:65536]
                # cut the part at the last newline of this block once it is big enough
                if part_size + len(block) >= part_bytes:
                    cut = block.rfind(b"\n")
                    if cut >= 0:
                        first, rest = block[:cut + 1], block[cut + 1:]
                        part_fh.write(first)
                        newlines += first.count(b"\n")
                        part_fh.close()
                        part_first = newlines + 1
                        part_fh = open_part(part_first)
                        part_fh.write(rest)
                        newlines += rest.count(b"\n")
                        part_size = len(rest)
                        last_byte = block[-1:]
                        continue
                part_fh.write(block)
                part_size += len(block)
                newlines += block.count(b"\n")
                last_byte = block[-1:]
    finally:
        part_fh.close()
    if crc != info.CRC or size != info.file_size:
        raise CorruptMember(f"{info.filename}: {size} bytes inflated with CRC-32 {crc:08x}, the zip header says "
                            f"{info.file_size} bytes with CRC-32 {info.CRC:08x} (corrupt, or headers that lie)")
    if res.parts and part_size == 0 and len(res.parts) > 1:   # an empty trailing part
        os.remove(res.parts.pop()[1])
    res.sha256 = sha.hexdigest()
    res.size_bytes = size
    res.lines = newlines + (1 if size and last_byte != b"\n" else 0)
    text = head.decode("utf-8", errors="replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n", 2)
    if size:
        res.header = lines[0].rstrip("\r")
        if len(lines) > 1 and (len(lines) > 2 or lines[1]):
            res.first_row = lines[1].rstrip("\r")
    return res
