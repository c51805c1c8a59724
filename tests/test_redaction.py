"""Personal data redaction: every type spoken and written, near misses, policies, text, timings, speed."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from voxbeam import redaction as r
from voxbeam.redaction import ENTITY_TYPES, Entity, TimedWord
from voxbeam.redaction._checks import phone_status

LABELLED = Path(__file__).parent / "data" / "redaction_labelled.txt"
HELDOUT = Path(__file__).parent / "data" / "redaction_heldout.txt"


def words_of(sentence: str, step: int = 300) -> list[TimedWord]:
    return [TimedWord(w, i * step, step - 50, 0.9) for i, w in enumerate(sentence.split())]


def found(sentence: str, types: str = "all", **kwargs: object) -> list[tuple[str, str]]:
    """(type, the words it covers) for each entity, so tests read like the sentences."""
    ws = words_of(sentence)
    return [(e.type, " ".join(w.word for w in ws[e.first_word : e.last_word + 1])) for e in r.find(ws, types, **kwargs)]


def redacted_text(sentence: str, **kwargs: object) -> str:
    return r.redact(words_of(sentence), "all", **kwargs).text


# ---- the labelled set


def labelled(path: Path = LABELLED) -> list[tuple[str, str, list[tuple[int, int, str]]]]:
    """(region, sentence, gold spans as (first word, last word, type))."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        region = "US"
        if line.startswith("@"):
            region, line = line[1:3], line[4:]
        words: list[str] = []
        spans = []
        for m in re.finditer(r"\{(\w+): ([^}]*)\}|(\S+)", line):
            if m.group(3):
                words.append(m.group(3))
            else:
                inner = m.group(2).split()
                spans.append((len(words), len(words) + len(inner) - 1, m.group(1)))
                words.extend(inner)
        out.append((region, " ".join(words), spans))
    return out


def scores(path: Path = LABELLED) -> dict[str, tuple[float, float, int, int]]:
    """Per type: precision, recall, gold count, predicted count (exact word spans)."""
    gold: dict[str, set[tuple[int, int, int]]] = {t: set() for t in ENTITY_TYPES}
    pred: dict[str, set[tuple[int, int, int]]] = {t: set() for t in ENTITY_TYPES}
    for n, (region, sentence, spans) in enumerate(labelled(path)):
        for first, last, kind in spans:
            gold[kind].add((n, first, last))
        for e in r.find(words_of(sentence), "all", region=region):
            pred[e.type].add((n, e.first_word, e.last_word))
    out = {}
    for t in ENTITY_TYPES:
        hit = len(gold[t] & pred[t])
        out[t] = (hit / len(pred[t]) if pred[t] else 1.0, hit / len(gold[t]), len(gold[t]), len(pred[t]))
    return out


def test_labelled_set_precision_and_recall_per_type():
    result = scores()
    for kind, (precision, recall, n_gold, _) in result.items():
        assert n_gold >= 8, kind
        assert recall >= 0.95, (kind, result[kind])
        assert precision >= 0.9, (kind, result[kind])


def test_held_out_set_stays_good():
    # Measured once before any tuning (see the report in the commit); now a regression check with looser floors.
    result = scores(HELDOUT)
    for kind, (precision, recall, n_gold, _) in result.items():
        assert n_gold >= 5, kind
        assert recall >= 0.85, (kind, result[kind])
        assert precision >= 0.85, (kind, result[kind])


# ---- CARD_NUMBER


@pytest.mark.parametrize(
    "sentence",
    [
        "My card number is 4111 1111 1111 1111.",
        "It's 4111111111111111.",
        "it's 4,111,111,111,111,111 I think",
        "four one one one one one one one one one one one one one one one",
        "Amex 3782 822463 10005",
        "double five, double five, double five, double five, double five, double five, four four four four",
        "5105-1051-0510-5100",
        "my card is four-one-one-one, one-one-one-one, one-one-one-one, one-one-one-one",  # Whisper joins them
    ],
)
def test_card_numbers_written_and_spoken(sentence):
    assert [t for t, _ in found(sentence)] == ["CARD_NUMBER"]


@pytest.mark.parametrize(
    "sentence",
    [
        "order number 4111 1111 1111 1112 was shipped",  # Luhn fails, no card cue
        "in 1985 we paid $1,234.56",
        "twelve dollars fifty at 10:30",
        "we shipped 1,234 boxes and 5,678 crates",
        "reference 1234 5678 9012 3452",  # passes Luhn but starts with 1: not a payment card
        "0000 0000 0000 0000",
        # A Luhn-valid 13-16 digit window inside a longer run is no card: the whole run has to be one.
        "reference 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 was cancelled",  # 3456789012 3456 passes Luhn
        "order 9 4 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 1 was shipped",  # 4111 1111 1111 1111 inside 20 digits
        "my Ivan is D E 8 9 3 7 0 4 0 0 4 4 4 0 5 3 2 0 1 3 0 0 0",  # a misheard IBAN's digits
    ],
)
def test_card_near_misses_stay(sentence):
    assert found(sentence, "CARD_NUMBER") == []


