"""
The search tool: BM25 retrieval over a few documents (the world's encyclopedia).
"""

import math
import re
from collections import Counter


class SearchIndex:
    """BM25 over the words of a few documents (Robertson and Zaragoza 2009): search(query) returns
    the best-matching document's text, or a "no results" line when no query word occurs anywhere.
    Deterministic: ties go to the earlier document. A few dozen lines suffice for a world of a
    hundred entries; real systems add stemming, phrases and dense embeddings."""

    K1, B = 1.5, 0.75  # BM25's usual term-frequency saturation and length normalisation

    def __init__(self, documents):
        self.texts = [d["text"] for d in documents]
        self.words = [search_words(d.get("title", "") + " " + d["text"]) for d in documents]
        self.counts = [Counter(words) for words in self.words]
        self.title_words = {w for d in documents for w in search_words(d.get("title", ""))}
        self.average_length = sum(map(len, self.words)) / max(len(self.words), 1)
        self.document_frequency = Counter(w for words in self.words for w in set(words))

    def idf(self, word):
        n, df = len(self.words), self.document_frequency[word]
        return math.log(1 + (n - df + 0.5) / (df + 0.5))

    def score(self, query_words, i, idf=None):
        """BM25 of document i for the query words (idf: {word: idf}, when the caller has it)."""
        idf = idf or {w: self.idf(w) for w in query_words}
        counts, length = self.counts[i], len(self.words[i])
        return sum(idf[w] * counts[w] * (self.K1 + 1)
                   / (counts[w] + self.K1 * (1 - self.B + self.B * length / self.average_length))
                   for w in query_words if counts[w])

    def __call__(self, query):
        if not isinstance(query, str) or not query.strip():
            return "error: empty search query"
        # words found in many entries ("born", "colour") identify none of them; a word of an entry's
        # title (a name), or of one entry only, always counts
        query_words = [w for w in search_words(query) if w not in STOP_WORDS and (
            w in self.title_words or self.document_frequency[w] <= 1
            or self.document_frequency[w] <= COMMON_SHARE * len(self.words))][:MAX_QUERY_WORDS]
        idf = {w: self.idf(w) for w in query_words}
        scores = [self.score(query_words, i, idf) for i in range(len(self.texts))]
        if not scores or max(scores) <= 0:
            return f"no results for {query.strip()[:80]!r}"
        return self.texts[scores.index(max(scores))][:MAX_RESULT_CHARS]


MAX_QUERY_WORDS = 16
COMMON_SHARE = 0.1  # a query word in more than this share of the documents is ignored, unless it names one
MAX_RESULT_CHARS = 300
# function words, which say nothing about what is searched for: without this list, "What does X do
# for a living?" about someone the encyclopedia lacks would find the one town entry "known for" a thing
STOP_WORDS = {"a", "an", "and", "are", "as", "at", "be", "by", "can", "could", "do", "does", "for", "from", "how",
              "i", "in", "is", "it", "its", "me", "my", "of", "on", "or", "please", "tell", "that", "the", "this",
              "to", "was", "what", "when", "where", "which", "who", "why", "with", "would", "you", "your"}


def search_words(text):
    """Lower-case words (letters and digits): what a query and a document are compared on."""
    return re.findall(r"[a-z0-9]+", text.lower())
