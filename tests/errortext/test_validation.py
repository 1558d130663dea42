"""One shape for every pydantic complaint a user reads (a file, a flag, an admin request body)."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from errortext.validation import describe, describe_each


class Row(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at_s: float = Field(ge=0)
    per_s: float = Field(gt=0)


class File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    duration_s: float = Field(gt=0)
    rate: tuple[Row, ...] = ()
    policy: str = "follow-plan"
    cards: tuple[int, int] = (1, 3)

    @field_validator("policy")
    @classmethod
    def _known(cls, value: str) -> str:
        if value not in ("follow-plan", "give-up"):
            raise ValueError("must be follow-plan or give-up")
        return value

    @field_validator("cards")
    @classmethod
    def _ordered(cls, value: tuple[int, int]) -> tuple[int, int]:
        if value[0] > value[1]:
            raise ValueError(f"low must not be above high (got {list(value)})")
        return value

    @model_validator(mode="after")
    def _rows_inside(self) -> File:
        if any(row.at_s > self.duration_s for row in self.rate):
            raise ValueError("'rate' rows must lie inside 'duration_s'")
        return self


def error_of(data: dict[str, object]) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        File.model_validate(data)
    return caught.value


@pytest.mark.parametrize(
    ("data", "line"),
    [
        ({"duration_s": 1, "colour": 1}, "unknown key 'colour'"),
        ({}, "missing key 'duration_s'"),
        ({"duration_s": -5}, "'duration_s' must be > 0 (got -5)"),
        ({"duration_s": 9, "rate": [{"at_s": 0, "per_s": 0}]}, "'rate.0.per_s' must be > 0 (got 0)"),
        ({"duration_s": 9, "rate": [{"at_s": -1.5, "per_s": 1}]}, "'rate.0.at_s' must be >= 0 (got -1.5)"),
        ({"duration_s": "long"},
         "'duration_s' must be a valid number, unable to parse string as a number (got 'long')"),
        ({"duration_s": 1, "policy": "pray"}, "'policy' must be follow-plan or give-up (got 'pray')"),
        ({"duration_s": 1, "cards": [3, 1]}, "'cards': low must not be above high (got [3, 1])"),
        ({"duration_s": 1, "rate": [{"at_s": 5, "per_s": 1}]}, "'rate' rows must lie inside 'duration_s'"),
    ],
)  # fmt: skip
def test_each_kind_of_complaint_is_one_line_naming_the_key(data: dict[str, object], line: str) -> None:
    assert describe(error_of(data)) == line


def test_an_unknown_key_is_told_before_the_missing_one_its_typo_hides() -> None:
    assert describe(error_of({"duraton_s": 1})) == "unknown key 'duraton_s'"


def test_the_count_of_further_complaints_follows_the_first() -> None:
    line = describe(error_of({"duration_s": -1, "rate": [{"at_s": -1, "per_s": 0}]}))
    assert line == "'duration_s' must be > 0 (got -1) (and 2 more)"


def test_a_key_may_be_named_as_the_user_wrote_it() -> None:
    line = describe(error_of({"duration_s": 0}), keys={"duration_s": "--duration"})
    assert line == "'--duration' must be > 0 (got 0)"


def test_every_complaint_is_listed_for_an_answer_that_lists_them_all() -> None:
    assert describe_each(error_of({"duration_s": 0, "colour": 1})) == [
        ("duration_s", "'duration_s' must be > 0 (got 0)"),
        ("colour", "unknown key 'colour'"),
    ]
    with pytest.raises(ValidationError) as caught:
        File.model_validate([])
    assert describe_each(caught.value) == [("body", "must be a valid dictionary or instance of File")]