def test_a_card_is_the_whole_run_or_the_run_less_a_part_after_a_pause():
    assert found("use 4 2 4 2 4 2 4 2 4 2 4 2 4 2 4 2 today") == [("CARD_NUMBER", "4 2 4 2 4 2 4 2 4 2 4 2 4 2 4 2")]
    # A CVV or an order number said after a pause: the card is the rest, and with no cue only the card goes.
    assert found("it's 4111 1111 1111 1111, 123 thanks") == [("CARD_NUMBER", "4111 1111 1111 1111,")]
    assert found("ref 77, 4111 1111 1111 1111 thanks") == [("CARD_NUMBER", "4111 1111 1111 1111")]


def test_misheard_card_number_near_a_cue_is_redacted_with_lower_confidence():
    ws = words_of("my visa card is 4111 1111 1111 1112 thanks")
    (e,) = r.find(ws, "CARD_NUMBER")
    assert (e.first_word, e.last_word, e.confidence) == (4, 7, 0.6)
    (good,) = r.find(words_of("my visa card is 4111 1111 1111 1111 thanks"), "CARD_NUMBER")
    assert good.confidence > e.confidence
    # A dropped or extra digit, and a cue after the number, count too.
    assert found("card number 4111 1111 1111 111")[0][0] == "CARD_NUMBER"
    assert found("4111 1111 1111 1111 2 is on my mastercard")[0] == ("CARD_NUMBER", "4111 1111 1111 1111 2")
    # The policy's cost: a long number said near "card" goes too.
    assert found("I paid by card, order 1234 5678 9012 3456") == [("CARD_NUMBER", "1234 5678 9012 3456")]
    # Too far from the cue, or too short, it stays.
    far = "card " + "and then we talked about the weather for a long while " + "4111 1111 1111 1112"
    assert found(far, "CARD_NUMBER") == []
    assert found("card number 4111 1111 1", "CARD_NUMBER") == []


def test_a_card_number_heard_with_whole_groups_lost_is_still_redacted_near_a_cue():
    # What Whisper tiny.en heard once in 48 renders of our voice saying "My Visa card is 4111 1111 1111 1111."
    ws = words_of("My Visa Card is 4,111, 1111,111")
    (e,) = r.find(ws, "CARD_NUMBER")
    assert (e.first_word, e.last_word, e.confidence) == (4, 5, 0.5)
    assert found("card number 4111 1111 11") == [("CARD_NUMBER", "4111 1111 11")]
    assert found("account 4111 1111 11", "CARD_NUMBER") == []  # no card cue


def test_the_rest_of_a_short_card_after_a_stray_word_goes_with_it():
    # What Whisper tiny.en heard in 2 of 40 renders of "My Visa card is 4111 1111 1111 1111." once the unheard
    # rest of a window was decoded again: the last group, after a stray "in", in a segment of its own.
    ws = words_of("My Visa card is 4,111, 1111,111 in 1,111.")
    (e,) = r.find(ws, "CARD_NUMBER")
    assert (e.first_word, e.last_word) == (4, 7)
    assert r.redact_text("My Visa card is 4,111, 1111,111 in 1,111.", "all") == "My Visa card is [CARD_NUMBER]."
    # Two stray words, a whole card before it, or no card cue: the run after it is its own.
    assert found("card is 4,111, 1111,111 and then 1,111", "CARD_NUMBER") == [("CARD_NUMBER", "4,111, 1111,111")]
    assert found("card 4111 1111 1111 1111 in 2019", "CARD_NUMBER") == [("CARD_NUMBER", "4111 1111 1111 1111")]
    assert found("account 4,111, 1111,111 in 1,111", "CARD_NUMBER") == []


def test_a_sessions_finals_are_read_with_the_words_before_them():
    # A live caller reads the card in two breaths: two finals. Alone, each is too short to be a card.
    first, second = words_of("My card is 4111 1111"), words_of("1111 1111.")
    assert r.find(second, "all") == [] and r.find(first, "all") == []
    # One of a session's finals: the first may go on, so its number goes with its cue's type, however short...
    (e,) = r.find(first, "all", before=(), open_end=True)
    assert (e.type, e.first_word, e.last_word) == ("CARD_NUMBER", 3, 4)
    # ... and the second, read after the first, is the rest of the card.
    (e,) = r.find(second, "all", before=first, open_end=True)
    assert (e.type, e.first_word, e.last_word, e.start_ms) == ("CARD_NUMBER", 0, 1, second[0].offset_ms)
    # An entity wholly in the words before is not this final's; a number with no cue at the end stays.
    assert r.find(words_of("thanks."), "all", before=words_of("card 4111 1111 1111 1111"), open_end=True) == []
    assert r.find(words_of("It cost 45 dollars in 2019"), "all", open_end=True) == []
    policy = r.Policy.of("all")
    assert policy.final(second, "1111 1111.", before=first).text == "[CARD_NUMBER]."
    assert policy.final(second, "1111 1111.").text == "1111 1111."  # a whole transcript: nothing before it


