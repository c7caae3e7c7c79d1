"""The documents to extract from: every `.txt` file of a folder, one task each."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEFAULT_FOLDER = Path(__file__).resolve().parent.parent / "documents"
"""The twenty invoices shipped with the example."""

_MAX_BYTES = 64 * 1024  # an invoice is a page or two; anything larger is not one


@dataclass(frozen=True, slots=True)
class Document:
    """One plain-text document.

    Attributes:
        name: the file's stem, made safe as a task id ("01_acme_office_supply").
        path: the file.
        text: its content.
    """

    name: str
    path: Path
    text: str


def load_documents(folder: Path) -> list[Document]:
    """Every `.txt` file in `folder`, sorted by name.

    Raises:
        FileNotFoundError: `folder` does not exist or holds no `.txt` file.
        ValueError: a file is larger than 64 KiB, is not UTF-8, or two files map to the same name.
    """
    if not folder.is_dir():
        raise FileNotFoundError(f"document folder {folder} does not exist; pass --documents DIR")
    documents: list[Document] = []
    seen: set[str] = set()
    for path in sorted(folder.glob("*.txt")):
        if path.stat().st_size > _MAX_BYTES:
            raise ValueError(f"{path} is larger than 64 KiB; split it or leave it out")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"{path} is not UTF-8 text ({exc.reason}); convert it first") from exc
        name = re.sub(r"[^A-Za-z0-9_.\-]", "_", path.stem)[:200]
        if name in seen:
            raise ValueError(f"two files in {folder} map to the document name {name!r}; rename one")
        seen.add(name)
        documents.append(Document(name=name, path=path, text=text.strip()))
    if not documents:
        raise FileNotFoundError(f"no .txt documents in {folder}; pass --documents DIR")
    return documents
