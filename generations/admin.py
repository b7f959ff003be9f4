from django import forms
from django.contrib import admin, messages
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils import timezone

from billing.money import format_usd
from generations import services
from generations.models import ArchiveState, Batch, Generation, GenerationEvent, InputImage, State


def poll_summary(counts: dict[str, int], *, in_flight: int, selected: int) -> str:
    """The admin's "Poll now" outcome in words, e.g. "Polled 2 of the 3 selected generation(s)
    (2 in flight): 1 in progress, 1 succeeded." ``counts`` is ``generations_poll``'s."""
    polled = counts.get("polled", 0)
    parts = [f"{n} {name.replace('_', ' ')}" for name, n in sorted(counts.items()) if name != "polled" and n]
    lead = f"Polled {polled} of the {selected} selected generation(s) ({in_flight} in flight)"
    if polled < in_flight:
        lead += f"; {in_flight - polled} were being polled by a worker already"
    return lead + (": " + ", ".join(parts) + "." if parts else ".")


class GenerationEventInline(admin.TabularInline):
    model = GenerationEvent
    extra = 0
    can_delete = False
    readonly_fields = ["at", "state", "message", "data"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class AttachTaskForm(forms.Form):
    provider_task_id = forms.CharField(label="Provider task id", max_length=200)


class CreditReasonForm(forms.Form):
    reason = forms.CharField(label="Reason (kept in the ledger)", max_length=500, widget=forms.Textarea(attrs={"rows": 2}))


class VideoNotSavedFilter(admin.SimpleListFilter):
    """Succeeded generations whose video could not be saved (charged, nothing to show)."""

    title = "video not saved"
    parameter_name = "not_saved"

    def lookups(self, request, model_admin):
        return [("1", "Succeeded, video not saved")]

    def queryset(self, request, queryset):
        if self.value() == "1":
            return queryset.filter(state=State.SUCCEEDED, archive_state=ArchiveState.FAILED)
        return queryset


@admin.register(Generation)
class GenerationAdmin(admin.ModelAdmin):
    """Generations with their timeline; actions: poll now, resolve needs_reconciliation, credit a
    video that could not be saved. needs_reconciliation rows show their age and the amount at risk."""

    list_display = ["created_at", "state", "open_for", "at_risk", "provider_account", "model", "mode", "duration", "resolution", "user", "quoted_amount", "charged_amount", "late", "archive_state"]
    list_filter = ["state", VideoNotSavedFilter, "late", "provider_kind", "provider_account", "archive_state", "model", "starred", "project"]
    search_fields = ["id", "prompt", "provider_task_id", "user__email"]
    date_hierarchy = "created_at"
    list_select_related = ["provider_account", "user"]
    inlines = [GenerationEventInline]
    actions = ["poll_now", "mark_failed_and_release", "credit_unsaved"]
    readonly_fields = [f.name for f in Generation._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="open for", ordering="needs_reconciliation_at")
    def open_for(self, obj) -> str:
        """How long a needs_reconciliation generation has been open (hours), "" otherwise."""
        if obj.state != State.NEEDS_RECONCILIATION:
            return ""
        since = obj.needs_reconciliation_at or obj.updated_at
        hours = (timezone.now() - since).total_seconds() / 3600
        return f"{hours / 24:.1f} d" if hours >= 48 else f"{hours:.1f} h"

    @admin.display(description="at risk")
    def at_risk(self, obj) -> str:
        """The held amount a needs_reconciliation generation keeps reserved (USD), "" otherwise."""
        return format_usd(obj.quoted_amount) if obj.state == State.NEEDS_RECONCILIATION else ""

    @admin.action(description="Credit the charge of a video that could not be saved (asks for a reason)")
    def credit_unsaved(self, request, queryset):
        rows = list(queryset.filter(state=State.SUCCEEDED, archive_state=ArchiveState.FAILED))
        if not rows:
            self.message_user(request, "None of the selected generations succeeded with a video that could not be saved.", messages.WARNING)
            return None
        form = CreditReasonForm(request.POST if "apply" in request.POST else None)
        if form.is_bound and form.is_valid():
            done, refused = 0, []
            for generation in rows:
                try:
                    services.generation_credit_unsaved(generation_id=generation.pk, reason=form.cleaned_data["reason"], admin=request.user)
                    done += 1
                except ValueError as exc:
                    refused.append(f"{generation.pk}: {exc}")
            self.message_user(request, f"{done} generation(s) credited." + (" Not credited: " + "; ".join(refused) if refused else ""))
            return None
        context = {**self.admin_site.each_context(request), "form": form, "generations": rows,
                   "title": "Credit videos that could not be saved", "opts": self.model._meta}
        return render(request, "admin/generations/credit_unsaved.html", context)

    @admin.action(description="Poll now")
    def poll_now(self, request, queryset):
        selected = queryset.count()
        ids = list(queryset.filter(state__in=[State.SUBMITTED, State.RUNNING]).values_list("pk", flat=True))
        if not ids:
            self.message_user(
                request,
                f"Nothing to poll: none of the {selected} selected generation(s) is in flight (submitted or running).",
                messages.WARNING,
            )
            return
        counts = services.generations_poll(ids=ids)
        self.message_user(request, poll_summary(counts, in_flight=len(ids), selected=selected))

    @admin.action(description="Resolve needs_reconciliation: mark failed and release the hold")
    def mark_failed_and_release(self, request, queryset):
        done = 0
        for generation in queryset.filter(state=State.NEEDS_RECONCILIATION):
            done += services.generation_reconcile_failed(generation_id=generation.pk, admin=request.user)
        self.message_user(request, f"{done} generation(s) marked failed; holds released.")

    def get_urls(self):
        custom = [
            path("<uuid:generation_id>/attach-task/", self.admin_site.admin_view(self.attach_task_view), name="generations_generation_attach_task"),
        ]
        return custom + super().get_urls()

    def attach_task_view(self, request, generation_id):
        """Resolve needs_reconciliation by attaching the task id found at the provider: polling resumes."""
        generation = Generation.objects.get(pk=generation_id)
        form = AttachTaskForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            if services.generation_reconcile_attach(
                generation_id=generation.pk, provider_task_id=form.cleaned_data["provider_task_id"], admin=request.user
            ):
                self.message_user(request, "Task id attached; the generation is polled again.")
            else:
                self.message_user(request, "Only a generation that needs reconciliation can be resolved.", messages.ERROR)
            return redirect(reverse("admin:generations_generation_change", args=[generation.pk]))
        context = {**self.admin_site.each_context(request), "form": form, "generation": generation, "title": "Attach the provider's task id", "opts": self.model._meta}
        return render(request, "admin/generations/attach_task.html", context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        # Every field is read-only: no Save buttons for nothing to save.
        extra_context = {
            "show_save": False, "show_save_and_continue": False, "show_save_and_add_another": False,
            "show_delete": False, **(extra_context or {}),
        }
        generation = Generation.objects.filter(pk=object_id).first()
        if generation and generation.state == State.NEEDS_RECONCILIATION:
            extra_context["attach_url"] = reverse("admin:generations_generation_attach_task", args=[generation.pk])
        return super().change_view(request, object_id, form_url, extra_context)


@admin.register(InputImage)
class InputImageAdmin(admin.ModelAdmin):
    list_display = ["created_at", "user", "format", "width", "height", "size"]
    readonly_fields = ["user", "file", "format", "width", "height", "size", "created_at"]


class BatchGenerationInline(admin.TabularInline):
    """A batch's generations, read-only (each has its own page with its timeline and ledger)."""

    model = Generation
    fk_name = "batch"
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ["batch_index", "prompt", "model", "duration", "resolution", "state", "quoted_amount", "charged_amount"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Batch)
class BatchAdmin(admin.ModelAdmin):
    """Variants and batches (one submit, all held or none): who, which team and project, the
    total quoted and the progress; the generations inline."""

    list_display = ["__str__", "kind", "user", "team", "project", "size", "total", "progress", "created_at"]
    list_filter = ["kind", "team"]
    search_fields = ["title", "user__email", "idempotency_key"]
    raw_id_fields = ["user", "team", "project"]
    readonly_fields = ["quoted_total", "size", "shared", "idempotency_key", "request_fingerprint", "idempotent_response", "created_at"]
    inlines = [BatchGenerationInline]

    @admin.display(description="quoted")
    def total(self, obj: Batch) -> str:
        return format_usd(obj.quoted_total)

    @admin.display(description="progress")
    def progress(self, obj: Batch) -> str:
        from generations.batches.selectors import batch_progress

        return batch_progress([obj])[obj.pk].summary

    def has_add_permission(self, request) -> bool:
        return False  # made by the studio and the API, all held or none
