"""The product catalog through the API: CSV and JSON uploads (all or nothing, problems named by
row and field), keyset pages, removal (gone from recommendations and the evaluator's prices),
and who may do what. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from api.main import create_app
from tailor.config import Settings
from tailor.db import Database
from tailor.demo.seed import seed_demo
from tailor.models import Contact, TemplateVersion, Tenant, utcnow
from tailor.personalise.context import CONTEXT_TTL_S, CampaignContexts
from tailor.personalise.evaluator import evaluate
from tailor.personalise.prompts import ClusterRequest, GeneratedEmail, ProductFact
from tailor.personalise.rules import RuleBasedExecutor
from tailor.store.campaigns import create_campaign
from tailor.store.tenants import upsert_tenant
from tests.conftest import key_headers

HEADER = "sku,name,category,price,url\n"


@dataclass
class Shop:
    client: httpx.AsyncClient
    db: Database
    admin: dict[str, str]
    template_version_id: int

    async def products(self, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """Every listed product, following the cursor."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {"limit": 200}
            if cursor is not None:
                params["cursor"] = cursor
            page = await self.client.get(
                "/v1/products", params=params, headers=headers or self.admin
            )
            assert page.status_code == 200, page.text
            items += page.json()["items"]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return items

    async def csv(self, text: str | bytes, **headers: str) -> httpx.Response:
        return await self.client.post(
            "/v1/products/csv",
            content=text.encode() if isinstance(text, str) else text,
            headers={**self.admin, "Content-Type": "text/csv", **headers},
        )


async def _tenant(db: Database, tenant_id: str) -> None:
    async with db.session() as session:
        await upsert_tenant(
            session=session,
            tenant=Tenant(id=tenant_id, name=tenant_id, from_email=f"hi@{tenant_id}.example",
                          from_name=tenant_id, postal_address="1 Main St"),
        )  # fmt: skip


@pytest.fixture
async def shop(db: Database) -> AsyncIterator[Shop]:
    """The demo tenant (with its ~40 products and template) behind a real app, no Temporal."""
    seeded = await seed_demo(db, contacts=0)
    app = create_app(Settings(database_url=db.url, redis_url=None, rag_enabled=False))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tailor") as client:
            yield Shop(client, db, await key_headers(db, "demo", "admin"),
                       seeded.template_version_id)  # fmt: skip


def _row(i: int, price: str = "19.99") -> str:
    return f"BULK-{i:05d},Product {i},bulk,{price},https://shop.example.com/p/BULK-{i:05d}\n"


async def test_a_1000_product_csv_reads_back_page_by_page(shop: Shop) -> None:
    before = {p["sku"] for p in await shop.products()}
    csv = HEADER + "".join(_row(i, f"{i}.{i % 100:02d}") for i in range(1, 1001))

    answer = await shop.csv(csv)

    assert answer.status_code == 200, answer.text
    assert answer.json() == {"count": 1000, "created": 1000, "updated": 0, "unchanged": 0}
    pages: list[list[dict[str, Any]]] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 150, **({"cursor": cursor} if cursor else {})}
        page = (await shop.client.get("/v1/products", params=params, headers=shop.admin)).json()
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    listed = [p for page in pages for p in page]
    assert all(len(page) == 150 for page in pages[:-1]) and 0 < len(pages[-1]) <= 150
    assert len(listed) == len({p["sku"] for p in listed}) == len(before) + 1000
    bulk = {p["sku"]: p for p in listed if p["sku"].startswith("BULK-")}
    assert len(bulk) == 1000
    assert bulk["BULK-00007"] == {
        "sku": "BULK-00007", "name": "Product 7", "category": "bulk", "price": "7.07",
        "url": "https://shop.example.com/p/BULK-00007",
    }  # fmt: skip
    assert bulk["BULK-01000"]["price"] == "1000.00"
    # The same file again changes nothing.
    again = (await shop.csv(csv)).json()
    assert again == {"count": 1000, "created": 0, "updated": 0, "unchanged": 1000}


