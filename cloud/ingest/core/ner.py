"""Which parts of a text the NER model must read: sentences holding a capitalized word that could be a name.

The English NER model costs ~15 ms per KB; most sentences (and all Chinese text) hold no name candidate, so
running it only on candidate sentences is where most of the speed comes from. Also filters NER PERSON hits
that are known product or common words (the false positives Presidio users report, e.g. "Kafka").
"""

from __future__ import annotations

import re

# Latin sentence ends, then the CJK full stop, fullwidth ! ? ; (escaped: they look like ASCII).
_SENTENCE_END = re.compile("(?<=[.!?;:\u3002\uff01\uff1f\uff1b])\\s+|\n+|(?<=[\u3002\uff01\uff1f\uff1b])")
_CAPITALIZED = re.compile(r"\b[A-Z][a-z]+(?:['-][A-Z]?[a-z]+)?\b")

# Capitalized words that are not names: sentence starters, calendar words, and the stack's vocabulary.
COMMON_WORDS: frozenset[str] = frozenset(
    """
a about after again all also although an and another any are as at be because been before being both but by
can could did do does doing done during each either even every few first for from further had has have having
he her here hers him his how however i if in instead into is it its just last let like many may maybe me might
more most much my neither next no nor not now of off often on once one only or other our out over perhaps
please rather same she should since so some still such than thanks thank that the their them then there these
they this those though through thus to today tomorrow too under unless until up upon us use using very was we
well were what whatever when where whether which while who whom whose why will with within without would yes
yesterday yet you your hi hello hey dear regards best sure okay ok note step first second third finally also
call ask tell email mail contact reach ping message text phone dm cc
summary answer question example problem error warning tip see check make try run set add remove open close
start stop restart update install configure enable disable write read send get put first then
monday tuesday wednesday thursday friday saturday sunday january february march april june july august
september october november december
kafka redis python linux docker kubernetes mosquitto postgres postgresql mariadb rabbitmq nats tansu presidio
spacy ray parquet arrow json yaml http https rest grpc api sql java rust go javascript typescript node windows
macos ubuntu debian github gitlab aws azure google cloud edge gateway broker consumer producer topic partition
offset cluster server client worker model llama vllm gguf smol gemma mqtt qos tls ssl
helm terraform ansible jenkins grafana prometheus nginx apache envoy istio consul vault nomad elasticsearch
kibana logstash fluentd splunk datadog sentry jira confluence slack zoom teams outlook excel chrome firefox
safari android ios iphone mac git bash zsh vim emacs flask django fastapi react vue angular spark hadoop
airflow dagster snowflake bigquery redshift mongodb cassandra sqlite mysql kafka zookeeper kraft pulsar
""".split()  # noqa: SIM905 - a word list reads better as text
)


def is_candidate(word: str, extra_common: frozenset[str] = frozenset()) -> bool:
    """True when a capitalized `word` could start a name (it is not a known common word)."""
    lowered = word.lower()
    return lowered not in COMMON_WORDS and lowered not in extra_common


def ner_windows(text: str, extra_common: frozenset[str] = frozenset()) -> list[tuple[int, int]]:
    """(start, end) of each sentence that holds a name candidate; adjacent windows are merged."""
    windows: list[tuple[int, int]] = []
    start = 0
    for boundary in [*_SENTENCE_END.finditer(text), None]:
        end = boundary.start() if boundary else len(text)
        if any(is_candidate(m.group(), extra_common) for m in _CAPITALIZED.finditer(text, start, end)):
            if windows and windows[-1][1] >= start - 2:
                windows[-1] = (windows[-1][0], end)
            else:
                windows.append((start, end))
        start = boundary.end() if boundary else len(text)
    return windows


def plausible_person(value: str, extra_common: frozenset[str] = frozenset()) -> bool:
    """False for NER PERSON hits that are only common or product words ("Kafka", "Redis Cluster")."""
    words = [w for w in re.split(r"[\s.'-]+", value) if w]
    return bool(words) and any(is_candidate(w, extra_common) for w in words) and not value.isupper()


def trim_person(text: str, start: int, end: int, extra_common: frozenset[str] = frozenset()) -> tuple[int, int]:
    """Drop leading common words the NER model glued to a name ("Call John Smith" -> "John Smith")."""
    for word in re.finditer(r"\S+", text[start:end]):
        if is_candidate(word.group().strip(".,:;'\""), extra_common):
            return start + word.start(), end
    return end, end
