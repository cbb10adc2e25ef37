"""The pre-translated question sets (rule E1) and their personal-data flags (rules P2, P3)."""

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from services.exchange import question_sets as qs
from services.exchange.question_sets import (
    CommonLabels,
    Question,
    QuestionSet,
    QuestionType,
    common_labels,
    question_set,
    question_sets,
)
from shared.languages import LANGUAGES, SOURCE_LANGUAGE

AREA_PREFIXES = {"professional_qualifications": "pq.", "services": "svc."}
MINIMUM_QUESTIONS = {"professional_qualifications": 25, "services": 18}
# An untranslated copy of English must fail; a few words that really are the same (Spanish "No",
# French "Sanctions") must not.
MAX_SHARE_EQUAL_TO_ENGLISH = 0.03


def _texts_of(question_set_: QuestionSet) -> Iterator[tuple[str, dict[str, str]]]:
    for field in question_set_.subject_fields:
        yield f"subject field {field.id}", field.label
    for section in question_set_.sections:
        yield f"section {section.id}", section.title
        for question in section.questions:
            yield f"question {question.id}", question.text
            for option in question.options:
                yield f"option {question.id}/{option.id}", option.label


def _all_texts() -> list[tuple[str, dict[str, str]]]:
    texts = [(f"common label {answer}", getattr(common_labels(), answer)) for answer in ("yes", "no", "unknown")]
    for question_set_ in question_sets():
        texts += [
            (f"{question_set_.area} v{question_set_.version} {where}", t) for where, t in _texts_of(question_set_)
        ]
    return texts


def _question(**overrides: object) -> dict[str, object]:
    question: dict[str, object] = {"id": "pq.x.y", "type": "yes_no", "personal_data": False, "text": {"en": "Q?"}}
    return question | overrides


