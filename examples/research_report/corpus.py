"""The local corpus the researchers search: short markdown documents shipped with the example.

`Corpus.load()` reads `corpus/*.md` (the first `# ` line is the title); `search` ranks documents by
the query's words (a small TF-IDF with the title counted thrice) and `read` returns one whole.
`corpus_tools(corpus)` gives the two plain functions the researcher agent calls as tools::

    corpus = Corpus.load()
    corpus.search("thermal runaway")[0].file   # "safety-thermal-runaway.md"
    search_corpus, read_document = corpus_tools(corpus)

Nothing here touches the network; a file name the corpus does not have is refused, so a tool
call can never read outside the folder.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"

_WORD = re.compile(r"[a-z0-9]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9])")
_SNIPPET_CHARS = 240
_STOPWORD_TEXT = """
a an and are as at be by can do does for from has have how in is it its of on or than that the
their them these they this to was what when where which while who why will with vs versus compare
compared between about into more most much should many make makes over per
"""
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())


def stem(word: str) -> str:
    """A crude suffix folding, enough to match "batteries" with "battery", "installed" with
    "installation" and "cycles" with "cycle"."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    for suffix in ("ation", "ing", "ed", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word


def terms(text: str) -> list[str]:
    """The searchable words of `text`: lowercased, stemmed, without stopwords."""
    return [stem(w) for w in _WORD.findall(text.lower()) if w not in _STOPWORDS]


def sentences(text: str) -> list[str]:
    """The sentences of a document's body, in order (headings and blank lines dropped)."""
    found: list[str] = []
    for paragraph in text.split("\n\n"):
        paragraph = " ".join(paragraph.split())
        if paragraph and not paragraph.startswith("#"):
            found.extend(_SENTENCE.split(paragraph))
    return found


@dataclass(frozen=True, slots=True)
class Document:
    """One corpus file: its name, its title (the `# ` line) and its body."""

    file: str
    title: str
    body: str
    counts: Counter[str] = field(compare=False, repr=False)
    title_terms: frozenset[str] = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Hit:
    """A search result: the file, its title and the passage that matched best."""

    file: str
    title: str
    snippet: str
    score: float

    def to_json(self) -> dict[str, Any]:
        """What the `search_corpus` tool returns for this hit."""
        return {
            "file": self.file,
            "title": self.title,
            "snippet": self.snippet,
            "score": round(self.score, 2),
        }


