"""Ogg page surgery for the audio fuzz cases: the page checksum, and a fixed stream serial so
that libsndfile's Ogg output (which picks a random serial) is the same on every run."""

from __future__ import annotations

import struct

__all__ = ["fixed_ogg_serial", "ogg_crc"]


def ogg_crc(page: bytes) -> int:
    """Ogg's page checksum: CRC-32, polynomial 0x04C11DB7, not reflected, initial 0."""
    crc = 0
    for byte in page:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) if crc & 0x80000000 else (crc << 1)
            crc &= 0xFFFFFFFF
    return crc


def fixed_ogg_serial(data: bytes, serial: int = 0x5EED) -> bytes:
    """libsndfile picks a random Ogg stream serial; fix it so cases are reproducible."""
    pages = bytearray()
    offset = 0
    while offset + 27 <= len(data) and data[offset : offset + 4] == b"OggS":
        segments = data[offset + 26]
        length = 27 + segments + sum(data[offset + 27 : offset + 27 + segments])
        page = bytearray(data[offset : offset + length])
        struct.pack_into("<I", page, 14, serial)
        struct.pack_into("<I", page, 22, 0)
        struct.pack_into("<I", page, 22, ogg_crc(bytes(page)))
        pages += page
        offset += length
    return bytes(pages) + data[offset:]
