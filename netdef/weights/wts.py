"""tensorrtx `.wts`: text, one tensor per line, every value a big-endian float32 in hex.

Line 1 is the tensor count; each further line is `<key> <N> <hex_1> ... <hex_N>`.
Three writers exist (double space after N, single space, and `hex()`'s unpadded
`0x` form), so the reader tokenizes on any whitespace and right-aligns each token's
digits. Parsing is vectorized per chunk of text (bytes.translate to nibbles, each
token's last 8 bytes read as one uint64, bit tricks to pack), never a Python loop
per value. The file is streamed in blocks and each line's values are decoded straight
into their array, so the text is never in memory whole (peak ~1.1x the weight bytes).
"""
from __future__ import annotations

import os
import re
from typing import BinaryIO, Mapping

import numpy as np

from netdef.errors import WeightsError, shown

VARIANTS = ("double", "single", "0x")
_CHUNK = 1 << 18  # bytes of text decoded at once: big enough to amortize numpy calls, cache-sized
_BLOCK = 1 << 20  # bytes read from the file at once
_MAX_DIGITS = 18  # a tensor or value count longer than this cannot describe a real file
_WS = b" \t\r\v\f"
_WS_BYTES = [bytes([c]) for c in _WS]
_BLANK, _X, _BAD = 0x10, 0x11, 0xFF


def _nibble_table() -> bytes:
    """bytes.translate table: hex digit -> 0..15, whitespace -> _BLANK, x/X -> _X, else _BAD."""
    table = bytearray([_BAD] * 256)
    for value, digit in enumerate(b"0123456789abcdef"):
        table[digit] = table[ord(chr(digit).upper())] = value
    for blank in _WS:
        table[blank] = _BLANK
    table[ord("x")] = table[ord("X")] = _X
    return bytes(table)


_NIBBLE = _nibble_table()
_DIGIT_MASK = np.array([0] + [(1 << (4 * k)) - 1 for k in range(1, 9)], np.uint32)
_SPELL = bytes.maketrans(bytes(range(16)) + bytes([_BLANK, _X]), b"0123456789abcdef x")  # inverse
_SLOTS = np.arange(8)
_SPACE = re.compile(rb"\s*")  # blanks and newlines
_INLINE_SPACE = re.compile(rb"[ \t\r\v\f]*")
_WORD = re.compile(rb"\S*")
_TOKEN = re.compile(rb"0[xX][0-9a-fA-F]{1,8}|[0-9a-fA-F]{8}")


def read(path: str) -> dict[str, np.ndarray]:
    """Parse a .wts file into flat float32 arrays, in file order, streaming: the text is read
    in blocks and each tensor is decoded into its preallocated array, so peak memory is the
    arrays plus a few MiB, never the whole text."""
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise WeightsError(f"cannot read weights file {path!r}: {exc.strerror}") from None
    with f:
        try:
            return _parse(_Text(f), path)
        except OSError as exc:  # e.g. EIO from a failing disk mid-read
            raise WeightsError(f"cannot read weights file {path!r}: {exc.strerror or exc}") from None


def _parse(text: "_Text", path: str) -> dict[str, np.ndarray]:
    head = text.head()
    if head is None:
        raise WeightsError(f"{path}: the file is empty (a .wts starts with the tensor count)")
    lineno, first, second = head
    if second is not None or not first.isdigit():
        raise WeightsError(f"{path}: line {lineno}: expected the tensor count, got {_show(text.line_preview())}")
    count = _number(first, f"{path}: line {lineno}", "tensor count")
    out: dict[str, np.ndarray] = {}
    where: dict[str, int] = {}
    while (head := text.head()) is not None:
        lineno, raw_key, n_text = head
        try:
            key = raw_key.decode("utf-8")
        except UnicodeDecodeError:
            raise WeightsError(f"{path}: line {lineno}: the key {_show(raw_key)} is not UTF-8 text "
                               "(the file is corrupt)") from None
        at = f"{path}: line {lineno} ({shown(key)})"
        if len(out) == count:
            raise WeightsError(f"{at}: the header says {count} tensors, but the file has more")
        if n_text is None or not n_text.isdigit():
            got = "nothing" if n_text is None else _show(n_text)
            raise WeightsError(f"{at}: expected the value count after the key, got {got} "
                               "(the file may be truncated)")
        if key in out:
            raise WeightsError(f"{at}: duplicate key, first seen on line {where[key]}")
        out[key] = text.values(_number(n_text, at, "value count"), at)
        where[key] = lineno
    if len(out) != count:
        raise WeightsError(f"{path}: the header says {count} tensors, but the file has {len(out)} "
                           "(truncated or hand-edited?)")
    return out


