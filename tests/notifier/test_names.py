"""Alerts name countries and legislative areas in the recipient's language (rules A4, A5)."""

from services.notifier.names import area_name, country_name


def test_a_legislative_area_is_named_in_the_recipients_language_rule_a4():
    assert area_name("professional_qualifications", "en") == "Professional qualifications"
    romanian = area_name("professional_qualifications", "ro")
    assert romanian != "Professional qualifications" and "calific" in romanian.lower()
    assert area_name("services", "fi") != area_name("services", "en")
    assert area_name("an_area_added_later", "de") == "an_area_added_later"


def test_a_country_is_named_in_the_recipients_language_rule_a5():
    assert country_name("RO", "ro") == "România"
    assert country_name("DE", "de") == "Deutschland"
