"""The knowledge base ranks alike on both backends: FTS5's bm25 under SQLite, bm25 over tsvectors under PostgreSQL."""

from __future__ import annotations

from datetime import date

import pytest

from supportbot.storage.postgres import PostgresDatabase
from supportbot.storage.store import DEFAULT_ASSETS, Store

pytestmark = pytest.mark.postgres

# Questions customers ask, in their words: each has one article that answers it best.
QUERIES = [
    "how do I get my money back refund",
    "earbuds will not pair bluetooth",
    "delete my personal data",
    "my package is late",
    "tracking number not updating",
    "how long does shipping take",
    "which carriers do you use",
    "how do I return an item",
    "can I return opened headphones",
    "return label",
    "when will I get my refund",
    "why was my refund denied",
    "partial refund",
    "is my laptop covered by warranty",
    "warranty claim broken screen",
    "I forgot my password",
    "can't log in to my account",
    "what are the membership tiers",
    "premium membership benefits",
    "do you accept paypal",
    "which currencies can I pay in",
    "I was charged twice",
    "unknown charge on my card",
    "unsubscribe from marketing emails",
    "cookie settings",
    "my device won't turn on",
    "charger not working battery",
    "cancel my order",
    "change the shipping address on my order",
    "refund for a damaged item",
    "how to start a return",
    "headphones bluetooth pairing problem",
    "GDPR data export request",
    "express shipping to the UK",
    "return window days",
    "store credit instead of refund",
    "double charged payment",
    "reset password email not received",
]


@pytest.fixture(scope="module")
def stores(pg_server, tmp_path_factory: pytest.TempPathFactory):
    day = date(2025, 3, 14)
    sqlite = Store(tmp_path_factory.mktemp("kb") / "supportbot.sqlite3", today=day)
    database = PostgresDatabase(pg_server.create_schema())
    postgres = Store(database, today=day)
    yield sqlite, postgres
    sqlite.close()
    database.close()


@pytest.mark.parametrize("query", QUERIES)
def test_the_same_article_comes_first_with_the_same_score(stores, query: str) -> None:
    sqlite, postgres = stores
    expected = sqlite.search_kb(query, top_k=3)
    found = postgres.search_kb(query, top_k=3)
    assert expected, query  # every question finds something
    assert found[0]["id"] == expected[0]["id"]
    assert found[0]["score"] == pytest.approx(expected[0]["score"], abs=0.002)
    # The body's matched words are marked (and when only the title matched, neither marks any).
    assert ("**" in found[0]["snippet"]) == ("**" in expected[0]["snippet"])


def test_the_top_three_agree_for_nearly_every_question(stores) -> None:
    sqlite, postgres = stores
    same = sum(
        [r["id"] for r in sqlite.search_kb(q, top_k=3)] == [r["id"] for r in postgres.search_kb(q, top_k=3)]
        for q in QUERIES
    )
    # Only English stemming and stopwords differ (Porter in FTS5, Snowball in PostgreSQL).
    assert same >= len(QUERIES) - 2


def test_a_question_of_only_stopwords_or_punctuation_finds_nothing_harmful(stores) -> None:
    _, postgres = stores
    for query in ("???", "'; DROP TABLE kb_fts; --", "how do I", "a & b | !c", "\\'"):
        assert isinstance(postgres.search_kb(query), list)
    assert postgres.execute("SELECT COUNT(*) AS n FROM kb_fts")[0]["n"] == len(
        list((DEFAULT_ASSETS / "demo" / "kb").glob("*.md"))
    )
