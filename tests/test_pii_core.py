# ruff: noqa: RUF001 - Chinese and Cyrillic test text is written with its own punctuation and letters
"""Pure-core unit tests of ingestion: PII rules and checksums, placeholders, NER windows, normalization,
quality, the join window and synth parsing. No Presidio, Kafka or pyarrow here."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from cloud.ingest.core import ner
from cloud.ingest.core.join import JoinWindow
from cloud.ingest.core.normalize import exact_key, jaccard, normalize, shingles
from cloud.ingest.core.pii import (
    API_KEY,
    CN_MOBILE,
    CN_RESIDENT_ID,
    CREDIT_CARD,
    EMAIL,
    IP_ADDRESS,
    PERSON,
    Span,
    cn_id_check_char,
    luhn_ok,
    resolve,
    rule_spans,
    valid_cn_id,
)
from cloud.ingest.core.placeholders import PlaceholderBook, substitute
from cloud.ingest.core.quality import QualityPolicy, agreement, assess, language, repetition
from cloud.ingest.core.synth import chunks, parse_pairs
from schemas import Escalation, InferenceRequest, InferenceResult, make

digits = st.text(alphabet="0123456789", min_size=1)


def _found(text: str, entity: str) -> list[str]:
    return [text[s.start:s.end] for s in resolve(rule_spans(text), text) if s.entity == entity]


@st.composite
def cn_ids(draw: st.DrawFn) -> str:
    region = draw(st.sampled_from(["110105", "310104", "440305", "510107", "650102"]))
    year = draw(st.integers(1900, 2025))
    month, day = draw(st.integers(1, 12)), draw(st.integers(1, 28))
    first17 = f"{region}{year}{month:02d}{day:02d}{draw(st.integers(0, 999)):03d}"
    return first17 + cn_id_check_char(first17)


@given(cn_ids())
def test_resident_id_with_valid_checksum_is_found(value: str) -> None:
    assert valid_cn_id(value)
    assert _found(f"身份证号{value}，请核对。", CN_RESIDENT_ID) == [value]
    assert _found(f"id: {value.lower()} ok", CN_RESIDENT_ID) == [value.lower()]


@given(cn_ids(), st.integers(0, 10))
def test_resident_id_with_wrong_checksum_is_not_an_id(value: str, shift: int) -> None:
    wrong = "0123456789X"[("0123456789X".index(value[-1]) + 1 + shift % 10) % 11]
    bad = value[:-1] + wrong
    assert not valid_cn_id(bad)
    assert _found(f"编号 {bad} 。", CN_RESIDENT_ID) == []


def test_known_resident_id_checksum() -> None:
    # The example id of GB 11643-1999.
    assert cn_id_check_char("11010519491231002") == "X"


@st.composite
def card_numbers(draw: st.DrawFn) -> str:
    body = draw(st.text(alphabet="0123456789", min_size=15, max_size=15))
    for check in "0123456789":
        if luhn_ok(body + check):
            return body + check
    raise AssertionError("some check digit always completes a Luhn number")


@given(card_numbers())
def test_luhn_valid_cards_are_found_grouped_or_not(card: str) -> None:
    grouped = " ".join(card[i:i + 4] for i in range(0, 16, 4))
    assert _found(f"card {grouped} thanks", CREDIT_CARD) == [grouped]
    assert _found(f"card {card}.", CREDIT_CARD) == [card]


@given(card_numbers())
def test_luhn_invalid_numbers_are_not_cards(card: str) -> None:
    bad = card[:-1] + str((int(card[-1]) + 1) % 10)
    assert not luhn_ok(bad)
    assert _found(f"order {bad} shipped", CREDIT_CARD) == []


@given(st.tuples(*[st.integers(0, 255)] * 4))
def test_every_ipv4_is_found(octets: tuple[int, ...]) -> None:
    ip = ".".join(map(str, octets))
    assert _found(f"host {ip}, port 22", IP_ADDRESS) == [ip]
    assert _found(f"服务器{ip}拒绝连接", IP_ADDRESS) == [ip]


@given(st.integers(256, 999))
def test_octets_above_255_are_not_ipv4(octet: int) -> None:
    assert _found(f"host 10.{octet}.0.1 down", IP_ADDRESS) == []


@given(st.sampled_from("3456789"), st.integers(0, 9), st.integers(0, 99_999_999))
def test_china_mobiles_in_common_spellings(second: str, third: int, rest: int) -> None:
    number = f"1{second}{third}{rest:08d}"
    spaced = f"{number[:3]} {number[3:7]} {number[7:]}"
    for text, value in ((f"手机{number}。", number), (f"call +86 {spaced} now", f"+86 {spaced}"),
                        (f"tel:{number}", number)):
        assert _found(text, CN_MOBILE) == [value]


def test_china_mobile_is_not_found_inside_longer_numbers() -> None:
    assert _found("order 9913812345678123", CN_MOBILE) == []


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=40, max_size=48))
def test_api_keys_and_bearer_tokens(token: str) -> None:
    for key in (f"sk-{token}", f"sk-proj-{token}", f"ghp_{token[:36]}", "AKIA" + token[:16].upper()):
        assert _found(f"key={key} leaked", API_KEY) == [key]
        assert _found(f"密钥{key}泄露", API_KEY) == [key]
    assert _found(f"Authorization: Bearer {token}\n", API_KEY) == [token]


def test_emails_including_inside_chinese_text() -> None:
    assert _found("mail a.b+c@mail.example.cn, thanks", EMAIL) == ["a.b+c@mail.example.cn"]
    assert _found("请发邮件到li.wei@corp.net，谢谢", EMAIL) == ["li.wei@corp.net"]


def test_labelled_chinese_names() -> None:
    assert _found("联系人：张伟，电话", PERSON) == ["张伟"]
    assert _found("客户黄强秀反馈说收不到验证码", PERSON) == ["黄强秀"]
    assert _found("客户反馈说收不到验证码", PERSON) == []


def test_placeholders_in_text_are_never_rescanned() -> None:
    text = "<PERSON_1> wrote to <EMAIL_ADDRESS_1>"
    assert resolve([Span(0, 10, PERSON), Span(20, 37, EMAIL)], text) == []


@given(st.lists(st.tuples(st.integers(0, 60), st.integers(1, 20), st.sampled_from([PERSON, EMAIL, API_KEY])),
                max_size=12))
def test_resolve_returns_sorted_non_overlapping_spans(raw: list[tuple[int, int, str]]) -> None:
    spans = resolve([Span(s, s + n, e) for s, n, e in raw], "x" * 100)
    assert all(a.end <= b.start for a, b in itertools.pairwise(spans))


@given(st.lists(st.sampled_from(["Ann Lee", "ann  lee", "Bob Roe", "Cy Dee"]), min_size=1, max_size=20))
def test_same_value_same_placeholder_distinct_values_distinct(names: list[str]) -> None:
    book = PlaceholderBook()
    given_out = {n: book.placeholder(PERSON, n) for n in names}
    canonical = {" ".join(n.split()).casefold() for n in names}
    assert len(set(given_out.values())) == len(canonical)
    assert book.placeholder(PERSON, names[0]) == given_out[names[0]]
    assert all(re.fullmatch(r"<PERSON_\d+>", p) for p in given_out.values())


def test_placeholders_number_in_reading_order_and_digits_normalize() -> None:
    book = PlaceholderBook()
    text = "Ann called 138 1234 5678 then Bob; Ann again at 13812345678"
    spans = [Span(0, 3, PERSON), Span(11, 24, CN_MOBILE), Span(30, 33, PERSON), Span(35, 38, PERSON),
             Span(48, 59, CN_MOBILE)]
    book.assign(text, spans)
    assert substitute(text, spans, book) == (
        "<PERSON_1> called <CN_MOBILE_1> then <PERSON_2>; <PERSON_1> again at <CN_MOBILE_1>")


def test_ner_windows_only_cover_sentences_with_name_candidates() -> None:
    text = "The Kafka broker restarted. Then John Smith called. 我们的服务器在北京。 Please check Redis."
    windows = ner.ner_windows(text)
    assert [text[s:e] for s, e in windows] == ["Then John Smith called."]
    assert ner.ner_windows("网关重启之后，消息积压了。") == []
    assert not ner.plausible_person("Kafka")
    assert ner.plausible_person("Ann Lee")
    assert ner.trim_person("Call Ann Lee now", 0, 12) == (5, 12)


def test_normalization_and_exact_keys() -> None:
    assert normalize("  Hello,   WORLD!! ") == "hello world"
    assert exact_key("t1", "Hello, world", "x") == exact_key("t1", "hello world", "X!")
    assert exact_key("t1", "a", "b") != exact_key("t2", "a", "b")
    assert jaccard(shingles("the quick brown fox jumps"), shingles("the quick brown fox jumps")) == 1.0
    assert shingles("网关重启之后消息积压")
    assert all(" " not in s for s in shingles("网关重启之后消息积压"))


def test_quality_checks_name_the_first_failure() -> None:
    policy = QualityPolicy()
    good = "Reset offsets with kafka-consumer-groups --reset-offsets --to-earliest while the group is stopped."
    assert assess("How do I reset offsets?", good, None, policy).drop is None
    assert assess("hi", good, None, policy).drop == "short_prompt"
    assert assess("How do I reset offsets?", "ok", None, policy).drop == "short_answer"
    assert assess("How?", "I'm sorry, but I can't help with that request today.", None, policy).drop == "refusal"
    assert assess("How?", "loop " * 40, None, policy).drop == "repetitive"
    assert assess("Как дела?", "Все хорошо, спасибо большое за вопрос.", None, policy).drop == "language"
    assert assess("How do I reset offsets?", good, good, policy).drop == "draft_agrees"
    assert language("网关重启之后消息积压") == "zh"
    assert repetition("one two three four five six") == 0.0
    assert agreement(None, good) is None
    assert 0.0 < (agreement("reset the offsets", good) or 0.0) < 0.95


def _esc(request_id: str) -> object:
    request = InferenceRequest(request_id=request_id, prompt="q")
    return make(Escalation(request=request, reason="low"), tenant="t", device="d")


def _ans(request_id: str) -> object:
    return make(InferenceResult(request_id=request_id, route="cloud", text="a", model_id="m", model_version="1",
                                latency_ms=1.0), tenant="t", device="d")


def test_join_window_pairs_either_order_and_bounds_state() -> None:
    window = JoinWindow(capacity=2, max_age_s=10.0)
    pair, gone = window.offer("answer", ("t", "d", "r1"), _ans("r1"), now=0.0)  # type: ignore[arg-type]
    assert pair is None
    assert not gone
    pair, _ = window.offer("escalation", ("t", "d", "r1"), _esc("r1"), now=1.0)  # type: ignore[arg-type]
    assert pair is not None
    assert isinstance(pair.escalation.data, Escalation)
    for i in range(3):
        _, gone = window.offer("escalation", ("t", "d", f"x{i}"), _esc(f"x{i}"), now=2.0)  # type: ignore[arg-type]
    assert len(window) == 2
    assert [(g.side, g.reason) for g in gone] == [("escalation", "full")]
    assert [(g.side, g.reason) for g in window.expire(now=20.0)] == [("escalation", "expired")] * 2


def test_synth_reply_parsing_and_chunks() -> None:
    reply = "Q: What is QoS 1?\nA: At least once.\n\nQuestion: Why?\nAnswer: Acks.\nMore."
    assert parse_pairs(reply) == [("What is QoS 1?", "At least once."), ("Why?", "Acks.\nMore.")]
    assert parse_pairs("no pairs here") == []
    parts = chunks("a" * 10 + "\n\n" + "b" * 3000, max_chars=1500)
    assert [len(p) for p in parts] == [10, 1500, 1500]


def test_records_know_their_partition_date() -> None:
    from cloud.ingest.core.records import Record, record_id  # noqa: PLC0415

    r = Record(record_id("t", "d", "r", "local"), "t", "d", "local", "r", "p", "a",
               datetime(2026, 11, 29, 23, 59, tzinfo=UTC))
    assert r.date == "2026-11-29"
    assert len(r.record_id) == 32
    assert record_id("t", "d", "r", "local") != record_id("t", "d", "r", "distill")
