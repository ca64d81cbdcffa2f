"""PII scanning with Presidio's pattern recognizers, offline.

No spaCy model is loaded (the ``no_op`` NLP engine): the regex/checksum recognizers find
e-mail addresses, phone numbers, card numbers, IBANs, SSNs and IP addresses. tldextract,
which the e-mail recognizer uses, is pointed at its bundled suffix list so nothing is fetched.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

ENTITIES = [
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "US_BANK_NUMBER",
    "CRYPTO",
]
MIN_SCORE = 0.4
_PLACEHOLDER = re.compile(r"\{\{\s*\w+\s*\}\}")


@dataclass(frozen=True)
class Finding:
    entity: str
    start: int
    end: int
    score: float


class PiiScanner:
    """Thread-safe; the engine is built on first use (about a second)."""

    def __init__(self) -> None:
        self._engine: Any = None
        self._lock = threading.Lock()

    def _analyzer(self) -> Any:
        with self._lock:
            if self._engine is None:
                import tldextract
                import tldextract.tldextract as tld
                from presidio_analyzer import AnalyzerEngine
                from presidio_analyzer.nlp_engine import NlpEngineProvider

                # The bundled public-suffix snapshot, never a download, never a cache write.
                tld.TLD_EXTRACTOR = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
                nlp = NlpEngineProvider(
                    nlp_configuration={
                        "nlp_engine_name": "no_op",
                        "models": [{"lang_code": "en", "model_name": "none"}],
                    }
                ).create_engine()
                self._engine = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
            return self._engine

    def scan(self, text: str) -> list[Finding]:
        results = self._analyzer().analyze(
            text=text, language="en", entities=ENTITIES, score_threshold=MIN_SCORE
        )
        return [Finding(r.entity_type, r.start, r.end, r.score) for r in results]

    def redact(self, text: str) -> tuple[str, list[str]]:
        """The text with every finding replaced by ``[redacted]``, and the entity types found
        (never the values: an incident record must not itself hold the PII)."""
        findings = [f for f in self.scan(text) if not _PLACEHOLDER.fullmatch(text[f.start : f.end])]
        if not findings:
            return text, []
        out, last = [], 0
        for f in sorted(findings, key=lambda f: f.start):
            if f.start < last:
                continue  # overlapping findings: the first one already covers it
            out.append(text[last : f.start])
            out.append("[redacted]")
            last = f.end
        out.append(text[last:])
        return "".join(out), sorted({f.entity for f in findings})
