"""Provider accounts: one row per API key we hold at a provider."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from providers import crypto
from providers.registry import adapter_class, kind_choices


class ProviderAccount(models.Model):
    """An account at a provider: kind, label, encrypted API key, base URL, options.

    ``base_url`` empty means the provider's real API (the adapter's default); set it to a
    sandbox's URL (``http://127.0.0.1:8801/api/v1``) for the demo or the tests. The API
    key is stored encrypted (:mod:`providers.crypto`) and never shown whole: only its last
    four characters are kept in clear.
    """

    kind = models.CharField(max_length=20, choices=kind_choices())
    label = models.CharField(max_length=100)
    api_key_encrypted = models.TextField(editable=False, default="")
    api_key_last4 = models.CharField(max_length=4, editable=False, default="")
    base_url = models.URLField(
        blank=True, help_text="Empty: the provider's real API. A sandbox: e.g. http://127.0.0.1:8801/api/v1"
    )
    enabled = models.BooleanField(default=True)
    priority = models.IntegerField(default=100, help_text="Lower comes first in the studio's list.")
    options = models.JSONField(default=dict, blank=True, help_text="Provider options, e.g. APIXO {\"provider\": \"auto\"}.")
    fallback = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Failover (off when empty): an account of the same provider used when this one answers 402 "
        "(no balance) or is marked down.",
    )
    down = models.BooleanField(default=False, help_text="Marked down: new submits go to the fallback account.")
    paused_until = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="Set from a 429's Retry-After: no status requests to this account before then.",
    )
    problem_notified_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="When staff were last emailed about an account-level problem (402 no credit, 401 bad key).",
    )
    problem_note = models.CharField(
        max_length=300, blank=True, default="", editable=False,
        help_text="The last account-level problem staff were told about.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["priority", "label"]
        constraints = [models.UniqueConstraint(fields=["kind", "label"], name="provider_account_unique_label")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} · {self.label}"

    # -- API key ---------------------------------------------------------------------
    def set_api_key(self, raw: str) -> None:
        """Encrypt and store ``raw`` (does not save)."""
        self.api_key_encrypted = crypto.encrypt(raw)
        self.api_key_last4 = raw[-4:] if len(raw) >= 4 else ""

    @property
    def api_key(self) -> str:
        """The decrypted key (raises ValueError if the encryption keys changed)."""
        return crypto.decrypt(self.api_key_encrypted) if self.api_key_encrypted else ""

    @property
    def masked_key(self) -> str:
        return f"••••{self.api_key_last4}" if self.api_key_encrypted else "(none)"

    # -- adapter ---------------------------------------------------------------------
    @property
    def adapter_cls(self):
        return adapter_class(self.kind)

    def adapter(self):
        """A ready adapter instance for this account."""
        return self.adapter_cls(api_key=self.api_key, base_url=self.base_url, options=self.options)

    @property
    def effective_base_url(self) -> str:
        return (self.base_url or self.adapter_cls.default_base_url).rstrip("/")
