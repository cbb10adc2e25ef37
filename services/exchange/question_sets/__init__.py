"""The pre-translated question sets of the information exchange.

A requesting authority writes its request by picking questions from the question set of one
legislative area, in its own language; the responding authority reads the same questions in its
language (rule E1). The sets are therefore data, not code: one JSON file per area and version,
named ``<area>.v<N>.json`` in this directory, every text carrying all 26 languages. A new area or
a new version of a set is a new file (rule A4); nothing here needs to change.

Every question and subject field carries a ``personal_data`` flag: true where the answer can carry
personal data about the professional or provider. The exchange service uses it to keep those
answers away from everyone but the two authorities directly involved (rules P3, P4) and to delete
them at the latest six months after the exchange is closed (rule P2).
"""

import re
from collections.abc import Iterator
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Annotated, Final, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from shared.languages import LANGUAGE_CODES, SOURCE_LANGUAGE

QUESTION_SETS_DIR: Final = Path(__file__).parent
COMMON_LABELS_FILE: Final = QUESTION_SETS_DIR / "common.json"
QUESTION_SET_FILE_PATTERN: Final = re.compile(r"^(?P<area>[a-z][a-z0-9_]*)\.v(?P<version>[1-9][0-9]*)\.json$")


def _check_translations(texts: dict[str, str]) -> dict[str, str]:
    unknown = sorted(set(texts) - LANGUAGE_CODES)
    if unknown:
        raise ValueError(f"unknown language codes: {', '.join(unknown)}")
    if not texts.get(SOURCE_LANGUAGE, "").strip():
        raise ValueError(f"the source language {SOURCE_LANGUAGE!r} is required (it is the fallback)")
    return texts


Translations = Annotated[dict[str, str], AfterValidator(_check_translations)]
"""One text in several languages: language code -> text. English is required."""


def _translate(texts: dict[str, str], language: str) -> str:
    # A missing or blank translation falls back to the source language rather than showing nothing.
    return texts.get(language, "").strip() or texts[SOURCE_LANGUAGE]


class QuestionType(StrEnum):
    """What kind of answer a question expects."""

    YES_NO = "yes_no"
    YES_NO_UNKNOWN = "yes_no_unknown"
    FREE_TEXT = "free_text"
    DATE = "date"
    SINGLE_CHOICE = "single_choice"
    MULTIPLE_CHOICE = "multiple_choice"
    DOCUMENT = "document"

    @property
    def is_choice(self) -> bool:
        """True for the types whose answers are picked from the question's own options."""
        return self in (QuestionType.SINGLE_CHOICE, QuestionType.MULTIPLE_CHOICE)

    @property
    def common_answers(self) -> tuple[str, ...]:
        """The ids of the shared answer labels (see ``common_labels``) this type offers, if any."""
        if self is QuestionType.YES_NO:
            return ("yes", "no")
        if self is QuestionType.YES_NO_UNKNOWN:
            return ("yes", "no", "unknown")
        return ()


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Option(_Model):
    """One possible answer of a single- or multiple-choice question."""

    id: str = Field(min_length=1)
    label: Translations

    def label_in(self, language: str) -> str:
        """The label in ``language``, or in English when that translation is missing."""
        return _translate(self.label, language)


class Question(_Model):
    """One pre-translated question (rule E1)."""

    id: str = Field(min_length=1)
    type: QuestionType
    personal_data: bool = Field(description="The answer can carry personal data (rules P2, P3).")
    text: Translations
    options: tuple[Option, ...] = ()

    @model_validator(mode="after")
    def _options_exactly_for_choice_types(self) -> Self:
        if not self.type.is_choice:
            if self.options:
                raise ValueError(f"question {self.id}: a {self.type} question has no options")
            return self
        if len(self.options) < 2:
            raise ValueError(f"question {self.id}: a {self.type} question needs at least two options")
        ids = [option.id for option in self.options]
        if len(set(ids)) != len(ids):
            raise ValueError(f"question {self.id}: option ids must be unique")
        return self

    def text_in(self, language: str) -> str:
        """The question in ``language``, or in English when that translation is missing."""
        return _translate(self.text, language)

    def option(self, option_id: str) -> Option:
        """The option with this id; KeyError if the question has none such."""
        for option in self.options:
            if option.id == option_id:
                return option
        raise KeyError(f"question {self.id} has no option {option_id!r}")


class SubjectField(_Model):
    """A field identifying the professional or provider the request is about."""

    id: str = Field(min_length=1)
    type: QuestionType
    personal_data: bool = Field(description="The value can carry personal data (rules P2, P3).")
    required: bool = False
    label: Translations

    @model_validator(mode="after")
    def _no_choice_type(self) -> Self:
        if self.type.is_choice:
            raise ValueError(f"subject field {self.id}: subject fields have no options")
        return self

    def label_in(self, language: str) -> str:
        """The label in ``language``, or in English when that translation is missing."""
        return _translate(self.label, language)