def _number(digits: bytes, at: str, what: str) -> int:
    """A count from the file; more than 18 digits cannot be real (and int() refuses 4,300+)."""
    if len(digits.lstrip(b"0")) > _MAX_DIGITS:
        raise WeightsError(f"{at}: the {what} has {len(digits):,} digits, more than any real file "
                           "could hold (the file is corrupt)")
    return int(digits)


class _Text:
    """A .wts file read in blocks: tokens at line starts, then each line's values in chunks."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.buf, self.pos, self.eof = b"", 0, False
        self.lineno = 1  # line number at self.pos
        self.line_start: int | None = None  # buf index of the line head() read, kept for line_preview
        self.consumed = 0  # file offset of buf[0]
        self.size = os.fstat(f.fileno()).st_size

    def fill(self, need: int) -> None:
        """Make buf[pos:] hold at least `need` bytes (fewer at the end of the file), dropping
        what was already parsed."""
        if len(self.buf) - self.pos >= need or self.eof:
            return
        keep = self.pos if self.line_start is None else min(self.pos, self.line_start)
        self.consumed += keep
        if self.line_start is not None:
            self.line_start -= keep
        parts, have = [self.buf[keep:]], len(self.buf) - keep
        while have < need:
            block = self.f.read(max(_BLOCK, need - have))
            if not block:
                self.eof = True
                break
            parts.append(block)
            have += len(block)
        self.buf, self.pos = b"".join(parts), self.pos - keep

    def _token(self, pattern: re.Pattern) -> re.Match | None:
        """`pattern` matched at pos, reading on while the match runs into the end of the buffer."""
        while True:
            m = pattern.match(self.buf, self.pos)
            if m is not None and m.end() < len(self.buf) or self.eof:
                return m
            self.fill(len(self.buf) - self.pos + _BLOCK)

    def head(self) -> tuple[int, bytes, bytes | None] | None:
        """(line number, first token, second token or None) of the next non-blank line, with
        pos after the last token read; None at the end of the file."""
        blank = self._token(_SPACE)
        self.lineno += self.buf.count(b"\n", self.pos, blank.end())
        self.pos = self.line_start = blank.end()
        if self.pos >= len(self.buf):
            return None
        first = self._token(_WORD)
        self.pos = first.end()
        gap = self._token(_INLINE_SPACE)
        if gap.end() == len(self.buf) or self.buf[gap.end()] == 0x0A:  # the line ends here
            return self.lineno, first.group(), None
        self.pos = gap.end()
        second = self._token(_WORD)
        self.pos = second.end()
        return self.lineno, first.group(), second.group()

    def line_preview(self) -> bytes:
        """The start of the current line (up to 64 bytes), to quote in an error."""
        return self.buf[self.line_start:self.line_start + 64].split(b"\n")[0]

    def values(self, n: int, at: str) -> np.ndarray:
        """Decode the hex words up to the end of the line; exactly `n` are required."""
        self.line_start = None  # a line of values may be huge: let fill() drop what was decoded
        # every value takes at least 4 bytes (a blank and '0x0'): a count the rest of the file
        # cannot hold is not allocated (it is an error below), so a corrupt count costs no memory
        fits = n <= (self.size - self.consumed - self.pos) // 4 + 1
        out = np.empty(n if fits else 0, np.float32)
        bits = out.view(np.uint32)
        found = 0
        while True:
            self.fill(_CHUNK)
            buf, pos = self.buf, self.pos
            stop = min(pos + _CHUNK, len(buf))
            nl = buf.find(b"\n", pos, stop)
            last = nl >= 0 or (stop == len(buf) and self.eof)
            cut = nl if nl >= 0 else stop
            if not last:  # back up to a blank, so no token is split (a valid token has <= 10 bytes)
                blank = max(buf.rfind(c, max(stop - 16, pos), stop) for c in _WS_BYTES)
                if blank > pos:
                    cut = blank
            decoded = _decode(buf[pos:cut].translate(_NIBBLE))
            if decoded is None:
                index, token = _first_bad(buf[pos:cut])
                ends_inside = last and nl < 0 and cut > pos and buf[cut - 1] not in _WS
                raise WeightsError(f"{at}: value {found + index + 1} is {_show(token)}, not a float32 hex "
                                   "word (8 hex digits, or 0x and 1-8 digits)"
                                   + ("; the file ends inside it (truncated?)" if ends_inside else ""))
            if found + decoded.size <= out.size:
                bits[found:found + decoded.size] = decoded
            found += decoded.size
            self.pos = cut
            if last:
                if nl >= 0:
                    self.pos, self.lineno = nl + 1, self.lineno + 1
                break
        if found != n:
            raise WeightsError(f"{at}: declares {n} values but has {found}"
                               + (" (the file may be truncated)" if found < n else ""))
        return out


def _decode(nib: bytes) -> np.ndarray | None:
    """uint32 bit patterns of the blank-separated tokens in `nib` (text through _NIBBLE),
    or None if any token is malformed."""
    bits = _fixed_width(nib)
    return bits if bits is not None else _tokens(nib)


def _fixed_width(nib: bytes) -> np.ndarray | None:
    """Fast path for gen_wts.py's own layout, 8 digits one space apart: every token is an
    8-byte word at a stride of 9, so no tokenizing or gathering is needed. None when the
    text is laid out otherwise (or malformed): _tokens then decides."""
    a, b = 0, len(nib)
    while a < b and nib[a] == _BLANK:
        a += 1
    while b > a and nib[b - 1] == _BLANK:
        b -= 1
    if (b - a + 1) % 9 or not (np.frombuffer(nib, np.uint8, b - a, a)[8::9] == _BLANK).all():
        return None
    words = np.ndarray(((b - a + 1) // 9,), "<u8", nib, a, (9,))
    if np.any(words & 0xF0F0F0F0F0F0F0F0):  # a byte that is not a hex digit
        return None
    return _pack(words)


def _tokens(nib: bytes) -> np.ndarray | None:
    """Any blanks, optional 0x prefixes, 1-8 digits after one: each token's last 8 bytes
    are read as one word, right-aligned, and the bytes before its digits masked off."""
    nib = b"\x10" * 8 + nib + b"\x10"  # every token can read 8 bytes, and every token ends
    arr = np.frombuffer(nib, np.uint8)
    inside = arr != _BLANK
    flips = np.flatnonzero(inside[1:] != inside[:-1]) + 1  # alternately a token's start and end
    starts, ends = flips[0::2], flips[1::2]
    lengths = ends - starts
    second = np.minimum(starts + 1, arr.size - 1)
    prefixed = (lengths > 2) & (arr[starts] == 0) & (arr[second] == _X)
    digits = lengths - 2 * prefixed
    # every non-blank byte must be a hex digit except the x of each prefix
    if bytes([_BAD]) in nib or nib.count(bytes([_X])) != np.count_nonzero(prefixed):
        return None
    if np.any(np.where(prefixed, (digits < 1) | (digits > 8), digits != 8)):
        return None
    words = np.ndarray((arr.size - 7,), "<u8", nib, 0, (1,))[ends - 8]
    return _pack(words) & _DIGIT_MASK[digits]


def _pack(words: np.ndarray) -> np.ndarray:
    """8 nibble bytes per little-endian uint64 (first digit lowest) -> the uint32 they spell."""
    x = words & 0x0F0F0F0F0F0F0F0F
    x = ((x << 4) | (x >> 8)) & 0x00FF00FF00FF00FF  # digit pairs -> bytes B0..B3 in even lanes
    x = (x | (x >> 8)) & 0x0000FFFF0000FFFF
    x = (x | (x >> 16)) & 0xFFFFFFFF  # B0 | B1 << 8 | B2 << 16 | B3 << 24
    return x.astype(np.uint32).byteswap()  # the text is big-endian: B0 is the high byte


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
            raise WeightsError(f"key {shown(key)} is empty or contains whitespace, which .wts cannot store")
        if arr.dtype.kind == "c":
            raise WeightsError(f"key {shown(key)}: .wts stores real float32 values, not {arr.dtype}")
    f.write(b"%d\n" % len(arrays))
    for key, arr in arrays.items():
        values = np.asarray(arr).reshape(-1)
        head = f"{key} {values.size}" + (" " if variant == "double" else "")
        f.write(head.encode("utf-8"))
        for i in range(0, values.size, 1 << 20):
            f.write(_encode(values[i:i + (1 << 20)], variant))
        f.write(b"\n")


def _encode(values: np.ndarray, variant: str) -> bytes:
    """' hhhhhhhh' per value (or ' 0x<unpadded>' for the 0x variant), vectorized: nibbles
    and marker bytes are laid out with numpy, then bytes.translate spells them."""
    be = values.astype(">f4").view(np.uint8).reshape(-1, 4)
    text = np.empty((be.shape[0], 9 if variant != "0x" else 11), np.uint8)
    text[:, :-8] = np.frombuffer(bytes([_BLANK, 0, _X]), np.uint8)[:text.shape[1] - 8]
    digits = text[:, -8:]
    digits[:, 0::2] = be >> 4
    digits[:, 1::2] = be & 15
    if variant != "0x":
        return text.tobytes().translate(_SPELL)
    first = np.argmax(digits != 0, axis=1)
    first[~digits.any(axis=1)] = 7  # hex(0) is '0x0'
    keep = np.ones(text.shape, bool)
    keep[:, 3:] = _SLOTS >= first[:, None]
    return text[keep].tobytes().translate(_SPELL)