# ---- PHONE_NUMBER


@pytest.mark.parametrize(
    ("sentence", "kwargs"),
    [
        ("call me at (201) 555-0123 tomorrow", {}),
        ("my number is 212-555-1234.", {}),
        ("four one five, five five five, two six seven one", {}),
        ("one eight hundred five five five oh one nine nine", {}),
        ("text me on +44 20 7946 0958.", {}),
        ("plus four four, seven nine one one, one two three four five six", {}),
        ("oh seven nine one one, one two three, four five six", {"language": "en-GB"}),
        ("020 7946 0958", {"region": "GB"}),
        ("030 12345678", {"language": "de"}),
        ("ring me on 555 0123", {}),  # only possible, but a phone cue is near
        ("call me at five-five-five, oh-one-two-three", {}),
    ],
)
def test_phone_numbers(sentence, kwargs):
    assert [t for t, _ in found(sentence, **kwargs)] == ["PHONE_NUMBER"]


@pytest.mark.parametrize(
    "sentence",
    [
        "the code is 555-0123",  # possible only, and no cue
        "tracking number 2125551234 arrives Monday",  # valid-looking, after "tracking", no phone cue
        "we expect 1,200,000 visitors in 2024",
        "page 212 of 555",
        "there were 2,125,550,148 requests",  # a count, written as one
        "the meeting is at 10:30 in room 4155",
    ],
)
def test_phone_near_misses_stay(sentence):
    assert found(sentence, "PHONE_NUMBER") == []


def test_region_comes_from_language_or_is_given():
    assert r.region_for() == "US"
    assert r.region_for(language="en-GB") == "GB"
    assert r.region_for(language="de") == "DE"
    assert r.region_for("fr", language="en-GB") == "FR"
    assert r.region_for(language="auto") == "US"
    # A UK number is not a US one.
    assert found("oh seven nine one one, one two three, four five six", "PHONE_NUMBER") == []
    with pytest.raises(ValueError, match="region"):
        r.region_for("XX")


# ---- EMAIL


@pytest.mark.parametrize(
    ("sentence", "span"),
    [
        ("email me at john.smith@example.com.", "john.smith@example.com."),
        ("it's <jane_doe42@mail.example.org>", "<jane_doe42@mail.example.org>"),
        ("my email is john dot smith at example dot com okay", "john dot smith at example dot com"),
        ("my email is john smith at gmail.com okay", "john smith at gmail.com"),
        ("k underscore lee at company dot co dot uk", "k underscore lee at company dot co dot uk"),
        ("send it to j dot doe at gmail dot com please", "j dot doe at gmail dot com"),
        ("john.smith@example dot com", "john.smith@example dot com"),
        # "at" misheard as a dot (Whisper, our voice): after an email cue, a written domain counts.
        ("my email is john.smith.example.com.", "john.smith.example.com."),
        # A misheard top-level label (tiny.en, base for "support at voxbeam dot io"): see MISHEARD_DOMAIN_CONFIDENCE.
        ("write to support at box beam dot eagle if it breaks", "support at box beam dot eagle"),
        ("write to support at boxbeam.eagle if it breaks", "support at boxbeam.eagle"),
    ],
)
def test_emails_written_and_spoken(sentence, span):
    assert found(sentence) == [("EMAIL", span)]


@pytest.mark.parametrize(
    "sentence",
    [
        "we met at google dot com yesterday",
        "I'll see you at the station",
        "look at the dot on the map",
        "he's at home, dot dot dot.",
        "she shouted at Bob dot dot dot",
        "aim at the red dot there",
        "we arrived at five on the dot",
        "the file is at example.notatld",
        "the news is on example.com today",
    ],
)
def test_email_near_misses_stay(sentence):
    assert found(sentence, "EMAIL") == []


# ---- IBAN


@pytest.mark.parametrize(
    "sentence",
    [
        "my IBAN is DE89 3704 0044 0532 0130 00.",
        "GB29NWBK60161331926819",
        "G B two nine, N W B K, six zero one six, one three three one, nine two six eight, one nine",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NL91 ABNA 0417 1643 00",
        "I T 6 0 x 0 5 4 2 8 1 1 1 0 1 0 0 0 0 0 0 1 2 3 4 5 6",  # a letter heard in lower case
    ],
)
def test_ibans(sentence):
    assert [t for t, _ in found(sentence)] == ["IBAN"]


