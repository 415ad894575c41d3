"""The few BER/DER bytes we handle ourselves, so that large files stream.

asn1crypto encodes and parses every structure of a Secure DICOM File, but only from and to
complete byte strings. Two places cannot hold the whole value in memory, because it is the
DICOM file itself:

* Writing: the containers around the file's bytes (OCTET STRING, encapsulated content,
  DigestedData/SignedData, EncryptedContentInfo, EnvelopedData, ContentInfo) need definite
  lengths before the first byte is written. Every length follows from the plaintext size, so
  `definite_header` writes just the identifier and length octets of those containers; their
  other members are asn1crypto encodings, and the tests check the result with asn1crypto
  (`load(strict=True)` then a forced re-encoding gives the same bytes) and with OpenSSL.
* Reading: foreign writers (`openssl cms -stream`) use BER with indefinite lengths and
  constructed OCTET STRINGs. `BerReader` walks headers and streams the content octets; every
  small member (recipient infos, algorithm identifiers, digests, signer infos) is read whole,
  within a size limit, and parsed by asn1crypto.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Final

from appliance.media.secure.errors import TamperedFileError, TruncatedFileError

UNIVERSAL: Final = 0
CONTEXT: Final = 2
INTEGER: Final = 2
OCTET_STRING: Final = 4
OBJECT_IDENTIFIER: Final = 6
SEQUENCE: Final = 16
SET: Final = 17

MAX_ELEMENT: Final = 8 * 1024 * 1024
"""Largest member read whole (recipient infos, certificates, signer infos): far above any real
one, low enough that a hostile length cannot exhaust memory."""
_MAX_DEPTH: Final = 32


def definite_header(tag_class: int, constructed: bool, tag: int, length: int) -> bytes:
    """Identifier and definite-length octets of a DER element with a low tag number (< 31)."""
    if not 0 <= tag < 31 or length < 0:
        raise ValueError("only low tag numbers and non-negative lengths are encoded here")
    identifier = bytes([tag_class << 6 | (0x20 if constructed else 0) | tag])
    if length < 0x80:
        return identifier + bytes([length])
    octets = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return identifier + bytes([0x80 | len(octets)]) + octets


@dataclass(frozen=True, slots=True)
class Header:
    """One BER identifier and length as read."""

    tag_class: int
    constructed: bool
    tag: int
    length: int | None
    """Content length, or None for the indefinite form."""
    raw: bytes
    """The header octets as they were in the file."""

    def is_a(self, tag_class: int, tag: int) -> bool:
        """True if the element has this class and tag number."""
        return self.tag_class == tag_class and self.tag == tag

    @property
    def is_end_of_contents(self) -> bool:
        """True for the end-of-contents marker of an indefinite-length element."""
        return self.raw == b"\x00\x00"


class BerReader:
    """Reads BER from a binary stream one header, member or content chunk at a time."""

    def __init__(
        self,
        stream: BinaryIO,
        *,
        what: str = "the file",
        truncated: type[TamperedFileError] = TruncatedFileError,
    ) -> None:
        self._stream = stream
        self._what = what
        self._truncated = truncated
        self._consumed = 0
        self._pending: Header | None = None

    @property
    def position(self) -> int:
        """Offset of the next header or content byte not yet handed out."""
        return self._consumed - (len(self._pending.raw) if self._pending else 0)

    def _read(self, count: int) -> bytes:
        data = self._stream.read(count)
        self._consumed += len(data)
        if len(data) != count:
            raise self._truncated(f"{self._what} ends before its structure does")
        return data

    def expect_end(self) -> None:
        """Raise TamperedFileError unless the stream has no byte left."""
        if self._pending is not None or self._stream.read(1):
            raise TamperedFileError(f"{self._what} has data after its end")

    def peek_header(self) -> Header:
        """The next header, left to be read again by `read_header`."""
        if self._pending is None:
            self._pending = self._parse_header()
        return self._pending

    def read_header(self) -> Header:
        """Read the next identifier and length octets."""
        if self._pending is not None:
            header, self._pending = self._pending, None
            return header
        return self._parse_header()

    def _parse_header(self) -> Header:
        first = self._read(1)[0]
        raw = bytearray([first])
        tag = first & 0x1F
        if tag == 0x1F:  # high tag number form: base-128 octets
            tag = 0
            for _ in range(4):
                octet = self._read(1)[0]
                raw.append(octet)
                tag = tag << 7 | (octet & 0x7F)
                if not octet & 0x80:
                    break
            else:
                raise TamperedFileError(f"{self._what} has an impossible tag number")
        octet = self._read(1)[0]
        raw.append(octet)
        length: int | None
        if octet < 0x80:
            length = octet
        elif octet == 0x80:
            if not first & 0x20:
                raise TamperedFileError(f"{self._what} has an indefinite primitive element")
            length = None
        else:
            count = octet & 0x7F
            if count > 8:
                raise TamperedFileError(f"{self._what} has an impossible length")
            octets = self._read(count)
            raw += octets
            length = int.from_bytes(octets, "big")
        return Header(first >> 6, bool(first & 0x20), tag, length, bytes(raw))

    def expect(self, tag_class: int, tag: int, what: str) -> Header:
        """Read a header that must have this class and tag (else the file is damaged)."""
        header = self.read_header()
        if not header.is_a(tag_class, tag):
            raise TamperedFileError(f"{self._what} is damaged: {what} expected")
        return header

    def read_element(self, header: Header | None = None, *, limit: int = MAX_ELEMENT) -> bytes:
        """The whole element (header and contents) whose header is `header` or comes next."""
        header = header or self.read_header()
        return self._element_bytes(header, limit, 0)

    def _element_bytes(self, header: Header, limit: int, depth: int) -> bytes:
        if depth > _MAX_DEPTH:
            raise TamperedFileError(f"{self._what} nests too deeply")
        if header.length is not None:
            if header.length > limit:
                raise TamperedFileError(f"{self._what} has an implausibly large member")
            return header.raw + self._read(header.length)
        parts = [header.raw]
        size = 0
        while True:
            child = self.read_header()
            if child.is_end_of_contents:
                parts.append(child.raw)
                return b"".join(parts)
            data = self._element_bytes(child, limit - size, depth + 1)
            size += len(data)
            if size > limit:
                raise TamperedFileError(f"{self._what} has an implausibly large member")
            parts.append(data)

    def skip_to_end(self, header: Header, start: int) -> None:
        """Consume the rest of a container whose contents began at `start`: optional trailing
        members are skipped, then its end-of-contents (indefinite) or exact end (definite)."""
        if header.length is None:
            while not (child := self.read_header()).is_end_of_contents:
                self._element_bytes(child, MAX_ELEMENT, 1)
            return
        end = start + header.length
        while self.position < end:
            self._element_bytes(self.read_header(), MAX_ELEMENT, 1)
        if self.position != end:
            raise TamperedFileError(f"{self._what} is damaged: a member overruns its container")

    def iter_octets(self, header: Header, chunk_size: int) -> Iterator[bytes]:
        """The content octets of an OCTET STRING (primitive, or BER constructed from pieces)."""
        yield from self._octets(header, chunk_size, 0)

    def _octets(self, header: Header, chunk_size: int, depth: int) -> Iterator[bytes]:
        if depth > _MAX_DEPTH:
            raise TamperedFileError(f"{self._what} nests too deeply")
        if not header.constructed:
            assert header.length is not None  # primitive elements always have a length
            remaining = header.length
            while remaining:
                data = self._read(min(chunk_size, remaining))
                remaining -= len(data)
                yield data
            return
        start = self.position
        while True:
            if header.length is not None and self.position >= start + header.length:
                if self.position != start + header.length:
                    raise TamperedFileError(f"{self._what} is damaged: a piece overruns")
                return
            child = self.read_header()
            if header.length is None and child.is_end_of_contents:
                return
            if not child.is_a(UNIVERSAL, OCTET_STRING):
                raise TamperedFileError(f"{self._what} is damaged: octet string piece expected")
            yield from self._octets(child, chunk_size, depth + 1)
