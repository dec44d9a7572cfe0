"""The ``/imagine`` grammar: flags, permutations, errors, and ``parse(render(r)) == (r,)``."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.brand.characters import check_characters
from core.brand.grammar import (
    FLAGS,
    MAX_PERMUTATIONS,
    MAX_PROMPT_CHARS,
    check_name,
    parse,
    render,
)
from core.domain import ImagineRequest
from core.errors import GrammarError, UserError

R = ImagineRequest


def one(text: str) -> ImagineRequest:
    (request,) = parse(text)
    return request


def grammar_error(text: str) -> str:
    with pytest.raises(GrammarError) as caught:
        parse(text)
    assert isinstance(caught.value, UserError)
    assert caught.value.user_message == str(caught.value)
    return caught.value.user_message


# --- flag forms --------------------------------------------------------------------------------

FLAG_FORMS = [
    ("a sneaker on a beach", R("a sneaker on a beach")),
    ("  a   sneaker\n on\ta beach  ", R("a sneaker on a beach")),
    ("a sneaker --ar 16:9", R("a sneaker", aspect="16:9")),
    ("a sneaker --ar=16:9", R("a sneaker", aspect="16:9")),
    ("a sneaker —ar 16:9", R("a sneaker", aspect="16:9")),
    ("a sneaker –ar=16:9", R("a sneaker", aspect="16:9")),
    ("a sneaker --AR 16:9", R("a sneaker", aspect="16:9")),
    ("a sneaker --aspect 2:3", R("a sneaker", aspect="2:3")),
    ("a sneaker --ar 32:18", R("a sneaker", aspect="16:9")),
    ("a sneaker --ar 1920:1080", R("a sneaker", aspect="16:9")),
    ("a sneaker --ar 016:09", R("a sneaker", aspect="16:9")),
    ("a sneaker --ar 9999:1", R("a sneaker", aspect="9999:1")),
    ("a sneaker --seed 0", R("a sneaker", seed=0)),
    ("a sneaker --seed=4294967295", R("a sneaker", seed=2**32 - 1)),
    ("a sneaker --seed 007", R("a sneaker", seed=7)),
    ("a sneaker --no text", R("a sneaker", no=("text",))),
    ("a sneaker --no text, logos", R("a sneaker", no=("text", "logos"))),
    ("a sneaker --no=red  shoes ,, blurry, ", R("a sneaker", no=("red shoes", "blurry"))),
    ("a sneaker --no a\\, b, c", R("a sneaker", no=("a, b", "c"))),
    ("a sneaker --n 1", R("a sneaker", n=1)),
    ("a sneaker --n=4", R("a sneaker", n=4)),
    ("a sneaker --steps 1", R("a sneaker", steps=1)),
    ("a sneaker --steps 150", R("a sneaker", steps=150)),
    ("a sneaker --preset acme-2025", R("a sneaker", preset="acme-2025")),
    ("a sneaker --campaign=spring-launch", R("a sneaker", campaign="spring-launch")),
    ("a sneaker --style raw", R("a sneaker", style_raw=True)),
    ("a sneaker --style RAW", R("a sneaker", style_raw=True)),
    (
        "a sneaker, on a beach —style raw --campaign c1 –no text,logos --steps 30 --n 2 "
        "--seed 42 --preset acme --ar 4:5",
        R(
            "a sneaker, on a beach",
            aspect="4:5",
            seed=42,
            no=("text", "logos"),
            n=2,
            steps=30,
            preset="acme",
            campaign="c1",
            style_raw=True,
        ),
    ),
    # Dashes that do not open a flag stay in the prompt.
    ("a well-known brand — the best -- really –", R("a well-known brand — the best -- really –")),
    ("cat--ar 1:1", R("cat--ar 1:1")),
    ("a cat -ar 1:1", R("a cat -ar 1:1")),
    ("a cat --1", R("a cat --1")),
    # Escapes.
    ("a \\{literal\\} brace", R("a {literal} brace")),
    ("a \\--ar b", R("a --ar b")),
    ("a \\—ar b \\–seed", R("a —ar b –seed")),
    ("C:\\\\share and 50\\% off \\", R("C:\\share and 50\\% off \\")),
    ("a, b\\, c", R("a, b, c")),
    ("x" * MAX_PROMPT_CHARS, R("x" * MAX_PROMPT_CHARS)),
]


@pytest.mark.parametrize(("text", "expected"), FLAG_FORMS)
def test_flag_forms(text: str, expected: ImagineRequest) -> None:
    assert parse(text) == (expected,)


# --- permutations ------------------------------------------------------------------------------

PERMUTATIONS = [
    ("a {red, blue} sneaker", [R("a red sneaker"), R("a blue sneaker")]),
    ("a {red} sneaker", [R("a red sneaker")]),
    ("a {red,} sneaker", [R("a red sneaker"), R("a sneaker")]),
    (
        "a {red, {light, dark} blue} car",
        [R("a red car"), R("a light blue car"), R("a dark blue car")],
    ),
    ("{a,b} {c,d}", [R("a c"), R("a d"), R("b c"), R("b d")]),
    ("{a\\, b, c}", [R("a, b"), R("c")]),
    ("{\\{x\\}, y}", [R("{x}"), R("y")]),
    ("a cat --ar {1:1, 16:9}", [R("a cat", aspect="1:1"), R("a cat", aspect="16:9")]),
    ("a {cat --n 1, dog}", [R("a cat", n=1), R("a dog")]),
    ("a cat --no {text, logos}", [R("a cat", no=("text",)), R("a cat", no=("logos",))]),
    ("{{{{deep}}}}", [R("deep")]),
    ("{a,b}{c,d}{e,f}", [R(p) for p in ("ace", "acf", "ade", "adf", "bce", "bcf", "bde", "bdf")]),
]


@pytest.mark.parametrize(("text", "expected"), PERMUTATIONS)
def test_permutations(text: str, expected: list[ImagineRequest]) -> None:
    assert parse(text) == tuple(expected)


def test_eight_permutations_is_the_limit() -> None:
    assert len(parse("a {1,2,3,4,5,6,7,8} b")) == MAX_PERMUTATIONS
    message = grammar_error("a {1,2,3,4,5,6,7,8,9} b")
    assert "9 permutations" in message
    assert str(MAX_PERMUTATIONS) in message


def test_huge_permutation_counts_are_refused_quickly() -> None:
    message = grammar_error("{a,b}" * 200)
    assert "over a million" in message


def test_deep_nesting_does_not_recurse() -> None:
    assert parse("{" * 1500 + "x" + "}" * 1500) == (R("x"),)


# --- errors ------------------------------------------------------------------------------------

ERRORS = [
    # (text, fragments the message must contain)
    ("", ["prompt is empty"]),
    ("   \n ", ["prompt is empty"]),
    ("--ar 16:9", ["prompt is empty"]),
    ("{a,} --ar {1:1, 2:1}", ["permutations", "empty"]),
    ("x" * (MAX_PROMPT_CHARS + 1), ["1,001 characters", "1,000"]),
    ("x" * 4001, ["4,001 characters", "4,000"]),
    ("a cat --foo bar", ["“--foo”", "--ar", "--style", "\\--"]),
    ("a cat --stpes 30", ["“--stpes”", "Did you mean --steps?"]),
    ("a cat --seeds 3", ["“--seeds”", "Did you mean --seed?"]),
    ("a cat --ar16:9", ["“--ar16:9”", "Did you mean “--ar 16:9”?"]),
    ("a cat --n4", ["“--n4”", "Did you mean “--n 4”?"]),
    ("a cat —quality 2", ["“--quality”"]),
    ("a cat --ar 1:1 --ar 16:9", ["--ar", "twice", "“1:1”", "“16:9”"]),
    ("a cat --aspect 1:1 --ar 16:9", ["--ar", "twice"]),
    ("a cat --no a --no b", ["--no", "twice", "“a”", "“b”"]),
    ("a cat --seed", ["--seed needs a value", "--seed 42"]),
    ("a cat --seed= --n 2", ["--seed needs a value"]),
    ("a cat --no , ,", ["--no needs a value"]),
    ("a cat --style", ["--style needs a value", "--style raw"]),
    ("a cat --preset", ["--preset needs a value"]),
    ("a cat --ar 16:0", ["--ar “16:0”", "two positive whole numbers", "16:9"]),
    ("a cat --ar 0:1", ["--ar “0:1”", "two positive whole numbers"]),
    ("a cat --ar 16x9", ["--ar “16x9”", "two positive whole numbers"]),
    ("a cat --ar 16:9:1", ["--ar “16:9:1”", "two positive whole numbers"]),
    ("a cat --ar wide", ["--ar “wide”", "two positive whole numbers"]),
    ("a cat --ar 10000:1", ["--ar “10000:1”", "at most 9999"]),
    ("a cat --ar 16:9 on a beach", ["--ar takes one value", "“16:9 on a beach”"]),
    ("a cat --seed 1 2", ["--seed takes one value", "“1 2”"]),
    ("a cat --seed -1", ["--seed “-1”", "not a whole number", "0 to 4294967295"]),
    ("a cat --seed 4294967296", ["--seed “4294967296”", "out of range", "0 to 4294967295"]),
    ("a cat --seed abc", ["--seed “abc”", "not a whole number"]),
    ("a cat --seed 1.5", ["--seed “1.5”", "not a whole number"]),
    ("a cat --seed ４２", ["--seed “４２”", "not a whole number"]),
    ("a cat --seed " + "9" * 3000, ["--seed “999", "…”", "out of range"]),
    ("a cat --n 0", ["--n “0”", "out of range", "1 to 4"]),
    ("a cat --n 5", ["--n “5”", "out of range", "1 to 4"]),
    ("a cat --n two", ["--n “two”", "not a whole number", "1 to 4"]),
    ("a cat --steps 0", ["--steps “0”", "1 to 150"]),
    ("a cat --steps 151", ["--steps “151”", "1 to 150"]),
    ("a cat --steps 30.5", ["--steps “30.5”", "1 to 150"]),
    ("a cat --preset Acme", ["--preset “Acme”", "lowercase letters a-z, digits and dashes"]),
    ("a cat --preset acme_brand", ["--preset “acme_brand”", "lowercase"]),
    ("a cat --preset acme brand", ["--preset “acme brand”", "lowercase"]),
    ("a cat --campaign Spring!", ["--campaign “Spring!”", "lowercase"]),
    ("a cat --style vivid", ["--style “vivid”", "raw"]),
    ("a {red, blue sneaker", ["Unbalanced", "“{” at character 3", "never closed", "\\{"]),
    ("a red} sneaker", ["Unbalanced", "“}” at character 6", "no “{”", "\\}"]),
    ("{{a}", ["Unbalanced", "“{” at character 1"]),
    ("a {1,2,3}{4,5,6}", ["9 permutations", "8"]),
]


@pytest.mark.parametrize(("text", "fragments"), ERRORS)
def test_errors(text: str, fragments: list[str]) -> None:
    message = grammar_error(text)
    for fragment in fragments:
        assert fragment in message


def test_unknown_flag_lists_every_known_flag() -> None:
    message = grammar_error("a cat --tile")
    assert all(f"--{flag}" in message for flag in FLAGS)


def test_long_values_are_clipped_in_messages() -> None:
    message = grammar_error("a cat --preset " + "X" * 500)
    assert len(message) < 200


# --- render ------------------------------------------------------------------------------------


def test_check_name_is_the_rule_the_flags_use() -> None:
    assert check_name("campaign", "spring-launch-2") == "spring-launch-2"
    for bad in ("Spring Sale", "spring_sale", "é", "a.b"):
        with pytest.raises(GrammarError) as caught:
            check_name("campaign", bad)
        assert "a campaign name uses only lowercase letters a-z, digits and dashes" in str(
            caught.value
        )
        assert str(caught.value) == grammar_error(f"x --campaign {bad}")
    for bad in ("", "spring{a,b}", "a\\-b"):  # what parse never hands over as one name
        with pytest.raises(GrammarError):
            check_name("campaign", bad)
    with pytest.raises(GrammarError, match="--preset “Acme”: a preset name"):
        check_name("preset", "Acme")


@pytest.mark.parametrize(
    ("text", "where", "code"),
    [
        ("a red\x00 circle", 6, "U+0000"),
        ("a circle --no text\x1b[31m", 19, "U+001B"),
        ("\x7fa circle", 1, "U+007F"),
        ("a circle \ud800", 10, "U+D800"),  # a lone surrogate, as JSON "\\ud800" decodes
    ],
)
def test_control_characters_are_refused_with_their_position(
    text: str, where: int, code: str
) -> None:
    message = grammar_error(text)
    assert f"({code}) at character {where}" in message
    assert "remove it" in message


def test_tabs_and_line_breaks_are_whitespace() -> None:
    assert one("a red\tcircle\r\non a\nbeach").prompt == "a red circle on a beach"


def test_render_writes_flags_in_a_fixed_order() -> None:
    request = R(
        "a {x} --ar cat",
        aspect="16:9",
        seed=7,
        no=("a, b", "--c"),
        n=2,
        steps=30,
        preset="acme",
        campaign="spring",
        style_raw=True,
    )
    assert render(request) == (
        "a \\{x\\} \\--ar cat --ar 16:9 --seed 7 --no a\\, b, \\--c --n 2 --steps 30 "
        "--preset acme --campaign spring --style raw"
    )
    assert parse(render(request)) == (request,)


def test_render_of_a_plain_prompt_is_the_prompt() -> None:
    assert render(R("a sneaker on a beach")) == "a sneaker on a beach"


# --- properties --------------------------------------------------------------------------------


def _normal(text: str) -> str:
    return " ".join(text.split())


_SYNTAX = "{},\\-—–=: "
_messy_text = st.text(
    alphabet=st.one_of(st.sampled_from(_SYNTAX), st.characters(codec="utf-8")), max_size=40
)
_usable_text = st.text(  # what a request can hold: no control characters (whitespace aside)
    alphabet=st.one_of(
        st.sampled_from(_SYNTAX), st.characters(codec="utf-8", exclude_categories=["Cc"])
    ),
    max_size=40,
)
_prompts = _usable_text.map(_normal).filter(bool)
_terms = st.lists(_prompts, max_size=4).map(tuple)
_names = st.from_regex(r"[a-z0-9-]+", fullmatch=True)


def _ratio(sides: tuple[int, int]) -> str:
    divisor = math.gcd(*sides)
    return f"{sides[0] // divisor}:{sides[1] // divisor}"


_requests = st.builds(
    ImagineRequest,
    prompt=_prompts,
    aspect=st.none() | st.tuples(st.integers(1, 9999), st.integers(1, 9999)).map(_ratio),
    seed=st.none() | st.integers(0, 2**32 - 1),
    no=_terms,
    n=st.none() | st.integers(1, 4),
    steps=st.none() | st.integers(1, 150),
    preset=st.none() | _names,
    campaign=st.none() | _names,
    style_raw=st.booleans(),
)

_FRAGMENTS = [
    *(f"{dash}{flag}" for flag in (*FLAGS, "aspect", "x", "AR") for dash in ("--", "—", "–")),
    *(f"--{flag}=" for flag in FLAGS),
    *("--", "—", "–", "-", "=", "{", "}", ",", "\\", "\\{", "\\}", "\\,", "\\-", "\\\\"),
    *("16:9", "0:1", "1:0", ":", "0", "1", "4", "150", "151", "4294967296", "-1", "9" * 30),
    *("raw", "RAW", "acme", "Acme", "a-b", "text, logos", "{1:1, 16:9}", "{a, {b, c}}"),
    *(" ", "  ", "\n", "\t", "\u00a0", "\u200b", "\x00", "İ", "ſ", "ａ", "x" * 300),
]
_fragmented_text = st.lists(
    st.tuples(
        st.sampled_from(["", " ", " ", "  "]),
        st.one_of(st.sampled_from(_FRAGMENTS), st.text(max_size=6)),
    ),
    max_size=25,
).map(lambda parts: "".join(space + fragment for space, fragment in parts))


def _assert_valid(request: ImagineRequest) -> None:
    assert request.prompt
    assert request.prompt == _normal(request.prompt)
    assert len(request.prompt) <= MAX_PROMPT_CHARS
    if request.aspect is not None:
        width, height = map(int, request.aspect.split(":"))
        assert request.aspect == f"{width}:{height}"
        assert math.gcd(width, height) == 1
    assert request.seed is None or 0 <= request.seed < 2**32
    assert all(term and term == _normal(term) for term in request.no)
    assert check_characters(request.prompt + "".join(request.no), "text")
    assert request.n is None or 1 <= request.n <= 4
    assert request.steps is None or 1 <= request.steps <= 150
    for name in (request.preset, request.campaign):
        assert name is None or re.fullmatch(r"[a-z0-9-]+", name)


@settings(max_examples=300, deadline=None)
@given(st.one_of(_fragmented_text, _messy_text, st.text()))
def test_parse_raises_only_user_errors(text: str) -> None:
    try:
        requests = parse(text)
    except UserError:
        return
    assert 1 <= len(requests) <= MAX_PERMUTATIONS
    for request in requests:
        _assert_valid(request)
        assert parse(render(request)) == (request,)


@settings(max_examples=300, deadline=None)
@given(_requests)
def test_render_round_trips(request: ImagineRequest) -> None:
    assert parse(render(request)) == (request,)
