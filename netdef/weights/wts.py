"""tensorrtx `.wts`: text, one tensor per line, every value a big-endian float32 in hex.

Line 1 is the tensor count; each further line is `<key> <N> <hex_1> ... <hex_N>`.
Three writers exist (double space after N, single space, and `hex()`'s unpadded
`0x` form), so the reader tokenizes on any whitespace and right-aligns each token's
digits. Parsing is vectorized per chunk of text (a byte->nibble table, a gather of
each token's last 8 characters), never a Python loop per value.
"""
from __future__ import annotations

import re
from typing import BinaryIO, Mapping

import numpy as np

from netdef.errors import WeightsError

VARIANTS = ("double", "single", "0x")
_CHUNK = 1 << 18  # bytes of text decoded at once: big enough to amortize numpy calls, cache-sized
_WS = b" \t\r\v\f"
_SPACE, _BAD = 16, 255
# byte -> nibble value 0..15, _SPACE for whitespace, _BAD for anything else
_NIBBLE = np.full(256, _BAD, np.uint8)
_NIBBLE[list(b"0123456789abcdef")] = np.arange(16)
_NIBBLE[list(b"ABCDEF")] = np.arange(10, 16)
_NIBBLE[list(_WS)] = _SPACE
_SLOTS = np.arange(8)
_DIGIT_MASK = np.array([0] + [(1 << (4 * k)) - 1 for k in range(1, 9)], np.uint32)
_HEX_CHARS = np.frombuffer(b"0123456789abcdef", np.uint8)
_HEAD = re.compile(rb"(\S+)(?:[ \t\v\f]+(\S+))?")
_NONBLANK = re.compile(rb"\S")
_TOKEN = re.compile(rb"0[xX][0-9a-fA-F]{1,8}|[0-9a-fA-F]{8}")