async def test_row_problems_name_the_row_and_field_and_apply_nothing(shop: Shop) -> None:
    assert (await shop.csv(HEADER + _row(1, "5.00"))).status_code == 200
    csv = (
        HEADER
        + _row(1, "6.00")  # would update BULK-00001: must not, since other rows are wrong
        + _row(2, "12.345")
        + _row(3)
        + "BULK-00004,Hat,hats,4.00,ftp://shop.example.com/p/4\n"
        + _row(3, "1.00")  # a duplicate SKU within the file
    )

    answer = await shop.csv(csv)

    assert answer.status_code == 422
    body = answer.json()
    assert [d["field"] for d in body["detail"]] == [
        "rows[2].price", "rows[4].url", "rows[5].sku"
    ]  # fmt: skip
    assert "two decimals" in body["detail"][0]["message"]
    assert "row 3" in body["detail"][2]["message"]
    assert "nothing was applied" in body["message"]
    bulk = {p["sku"]: p["price"] for p in await shop.products() if p["sku"].startswith("BULK")}
    assert bulk == {"BULK-00001": "5.00"}

    # The same rows as JSON are numbered the same way (from 1).
    products = [
        {"sku": "J-1", "name": "Cap", "category": "hats", "price": 9.5, "url": "https://s.example/1"},
        {"sku": "J-2", "name": "Cap", "category": "hats", "price": "€9", "url": "https://s.example/2"},
    ]  # fmt: skip
    answer = await shop.client.post("/v1/products", json={"products": products}, headers=shop.admin)
    assert answer.status_code == 422
    assert [d["field"] for d in answer.json()["detail"]] == ["rows[2].price"]
    assert not any(p["sku"].startswith("J-") for p in await shop.products())


MALFORMED: list[tuple[str | bytes, str, str]] = [
    ("sku,name,price,url\nA,B,1.00,https://s.example/a\n", "header", "misses category"),
    (HEADER.replace("price", "cost") + "A,B,c,1,https://s.example\n", "header", "price"),
    ("\ufeff" + HEADER + _row(1) + 'A,"B,c,1.00,https://s.example/a\n', "file", "not valid CSV"),
    ((HEADER + "A,Bérét,c,1.00,https://s.example/a\n").encode("latin-1"), "file", "UTF-8"),
    (HEADER + _row(1) + "A,B,c\n", "rows[2]", "3 values"),
    (HEADER + "\n,,,,\n", "rows", "no products"),
    (HEADER + "\n\n" + "A,B,c,-1,https://s.example/a\n", "rows[3].price", "between 0"),
    (HEADER + "".join(_row(i) for i in range(10_001)), "file", "more than 10,000"),
]


async def test_a_malformed_file_is_refused_whole(shop: Shop) -> None:
    before = await shop.products()
    for content, field, words in MALFORMED:
        answer = await shop.csv(content)

        assert answer.status_code == 422, answer.text
        detail = answer.json()["detail"]
        assert detail[0]["field"] == field and words in detail[0]["message"], (content, detail)
    assert await shop.products() == before


async def test_csv_needs_its_content_type(shop: Shop) -> None:
    answer = await shop.csv(HEADER + _row(1), **{"Content-Type": "application/json"})
    assert answer.status_code == 415
    assert "text/csv" in answer.json()["message"]
    spec = (await shop.client.get("/openapi.json")).json()
    assert "text/csv" in spec["paths"]["/v1/products/csv"]["post"]["requestBody"]["content"]


async def test_json_upsert_creates_then_updates_prices(shop: Shop) -> None:
    def product(sku: str, price: object) -> dict[str, object]:
        return {"sku": sku, "name": f"Scarf {sku}", "category": "scarves", "price": price,
                "url": f"https://shop.example.com/p/{sku}"}  # fmt: skip

    first = await shop.client.post(
        "/v1/products",
        json={"products": [product("SC-1", 20), product("SC-2", "35.50")]},
        headers=shop.admin,
    )
    second = await shop.client.post(
        "/v1/products",
        json={"products": [product("SC-1", 24.99), product("SC-2", "35.5"), product("SC-3", 1)]},
        headers=shop.admin,
    )

    assert first.json() == {"count": 2, "created": 2, "updated": 0, "unchanged": 0}
    assert second.json() == {"count": 3, "created": 1, "updated": 1, "unchanged": 1}
    prices = {p["sku"]: p["price"] for p in await shop.products() if p["sku"].startswith("SC-")}
    assert prices == {"SC-1": "24.99", "SC-2": "35.50", "SC-3": "1.00"}


