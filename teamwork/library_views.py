"""Studio pages for the prompt library, the prompt history and the notification settings.

- ``/templates/``: the member's teams' templates (edit and delete for their author, a team
  admin or staff); another team's template answers 404.
- The studio's **Templates** and **History** menus load their content when first opened
  (``library_picker``, ``history_menu``: the studio page itself costs no query more); filling
  a template or choosing a past prompt answers the create form, filled, into ``#create-form``.
- ``/settings/notifications/``: which emails the member wants (``teamwork.notifications``).
"""

from __future__ import annotations

from types import SimpleNamespace

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from config.errors import DomainError
from generations.forms import StudioForm
from generations.selectors import generation_for, teams_of
from teamwork import library
from teamwork.models import NotificationPreference
from teamwork.notifications import preference_of
from teamwork.selectors import project_choices

#: Prefix of a placeholder's input in the fill form (``v_product``).
VALUE_PREFIX = "v_"


def _template_or_404(request, template_id):
    template = library.template_for(user=request.user, template_id=template_id)
    if template is None:
        raise Http404
    return template


def _studio_form_response(request, initial: dict, *, extra: str = ""):
    """The studio's create form rendered from ``initial``, swapped in place of ``#create-form``
    (whatever element asked), with its price and the budget left; ``extra``: out-of-band HTML
    appended (htmx swaps it by its id)."""
    from generations.views import _price_context, _teams

    for kept in ("team", "project"):  # the member's current team and project picks stay
        if request.POST.get(kept):
            initial[kept] = request.POST[kept]
    form = StudioForm(initial=initial, teams=_teams(request.user), projects=project_choices(request.user)[0])
    response = render(request, "generations/partials/form.html", {"form": form, **_price_context(form, request.user)})
    if extra:
        response.content += extra.encode()
    response["HX-Retarget"] = "#create-form"
    response["HX-Reswap"] = "outerHTML"
    return response


def _initial(settings, prompt: str) -> dict:
    """Studio form values for ``settings`` (a template's or a generation's) and ``prompt``."""
    source = SimpleNamespace(**vars(settings), prompt=prompt, project_id=None)
    initial = StudioForm.initial_from_generation(source)
    initial.pop("project")
    if settings.provider_account_id is None:
        for name in ("provider_account", StudioForm.OPTIONS_MARKER):
            initial.pop(name)
    return initial


# --- the studio's menus ---------------------------------------------------------------------
@login_required
@require_GET
def library_picker(request):
    """The Templates menu's content: the templates to choose from and "save the form as a template"."""
    return render(request, "teamwork/partials/library_picker.html", {"templates": list(library.templates_visible_to(user=request.user))})


@login_required
@require_GET
def template_fill(request):
    """The inputs of the chosen template's placeholders (``?template=<id>``); 404 for another team's."""
    template = _template_or_404(request, request.GET.get("template"))
    return render(request, "teamwork/partials/template_fill.html", {"t": template, "names": library.placeholders(template.prompt)})


@login_required
@require_POST
def template_use(request, template_id):
    """Fill a template in (``v_<name>`` per placeholder): answers the studio's create form,
    filled. A placeholder left empty (or a value for one the template lacks): the fill form
    again, 422, naming it."""
    template = _template_or_404(request, template_id)
    values = {k[len(VALUE_PREFIX):]: v for k, v in request.POST.items() if k.startswith(VALUE_PREFIX)}
    try:
        prompt = library.render_prompt(template.prompt, values)
    except DomainError as refused:
        return render(request, "teamwork/partials/template_fill.html", {
            "t": template, "names": library.placeholders(template.prompt), "values": values, "error": refused.message,
            "bad": {k.removeprefix("values.") for k in refused.fields},
        }, status=422)
    fill_form = render_to_string("teamwork/partials/template_fill.html", {
        "t": template, "names": library.placeholders(template.prompt), "values": values, "filled": True, "oob": True,
    }, request=request)
    return _studio_form_response(request, _initial(library.settings_of(template), prompt), extra=fill_form)


@login_required
@require_POST
def template_save(request):
    """Save the studio form (its fields travel with ``name``) as a template of the member's
    booked team (or first team). An existing name is replaced only with ``replace`` ticked and
    when the member may edit that template. Answers the menu's save form with the outcome."""
    from generations.views import _teams

    name = request.POST.get("name", "")
    teams = _teams(request.user)
    form = StudioForm(request.POST, teams=teams, projects=project_choices(request.user)[0])
    form.is_valid()  # the picks are narrowed to valid ones; the options are cleaned
    team = form.booked_team() or (teams[0] if teams else None)
    context = {"name": name}
    if team is None:
        context["error"] = "Only a team's member can save templates."
        return render(request, "teamwork/partials/template_save.html", context, status=422)
    picked = form.selection()  # {} when no provider account is enabled
    settings = library.TemplateSettings(
        provider_account_id=picked.get("provider_account_id"), model=picked.get("model", ""), mode=picked.get("mode", ""),
        duration=picked.get("duration", 0), resolution=picked.get("resolution", ""),
        options=form.options() if picked else {}, image_url=form.cleaned_data.get("image_url") or "",
    )
    prompt = request.POST.get("prompt", "")
    existing = library.templates_visible_to(user=request.user).filter(team=team, name=" ".join(name.split())).first()
    try:
        if existing is not None and request.POST.get("replace"):
            if not library.may_edit(user=request.user, template=existing):
                raise DomainError("forbidden", "Only its author or a team admin may replace this template.", status=403)
            template = library.template_update(template=existing, prompt=prompt, settings=settings)
        else:
            template = library.template_create(user=request.user, team=team, name=name, prompt=prompt, settings=settings)
    except DomainError as refused:
        context.update(error=refused.message, exists=refused.code == "template_exists")
        return render(request, "teamwork/partials/template_save.html", context, status=422)
    context.update(saved=template, name="")
    return render(request, "teamwork/partials/template_save.html", context)