def read(path: str) -> dict[str, np.ndarray]:
    """Parse a .wts file into flat float32 arrays, in file order."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {path!r}: {exc.strerror}") from None
    lines = _lines(data)
    first = next(lines, None)
    if first is None:
        raise WeightsError(f"{path}: the file is empty (a .wts starts with the tensor count)")
    lineno, start, end = first
    header = data[start:end].strip()
    if not header.isdigit():
        raise WeightsError(f"{path}: line {lineno}: expected the tensor count, got {_show(header)}")
    count = int(header)
    out: dict[str, np.ndarray] = {}
    where: dict[str, int] = {}
    for lineno, start, end in lines:
        m = _HEAD.match(data, start, end)
        key = m.group(1).decode("utf-8", "replace")
        at = f"{path}: line {lineno} ({key!r})"
        if len(out) == count:
            raise WeightsError(f"{at}: the header says {count} tensors, but the file has more")
        if m.group(2) is None or not m.group(2).isdigit():
            got = "nothing" if m.group(2) is None else _show(m.group(2))
            raise WeightsError(f"{at}: expected the value count after the key, got {got} "
                               "(the file may be truncated)")
        if key in out:
            raise WeightsError(f"{at}: duplicate key, first seen on line {where[key]}")
        out[key] = _values(data, m.end(), end, int(m.group(2)), at)
        where[key] = lineno
    if len(out) != count:
        raise WeightsError(f"{path}: the header says {count} tensors, but the file has {len(out)} "
                           "(truncated or hand-edited?)")
    return out


def _lines(data: bytes):
    """(1-based line number, first non-blank byte, end) of every non-blank line."""
    pos, lineno, n = 0, 0, len(data)
    while pos < n:
        nl = data.find(b"\n", pos)
        end = n if nl < 0 else nl
        lineno += 1
        text = _NONBLANK.search(data, pos, end)
        if text:
            yield lineno, text.start(), end
        pos = end + 1


def _values(data: bytes, start: int, end: int, n: int, at: str) -> np.ndarray:
    """Decode the hex words in data[start:end]; exactly `n` are required."""
    parts, found, pos = [], 0, start
    while pos < end:
        cut = min(pos + _CHUNK, end)
        while cut < end and data[cut] not in _WS:  # never split a token (tokens are <= 10 chars)
            cut += 1
        bits = _decode(np.frombuffer(data, np.uint8, cut - pos, pos))
        if bits is None:
            index, token = _first_bad(data[pos:cut])
            cut_short = end == len(data) and data[end - 1:end].isalnum()  # no final newline
            raise WeightsError(f"{at}: value {found + index + 1} is {_show(token)}, not a float32 hex "
                               "word (8 hex digits, or 0x and 1-8 digits)"
                               + ("; the file ends inside it (truncated?)" if cut_short else ""))
        parts.append(bits)
        found += bits.size
        pos = cut
    if found != n:
        raise WeightsError(f"{at}: declares {n} values but has {found}"
                           + (" (the file may be truncated)" if found < n else ""))
    return np.concatenate(parts).view(np.float32) if parts else np.empty(0, np.float32)


def _decode(text: np.ndarray) -> np.ndarray | None:
    """uint32 bit patterns of the whitespace-separated tokens in `text`, or None if any is malformed."""
    bits = _fixed_width(text)
    return bits if bits is not None else _tokens(text)


def _fixed_width(text: np.ndarray) -> np.ndarray | None:
    """Fast path for gen_wts.py's own layout, 8 digits one space apart: no tokenizing needed.
    None when the text is laid out otherwise (or malformed): _tokens then decides."""
    a, b = 0, text.size
    while a < b and text[a] == 32:
        a += 1
    while b > a and int(text[b - 1]) in _WS:
        b -= 1
    body = text[a:b]
    if (body.size + 1) % 9 or not (body[8::9] == 32).all():
        return None
    nib = _NIBBLE.take(np.lib.stride_tricks.as_strided(body, ((body.size + 1) // 9, 8), (9, 1)))
    if nib.max() > 15:
        return None
    packed = (nib[:, 0::2] << 4) | nib[:, 1::2]
    return packed.view(">u4")[:, 0].astype(np.uint32)


def _tokens(text: np.ndarray) -> np.ndarray | None:
    """Any whitespace, optional 0x prefixes, 1-8 digits after one: right-align and decode."""
    nib = np.empty(text.size + 8, np.uint8)  # 8 leading blanks: every token can gather 8 slots
    nib[:8] = _SPACE
    _NIBBLE.take(text, out=nib[8:])
    edges = np.diff((nib != _SPACE).view(np.int8), append=np.int8(0))
    starts = np.flatnonzero(edges == 1) + 1
    ends = np.flatnonzero(edges == -1) + 1
    lengths = ends - starts
    second = np.minimum(starts + 1, nib.size - 1)
    prefixed = (lengths > 2) & (nib[starts] == 0) & ((text[second - 8] | 0x20) == ord("x"))
    digits = lengths - 2 * prefixed
    # every non-blank byte must be a hex digit except the 'x' of each prefix
    if np.count_nonzero(nib == _BAD) != np.count_nonzero(prefixed):
        return None
    if np.any(np.where(prefixed, (digits < 1) | (digits > 8), digits != 8)):
        return None
    words = nib.take(ends[:, None] - 8 + _SLOTS)  # each token's last 8 bytes, right-aligned
    words &= 15  # bytes before a short token's digits are masked off below
    packed = (words[:, 0::2] << 4) | words[:, 1::2]
    bits = packed.view(">u4")[:, 0].astype(np.uint32)
    bits &= _DIGIT_MASK[digits]
    return bits


def _first_bad(text: bytes) -> tuple[int, bytes]:
    """Index and text of the first malformed token; only called to word an error."""
    for i, token in enumerate(text.split()):
        if not _TOKEN.fullmatch(token):
            return i, token
    raise AssertionError("no malformed token")  # pragma: no cover - _decode said there was one


def _show(token: bytes) -> str:
    return repr(token[:24].decode("utf-8", "replace")) + ("..." if len(token) > 24 else "")


def write(f: BinaryIO, arrays: Mapping[str, np.ndarray], variant: str = "double") -> None:
    """Write the arrays as gen_wts.py does: flattened, cast to float32, big-endian hex."""
    for key, arr in arrays.items():
        if not key or any(c.isspace() for c in key):
            raise WeightsError(f"key {key!r} is empty or contains whitespace, which .wts cannot store")
        if arr.dtype.kind == "c":
            raise WeightsError(f"key {key!r}: .wts stores real float32 values, not {arr.dtype}")
    f.write(b"%d\n" % len(arrays))
    for key, arr in arrays.items():
        values = np.asarray(arr).reshape(-1)
        head = f"{key} {values.size}" + (" " if variant == "double" else "")
        f.write(head.encode("utf-8"))
        for i in range(0, values.size, 1 << 20):
            f.write(_encode(values[i:i + (1 << 20)], variant))
        f.write(b"\n")


def _encode(values: np.ndarray, variant: str) -> bytes:
    """' hhhhhhhh' per value (or ' 0x<unpadded>' for the 0x variant), vectorized."""
    be = values.astype(">f4").view(np.uint8).reshape(-1, 4)
    digits = np.empty((be.shape[0], 8), np.uint8)
    digits[:, 0::2] = be >> 4
    digits[:, 1::2] = be & 15
    if variant != "0x":
        text = np.empty((be.shape[0], 9), np.uint8)
        text[:, 0] = ord(" ")
        text[:, 1:] = _HEX_CHARS[digits]
        return text.tobytes()
    text = np.empty((be.shape[0], 11), np.uint8)
    text[:, :3] = np.frombuffer(b" 0x", np.uint8)
    text[:, 3:] = _HEX_CHARS[digits]
    first = np.argmax(digits != 0, axis=1)
    first[~digits.any(axis=1)] = 7  # hex(0) is '0x0'
    keep = np.ones(text.shape, bool)
    keep[:, 3:] = _SLOTS >= first[:, None]
    return text[keep].tobytes()