@pytest.fixture
def question_sets_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A copy of the shipped question sets in a directory the test may add versions to."""
    for path in qs.QUESTION_SETS_DIR.glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    monkeypatch.setattr(qs, "QUESTION_SETS_DIR", tmp_path)
    qs._all_question_sets.cache_clear()
    yield tmp_path
    qs._all_question_sets.cache_clear()


def _add_version(directory: Path, area: str, version: int) -> None:
    data = json.loads((directory / f"{area}.v1.json").read_text(encoding="utf-8"))
    data["version"] = version
    (directory / f"{area}.v{version}.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def test_both_legislative_areas_have_a_question_set_rule_e1() -> None:
    assert {s.area for s in question_sets()} == set(AREA_PREFIXES)


def test_every_text_is_pre_translated_into_exactly_the_26_languages_rule_e1() -> None:
    wrong = [where for where, texts in _all_texts() if set(texts) != set(LANGUAGES)]
    assert wrong == []


def test_no_translation_is_empty_or_padded_rule_e1() -> None:
    bad = [
        f"{where} [{language}]"
        for where, texts in _all_texts()
        for language, text in texts.items()
        if not text.strip() or text != text.strip()
    ]
    assert bad == []


def test_no_language_is_an_untranslated_copy_of_english_rule_e1() -> None:
    texts = _all_texts()
    for language in LANGUAGES:
        if language == SOURCE_LANGUAGE:
            continue
        same = [where for where, t in texts if t.get(language) == t[SOURCE_LANGUAGE]]
        assert len(same) / len(texts) <= MAX_SHARE_EQUAL_TO_ENGLISH, f"{language} copies English: {same}"


def test_question_set_files_keep_non_ascii_characters_readable() -> None:
    for path in qs.QUESTION_SETS_DIR.glob("*.json"):
        assert "\\u" not in path.read_text(encoding="utf-8"), path.name


def test_question_ids_are_unique_and_carry_the_area_prefix() -> None:
    for question_set_ in question_sets():
        ids = [question.id for question in question_set_.questions()]
        assert len(ids) == len(set(ids)), question_set_.area
        prefix = AREA_PREFIXES[question_set_.area]
        assert all(i.startswith(prefix) for i in ids), question_set_.area


def test_section_subject_field_and_option_ids_are_unique() -> None:
    for question_set_ in question_sets():
        section_ids = [section.id for section in question_set_.sections]
        field_ids = [field.id for field in question_set_.subject_fields]
        assert len(section_ids) == len(set(section_ids))
        assert len(field_ids) == len(set(field_ids))
        for question in question_set_.questions():
            option_ids = [option.id for option in question.options]
            assert len(option_ids) == len(set(option_ids)), question.id


def test_every_question_set_uses_all_seven_question_types() -> None:
    for question_set_ in question_sets():
        assert {question.type for question in question_set_.questions()} == set(QuestionType), question_set_.area


def test_every_question_set_is_big_enough_to_be_useful() -> None:
    for question_set_ in question_sets():
        assert len(list(question_set_.questions())) >= MINIMUM_QUESTIONS[question_set_.area]


def test_choice_questions_have_at_least_two_options_and_others_none() -> None:
    for question_set_ in question_sets():
        for question in question_set_.questions():
            if question.type.is_choice:
                assert len(question.options) >= 2, question.id
            else:
                assert question.options == (), question.id


def test_a_choice_question_without_options_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Question.model_validate(_question(type="single_choice"))


def test_a_yes_no_question_with_options_is_rejected() -> None:
    option = {"id": "a", "label": {"en": "A"}}
    with pytest.raises(ValidationError):
        Question.model_validate(_question(options=[option, option | {"id": "b"}]))


def test_a_question_set_with_duplicate_question_ids_is_rejected() -> None:
    data = question_set("services").model_dump(mode="json")
    questions = data["sections"][0]["questions"]
    questions.append(questions[0])
    with pytest.raises(ValidationError):
        QuestionSet.model_validate(data)


def test_a_text_without_english_is_rejected() -> None:
    with pytest.raises(ValidationError):
        Question.model_validate(_question(text={"de": "Frage?"}))


def test_every_set_flags_personal_data_in_subject_fields_and_questions_rule_p2_p3() -> None:
    for question_set_ in question_sets():
        assert any(field.personal_data for field in question_set_.subject_fields), question_set_.area
        assert any(question.personal_data for question in question_set_.questions()), question_set_.area


def test_yes_no_facts_are_not_personal_data_rule_p3() -> None:
    for question_set_ in question_sets():
        for question in question_set_.questions():
            if question.type.common_answers:
                assert not question.personal_data, question.id


def test_copies_of_documents_and_sanction_details_are_personal_data_rule_p2_p3() -> None:
    for question_set_ in question_sets():
        for section in question_set_.sections:
            for question in section.questions:
                if question.type is QuestionType.DOCUMENT:
                    assert question.personal_data, question.id
                if section.id == "sanctions" and question.type in (QuestionType.FREE_TEXT, QuestionType.DATE):
                    assert question.personal_data, question.id


def test_identity_of_the_professional_is_personal_data_but_the_profession_is_not_rule_p3() -> None:
    fields = {field.id: field for field in question_set("professional_qualifications").subject_fields}
    identifying = {
        "family_name",
        "given_names",
        "date_of_birth",
        "place_of_birth",
        "nationality",
        "address",
        "professional_registration_number",
    }
    assert identifying | {"profession"} <= set(fields)
    assert all(fields[i].personal_data for i in identifying)
    assert not fields["profession"].personal_data


def test_a_provider_who_is_a_natural_person_is_identified_by_personal_data_rule_p3() -> None:
    fields = {field.id: field for field in question_set("services").subject_fields}
    assert {"provider_name", "legal_form", "registration_number", "establishment_address"} <= set(fields)
    assert fields["natural_person_name"].personal_data
    assert fields["date_of_birth"].personal_data
    assert not fields["legal_form"].personal_data


def test_texts_fall_back_to_english_when_a_translation_is_missing() -> None:
    question = Question.model_validate(_question(text={"en": "Is it authentic?", "de": "Ist es echt?"}))
    assert question.text_in("de") == "Ist es echt?"
    assert question.text_in("fr") == "Is it authentic?"


def test_common_labels_name_every_fixed_answer_in_the_readers_language_rule_e1() -> None:
    labels = common_labels()
    assert isinstance(labels, CommonLabels)
    assert labels.label_in("yes", "de") == "Ja"
    assert labels.label_in("unknown", "en") == "Unknown"
    assert set(QuestionType.YES_NO_UNKNOWN.common_answers) == {"yes", "no", "unknown"}


def test_question_set_without_version_is_the_latest_rule_a4(question_sets_dir: Path) -> None:
    _add_version(question_sets_dir, "services", 2)
    assert question_set("services").version == 2
    assert question_set("services", 1).version == 1


def test_a_new_version_is_discovered_from_its_file_name_rule_a4(question_sets_dir: Path) -> None:
    _add_version(question_sets_dir, "professional_qualifications", 3)
    versions = [(s.area, s.version) for s in question_sets()]
    assert versions == [("professional_qualifications", 1), ("professional_qualifications", 3), ("services", 1)]


def test_a_file_whose_name_disagrees_with_its_content_is_refused(question_sets_dir: Path) -> None:
    shutil.copy(question_sets_dir / "services.v1.json", question_sets_dir / "services.v7.json")
    with pytest.raises(ValueError, match=r"services\.v7\.json"):
        question_sets()


def test_an_unknown_area_raises_key_error() -> None:
    with pytest.raises(KeyError):
        question_set("public_procurement")


def test_an_unknown_version_raises_key_error() -> None:
    with pytest.raises(KeyError):
        question_set("services", 99)
