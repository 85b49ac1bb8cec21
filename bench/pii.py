"""PII detection: the ingestion scanner (prefilter + NER on candidate sentences + nlp.pipe batches) against
plain Presidio defaults (default recognizers, full spaCy pipeline per text), on the same labelled corpus.

Recall: share of labelled spans at least half covered by some detected span (any entity type: a redaction
either hides the value or not). Precision: share of detected spans that overlap a labelled span; for
Presidio, over the entity types it reports that are PII in this corpus (DATE_TIME, NRP, LOCATION,
ORGANIZATION and URL are left out, since nothing labels them).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer

DEFAULT_DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "pii_labelled.jsonl"
NOT_LABELLED = frozenset({"DATE_TIME", "NRP", "LOCATION", "ORGANIZATION", "URL"})


def _covered(label: list[Any], found: list[tuple[int, int]]) -> bool:
    start, end = label[0], label[1]
    inside = sum(max(0, min(end, e) - max(start, s)) for s, e in found)
    return inside * 2 >= end - start


def score(docs: list[dict[str, Any]], predicted: list[list[tuple[int, int]]]) -> tuple[float, float]:
    """(recall, precision) of predicted (start, end) spans against the documents' labelled spans."""
    labels = hits = found = true_found = 0
    for doc, spans in zip(docs, predicted, strict=True):
        labels += len(doc["spans"])
        hits += sum(_covered(label, spans) for label in doc["spans"])
        found += len(spans)
        true_found += sum(any(s < lab[1] and lab[0] < e for lab in doc["spans"]) for s, e in spans)
    return hits / max(1, labels), true_found / max(1, found)


def run(data: Path = DEFAULT_DATA, limit: int = 200, batch: int = 32) -> dict[str, Any]:
    """Docs per second and recall/precision for both detectors over the first `limit` documents."""
    from cloud.ingest.adapters.presidio import PresidioScanner, load_nlp_engine, presidio_defaults  # noqa: PLC0415

    docs = [json.loads(line) for line in data.read_text(encoding="utf-8").splitlines()[:limit]]
    texts = [d["text"] for d in docs]
    engine = load_nlp_engine()
    scanner = PresidioScanner(engine, batch_size=batch)
    baseline = presidio_defaults(engine)
    scanner.scan_batch(texts[:4])
    baseline.analyze(texts[0], language="en")

    scanner.ner_chars = 0
    start = time.perf_counter()
    ours = [[(s.start, s.end) for s in spans] for i in range(0, len(texts), batch)
            for spans in scanner.scan_batch(texts[i:i + batch])]
    ours_s = time.perf_counter() - start
    ner_chars = scanner.ner_chars
    start = time.perf_counter()
    theirs = [[(r.start, r.end) for r in baseline.analyze(t, language="en") if r.entity_type not in NOT_LABELLED]
              for t in texts]
    theirs_s = time.perf_counter() - start

    recall, precision = score(docs, ours)
    p_recall, p_precision = score(docs, theirs)
    return {
        "bench": "pii",
        "docs": len(docs),
        "mean_doc_bytes": round(sum(len(t.encode()) for t in texts) / len(texts)),
        "labelled_spans": sum(len(d["spans"]) for d in docs),
        "ner_char_share": round(ner_chars / max(1, sum(len(t) for t in texts)), 3),
        "docs_per_s": round(len(texts) / ours_s, 1),
        "presidio_docs_per_s": round(len(texts) / theirs_s, 1),
        "speedup": round(theirs_s / ours_s, 2),
        "recall": round(recall, 4),
        "presidio_recall": round(p_recall, 4),
        "precision": round(precision, 4),
        "presidio_precision": round(p_precision, 4),
    }


def register(app: typer.Typer) -> None:
    """Add `ebrain bench pii`."""

    @app.command("pii")
    def pii(
        data: Annotated[Path, typer.Option(help="Labelled JSONL (see bench/pii_data.py).")] = DEFAULT_DATA,
        limit: Annotated[int, typer.Option(min=1, help="Documents to use.")] = 200,
        batch: Annotated[int, typer.Option(min=1, help="Texts per scanner batch (nlp.pipe).")] = 32,
        as_json: Annotated[bool, typer.Option("--json/--no-json", help="Also print a table first when off.")] = True,
    ) -> None:
        """PII scanner vs plain Presidio on ~1 KB English and Chinese texts: speed, recall, precision."""
        result = run(data, limit, batch)
        if not as_json:
            for key, value in result.items():
                typer.echo(f"{key:>20}: {value}")
        typer.echo(json.dumps(result))