def test_an_iban_is_found_by_its_structure_without_a_keyword():
    # "IBAN" misheard ("Ivan") or not said: country code, length and mod 97 are enough, spelled out too.
    span = "D E 8 9 3 7 0 4 0 0 4 4 0 5 3 2 0 1 3 0 0 0"
    assert found(f"my Ivan is {span} thanks") == [("IBAN", span)]
    assert found("wire it to DE89 3704 0044 0532 0130 00 today") == [("IBAN", "DE89 3704 0044 0532 0130 00")]


def test_iban_checksum_and_misheard_policy():
    # The check sets the confidence; the shape (country code, check digits, length +-1) finds it, cue or not.
    (e,) = r.find(words_of("my IBAN is DE89 3704 0044 0532 0130 01"), "IBAN")
    assert e.confidence == 0.6
    (e,) = r.find(words_of("we paid DE89 3704 0044 0532 0130 01 and it bounced"), "IBAN")
    assert e.confidence == 0.5
    # As tiny.en heard a real IBAN read out (a zero doubled, "IBAN" as "Ivan"): one character too many.
    heard = "I T 6 0 x 0 5 4 2 8 1 1 1 0 1 0 0 0 0 0 0 0 1 2 3 4 5 6"
    assert found(f"Send it to Ivan {heard}") == [("IBAN", heard)]
    assert found("F-R-1-4-2-0-0-4-1-0-1-0-0-5-0-5-0-0-0-0-1-3-M-0-2-6-0-6.") == [
        ("IBAN", "F-R-1-4-2-0-0-4-1-0-1-0-0-5-0-5-0-0-0-0-1-3-M-0-2-6-0-6.")
    ]


def test_long_digit_run_is_an_account_number_unless_named_otherwise():
    # As tiny.en heard "IBAN ES91 2100 0418 4502 0005 1332": no cue, no country code, a zero doubled.
    heard = "1 2 1 0 0 0 4 1 8 4 5 0 2 0 0 0 0 5 1 3 3 2"
    (e,) = r.find(words_of(f"I've been... {heard}"), "all")
    assert (e.type, e.confidence) == ("IBAN", 0.4)
    # An IBAN two characters long fails its shape, but its digits still go.
    assert found("we paid DE89 3704 0044 0532 0130 0012 and it bounced") == [("IBAN", "3704 0044 0532 0130 0012")]
    assert found(f"The account is {heard}") == [("IBAN", heard)]
    # Named as no personal number, or shorter than 20 digits, it stays.
    assert found(f"Tracking number {heard}, thanks") == []
    assert found(f"reference {heard}") == []
    assert found("it was 1 2 1 0 0 0 4 1 8 4 5 0 2 0 0 0 0 5 1 today") == []


@pytest.mark.parametrize(
    "sentence",
    [
        "we paid DE89 3704 0044 0532 0130 and it bounced",  # two short, no cue
        "we paid NL91 ABNA 0417 1643 0012 and it bounced",  # two long
        "the postcode is DE 89 and the flat is 3704",
        "we paid GBXX 3704 0044 0532 0130 00",  # no check digits
    ],
)
def test_iban_near_misses_stay(sentence):
    assert found(sentence, "IBAN") == []


# ---- IP_ADDRESS


@pytest.mark.parametrize(
    ("sentence", "span"),
    [
        ("the server is 192.168.1.1.", "192.168.1.1."),
        ("use ::1 for localhost", "::1"),
        ("it is 2001:db8::ff00:42:8329", "2001:db8::ff00:42:8329"),
        (
            "my IP is one nine two dot one six eight dot zero dot one.",
            "one nine two dot one six eight dot zero dot one.",
        ),
        ("connect to 172 dot 16 dot 4 dot 20, port 22", "172 dot 16 dot 4 dot 20,"),
        # As Whisper writes digits: hyphens and spaces inside octets.
        ("the gateway is 2-03.0.113.9 now", "2-03.0.113.9"),
        ("it is 1-7-2.1-6.0.2-5-4.", "1-7-2.1-6.0.2-5-4."),
        ("use 1 9 2 dot 1 6 8 dot 0 dot 9 9 now", "1 9 2 dot 1 6 8 dot 0 dot 9 9"),
        # A number said just before the first octet stays out of it.
        ("port 80 10 dot 1 dot 1 dot 5 please", "10 dot 1 dot 1 dot 5"),
        # An octet written as two numbers (tiny.en, base), near an IP cue: see SPLIT_OCTET_CONFIDENCE.
        ("Connect to 1.72.16.4.20", "1.72.16.4.20"),
        ("ping 172.16.4.2.0 and tell me.", "172.16.4.2.0"),
        ("the gateway is 1 dot 92 dot 168 dot 1 dot 1", "1 dot 92 dot 168 dot 1 dot 1"),
    ],
)
def test_ip_addresses(sentence, span):
    assert found(sentence) == [("IP_ADDRESS", span)]