async def test_a_removed_product_is_neither_recommended_nor_priced(shop: Shop) -> None:
    hat = {"sku": "HAT-RM", "name": "Wool Fedora", "category": "outdoor", "price": "987.65",
           "url": "https://shop.example.com/p/HAT-RM"}  # fmt: skip
    await shop.client.post("/v1/products", json={"products": [hat]}, headers=shop.admin)
    async with shop.db.session() as session:
        campaign = await create_campaign(
            session=session, tenant_id="demo", name="Fall",
            template_version_id=shop.template_version_id, segment={},
        )  # fmt: skip
    # A template that shows exactly what the rules recommend; a reader who likes the outdoors.
    version = TemplateVersion(
        id=10_000, template_id=1, version=1, subject="Picks", cta_text="Shop", cta_url="/",
        body="{% for r in recommendations %}{{ r.name }} {{ r.price }}|{% endfor %}",
    )  # fmt: skip
    reader = Contact(id=1, tenant_id="demo", email="r@example.com",
                     preferred_categories=["outdoor"], engagement_score=70)  # fmt: skip
    email = GeneratedEmail(
        subject="{{first_name}}, a fedora for fall", cta_text="Shop now",
        body="Hi {{first_name}}, the Wool Fedora is back for $987.65 this week only.",
    )  # fmt: skip

    # The worker's cache of the running campaign's context, on a clock the test moves.
    clock = [0.0]
    contexts = CampaignContexts(shop.db, clock=lambda: clock[0])

    async def picks_and_violations() -> tuple[str, list[str]]:
        """What the rules recommend, and the evaluator's verdict on an LLM email naming the
        hat's price, with every outdoor product the generator could offer as facts."""
        ctx = await contexts.get(campaign.id)
        body = RuleBasedExecutor().personalise(
            contact=reader, version=version, catalog=ctx.catalog, tenant_name="Northwind",
            now=utcnow(),
        ).body  # fmt: skip
        facts = [ProductFact(v.name, v.price, v.url)
                 for v in map(ctx.catalog.view, ctx.catalog.by_category["outdoor"])]  # fmt: skip
        request = ClusterRequest("Northwind", "fall", "mid", "outdoor", "desktop", "en",
                                 recommendations=facts)  # fmt: skip
        return body, evaluate(email, request, utcnow()).violations

    body, violations = await picks_and_violations()
    assert "Wool Fedora $987.65" in body and violations == []

    removed = await shop.client.delete("/v1/products/HAT-RM", headers=shop.admin)

    assert removed.status_code == 204
    # The running campaign sees the removal once its cached context is due for a re-read.
    clock[0] += CONTEXT_TTL_S
    body, violations = await picks_and_violations()
    assert "Wool Fedora" not in body and body.count("|") >= 1, body
    assert violations == ["price $987.65 is not a catalog price"]
    assert "HAT-RM" not in {p["sku"] for p in await shop.products()}
    assert (await shop.client.delete("/v1/products/HAT-RM", headers=shop.admin)).status_code == 404

    # Upserting the SKU again puts it back on sale.
    back = await shop.client.post("/v1/products", json={"products": [hat]}, headers=shop.admin)
    assert back.json()["updated"] == 1
    clock[0] += CONTEXT_TTL_S
    body, violations = await picks_and_violations()
    assert "Wool Fedora $987.65" in body and violations == []


async def test_analysts_only_read_and_other_tenants_see_nothing(shop: Shop) -> None:
    await shop.csv(HEADER + _row(1))
    analyst = await key_headers(shop.db, "demo", "analyst")
    upload = {"products": [{"sku": "X", "name": "X", "category": "x", "price": 1,
                            "url": "https://s.example/x"}]}  # fmt: skip

    writes = [
        await shop.client.post("/v1/products", json=upload, headers=analyst),
        await shop.client.post(
            "/v1/products/csv",
            content=HEADER + _row(2),
            headers={**analyst, "Content-Type": "text/csv"},
        ),  # fmt: skip
        await shop.client.delete("/v1/products/BULK-00001", headers=analyst),
    ]

    assert [w.status_code for w in writes] == [403, 403, 403]
    assert any(p["sku"] == "BULK-00001" for p in await shop.products(analyst))

    await _tenant(shop.db, "rival")
    rival = await key_headers(shop.db, "rival", "admin")
    assert await shop.products(rival) == []
    gone = await shop.client.delete("/v1/products/BULK-00001", headers=rival)
    assert gone.status_code == 404
    assert any(p["sku"] == "BULK-00001" for p in await shop.products())


async def test_a_cursor_not_from_the_list_is_refused(shop: Shop) -> None:
    answer = await shop.client.get("/v1/products?cursor=abc", headers=shop.admin)
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["field"] == "cursor"
