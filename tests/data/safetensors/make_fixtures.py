#!/usr/bin/env python3
"""Writes the deliberately broken safetensors fixtures next to this script (plain Python, no deps).

Each file breaks exactly one rule of the format; test_safetensors.cpp checks the error it gives.
Re-run after editing: python3 tests/data/safetensors/make_fixtures.py
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def header_bytes(header):
    text = json.dumps(header, separators=(",", ":"))
    text += " " * (-len(text) % 8)
    return text.encode()


def write(name, header=None, data=b"", raw_header=None, length=None, cut=None):
    body = raw_header if raw_header is not None else header_bytes(header)
    n = len(body) if length is None else length
    blob = struct.pack("<Q", n) + body + data
    if cut is not None:
        blob = blob[:cut]
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(blob)


def f32(*values):
    return struct.pack("<%df" % len(values), *values)


# A valid file: two F32 tensors and one I64, with metadata.
good_header = {
    "__metadata__": {"format": "pt"},
    "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},
    "b": {"dtype": "F32", "shape": [3], "data_offsets": [16, 28]},
    "ids": {"dtype": "I64", "shape": [1], "data_offsets": [28, 36]},
}
good_data = f32(1, 2, 3, 4) + f32(5, 6, 7) + struct.pack("<q", 42)
write("good.safetensors", good_header, good_data)

# Cut off inside the data section.
write("truncated.safetensors", good_header, good_data, cut=len(header_bytes(good_header)) + 8 + 20)
# Shorter than the 8-byte length prefix.
write("too_short.safetensors", raw_header=b"", length=0, cut=5)
# Header length far beyond the 100 MB limit.
write("huge_header.safetensors", raw_header=b"{}      ", length=1 << 40)
# Header length past the end of the file.
write("header_past_eof.safetensors", raw_header=b'{"a":1} ', length=4096)
# Header bytes that are not JSON.
write("not_json.safetensors", raw_header=b"this is not json at all!")
# A JSON array instead of an object.
write("json_array.safetensors", raw_header=b"[1, 2, 3]       ")
# An unknown dtype.
write("unknown_dtype.safetensors",
      {"weird": {"dtype": "F7", "shape": [2], "data_offsets": [0, 8]}}, f32(1, 2))
# Shape x dtype size differs from the byte span.
write("span_mismatch.safetensors",
      {"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, f32(1, 2))
# Two tensors sharing bytes.
write("overlap.safetensors",
      {"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
       "y": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, f32(1, 2, 3))
# A span beyond the data section.
write("span_outside.safetensors",
      {"far": {"dtype": "F32", "shape": [2], "data_offsets": [1000000, 1000008]}}, f32(1, 2))
# A metadata value that is not a string.
write("bad_metadata.safetensors",
      {"__metadata__": {"step": 3}, "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
      f32(1))
# A shape whose element count overflows 64 bits.
write("shape_overflow.safetensors",
      {"big": {"dtype": "F32", "shape": [1 << 62, 1 << 62], "data_offsets": [0, 4]}}, f32(1))
# A gap between tensors (the format requires densely packed data).
write("gap.safetensors",
      {"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
       "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}}, f32(1, 0, 2))
