"""Labels as exported: a two-valued column ("Yes"/"No", "bad"/"good") read as 1/0.

The pipeline trains on a 0/1 label. With ``positive_label`` set, ExampleGen writes 1 for that
value and 0 for the other one (``negative_label``; empty: any other non-empty value), so every
component after it (validation, Transform, the Evaluator, the report) sees the same 0/1 label
whatever the export wrote. The file checks refuse a value that is neither, naming its line.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Iterable, Optional, Sequence, Tuple

# Pairs whose positive side is obvious, compared case-insensitively: (positive, negative).
OBVIOUS_PAIRS = (("yes", "no"), ("true", "false"), ("y", "n"), ("1", "0"), ("t", "f"),
                 ("sim", "não"), ("sim", "nao"))


@dataclasses.dataclass(frozen=True)
class LabelCoding:
    """How the label column's text becomes 0/1 (an empty ``positive``: already 0/1)."""

    column: str = ""
    positive: str = ""
    negative: str = ""

    @classmethod
    def from_config(cls, config) -> "LabelCoding":
        """The coding a config asks for."""
        return cls(config.label, config.positive_label, config.negative_label)

    @property
    def active(self) -> bool:
        """Whether the column holds text to map (else it is read as written)."""
        return bool(self.column and self.positive)

    def as_dict(self) -> Dict[str, str]:
        """The coding as JSON-friendly settings (ExampleGen's custom_config)."""
        return {"column": self.column, "positive": self.positive, "negative": self.negative}

    def problem(self, value: str) -> Optional[str]:
        """Why ``value`` is not a label value this coding reads, or None (an empty cell is
        missing: the schema's presence check names it)."""
        value = value.strip()
        if not self.active or not value or value == self.positive:
            return None
        if self.negative and value != self.negative:
            return (f"label {self.column!r} holds {value!r}, neither {self.positive!r} "
                    f"(positive_label) nor {self.negative!r} (negative_label)")
        return None

    def encode(self, value: str) -> str:
        """"1" for the positive value, "0" for the other, "" for a missing one."""
        value = value.strip()
        if not value:
            return ""
        return "1" if value == self.positive else "0"

    def encode_column(self, column: Sequence[str]) -> list:
        """A whole column encoded (distinct values mapped once)."""
        mapping = {value: self.encode(value) for value in set(column)}
        return [mapping[value] for value in column]


def guess_positive(values: Iterable[str]) -> Tuple[Optional[str], Optional[str]]:
    """(positive, negative) of a two-valued label when the pair is obvious (yes/no,
    true/false, y/n, 1/0, any case), else (None, None)."""
    found = sorted({value.strip() for value in values if value.strip()})
    if len(found) != 2:
        return None, None
    lowered = {value.lower(): value for value in found}
    for positive, negative in OBVIOUS_PAIRS:
        if set(lowered) == {positive, negative}:
            return lowered[positive], lowered[negative]
    return None, None
