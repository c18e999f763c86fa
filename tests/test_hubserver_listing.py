"""GET /api/models on tests/hubserver.py, through huggingface_hub's real ``HfApi.list_models``.

The client builds the query (huggingface_hub 2.5 ``HfApi.list_models``), follows the ``Link: <...>; rel="next"``
header page by page (``utils/_pagination.py``) and parses every item into a ``ModelInfo``; that parsing is the
independent check of what the fake answers. Expected values are written out by hand below.
"""

from __future__ import annotations

import json
import math
import re
import struct
import urllib.request
from urllib.parse import parse_qs, urlsplit

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from hubserver import FakeHub, LazyFile


@pytest.fixture()
def hub():
    with FakeHub() as h:
        yield h
        assert h.errors == []  # the fake itself must never have crashed


@pytest.fixture()
def api(hub):
    # token=False: never send a token found on the developer's machine.
    return HfApi(endpoint=hub.endpoint, token=False)


def safetensors_of(shapes: list[list[int]], dtype: str = "BF16") -> LazyFile:
    """A safetensors file (header, then zeros) holding one tensor per shape; 2 bytes per BF16 element."""
    header, pos = {"__metadata__": {"format": "pt"}}, 0
    for i, shape in enumerate(shapes):
        n = 2 * math.prod(shape)
        header[f"w{i}"] = {"dtype": dtype, "shape": shape, "data_offsets": [pos, pos + n]}
        pos += n
    blob = json.dumps(header).encode()
    return LazyFile(struct.pack("<Q", len(blob)) + blob, 8 + len(blob) + pos)


def list_requests(hub: FakeHub) -> list[str]:
    return [path for method, path, _ in hub.requests if method == "GET" and urlsplit(path).path == "/api/models"]


def ids(models) -> list[str]:
    return [m.id for m in models]


CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}


def add_catalogue(hub: FakeHub) -> dict[str, str]:
    """Five repos with distinct listing facts; returns repo id -> sha."""
    shas = {}
    shas["alpha/Llama-7B-chat"] = hub.add_repo(
        "alpha/Llama-7B-chat",
        {"config.json": json.dumps(CONFIG).encode(), "model.safetensors": safetensors_of([[4, 4]])},
        downloads=300, likes=5, trending_score=7, pipeline_tag="text-generation", license="apache-2.0",
        tags=("conversational",), created_at="2024-03-01T00:00:00.000Z", last_modified="2024-09-01T00:00:00.000Z")
    shas["alpha/bert-base"] = hub.add_repo(
        "alpha/bert-base", {"config.json": b'{"model_type": "bert"}'},
        downloads=100, likes=50, trending_score=1, pipeline_tag="fill-mask", license="mit",
        created_at="2023-01-01T00:00:00.000Z", last_modified="2025-01-01T00:00:00.000Z")
    shas["beta/llama-gguf"] = hub.add_repo(
        "beta/llama-gguf", {"model-Q4_K_M.gguf": b"GGUF not really", "README.md": b"# q"},
        library_name=None, downloads=300, likes=20, trending_score=30, pipeline_tag="text-generation",
        license="mit", created_at="2025-02-01T00:00:00.000Z", last_modified="2025-02-02T00:00:00.000Z")
    shas["beta/gated-llama"] = hub.add_repo(
        "beta/gated-llama", {"config.json": json.dumps(CONFIG).encode()}, gated="manual", token="tok-beta",
        downloads=50, likes=20, trending_score=0, pipeline_tag="text-generation",
        created_at="2022-05-01T00:00:00.000Z", last_modified="2022-05-02T00:00:00.000Z")
    shas["gamma/whisper-tiny"] = hub.add_repo(
        "gamma/whisper-tiny", {"config.json": b'{"model_type": "whisper"}'},
        downloads=0, likes=0, pipeline_tag="automatic-speech-recognition",
        created_at="2024-07-01T00:00:00.000Z", last_modified="2024-07-01T00:00:00.000Z")
    return shas


# ---- default items parse into ModelInfo ------------------------------------------------------------------------


def test_default_items_parse(hub, api):
    add_catalogue(hub)
    models = {m.id: m for m in api.list_models()}
    assert sorted(models) == ["alpha/Llama-7B-chat", "alpha/bert-base", "beta/gated-llama", "beta/llama-gguf",
                              "gamma/whisper-tiny"]
    m = models["alpha/Llama-7B-chat"]
    assert (m.downloads, m.likes, m.trending_score, m.pipeline_tag) == (300, 5, 7, "text-generation")
    assert m.library_name == "transformers" and m.private is False
    assert m.created_at.isoformat() == "2024-03-01T00:00:00+00:00"
    for tag in ("transformers", "safetensors", "llama", "text-generation", "conversational", "license:apache-2.0",
                "region:us"):
        assert tag in m.tags
    assert "gguf" in models["beta/llama-gguf"].tags and "license:mit" in models["beta/llama-gguf"].tags
    assert models["beta/llama-gguf"].library_name is None
    # Not in the default listing (as on the Hub): sha, siblings, safetensors, config.
    assert m.sha is None and m.siblings is None and m.safetensors is None and m.config is None