class Section(_Model):
    """A titled group of questions (identity, diploma, sanctions, ...)."""

    id: str = Field(min_length=1)
    title: Translations
    questions: tuple[Question, ...] = Field(min_length=1)

    def title_in(self, language: str) -> str:
        """The title in ``language``, or in English when that translation is missing."""
        return _translate(self.title, language)


class QuestionSet(_Model):
    """The question set of one legislative area in one version (rules E1, A4)."""

    area: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    version: int = Field(ge=1)
    subject_fields: tuple[SubjectField, ...] = Field(min_length=1)
    sections: tuple[Section, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _ids_are_unique(self) -> Self:
        for kind, ids in (
            ("subject field", [field.id for field in self.subject_fields]),
            ("section", [section.id for section in self.sections]),
            ("question", [question.id for question in self.questions()]),
        ):
            duplicates = sorted({i for i in ids if ids.count(i) > 1})
            if duplicates:
                raise ValueError(f"{self.area} v{self.version}: duplicate {kind} ids: {', '.join(duplicates)}")
        return self

    def questions(self) -> Iterator[Question]:
        """Every question of the set, section by section."""
        for section in self.sections:
            yield from section.questions

    def question(self, question_id: str) -> Question:
        """The question with this id; KeyError if the set has none such."""
        for question in self.questions():
            if question.id == question_id:
                return question
        raise KeyError(f"{self.area} v{self.version} has no question {question_id!r}")

    def subject_field(self, field_id: str) -> SubjectField:
        """The subject field with this id; KeyError if the set has none such."""
        for field in self.subject_fields:
            if field.id == field_id:
                return field
        raise KeyError(f"{self.area} v{self.version} has no subject field {field_id!r}")

    def personal_data_ids(self) -> frozenset[str]:
        """Ids of the subject fields and questions whose values are personal data (rules P2-P4)."""
        fields = {field.id for field in self.subject_fields if field.personal_data}
        questions = {question.id for question in self.questions() if question.personal_data}
        return frozenset(fields | questions)


class CommonLabels(_Model):
    """The answer labels shared by every yes/no and yes/no/unknown question."""

    yes: Translations
    no: Translations
    unknown: Translations

    def label_in(self, answer_id: str, language: str) -> str:
        """The label of ``answer_id`` (yes, no, unknown) in ``language``; KeyError if unknown."""
        if answer_id not in ("yes", "no", "unknown"):
            raise KeyError(f"no common answer {answer_id!r}")
        texts: dict[str, str] = getattr(self, answer_id)
        return _translate(texts, language)


def _load(path: Path) -> QuestionSet:
    match = QUESTION_SET_FILE_PATTERN.match(path.name)
    if match is None:
        raise ValueError(f"{path.name} is not named <area>.v<N>.json")
    question_set_ = QuestionSet.model_validate_json(path.read_bytes())
    if (question_set_.area, question_set_.version) != (match["area"], int(match["version"])):
        raise ValueError(f"{path.name} holds {question_set_.area} v{question_set_.version}")
    return question_set_


@cache
def _all_question_sets() -> dict[tuple[str, int], QuestionSet]:
    paths = sorted(p for p in QUESTION_SETS_DIR.glob("*.json") if QUESTION_SET_FILE_PATTERN.match(p.name))
    loaded = (_load(path) for path in paths)
    return {(s.area, s.version): s for s in sorted(loaded, key=lambda s: (s.area, s.version))}


def question_sets() -> list[QuestionSet]:
    """Every version of every area's question set, ordered by area then version.

    Files are discovered by their ``<area>.v<N>.json`` name, so adding an area or a version is a
    data change (rule A4).
    """
    return list(_all_question_sets().values())


def question_set(area: str, version: int | None = None) -> QuestionSet:
    """The question set of ``area`` in ``version``, or its latest version when ``version`` is None.

    Raises KeyError when the area, or that version of it, does not exist.
    """
    versions = {v: s for (a, v), s in _all_question_sets().items() if a == area}
    if not versions:
        raise KeyError(f"no question set for legislative area {area!r}")
    wanted = max(versions) if version is None else version
    if wanted not in versions:
        raise KeyError(f"no version {wanted} of the question set for {area!r}")
    return versions[wanted]


@cache
def common_labels() -> CommonLabels:
    """The shared answer labels (yes, no, unknown) in every language (rule E1)."""
    return CommonLabels.model_validate_json(COMMON_LABELS_FILE.read_bytes())


__all__ = [
    "CommonLabels",
    "Option",
    "Question",
    "QuestionSet",
    "QuestionType",
    "Section",
    "SubjectField",
    "Translations",
    "common_labels",
    "question_set",
    "question_sets",
]
