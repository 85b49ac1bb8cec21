"""PII rules Presidio lacks (China mobile and resident ids, IPv4, API keys), plus the cheap prefilter that
decides which texts need the (slow) NER model at all. Pure: regexes and checksums over plain strings.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

EMAIL = "EMAIL_ADDRESS"
PHONE = "PHONE_NUMBER"
CREDIT_CARD = "CREDIT_CARD"
IP_ADDRESS = "IP_ADDRESS"
CN_MOBILE = "CN_MOBILE"
CN_RESIDENT_ID = "CN_RESIDENT_ID"
API_KEY = "API_KEY"
PERSON = "PERSON"

# Placeholders written by an earlier pass (`<PERSON_1>`) are not PII and must survive a re-scan unchanged.
PLACEHOLDER_RE = re.compile(r"<[A-Z][A-Z_]*_\d+>")


@dataclass(frozen=True, slots=True)
class Span:
    """A PII finding: text[start:end] is an `entity`, with the detector's confidence."""

    start: int
    end: int
    entity: str
    score: float = 1.0


@dataclass(frozen=True, slots=True)
class Rule:
    """One pattern for one entity; `group` picks the PII part of the match; `valid` checks it (checksums)."""

    entity: str
    pattern: re.Pattern[str]
    score: float = 0.9
    group: int = 0
    valid: Callable[[str], bool] | None = None


_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def cn_id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of a resident id's first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def valid_cn_id(value: str) -> bool:
    """True for an 18-character resident id whose last character is its MOD 11-2 checksum."""
    if len(value) != 18 or not value[:17].isdigit():
        return False
    return cn_id_check_char(value[:17]) == value[17].upper()


def luhn_ok(value: str) -> bool:
    """True when the digits of `value` (13 to 19 of them) pass the Luhn checksum."""
    digits = [int(c) for c in value if c.isdigit()]
    if not 13 <= len(digits) <= 19:
        return False
    total = 0
    for i, d in enumerate(reversed(digits)):
        total += d if i % 2 == 0 else (d * 2 - 9 if d > 4 else d * 2)
    return total % 10 == 0


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
# The ~100 most common Chinese surnames (single character).
CN_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔"
    "钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)

RULES: tuple[Rule, ...] = (
    Rule(EMAIL, re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
         1.0),
    Rule(CN_RESIDENT_ID, re.compile(
        r"(?<![0-9A-Za-z])[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]"
        r"(?![0-9A-Za-z])"), 1.0, valid=valid_cn_id),
    Rule(CN_MOBILE, re.compile(r"(?<![\d+])(?:(?:\+|00)?86[-\s]?)?1[3-9]\d(?:[-\s]?\d{4}){2}(?!\d)"), 0.95),
    Rule(CREDIT_CARD, re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), 0.95, valid=luhn_ok),
    Rule(IP_ADDRESS, re.compile(rf"(?<![\d.])(?:{_OCTET}\.){{3}}{_OCTET}(?![\d]|\.\d)"), 0.9),
    Rule(PHONE, re.compile(
        r"(?<![\w+])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)|\d{3})[\s.-]?\d{3,4}[\s.-]\d{4}(?!\d)"), 0.75),
    Rule(PHONE, re.compile(r"(?<![\w+])\+\d{1,3}(?:[\s.-]\d{2,5}){2,4}(?!\d)"), 0.75),
    Rule(API_KEY, re.compile(r"(?<![A-Za-z0-9_-])sk-(?:proj-|live-|test-|ant-)?[A-Za-z0-9_-]{20,}"),
         1.0),
    Rule(API_KEY, re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9])"), 1.0),
    Rule(API_KEY, re.compile(r"(?<![A-Za-z0-9])gh[pousr]_[A-Za-z0-9]{30,}"), 1.0),
    Rule(API_KEY, re.compile(r"(?<![A-Za-z0-9])xox[abprs]-[A-Za-z0-9-]{10,}"), 1.0),
    Rule(API_KEY, re.compile(r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_-]{35}"), 1.0),
    Rule(API_KEY, re.compile(r"(?<![A-Za-z0-9])eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), 1.0),
    Rule(API_KEY, re.compile(r"(?i)(?<![A-Za-z0-9])bearer\s+([A-Za-z0-9._~+/-]{12,}=*)"), 1.0, group=1),
    # Chinese names after a label (contact, customer, name...) or before a speech verb, starting with one of the
    # common surnames: the English NER model cannot see them. Fullwidth punctuation is escaped (it looks ASCII).
    Rule(PERSON, re.compile(
        "(?:姓名|联系人|收件人|负责人|客户|用户|经理|我叫|我是)\\s*[:\uff1a]?\\s*"
        f"([{CN_SURNAMES}][\u4e00-\u9fa5]{{1,2}})"
        "(?=[\\s\uff0c\u3002,\uff1b;\u3001\uff08(]|反馈|说|表示|的|先生|女士|是|在|已|来电|打|$)"), 0.85, group=1),
)

# What one cheap `search` per family proves absent, so most texts skip most rules (the prefilter).
_PREFILTER: dict[str, re.Pattern[str]] = {
    EMAIL: re.compile(r"@"),
    CN_RESIDENT_ID: re.compile(r"\d{17}"),
    CN_MOBILE: re.compile(r"1[3-9]\d"),
    CREDIT_CARD: re.compile(r"\d{4}[ -]?\d{4}"),
    IP_ADDRESS: re.compile(r"\d\.\d+\.\d+\.\d"),
    PHONE: re.compile(r"\d{3}[\s.-]\d{4}"),
    API_KEY: re.compile(r"sk-|AKIA|ASIA|gh[pousr]_|xox|AIza|eyJ|(?i:bearer)"),
    PERSON: re.compile(r"[\u4e00-\u9fa5]"),
}


def candidate_entities(text: str) -> frozenset[str]:
    """The rule entities that may occur in `text` (a superset of what `rule_spans` can find)."""
    return frozenset(entity for entity, probe in _PREFILTER.items() if probe.search(text))


def rule_spans(text: str, entities: Iterable[str] | None = None) -> list[Span]:
    """Every rule match in `text` for `entities` (all when None), validated; overlaps are left to `resolve`."""
    wanted = candidate_entities(text) if entities is None else frozenset(entities)
    found: list[Span] = []
    for rule in RULES:
        if rule.entity not in wanted:
            continue
        for match in rule.pattern.finditer(text):
            value = match.group(rule.group)
            if rule.valid is None or rule.valid(value):
                found.append(Span(match.start(rule.group), match.end(rule.group), rule.entity, rule.score))
    return found


def resolve(spans: Iterable[Span], text: str = "") -> list[Span]:
    """Non-overlapping spans sorted by start: the longer (then higher-scoring) span wins a conflict.

    Spans overlapping an existing placeholder are dropped, so a re-scan never rewrites `<PERSON_1>`.
    """
    protected = [(m.start(), m.end()) for m in PLACEHOLDER_RE.finditer(text)]
    ranked = sorted(spans, key=lambda s: (-(s.end - s.start), -s.score, s.start))
    kept: list[Span] = []
    for span in ranked:
        if span.end <= span.start or any(span.start < e and s < span.end for s, e in protected):
            continue
        if all(span.end <= k.start or k.end <= span.start for k in kept):
            kept.append(span)
    return sorted(kept, key=lambda s: s.start)
