"""The labels of an imported classifier: one per line in a text file (the CLI), or a JSON list (HTTP).

Label i names output column i, so order matters and a mistake here mislabels every answer; the checks
are strict: no empty label, no duplicate, at least two.
"""

from service.importing.errors import ImportRejected

MAX_LABEL_CHARS = 200


def parse_labels(text: str) -> tuple[str, ...]:
    """One label per line, surrounding spaces removed; a final newline is not an empty label."""
    lines = text.splitlines()
    return check_labels([line.strip() for line in lines])


def check_labels(labels: list[str]) -> tuple[str, ...]:
    """``labels`` as given, or ``ImportRejected`` naming the first empty one (by line) and every duplicate."""
    for position, label in enumerate(labels, start=1):
        if not label.strip():
            raise ImportRejected("labels", f"label {position} is empty; give one non-empty label per output column")
        if len(label) > MAX_LABEL_CHARS:
            raise ImportRejected("labels", f"label {position} is longer than {MAX_LABEL_CHARS} characters")
    seen: dict[str, int] = {}
    duplicates = []
    for position, label in enumerate(labels, start=1):
        if label in seen:
            duplicates.append(f"{label!r} (labels {seen[label]} and {position})")
        seen.setdefault(label, position)
    if duplicates:
        raise ImportRejected("labels", f"duplicate labels: {', '.join(duplicates)}; each output column needs its own")
    if len(labels) < 2:
        raise ImportRejected("labels", f"{len(labels)} label given; a classifier needs at least two")
    return tuple(labels)
