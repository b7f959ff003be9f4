"""The generation lifecycle: create (hold), submit, poll, callback, archive, expire.

Record before send: the row and its hold commit before the provider is called; the
provider's task id is stored right after it answers. Every state change is a conditional
UPDATE from the states it may come from (``models.ALLOWED_FROM``), so a late or duplicate
update changes nothing, and every ledger entry is written in the same transaction as the
state change that causes it (ARCHITECTURE.md, "The lifecycle" and "Money").

One module per step: ``lifecycle`` (the primitives every step uses: ``_transition``,
``_event``, ``GenerationRefused``), ``create``, ``submit``, ``poll`` (with ``window``: the
sweep's sliding window of status reads), ``callbacks`` (and ``callback_read``, a callback's
status read), ``archive``, ``reconcile``; the queue hand-overs and sweep slots live in
``generations.queue``, beside the django-q2 tasks. This package re-exports the public API, so
callers write ``from generations import services; services.generation_create(...)``. The
steps call the ``enqueue_*`` functions and ``generation_apply_update`` through this package,
so replacing them here (as the tests do) replaces them everywhere.
"""

__all__ = [
    # lifecycle
    "GenerationRefused",
    "RuleViolation",
    # create
    "CreateParams",
    "MAX_UPLOAD_BYTES",
    "check_request_images",
    "generation_create",
    "generation_quote",
    "input_image_create",
    "input_image_url",
    # submit
    "generation_submit",
    # poll
    "generation_apply_update",
    "generations_expire",
    "generations_poll",
    "generations_resolve_reported",
    "generations_stuck_submitting",
    "poll_lease_seconds",
    # callbacks
    "CallbackRejected",
    "callback_secret",
    "generation_callback",
    # archive
    "ARCHIVE_MAX_ATTEMPTS",
    "ArchiveError",
    "archive_retry_offered",
    "download_video",
    "generation_archive",
    "generation_archive_retry",
    "make_poster",
    "measure_seconds",
    # reconcile and cancel
    "cancel_at_provider",
    "generation_cancel",
    "generation_credit_unsaved",
    "generation_reconcile_attach",
    "generation_reconcile_failed",
    "reconciliation_digest_send",
    "reconciliation_open",
    # the queue (generations.queue)
    "SUBMIT_REQUEUE_AFTER",
    "archives_enqueue_due",
    "enqueue_archive",
    "enqueue_poll",
    "enqueue_submit",
    "submits_enqueue_due",
    "sweep_slot_claim",
    "sweep_slot_release",
]

from generations.queue import (
    SUBMIT_REQUEUE_AFTER,
    archives_enqueue_due,
    enqueue_archive,
    enqueue_poll,
    enqueue_submit,
    submits_enqueue_due,
    sweep_slot_claim,
    sweep_slot_release,
)
from generations.services.archive import (
    ARCHIVE_MAX_ATTEMPTS,
    ArchiveError,
    archive_retry_offered,
    download_video,
    generation_archive,
    generation_archive_retry,
    make_poster,
    measure_seconds,
)
from generations.services.callbacks import CallbackRejected, callback_secret, generation_callback
from generations.services.create import (
    MAX_UPLOAD_BYTES,
    CreateParams,
    check_request_images,
    generation_create,
    generation_quote,
    input_image_create,
    input_image_url,
)
from generations.services.lifecycle import GenerationRefused
from generations.services.poll import (
    _claim_due,  # noqa: F401  (tests claim one round by hand, as a worker that dies would)
    generation_apply_update,
    generations_expire,
    generations_poll,
    generations_stuck_submitting,
    poll_lease_seconds,
)
from generations.services.reconcile import (
    cancel_at_provider,
    generation_cancel,
    generation_credit_unsaved,
    generation_reconcile_attach,
    generation_reconcile_failed,
    reconciliation_digest_send,
    reconciliation_open,
)
from generations.services.resolve import generations_resolve_reported
from generations.services.submit import generation_submit
from providers.base import RuleViolation