@pytest.mark.parametrize(
    "sentence",
    [
        "python 3.11 is fine",
        "meet at 12:30:45",
        "the score was 3.5",
        "256.1.1.1 is not one",
        "one dot two dot three",
        "python 3.10.2 is out",
        "release 4.1-0.2 ships",
        "we paid $1-2.50 for it",
        "versions 1.5 2.5 3.5 work",
        "one dot two dot three dot four dot five",
        "2-56.1.1.1 is not one",
        "count 1. 2. 3. 4. done",  # written dots with a space after them end sentences
        "it is 10.0.0.1.5 here",
        "release 1.72.16.4.20 ships",  # five numbers and no IP cue
        "connect to 300.1.2.3.4",  # no two neighbours join into four octets
        "ping 0.0.0.0.254",
    ],
)
def test_ip_near_misses_stay(sentence):
    assert found(sentence, "IP_ADDRESS") == []


# ---- DATE_OF_BIRTH


@pytest.mark.parametrize(
    ("sentence", "span"),
    [
        ("I was born on March 3rd, 1985 in Ohio", "March 3rd, 1985"),
        ("my date of birth is 3/3/1985", "3/3/1985"),
        ("date of birth, the third of March nineteen eighty five.", "third of March nineteen eighty five."),
        ("DOB: 1985-03-03", "1985-03-03"),
        ("D.O.B. 03.11.1979", "03.11.1979"),
        ("her birthday is July 4th.", "July 4th."),
        ("born on the twenty first of June, two thousand and five", "twenty first of June, two thousand and five"),
        ("January 15, 2001 is my date of birth", "January 15, 2001"),
        ("my birthday's the 14th of February.", "14th of February."),
    ],
)
def test_dates_of_birth(sentence, span):
    assert found(sentence) == [("DATE_OF_BIRTH", span)]


@pytest.mark.parametrize(
    "sentence",
    [
        "we opened on March 3rd, 1985",
        "the meeting is on 3/3/2025",
        "I was born in 1985",
        "I was born in March nineteen eighty five",
        "born on 13/13/1985",
        "I was born in the spring and started school on 4/7/98",  # the cue is too far back
    ],
)
def test_dates_without_a_birth_cue_or_day_stay(sentence):
    assert found(sentence, "DATE_OF_BIRTH") == []


# ---- NATIONAL_ID


@pytest.mark.parametrize(
    "sentence",
    [
        "my social security number is 123-45-6789",
        "SSN one two three, four five, six seven eight nine",
        "my DNI is 12345678Z",
        "NIE X1234567L",
        "DNI 45128371 W",
        "my BSN is 111222333",
        "burgerservicenummer 1 2 3 4 5 6 7 8 2",
        "my Aadhaar number is 4991 8372 6500",
        "my social insurance number is 130 692 544",
        "numéro de sécurité sociale 2 69 05 49 588 157 80",
        "national register number 85.07.30-033.28",
    ],
)
def test_national_ids(sentence):
    assert [t for t, _ in found(sentence)] == ["NATIONAL_ID"]


@pytest.mark.parametrize(
    "sentence",
    [
        "the code is 123-45-6789",  # an SSN needs its cue
        "SSN 123 4567",  # too short for a misheard SSN
        "my social security number is 4111 1111 1111",  # too long
        "DNI 12345678A",  # wrong letter
        "the batch number is 45128371 W",  # number and letter apart need a cue
        "the BSN is 238476109",  # fails the 11-proof
        "the part number is 111222333",  # passes the 11-proof, but no cue
        "Aadhaar 4991 8372 6501",  # fails Verhoeff
        "my SIN is 130 692 545",  # fails Luhn
    ],
)
def test_national_id_near_misses_stay(sentence):
    assert found(sentence, "NATIONAL_ID") == []


@pytest.mark.parametrize(
    "sentence",
    [
        "my social security number is 666-12-3456",  # area 666 is never issued
        "SSN 123-00-6789",  # group 00 neither
        "my social is 2 1 9 0 9 9 9 9",  # a digit lost, as tiny.en heard "219 09 9999"
        "social security number 123 45 67890",  # a digit too many
    ],
)
def test_a_misheard_ssn_near_its_cue_is_redacted_with_lower_confidence(sentence):
    # An SSN has no check digit: near its cue, one of 8-10 digits that its rules reject goes all the same.
    (e,) = r.find(words_of(sentence), "NATIONAL_ID")
    assert e.confidence == 0.5


def test_a_phone_number_near_social_stays_a_phone_number():
    assert found("call social services on 212 555 0147") == [("PHONE_NUMBER", "212 555 0147")]


# ---- API


def test_parse_types():
    assert r.parse_types("all") == frozenset(ENTITY_TYPES)
    assert r.parse_types("email, phone_number") == {"EMAIL", "PHONE_NUMBER"}
    assert r.parse_types(["CARD_NUMBER"]) == {"CARD_NUMBER"}
    assert r.parse_types("") == frozenset()
    with pytest.raises(ValueError, match="CARD, SSN"):
        r.parse_types("EMAIL,CARD,ssn")


