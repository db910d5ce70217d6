"""Seed 000 (LangChain's MemoryDB vector store) run through langchain-aws against Shoal.

The seed embeds with Bedrock; here a deterministic fake embedding stands in. It puts
`bar` at the cosine distance the seed printed for it (0.1566), so the seed's results
come back as printed: three `foo` at 0.0, then `bar` at 0.1566 (relevance 0.8434).
"""

import hashlib
import math

import pytest
from langchain_aws.vectorstores.inmemorydb import InMemoryVectorStore
from langchain_core.embeddings import Embeddings

DIM = 16


class SeedEmbeddings(Embeddings):
    """`foo` and `bar` where the seed's scores put them; anything else from a hash."""

    def _vector(self, text):
        if text == "foo":
            return [1.0] + [0.0] * (DIM - 1)
        if text == "bar":
            cos = 1 - 0.1566
            return [cos, math.sqrt(1 - cos * cos)] + [0.0] * (DIM - 2)
        digest = hashlib.sha256(text.encode()).digest()
        return [b / 255.0 - 0.5 for b in digest[:DIM]]

    def embed_documents(self, texts):
        return [self._vector(t) for t in texts]

    def embed_query(self, text):
        return self._vector(text)

METADATA = [
    {"user": "john", "age": 18, "job": "engineer", "credit_score": "high"},
    {"user": "derrick", "age": 45, "job": "doctor", "credit_score": "low"},
    {"user": "nancy", "age": 94, "job": "doctor", "credit_score": "high"},
    {"user": "tyler", "age": 100, "job": "engineer", "credit_score": "high"},
    {"user": "joe", "age": 35, "job": "dentist", "credit_score": "medium"},
]
TEXTS = ["foo", "foo", "foo", "bar", "bar"]


@pytest.fixture
def url(server, r):
    return f"redis://127.0.0.1:{server.port}"


@pytest.fixture
def vds(url):
    store = InMemoryVectorStore.from_texts(
        TEXTS, SeedEmbeddings(), metadatas=METADATA,
        index_name="users", redis_url=url,
    )
    yield store


def test_from_texts_names_the_index(vds):
    assert vds.index_name == "users"


def test_similarity_search(vds):
    assert vds.similarity_search("foo")[0].page_content == "foo"


def test_with_score_shape(vds):
    results = vds.similarity_search_with_score("foo", k=5)
    contents = [doc.page_content for doc, _ in results]
    scores = [score for _, score in results]
    assert contents == ["foo", "foo", "foo", "bar", "bar"]
    assert scores == [0.0, 0.0, 0.0, 0.1566, 0.1566]
    first = results[0][0].metadata
    assert first["id"].startswith("doc:users:")
    assert {"user", "job", "credit_score", "age"} <= set(first)


def test_distance_threshold(vds):
    results = vds.similarity_search_with_score("foo", k=5, distance_threshold=0.1)
    assert [(d.page_content, s) for d, s in results] == [("foo", 0.0)] * 3


def test_relevance_scores(vds):
    results = vds.similarity_search_with_relevance_scores("foo", k=5)
    scores = [s for _, s in results]
    assert scores == [1.0, 1.0, 1.0, 0.8434, 0.8434]


def test_add_texts_returns_keys(vds):
    keys = vds.add_texts(["baz"], [{"user": "sam", "age": 50, "job": "janitor", "credit_score": "high"}])
    assert len(keys) == 1 and keys[0].startswith("doc:users:")
    assert vds.similarity_search("baz", k=1)[0].page_content == "baz"


def test_retrievers(vds):
    docs = vds.as_retriever(search_type="similarity", search_kwargs={"k": 4}).invoke("foo")
    assert [d.page_content for d in docs] == ["foo", "foo", "foo", "bar"]
    docs = vds.as_retriever(
        search_type="similarity_distance_threshold",
        search_kwargs={"k": 4, "distance_threshold": 0.1},
    ).invoke("foo")
    assert [d.page_content for d in docs] == ["foo"] * 3
    docs = vds.as_retriever(
        search_type="similarity_score_threshold",
        search_kwargs={"score_threshold": 0.9, "k": 10},
    ).invoke("foo")
    assert [d.page_content for d in docs] == ["foo"] * 3
    assert {d.metadata["user"] for d in docs} == {"john", "derrick", "nancy"}


def test_drop_index(vds, url, r):
    assert InMemoryVectorStore.drop_index(index_name="users", delete_documents=True, redis_url=url)
    assert r.execute_command("FT._LIST") == []
    assert r.dbsize() == 0
    assert not InMemoryVectorStore.drop_index(index_name="users", delete_documents=True, redis_url=url)
