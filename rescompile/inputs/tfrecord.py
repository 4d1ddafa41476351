"""TFRecord framing, read without TensorFlow: a shard's compression and its record count."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

from rescompile.errors import RescompileError

HEADER = 12  # uint64 length + uint32 masked CRC of the length
FOOTER = 4  # uint32 masked CRC of the data
GZIP_MAGIC = b"\x1f\x8b"


def _crc32c_entry(byte: int) -> int:
    for _ in range(8):
        byte = (byte >> 1) ^ (0x82F63B78 if byte & 1 else 0)
    return byte


_CRC32C = tuple(_crc32c_entry(byte) for byte in range(256))


def _masked_crc32c(data: bytes) -> int:
    """TFRecord's checksum: CRC-32C (Castagnoli), rotated and offset."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    crc ^= 0xFFFFFFFF
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def compression(path: Path) -> str:
    """tf.data's compression_type of a TFRecord file, from its first bytes (never its name): ""
    when they are a record header (its length's checksum matches), "GZIP" for a gzip stream
    (`tf.io.TFRecordWriter(path, options="GZIP")`). ZLIB streams are refused; anything else is
    read as plain, where counting finds what is wrong."""
    try:
        with path.open("rb") as handle:
            head = handle.read(HEADER)
    except OSError as exc:
        raise RescompileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(head) == HEADER and struct.unpack("<I", head[8:])[0] == _masked_crc32c(head[:8]):
        return ""
    if head.startswith(GZIP_MAGIC):
        return "GZIP"
    if _is_zlib(head):
        raise RescompileError(
            f"{path}: a ZLIB-compressed TFRecord, which is not supported (write GZIP or plain shards)"
        )
    return ""


def _is_zlib(head: bytes) -> bool:
    """A zlib stream's start: a deflate CMF/FLG pair whose check bits hold, then valid deflate."""
    if len(head) < 2 or head[0] & 0x0F != 8 or head[0] >> 4 > 7 or int.from_bytes(head[:2], "big") % 31:
        return False
    try:
        zlib.decompressobj().decompress(head)
    except zlib.error:
        return False
    return True


GZIP_FLOOR = 16 * 2**20
MAX_GZIP_EXPANSION = 32
"""A GZIP shard may decompress to GZIP_FLOOR + MAX_GZIP_EXPANSION times its size: records of
encoded images barely compress, and deflate reaches ~1,000x only on data such as zeros."""


def count_records(path: Path, kind: str | None = None) -> int:
    """The number of records in a TFRecord file, plain or GZIP (`kind`, read from the file when
    not given), reading only the 12-byte headers of a plain one (a shard of ImageNet's ~1,250
    records is counted in ~1,250 seeks, not by reading its ~140 MB) and checking each length's
    checksum; a GZIP one is decompressed as a stream, holding one buffer at a time, within a
    budget of what a shard of its size can hold."""
    try:
        if (compression(path) if kind is None else kind) == "GZIP":
            budget = GZIP_FLOOR + MAX_GZIP_EXPANSION * path.stat().st_size
            with gzip.open(path, "rb") as stream:
                return _count(path, stream, end=None, budget=budget)
        with path.open("rb") as handle:
            return _count(path, handle, end=path.stat().st_size)
    except EOFError:
        raise RescompileError(f"{path}: truncated GZIP TFRecord (the stream ends early)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise RescompileError(f"{path}: damaged GZIP TFRecord ({exc})") from None
    except OSError as exc:
        raise RescompileError(f"{path}: cannot read ({exc.strerror or exc})") from None


def _count(path: Path, handle: BinaryIO, end: int | None, budget: int | None = None) -> int:
    """Records counted header by header, seeking past each record's data and footer; `end` is
    the file's size, or None for a decompressed stream, whose seek stops where the stream does
    and which may not pass `budget` bytes."""
    count, offset = 0, 0
    while header := handle.read(HEADER):
        if len(header) < HEADER:
            raise RescompileError(f"{path}: truncated TFRecord (a partial header at byte {offset})")
        (length,) = struct.unpack("<Q", header[:8])
        if struct.unpack("<I", header[8:])[0] != _masked_crc32c(header[:8]):
            raise RescompileError(
                f"{path}: not a TFRecord file, or damaged"
                f" (record {count}: its length's checksum does not match)"
            )
        if length == 0:
            raise RescompileError(f"{path}: record {count} is empty (a record holds an encoded image)")
        offset += HEADER + length + FOOTER
        if budget is not None and offset > budget:
            raise RescompileError(
                f"{path}: decompresses to more than {budget:,} bytes ({MAX_GZIP_EXPANSION}x its size"
                f" and {GZIP_FLOOR // 2**20} MiB), more than a TFRecord shard holds"
            )
        if (end is not None and offset > end) or handle.seek(offset) < offset:
            raise RescompileError(f"{path}: truncated TFRecord (record {count} ends past the file)")
        count += 1
    return count