def test_only_asked_types_are_found():
    sentence = "card 4111 1111 1111 1111 and email a.b@example.com"
    assert [t for t, _ in found(sentence, "EMAIL")] == ["EMAIL"]
    assert found(sentence, "") == []
    # This IBAN's "2648 4756 4696 0623" passes Luhn; asked for cards only, it still is no card.
    assert found("DE80 2648 4756 4696 0623 07", "CARD_NUMBER") == []
    assert found("DE80 2648 4756 4696 0623 07", ["iban"]) == [("IBAN", "DE80 2648 4756 4696 0623 07")]


def test_entities_are_sorted_and_do_not_overlap():
    sentence = (
        "my card is 4111 1111 1111 1111, call me on 212-555-1234, email a.b@example.com, "
        "I was born on March 3rd, 1985 and my IP is 10.0.0.1"
    )
    es = r.find(words_of(sentence), "all")
    assert [e.type for e in es] == ["CARD_NUMBER", "PHONE_NUMBER", "EMAIL", "DATE_OF_BIRTH", "IP_ADDRESS"]
    assert all(a.last_word < b.first_word for a, b in zip(es, es[1:], strict=False))
    assert all(0 < e.confidence <= 1 for e in es)


SECRETS = ("4111", "1111", "212", "555", "1234", "a.b", "example", "1985", "10.0.0.1", "6789", "12345678Z")


def test_no_raw_value_in_results_or_errors():
    sentence = (
        "card 4111 1111 1111 1111, phone 212-555-1234, email a.b@example.com, born March 3rd, 1985, "
        "IP 10.0.0.1, SSN 123-45-6789, DNI 12345678Z"
    )
    ws = words_of(sentence)
    res = r.redact(ws, "all", text=sentence)
    shown = repr(res) + str(res) + repr(r.find(ws, "all")) + res.text + " ".join(w.word for w in res.words)
    for secret in SECRETS:
        assert secret not in shown, secret
    for bad in (
        lambda: r.redact(ws, "all,BOGUS"),
        lambda: r.redact(ws, "all", region="ZZ"),
        lambda: r.redact(ws, "all", profanity="bleep"),
        lambda: r.redact_text(sentence, "all", profanity="bleep"),
    ):
        with pytest.raises(ValueError) as info:
            bad()
        for secret in SECRETS:
            assert secret not in str(info.value) and secret not in repr(info.value)
    assert set(Entity.__dataclass_fields__) == {"type", "start_ms", "end_ms", "confidence", "first_word", "last_word"}


def test_timings_are_kept():
    ws = [
        TimedWord("Call", 0, 200, 0.99),
        TimedWord("me", 210, 100, 0.98),
        TimedWord("at", 320, 100, 0.97),
        TimedWord("212", 430, 300, 0.8),
        TimedWord("555", 740, 300, 0.7),
        TimedWord("1234.", 1050, 400, 0.9),
        TimedWord("Thanks.", 1600, 300, 0.95),
    ]
    res = r.redact(ws, "all")
    assert res.words == (
        TimedWord("Call", 0, 200, 0.99),
        TimedWord("me", 210, 100, 0.98),
        TimedWord("at", 320, 100, 0.97),
        TimedWord("[PHONE_NUMBER].", 430, 1020, 0.7),
        TimedWord("Thanks.", 1600, 300, 0.95),
    )
    (e,) = res.entities
    assert (e.start_ms, e.end_ms, e.first_word, e.last_word) == (430, 1450, 3, 5)
    assert res.text == "Call me at [PHONE_NUMBER]. Thanks."


def test_any_word_like_object_will_do():
    @dataclass(frozen=True)
    class Word:
        word: str
        offset_ms: int
        duration_ms: int
        confidence: float
        speaker: str = "A"

    ws = [Word(w.word, w.offset_ms, w.duration_ms, w.confidence) for w in words_of("my SSN is 123-45-6789")]
    assert r.redact(ws, "NATIONAL_ID").text == "my SSN is [NATIONAL_ID]"


# ---- text


def test_text_redacted_consistently_with_words():
    ws = words_of(
        "sure my card is four one one one one one one one one one one one one one one one and my email is "
        "john dot smith at example dot com call me on two one two five five five one two three four"
    )
    text = "Sure, my card is 4111 1111 1111 1111, and my email is john.smith@example.com. Call me on (212) 555-1234!"
    res = r.redact(ws, "all", text=text)
    assert res.text == "Sure, my card is [CARD_NUMBER], and my email is [EMAIL]. Call me on [PHONE_NUMBER]!"
    placeholders = [w.word for w in res.words if w.word.startswith("[")]
    assert placeholders == ["[CARD_NUMBER]", "[EMAIL]", "[PHONE_NUMBER]"]


