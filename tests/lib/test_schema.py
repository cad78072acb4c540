"""The rules a params setting is checked by (stages/lib/schema.py): where each refuses and how it is
worded. params.yaml's own rules are built from these when the sections are imported; the rules
test (test_params_rules.py) rejects a value of every one of them through the whole file."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from stages.lib.schema import Rule, above, at_least, check_settings, choice, matches, setting, starts_with, within
from stages.lib.validate import ParamError


def accepted(rule: Rule, *values) -> list[bool]:
    return [not rule.refuses(v, None) for v in values]


def test_at_least_accepts_its_bound_and_words_kind_and_note():
    assert accepted(at_least(1), 0, 1, 2) == [False, True, True]
    assert accepted(at_least(0.5, "a number"), 0.49, 0.5) == [False, True]
    assert at_least(1).words == "an integer >= 1"
    assert at_least(0, "a number", note="0 = off").words == "a number >= 0 (0 = off)"


def test_above_refuses_its_bound():
    assert accepted(above(0), -1, 0, 1e-9) == [False, False, True]
    assert above(0).words == "a number > 0"
    assert above(2, "an integer").words == "an integer > 2"


@pytest.mark.parametrize(
    ("low_open", "high_open", "words", "expected"),
    [
        (False, False, "a number in [0, 1]", [False, True, True, True, False]),
        (True, False, "a number in (0, 1]", [False, False, True, True, False]),
        (False, True, "a number in [0, 1)", [False, True, True, False, False]),
        (True, True, "a number in (0, 1)", [False, False, True, False, False]),
    ],
)
def test_within_has_each_end_open_or_closed_as_asked(low_open, high_open, words, expected):
    rule = within(0, 1, low_open=low_open, high_open=high_open)
    assert rule.words == words
    assert accepted(rule, -0.1, 0, 0.5, 1, 1.1) == expected


def test_within_names_its_kind():
    assert within(1, 9, kind="an integer").words == "an integer in [1, 9]"


def test_choice_lists_the_choices_in_order():
    rule = choice(["loss", "last", "val_kmeans"])
    assert rule.words == "one of: loss, last, val_kmeans"
    assert accepted(rule, "last", "Last", "val") == [True, False, False]


def test_matches_is_a_full_match_and_none_only_when_nullable():
    rule = matches(r"[a-z]+", "lowercase letters")
    assert accepted(rule, "abc", "abc1", "1abc") == [True, False, False]
    assert rule.words == "lowercase letters"
    with pytest.raises(TypeError):
        rule.refuses(None, None)  # not nullable: None is no string
    assert accepted(matches(r"[a-z]+", "letters", nullable=True), None, "ab", "AB") == [True, True, False]


def test_starts_with_any_prefix_and_none_only_when_nullable():
    rule = starts_with(("http://", "https://"), "a URL")
    assert accepted(rule, "https://x", "http://x", "ftp://x") == [True, True, False]
    assert rule.words == "a URL"
    with pytest.raises(AttributeError):
        rule.refuses(None, None)
    assert accepted(starts_with(("s3://",), "a bucket", nullable=True), None, "s3://b", "gs://b") == [True, True, False]


@dataclass(frozen=True)
class Window:
    low: int = setting(0, "the start", at_least(0))
    high: int = setting(10, "the end", Rule(lambda v, s: v > s.low, "an integer > low ({low})", whole=True))


def test_a_whole_section_rule_sees_the_other_settings_and_names_their_values():
    rule = Window.__dataclass_fields__["high"].metadata["rule"]
    assert not rule.refuses(5, Window(low=2, high=5)) and rule.refuses(2, Window(low=2, high=2))
    assert rule.wording(Window(low=3, high=1)) == "an integer > low (3)"
    assert rule.wording({"low": 7, "high": 1}) == "an integer > low (7)"  # or a mapping of the values
    assert at_least(1).wording(Window(low=0, high=1)) == "an integer >= 1"  # one value's rule: its words as they are


def test_check_settings_names_the_first_refused_setting_its_rule_and_value():
    check_settings(Window(low=0, high=1), "window")  # both hold: nothing raised
    with pytest.raises(ParamError) as low:
        check_settings(Window(low=-1, high=1), "window")
    assert str(low.value) == "window.low must be an integer >= 0, got -1"
    assert low.value.setting == (Window, "low")
    with pytest.raises(ParamError) as high:
        check_settings(Window(low=4, high=4))  # the top level: no section key
    assert str(high.value) == "high must be an integer > low (4), got 4"
    assert high.value.setting == (Window, "high")