# ---- filters ---------------------------------------------------------------------------------------------------


def test_filters(hub, api):
    add_catalogue(hub)
    assert ids(api.list_models(search="LLAMA")) == ["alpha/Llama-7B-chat", "beta/gated-llama", "beta/llama-gguf"]
    assert ids(api.list_models(author="alpha")) == ["alpha/Llama-7B-chat", "alpha/bert-base"]
    assert ids(api.list_models(search="llama", author="beta")) == ["beta/gated-llama", "beta/llama-gguf"]
    assert ids(api.list_models(filter="gguf")) == ["beta/llama-gguf"]
    assert ids(api.list_models(filter="license:mit")) == ["alpha/bert-base", "beta/llama-gguf"]
    assert ids(api.list_models(filter="transformers")) == ["alpha/Llama-7B-chat", "alpha/bert-base",
                                                           "beta/gated-llama", "gamma/whisper-tiny"]
    # Every filter must hold.
    assert ids(api.list_models(filter=["text-generation", "license:mit"])) == ["beta/llama-gguf"]
    assert ids(api.list_models(pipeline_tag="text-generation")) == ["alpha/Llama-7B-chat", "beta/gated-llama",
                                                                    "beta/llama-gguf"]
    assert ids(api.list_models(gated=True)) == ["beta/gated-llama"]
    assert len(ids(api.list_models(gated=False))) == 4
    assert ids(api.list_models(search="no-such-model")) == []
    # The client sent repeated filter= and gated=true, as the Hub takes them.
    queries = [parse_qs(urlsplit(p).query) for p in list_requests(hub)]
    assert {"filter": ["text-generation", "license:mit"]}.items() <= queries[6].items()
    assert queries[8]["gated"] == ["true"]


def test_bad_queries_answer_400(hub, api):
    add_catalogue(hub)
    for kwargs in ({"sort": "name"}, {"num_parameters": "min:lots"}, {"num_parameters": "6B"}):
        with pytest.raises(HfHubHTTPError) as err:
            list(api.list_models(**kwargs))
        assert err.value.response.status_code == 400


# ---- sorting ---------------------------------------------------------------------------------------------------


def test_sort_orders(hub, api):
    add_catalogue(hub)
    # downloads: 300 (Llama-7B-chat, llama-gguf: a tie, broken by id), 100, 50, 0.
    assert ids(api.list_models(sort="downloads")) == ["alpha/Llama-7B-chat", "beta/llama-gguf", "alpha/bert-base",
                                                      "beta/gated-llama", "gamma/whisper-tiny"]
    # likes: 50, 20 (gated-llama, llama-gguf: tie by id), 5, 0.
    assert ids(api.list_models(sort="likes")) == ["alpha/bert-base", "beta/gated-llama", "beta/llama-gguf",
                                                  "alpha/Llama-7B-chat", "gamma/whisper-tiny"]
    # trendingScore: 30, 7, 1, 0 (gated-llama and whisper-tiny tie: by id).
    assert ids(api.list_models(sort="trending_score")) == ["beta/llama-gguf", "alpha/Llama-7B-chat",
                                                           "alpha/bert-base", "beta/gated-llama",
                                                           "gamma/whisper-tiny"]
    # createdAt: 2025-02, 2024-07, 2024-03, 2023-01, 2022-05.
    assert ids(api.list_models(sort="created_at")) == ["beta/llama-gguf", "gamma/whisper-tiny",
                                                       "alpha/Llama-7B-chat", "alpha/bert-base", "beta/gated-llama"]
    # lastModified: 2025-02-02, 2025-01-01, 2024-09-01, 2024-07-01, 2022-05-02.
    assert ids(api.list_models(sort="last_modified")) == ["beta/llama-gguf", "alpha/bert-base",
                                                          "alpha/Llama-7B-chat", "gamma/whisper-tiny",
                                                          "beta/gated-llama"]
    sent = [parse_qs(urlsplit(p).query)["sort"] for p in list_requests(hub)]
    assert sent == [["downloads"], ["likes"], ["trendingScore"], ["createdAt"], ["lastModified"]]


# ---- paging ----------------------------------------------------------------------------------------------------


def add_many(hub: FakeHub, n: int) -> None:
    # downloads 1000, 990, ... : sorted by downloads the order is m00, m01, ...
    for i in range(n):
        hub.add_repo(f"page/m{i:02d}", {"config.json": b"{}"}, downloads=1000 - 10 * i)


