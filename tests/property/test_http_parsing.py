"""Properties of the request parsing every request goes through before a pattern sees it.

What each property protects:
* `is_valid_patient_id` accepts exactly FHIR's id rule ([A-Za-z0-9-.], 1 to 64 characters),
  checked against a character-by-character oracle, so no regex subtlety (`\\w`, `$` before a
  trailing newline, Unicode digits, an off-by-one length) lets a hostile id through;
* `query_param` never raises on arbitrary bytes, finds the first `name=` pair, decodes the
  value as application/x-www-form-urlencoded (an independent decoder is the oracle),
  round-trips anything a client percent-encodes, and accepts an id exactly when the rule does;
* `header_value` returns the first matching header's bytes unchanged (latin-1 round trip);
* `request_id_from` echoes the client's first X-Request-ID only when it follows the id rule
  ([A-Za-z0-9._:-], 1 to 128 characters) and otherwise makes a fresh one that follows it, so
  arbitrary bytes never reach a response header or a log line.
"""

from __future__ import annotations

import string
from urllib.parse import quote, quote_plus

from hypothesis import example, given
from hypothesis import strategies as st

from carebench.models import is_valid_patient_id
from carebench.server.http import header_value, query_param, request_id_from
from tests.property.bounds import BOUNDED

ID_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-.")
REQUEST_ID_CHARACTERS = frozenset(string.ascii_letters + string.digits + "._:-")
#: Characters a careless pattern lets through: word characters outside the rule, Unicode
#: digits and letters (`\d`, `\w`, IGNORECASE's Kelvin sign), separators and line ends.
NEAR_MISSES = "_:/ +%\n\r\t\x00\u0663\u00e9\u212a\uff21"


def follows_id_rule(text: str) -> bool:
    """FHIR's id rule, spelled out: 1 to 64 characters, each a letter, digit, '-' or '.'."""
    return 1 <= len(text) <= 64 and all(c in ID_CHARACTERS for c in text)


def follows_request_id_rule(text: str) -> bool:
    return 1 <= len(text) <= 128 and all(c in REQUEST_ID_CHARACTERS for c in text)


def form_decode(value: bytes) -> str:
    """application/x-www-form-urlencoded decoding of an ASCII value: '+' is a space, %XX a
    byte (a '%' not followed by two hex digits stays literal), the bytes are UTF-8."""
    value = value.replace(b"+", b" ")
    out = bytearray()
    i = 0
    while i < len(value):
        hex_pair = value[i + 1 : i + 3]
        if (
            value[i] == ord("%")
            and len(hex_pair) == 2
            and all(chr(b) in string.hexdigits for b in hex_pair)
        ):
            out.append(int(hex_pair, 16))
            i += 3
        else:
            out.append(value[i])
            i += 1
    return out.decode("utf-8", "replace")


def first_value(raw: bytes, name: bytes) -> bytes | None:
    """The raw value of the first `name=` pair ('&' separates pairs, a pair without '='
    has an empty value; keys are compared as sent)."""
    for pair in raw.split(b"&"):
        key, _, value = pair.partition(b"=")
        if key == name:
            return value
    return None


ids_near_the_rule = st.text(
    alphabet=st.sampled_from(sorted(ID_CHARACTERS) + list(NEAR_MISSES)), max_size=70
)
#: Query strings as a URL carries them: ASCII, with the separators, '+' and '%' frequent.
ascii_query = st.lists(
    st.text(
        alphabet=st.sampled_from(string.ascii_letters[:6] + string.digits[:4] + "=&+%.-_ " + "Ff"),
        max_size=12,
    ),
    max_size=5,
).map(lambda parts: "&".join(parts).encode("ascii"))
names = st.sampled_from([b"id", b"a", b"", b"id=", b"%69d"])


@BOUNDED
@given(ids_near_the_rule)
@example("a" * 64)
@example("a" * 65)
@example("P1\n")
@example("")
def test_patient_id_rule_matches_the_oracle_near_the_rule(patient_id: str) -> None:
    """Ids built from the allowed characters and their near misses are accepted exactly
    when the rule accepts them (length bounds, trailing newline and Unicode included)."""
    assert is_valid_patient_id(patient_id) is follows_id_rule(patient_id)


