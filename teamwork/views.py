"""Studio pages for team work: projects, star and tags on a take, compare, share links, and the
public page a share link opens (no login).

Visibility is the gallery's: another team's projects, takes and links answer 404.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from config.errors import DomainError
from generations.selectors import generation_for, generations_visible_to, teams_of
from generations.views import poster_response, video_response
from teamwork import selectors, services

#: How many takes the compare page shows side by side.
COMPARE_MIN, COMPARE_MAX = 2, 4


def _visible_generation(request, generation_id):
    generation = generation_for(user=request.user, generation_id=generation_id)
    if generation is None:
        raise Http404
    return generation


def _visible_project(request, project_id):
    project = selectors.project_for(user=request.user, project_id=project_id)
    if project is None:
        raise Http404
    return project


def _back(request, fallback: str):
    """Where a form posted from the gallery or a detail page returns (same-site paths only)."""
    target = request.POST.get("next") or ""
    return redirect(target if target.startswith("/") and not target.startswith("//") else fallback)


# --- projects -------------------------------------------------------------------------------
@login_required
@require_http_methods(["GET", "POST"])
def projects(request):
    """GET: the member's teams' projects with their share links. POST: a new project in one of
    those teams (``team``, ``name``)."""
    team_ids, primary = teams_of(request.user)
    error = ""
    if request.method == "POST":
        try:
            team_id = int(request.POST.get("team") or (primary.pk if primary else 0))
        except ValueError:
            team_id = 0
        if team_id not in team_ids:
            raise Http404
        from accounts.models import Team

        try:
            project = services.project_create(team=Team.objects.get(pk=team_id), name=request.POST.get("name", ""))
        except DomainError as refused:
            error = refused.message
        else:
            messages.success(request, f"Project “{project.name}” created: choose it in the studio's Project menu.")
            return redirect("teamwork:projects")
    from accounts.models import Team

    return render(request, "teamwork/projects.html", {
        "projects": list(selectors.projects_visible_to(user=request.user, team_ids=team_ids)),
        "teams": list(Team.objects.filter(pk__in=team_ids).order_by("name")),
        "links": list(selectors.share_links_visible_to(user=request.user)[:100]),
        "error": error,
    }, status=422 if error else 200)


@login_required
@require_POST
def project_archive(request, project_id):
    """Archive or restore (``archived=0``) a project of the member's teams."""
    project = _visible_project(request, project_id)
    services.project_set_archived(project=project, archived=request.POST.get("archived", "1") == "1")
    return redirect("teamwork:projects")


# --- star and tags ----------------------------------------------------------------------------
@login_required
@require_POST
def star(request, generation_id):
    """Star (``starred=1``) or unstar (``starred=0``) a visible take. HTMX: the star button alone."""
    generation = _visible_generation(request, generation_id)
    services.generation_set_starred(generation=generation, starred=request.POST.get("starred", "1") == "1")
    if request.htmx:
        return render(request, "teamwork/partials/star.html", {"g": generation})
    return _back(request, reverse("generation_detail", args=[generation.pk]))


@login_required
@require_POST
def tags(request, generation_id):
    """Replace a visible take's tags (``tags``: comma-separated)."""
    generation = _visible_generation(request, generation_id)
    try:
        services.generation_set_tags(generation=generation, names=services.parse_tags(request.POST.get("tags", "")))
    except DomainError as refused:
        messages.error(request, refused.message)
    else:
        messages.success(request, "Tags saved.")
    return redirect("generation_detail", generation_id=generation.pk)


# --- compare ------------------------------------------------------------------------------------
@login_required
@require_GET
def compare(request):
    """2 to 4 visible takes (``ids``, repeated) side by side with synchronised playback
    (``static/js/compare.js``) and their parameters. Fewer, more, or an unknown id: 404 for an
    unknown or invisible one, a message otherwise."""
    raw = list(dict.fromkeys(request.GET.getlist("ids")))
    try:
        ids = [uuid.UUID(v) for v in raw]
    except ValueError:
        raise Http404 from None
    if not COMPARE_MIN <= len(ids) <= COMPARE_MAX:
        messages.error(request, f"Tick {COMPARE_MIN} to {COMPARE_MAX} takes to compare.")
        return redirect("studio")
    found = {g.pk: g for g in generations_visible_to(user=request.user).filter(pk__in=ids)}
    if len(found) != len(ids):
        raise Http404
    return render(request, "teamwork/compare.html", {"takes": [found[i] for i in ids]})


# --- share links ------------------------------------------------------------------------------
def _int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


@login_required
@require_POST
def share_generation(request, generation_id):
    """Create a share link to one visible take; the page shows its address once."""
    generation = _visible_generation(request, generation_id)
    return _share(request, generation=generation)


@login_required
@require_POST
def share_project(request, project_id):
    """Create a share link to a visible project's starred takes."""
    return _share(request, project=_visible_project(request, project_id))


def _share(request, *, generation=None, project=None):
    try:
        link, raw = services.share_create(
            user=request.user, generation=generation, project=project,
            days=_int(request.POST.get("days"), services.SHARE_DEFAULT_DAYS),
            show_prompt=bool(request.POST.get("show_prompt")), show_parameters=bool(request.POST.get("show_parameters")),
            title=request.POST.get("title", ""),
        )
    except DomainError as refused:
        messages.error(request, refused.message)
        return redirect("generation_detail", generation_id=generation.pk) if generation else redirect("teamwork:projects")
    return render(request, "teamwork/shared_created.html", {
        "link": link, "url": request.build_absolute_uri(reverse("teamwork:shared", args=[raw])),
    }, status=201)


@login_required
@require_POST
def share_revoke(request, link_id):
    """Revoke a share link of the member's teams (404 for another team's)."""
    link = selectors.share_links_visible_to(user=request.user).filter(pk=link_id).first()
    if link is None:
        raise Http404
    services.share_revoke(link=link)
    messages.success(request, "Link revoked: it no longer opens.")
    return redirect("teamwork:projects")


def _shared_or_404(token: str):
    link = selectors.share_link_by_token(token)
    if link is None:
        raise Http404
    return link


@require_GET
def shared(request, token: str):
    """The public page of a share link (no login): the shared takes, playable, with only what
    the sharer chose (prompt, parameters); never prices or members' emails. Each opening is
    counted. Expired, revoked or unknown: 404."""
    link = _shared_or_404(token)
    services.share_record_open(link=link)
    response = render(request, "teamwork/shared.html", {
        "link": link, "token": token, "takes": list(services.shared_generations(link)),
    })
    response["X-Robots-Tag"] = "noindex"
    response["Referrer-Policy"] = "no-referrer"  # the token is in the address
    return response


def _shared_take(token: str, generation_id):
    link = _shared_or_404(token)
    take = services.shared_generations(link).filter(pk=generation_id).first()
    if take is None:
        raise Http404
    return take


@require_GET
def shared_video(request, token: str, generation_id):
    """A shared take's MP4 (byte ranges), only while the link is active and only its takes."""
    return video_response(request, _shared_take(token, generation_id))


@require_GET
def shared_poster(request, token: str, generation_id):
    """A shared take's poster frame."""
    return poster_response(request, _shared_take(token, generation_id))