def test_text_holds_an_entity_the_words_only_hint_at():
    # The words misheard one digit ("1112", Luhn fails, no cue); the text has the real number.
    ws = words_of("it is 4111 1111 1111 1112 okay")
    assert r.find(ws, "all") == []
    assert r.redact_text("It is 4111 1111 1111 1111, okay.", "all", words=ws) == "It is [CARD_NUMBER], okay."


def test_words_are_masked_where_only_the_text_shows_an_entity():
    # A recogniser's words lose what its text keeps: "example com" for "example.com", a misheard digit.
    ws = words_of("my email is john dot smith at example com thanks")
    res = r.redact(ws, "all", text="My email is john dot smith at example.com. Thanks")
    assert res.text == "My email is [EMAIL]. Thanks"
    assert [w.word for w in res.words] == ["my", "email", "is", "[EMAIL]", "thanks"]
    assert [(e.type, e.first_word, e.last_word, e.start_ms) for e in res.entities] == [("EMAIL", 3, 8, 900)]
    ws = words_of("it is 4111 1111 1111 1112 okay")
    res = r.redact(ws, "all", text="It is 4111 1111 1111 1111, okay.")
    assert [w.word for w in res.words] == ["it", "is", "[CARD_NUMBER]", "okay"]
    assert [e.type for e in res.entities] == ["CARD_NUMBER"]


def test_text_that_cannot_be_aligned_is_rebuilt_from_the_words():
    ws = words_of("my SSN is 123-45-6789")
    text = "Completely different words that never match anything at all in the list of words given here."
    assert r.redact_text(text, "all", words=ws) == "my SSN is [NATIONAL_ID]"


def test_text_alone_and_without_entities():
    assert r.redact_text("Nothing to see here, 42 times.", "all") == "Nothing to see here, 42 times."
    assert r.redact_text("DOB: 3/3/1985.", "all") == "DOB: [DATE_OF_BIRTH]."
    assert r.redact_text("", "all") == ""
    assert r.redact([], "all") == r.Redacted((), "", ())


def test_partials_hide_a_number_still_being_spoken():
    assert r.redact_text("My card number is 4111 1111", "all", partial=True) == "My card number is [CARD_NUMBER]"
    assert r.redact_text("My card number is 4111 1111", "all") == "My card number is 4111 1111"
    assert r.redact_text("My social is 123 45", "all", partial=True) == "My social is [NATIONAL_ID]"
    assert r.redact_text("Call me on 212 555", "all", partial=True) == "Call me on [PHONE_NUMBER]"
    # Anywhere in a partial, with or without a cue: it may still grow, or a cue said after it make it one.
    assert r.redact_text("My card number is 4111 1111 okay", "all", partial=True).endswith("[CARD_NUMBER] okay")
    assert r.redact_text("We have 4111 1111", "all", partial=True) == "We have [NUMBER]"
    assert r.redact_text("It is 212 555, right", "all", partial=True) == "It is [NUMBER], right"
    assert r.redact_text("Four one one one one one", "all", partial=True) == "[NUMBER]"
    # However Whisper writes a number half heard: joined number words, a decimal, a price, a date.
    for said in ("four-one-one-one", "4.1111", "$4,111", "4/11/11"):
        assert r.redact_text(f"My card is {said}", "all", partial=True) == "My card is [CARD_NUMBER]", said
    assert r.redact_text("We paid $4.99 and", "all", partial=True) == "We paid $4.99 and"
    # Or garbled into short pieces with stray words between: together they are the number.
    assert r.redact_text("My card is 41 for 11 to love", "all", partial=True) == "My card is [CARD_NUMBER] to love"
    assert r.redact_text("page 12 of 13 done", "all", partial=True) == "page [NUMBER] done"
    # The cost: a year or a price of four digits while it is spoken (the final shows it); fewer digits stay.
    assert r.redact_text("It cost 45 dollars in 2019.", "all", partial=True) == "It cost 45 dollars in [NUMBER]."
    assert r.redact_text("I have 3 kids and 2 cats", "all", partial=True) == "I have 3 kids and 2 cats"
    assert r.redact_text("at 5, left at 7, back at 9 today", "all", partial=True) == "at 5, left at 7, back at 9 today"
    # Right after a cue, at the partial's end, the first digit is the number's.
    assert r.redact_text("My card number is four", "all", partial=True) == "My card number is [CARD_NUMBER]"
    assert r.redact_text("My card has 3 colours", "all", partial=True) == "My card has 3 colours"
    # Held only while a type a number can become is wanted; a cue's unwanted type still masks it.
    assert r.redact_text("We have 4111 1111", "EMAIL", partial=True) == "We have 4111 1111"
    assert r.redact_text("My card is 4111 1111", "PHONE_NUMBER", partial=True) == "My card is [NUMBER]"
    # A complete value keeps its own type in a partial.
    assert r.redact_text("Visa 4111 1111 1111 1111", "all", partial=True) == "Visa [CARD_NUMBER]"


