"""netrun.jsontext: json.dumps's text, by an encoder made once."""

import json

import pytest

from netrun import jsontext

VALUES = [[1, None, 3], [], {"a": "é\u2028\"\\", "b": [True, False, 2.5, -0.0, 1e308]}, "", 2**70, [[["x"]]]]


@pytest.mark.parametrize("ascii_only", [True, False])
def test_the_text_is_json_dumps_compact_text(ascii_only):
    encode = jsontext.encoder(ascii_only=ascii_only)
    for value in VALUES:
        text = encode(value)
        assert text == json.dumps(value, ensure_ascii=ascii_only, allow_nan=False, separators=(",", ":"))
        assert json.loads(text) == value
    assert jsontext.compact([("in", "01J\u00e9")]) == '[["in","01J\\u00e9"]]'  # tuples as lists, ASCII text


@pytest.mark.parametrize("ascii_only", [True, False])
def test_what_json_dumps_refuses_is_refused(ascii_only):
    encode = jsontext.encoder(ascii_only=ascii_only)
    for bad in (float("nan"), [float("inf")], 10**5000):
        with pytest.raises(ValueError):
            encode(bad)
    with pytest.raises(TypeError, match="Object of type object is not JSON serializable"):
        encode([object()])
