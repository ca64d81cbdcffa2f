"""The built-in exemplar corpus: original, synthetic marketing emails written for Tailor.

Every email is composed from hand-written parts: per category the things a shop sells and why
people care, per goal how the email is built, per angle what persuades (urgency, social proof,
a benefit, a story, a how-to) and per tone how it sounds. ``python -m rag.corpus`` rewrites
``rag/data/exemplars.jsonl``; the observed open and click rates are synthetic too (seeded).
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

CORPUS_PATH = Path(__file__).parent / "data" / "exemplars.jsonl"
# Embeddings of the corpus, computed once when the corpus is written (all-MiniLM-L6-v2).
VECTORS_PATH = Path(__file__).parent / "data" / "exemplars.vectors.npz"
SHARED_TENANT = "_shared"  # the built-in corpus: every tenant may retrieve it

GOALS = ("welcome", "cart_abandonment", "re_engagement", "milestone", "promo", "product_launch")
ANGLES = ("urgency", "social_proof", "benefit", "story", "how_to")
TONES = ("friendly", "formal", "playful")


@dataclass(frozen=True)
class Exemplar:
    id: str
    tenant_id: str
    category: str
    goal: str
    tone: str
    angle: str
    language: str
    subject: str
    preheader: str
    body: str
    cta: str
    open_rate: float
    click_rate: float
    source: str = "synthetic"

    def text(self) -> str:
        """What is embedded: the words a reader sees."""
        return f"{self.subject}. {self.preheader}. {self.body} {self.cta}"


@dataclass(frozen=True)
class _Category:
    name: str
    things: tuple[str, str, str]  # what the shop sells
    why: str  # why people care
    detail: str  # a concrete, sensory detail
    moment: str  # when it is used
    praise: str  # what customers say


CATEGORIES = (
    _Category("outdoor", ("trail tent", "down jacket", "trekking poles"),
              "stay warm and dry when the weather turns", "seams taped by hand",
              "the first cold night at camp", "it kept us dry through two days of rain"),
    _Category("running", ("trail shoes", "running vest", "merino socks"),
              "run further with fewer blisters", "a heel cup that locks in place",
              "the long Sunday run", "my knees finally stopped complaining"),
    _Category("home", ("linen bedding", "wool throw", "ceramic lamp"),
              "make every room feel calmer", "linen washed soft before it ships",
              "the slow first hour of a weekend morning", "the bedroom feels like a hotel now"),
    _Category("kitchen", ("chef's knife", "cast-iron pan", "stoneware bowls"),
              "cook faster with less mess", "a blade ground to a 15-degree edge",
              "a weeknight dinner for four", "it slices tomatoes like paper"),
    _Category("beauty", ("vitamin C serum", "mineral sunscreen", "night cream"),
              "keep skin calm and bright", "fragrance-free and tested on sensitive skin",
              "the two-minute morning routine", "my skin has never looked this even"),
    _Category("books", ("new crime novel", "illustrated cookbook", "travel memoir"),
              "find the next book you cannot put down", "hand-picked by our booksellers",
              "a rainy afternoon on the sofa", "I finished it in one sitting"),
    _Category("electronics", ("noise-cancelling headphones", "smart speaker", "e-reader"),
              "hear more and carry less", "thirty hours of battery on one charge",
              "the morning commute", "the quiet on the train is unreal"),
    _Category("kids", ("wooden train set", "rain boots", "picture book bundle"),
              "keep little hands busy and happy", "finished with non-toxic paint",
              "the after-school hour", "my daughter plays with it every single day"),
    _Category("fashion", ("wool coat", "leather boots", "cashmere scarf"),
              "look put-together without trying", "cut from Italian wool",
              "the first crisp morning of autumn", "I get compliments every time I wear it"),
    _Category("pets", ("orthopaedic dog bed", "grain-free kibble", "cat climbing tower"),
              "keep your pet healthy and happy", "vet-formulated with real salmon",
              "the evening walk", "our old labrador sleeps through the night again"),
    _Category("coffee", ("single-origin beans", "burr grinder", "pour-over kit"),
              "brew café-quality coffee at home", "roasted on Monday, shipped on Tuesday",
              "the first cup of the day", "I have stopped buying coffee on the way to work"),
    _Category("fitness", ("adjustable dumbbells", "yoga mat", "resistance bands"),
              "get stronger at home in twenty minutes", "a mat with a grip that does not slip",
              "the lunchtime workout", "I have not missed a session in six weeks"),
    _Category("travel", ("carry-on suitcase", "packing cubes", "travel pillow"),
              "travel lighter and arrive rested", "wheels tested for 500 kilometres",
              "the early flight", "everything fit in one bag for a week in Lisbon"),
)  # fmt: skip

# Subject lines per goal and angle; {thing} {name} {why} {moment} filled per category.
_SUBJECTS = {
    "welcome": {
        "urgency": "Your welcome gift expires Sunday",
        "social_proof": "Join 40,000 people who {why}",
        "benefit": "Welcome: here is how we help you {why}",
        "story": "Why we started making {things}",
        "how_to": "Three ways to get the most from your first {thing}",
    },
    "cart_abandonment": {
        "urgency": "Your {thing} is almost sold out",
        "social_proof": "The {thing} in your cart has 1,200 five-star reviews",
        "benefit": "Still thinking about the {thing}?",
        "story": "The {thing} you picked has a story",
        "how_to": "Questions about the {thing}? Here is how it works",
    },
    "re_engagement": {
        "urgency": "Last chance to keep your member perks",
        "social_proof": "What everyone bought while you were away",
        "benefit": "We saved you a few new {things}",
        "story": "A lot has changed since your last visit",
        "how_to": "A two-minute guide to what is new",
    },
    "milestone": {
        "urgency": "Your anniversary reward ends this week",
        "social_proof": "You are one of our top 5% of customers",
        "benefit": "One year together: a thank-you for you",
        "story": "Your year with us, in three moments",
        "how_to": "How to use your anniversary reward",
    },
    "promo": {
        "urgency": "48 hours only: 20% off {things}",
        "social_proof": "Our best-rated {things}, now on sale",
        "benefit": "Seasonal sale: {why} for less",
        "story": "Behind the sale: the makers of our {thing}",
        "how_to": "How to pick the right {thing} this season",
    },
    "product_launch": {
        "urgency": "The new {thing} launches today in small numbers",
        "social_proof": "The new {thing}: 2,000 people on the waitlist",
        "benefit": "Meet the new {thing}, made to {why}",
        "story": "Two years in the making: the new {thing}",
        "how_to": "First look: setting up the new {thing}",
    },
}

_OPENERS = {
    "friendly": "Hi {{first_name}},",
    "formal": "Dear {{first_name}},",
    "playful": "Hey {{first_name}}!",
}
_GOAL_LINES = {
    "welcome": "Thanks for joining us. We make {things} for people who want to {why}.",
    "cart_abandonment": "You left the {thing} in your cart, and we kept it for you.",
    "re_engagement": "It has been a while, and we have missed you.",
    "milestone": "It has been a year since your first order, and we wanted to say thank you.",
    "promo": "Our seasonal sale starts today across {things}.",
    "product_launch": "Today we are launching the new {thing}.",
}
_ANGLE_LINES = {
    "urgency": "Stock is limited and the offer ends on Sunday at midnight, so now is the moment.",
    "social_proof": 'Customers rate it 4.8 out of 5. One wrote: "{praise}."',
    "benefit": "It is made to help you {why}, with {detail}.",
    "story": "It started with {moment}: we wanted something better, so we made it, with {detail}.",
    "how_to": "Start with {moment}: try it once, notice the {detail}, then make it a habit.",
}
_TONE_CLOSERS = {
    "friendly": "We think you will love it.\n\nWarmly,\nThe team",
    "formal": "We would be glad to help with any question.\n\nKind regards,\nCustomer Care",
    "playful": "Go on, treat yourself. You have earned it.\n\nCheers,\nThe crew",
}
_CTAS = {
    "welcome": ("Start exploring", "Claim your gift", "Take a look"),
    "cart_abandonment": ("Return to your cart", "Complete your order", "Check out now"),
    "re_engagement": ("See what is new", "Come back and browse", "Keep my perks"),
    "milestone": ("Claim my reward", "See my year", "Use my reward"),
    "promo": ("Shop the sale", "See the deals", "Find my size"),
    "product_launch": ("Meet the new {thing}", "Be one of the first", "See it now"),
}


# How each shop names its range ("{things}").
_RANGES = {
    "outdoor": "tents, jackets and trail gear", "running": "shoes, vests and socks",
    "home": "bedding, throws and lamps", "kitchen": "knives, pans and tableware",
    "beauty": "serums, sunscreens and creams", "books": "novels, cookbooks and memoirs",
    "electronics": "headphones, speakers and e-readers", "kids": "toys, boots and books",
    "fashion": "coats, boots and scarves", "pets": "beds, food and toys for pets",
    "coffee": "beans, grinders and brewers", "fitness": "weights, mats and bands",
    "travel": "suitcases, cubes and pillows",
}  # fmt: skip


def _fill(text: str, category: _Category, thing: str) -> str:
    things = _RANGES[category.name]
    return (
        text.replace("{thing}", thing).replace("{things}", things)
        .replace("{why}", category.why).replace("{moment}", category.moment)
        .replace("{detail}", category.detail).replace("{praise}", category.praise)
        .replace("{name}", category.name)
    )  # fmt: skip


def build(per_pair: int = 4, seed: int = 20261129) -> list[Exemplar]:
    """Four angles per category and goal, tones rotating: 13 x 6 x 4 = 312 emails."""
    rng = random.Random(seed)
    exemplars: list[Exemplar] = []
    for ci, category in enumerate(CATEGORIES):
        for gi, goal in enumerate(GOALS):
            for k in range(per_pair):
                angle = ANGLES[(ci + gi + k) % len(ANGLES)]
                tone = TONES[(ci + 2 * gi + k) % len(TONES)]
                thing = category.things[(gi + k) % 3]
                subject = _fill(_SUBJECTS[goal][angle], category, thing)
                if tone == "playful" and not subject.endswith("?"):
                    subject = subject.replace("Welcome:", "Welcome aboard:")
                body = "\n\n".join(
                    [
                        _OPENERS[tone],
                        _fill(_GOAL_LINES[goal], category, thing)
                        + " "
                        + _fill(_ANGLE_LINES[angle], category, thing),
                        _TONE_CLOSERS[tone],
                    ]
                )
                open_rate = rng.uniform(0.18, 0.32) + (0.04 if angle == "urgency" else 0.0)
                click_rate = rng.uniform(0.02, 0.06) + (
                    0.015 if angle in ("social_proof", "urgency") else 0.0
                )
                exemplars.append(
                    Exemplar(
                        id=f"ex-{category.name}-{goal}-{k}",
                        tenant_id=SHARED_TENANT,
                        category=category.name,
                        goal=goal,
                        tone=tone,
                        angle=angle,
                        language="en",
                        subject=subject,
                        preheader=_fill(
                            f"For {{moment}}: {thing} to help you {{why}}", category, thing
                        ),  # fmt: skip
                        body=body,
                        cta=_fill(_CTAS[goal][k % 3], category, thing),
                        open_rate=round(open_rate, 3),
                        click_rate=round(click_rate, 3),
                    )
                )
    return exemplars


HEADER = {
    "_meta": {
        "synthetic": True,
        "note": "Original synthetic marketing emails written for Tailor's exemplar retrieval; "
        "open and click rates are synthetic. Regenerate with `python -m rag.corpus`.",
    }
}


def corpus_version(path: Path = CORPUS_PATH) -> str:
    """A fingerprint of the corpus file, stored with its points to notice a newer corpus."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def load(path: Path = CORPUS_PATH) -> list[Exemplar]:
    exemplars = []
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if "_meta" not in record:
            exemplars.append(Exemplar(**record))
    return exemplars


def write(path: Path = CORPUS_PATH, vectors_path: Path = VECTORS_PATH) -> int:
    import numpy as np

    from rag.embedder import DEFAULT_MODEL, Embedder

    exemplars = build()
    lines = [json.dumps(HEADER)] + [json.dumps(asdict(e), ensure_ascii=False) for e in exemplars]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    vectors = Embedder().encode([e.text() for e in exemplars])
    np.savez_compressed(
        vectors_path, ids=np.array([e.id for e in exemplars]), model=np.array(DEFAULT_MODEL),
        vectors=np.array(vectors, dtype=np.float32),
    )  # fmt: skip
    return len(exemplars)


def load_vectors(
    exemplars: list[Exemplar], model: str, path: Path = VECTORS_PATH
) -> list[list[float]] | None:
    """The committed embeddings, if they match these exemplars and model; else None."""
    import numpy as np

    if not path.exists():
        return None
    data = np.load(path)
    if str(data["model"]) != model or list(data["ids"]) != [e.id for e in exemplars]:
        return None
    return [list(map(float, v)) for v in data["vectors"]]


if __name__ == "__main__":
    print(f"wrote {write()} exemplars to {CORPUS_PATH}")  # noqa: T201