def test_paging_follows_link_header(hub, api):
    add_many(hub, 23)
    hub.add_repo("other/x", {"config.json": b"{}"}, downloads=5000)
    hub.page_cap = 7
    got = ids(api.list_models(author="page", sort="downloads"))
    assert got == [f"page/m{i:02d}" for i in range(23)]  # all of them, in order, none twice
    pages = list_requests(hub)
    assert len(pages) == 4  # ceil(23 / 7)
    # The next links carry the same query plus a cursor.
    for path in pages[1:]:
        q = parse_qs(urlsplit(path).query)
        assert q["author"] == ["page"] and q["sort"] == ["downloads"] and "cursor" in q


def test_page_size_is_the_smaller_of_limit_and_cap(hub, api):
    add_many(hub, 23)
    hub.page_cap = 10
    assert len(list(api.list_models())) == 23 and len(list_requests(hub)) == 3  # ceil(23 / 10)

    hub.clear_log()
    # limit=3: pages of 3, and islice stops after the first page.
    assert ids(api.list_models(sort="downloads", limit=3)) == ["page/m00", "page/m01", "page/m02"]
    assert len(list_requests(hub)) == 1

    hub.clear_log()
    hub.page_cap = 7
    # limit=10 > cap 7: pages of 7; 10 items need two pages and no third.
    assert ids(api.list_models(sort="downloads", limit=10)) == [f"page/m{i:02d}" for i in range(10)]
    assert len(list_requests(hub)) == 2

    hub.clear_log()
    # limit=7 == cap: the first page holds all 7, so no second page is asked for.
    assert len(list(api.list_models(limit=7))) == 7 and len(list_requests(hub)) == 1


def test_raw_pages_and_link_header(hub):
    """The wire format itself, with the standard library's HTTP client: page lengths and the next links."""
    add_many(hub, 9)
    hub.page_cap = 7

    def get(url: str) -> tuple[list, str | None]:
        with urllib.request.urlopen(url) as r:
            return json.loads(r.read()), r.headers.get("Link")

    page, link = get(f"{hub.endpoint}/api/models?limit=3&sort=downloads")
    assert [m["id"] for m in page] == ["page/m00", "page/m01", "page/m02"]
    m = re.fullmatch(r'<(.+)>; rel="next"', link)
    assert m and m.group(1).startswith(f"{hub.endpoint}/api/models?")
    page, link = get(m.group(1))
    assert [m["id"] for m in page] == ["page/m03", "page/m04", "page/m05"]
    # limit above the cap: pages of 7; 9 repos are two pages, the last without a Link.
    page, link = get(f"{hub.endpoint}/api/models?limit=50")
    assert len(page) == 7
    page, link = get(re.fullmatch(r'<(.+)>; rel="next"', link).group(1))
    assert len(page) == 2 and link is None
    # The default item keys, as the Hub lists them.
    assert set(page[0]) == {"_id", "id", "modelId", "likes", "downloads", "trendingScore", "private", "tags",
                            "library_name", "createdAt"}


def test_no_link_on_the_last_page(hub, api):
    add_many(hub, 14)
    hub.page_cap = 7
    assert len(list(api.list_models())) == 14
    assert len(list_requests(hub)) == 2  # exactly two pages of 7: the second has no next link


# ---- private repos ---------------------------------------------------------------------------------------------


def test_private_repos_only_to_their_token(hub):
    hub.add_repo("corp/secret", {"config.json": b"{}"}, private=True, token="tok-corp")
    hub.add_repo("corp/open", {"config.json": b"{}"})
    assert ids(HfApi(endpoint=hub.endpoint, token=False).list_models(author="corp")) == ["corp/open"]
    assert ids(HfApi(endpoint=hub.endpoint, token="tok-other").list_models(author="corp")) == ["corp/open"]
    mine = list(HfApi(endpoint=hub.endpoint, token="tok-corp").list_models(author="corp"))
    assert ids(mine) == ["corp/open", "corp/secret"] and [m.private for m in mine] == [False, True]


# ---- expand / full / config / cardData -------------------------------------------------------------------------