def test_partials_hold_back_an_address_still_being_said():
    assert r.redact_text("my email is john dot smith at", "EMAIL", partial=True) == "my email is [EMAIL]"
    assert r.redact_text("my email is john dot smith at exam", "EMAIL", partial=True) == "my email is [EMAIL]"
    assert r.redact_text("write to john.smith@exam", "EMAIL", partial=True) == "write to [EMAIL]"
    assert r.redact_text("we met at", "EMAIL", partial=True) == "we met at"  # no local part: stays
    assert r.redact_text("write to john.smith@exam", "EMAIL") == "write to john.smith@exam"  # finals: as they are


def test_a_policy_checks_its_values_and_redacts_finals_with_or_without_word_timings():
    with pytest.raises(ValueError, match="SHOE_SIZE"):
        r.Policy.of(["CARD_NUMBER", "SHOE_SIZE"])
    with pytest.raises(ValueError, match="profanity"):
        r.Policy.of(profanity="bleep")
    with pytest.raises(ValueError, match="region"):
        r.Policy.of("all", phone_region="XX")
    assert not r.Policy.of().enabled and r.Policy.of(profanity="tag").enabled
    assert r.Policy.of("all").region("en-GB") == "GB" and r.Policy.of("all", phone_region="de").region("en") == "DE"
    policy = r.Policy.of("CARD_NUMBER")
    done = policy.final(None, "My card number is 4111 1111 1111 1111.", offset_ms=500, duration_ms=3000)
    assert done.text == "My card number is [CARD_NUMBER]."
    assert [(e.type, e.start_ms, e.end_ms) for e in done.entities] == [("CARD_NUMBER", 500, 3500)]


# ---- profanity


def test_profanity_modes():
    ws = words_of("What the fuck, this is bullshit.")
    assert r.redact(ws, "all", profanity="mask").text == "What the f***, this is b*******."
    assert r.redact(ws, "all", profanity="tag").text == "What the [PROFANITY], this is [PROFANITY]."
    removed = r.redact(ws, "all", profanity="remove")
    assert removed.text == "What the, this is."
    assert [w.word for w in removed.words] == ["What", "the,", "this", "is."]
    assert r.redact(ws, "all").text == "What the fuck, this is bullshit."
    text = "Fuck. What the fuck? Shit, I f***ing lost it."
    assert r.redact_text(text, "all", profanity="remove") == "What the? I lost it."
    assert r.redact_text(text, "all", profanity="mask") == "F***. What the f***? S***, I f****** lost it."


@pytest.mark.parametrize("word", ["Scunthorpe", "assassin", "cocktail", "class", "Dick", "hello", "shiitake"])
def test_innocent_words_are_not_profanity(word):
    assert r.redact_text(f"{word} here", "all", profanity="tag") == f"{word} here"


# ---- shape of the module


def test_imports_only_stdlib_and_phonenumbers():
    names = set()
    for path in Path(r.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                names.add(node.module or "")
    own = {n for n in names if n.startswith("voxbeam.redaction.")}
    assert own and not [n for n in names - own if n.startswith("voxbeam")]
    assert names - own <= {
        "__future__",
        "bisect",
        "ipaddress",
        "re",
        "collections.abc",
        "dataclasses",
        "functools",
        "typing",
        "phonenumbers",
    }


def _talk(n: int) -> list[TimedWord]:
    """n words of talk: a labelled sentence, then two of filler, over and over."""
    sentences = [s for _, s, _ in labelled()]
    filler = "so anyway I told him we would meet at the station around noon and then go for lunch together"
    words: list[str] = []
    k = 0
    while len(words) < n:
        words += (sentences[k % len(sentences)] if k % 3 == 0 else filler).split()
        k += 1
    return [TimedWord(w, i * 300, 250, 0.9) for i, w in enumerate(words[:n])]


def _phone_checks(ws: list[TimedWord]) -> tuple[int, r.Redacted]:
    phone_status.cache_clear()
    res = r.redact(ws, "all", text=" ".join(w.word for w in ws), profanity="mask")
    info = phone_status.cache_info()
    return info.hits + info.misses, res


@pytest.mark.timeout(120)  # a guard against a hang; the speed itself is bench/redaction's to measure
def test_ten_thousand_words_cost_ten_times_a_thousand():
    """The scan is linear: a transcript ten times longer asks the phone check about ten times as often (a scan that
    went back over what it had passed would ask quadratically more), and finds ten times the entities."""
    talk = _talk(1_000)
    small, small_res = _phone_checks(talk)
    large, large_res = _phone_checks(
        [TimedWord(w.word, w.offset_ms + k * 300_000, 250, 0.9) for k in range(10) for w in talk]
    )
    assert small > 10 and len(small_res.entities) > 10, (small, small_res.entities)
    assert 9 * small <= large <= 11 * small, (small, large)
    assert 9 * len(small_res.entities) <= len(large_res.entities) <= 11 * len(small_res.entities)