@BOUNDED
@given(st.text(max_size=80))
def test_patient_id_rule_matches_the_oracle_on_any_text(patient_id: str) -> None:
    """Any text at all: the validator never raises and agrees with the rule."""
    assert is_valid_patient_id(patient_id) is follows_id_rule(patient_id)


@BOUNDED
@given(st.binary(max_size=64), st.binary(max_size=6))
def test_query_param_never_raises_on_arbitrary_bytes(raw: bytes, name: bytes) -> None:
    """Arbitrary query bytes give a string or None, never an exception, and an id is
    accepted exactly when its decoded value follows the rule."""
    found = query_param(raw, name)
    value = first_value(raw, name)
    assert (found is None) is (value is None)
    if value is not None:
        assert isinstance(found, str)
        # Raw non-ASCII bytes decode differently (latin-1 kept as is vs UTF-8), but either
        # way they give a non-ASCII value, which the rule refuses.
        assert is_valid_patient_id(found) is follows_id_rule(form_decode(value))


@BOUNDED
@given(ascii_query, names)
@example(b"id=a+b", b"id")
@example(b"id=%41%zz%4", b"id")
@example(b"id=%E9", b"id")
@example(b"x=1&id&id=2", b"id")
def test_query_param_decodes_like_a_form_decoder(raw: bytes, name: bytes) -> None:
    """On ASCII query strings (all a URL may carry) the value is exactly the form-decoded
    first occurrence, whether or not the fast path (nothing to decode) is taken."""
    value = first_value(raw, name)
    expected = None if value is None else form_decode(value)
    assert query_param(raw, name) == expected


@BOUNDED
@given(
    st.text(max_size=30),
    st.lists(
        st.tuples(st.sampled_from(["a", "idx", "xid", "ID"]), st.text(max_size=8)), max_size=3
    ),
    st.booleans(),
    st.booleans(),
)
def test_query_param_round_trips_percent_encoding(
    value: str, others: list[tuple[str, str]], plus: bool, repeat: bool
) -> None:
    """Whatever a client encodes (quote_plus or quote) comes back unchanged, among other
    parameters, and the first of repeated parameters wins."""
    encode = quote_plus if plus else quote
    pairs = [f"{encode(k)}={encode(v)}" for k, v in others]
    pairs.append(f"id={encode(value, safe='')}")
    if repeat:
        pairs.append("id=other")
    raw = "&".join(pairs).encode("ascii")
    assert query_param(raw, b"id") == value


headers = st.lists(
    st.tuples(
        st.sampled_from([b"x-request-id", b"x-request-priority", b"host", b"X-Request-ID"]),
        st.binary(max_size=20),
    ),
    max_size=4,
)


@BOUNDED
@given(headers, st.sampled_from([b"x-request-id", b"x-request-priority", b"absent"]))
def test_header_value_is_the_first_match_unchanged(
    header_list: list[tuple[bytes, bytes]], wanted: bytes
) -> None:
    """The first header of that name, its bytes unchanged (latin-1 round-trips every byte);
    None when it is absent."""
    found = header_value(header_list, wanted)
    expected = next((value for name, value in header_list if name == wanted), None)
    assert (found is None) is (expected is None)
    if found is not None:
        assert found.encode("latin-1") == expected


request_ids = st.one_of(
    st.binary(max_size=140),
    st.text(
        alphabet=st.sampled_from(sorted(REQUEST_ID_CHARACTERS) + list(NEAR_MISSES)), max_size=130
    ).map(lambda text: text.encode("utf-8")),
    st.integers(126, 130).map(lambda n: b"a" * n),
)


@BOUNDED
@given(
    st.lists(request_ids, max_size=3),
    st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=12)), max_size=2),
)
def test_request_id_is_echoed_only_when_it_follows_the_rule(
    values: list[bytes], noise: list[tuple[bytes, bytes]]
) -> None:
    """The first X-Request-ID is echoed exactly when it follows the rule; otherwise (or when
    there is none) a fresh id is made, and whatever comes back follows the rule."""
    header_list = [*[(name, value) for name, value in noise if name != b"x-request-id"]]
    header_list += [(b"x-request-id", value) for value in values]
    result = request_id_from(header_list)
    assert follows_request_id_rule(result)
    first = values[0].decode("latin-1") if values else None
    if first is not None and follows_request_id_rule(first):
        assert result == first
    else:
        assert result != first
        assert result != request_id_from(header_list)