def test_expand_full_config_card_data(hub, api):
    shas = add_catalogue(hub)
    got = {m.id: m for m in api.list_models(author="alpha", expand=["sha", "downloads", "safetensors"])}
    m = got["alpha/Llama-7B-chat"]
    assert m.sha == shas["alpha/Llama-7B-chat"] and m.downloads == 300
    assert m.safetensors.total == 16 and m.safetensors.parameters == {"BF16": 16}  # one 4x4 tensor
    assert m.likes is None and m.tags is None and m.pipeline_tag is None  # only what was expanded
    assert got["alpha/bert-base"].safetensors is None  # no safetensors file
    assert parse_qs(urlsplit(list_requests(hub)[0]).query)["expand"] == ["sha", "downloads", "safetensors"]

    full = {m.id: m for m in api.list_models(author="alpha", full=True)}
    f = full["alpha/Llama-7B-chat"]
    assert f.sha == shas["alpha/Llama-7B-chat"] and f.author == "alpha" and f.gated is False
    assert sorted(s.rfilename for s in f.siblings) == ["config.json", "model.safetensors"]
    assert f.last_modified.isoformat() == "2024-09-01T00:00:00+00:00" and f.config is None

    cfg = {m.id: m for m in api.list_models(author="alpha", fetch_config=True)}
    assert cfg["alpha/Llama-7B-chat"].config == CONFIG and cfg["alpha/bert-base"].config == {"model_type": "bert"}

    cards = {m.id: m for m in api.list_models(author="alpha", cardData=True)}
    assert cards["alpha/bert-base"].card_data.license == "mit"
    assert cards["alpha/Llama-7B-chat"].card_data.license == "apache-2.0"


def test_model_info_reports_listing_facts(hub, api):
    add_catalogue(hub)
    info = api.model_info("alpha/Llama-7B-chat")
    assert (info.downloads, info.likes, info.trending_score, info.pipeline_tag) == (300, 5, 7, "text-generation")
    assert info.created_at.isoformat() == "2024-03-01T00:00:00+00:00"
    assert "license:apache-2.0" in info.tags and info.card_data.license == "apache-2.0"
    # A repo added without the new keywords keeps the old answers.
    hub.add_repo("plain/repo", {"config.json": b"{}"})
    plain = api.model_info("plain/repo")
    assert (plain.downloads, plain.likes, plain.pipeline_tag, plain.card_data) == (0, 0, None, None)
    assert plain.tags == ["transformers", "region:us"]


def test_gguf_info_field(hub, api, tmp_path):
    from gguf_factory import header_and_size, llama

    head, size = header_and_size(llama(ctx=256), tmp_path)
    hub.add_repo("gg/tiny", {"tiny-Q8_0.gguf": LazyFile(head, size)}, library_name=None)
    info = api.model_info("gg/tiny", expand=["gguf", "tags"])
    # By hand, gguf_factory.llama defaults (n_embd 64, vocab 128, 2 layers, n_ff 128, head_dim 16, 2 kv heads):
    # per layer 2 norms 2*64 + q 64*64 + k,v 2*64*32 + o 64*64 + gate,up,down 3*64*128 = 36_992;
    # token_embd 64*128 + output_norm 64 + output 64*128 = 16_448; total 2*36_992 + 16_448 = 90_432.
    assert info.gguf == {"total": 90_432, "architecture": "llama", "context_length": 256}
    assert "gguf" in info.tags


# ---- num_parameters --------------------------------------------------------------------------------------------


def add_sized(hub: FakeHub) -> None:
    # Element counts by hand: 500_000 * 1000 = 5e8; 6000 * 1_000_000 = 6e9 (two shards of 3e9);
    # 130_000 * 1_000_000 = 1.3e11; 1024 * 1024 = 1_048_576.
    hub.add_repo("np/small", {"model.safetensors": safetensors_of([[500_000, 1000]])})
    hub.add_repo("np/mid", {"model-00001-of-00002.safetensors": safetensors_of([[3000, 1_000_000]]),
                            "model-00002-of-00002.safetensors": safetensors_of([[3000, 1_000_000]])})
    hub.add_repo("np/big", {"model.safetensors": safetensors_of([[130_000, 1_000_000]])})
    hub.add_repo("np/mib", {"model.safetensors": safetensors_of([[1024, 1024]])})
    hub.add_repo("np/none", {"pytorch_model.bin": b"\0" * 16})  # no safetensors total


def test_num_parameters_bounds(hub, api):
    add_sized(hub)
    assert api.model_info("np/mid").safetensors.total == 6_000_000_000  # the shards summed

    def names(spec: str) -> list[str]:
        return ids(api.list_models(author="np", num_parameters=spec))

    assert names("min:6B,max:128B") == ["np/mid"]  # both bounds inclusive; 1.3e11 > 1.28e11
    assert names("min:500M") == ["np/big", "np/mid", "np/small"]  # 5e8 itself is in
    assert names("max:500M") == ["np/mib", "np/small"]
    assert names("min:1.5B") == ["np/big", "np/mid"]
    assert names("max:1M") == []  # 1_048_576 > 1_000_000: decimal units, not 2**20
    assert names("min:1K,max:1.1M") == ["np/mib"]
    assert names("max:0.13T") == ["np/big", "np/mib", "np/mid", "np/small"]  # 0.13T = 1.3e11 exactly
    # np/none never matches a bound, but is listed without the filter.
    assert "np/none" in ids(api.list_models(author="np"))
