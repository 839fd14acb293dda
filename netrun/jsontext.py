"""JSON text without spaces, by json's C encoder made once.

`json.dumps` with any argument but the defaults builds an encoder on each call, which costs more
than encoding a small list; netrun writes such text several times per epoch (history events, ID
lists, salvos, packet values). The encoders here are built once. They do not check for cycles:
what they are given is flat, or bounded in depth by its caller (`values.json_exact`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any


def encoder(*, ascii_only: bool) -> Callable[[Any], str]:
    """`json.dumps(value, ensure_ascii=ascii_only, allow_nan=False, separators=(",", ":"))` as a function.

    Raises what `json.dumps` raises: ValueError for NaN or infinity, an int past the str conversion
    limit; TypeError for what JSON cannot hold."""
    make = json.encoder.c_make_encoder
    if make is None:  # a Python without json's C speedups
        return lambda value: json.dumps(value, ensure_ascii=ascii_only, allow_nan=False, separators=(",", ":"))
    strings = json.encoder.encode_basestring_ascii if ascii_only else json.encoder.encode_basestring
    encode = make(None, _unencodable, strings, None, ":", ",", False, False, False)
    return lambda value: "".join(encode(value, 0))


def _unencodable(value: Any) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


compact = encoder(ascii_only=True)  # history rows, ID lists, salvos: ASCII text whatever the names
