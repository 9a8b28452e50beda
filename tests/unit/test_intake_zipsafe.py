"""Hostile zips are refused with a clear reason (pure: zipfile only)."""
import io
import stat
import zipfile

import pytest

from cqube_spark.intake import fingerprint, manifest, zipsafe


def _zip(members) -> zipfile.ZipFile:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for m in members:
            if isinstance(m, zipfile.ZipInfo):
                zf.writestr(m, b"x")
            else:
                name, data = m
                zf.writestr(name, data)
    buf.seek(0)
    return zipfile.ZipFile(buf)


def _info(name, mode):
    i = zipfile.ZipInfo(name)
    i.external_attr = mode << 16
    return i


@pytest.mark.parametrize("members,kind", [
    ([("../evil.csv", "a\n")], "path_traversal"),
    ([("/abs.csv", "a\n")], "absolute_path"),
    ([(_info("link.csv", stat.S_IFLNK | 0o777))], "link"),
    ([(_info("dir/", stat.S_IFDIR | 0o755))], "unexpected_member_type"),
    ([(_info("fifo.csv", stat.S_IFIFO | 0o644))], "unexpected_member_type"),
    ([("evil.sh", "rm -rf /\n")], "unexpected_member"),
    ([("sub/a.csv", "a\n")], "unexpected_member"),
    ([("bomb.csv", b"0" * (20 * 1024 * 1024))], "zip_bomb"),
])
def test_hostile_members_are_refused(members, kind):
    with pytest.raises(zipsafe.UnsafeZip) as e:
        zipsafe.check(_zip(members))
    assert e.value.kind == kind


def test_total_size_limit():
    with pytest.raises(zipsafe.UnsafeZip) as e:
        zipsafe.check(_zip([("a.csv", "x" * 5000)]), zipsafe.Limits(max_uncompressed_bytes=1000))
    assert e.value.kind == "too_large"


def test_plain_zip_with_manifest_is_accepted():
    data, man = zipsafe.check(_zip([("a.csv", "h\n1\n"), ("manifest.json", "{}")]))
    assert [d.filename for d in data] == ["a.csv"] and man.filename == "manifest.json"


def test_manifest_compare():
    entries = manifest.parse(b'{"files": [{"name": "a.csv", "size_bytes": 4, "records": 1}]}')
    assert manifest.compare(entries["a.csv"], "a.csv", 4, 1) == []
    assert "records 1 in manifest, 2 in the file" in manifest.compare(entries["a.csv"], "a.csv", 4, 2)[0]
    assert manifest.compare(None, "b.csv", 1, 1)


def test_fingerprint_parts_keep_line_numbers(tmp_path):
    lines = ["h1|h2"] + [f"{i}|x" for i in range(1, 1001)]
    zf = _zip([("a.csv", "\r\n".join(lines))])   # CRLF, no trailing newline
    ex = fingerprint.extract(zf, zf.getinfo("a.csv"), str(tmp_path), part_bytes=1)
    assert ex.lines == 1001 and ex.records == 1000 and ex.header == "h1|h2" and ex.first_row == "1|x"
    # every part starts at the line its name says
    got = []
    for first, path in ex.parts:
        with open(path, "rb") as fh:
            for n, raw in enumerate(fh.read().split(b"\n")):
                if raw:
                    got.append((first + n, raw.decode().rstrip("\r")))
    assert got == list(zip(range(1, 1002), lines))


def _lying_zip(text: bytes, claim: int) -> zipfile.ZipFile:
    """A stored member whose local and central headers claim ``claim`` uncompressed bytes."""
    import struct

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("school_management_master.csv", text)
    raw = bytearray(buf.getvalue())
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        pos = raw.find(sig)
        struct.pack_into("<I", raw, pos + off, claim)
    return zipfile.ZipFile(io.BytesIO(bytes(raw)))


def test_a_member_whose_header_claims_fewer_bytes_is_refused_not_cut_short(tmp_path):
    text = b"ManagementId|Management|default_option\n1|Govt|\n2|Tribal|\n3|Aided|\n"
    zf = _lying_zip(text, 40)
    with pytest.raises(fingerprint.CorruptMember) as e:
        fingerprint.extract(zf, zf.infolist()[0], str(tmp_path / "p"))
    assert e.value.kind == "corrupt_member" and "school_management_master.csv" in str(e.value)


def test_corrupt_compressed_data_is_a_corrupt_member(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("school_management_master.csv", "ManagementId|Management|default_option\n" + "1|Govt|\n" * 50)
    raw = bytearray(buf.getvalue())
    raw[30 + len("school_management_master.csv") + 3] ^= 0xFF
    zf = zipfile.ZipFile(io.BytesIO(bytes(raw)))
    with pytest.raises(fingerprint.BadMember) as e:
        fingerprint.extract(zf, zf.infolist()[0], str(tmp_path / "p"))
    assert e.value.kind == "corrupt_member"