class Corpus:
    """The documents of one folder, searchable by words.

    Args:
        documents: the documents, by file name.

    Raises:
        ValueError: there are no documents.
    """

    def __init__(self, documents: Iterable[Document]) -> None:
        self.documents = {doc.file: doc for doc in sorted(documents, key=lambda d: d.file)}
        if not self.documents:
            raise ValueError("the corpus has no documents; add .md files to its folder")
        frequency: Counter[str] = Counter()
        for doc in self.documents.values():
            frequency.update(set(doc.counts) | doc.title_terms)
        total = len(self.documents)
        self._idf = {term: math.log(1 + total / n) for term, n in frequency.items()}

    @classmethod
    def load(cls, folder: Path = CORPUS_DIR) -> Corpus:
        """Read every `*.md` file of `folder`.

        Raises:
            ValueError: the folder has no markdown files, or one has no `# ` title line.
        """
        documents = []
        for path in sorted(folder.glob("*.md")):
            text = path.read_text(encoding="utf-8")
            first, _, body = text.partition("\n")
            if not first.startswith("# "):
                raise ValueError(f"corpus file {path} must start with a '# Title' line")
            title = first[2:].strip()
            documents.append(
                Document(
                    file=path.name,
                    title=title,
                    body=body.strip(),
                    counts=Counter(terms(body)),
                    title_terms=frozenset(terms(title)),
                )
            )
        if not documents:
            raise ValueError(f"no corpus documents (*.md) in {folder}")
        return cls(documents)

    def idf(self, term: str) -> float:
        """How rare `term` is across the corpus (0 for a word no document has)."""
        return self._idf.get(term, 0.0)

    def title(self, file: str) -> str:
        """The title of `file` (KeyError when the corpus has no such file)."""
        return self.documents[file].title

    def search(self, query: str, limit: int = 3) -> list[Hit]:
        """The documents that match `query` best, best first (none when no word matches)."""
        wanted = set(terms(query))
        scored: list[tuple[float, str]] = []
        for doc in self.documents.values():
            score = sum(
                self.idf(t) * (doc.counts[t] / (doc.counts[t] + 1.2) + 2 * (t in doc.title_terms))
                for t in wanted
            )
            if score > 0:
                scored.append((score, doc.file))
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [
            Hit(file, self.documents[file].title, self._snippet(self.documents[file], wanted), s)
            for s, file in scored[:limit]
        ]

    def read(self, file: str) -> str:
        """The whole text of `file`, title first.

        Raises:
            ValueError: the corpus has no such file (the message lists the ones it has).
        """
        doc = self.documents.get(file.strip())
        if doc is None:
            raise ValueError(
                f"no corpus document named {file!r}; use a file name returned by search_corpus, "
                f"one of: {', '.join(self.documents)}"
            )
        return f"# {doc.title}\n\n{doc.body}"

    def best_sentences(
        self,
        question: str,
        texts: Mapping[str, str],
        count: int,
        *,
        context: Iterable[str] = (),
        per_file: int = 2,
        min_share: float = 0.25,
    ) -> list[str]:
        """The sentences of `texts` (file name → text read) that best answer `question`.

        A sentence scores the rarity (IDF) of the question's words it shares; words of `context`
        (e.g. the chemistries every question names) count half, and a sentence that shares only
        those is not taken, nor one scoring under `min_share` of the best sentence's score. At most
        `per_file` sentences come from one file.

        Returns:
            At most `count` sentences in reading order, each followed by its citation, e.g.
            "LFP cells last 3,000 to 6,000 cycles. [batteries-lfp.md]".
        """
        background = {stem(w.lower()) for w in context}
        focus = set(terms(question)) - background
        ranked: list[tuple[float, int, str, str]] = []
        for file, text in texts.items():
            for sentence in sentences(text):
                words = set(terms(sentence))
                score = sum(self.idf(t) for t in focus & words)
                if score > 0:
                    score += sum(self.idf(t) for t in background & words) / 2
                    ranked.append((score, len(ranked), file, f"{sentence} [{file}]"))
        ranked.sort(key=lambda item: (-item[0], item[1]))
        floor = ranked[0][0] * min_share if ranked else 0.0
        taken: list[tuple[int, str]] = []
        from_file: Counter[str] = Counter()
        for score, position, file, text in ranked:
            if score >= floor and len(taken) < count and from_file[file] < per_file:
                taken.append((position, text))
                from_file[file] += 1
        return [text for _, text in sorted(taken)]

    def _snippet(self, doc: Document, wanted: set[str]) -> str:
        best = max(
            sentences(doc.body),
            key=lambda s: sum(self.idf(t) for t in wanted & set(terms(s))),
        )
        return best if len(best) <= _SNIPPET_CHARS else best[: _SNIPPET_CHARS - 1] + "…"


def corpus_tools(corpus: Corpus) -> list[Callable[..., Any]]:
    """The researcher's two tools over `corpus`: `search_corpus` and `read_document`."""

    def search_corpus(query: str) -> list[dict[str, Any]]:
        """Search the local corpus of documents on home energy storage; the best matches first,
        each with its file name, title, the passage that matched and a relevance score.

        Args:
            query: a few keywords, e.g. "LFP cycle life" or "thermal runaway causes".
        """
        return [hit.to_json() for hit in corpus.search(query, limit=4)]

    def read_document(file: str) -> str:
        """Read one corpus document in full.

        Args:
            file: the file name a search returned, e.g. "batteries-lfp.md".
        """
        return corpus.read(file)

    return [search_corpus, read_document]


CITATION = re.compile(r"\[([A-Za-z0-9][A-Za-z0-9._-]*\.md)\]")
"""A citation of a corpus file in a finding or the report: `[batteries-lfp.md]`."""


def citations(text: str) -> list[str]:
    """The files cited in `text`, in order of first citation."""
    return list(dict.fromkeys(CITATION.findall(text)))
