"""One settings class for every Tailor process, read from ``TAILOR_*`` environment variables.

Workflows never read settings: activities and the API receive a ``Settings`` instance when they
are constructed, and anything a workflow needs travels in its input.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_UNSUBSCRIBE_SECRET = "dev-only-unsubscribe-secret-change-me"
DEV_TRACKING_SECRET = "dev-only-tracking-secret-change-me"
DEV_OUTBOUND_SECRET = "dev-only-outbound-secret-change-me"
# Public-key algorithms only: with HS* anyone holding the (public) JWKS could sign a token.
OIDC_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TAILOR_", env_file=None, extra="ignore")

    env: str = Field("development", description="development | production")
    home: Path = Field(Path(".tailor"), description="Runtime state: databases, outbox, logs.")

    database_url: str | None = Field(
        None, description="SQLAlchemy async URL; default is SQLite under TAILOR_HOME."
    )

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "tailor-campaigns"
    temporal_ui_url: str = "http://127.0.0.1:8233"
    temporal_search_attributes: bool = Field(
        True,
        description="Tag workflows with TailorTenant/TailorCampaign/TailorKind. Off only for "
        "servers without custom search attributes (the time-skipping test server).",
    )

    api_host: str = "127.0.0.1"
    api_port: int = 8000
    metrics_host: str = Field(
        "127.0.0.1", description="Where a worker serves its metrics (0.0.0.0 in a container)."
    )
    worker_metrics_port: int = Field(
        9464,
        ge=0,
        le=65534,
        description="A worker's Prometheus metrics (GET /metrics on this port); the Temporal "
        "SDK's own metrics are on the next port. 0: off. A port in use is skipped, with a warning.",
    )
    public_url: str = Field(
        "http://127.0.0.1:8000", description="Base URL recipients reach (unsubscribe links)."
    )
    api_rate_per_min: int = Field(
        6000, ge=1, description="Requests a minute each API key (or token subject) may make."
    )
    api_rate_burst: int | None = Field(
        None,
        ge=1,
        description="Requests a key may make at once after being idle; default: a minute's "
        "worth (api_rate_per_min). Past it, requests are spaced at the per-minute rate.",
    )
    api_max_body_bytes: int = Field(
        1024 * 1024, ge=1, description="Largest request body, in bytes (1 MB)."
    )
    api_max_batch_body_bytes: int = Field(
        5 * 1024 * 1024,
        ge=1,
        description="Largest body of the batch routes (/v1/batch, /v1/contacts, /v1/products), "
        "in bytes (5 MB). The catalog CSV upload has its own 10 MB limit.",
    )

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_s: float = 30.0
    smtp_connections: int = Field(4, ge=1, le=64, description="Parallel SMTP sessions per chunk.")

    # Email providers. ``providers`` is the default failover order; a tenant may set its own.
    providers: list[str] = Field(
        default_factory=lambda: ["smtp"],
        description="Failover order of email providers: smtp, sendgrid, mailgun, ses.",
    )
    sendgrid_api_key: str | None = None
    sendgrid_base_url: str = "https://api.sendgrid.com"
    mailgun_api_key: str | None = None
    mailgun_domain: str | None = Field(None, description="The Mailgun sending domain.")
    mailgun_base_url: str = "https://api.mailgun.net"
    ses_region: str = "us-east-1"
    ses_access_key_id: str | None = None
    ses_secret_access_key: str | None = None
    ses_endpoint_url: str | None = Field(
        None, description="Default: https://email.<region>.amazonaws.com"
    )
    provider_timeout_s: float = Field(30.0, gt=0, le=300, description="Per provider request.")
    provider_health_interval_s: float = Field(
        60.0, gt=0, description="How often each provider's health is checked."
    )
    provider_failure_threshold: int = Field(
        3, ge=1, description="Consecutive failures that open a provider's circuit breaker."
    )
    consent_settle_s: float = Field(
        10.0,
        ge=0,
        le=60,
        description="How long a revocation's answer waits for emails claimed before it (already "
        "on their way) to be accepted or refused by their provider, so that it can say which.",
    )
    provider_reconcile_after_s: float = Field(
        600.0,
        gt=0,
        description="A send left unclear at an HTTP provider (a worker died mid-request) is "
        "looked up in the provider's activity API once it is this old, then marked sent or "
        "sent again. Must exceed provider_timeout_s and the provider's reporting lag.",
    )
    send_rate_per_s: float | None = Field(
        None, gt=0, description="Default per-tenant sending rate limit; None: unlimited."
    )

    chunk_size: int = Field(500, ge=1, le=5000)
    chunk_concurrency: int = Field(4, ge=1, le=64)
    chunks_per_run: int = Field(
        400, ge=1, le=2000, description="Campaign chunks per workflow run (continue-as-new)."
    )
    features_database_url: str | None = Field(
        None,
        description="Where recipient profiles and features are read (a read replica, the "
        "feature store's database). Default: the main database.",
    )
    profile_timeout_s: float = Field(5.0, gt=0, le=120, description="Per profile-read attempt.")
    # About 3 KB a profile: 20K is ~60 MB of worker memory (100K cost ~300 MB in the bench).
    profile_cache_size: int = Field(
        20_000, ge=0, description="Profiles a worker keeps for the ≤24 h stale fallback."
    )
    redis_url: str | None = Field(
        None,
        description="Redis that caches recipient profiles for the send path (redis://host:6379/0)."
        " Default: profiles are read from the database every time.",
    )
    redis_key_prefix: str = Field(
        "tailor", description="Namespace of Tailor's Redis keys, so deployments can share one."
    )
    feature_cache_ttl_s: int = Field(
        3600,
        ge=1,
        le=24 * 3600,
        description="How long Redis serves a cached profile; writes invalidate it sooner.",
    )
    rag_enabled: bool = Field(True, description="Retrieve exemplar emails for each cluster.")
    qdrant_url: str | None = Field(
        None, description="A Qdrant server; default: embedded local mode under <home>/qdrant."
    )
    embedding_model: str = Field(
        "all-MiniLM-L6-v2", description="all-MiniLM-L6-v2 (bundled) or a local model folder."
    )
    features_cron: str = Field(
        "0 3 * * *",
        description="When the daily derived-features job runs (cron, UTC); the worker keeps "
        "its Temporal Schedule in line with this.",
    )
    review_timeout_hours: float = Field(
        48.0,
        gt=0,
        le=24 * 30,
        description="Content flagged for review that nobody decides on within this long "
        "expires; its recipients get the rules-tier email.",
    )

    unsubscribe_secret: str = DEV_UNSUBSCRIBE_SECRET
    tracking_secret: str = Field(
        DEV_TRACKING_SECRET,
        description="Signs pixel and redirect tokens (each tenant's key derives from it).",
    )
    tracking_url: str | None = Field(
        None,
        description="Base URL of the open pixel and click redirect (a tracking domain); "
        "default: public_url.",
    )

    # ESP event webhooks (POST /v1/webhooks/<provider>): each route is off until its key is set.
    sendgrid_webhook_public_key: str | None = Field(
        None,
        description="SendGrid's Signed Event Webhook verification key (base64 DER, as its "
        "settings page shows it); None: /v1/webhooks/sendgrid answers 404.",
    )
    mailgun_webhook_signing_key: str | None = Field(
        None, description="Mailgun's HTTP webhook signing key; None: /v1/webhooks/mailgun is 404."
    )
    sns_topic_arns: list[str] = Field(
        default_factory=list,
        description="SNS topics whose SES events are accepted; empty: /v1/webhooks/ses is 404 "
        "(every message refused).",
    )
    soft_bounce_limit: int = Field(
        3, ge=1, description="Soft bounces in a row after which an address is suppressed."
    )
    webhook_max_age_s: float = Field(
        300.0, gt=0, le=3600, description="Signed webhook requests older than this are refused."
    )

    # Outbound webhooks: events to the tenant's own URLs (tailor.outbound).
    outbound_secret: str = Field(
        DEV_OUTBOUND_SECRET,
        description="Each endpoint's signing secret derives from it (and seals Segment write "
        "keys); changing it changes every endpoint's secret.",
    )
    outbound_allow_private_urls: bool | None = Field(
        None,
        description="Let endpoints be http://localhost or resolve to private, loopback or "
        "link-local addresses; default: only in development.",
    )
    outbound_timeout_s: float = Field(
        10.0, gt=0, le=60, description="Per delivery request to an endpoint."
    )
    outbound_poll_s: float = Field(
        1.0, gt=0, le=60, description="How often the worker looks for new outbox rows."
    )
    outbound_sweep_s: float = Field(
        60.0,
        gt=0,
        le=3600,
        description="How often the worker wakes every endpoint with pending rows (a safety net "
        "behind the poll), and prunes settled rows.",
    )
    outbound_retention_days: float = Field(
        7.0, gt=0, description="Delivered and replayed outbox rows are deleted after this long."
    )
    outbound_disable_after: int = Field(
        5,
        ge=1,
        description="Dead-lettered batches in a row after which an endpoint is disabled (its "
        "pending events become dead letters too).",
    )

    # LLM tiers. With neither a key nor a base URL, generation is rule-based.
    openai_api_key: str | None = None
    llm_base_url: str | None = Field(
        None, description="OpenAI-compatible server (Ollama, vLLM, a proxy) for the OpenAI tier."
    )
    openai_model: str = "gpt-5-mini"
    anthropic_api_key: str | None = None
    anthropic_base_url: str | None = None
    anthropic_model: str = "claude-haiku-4-5"
    llm_timeout_s: float = Field(20.0, gt=0, le=300)
    llm_max_output_tokens: int = Field(700, ge=100, le=4000)
    llm_daily_budget_usd: float = Field(
        20.0, ge=0, description="Per-tenant daily LLM spend; past it, generation is rule-based."
    )
    llm_budget_alert_ratio: float = Field(
        0.8, gt=0, le=1, description="Warn when a tenant has spent this share of its budget."
    )
    llm_prices: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="Extra or overriding $/1M-token prices per model."
    )

    # OIDC: bearer JWTs from an identity provider, accepted alongside API keys. Off without issuer.
    oidc_issuer: str | None = Field(
        None, description="The `iss` tokens must carry (exactly); None: OIDC tokens are refused."
    )
    oidc_audience: str | None = Field(
        None, description="The `aud` tokens must carry; required with oidc_issuer."
    )
    oidc_jwks_url: str | None = Field(
        None, description="Where the issuer publishes its signing keys (JWKS over HTTPS)."
    )
    oidc_jwks_file: Path | None = Field(
        None, description="A JWKS file instead of oidc_jwks_url (air-gapped or pinned keys)."
    )
    oidc_tenant_claim: str = Field("tailor_tenant", description="The claim naming the tenant.")
    oidc_role_claim: str = Field(
        "tailor_role", description="The claim naming the role (never platform)."
    )
    oidc_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256"],
        description="Signature algorithms accepted; asymmetric only (no HS*, no none).",
    )
    oidc_jwks_cache_ttl_s: float = Field(
        300.0, gt=0, le=24 * 3600, description="How long fetched signing keys are trusted."
    )

    @property
    def tracking_base_url(self) -> str:
        """Where pixel and redirect URLs point, without a trailing slash."""
        return (self.tracking_url or self.public_url).rstrip("/")

    @property
    def outbound_private_urls(self) -> bool:
        """Whether endpoints may reach private addresses (and plain-http loopback)."""
        if self.outbound_allow_private_urls is None:
            return self.env == "development"
        return self.outbound_allow_private_urls

    @property
    def oidc_enabled(self) -> bool:
        return self.oidc_issuer is not None

    @property
    def openai_enabled(self) -> bool:
        return bool(self.openai_api_key or self.llm_base_url)

    @property
    def anthropic_enabled(self) -> bool:
        return bool(self.anthropic_api_key)

    @model_validator(mode="after")
    def _no_dev_secrets_in_production(self) -> Settings:
        if self.env != "development" and self.unsubscribe_secret == DEV_UNSUBSCRIBE_SECRET:
            raise ValueError(
                "TAILOR_UNSUBSCRIBE_SECRET must be set to a real secret outside development"
            )
        if self.env != "development" and self.tracking_secret == DEV_TRACKING_SECRET:
            raise ValueError(
                "TAILOR_TRACKING_SECRET must be set to a real secret outside development"
            )
        if self.env != "development" and self.outbound_secret == DEV_OUTBOUND_SECRET:
            raise ValueError(
                "TAILOR_OUTBOUND_SECRET must be set to a real secret outside development"
            )
        return self

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        if self.oidc_issuer is None:
            return self
        if not self.oidc_audience:
            raise ValueError("TAILOR_OIDC_AUDIENCE is required when TAILOR_OIDC_ISSUER is set")
        if (self.oidc_jwks_url is None) == (self.oidc_jwks_file is None):
            raise ValueError(
                "set exactly one of TAILOR_OIDC_JWKS_URL and TAILOR_OIDC_JWKS_FILE when "
                "TAILOR_OIDC_ISSUER is set"
            )
        unsafe = sorted(set(self.oidc_algorithms) - OIDC_ALGORITHMS)
        if unsafe or not self.oidc_algorithms:
            raise ValueError(
                f"TAILOR_OIDC_ALGORITHMS may hold only {', '.join(sorted(OIDC_ALGORITHMS))}; "
                f"refused: {', '.join(unsafe) or '(empty list)'}"
            )
        return self

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.home / 'tailor.db').resolve()}"

    @property
    def outbox_dir(self) -> Path:
        """Maildir where the local SMTP capture server stores every message it accepts."""
        return (self.home / "outbox").resolve()

    def temporal_ui_workflow_url(self, workflow_id: str) -> str:
        return (
            f"{self.temporal_ui_url}/namespaces/{self.temporal_namespace}/workflows/{workflow_id}"
        )