@login_required
@require_GET
def history_menu(request):
    """The History menu's content: the member's recent distinct prompts, with counts."""
    return render(request, "teamwork/partials/history_menu.html", {"items": library.prompt_history(user=request.user)})


@login_required
@require_POST
def history_use(request, generation_id):
    """Fill the studio form with a past prompt and the settings it was last used with (one of
    the member's own generations; 404 otherwise)."""
    generation = generation_for(user=request.user, generation_id=generation_id)
    if generation is None or generation.user_id != request.user.pk:
        raise Http404
    return _studio_form_response(request, _initial(library.settings_of(generation), generation.prompt))


# --- the templates page ---------------------------------------------------------------------
@login_required
@require_GET
def templates_page(request):
    """The member's teams' templates, with what each fills in and its settings."""
    rows = [(t, library.placeholders(t.prompt)) for t in library.templates_visible_to(user=request.user)]
    return render(request, "teamwork/templates.html", {"rows": rows})


class TemplateEditForm(forms.Form):
    """A template's name, prompt and first-frame URL (its other settings come from the studio)."""

    name = forms.CharField(max_length=120)
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 5}), max_length=10_000,
                             help_text="Placeholders: {product}. Literal braces: {{ and }}.")
    image_url = forms.URLField(required=False, assume_scheme="https", max_length=2000, label="First-frame image URL (optional)")


@login_required
@require_http_methods(["GET", "POST"])
def template_edit(request, template_id):
    """Change a template's name, prompt or image URL (author, team admin or staff: 404 for
    another team's template, 403 for a teammate's)."""
    template = _template_or_404(request, template_id)
    if not library.may_edit(user=request.user, template=template):
        return render(request, "403.html", {"exception": "Only its author or an admin of its team may change this template."}, status=403)
    form = TemplateEditForm(request.POST or None, initial={"name": template.name, "prompt": template.prompt, "image_url": template.image_url})
    if request.method == "POST" and form.is_valid():
        settings = library.settings_of(template)
        settings.image_url = template.image_url = form.cleaned_data["image_url"] or ""
        try:
            library.template_update(template=template, name=form.cleaned_data["name"], prompt=form.cleaned_data["prompt"],
                                    settings=settings if template.provider_account_id else None)
        except DomainError as refused:
            for field_name, errors in refused.fields.items():
                for error in errors:
                    form.add_error(field_name if field_name in form.fields else None, error)
        else:
            messages.success(request, f"Template “{template.name}” saved.")
            return redirect("teamwork:templates")
    return render(request, "teamwork/template_edit.html", {"t": template, "form": form,
                                                           "names": library.placeholders(template.prompt)},
                  status=422 if form.errors else 200)


@login_required
@require_POST
def template_delete(request, template_id):
    """Delete a template (author, team admin or staff; 404 for another team's)."""
    template = _template_or_404(request, template_id)
    if not library.may_edit(user=request.user, template=template):
        messages.error(request, "Only its author or an admin of its team may delete this template.")
    else:
        template.delete()
        messages.success(request, f"Template “{template.name}” deleted.")
    return redirect("teamwork:templates")


@login_required
@require_POST
def template_from_generation(request, generation_id):
    """Save a visible generation's prompt and settings as a template (``name``) of its team (or
    the member's first team)."""
    generation = generation_for(user=request.user, generation_id=generation_id)
    if generation is None:
        raise Http404
    team_ids, primary = teams_of(request.user)
    team = generation.team if generation.team_id in team_ids else primary
    if team is None:
        messages.error(request, "Only a team's member can save templates.")
        return redirect("generation_detail", generation_id=generation.pk)
    try:
        template = library.template_create(user=request.user, team=team, name=request.POST.get("name", ""),
                                           prompt=generation.prompt, settings=library.settings_of(generation))
    except DomainError as refused:
        messages.error(request, refused.message)
        return redirect("generation_detail", generation_id=generation.pk)
    messages.success(request, f"Saved as the template “{template.name}”: edit its prompt to add {{placeholders}}.")
    return redirect("teamwork:template_edit", template_id=template.pk)


# --- notification settings --------------------------------------------------------------------
class PreferenceForm(forms.ModelForm):
    class Meta:
        model = NotificationPreference
        fields = ["email_finished", "email_failed", "email_approval"]


@login_required
@require_http_methods(["GET", "POST"])
def notification_settings(request):
    """The member's email preferences (all off by default) and the browser notification switch."""
    preference = preference_of(request.user)
    form = PreferenceForm(request.POST or None, instance=preference)
    if request.method == "POST" and form.is_valid():
        form.save()
        messages.success(request, "Notification settings saved.")
        return redirect("teamwork:notification_settings")
    return render(request, "teamwork/notification_settings.html", {"form": form})
